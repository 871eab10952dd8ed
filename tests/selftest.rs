//! `understudy selftest` against a real running appliance (`understudy serve`, test pack):
//! every check passes and the table says so; pointed at a SIP port where nothing answers,
//! the SIP check fails and the command exits non-zero.

mod sip_support;

use sip_support::*;
use std::process::{Command, Output};

fn selftest(sip: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_understudy"))
        .args(["--pack", "test", "selftest", "--sip", sip])
        .output()
        .expect("run understudy selftest")
}

/// The table's rows: (PASS/FAIL, check name).
fn rows(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL"))
        .map(|l| {
            let mark = l[..4].to_string();
            let name = l[4..].trim_start().split("  ").next().unwrap().to_string();
            (mark, name)
        })
        .collect()
}

const CHECKS: [&str; 9] = [
    "model files",
    "engines and bot load",
    "TTS speaks",
    "VAD hears speech",
    "STT transcribes",
    "LLM generates",
    "embeddings",
    "synthetic call",
    "SIP OPTIONS",
];

#[test]
fn selftest_passes_on_a_ready_appliance_and_fails_without_sip() {
    let serve = Serve::start("");
    let out = selftest(&serve.sip.to_string());
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "selftest failed on a ready appliance:\n{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = rows(&out).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, CHECKS, "one row per check:\n{table}");
    assert!(rows(&out).iter().all(|(m, _)| m == "PASS"), "{table}");
    drop(serve);

    let nobody = free_port();
    let out = selftest(&format!("127.0.0.1:{nobody}"));
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "no SIP answer must fail:\n{table}");
    // The engine rows were checked above; here the SIP row alone must fail.
    let rows = rows(&out);
    assert_eq!(rows.len(), CHECKS.len(), "{table}");
    assert!(
        rows.contains(&("FAIL".into(), "SIP OPTIONS".into())),
        "{table}"
    );
    assert!(
        rows.contains(&("PASS".into(), "model files".into())),
        "{table}"
    );
    assert!(
        table.contains("is `understudy serve` running"),
        "the failure says what to check:\n{table}"
    );
}
