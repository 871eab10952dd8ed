//! The NOC dashboard, for real: Debian's headless Chromium (ChromeDriver)
//! opens `/dashboard` on a running `understudy serve` (test pack, two bot
//! versions in its sync store, a cloud bot whose health URL does not
//! answer, one SIP call already answered) and:
//! - without the token it sees only the sign-in form; a wrong token is
//!   refused with what to do;
//! - signed in, it sees the appliance ready with every engine, the calls
//!   against capacity by ingress, the cloud bot gone down with its
//!   transitions, per-stage latency percentiles and the latency plot of the
//!   call's turn, both bot versions with the active one marked, and the
//!   model files with their checks;
//! - draining from the page turns SIP OPTIONS to 503, and back;
//! - activating the other version from the page makes it the one served;
//! - a screenshot is kept (`target/tmp/artefacts/dashboard.png`).
//!
//! Needs `chromium`, `chromium-driver`, SIPp, espeak-ng and sox
//! (scripts/install-deps.sh).

mod browser_support;
mod sip_support;
mod sync_support;

use browser_support::Browser;
use serde_json::{json, Value};
use sip_support::*;
use std::path::Path;
use std::time::{Duration, Instant};
use sync_support::Cli;

const TOKEN: &str = "5d1e0c9b8a7f6e5d4c3b2a190817a6b5";

/// What the page shows, read from the page itself (its elements), with the
/// data it last fetched.
const PAGE: &str = r#"
const text = (id) => document.getElementById(id).textContent;
const rows = (id) => [...document.querySelectorAll('#' + id + ' tbody tr')].map(r => r.textContent);
done({
  signedIn: dashboard.signedIn,
  loginShown: !document.getElementById('login').hidden,
  loginError: text('login-error'),
  ready: text('ready'), why: text('why'),
  callsActive: text('calls-active'), callsCapacity: text('calls-capacity'),
  ingress: rows('ingress'), draining: text('draining'),
  cloud: text('cloud'), timeline: rows('timeline'),
  stages: rows('stages'), dots: document.querySelectorAll('#latency-plot circle').length,
  versions: rows('versions'),
  activeVersion: (document.querySelector('#versions tr.active') || {dataset: {}}).dataset.version || null,
  engines: rows('engines'), models: rows('models'), modelsSummary: text('models-summary'),
  message: text('message'), lastAction: dashboard.lastAction, refreshed: dashboard.refreshed,
  data: dashboard.data,
});
"#;

/// The page, once `ok` holds for it (polled; the page refreshes every 2 s).
async fn page_when(browser: &Browser, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let page = browser.eval(PAGE).await;
        if ok(&page) {
            return page;
        }
        let mut shown = page.clone();
        shown["data"] = Value::Null;
        assert!(
            Instant::now() < limit,
            "the dashboard never showed {what}: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Sign in with `token` through the form.
async fn sign_in(browser: &Browser, token: &str) {
    let script = format!(
        "document.getElementById('token').value = {}; document.getElementById('signin').click(); done(true);",
        json!(token)
    );
    assert_eq!(browser.eval(&script).await, json!(true));
}

async fn click(browser: &Browser, selector: &str) {
    let script = format!(
        "const b = document.querySelector({}); if (!b) {{ done(false); }} else {{ b.click(); done(true); }}",
        json!(selector)
    );
    assert_eq!(browser.eval(&script).await, json!(true), "{selector}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_noc_signs_in_sees_the_appliance_and_activates_a_version() {
    require_peers();
    // Two bot versions: the Rasa cafe, then the Lex bank line (active).
    let cli = Cli::new();
    let cafe = cli.pull_fixture("rasa/cafe-bot");
    let bank = cli.pull_fixture("lex_v2/BankLine");
    assert_ne!(cafe, bank);
    let token_file = cli.dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    // A cloud bot whose health URL nothing answers: it goes down.
    let dead = free_port();
    let serve = Serve::start(&format!(
        "\n[sync]\nstore = {:?}\n[http]\nadmin_token_file = {:?}\n[cloud]\nhealth_url = \"http://{LOOPBACK}:{dead}/health\"\n",
        cli.store.display().to_string(),
        token_file.display().to_string()
    ));

    // One caller, so the latency figures have a turn.
    let dir = tempfile::tempdir().unwrap();
    let speech = say("Hello, I would like to know my balance please", dir.path());
    let (_, turns) = ask_over_sip(&serve, dir.path(), &speech, "a caller");
    assert!(!turns.is_empty(), "the caller's turn was not logged");

    let browser = Browser::start(None).await;
    browser
        .open(&format!("http://{}/dashboard", serve.http))
        .await;
    let page = browser.eval(PAGE).await;
    assert_eq!(page["signedIn"], false, "{page}");
    assert_eq!(page["loginShown"], true, "{page}");
    assert!(page["data"].is_null(), "no data before signing in: {page}");

    // A wrong token: refused, and the page says what to do.
    sign_in(&browser, "not-the-token-0000000000000000").await;
    let page = page_when(&browser, "the refusal", |p| {
        p["loginError"]
            .as_str()
            .is_some_and(|e| e.contains("admin_token_file"))
    })
    .await;
    assert_eq!(page["signedIn"], false);
    assert!(page["data"].is_null());

    // The right one: the appliance as it stands.
    sign_in(&browser, TOKEN).await;
    let page = page_when(&browser, "the appliance, ready, with its cloud down", |p| {
        p["signedIn"] == true && p["cloud"].as_str().is_some_and(|c| c.contains("down"))
    })
    .await;
    assert_eq!(page["loginShown"], false);
    assert_eq!(page["ready"], "ready", "{}", page["why"]);
    assert!(
        page["why"].as_str().unwrap().contains("BankLine"),
        "{}",
        page["why"]
    );
    let capacity = page["data"]["status"]["calls"]["capacity"]
        .as_u64()
        .unwrap();
    assert_eq!(page["callsCapacity"], format!("of {capacity} calls"));
    assert_eq!(page["callsActive"], "0");
    let ingress: Vec<&str> = page["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(ingress.iter().any(|r| r.starts_with("sip")), "{ingress:?}");
    // Engines: every one ready, restarts shown.
    let engines = page["engines"].as_array().unwrap();
    assert!(engines.len() >= 4, "{engines:?}");
    for engine in engines {
        assert!(engine.as_str().unwrap().contains("ready"), "{engine}");
    }
    // The cloud's timeline: from up, to down, with the failed probe.
    let timeline: Vec<&str> = page["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        timeline.iter().any(|r| r.contains("→ down")),
        "{timeline:?}"
    );
    assert!(timeline.iter().any(|r| r.contains("up →")), "{timeline:?}");
    // Latency: the caller's turn, with every stage timed, and a dot on the plot.
    let stages = &page["data"]["stages"];
    let v2v = stages["voice_to_voice_flow"]["n"].as_u64().unwrap()
        + stages["voice_to_voice_llm"]["n"].as_u64().unwrap();
    assert!(v2v >= 1, "{stages}");
    for stage in ["endpoint", "stt", "dialog", "tts_first_audio"] {
        assert!(
            stages[stage]["n"].as_u64().unwrap() >= 1,
            "{stage}: {stages}"
        );
    }
    assert!(page["dots"].as_u64().unwrap() >= 1, "{page}");
    let stt_row = page["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .find(|r| r.starts_with("speech to text"))
        .unwrap();
    assert!(stt_row.chars().any(|c| c.is_ascii_digit()), "{stt_row}");
    // Versions: both, the bank line active.
    assert_eq!(page["versions"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["activeVersion"], bank);
    // Models: every file of the test pack, none missing.
    let models = page["models"].as_array().unwrap();
    assert!(models.len() >= 5, "{models:?}");
    for model in models {
        let row = model.as_str().unwrap();
        assert!(!row.contains("MISSING") && !row.contains("WRONG"), "{row}");
    }
    assert!(
        page["modelsSummary"]
            .as_str()
            .unwrap()
            .contains("every file present"),
        "{}",
        page["modelsSummary"]
    );

    // Drain from the page: SIP OPTIONS answer 503, then 200 again.
    let raw = RawSip::new(serve.sip);
    assert_eq!(raw.options_status(), Some(200));
    click(&browser, "#drain").await;
    page_when(&browser, "draining", |p| {
        p["draining"]
            .as_str()
            .is_some_and(|d| d.contains("draining"))
    })
    .await;
    assert_eq!(raw.options_status(), Some(503));
    click(&browser, "#undrain").await;
    page_when(&browser, "taking calls", |p| {
        p["draining"]
            .as_str()
            .is_some_and(|d| d.contains("taking calls"))
    })
    .await;
    assert_eq!(raw.options_status(), Some(200));

    // Activate the cafe from the page: it becomes the bot new calls get.
    let serving_before = serve.logged("serving").len();
    click(
        &browser,
        &format!("button.activate[data-version=\"{cafe}\"]"),
    )
    .await;
    let page = page_when(&browser, "the cafe active", |p| p["activeVersion"] == cafe).await;
    assert_eq!(page["lastAction"]["ok"], true, "{}", page["lastAction"]);
    assert!(
        page["message"].as_str().unwrap().contains(&cafe[..12]),
        "{}",
        page["message"]
    );
    assert_eq!(cli.active().as_deref(), Some(cafe.as_str()));
    let serving = serve.wait_logged("serving", serving_before + 1, Duration::from_secs(60));
    assert_eq!(serving[serving_before]["version"], cafe, "{serving:?}");
    let cafe_name = page["data"]["sync"]["active"]["bot_name"]
        .as_str()
        .unwrap()
        .to_string();
    page_when(&browser, "the cafe served", |p| {
        p["why"]
            .as_str()
            .is_some_and(|w| w == format!("serving {cafe_name}"))
    })
    .await;

    // The whole page in the picture.
    browser
        .command("window/rect", json!({"width": 1280, "height": 1700}))
        .await;

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artefacts/dashboard.png");
    browser.screenshot(&shot).await;
    eprintln!("dashboard screenshot: {}", shot.display());
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
