//! Shared by the SIP integration tests: the real `understudy serve` with the
//! test model pack, real SIPp and baresip peers, caller audio made with
//! espeak-ng + sox, and RTP captures (pcap) for SIPp to play. Loopback only.
//!
//! A missing peer binary or model pack fails the test with what to install.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};
use understudy::audio::g711::Law;
use understudy::transport::rtp::dtmf;
use understudy::transport::rtp::packet::RtpSender;

mod baresip;
mod capture;
mod raw;
mod raw_dialog;
mod sipp;
#[allow(unused_imports)]
pub use baresip::*;
#[allow(unused_imports)]
pub use capture::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use raw_dialog::*;
#[allow(unused_imports)]
pub use sipp::*;

pub mod rtp_peer;
#[allow(unused_imports)]
pub use rtp_peer::RtpPeer;

pub const LOOPBACK: &str = "127.0.0.1";

#[path = "../support/require.rs"]
mod require;
pub use require::require;

/// The peers every SIP test needs.
pub fn require_peers() {
    require("sipp", "sip-tester");
    require("espeak-ng", "espeak-ng");
    require("sox", "sox");
}

/// The next port to try; each test process starts at its own offset.
static NEXT: AtomicU16 = AtomicU16::new(0);

/// A port free for both UDP and TCP on loopback, never handed out twice.
pub fn free_port() -> u16 {
    if NEXT.load(Ordering::Relaxed) == 0 {
        let base = 21000 + (std::process::id() % 200) as u16 * 100;
        let _ = NEXT.compare_exchange(0, base, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..2000 {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        let udp = UdpSocket::bind((LOOPBACK, port));
        let tcp = TcpListener::bind((LOOPBACK, port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port");
}

/// `n` consecutive free ports (an RTP range; SIPp's media port, which also
/// takes the ports above it for RTCP and video), never handed out again.
pub fn free_range(n: u16) -> (u16, u16) {
    loop {
        let first = free_port();
        let all_free = (first..first + n).all(|p| UdpSocket::bind((LOOPBACK, p)).is_ok());
        NEXT.fetch_max(first + n, Ordering::Relaxed);
        if all_free {
            return (first, first + n - 1);
        }
    }
}

/// A running `understudy serve` on loopback with the test pack.
pub struct Serve {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// Where Asterisk AudioSocket calls connect.
    pub audiosocket: SocketAddr,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Serve {
    /// Start with the test pack and `sip_config` added to the `[sip]` section;
    /// wait until ready.
    pub fn start(sip_config: &str) -> Serve {
        Serve::start_with_pack("test", sip_config)
    }

    /// Start with the model pack `pack` (`test` or `default`) and `sip_config`
    /// added to the `[sip]` section; wait until ready.
    pub fn start_with_pack(pack: &str, sip_config: &str) -> Serve {
        let mut serve = Serve::spawn(pack, sip_config);
        serve.wait_ready(Duration::from_secs(600));
        serve
    }

    /// Start without waiting for readiness.
    pub fn spawn(pack: &str, sip_config: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let sip_port = free_port();
        let http_port = free_port();
        let audiosocket_port = free_port();
        let (rtp_min, rtp_max) = free_range(40);
        let config = dir.path().join("understudy.toml");
        std::fs::write(
            &config,
            format!("[sip]\nrtp_port_min = {rtp_min}\nrtp_port_max = {rtp_max}\nrtp_bind = \"127.0.0.1\"\n{sip_config}\n"),
        )
        .unwrap();
        let log = dir.path().join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_understudy"))
            .arg("--config")
            .arg(&config)
            .args(["--pack", pack, "--log-format", "json", "serve"])
            .args(["--sip-listen", &format!("{LOOPBACK}:{sip_port}")])
            .args(["--http-listen", &format!("{LOOPBACK}:{http_port}")])
            .args([
                "--audiosocket-listen",
                &format!("{LOOPBACK}:{audiosocket_port}"),
            ])
            // rsipstack logs every message at info.
            .env("UNDERSTUDY_LOG", "info,rsipstack=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start understudy serve");
        Serve {
            child,
            sip: format!("{LOOPBACK}:{sip_port}").parse().unwrap(),
            http: format!("{LOOPBACK}:{http_port}").parse().unwrap(),
            audiosocket: format!("{LOOPBACK}:{audiosocket_port}").parse().unwrap(),
            dir,
            log,
        }
    }

    pub fn wait_ready(&mut self, limit: Duration) {
        let http = self.http;
        self.wait_ready_by(limit, || {
            http_get(http, "/readyz")
                .map(|(code, _)| code == 200)
                .unwrap_or(false)
        });
    }

    /// Wait until `ready()` says so (e.g. `/readyz` over HTTPS), failing
    /// when `serve` exits first or `limit` passes.
    pub fn wait_ready_by(&mut self, limit: Duration, ready: impl Fn() -> bool) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "understudy serve exited ({status}) before it was ready; is the model pack installed \
                     (`understudy models fetch --pack test`)?\n{}",
                    self.log_tail(40)
                );
            }
            if ready() {
                eprintln!(
                    "understudy serve ready in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                started.elapsed() < limit,
                "understudy serve not ready after {limit:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every JSON log event.
    pub fn events(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Log events with this message, as their fields.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter_map(|e| {
                let fields = e.get("fields")?;
                (fields.get("message")?.as_str()? == message).then(|| fields.clone())
            })
            .collect()
    }

    /// Log events with this message, with their time (seconds into the day).
    pub fn logged_at(&self, message: &str) -> Vec<(f64, Value)> {
        self.events()
            .into_iter()
            .filter_map(|e| {
                let fields = e.get("fields")?;
                if fields.get("message")?.as_str()? != message {
                    return None;
                }
                // "2026-01-01T12:34:56.789Z"
                let clock = e
                    .get("timestamp")?
                    .as_str()?
                    .split('T')
                    .nth(1)?
                    .trim_end_matches('Z');
                let mut parts = clock.split(':').map(|p| p.parse::<f64>().unwrap_or(0.0));
                let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
                Some((h * 3600.0 + m * 60.0 + s, fields.clone()))
            })
            .collect()
    }

    /// Wait until `message` has been logged `count` times in all.
    pub fn wait_logged(&self, message: &str, count: usize, limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let found = self.logged(message);
            if found.len() >= count {
                return found;
            }
            assert!(
                started.elapsed() < limit,
                "waited {limit:?} for {count} x {message:?} in the log, got {}\n{}",
                found.len(),
                self.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Send `signal` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// The configuration file it was started with.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("understudy.toml")
    }

    /// The metrics page.
    pub fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- understudy serve log (tail)\n{}", self.log_tail(80));
        }
        // SIGTERM lets it stop its workers; then make sure.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One question on a new SIP call (SIPp signalling, an RTP peer's audio,
/// `speech` at 8 kHz) once the greeting is over: voice-to-voice at the RTP
/// leg (ms; end of speech by level at the peer, to the answer's first
/// packet) and the caller turns the appliance logged for the call.
pub fn ask_over_sip(
    serve: &Serve,
    dir: &Path,
    speech: &[i16],
    label: &str,
) -> (Option<f64>, Vec<Value>) {
    let turns_before = serve.logged("turn").len();
    let peer = RtpPeer::start();
    // Hold the call through the greeting, the question and the answer.
    let hold_ms = 14_000 + speech.len() as u64 / 8;
    let caller = Sipp::new("call_external_media", dir)
        .key("rtp_port", peer.port)
        .arg("-recv_timeout")
        .arg(hold_ms.to_string())
        .spawn(Some(serve.sip));
    peer.wait_remote(Duration::from_secs(10));
    peer.wait_quiet(Duration::from_millis(1500), Duration::from_secs(30));
    let asked = Instant::now();
    peer.say(speech);
    let end = peer
        .wait_said(asked, Duration::from_secs(20))
        .expect("the question had no speech");
    let answer = peer.wait_audio_after(end, Duration::from_secs(10));
    let v2v = answer.map(|a| (a - end).as_secs_f64() * 1e3);
    let started = Instant::now();
    let logged = loop {
        let found: Vec<Value> = serve.logged("turn")[turns_before..]
            .iter()
            .filter(|t| t["turn"].as_u64().unwrap_or(0) >= 1)
            .cloned()
            .collect();
        if !found.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break found;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    caller.wait().assert_ok(label);
    (v2v, logged)
}

/// A plain HTTP/1.0 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// An HTTP/1.0 request with an empty body and `headers` (each ending in
/// CRLF): (status, body).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    http_request_from(None, addr, method, path, headers)
}

/// [`http_request`] from the loopback address `from` (127.0.0.2 stands for
/// a host on the network) when given.
pub fn http_request_from(
    from: Option<&str>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<(u16, String)> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(from) = from {
        socket.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())?;
    }
    socket.connect_timeout(&addr.into(), Duration::from_secs(2))?;
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}Content-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Transcribe a recording with the local STT (the test pack). A whole call
/// is long for a live-turn deadline: allow it time.
pub fn transcribe(wav: &Path) -> String {
    let config = wav.with_extension("transcribe.toml");
    std::fs::write(&config, "[engines.timeouts_ms]\nstt = 120000\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(&config)
        .args(["--pack", "test", "transcribe"])
        .arg(wav)
        .env("UNDERSTUDY_LOG", "warn")
        .output()
        .expect("cannot run understudy transcribe");
    assert!(
        out.status.success(),
        "understudy transcribe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A self-signed server certificate for 127.0.0.1 and its key (PEM files in `dir`).
pub fn certificate(dir: &Path) -> (String, String) {
    require("openssl", "openssl");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            // A server's own certificate, not a CA's: rustls clients refuse
            // a CA certificate presented by a server.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}
