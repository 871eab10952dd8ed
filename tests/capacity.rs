//! `understudy capacity` on the test pack, for real (engines, the demo bot,
//! espeak-ng callers through a mu-law line, calls fed in real time):
//! - with a target every step meets, it runs every step, reports each with
//!   its turns answered and timed, and `--write` sets `[calls] capacity` in
//!   the configuration file, keeping the file's comments;
//! - with a target nothing can meet, it says capacity 0, exits non-zero and
//!   leaves the file as it was.
//!
//! The targets are far from the box's real figures on purpose: the test
//! checks the behaviour, not this machine's speed.

use serde_json::Value;
use std::process::Command;

fn capacity(config: &std::path::Path, p95_ms: &str, out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(config)
        .args(["--pack", "test", "capacity", "--max-calls", "2"])
        .args([
            "--calls-per-line",
            "1",
            "--p95-ms",
            p95_ms,
            "--write",
            "--out",
        ])
        .arg(out)
        // A data directory of its own: the built-in demo bot, no synced version.
        .env("UNDERSTUDY_DATA_DIR", config.parent().unwrap())
        .output()
        .expect("cannot run understudy capacity")
}

#[test]
fn capacity_measures_steps_and_writes_what_held() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("understudy.toml");
    std::fs::write(&config, "# rack 4, left\n[calls]\ncapacity = 1\n").unwrap();
    let report = dir.path().join("capacity.json");

    let run = capacity(&config, "60000", &report);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("capacity: 2 concurrent calls hold"),
        "{stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["capacity"], 2, "{report}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["calls"], i + 1, "{step}");
        assert_eq!(step["turns"], i + 1, "one call per line: {step}");
        assert_eq!(step["unanswered"], 0, "{step}");
        assert_eq!(
            step["voice_to_voice"]["n"],
            i + 1,
            "every turn timed: {step}"
        );
        assert_eq!(step["holds"], true, "{step}");
    }
    // The first caller asks a knowledge question: the LLM's work is measured.
    assert!(steps[0]["llm_turns"].as_u64().unwrap() >= 1, "{report}");
    let written = std::fs::read_to_string(&config).unwrap();
    assert!(written.contains("# rack 4, left"), "{written}");
    assert!(written.contains("capacity = 2"), "{written}");
    assert!(stdout.contains("wrote `[calls] capacity = 2`"), "{stdout}");

    // A target nothing meets: capacity 0, non-zero exit, the file untouched.
    let again = dir.path().join("again.json");
    let run = capacity(&config, "1", &again);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("capacity: 0"), "{stdout}");
    assert!(stderr.contains("left as it is"), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(
        report["steps"].as_array().unwrap().len(),
        1,
        "stops at the first miss"
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
}
