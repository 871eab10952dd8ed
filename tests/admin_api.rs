//! The admin API against a running `serve`: `/openapi.json` describes it;
//! `/admin/...` refuses requests without the token of `[http]
//! admin_token_file`; draining turns SIP OPTIONS to 503 and back; sync
//! rollback and activate switch the bot that new calls get; a configuration
//! reload (the API or SIGHUP) applies `[session]` and the capacity at once
//! and lists what waits for a restart.

mod sip_support;
mod sync_support;

use sip_support::*;
use std::net::SocketAddr;
use std::time::Duration;
use sync_support::Cli;

const TOKEN: &str = "0f3c9a1b7d2e4f608a9b1c2d3e4f5a6b";

/// One request, with the bearer token when given: (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_request(addr, method, path, &auth).unwrap()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn the_admin_api_drains_and_switches_versions_with_the_token_only() {
    // Two bot versions in a store: the Rasa cafe, then the Lex bank line.
    let cli = Cli::new();
    cli.pull_fixture("rasa/cafe-bot");
    let bank = cli.pull_fixture("lex_v2/BankLine");
    let token_file = cli.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let serve = Serve::start(&format!(
        "\n[sync]\nstore = {:?}\n[http]\nadmin_token_file = {:?}\n",
        cli.store.display().to_string(),
        token_file.display().to_string()
    ));
    let http = serve.http;

    let (code, doc) = request(http, "GET", "/openapi.json", None);
    assert_eq!(code, 200);
    let doc = json(&doc);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/admin/drain"]["post"].is_object(), "{doc}");

    // No token, a wrong one: refused, nothing changes.
    for token in [None, Some("0f3c9a1b7d2e4f608a9b1c2d3e4f5a6c")] {
        let (code, body) = request(http, "POST", "/admin/drain", token);
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("admin_token_file"), "{body}");
    }
    let (code, _) = request(http, "POST", "/admin/sync/rollback", None);
    assert_eq!(code, 401);
    let raw = RawSip::new(serve.sip);
    assert_eq!(raw.options_status(), Some(200));

    // Drain: OPTIONS turns 503 (the SBC routes new calls elsewhere), /status says so.
    let (code, body) = request(http, "POST", "/admin/drain", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["draining"], true);
    assert_eq!(raw.options_status(), Some(503));
    let (_, status) = http_get(http, "/status").unwrap();
    assert_eq!(json(&status)["calls"]["draining"], true, "{status}");
    let (code, body) = request(http, "DELETE", "/admin/drain", Some(TOKEN));
    assert_eq!((code, json(&body)["draining"].clone()), (200, false.into()));
    assert_eq!(raw.options_status(), Some(200));

    // Rollback to the cafe, then activate the bank line again: each is served.
    let serving = |n: usize| serve.wait_logged("serving", n, Duration::from_secs(60));
    let before = serve.logged("serving").len();
    let (code, body) = request(http, "POST", "/admin/sync/rollback", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let cafe = json(&body)["active"].as_str().unwrap().to_string();
    assert_ne!(cafe, bank);
    let now = serving(before + 1);
    assert_eq!(now[before]["version"], cafe, "{now:?}");
    let (code, body) = request(
        http,
        "POST",
        &format!("/admin/sync/activate/{}", &bank[..8]),
        Some(TOKEN),
    );
    assert_eq!(
        (code, json(&body)["active"].clone()),
        (200, bank.clone().into()),
        "{body}"
    );
    let now = serving(before + 2);
    assert_eq!(now[before + 1]["version"], bank, "{now:?}");

    // A version that does not exist: refused with why.
    let (code, body) = request(http, "POST", "/admin/sync/activate/ffffffff", Some(TOKEN));
    assert_eq!(code, 409, "{body}");
    assert!(!json(&body)["error"].as_str().unwrap().is_empty(), "{body}");
}

#[test]
fn a_reloaded_configuration_applies_what_it_can_and_names_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let serve = Serve::start(&format!(
        "\n[calls]\ncapacity = 1\n[http]\nadmin_token_file = {:?}\n",
        token_file.display().to_string()
    ));
    let http = serve.http;
    let capacity = || {
        let (_, status) = http_get(http, "/status").unwrap();
        json(&status)["calls"]["capacity"].as_u64().unwrap()
    };
    assert_eq!(capacity(), 1);
    let file = serve.config_file();
    let started = std::fs::read_to_string(&file).unwrap();
    let edit = |capacity: &str, more: &str| {
        let text = started.replace("capacity = 1", &format!("capacity = {capacity}"));
        std::fs::write(&file, format!("{text}{more}")).unwrap();
    };

    // More slots and a longer endpoint wait apply now; the engines wait for a restart.
    edit(
        "3",
        "[session]\nendpoint_silence_ms = 700\n[engines]\nllm_ctx = 1024\n",
    );
    let (code, body) = request(http, "POST", "/admin/config/reload", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    let report = json(&body);
    assert_eq!(
        report["applied"],
        serde_json::json!(["session", "calls.capacity"]),
        "{body}"
    );
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["engines"]),
        "{body}"
    );
    assert_eq!(capacity(), 3);
    assert!(serve.metrics().contains("understudy_call_capacity 3"));

    // A broken file: refused with the file's name and why; nothing changes.
    edit("\"three\"", "");
    let (code, body) = request(http, "POST", "/admin/config/reload", Some(TOKEN));
    assert_eq!(code, 422, "{body}");
    let message = json(&body)["error"].as_str().unwrap().to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("nothing was changed"),
        "{message}"
    );
    assert_eq!(capacity(), 3);
    // Without the token: refused.
    assert_eq!(request(http, "POST", "/admin/config/reload", None).0, 401);

    // SIGHUP reloads as the API does.
    edit(
        "2",
        "[session]\nendpoint_silence_ms = 700\n[engines]\nllm_ctx = 1024\n",
    );
    let before = serve.logged("configuration reloaded").len();
    serve.signal(libc::SIGHUP);
    serve.wait_logged(
        "configuration reloaded",
        before + 1,
        Duration::from_secs(30),
    );
    assert_eq!(capacity(), 2);
    // The server still answers after all that.
    assert_eq!(RawSip::new(serve.sip).options_status(), Some(200));
}

/// A GET from the loopback address `from` (127.0.0.2 stands for a host on
/// the network): (status, body).
fn get_from(from: &str, to: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    http_request_from(Some(from), to, "GET", path, &auth).unwrap()
}

#[test]
fn status_and_metrics_need_the_token_from_outside_the_open_networks() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let serve = Serve::start(&format!(
        "\n[http]\nadmin_token_file = {:?}\nstatus_open_to = [\"127.0.0.1\"]\n",
        token_file.display().to_string()
    ));
    let http = serve.http;
    // From the open network: everything, no token needed.
    for path in ["/status", "/metrics", "/readyz", "/healthz"] {
        let (code, body) = get_from("127.0.0.1", http, path, None);
        assert_eq!(code, 200, "{path}: {body}");
    }
    assert!(get_from("127.0.0.1", http, "/status", None)
        .1
        .contains("\"software\""));

    // From elsewhere: the probes answer, the status and metrics need the token.
    let outside = "127.0.0.2";
    assert_eq!(get_from(outside, http, "/healthz", None).0, 200);
    let (code, body) = get_from(outside, http, "/readyz", None);
    assert_eq!(
        (code, body.as_str()),
        (200, "ready\n"),
        "no reasons for outsiders"
    );
    for path in ["/status", "/metrics"] {
        let (code, body) = get_from(outside, http, path, None);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("status_open_to"), "{body}");
        let (code, _) = get_from(
            outside,
            http,
            path,
            Some("0f3c9a1b7d2e4f608a9b1c2d3e4f5a6c"),
        );
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, body) = get_from(outside, http, path, Some(TOKEN));
        assert_eq!(code, 200, "{path} with the token: {body}");
    }
    let (_, body) = get_from(outside, http, "/readyz", Some(TOKEN));
    assert!(body.contains("\"ready\":true"), "{body}");
}
