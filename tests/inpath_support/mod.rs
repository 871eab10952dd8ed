//! Shared by the in-path tests (`tests/continuity_inpath.rs`): a SIPp cloud
//! bot with its recorded prompts, `understudy serve` in in-path mode, the
//! caller (SIPp signalling, the test's RTP peer for media), and one kill of
//! the cloud leg (a takeover) or one continued conversation, measured.
#![allow(dead_code)]

mod continued;

use crate::sip_support::*;
pub use continued::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Local bot audio at the caller within this of the cloud's death, when the
/// cloud's words place the call nowhere: the takeover prompt, said once the
/// cloud's last words have been transcribed and matched to nothing.
pub const TAKEOVER_LIMIT: Duration = Duration::from_secs(2);

/// A cloud bot (SIPp UAS) on `port`; `scenario` is cloud_bot, cloud_bot_fails or cloud_bot_rings.
pub fn start_cloud(dir: &Path, port: u16, scenario: &str, extra: &[(&str, String)]) -> SippRun {
    let mut cloud = Sipp::new(scenario, dir);
    cloud.port = port;
    let mut cloud = cloud.arg("-m").arg("100000").arg("-timeout").arg("600s");
    for (var, value) in extra {
        cloud = cloud.set(var, value);
    }
    let run = cloud.spawn(None);
    // Up before anyone probes it: on a busy box SIPp takes a moment to listen,
    // and a cloud that fails its first probes is (rightly) routed around.
    let probe = RawSip::new(format!("{LOOPBACK}:{port}").parse().unwrap());
    let started = Instant::now();
    while probe.options_status() != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the SIPp cloud bot on port {port} never answered OPTIONS"
        );
    }
    run
}

/// The cloud bot's audio: a greeting, then a minute of quiet packets (a live
/// bot keeps its RTP flowing while it listens).
/// What the SIPp cloud bot says; not one of the demo bundle's prompts. Long enough that
/// whisper tiny hears some of its words whatever the relay's packet timing (it
/// often hears espeak's "the cloud" as "McLeod").
pub const CLOUD_GREETING: &str =
    "Hello, you are talking to the cloud assistant. How can I help you today?";
/// Words of [`CLOUD_GREETING`] a transcript of it must carry one of.
pub const CLOUD_WORDS: [&str; 4] = ["hello", "talking", "cloud", "help"];

pub fn write_cloud_pcap(dir: &Path) {
    let mut rtp = RtpCapture::new();
    rtp.audio(&say(CLOUD_GREETING, dir));
    rtp.audio(&vec![0i16; 8_000 * 90]);
    rtp.write_pcap(&dir.join("cloud.pcap"));
}

/// When the demo cloud bot (below) says what, from the start of its stream.
#[derive(Clone, Copy)]
pub struct DemoCloud {
    /// The welcome ends.
    pub welcome_end: Duration,
    /// The order-number question starts (after a pause for the caller's request).
    pub question_start: Duration,
    pub question_end: Duration,
}

/// The demo bundle's own prompt texts, as the bundle has them.
pub fn demo_prompts() -> (String, String) {
    let bundle = understudy::dialog::Bundle::demo();
    let lang = bundle.language().to_string();
    let text = |t: &understudy::dialog::bundle::Text| t.get(&lang, &lang).unwrap().clone();
    let states = &bundle.flow.states;
    let welcome: Vec<String> = states["welcome"].say.0.iter().map(text).collect();
    let question = text(&states["order_status"].collect[0].prompt);
    (welcome.join(" "), question)
}

/// A cloud bot that runs the demo bundle's flow (the bundle Understudy
/// mirrors), in espeak-ng's en-gb voice (neither the caller's voice nor
/// Piper's): its welcome, a pause for the caller's request, the order-number
/// question, then quiet packets while it listens.
pub fn write_demo_cloud_pcap(dir: &Path) -> DemoCloud {
    let (welcome, question) = demo_prompts();
    let welcome = say_as(&welcome, dir, "en-gb");
    let question = say_as(&question, dir, "en-gb");
    let ms = |samples: usize| Duration::from_millis(samples as u64 / 8);
    let mut rtp = RtpCapture::new();
    rtp.audio(&welcome);
    rtp.audio(&vec![0i16; 8_000 * 3]);
    rtp.audio(&question);
    rtp.audio(&vec![0i16; 8_000 * 90]);
    rtp.write_pcap(&dir.join("cloud.pcap"));
    DemoCloud {
        welcome_end: ms(welcome.len()),
        question_start: ms(welcome.len() + 8_000 * 3),
        question_end: ms(welcome.len() + 8_000 * 3 + question.len()),
    }
}

/// Understudy in in-path mode in front of the cloud bot on `cloud_port`;
/// `overrides` replace the `[cloud]` settings below.
pub fn serve_in_path(cloud_port: u16, overrides: &[(&str, &str)]) -> Serve {
    serve_in_path_with("", cloud_port, overrides, "")
}

/// [`serve_in_path`] with `sip` added to the `[sip]` section and `more`
/// configuration sections after `[cloud]`.
pub fn serve_in_path_with(
    sip: &str,
    cloud_port: u16,
    overrides: &[(&str, &str)],
    more: &str,
) -> Serve {
    serve_in_path_on("test", sip, cloud_port, overrides, more)
}

/// [`serve_in_path_with`] with the model pack `pack`.
pub fn serve_in_path_on(
    pack: &str,
    sip: &str,
    cloud_port: u16,
    overrides: &[(&str, &str)],
    more: &str,
) -> Serve {
    let uri = format!("\"sip:bot@127.0.0.1:{cloud_port}\"");
    let mut cloud: Vec<(&str, &str)> = vec![
        ("mode", "\"in_path\""),
        ("uri", &uri),
        ("probe_interval_ms", "500"),
        ("probe_timeout_ms", "400"),
        ("down_after", "3"),
        ("up_after", "3"),
        ("setup_timeout_ms", "2000"),
        ("rtp_timeout_ms", "500"),
        ("failback_after_s", "600"),
    ];
    for (key, value) in overrides {
        cloud.retain(|(k, _)| k != key);
        cloud.push((key, value));
    }
    let lines: String = cloud.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    Serve::start_with_pack(
        pack,
        &format!("capacity = 3\n{sip}\n[cloud]\n{lines}{more}"),
    )
}

/// A caller on the line: SIPp signalling, media through `peer`.
pub struct Caller {
    pub peer: RtpPeer,
    pub sipp: SippRun,
    pub started: Instant,
}

pub fn call(serve: &Serve, dir: &Path, hold: Duration) -> Caller {
    let peer = RtpPeer::start();
    let sipp = Sipp::new("call_external_media", dir)
        .key("rtp_port", peer.port)
        .arg("-recv_timeout")
        .arg(hold.as_millis().to_string())
        .spawn(Some(serve.sip));
    let started = Instant::now();
    peer.wait_remote(Duration::from_secs(10));
    Caller {
        peer,
        sipp,
        started,
    }
}

/// Everything the caller heard between two instants, transcribed.
pub fn heard(peer: &RtpPeer, from: Instant, to: Instant, dir: &Path, name: &str) -> String {
    let wav = dir.join(format!("{name}.wav"));
    write_wav(&wav, &peer.recording_between(Some(from), Some(to)));
    transcribe(&wav).to_lowercase()
}

/// Poll `/status` until it contains `what`.
pub fn wait_status(serve: &Serve, what: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let (_, body) = http_get(serve.http, "/status").unwrap();
        if body.contains(what) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "/status never showed {what} within {limit:?}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait for the local bot's turn with `intent` (the latest one).
pub fn wait_turn(serve: &Serve, intent: &str, limit: Duration) -> serde_json::Value {
    let started = Instant::now();
    loop {
        if let Some(turn) = serve
            .logged("turn")
            .into_iter()
            .rev()
            .find(|t| t["intent"] == intent)
        {
            return turn;
        }
        assert!(
            started.elapsed() < limit,
            "no {intent} turn within {limit:?}:\n{}",
            serve.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn ended_results(serve: &Serve) -> Vec<String> {
    serve
        .logged("call ended")
        .iter()
        .map(|e| e["result"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Kill the cloud mid-call, right after the caller asked something the cloud
/// never answered: the caller hears the local bot within a second, and the
/// local bot answers that question from the caller's recent audio.
pub fn takeover_once(serve: &Serve, dir: &Path, mut cloud: SippRun, round: usize) -> Duration {
    // New calls go to the cloud (after a kill: once the probes say it is back).
    wait_status(serve, "\"routes_to_cloud\":true", Duration::from_secs(20));
    let caller = call(serve, dir, Duration::from_secs(20));
    serve.wait_logged(
        "bridged to the cloud bot",
        round + 1,
        Duration::from_secs(10),
    );
    // The cloud's greeting reaches the caller through the relay.
    let greeting = caller
        .peer
        .wait_audio_after(caller.started, Duration::from_secs(10))
        .expect("no cloud greeting");
    std::thread::sleep(Duration::from_millis(3_500));
    let greeted = heard(
        &caller.peer,
        greeting,
        Instant::now(),
        dir,
        &format!("cloud-{round}"),
    );
    assert!(
        CLOUD_WORDS.iter().any(|w| greeted.contains(w)),
        "the caller should hear the cloud bot first, heard {greeted:?}"
    );

    let question = say("What time does the store open?", dir);
    let asked = Instant::now();
    caller.peer.say(&question);
    let said = caller
        .peer
        .wait_said(asked, Duration::from_secs(10))
        .expect("the question was not sent");
    // The cloud dies before answering.
    std::thread::sleep(Duration::from_millis(200));
    let killed = Instant::now();
    cloud.kill();

    let first = caller
        .peer
        .wait_audio_after(killed, Duration::from_secs(5))
        .expect("no local bot audio after the cloud died");
    let takeover = first - killed;
    eprintln!(
        "round {round}: takeover {} ms after SIGKILL (question ended {} ms before)",
        takeover.as_millis(),
        (killed - said).as_millis()
    );
    assert!(
        takeover < TAKEOVER_LIMIT,
        "the caller waited {takeover:?} for the local bot"
    );

    // The takeover prompt, then the answer to the question the cloud never answered.
    let taken = serve.wait_logged(
        "cloud leg failed: the local bot takes over",
        round + 1,
        Duration::from_secs(5),
    );
    let t = taken.last().unwrap();
    assert!(
        t["recent_ms"].as_u64().unwrap_or(0) >= 1_000,
        "the caller's question should be in the recent audio: {t}"
    );
    // The cloud's words are none of the bundle's: the fallback, logged with why.
    let unknown = serve.wait_logged(
        "takeover: the flow state is unknown; starting at the start state",
        round + 1,
        Duration::from_secs(5),
    );
    let why = unknown.last().unwrap();
    assert!(
        why["why"].as_str().is_some_and(|w| !w.is_empty())
            && CLOUD_WORDS.iter().any(|w| {
                why["transcript"]
                    .as_str()
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains(w)
            }),
        "{why}"
    );
    let answered = wait_turn(serve, "store_hours", Duration::from_secs(20));
    assert!(
        answered["transcript"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("open"),
        "{answered}"
    );
    // The answer (about 5 s of speech) plays out after the prompt.
    std::thread::sleep(Duration::from_secs(7));
    let local = heard(
        &caller.peer,
        first,
        Instant::now(),
        dir,
        &format!("local-{round}"),
    );
    assert!(
        local.contains("back"),
        "takeover prompt missing in {local:?}"
    );
    assert!(
        local.contains("monday") && local.contains("friday"),
        "the store-hours answer is missing in {local:?}"
    );
    // No dead air after the takeover began: the answer follows the prompt.
    let gap = caller
        .peer
        .longest_gap(first, first + Duration::from_secs(4));
    assert!(
        gap < Duration::from_secs(2),
        "{gap:?} of silence after the takeover prompt"
    );

    // The caller stayed on the line and hangs up itself.
    caller.sipp.wait().assert_ok("the caller's call");
    takeover
}

/// The caller rings while the cloud is tried (`setup_timeout_ms`), then
/// hears the local bot's greeting; `meanwhile` runs once the greeting started.
pub fn assert_answered_locally(
    serve: &Serve,
    caller: Caller,
    dir: &Path,
    name: &str,
    meanwhile: impl FnOnce(),
) {
    let greeting = caller
        .peer
        .wait_audio_after(caller.started, Duration::from_secs(10))
        .expect("no greeting");
    assert!(
        greeting - caller.started < Duration::from_secs(4),
        "{:?} before an answer",
        greeting - caller.started
    );
    meanwhile();
    std::thread::sleep(Duration::from_secs(5));
    let local = heard(&caller.peer, greeting, Instant::now(), dir, name);
    assert!(
        local.contains("help with returns"),
        "the local bot's greeting: {local:?}"
    );
    caller.sipp.wait().assert_ok("caller");
    let routes = serve.metrics();
    assert!(
        routes.contains("understudy_inpath_calls_total{route=\"local_after_setup_failure\"} 1"),
        "{routes}"
    );
}
