//! Standby mode (docs/continuity.md): the SIP router in front owns routing.
//! The real Kamailio (dispatcher module, docs/examples/kamailio-dispatcher.cfg
//! as shipped) probes the real `understudy serve` with OPTIONS every second
//! and sends INVITEs only while it answers 200:
//!
//! a. ready: Kamailio marks it active and a SIPp call through Kamailio is
//!    answered by Understudy;
//! b. full (capacity 1, a long call sent to Understudy directly): OPTIONS
//!    503, Kamailio marks it inactive, and a call through Kamailio gets 503
//!    from Kamailio itself without reaching Understudy;
//! c. the long call ends: OPTIONS 200, Kamailio marks it active again and
//!    the next call through Kamailio is answered.
//!
//! The seconds from Understudy's first 503 to Kamailio's "inactive", and
//! from its first 200 to "active", are printed (docs/continuity.md quotes them).

mod sip_support;

use sip_support::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped example, run as is with the test's own defines in front.
const TEMPLATE: &str = "docs/examples/kamailio-dispatcher.cfg";

/// How long Kamailio may take to notice a change (ping interval 1 s,
/// thresholds 1: about a second is expected).
const NOTICE_LIMIT: Duration = Duration::from_secs(8);

#[test]
fn kamailio_dispatcher_follows_understudy_options() {
    require_peers();
    require("kamailio", "kamailio");
    require("kamcmd", "kamailio");
    let mut serve = Serve::spawn("test", "capacity = 1\nretry_after_s = 5\n");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let kamailio = Kamailio::start(&dir.join("kamailio"), &[serve.sip]);
    eprintln!("kamailio on {}, understudy on {}", kamailio.sip, serve.sip);

    // While the models load Understudy answers 503 (engines not ready):
    // Kamailio must not count it in.
    let loading = Instant::now();
    let mut inactive_while_loading = false;
    while !http_get(serve.http, "/readyz")
        .map(|(code, _)| code == 200)
        .unwrap_or(false)
    {
        inactive_while_loading |= kamailio
            .flags(serve.sip)
            .is_some_and(|f| f.starts_with('I'));
        if inactive_while_loading || loading.elapsed() > Duration::from_secs(600) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    serve.wait_ready(Duration::from_secs(600));
    let ready_at = Instant::now();
    if ready_at - loading > NOTICE_LIMIT {
        assert!(
            inactive_while_loading,
            "Kamailio kept Understudy active while its models loaded"
        );
    }

    // a. Ready: active in the dispatcher, calls through Kamailio answered.
    let active_at = kamailio.wait_state(serve.sip, "AP", NOTICE_LIMIT);
    eprintln!(
        "understudy ready -> kamailio active: {:.2} s",
        (active_at - ready_at).as_secs_f64()
    );
    assert!(
        options_from_kamailio(&serve) > 0,
        "Kamailio's probes were not answered 200:\n{}",
        serve.metrics()
    );
    call_through(&kamailio, &serve, dir, "ready");
    // That call held the only slot, so the probes saw 503 meanwhile: wait
    // for the slot to be free and Kamailio to have seen it.
    let probe = RawSip::new(serve.sip);
    let free_at = wait_options(&probe, 200, Duration::from_secs(10));
    let up_at = kamailio.wait_state(serve.sip, "AP", NOTICE_LIMIT);
    eprintln!(
        "MEASURED understudy OPTIONS 200 -> kamailio marks it active: {:.2} s",
        (up_at - free_at).as_secs_f64()
    );

    // b. Full: a long call straight to Understudy takes the only slot.
    let long_dir = dir.join("long");
    std::fs::create_dir_all(&long_dir).unwrap();
    silent_caller(&long_dir);
    let ended_before = serve.logged("call ended").len();
    let long_call = Sipp::new("call", &long_dir)
        .set("greeting_ms", 14_000)
        .set("reply_ms", 1_500)
        .spawn(Some(serve.sip));
    let full_at = wait_options(&probe, 503, Duration::from_secs(15));
    let down_at = kamailio.wait_state(serve.sip, "IP", NOTICE_LIMIT);
    eprintln!(
        "MEASURED understudy OPTIONS 503 -> kamailio marks it inactive: {:.2} s",
        (down_at - full_at).as_secs_f64()
    );
    let incoming = serve.logged("incoming call").len();
    let refused = serve.logged("INVITE refused: 503").len();
    let busy = Sipp::new("busy", dir).run(kamailio.sip);
    busy.assert_ok("INVITE through Kamailio while Understudy is full: 503 with Retry-After");
    let answer = busy
        .messages
        .split("SIP/2.0 503")
        .nth(1)
        .unwrap_or_default();
    assert!(
        answer.contains("No destination available") && !busy.messages.contains("at capacity"),
        "the 503 should come from Kamailio, not be Understudy's relayed:\n{}",
        busy.messages
    );
    // Understudy never saw that INVITE (it logs every one it admits or refuses).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        serve.logged("incoming call").len(),
        incoming,
        "the INVITE reached Understudy\n{}",
        serve.log_tail(20)
    );
    assert_eq!(
        serve.logged("INVITE refused: 503").len(),
        refused,
        "the INVITE reached Understudy\n{}",
        serve.log_tail(20)
    );
    assert_eq!(
        serve.logged("call ended").len(),
        ended_before,
        "the long call ended too early: the check above proves nothing"
    );
    assert_eq!(kamailio.flags(serve.sip).as_deref(), Some("IP"));

    // c. The long call ends: the slot is free, OPTIONS 200, calls resume.
    long_call
        .wait()
        .assert_ok("the long call straight to Understudy");
    serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let free_at = wait_options(&probe, 200, Duration::from_secs(10));
    let up_at = kamailio.wait_state(serve.sip, "AP", NOTICE_LIMIT);
    eprintln!(
        "MEASURED understudy OPTIONS 200 -> kamailio marks it active: {:.2} s",
        (up_at - free_at).as_secs_f64()
    );
    call_through(&kamailio, &serve, dir, "after the slot came free");
}

/// A SIPp call to Kamailio that Understudy answers; its "incoming call"
/// names Kamailio as the peer.
fn call_through(kamailio: &Kamailio, serve: &Serve, dir: &Path, when: &str) {
    let call_dir = dir.join(format!("call-{}", serve.logged("incoming call").len()));
    std::fs::create_dir_all(&call_dir).unwrap();
    silent_caller(&call_dir);
    let incoming = serve.logged("incoming call").len();
    let ended = serve.logged("call ended").len();
    let r = Sipp::new("call", &call_dir)
        .set("greeting_ms", 1_500)
        .set("reply_ms", 1_000)
        .run(kamailio.sip);
    r.assert_ok(&format!("a call through Kamailio ({when})"));
    assert!(
        r.flow().iter().any(|l| l.starts_with("SIP/2.0 200")),
        "{:?}",
        r.flow()
    );
    let calls = serve.wait_logged("incoming call", incoming + 1, Duration::from_secs(5));
    let from = calls.last().unwrap()["from"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        from,
        kamailio.sip.to_string(),
        "the call did not come through Kamailio"
    );
    let done = serve.wait_logged("call ended", ended + 1, Duration::from_secs(5));
    assert_eq!(done.last().unwrap()["result"], "completed", "{done:?}");
}

/// One second of silence as the caller's RTP.
fn silent_caller(dir: &Path) {
    let mut rtp = RtpCapture::new();
    rtp.audio(&[0; 8000]);
    rtp.write_pcap(&dir.join("caller.pcap"));
}

/// How many OPTIONS Understudy has answered 200 (Kamailio's probes, here).
fn options_from_kamailio(serve: &Serve) -> u64 {
    serve
        .metrics()
        .lines()
        .filter(|l| l.starts_with("understudy_sip_options_total") && l.contains("\"200\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Probe Understudy directly until it answers `status`; when it did.
fn wait_options(probe: &RawSip, status: u16, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if options_once(probe) == Some(status) {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "Understudy's OPTIONS did not turn {status} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One OPTIONS; the status as soon as its answer arrives.
fn options_once(probe: &RawSip) -> Option<u16> {
    let branch: u32 = rand::random();
    let call_id = format!("standby-{branch}");
    probe.send(&format!(
        "OPTIONS sip:understudy@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}\r\n\
         From: <sip:probe@{me}>;tag=p{branch}\r\nTo: <sip:understudy@{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        to = probe.to,
        me = probe.local
    ));
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut buf = [0u8; 8192];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        probe
            .socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok((n, _)) = probe.socket.recv_from(&mut buf) else {
            break;
        };
        let reply = String::from_utf8_lossy(&buf[..n]);
        if reply.contains(&call_id) {
            return status_of(&reply);
        }
    }
    None
}

/// A running Kamailio on loopback: the shipped dispatcher example with this
/// test's listen address, destination list and control socket.
struct Kamailio {
    child: Child,
    sip: SocketAddr,
    ctl: String,
    log: PathBuf,
}

impl Kamailio {
    fn start(dir: &Path, destinations: &[SocketAddr]) -> Kamailio {
        std::fs::create_dir_all(dir).unwrap();
        let sip: SocketAddr = format!("{LOOPBACK}:{}", free_port()).parse().unwrap();
        let list = dir.join("dispatcher.list");
        let lines: Vec<String> = destinations
            .iter()
            .map(|d| format!("1 sip:{d} 0 0\n"))
            .collect();
        std::fs::write(&list, lines.concat()).unwrap();
        let ctl = format!("unix:{}", dir.join("kamailio_ctl").display());
        let template =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(TEMPLATE)).unwrap();
        let (first, rest) = template.split_once('\n').unwrap();
        assert_eq!(
            first, "#!KAMAILIO",
            "{TEMPLATE} should start with #!KAMAILIO"
        );
        let config = dir.join("kamailio.cfg");
        std::fs::write(
            &config,
            format!(
                "{first}\n#!define LISTEN udp:{sip}\n#!define DS_LIST_FILE \"{list}\"\n#!define CTL_SOCKET \"{ctl}\"\n\
                 #!define PING_INTERVAL 1\n{rest}",
                list = list.display()
            ),
        )
        .unwrap();
        let log = dir.join("kamailio.log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&config)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-Y")
            .arg(dir)
            .arg("-w")
            .arg(dir)
            // Foreground, log to stderr; small memory pools.
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("kamailio.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start kamailio");
        let mut kamailio = Kamailio {
            child,
            sip,
            ctl,
            log,
        };
        let started = Instant::now();
        while kamailio.list().is_none() {
            if let Some(status) = kamailio.child.try_wait().unwrap() {
                panic!(
                    "kamailio exited ({status}):\n{}",
                    tail(&kamailio.log_text(), 30)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "kamailio's control socket never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kamailio
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kamcmd dispatcher.list`, if Kamailio answers.
    fn list(&self) -> Option<String> {
        let out = Command::new("kamcmd")
            .args(["-s", &self.ctl, "dispatcher.list"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The dispatcher's FLAGS for this destination: "AP" active, "IP"
    /// inactive (both probed), "TP" trying...
    fn flags(&self, destination: SocketAddr) -> Option<String> {
        let list = self.list()?;
        let uri = format!("URI: sip:{destination}");
        let mut lines = list.lines().skip_while(|l| l.trim() != uri);
        lines.next()?;
        lines.find_map(|l| l.trim().strip_prefix("FLAGS: ").map(str::to_string))
    }

    /// Poll until the destination's flags are `state` ("AP": active, "IP":
    /// inactive, both probed; "AX" is the state before any probe); when
    /// it was seen.
    fn wait_state(&self, destination: SocketAddr, state: &str, limit: Duration) -> Instant {
        let started = Instant::now();
        loop {
            let flags = self.flags(destination);
            if flags.as_deref() == Some(state) {
                return Instant::now();
            }
            assert!(
                started.elapsed() < limit,
                "kamailio did not mark {destination} {state} within {limit:?} (flags {flags:?})\n{}\n--- kamailio log\n{}",
                self.list().unwrap_or_default(),
                tail(&self.log_text(), 30)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- kamailio log (tail)\n{}", tail(&self.log_text(), 40));
        }
        // SIGTERM: the main process stops its children; then make sure.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
