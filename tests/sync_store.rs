//! The sync lifecycle through the `understudy sync` commands (rules-only
//! parity, so no models): pull and activate, refuse broken exports while the
//! active version keeps serving, refuse a version whose test conversations
//! fail, diff, rollback to the previous behaviour, and a store that stays
//! consistent after an interrupted write.

mod sync_support;

use sync_support::*;

/// The cafe bot, with its opening hours answer changed: version 2.
fn cafe_v2(dir: &std::path::Path) -> std::path::PathBuf {
    let v2 = dir.join("cafe-v2");
    copy_dir(&fixture("rasa/cafe-bot"), &v2);
    edit(
        &v2.join("domain.yml"),
        "We are open from seven to seven, every day.",
        "We are open from eight to six, Monday to Saturday.",
    );
    edit(
        &v2.join("tests/test_stories.yml"),
        "- story: hours",
        "- story: opening hours",
    );
    v2
}

#[test]
fn broken_exports_are_refused_with_a_clear_message_and_the_active_version_keeps_serving() {
    let cli = Cli::new();
    let good = fixture("dialogflow_cx/pizza-line");
    let out = cli.ok(&[
        "sync",
        "pull",
        "--from",
        good.to_str().unwrap(),
        "--no-embed",
    ]);
    assert!(out.contains("activated"), "{out}");
    let active = cli.active().expect("a version is active");

    // A corrupt zip, a download cut in half, and an export whose route names a page that does not exist.
    let zip = messy_zip(&good);
    let corrupt = cli.dir.path().join("corrupt.zip");
    let mut bytes = zip.clone();
    for b in bytes.iter_mut().skip(200).take(400) {
        *b ^= 0x5a;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    let truncated = cli.dir.path().join("truncated.zip");
    std::fs::write(&truncated, &zip[..zip.len() / 2]).unwrap();
    let dangling = cli.dir.path().join("dangling");
    copy_dir(&good, &dangling);
    edit(
        &dangling.join("flows/Default Start Flow/Default Start Flow.json"),
        "\"targetPage\": \"Order\"",
        "\"targetPage\": \"Checkout\"",
    );

    let cases = [
        (&corrupt, vec!["corrupt.zip", "corrupt or was cut off"]),
        (&truncated, vec!["truncated.zip", "cut off"]),
        (
            &dangling,
            vec![
                "page \"Checkout\" (flow \"Default Start Flow\")",
                "does not exist",
                "export the whole bot again",
            ],
        ),
    ];
    for (path, expected) in cases {
        let msg = cli.fails(&[
            "sync",
            "pull",
            "--from",
            path.to_str().unwrap(),
            "--no-embed",
        ]);
        for e in expected {
            assert!(
                msg.contains(e),
                "pulling {} should say {e:?}:\n{msg}",
                path.display()
            );
        }
        assert_eq!(
            cli.active().as_deref(),
            Some(active.as_str()),
            "a refused export leaves the active version"
        );
        let lines = cli.chat("active", &["I want to order a pizza"]);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("Great, let's get your pizza going.")),
            "{lines:#?}"
        );
    }
    let status = cli.status();
    assert_eq!(
        status["versions"].as_array().unwrap().len(),
        1,
        "nothing broken was stored"
    );
}

#[test]
fn a_version_whose_test_conversations_fail_is_not_activated() {
    let cli = Cli::with_config("min_pass_rate = 1.0");
    cli.ok(&[
        "sync",
        "pull",
        "--from",
        fixture("rasa/cafe-bot").to_str().unwrap(),
        "--no-embed",
    ]);
    let v1 = cli.active().unwrap();
    // Version 2 changes a prompt its own test still expects verbatim.
    let v2 = cli.dir.path().join("cafe-broken");
    copy_dir(&fixture("rasa/cafe-bot"), &v2);
    edit(
        &v2.join("domain.yml"),
        "- text: Let me get a barista for you.",
        "- text: One moment please.",
    );
    edit(
        &v2.join("tests/test_stories.yml"),
        "  - action: utter_transfer\n",
        "  - action: utter_transfer\n  - action: utter_hours\n",
    );
    let msg = cli.fails(&["sync", "pull", "--from", v2.to_str().unwrap(), "--no-embed"]);
    assert!(
        msg.contains("NOT activated") && msg.contains("FAIL hand off"),
        "{msg}"
    );
    assert!(
        msg.contains("We are open from seven to seven"),
        "the failing expectation is shown: {msg}"
    );
    assert_eq!(cli.active().as_deref(), Some(v1.as_str()));
    // The designer can still look at it, and force it.
    let id = cli.status()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .find(|id| *id != v1)
        .unwrap();
    let msg = cli.fails(&["sync", "activate", &id[..8]]);
    assert!(
        msg.contains("failed its parity test") && msg.contains("--force"),
        "{msg}"
    );
    cli.ok(&["sync", "activate", &id[..8], "--force"]);
    assert_eq!(cli.active().as_deref(), Some(id.as_str()));
}

#[test]
fn diff_then_rollback_restores_the_previous_behaviour() {
    let cli = Cli::new();
    let v1_path = fixture("rasa/cafe-bot");
    cli.ok(&[
        "sync",
        "pull",
        "--from",
        v1_path.to_str().unwrap(),
        "--no-embed",
    ]);
    let v1 = cli.active().unwrap();
    let v2_path = cafe_v2(cli.dir.path());
    let out = cli.ok(&[
        "sync",
        "pull",
        "--from",
        v2_path.to_str().unwrap(),
        "--no-embed",
    ]);
    assert!(out.contains("activated"), "{out}");
    let v2 = cli.active().unwrap();
    assert_ne!(v1, v2);
    // Pulling the same export again changes nothing.
    let again = cli.ok(&[
        "sync",
        "pull",
        "--from",
        v2_path.to_str().unwrap(),
        "--no-embed",
    ]);
    assert!(again.contains("same as the active version"), "{again}");

    let diff = cli.ok(&["sync", "diff", &v1[..8], &v2[..8]]);
    assert!(
        diff.contains("eight to six") && diff.contains("prompts:"),
        "{diff}"
    );
    assert!(
        diff.contains("~ opening_hours: prompts"),
        "the state that says it changed: {diff}"
    );
    let status = cli.status();
    assert_eq!(status["last_good"].as_str(), Some(v1.as_str()));
    assert_eq!(
        status["last_pull"]["result"].as_str(),
        Some("unchanged"),
        "{status:#}"
    );

    let hours = |cli: &Cli| cli.chat("active", &["when are you open"]).join(" ");
    assert!(hours(&cli).contains("eight to six"));
    let out = cli.ok(&["sync", "rollback"]);
    assert!(out.contains(&v1), "{out}");
    assert_eq!(cli.active().as_deref(), Some(v1.as_str()));
    assert!(
        hours(&cli).contains("seven to seven"),
        "rolled back to the old words"
    );
    // Any kept version can be activated again by a prefix of its id.
    cli.ok(&["sync", "activate", &v2[..6]]);
    assert!(hours(&cli).contains("eight to six"));
    // And chat talks to any stored version.
    assert!(cli
        .chat(&v1[..8], &["when are you open"])
        .join(" ")
        .contains("seven to seven"));
}

#[test]
fn an_interrupted_write_leaves_the_store_consistent() {
    let cli = Cli::new();
    cli.ok(&[
        "sync",
        "pull",
        "--from",
        fixture("lex_v2/BankLine").to_str().unwrap(),
        "--no-embed",
    ]);
    let active = cli.active().unwrap();
    // What a power cut mid-pull leaves: a staged half version and a temp state file.
    let staged = cli.store.join("tmp/0123abcd-1-1");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("bundle.yaml"), "format: understudy-bund").unwrap();
    std::fs::write(
        cli.store.join(".state.json.99-1.tmp"),
        "{\"active\": \"0123",
    )
    .unwrap();
    let status = cli.status();
    assert_eq!(status["active"]["id"].as_str(), Some(active.as_str()));
    assert_eq!(status["versions"].as_array().unwrap().len(), 1);
    assert!(
        !staged.exists() && !cli.store.join(".state.json.99-1.tmp").exists(),
        "leftovers are cleared on open"
    );
    let lines = cli.chat("active", &["what is my balance"]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Let's check your balance.")),
        "{lines:#?}"
    );
}
