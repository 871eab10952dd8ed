//! Shared by the safety-net tests (`tests/sip_safety_net.rs`): a call whose
//! engine stalls or dies mid-turn, measured at the caller's RTP leg (dead
//! air, what was heard, where the caller went), and the worker signals.
#![allow(dead_code)]

use crate::sip_support::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// The requirement: no silence longer than this between the end of the
/// caller's speech and the apology.
pub const MAX_DEAD_AIR: Duration = Duration::from_secs(2);

/// What the caller's RTP peer measured in a safety-net call.
pub struct Measured {
    pub speech_end: Instant,
    /// (first, last) speech packet of each part the caller heard.
    pub filler: Option<(Instant, Instant)>,
    pub apology: (Instant, Instant),
    /// What the caller heard, part by part.
    pub texts: Vec<String>,
    pub filler_logged: bool,
    pub error: String,
    pub metrics: String,
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3).round()
}

/// An engine worker's health, from `/status`.
pub fn worker_status(serve: &Serve, engine: &str) -> Value {
    let (_, body) = http_get(serve.http, "/status").unwrap();
    let status: Value = serde_json::from_str(&body).unwrap();
    let worker = status["engines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["engine"] == engine)
        .unwrap_or_else(|| panic!("{body}"));
    worker.clone()
}

/// The pid of an engine's worker process.
pub fn worker_pid(serve: &Serve, engine: &str) -> i32 {
    let worker = worker_status(serve, engine);
    worker["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid for {engine}: {worker}")) as i32
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a worker process this test's server started.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Wait until the peer has heard speech and then `quiet` without any.
pub fn wait_quiet(peer: &RtpPeer, quiet: Duration, limit: Duration) {
    let started = Instant::now();
    loop {
        let now = Instant::now();
        if let Some(last) = peer.last_audio_before(now) {
            if now - last > quiet {
                return;
            }
        }
        assert!(
            started.elapsed() < limit,
            "the greeting did not end within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Transcribe what the peer heard between two instants.
pub fn heard(peer: &RtpPeer, (from, to): (Instant, Instant), dir: &Path, name: &str) -> String {
    let pad = Duration::from_millis(200);
    let samples = peer.recording_between(Some(from - pad), Some(to + pad));
    let wav = dir.join(format!("{name}.wav"));
    write_wav(&wav, &samples);
    transcribe(&wav).to_lowercase()
}

/// The demo bot, except that its LLM may take longer to word a knowledge
/// answer than the turn deadline (`knowledge.llm_budget_ms`): a stalled LLM
/// then runs into the session's safety net, which is what these tests are
/// about (with the default budget the fact is said instead; that path is
/// `tests/dialog_models.rs`'s `a_slow_llm_answer_gives_way_to_the_fact`).
pub fn patient_demo_bundle(dir: &Path) -> std::path::PathBuf {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dialog/demo_bundle.yaml");
    let mut bundle: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(demo).unwrap()).unwrap();
    bundle["settings"]["knowledge"]["llm_budget_ms"] =
        serde_norway::Value::Number(60_000u64.into());
    let path = dir.join("patient-demo.yaml");
    std::fs::write(&path, serde_norway::to_string(&bundle).unwrap()).unwrap();
    path
}

/// A caller asks something the bot answers with the LLM, `fault` breaks an
/// engine mid-turn, and the human backup takes the call (bridge: the caller
/// hears the agent afterwards). Checks the caller's side of it all.
pub fn safety_net_call(fault: Fault) -> Measured {
    require_peers();
    let agent_port = free_port();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let bundle = patient_demo_bundle(dir);
    let serve = Serve::start(&format!(
        "transfer_mode = \"bridge\"\ntransfer_target = \"sip:agent@127.0.0.1:{agent_port}\"\n[bot]\nbundle = \"{}\"\n",
        bundle.display()
    ));
    let agent_dir = dir.join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    // The human answers, then speaks after a breath (so the caller's peer
    // hears the apology and the human apart).
    let mut voice = RtpCapture::new();
    // (SIPp starts a pcap at its first packet: the breath is silent audio.)
    voice.audio(&[0; 12_000]).audio(&say(
        "Hello, this is Sam from customer service.",
        &agent_dir,
    ));
    voice.write_pcap(&agent_dir.join("agent.pcap"));
    let mut target = Sipp::new("target", &agent_dir);
    target.port = agent_port;
    let agent = target.set("talk_ms", 6_000).spawn(None);

    let peer = RtpPeer::start();
    let caller = Sipp::new("call_external_media", dir)
        .key("rtp_port", peer.port)
        .arg("-recv_timeout")
        .arg("60000")
        .spawn(Some(serve.sip));
    let ended_before = serve.logged("call ended").len();
    peer.wait_remote(Duration::from_secs(10));
    wait_quiet(&peer, Duration::from_millis(1500), Duration::from_secs(20));

    let question = say("Do you sell gift cards?", dir);
    if let Fault::StallTts = fault {
        // The keypad menu's order status: its (pre-rendered) question first.
        let pressed = Instant::now();
        peer.press("1");
        peer.wait_audio_after(pressed, Duration::from_secs(10))
            .expect("no answer to key 1");
        wait_quiet(&peer, Duration::from_millis(1500), Duration::from_secs(20));
    }
    let asked = Instant::now();
    let stopped = match fault {
        Fault::StallLlm | Fault::KillLlm => None,
        Fault::StallTts => {
            let pid = worker_pid(&serve, "tts");
            signal(pid, libc::SIGSTOP);
            Some(pid)
        }
        Fault::KillStt => {
            let pid = worker_pid(&serve, "stt");
            signal(pid, libc::SIGSTOP);
            Some(pid)
        }
    };
    // The end of the caller's input: the last speech packet, or the last key.
    let speech_end = if let Fault::StallTts = fault {
        peer.press("12345#");
        peer.wait_pressed(Duration::from_secs(15))
    } else {
        peer.say(&question);
        peer.wait_said(asked, Duration::from_secs(15))
            .expect("the question had no speech")
    };
    let stalled = match fault {
        Fault::StallTts => stopped,
        Fault::StallLlm => {
            let pid = worker_pid(&serve, "llm");
            signal(pid, libc::SIGSTOP);
            Some(pid)
        }
        Fault::KillLlm => {
            let pid = worker_pid(&serve, "llm");
            let mut busy_since = None;
            loop {
                let busy = worker_status(&serve, "llm")["in_flight"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0;
                let now = Instant::now();
                busy_since = if busy { busy_since.or(Some(now)) } else { None };
                if busy_since.is_some_and(|t| now - t > Duration::from_millis(100)) {
                    break;
                }
                assert!(
                    speech_end.elapsed() < Duration::from_secs(10),
                    "the turn never asked the LLM"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            signal(pid, libc::SIGSTOP);
            let stopped_at = speech_end.elapsed();
            peer.wait_audio_after(speech_end, Duration::from_secs(5))
                .expect("no filler");
            signal(pid, libc::SIGKILL);
            eprintln!(
                "LLM stopped {:.0} ms, killed {:.0} ms after the end of speech",
                ms(stopped_at),
                ms(speech_end.elapsed())
            );
            None
        }
        Fault::KillStt => {
            // The turn's end is detected ~0.5 s after the speech: the
            // transcription is then waiting on the stopped worker.
            std::thread::sleep(Duration::from_millis(800).saturating_sub(speech_end.elapsed()));
            signal(stopped.unwrap(), libc::SIGKILL);
            None
        }
    };
    let safety = serve.wait_logged("engine failure: safety net", 1, Duration::from_secs(15));
    if let Some(pid) = stalled {
        signal(pid, libc::SIGCONT);
    }
    let agent = agent.wait();
    let sipp = caller.wait();
    let done = Instant::now();
    agent.assert_ok("the human receives the bridged call");
    assert!(
        agent.messages.contains("User-Agent: Understudy"),
        "the bridge INVITE came from the appliance"
    );
    sipp.assert_ok("the caller stays on the line until the appliance hangs up");
    assert!(
        sipp.flow().iter().any(|l| l.starts_with("BYE ")),
        "the appliance ended the call: {:?}",
        sipp.flow()
    );
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let call = ended.last().unwrap();
    assert_eq!(call["result"], "transferred", "never dropped: {call}");
    let turns = serve.logged("turn");
    let failed = turns
        .iter()
        .find(|t| t["safety_net"] == true)
        .unwrap_or_else(|| panic!("no safety-net turn: {turns:?}"));
    assert_eq!(failed["action"], "transfer", "{failed}");
    let error = safety[0]["error"].as_str().unwrap_or_default().to_string();

    // What the caller heard after the question: [filler], apology, agent.
    let parts = peer.utterances(speech_end, done, Duration::from_millis(800));
    let texts: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| heard(&peer, *p, dir, &format!("part{i}")))
        .collect();
    let timeline: Vec<String> = parts
        .iter()
        .zip(&texts)
        .map(|((a, b), t)| {
            format!(
                "{:.0}-{:.0} ms {t:?}",
                ms(*a - speech_end),
                ms(*b - speech_end)
            )
        })
        .collect();
    eprintln!(
        "{fault:?}: after the end of speech the caller heard:\n  {}",
        timeline.join("\n  ")
    );
    let is_apology =
        |t: &String| t.contains("sorry") || t.contains("trouble") || t.contains("colleague");
    let at = texts
        .iter()
        .position(is_apology)
        .unwrap_or_else(|| panic!("no apology heard: {timeline:?}"));
    let apology = parts[at];
    let filler = match at {
        // The apology may follow the filler without a pause (a worker that
        // dies while the filler plays): then they are one part.
        0 => None,
        1 => {
            assert!(
                texts[0].contains("moment"),
                "before the apology only the filler: {timeline:?}"
            );
            Some(parts[0])
        }
        _ => panic!("more than the filler before the apology: {timeline:?}"),
    };
    let filler_logged = !serve.logged("turn is slow: filler").is_empty();
    assert_eq!(
        filler.is_some() || texts[at].contains("moment"),
        filler_logged,
        "{timeline:?}"
    );
    let human = texts[at + 1..]
        .iter()
        .any(|t| t.contains("hello") || t.contains("customer") || t.contains("service"));
    assert!(
        human,
        "the caller hears the human after the apology: {timeline:?}"
    );

    // The requirement, measured where the caller is.
    let first = parts[0].0 - speech_end;
    let gap = peer.longest_gap(speech_end, apology.1);
    eprintln!(
        "{fault:?}: first audio {:.0} ms after the end of speech; {}apology at {:.0} ms; longest silence until the \
         apology ended {:.0} ms; error: {error}",
        ms(first),
        match filler {
            Some(f) => format!("filler {:.0}-{:.0} ms, {:.0} ms silence after it; ", ms(f.0 - speech_end), ms(f.1 - speech_end), ms(apology.0 - f.1)),
            None if texts[at].contains("moment") => "filler and apology back to back; ".into(),
            None => String::new(),
        },
        ms(apology.0 - speech_end),
        ms(gap),
    );
    assert!(
        first < MAX_DEAD_AIR,
        "{:?} of dead air before the first audio",
        first
    );
    assert!(
        gap < MAX_DEAD_AIR,
        "{gap:?} of dead air before the apology: {timeline:?}"
    );
    Measured {
        speech_end,
        filler,
        apology,
        texts,
        filler_logged,
        error,
        metrics: serve.metrics(),
    }
}

/// How the test breaks an engine mid-turn.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// SIGSTOP the LLM worker as the caller stops talking: the turn hangs.
    StallLlm,
    /// SIGKILL the STT worker while it holds the turn's transcription (it is
    /// stopped while the caller talks, so the request is surely in flight).
    KillStt,
    /// SIGKILL the LLM worker while it holds the turn's request, after the
    /// filler has started: it is stopped once the request has been in flight
    /// for 100 ms (pings are answered in a millisecond), and killed when
    /// the caller hears the filler.
    KillLlm,
    /// SIGSTOP the TTS worker before the caller keys in an order number:
    /// the turn decides at once (a flow turn on keys), but its answer ("I
    /// couldn't find order 1 2 3 4 5 ...") is not pre-rendered and its
    /// speech never comes.
    StallTts,
}
