//! `--log-format journald` (what the packaged unit uses) against a real
//! systemd-journald: the journal gets each event's fields as journal fields,
//! so IT staff can ask `journalctl -u understudy CALL=...`. Without a journal
//! the same setting logs JSON to stderr and says why.
//!
//! Each half runs in a mount namespace of its own (`unshare --mount`), with a
//! fresh tmpfs over /run (and over /var/log/journal where the host keeps one),
//! so the host's journal sees nothing and the journald started here is the
//! only one the appliance can reach.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const JOURNALD: &str = "/usr/lib/systemd/systemd-journald";

/// Run `script` under `sh` in a new mount namespace; its stdout and stderr.
fn in_namespace(work: &Path, script: &str) -> (String, String) {
    let path = work.join("script.sh");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("unshare")
        .arg("--mount")
        .arg("sh")
        .arg(&path)
        .env("UNDERSTUDY", env!("CARGO_BIN_EXE_understudy"))
        .env("WORK", work)
        .env("JOURNALD", JOURNALD)
        .output()
        .expect("run unshare (util-linux; scripts/install-deps.sh)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "the namespace script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// The journal entries (`journalctl -o json`) in `file`.
fn entries(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A private /run (and journal directory) for this namespace.
const PRIVATE_RUN: &str = "set -e
mount -t tmpfs tmpfs /run
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
mkdir -p /run/systemd/journal /run/log/journal
";

#[test]
fn events_reach_the_journal_as_fields() {
    assert!(
        Path::new(JOURNALD).exists(),
        "{JOURNALD} is missing: install systemd (scripts/install-deps.sh)"
    );
    let work = tempfile::tempdir().unwrap();
    // The self-test starts every engine and runs one synthetic call: worker,
    // call and turn events alike. Its SIP check fails on purpose (port 9
    // answers nothing), which it logs as well.
    let script = format!(
        "{PRIVATE_RUN}
\"$JOURNALD\" > \"$WORK/journald.log\" 2>&1 &
JD=$!
i=0
until [ -S /run/systemd/journal/socket ]; do
  i=$((i+1)); [ $i -lt 100 ] || {{ echo 'journald did not start' >&2; cat \"$WORK/journald.log\" >&2; exit 1; }}
  sleep 0.1
done
\"$UNDERSTUDY\" --pack test --log-format journald selftest --sip 127.0.0.1:9 \\
  > \"$WORK/selftest.out\" 2> \"$WORK/selftest.err\" || true
sleep 1
journalctl -D /run/log/journal --no-pager -o json SYSLOG_IDENTIFIER=understudy > \"$WORK/all.json\"
journalctl -D /run/log/journal --no-pager -o json CALL=selftest TURN=1 > \"$WORK/turn.json\"
kill $JD
"
    );
    in_namespace(work.path(), &script);

    // Nothing on stderr but the bot banner: every event went to the journal.
    let stderr = std::fs::read_to_string(work.path().join("selftest.err")).unwrap();
    assert!(
        !stderr.contains("\"level\"") && !stderr.contains(" INFO "),
        "events went to stderr:\n{stderr}"
    );
    let all = entries(&work.path().join("all.json"));
    let table = std::fs::read_to_string(work.path().join("selftest.out")).unwrap();
    assert!(
        all.len() > 10,
        "{} entries; selftest said:\n{table}",
        all.len()
    );
    let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();

    // A worker's start, with its fields; info is syslog's informational (6).
    let ready = all
        .iter()
        .find(|e| field(e, "MESSAGE") == "worker ready" && field(e, "ENGINE") == "stt")
        .unwrap_or_else(|| panic!("no 'worker ready' for stt in {all:#?}"));
    assert_eq!(field(ready, "PRIORITY"), "6", "{ready:#}");
    assert!(field(ready, "MODEL").ends_with(".bin"), "{ready:#}");
    assert!(field(ready, "LOAD_MS").parse::<f64>().is_ok(), "{ready:#}");
    assert!(
        field(ready, "TARGET").starts_with("understudy"),
        "{ready:#}"
    );
    assert!(!field(ready, "CODE_FILE").is_empty(), "{ready:#}");

    // The caller's turn, found by its fields as an operator would.
    let turn = entries(&work.path().join("turn.json"));
    assert_eq!(turn.len(), 1, "CALL=selftest TURN=1: {turn:#?}");
    let turn = &turn[0];
    assert_eq!(field(turn, "MESSAGE"), "turn", "{turn:#}");
    assert_eq!(field(turn, "INTENT"), "store_hours", "{turn:#}");
    assert!(
        field(turn, "TRANSCRIPT").to_lowercase().contains("open"),
        "{turn:#}"
    );
    assert!(
        field(turn, "VOICE_TO_VOICE_MS").parse::<f64>().is_ok(),
        "{turn:#}"
    );
}

#[test]
fn without_a_journal_it_logs_json_to_stderr_and_says_so() {
    let work = tempfile::tempdir().unwrap();
    let script =
        format!("{PRIVATE_RUN}\n\"$UNDERSTUDY\" --log-format journald config > /dev/null\n");
    let (_, stderr) = in_namespace(work.path(), &script);
    let warning: Value = stderr
        .lines()
        .find(|l| l.contains("journal is not reachable"))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON warning on stderr:\n{stderr}"));
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert!(
        warning["fields"]["error"].as_str().is_some(),
        "the reason is missing: {warning}"
    );
}
