//! Signed A/B updates with the real binaries: `understudy update keygen` and
//! `pack` make bundles of this build; `apply` refuses an untrusted signer, a
//! cut-short file and another architecture without writing anything; on a
//! running `serve` (restarted by a supervisor loop, as systemd would) it
//! waits for the call in progress while new calls are refused, switches to
//! the new slot, rolls a version that never gets ready back by itself, and
//! `update rollback` returns to the packaged install; the running `serve`
//! is found where `--http-listen` put it, not at `[http] listen`. A switch
//! whose `apply` dies falls back by itself once the new version has had its
//! starts.

mod sip_support;

use serde_json::Value;
use sip_support::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "5e1f0a2b3c4d5e6f708192a3b4c5d6e7";
const WORKERS: [&str; 5] = [
    "understudy-stt",
    "understudy-llm",
    "understudy-tts",
    "understudy-vad",
    "understudy-embed",
];

fn release_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_understudy"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// This build's files as a release folder, without the workers in `leave_out`.
fn stage(dir: &Path, leave_out: &[&str]) -> PathBuf {
    let out = dir.join(format!("stage-{}", leave_out.len()));
    std::fs::create_dir_all(&out).unwrap();
    for name in std::iter::once("understudy").chain(WORKERS) {
        if !leave_out.contains(&name) {
            // Stripped, as a release ships them (scripts/package-deb.sh does the same).
            let status = Command::new("objcopy")
                .arg("--strip-debug")
                .arg(release_dir().join(name))
                .arg(out.join(name))
                .status()
                .unwrap();
            assert!(status.success(), "objcopy {name}");
        }
    }
    let status = Command::new("cp")
        .arg("-r")
        .arg(release_dir().join("espeak-ng-data"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// `understudy --config CONFIG args...`.
fn understudy(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let out = understudy(config, args);
    assert!(out.status.success(), "understudy {args:?}: {}", text(&out));
    text(&out)
}

/// A vendor key pair under `dir/name`: (secret key, public key).
fn keygen(config: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(name);
    ok(
        config,
        &[
            "update",
            "keygen",
            "--unencrypted",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    (
        out.join("understudy-update.key"),
        out.join("understudy-update.pub"),
    )
}

/// A signed bundle of a build that starts but can never be ready (its LLM
/// worker is missing), in `dir`.
fn never_ready_bundle(dir: &Path, config: &Path, vendor: &Path) -> PathBuf {
    let out = dir.join("broken.update");
    pack(config, &stage(dir, &["understudy-llm"]), vendor, &out, &[]);
    out
}

/// `understudy update apply BUNDLE --ready-timeout S` in the background,
/// its stderr (what it says) in `log`.
fn spawn_apply(config: &Path, bundle: &Path, ready_timeout_s: u32, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(config)
        .args(["update", "apply", bundle.to_str().unwrap()])
        .args(["--ready-timeout", &ready_timeout_s.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn pack(config: &Path, from: &Path, key: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "update",
        "pack",
        "--from",
        from.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(config, &args)
}

/// What the slots folder holds (names), to show nothing was written.
fn slot_entries(slots: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(slots)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_bundle_is_refused_unless_whole_signed_by_a_trusted_key_and_built_for_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let (slots, keys) = (dir.path().join("slots"), dir.path().join("keys"));
    std::fs::create_dir_all(&keys).unwrap();
    let config = dir.path().join("understudy.toml");
    std::fs::write(
        &config,
        format!(
            "[update]\nslots_dir = {slots:?}\nkeys_dir = {keys:?}\nrestart_command = [\"false\"]\n"
        ),
    )
    .unwrap();
    let (vendor, vendor_pub) = keygen(&config, dir.path(), "vendor");
    let (stranger, _) = keygen(&config, dir.path(), "stranger");
    std::fs::copy(&vendor_pub, keys.join("vendor.pub")).unwrap();
    let staged = stage(dir.path(), &[]);

    let good = dir.path().join("good.update");
    let packed = pack(&config, &staged, &vendor, &good, &[]);
    assert!(packed.contains(env!("CARGO_PKG_VERSION")), "{packed}");
    let verified = ok(&config, &["update", "verify", good.to_str().unwrap()]);
    assert!(verified.contains("signed by a trusted key"), "{verified}");

    let refused = |bundle: &Path, expect: &str| {
        let out = understudy(&config, &["update", "apply", bundle.to_str().unwrap()]);
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains(expect), "expected {expect:?} in: {said}");
        assert!(
            slot_entries(&slots).is_empty(),
            "a refused bundle left {:?} in the slots folder",
            slot_entries(&slots)
        );
    };

    // Signed by a key the appliance does not trust.
    let foreign = dir.path().join("foreign.update");
    pack(&config, &staged, &stranger, &foreign, &[]);
    refused(&foreign, "which is not trusted here");

    // Cut short in transfer, and one byte changed: the signature no longer matches.
    let bytes = std::fs::read(&good).unwrap();
    let short = dir.path().join("short.update");
    std::fs::write(&short, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::copy(
        dir.path().join("good.update.minisig"),
        dir.path().join("short.update.minisig"),
    )
    .unwrap();
    refused(&short, "does not match its signature");
    let mut changed = bytes.clone();
    let middle = changed.len() / 3;
    changed[middle] ^= 0x40;
    let tampered = dir.path().join("tampered.update");
    std::fs::write(&tampered, &changed).unwrap();
    std::fs::copy(
        dir.path().join("good.update.minisig"),
        dir.path().join("tampered.update.minisig"),
    )
    .unwrap();
    refused(&tampered, "does not match its signature");

    // Built for another machine, signed properly.
    let other = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let foreign_arch = dir.path().join("arch.update");
    pack(
        &config,
        &staged,
        &vendor,
        &foreign_arch,
        &["--architecture", other],
    );
    refused(&foreign_arch, &format!("built for {other}"));

    // No signature beside it.
    let unsigned = dir.path().join("unsigned.update");
    std::fs::copy(&good, &unsigned).unwrap();
    refused(&unsigned, ".minisig");
}

/// A configuration for a supervised appliance with slots, a trusted vendor
/// key and a restart command for [`Supervised`].
struct Appliance {
    config: PathBuf,
    slots: PathBuf,
    http: u16,
    /// The vendor's secret key, whose public key the appliance trusts.
    vendor: PathBuf,
}

impl Appliance {
    /// In `dir`, with `update_extra` added to `[update]`.
    fn new(dir: &Path, update_extra: &str) -> Appliance {
        let (slots, keys) = (dir.join("slots"), dir.join("keys"));
        std::fs::create_dir_all(&keys).unwrap();
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let config = dir.join("understudy.toml");
        let restart = format!("kill $(cat {}/serve.pid)", dir.display());
        // `serve` listens elsewhere (`--http-listen`, see `Supervised`):
        // `update` must find it where it says it listens, not here.
        let (http, configured) = (free_port(), free_port());
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{configured}\"\nadmin_token_file = {token_file:?}\n[update]\nslots_dir = {slots:?}\nkeys_dir = {keys:?}\n\
                 restart_command = [\"sh\", \"-c\", {restart:?}]\n{update_extra}\n"
            ),
        )
        .unwrap();
        let (vendor, vendor_pub) = keygen(&config, dir, "vendor");
        std::fs::copy(&vendor_pub, keys.join("vendor.pub")).unwrap();
        Appliance {
            config,
            slots,
            http,
            vendor,
        }
    }
}

/// `serve` restarted by a loop whenever it exits, as systemd's `Restart=always` would.
struct Supervised {
    loop_child: Child,
    dir: PathBuf,
    http: SocketAddr,
    sip: SocketAddr,
    audiosocket: SocketAddr,
}

impl Supervised {
    /// Start `serve` with `config`, its HTTP listener moved to `http` by
    /// `--http-listen` (where `understudy update` must find it).
    fn start(dir: &Path, config: &Path, http: u16) -> Supervised {
        let (sip, audiosocket) = (free_port(), free_port());
        let serve = format!(
            "{exe} --config {config} --pack test --log-format json serve --sip-listen 127.0.0.1:{sip} \
             --audiosocket-listen 127.0.0.1:{audiosocket} --http-listen 127.0.0.1:{http}",
            exe = env!("CARGO_BIN_EXE_understudy"),
            config = config.display(),
        );
        let script = format!(
            "while [ ! -e {d}/stop ]; do {serve} 2>>{d}/serve.log & echo $! > {d}/serve.pid; wait $!; done",
            d = dir.display()
        );
        let loop_child = Command::new("sh")
            .args(["-c", &script])
            .env("UNDERSTUDY_LOG", "info,rsipstack=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Supervised {
            loop_child,
            dir: dir.to_path_buf(),
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            sip: format!("127.0.0.1:{sip}").parse().unwrap(),
            audiosocket: format!("127.0.0.1:{audiosocket}").parse().unwrap(),
        }
    }

    fn status(&self) -> Option<Value> {
        let (code, body) = http_get(self.http, "/status").ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Wait until the appliance is ready, running from `slot`.
    fn wait_ready_on(&self, slot: &str, limit: Duration) -> Value {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.status() {
                if status["ready"] == true && status["software"]["slot"] == slot {
                    return status;
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!(
            "not ready on slot {slot} within {limit:?}; status {:?}; log:\n{}",
            self.status(),
            tail(
                &std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default(),
                30
            )
        );
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("serve.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = self.loop_child.wait();
    }
}

/// An Asterisk AudioSocket call that stays up until dropped.
fn audiosocket_call(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let uuid = [7u8; 16];
    let mut message = vec![0x01, 0, 16];
    message.extend_from_slice(&uuid);
    stream.write_all(&message).unwrap();
    stream
}

/// Wait for `needle` in the file `path`; its text.
fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "no {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_update_waits_for_calls_switches_and_a_version_that_is_never_ready_rolls_back() {
    require("sipp", "sip-tester");
    let dir = tempfile::tempdir().unwrap();
    let Appliance {
        config,
        http,
        vendor,
        ..
    } = Appliance::new(dir.path(), "");
    let good = dir.path().join("good.update");
    pack(&config, &stage(dir.path(), &[]), &vendor, &good, &[]);
    let broken = never_ready_bundle(dir.path(), &config, &vendor);

    let serve = Supervised::start(dir.path(), &config, http);
    serve.wait_ready_on("packaged", Duration::from_secs(300));
    let call = audiosocket_call(serve.audiosocket);
    let start = Instant::now();
    while serve.status().unwrap()["calls"]["active"] != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the call did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Apply: it waits for the call while new calls are refused.
    let apply_log = dir.path().join("apply.log");
    let mut apply = spawn_apply(&config, &good, 300, &apply_log);
    wait_for_text(
        &apply_log,
        "waiting for 1 call(s)",
        Duration::from_secs(120),
    );
    assert_eq!(RawSip::new(serve.sip).options_status(), Some(503));
    assert_eq!(serve.status().unwrap()["software"]["slot"], "packaged");
    drop(call);
    let done = apply.wait().unwrap();
    let said = std::fs::read_to_string(&apply_log).unwrap();
    assert!(done.success(), "{said}");
    let mut out = String::new();
    std::io::Read::read_to_string(apply.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("runs from slot a"), "{out}\n{said}");
    let status = serve.wait_ready_on("a", Duration::from_secs(10));
    assert_eq!(status["calls"]["draining"], false, "{status}");
    assert_eq!(status["software"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(RawSip::new(serve.sip).options_status(), Some(200));
    let shown = ok(&config, &["update", "status"]);
    assert!(shown.contains("from a, ready: true"), "{shown}");

    // The broken version goes into slot b, is not ready in time, and slot a runs again.
    let out = understudy(
        &config,
        &[
            "update",
            "apply",
            broken.to_str().unwrap(),
            "--ready-timeout",
            "25",
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("slot b was not ready within 25 s"), "{said}");
    assert!(said.contains("rolled back"), "{said}");
    serve.wait_ready_on("a", Duration::from_secs(10));
    let shown = ok(&config, &["update", "status"]);
    assert!(shown.contains("active:   slot a"), "{shown}");
    assert!(shown.contains("previous: packaged"), "{shown}");

    // A rollback by hand returns to the packaged install.
    let said = ok(&config, &["update", "rollback", "--ready-timeout", "300"]);
    assert!(said.contains("runs from slot packaged"), "{said}");
    serve.wait_ready_on("packaged", Duration::from_secs(10));
}

#[test]
fn a_switch_whose_watcher_dies_falls_back_once_the_new_version_has_had_its_starts() {
    let dir = tempfile::tempdir().unwrap();
    // The version on trial gets 20 s to be ready, and one start.
    let Appliance {
        config,
        slots,
        http,
        vendor,
    } = Appliance::new(dir.path(), "ready_timeout_s = 20\ntrial_starts = 1");
    let broken = never_ready_bundle(dir.path(), &config, &vendor);
    let serve = Supervised::start(dir.path(), &config, http);
    serve.wait_ready_on("packaged", Duration::from_secs(300));

    // Apply the broken version, then lose `update apply` (as in a power cut)
    // once it has switched and restarted the appliance.
    let apply_log = dir.path().join("apply.log");
    let mut apply = spawn_apply(&config, &broken, 600, &apply_log);
    wait_for_text(
        &apply_log,
        "waiting for slot a to be ready",
        Duration::from_secs(120),
    );
    apply.kill().unwrap();
    apply.wait().unwrap();
    assert!(slots.join("trial.json").exists(), "the switch is on trial");

    // Slot a is never ready: it exits after 20 s, its second start is one
    // too many, and the packaged version runs again by itself.
    let status = serve.wait_ready_on("packaged", Duration::from_secs(180));
    assert_eq!(status["calls"]["draining"], false, "{status}");
    assert!(!slots.join("trial.json").exists());
    let shown = ok(&config, &["update", "status"]);
    assert!(shown.contains("active:   packaged"), "{shown}");
    assert!(shown.contains("previous: slot a"), "{shown}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("the version on trial was not ready in time"),
        "{}",
        tail(&log, 30)
    );
    assert!(
        log.contains("the version before runs again"),
        "{}",
        tail(&log, 30)
    );
}
