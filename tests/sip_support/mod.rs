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

pub mod rtp_peer;
#[allow(unused_imports)]
pub use rtp_peer::RtpPeer;

pub const LOOPBACK: &str = "127.0.0.1";

/// Fail with an install hint when a peer program is missing.
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "{program} is required for this test: apt-get install {package}"
    );
}

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
            dir,
            log,
        }
    }

    pub fn wait_ready(&mut self, limit: Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "understudy serve exited ({status}) before it was ready; is the model pack installed \
                     (`understudy models fetch --pack test`)?\n{}",
                    self.log_tail(40)
                );
            }
            if http_get(self.http, "/readyz")
                .map(|(code, _)| code == 200)
                .unwrap_or(false)
            {
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

/// A plain HTTP/1.0 GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
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

/// Speech for `text` at 8 kHz, as a telephone caller would send it.
pub fn say(text: &str, dir: &Path) -> Vec<i16> {
    say_as(text, dir, "en-us")
}

/// Speech for `text` at 8 kHz in espeak-ng's `voice` (e.g. `en-gb` for a
/// cloud bot that must not sound like the caller, nor like Piper).
pub fn say_as(text: &str, dir: &Path, voice: &str) -> Vec<i16> {
    let raw = dir.join("say-raw.wav");
    let wav = dir.join("say-8k.wav");
    let ok = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "140", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .unwrap();
    assert!(ok.success(), "espeak-ng failed");
    let ok = Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer"])
        .arg(&wav)
        .status()
        .unwrap();
    assert!(ok.success(), "sox failed");
    let mut reader = hound::WavReader::open(&wav).unwrap();
    reader.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// Write 8 kHz mono s16 audio as WAV.
pub fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// An RTP stream as SIPp plays it: packets with their send times.
pub struct RtpCapture {
    sender: RtpSender,
    at: Duration,
    packets: Vec<(Duration, Vec<u8>)>,
}

impl Default for RtpCapture {
    fn default() -> Self {
        Self::new()
    }
}

impl RtpCapture {
    pub fn new() -> Self {
        RtpCapture {
            sender: RtpSender::new(),
            at: Duration::ZERO,
            packets: vec![],
        }
    }

    /// PCMU packets of 20 ms for `samples` (8 kHz).
    pub fn audio(&mut self, samples: &[i16]) -> &mut Self {
        self.sender.mark_talkspurt();
        for chunk in samples.chunks(160) {
            let mut frame = chunk.to_vec();
            frame.resize(160, 0);
            let packet = self.sender.packet(0, &Law::Mu.encode(&frame), 160);
            self.packets.push((self.at, packet));
            self.at += Duration::from_millis(20);
        }
        self
    }

    /// Nothing sent for a while (DTX); the RTP clock moves on.
    pub fn pause(&mut self, ms: u64) -> &mut Self {
        self.sender.skip((ms * 8) as u32);
        self.at += Duration::from_millis(ms);
        self
    }

    /// Keys as RFC 4733 events (payload type 101), 300 ms apart.
    pub fn keys(&mut self, keys: &str) -> &mut Self {
        for key in keys.chars() {
            let start = self.sender.timestamp();
            let packets = dtmf::key_packets(key, 100).unwrap();
            for (i, payload) in packets.iter().enumerate() {
                let packet = self.sender.packet_at(101, payload, start, i == 0);
                self.packets.push((self.at, packet));
                // The three end packets go out together.
                if i < packets.len() - 3 {
                    self.at += Duration::from_millis(20);
                    self.sender.skip(160);
                }
            }
            self.pause(300);
        }
        self
    }

    /// A pcap file (Ethernet/IPv4/UDP) SIPp's play_pcap_audio reads.
    pub fn write_pcap(&self, path: &Path) {
        let mut out = Vec::new();
        // Global header: magic, v2.4, GMT, accuracy, snaplen, Ethernet.
        out.extend(0xa1b2c3d4u32.to_le_bytes());
        out.extend(2u16.to_le_bytes());
        out.extend(4u16.to_le_bytes());
        out.extend(0i32.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for (at, rtp) in &self.packets {
            let udp_len = 8 + rtp.len();
            let mut frame = vec![0u8; 12];
            frame.extend([0x08, 0x00]);
            // IPv4 header (no checksum: SIPp does not check it).
            frame.extend([0x45, 0]);
            frame.extend(((20 + udp_len) as u16).to_be_bytes());
            frame.extend([0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
            frame.extend(6000u16.to_be_bytes());
            frame.extend(6002u16.to_be_bytes());
            frame.extend((udp_len as u16).to_be_bytes());
            frame.extend([0, 0]);
            frame.extend(rtp);
            out.extend((at.as_secs() as u32).to_le_bytes());
            out.extend(at.subsec_micros().to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend((frame.len() as u32).to_le_bytes());
            out.extend(frame);
        }
        std::fs::write(path, out).unwrap();
    }

    pub fn duration(&self) -> Duration {
        self.at
    }

    /// A network that jitters and loses packets, as `tc netem delay 0
    /// <max> loss <percent>` would: each packet leaves up to `max` late
    /// (uniformly, so packets also overtake each other) and `loss_percent`
    /// of them never. Deterministic per `seed`. Returns the longest gap
    /// between two packets on the wire and how many were lost.
    pub fn jitter(&mut self, max: Duration, loss_percent: f64, seed: u64) -> (Duration, usize) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let before = self.packets.len();
        let mut packets: Vec<(Duration, Vec<u8>)> = std::mem::take(&mut self.packets)
            .into_iter()
            .filter_map(|(at, p)| {
                let kept = rng.random::<f64>() * 100.0 >= loss_percent;
                kept.then(|| (at + max.mul_f64(rng.random::<f64>()), p))
            })
            .collect();
        packets.sort_by_key(|(at, _)| *at);
        let lost = before - packets.len();
        let longest = packets
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or_default();
        self.packets = packets;
        (longest, lost)
    }
}

/// One SIPp run: a scenario from tests/sipp, copied into `dir` (SIPp looks
/// for the pcap files next to the scenario).
pub struct Sipp {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub media_port: u16,
    args: Vec<String>,
}

impl Sipp {
    pub fn new(scenario: &str, dir: &Path) -> Sipp {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sipp")
            .join(format!("{scenario}.xml"));
        std::fs::copy(&src, dir.join(format!("{scenario}.xml")))
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        Sipp {
            name: scenario.into(),
            dir: dir.into(),
            port: free_port(),
            media_port: free_range(4).0,
            args: vec![],
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn set(self, var: &str, value: impl ToString) -> Self {
        self.arg("-set").arg(var).arg(value.to_string())
    }

    pub fn key(self, key: &str, value: impl ToString) -> Self {
        self.arg("-key").arg(key).arg(value.to_string())
    }

    fn command(&self, remote: Option<SocketAddr>) -> Command {
        let mut c = Command::new("sipp");
        c.current_dir(&self.dir)
            .arg("-sf")
            .arg(format!("{}.xml", self.name))
            .args(["-m", "1", "-i", LOOPBACK, "-mi", LOOPBACK, "-nostdin"])
            .args([
                "-p",
                &self.port.to_string(),
                "-mp",
                &self.media_port.to_string(),
            ])
            .args(["-timeout", "120s", "-timeout_error"])
            .args(["-trace_msg", "-message_file", &format!("{}.msg", self.name)])
            .args(["-trace_err", "-error_file", &format!("{}.err", self.name)])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(remote) = remote {
            c.arg(remote.to_string());
        }
        c
    }

    /// Run against `remote` to the end.
    pub fn run(&self, remote: SocketAddr) -> SippResult {
        let out = self
            .command(Some(remote))
            .output()
            .expect("cannot run sipp");
        self.result(out)
    }

    /// Start in the background (a UAS waits for calls when `remote` is None).
    pub fn spawn(&self, remote: Option<SocketAddr>) -> SippRun {
        SippRun {
            child: self.command(remote).spawn().expect("cannot run sipp"),
            sipp: self.clone_meta(),
        }
    }

    fn clone_meta(&self) -> Sipp {
        Sipp {
            name: self.name.clone(),
            dir: self.dir.clone(),
            port: self.port,
            media_port: self.media_port,
            args: vec![],
        }
    }

    fn result(&self, out: Output) -> SippResult {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.join(format!("{}.{ext}", self.name)))
                .unwrap_or_default()
        };
        SippResult {
            name: self.name.clone(),
            ok: out.status.success(),
            messages: read("msg"),
            errors: read("err"),
            output: String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        }
    }
}

pub struct SippRun {
    child: Child,
    sipp: Sipp,
}

impl SippRun {
    /// SIGKILL: the peer vanishes mid-call (no BYE, no more RTP).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait(self) -> SippResult {
        let out = self.child.wait_with_output().unwrap();
        self.sipp.result(out)
    }
}

/// What a SIPp run left behind.
pub struct SippResult {
    pub name: String,
    pub ok: bool,
    /// Every message sent and received (-trace_msg).
    pub messages: String,
    pub errors: String,
    pub output: String,
}

impl SippResult {
    /// Fail with SIPp's own account of what went wrong.
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(
            self.ok,
            "SIPp {} ({what}) failed:\n--- errors\n{}\n--- messages (tail)\n{}",
            self.name,
            self.errors,
            tail(&self.messages, 60)
        );
        self
    }

    /// The start lines of the SIP messages exchanged, in order.
    pub fn flow(&self) -> Vec<String> {
        self.messages
            .lines()
            .filter(|l| l.starts_with("SIP/2.0 ") || l.split_whitespace().nth(2) == Some("SIP/2.0"))
            .map(str::to_string)
            .collect()
    }
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

/// Send raw datagrams and stream bytes at a SIP port (garbage, truncations).
pub fn send_raw(to: SocketAddr, messages: &[Vec<u8>]) -> Vec<String> {
    let udp = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 4096];
    for m in messages {
        udp.send_to(m, to).unwrap();
        while let Ok((n, _)) = udp.recv_from(&mut buf) {
            replies.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if let Ok(mut tcp) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            let _ = tcp.write_all(m);
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
            if let Ok(n) = tcp.read(&mut buf) {
                if n > 0 {
                    replies.push(
                        String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    replies
}

/// baresip as a real softphone: plays a WAV as the caller's voice, records
/// what it hears (sndfile), takes keys through its UDP console.
pub struct Baresip {
    child: Child,
    pub dir: PathBuf,
    console: SocketAddr,
}

impl Baresip {
    /// Call `uri`; the call hangs up when `voice` (8 kHz WAV) has been played.
    pub fn call(dir: &Path, uri: &str, voice: &Path) -> Baresip {
        require("baresip", "baresip");
        // baresip takes the SIP port for UDP/TCP and the one above for TLS.
        let sip_port = free_range(2).0;
        let console_port = free_port();
        let config = format!(
            "module_path\t/usr/lib/baresip/modules\n\
             poll_method\tepoll\n\
             sip_listen\t{LOOPBACK}:{sip_port}\n\
             audio_player\talsa,null\n\
             audio_alert\talsa,null\n\
             audio_source\taufile,{voice}\n\
             module\tg711.so\nmodule\taufile.so\nmodule\talsa.so\nmodule\tsndfile.so\nmodule\tcons.so\n\
             module_app\taccount.so\nmodule_app\tmenu.so\n\
             cons_listen\t{LOOPBACK}:{console_port}\n\
             snd_path\t{dir}\n",
            voice = voice.display(),
            dir = dir.display()
        );
        std::fs::write(dir.join("config"), config).unwrap();
        // No registration; PCMU like a typical trunk.
        std::fs::write(
            dir.join("accounts"),
            format!("<sip:caller@{LOOPBACK}>;regint=0;audio_codecs=PCMU\n"),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .args(["-n", LOOPBACK, "-e", &format!("/dial {uri}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start baresip");
        Baresip {
            child,
            dir: dir.into(),
            console: format!("{LOOPBACK}:{console_port}").parse().unwrap(),
        }
    }

    /// Press a key during the call (sent as RFC 4733 events).
    pub fn press(&self, key: char) {
        let s = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        s.send_to(key.to_string().as_bytes(), self.console).unwrap();
    }

    /// Wait for baresip to end (it quits when told; the call ends with the WAV).
    pub fn wait_call_end(&mut self, limit: Duration) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.log().contains("terminated (duration") {
                return;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the baresip call did not end within {limit:?}\n{}",
            tail(&self.log(), 30)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }

    /// What baresip heard (its decoded-audio dump).
    pub fn recording(&self) -> PathBuf {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        found.sort();
        found
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("baresip recorded nothing\n{}", tail(&self.log(), 30)))
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- baresip log (tail)\n{}", tail(&self.log(), 40));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP socket talking raw SIP, for what SIPp cannot show: the timing of
/// retransmissions, answers before readiness.
pub struct RawSip {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub to: SocketAddr,
}

impl RawSip {
    pub fn new(to: SocketAddr) -> RawSip {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let local = socket.local_addr().unwrap();
        RawSip { socket, local, to }
    }

    pub fn send(&self, message: &str) {
        self.socket.send_to(message.as_bytes(), self.to).unwrap();
    }

    /// Everything received for `window`, with arrival times.
    pub fn receive_for(&self, window: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(_) => break,
            }
        }
        out
    }

    /// An out-of-dialog OPTIONS: the status code, if any answer came.
    pub fn options_status(&self) -> Option<u16> {
        let branch: u32 = rand::random();
        self.send(&format!(
            "OPTIONS sip:understudy@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}\r\n\
             From: <sip:probe@{me}>;tag=p{branch}\r\nTo: <sip:understudy@{to}>\r\nCall-ID: probe-{branch}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = self.to,
            me = self.local
        ));
        let replies = self.receive_for(Duration::from_millis(300));
        replies.iter().find_map(|(_, r)| status_of(r))
    }
}

/// The status code of a SIP response.
pub fn status_of(message: &str) -> Option<u16> {
    let line = message.lines().next()?;
    line.strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A header's value (first occurrence, case-insensitive name).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
