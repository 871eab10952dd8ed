//! In-path mode (issue 4, docs/continuity.md): Understudy fronts the cloud
//! bot. The "cloud bot" is a real SIP peer (SIPp UAS, tests/sipp/cloud_bot.xml:
//! answers OPTIONS probes and calls, streams its greeting and then quiet
//! packets); the caller is SIPp for signalling with the test's RTP peer for
//! media (tests/sip_support/rtp_peer.rs), so what the caller hears is timed
//! to the packet. Faults: the cloud SIGKILLed mid-call, the cloud hanging up
//! with an error, the cloud gone for new calls, a cloud that only rings,
//! and a flapping cloud.
//!
//! Takeover benchmark (p50/p95 over repeated kills):
//!   cargo test --release --test continuity_inpath -- --ignored --nocapture

mod inpath_support;
mod sip_support;

use inpath_support::*;
use sip_support::*;
use std::time::{Duration, Instant};

#[test]
fn the_local_bot_takes_over_when_the_cloud_bot_dies_mid_call() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_cloud_pcap(dir);
    let cloud_port = free_port();
    let cloud = start_cloud(dir, cloud_port, "cloud_bot", &[]);
    let serve = serve_in_path(cloud_port, &[]);

    let takeover = takeover_once(&serve, dir, cloud, 0);
    eprintln!("takeover: {} ms", takeover.as_millis());

    // The cloud is down now (its probes fail): a new call goes straight to
    // the local bot, with no attempt on the cloud.
    wait_status(&serve, "\"routes_to_cloud\":false", Duration::from_secs(10));
    let bridged_before = serve.logged("bridged to the cloud bot").len();
    let caller = call(&serve, dir, Duration::from_secs(12));
    let greeting = caller
        .peer
        .wait_audio_after(caller.started, Duration::from_secs(10))
        .expect("no greeting");
    std::thread::sleep(Duration::from_secs(6));
    let local = heard(&caller.peer, greeting, Instant::now(), dir, "down-call");
    // Words of the demo greeting whisper tiny hears reliably ("help with" comes out as
    // "help if" now and then).
    let greeting_words = ["outfitters", "returns", "store hours"];
    assert!(
        greeting_words.iter().filter(|w| local.contains(*w)).count() >= 2,
        "the local greeting should answer while the cloud is down: {local:?}"
    );
    assert_eq!(
        serve.logged("bridged to the cloud bot").len(),
        bridged_before,
        "no call may go to a down cloud"
    );
    caller.sipp.wait();

    let metrics = serve.metrics();
    assert!(
        metrics.contains("understudy_takeovers_total{to=\"local_bot\"} 1"),
        "{metrics}"
    );
    let results = ended_results(&serve);
    assert!(
        results.iter().all(|r| r == "completed"),
        "every call must end normally: {results:?}"
    );
}

#[test]
fn a_cloud_bot_hanging_up_with_an_error_is_taken_over() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_cloud_pcap(dir);
    let cloud_port = free_port();
    let mut cloud = start_cloud(
        dir,
        cloud_port,
        "cloud_bot_fails",
        &[("fail_ms", "5000".into())],
    );
    let serve = serve_in_path(cloud_port, &[]);
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));

    let caller = call(&serve, dir, Duration::from_secs(20));
    serve.wait_logged("bridged to the cloud bot", 1, Duration::from_secs(10));
    let taken = serve.wait_logged(
        "cloud leg failed: the local bot takes over",
        1,
        Duration::from_secs(15),
    );
    assert!(
        taken[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("cause=500"),
        "{}",
        taken[0]
    );
    // The local prompt starts once the cut-off prompt is placed (a
    // transcription, ~0.4 s after the log line), so listen from the takeover
    // on: the cloud's last words before it made Whisper tiny loop on
    // "you can tell" when the window began a second earlier.
    let taken_at = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let local = heard(&caller.peer, taken_at, Instant::now(), dir, "after-bye");
    assert!(
        local.contains("back"),
        "the takeover prompt should play: {local:?}"
    );
    caller.sipp.wait();
    cloud.kill();
    let results = ended_results(&serve);
    assert_eq!(
        results,
        vec!["completed".to_string()],
        "the call must survive the cloud's BYE"
    );
}

/// The cloud bot hands the caller to a human with a REFER whose `Refer-To`
/// is a legal name-addr: a quoted display name with `<`, `>` and escaped
/// quotes in it, a header parameter, and an escaped `Replaces` header
/// (RFC 3515, RFC 3891). The appliance accepts it, ends the cloud leg and
/// transfers the caller itself (here by bridge): its INVITE goes to the
/// URI without the headers and carries the `Replaces`.
#[test]
fn a_cloud_bot_transfer_to_a_name_addr_reaches_the_human() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_cloud_pcap(dir);
    let agent_dir = dir.join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let mut voice = RtpCapture::new();
    voice.audio(&say("Hello, this is Sam.", &agent_dir));
    voice.write_pcap(&agent_dir.join("agent.pcap"));
    let target = Sipp::new("target", &agent_dir);
    let agent_port = target.port;
    let agent = target.set("talk_ms", 3_000).spawn(None);
    let uri = format!("sip:agent@127.0.0.1:{agent_port}");
    let replaces = "4711%40cloud.example%3Bto-tag%3Dab%3Bfrom-tag%3Dcd";
    let refer_to = format!("\"Support \\\"EMEA\\\" <desk>\" <{uri}?Replaces={replaces}>;x-queue=3");
    let cloud_port = free_port();
    let mut cloud = start_cloud(
        dir,
        cloud_port,
        "cloud_bot_refers",
        &[("refer_ms", "3000".into()), ("refer_to", refer_to)],
    );
    let serve = serve_in_path_with("transfer_mode = \"bridge\"", cloud_port, &[], "");
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));

    let caller = call(&serve, dir, Duration::from_secs(30));
    serve.wait_logged("bridged to the cloud bot", 1, Duration::from_secs(10));
    let asked = serve.wait_logged(
        "the cloud bot transfers the caller",
        1,
        Duration::from_secs(15),
    );
    assert_eq!(
        asked[0]["target"],
        format!("{uri}?Replaces={replaces}"),
        "{}",
        asked[0]
    );
    let agent = agent.wait();
    agent.assert_ok("the human receives the bridged call");
    assert!(
        agent.messages.contains(&format!("INVITE {uri} SIP/2.0")),
        "the Request-URI is the target without its headers:\n{}",
        tail(&agent.messages, 40)
    );
    assert!(
        agent
            .messages
            .contains("Replaces: 4711@cloud.example;to-tag=ab;from-tag=cd"),
        "the INVITE carries the Replaces:\n{}",
        tail(&agent.messages, 40)
    );
    caller.sipp.wait().assert_ok("the caller");
    let cloud_side = std::fs::read_to_string(dir.join("cloud_bot_refers.msg")).unwrap();
    cloud.kill();
    assert!(
        cloud_side.contains("SIP/2.0 202") && cloud_side.contains("BYE sip:"),
        "the REFER accepted, then the cloud leg ended:\n{}",
        tail(&cloud_side, 40)
    );
    let ended = serve.wait_logged("call ended", 1, Duration::from_secs(5));
    assert_eq!(ended[0]["result"], "transferred", "{}", ended[0]);
}

#[test]
fn a_cloud_bot_that_never_answers_gets_the_call_answered_locally() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // Nothing listens on the cloud's port.
    let cloud_port = free_port();
    let serve = serve_in_path(cloud_port, &[("down_after", "100")]);
    let caller = call(&serve, dir, Duration::from_secs(10));
    assert_answered_locally(&serve, caller, dir, "setup-failed", || {});
}

/// A cloud bot that rings and never answers: after `setup_timeout_ms` the
/// local bot answers, and the cloud's INVITE is cancelled, so no half-made
/// call is left waiting at the cloud.
#[test]
fn a_cloud_bot_that_only_rings_is_cancelled_and_the_call_answered_locally() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let cloud_port = free_port();
    let mut cloud = start_cloud(dir, cloud_port, "cloud_bot_rings", &[]);
    let serve = serve_in_path(cloud_port, &[]);
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));
    let caller = call(&serve, dir, Duration::from_secs(10));
    assert_answered_locally(&serve, caller, dir, "cloud-rang", || {
        let cancelled = dir.join("cancelled.txt");
        let waited = Instant::now();
        while !cancelled.exists() {
            assert!(
                waited.elapsed() < Duration::from_secs(5),
                "the cloud bot's INVITE was never cancelled"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    cloud.kill();
}

/// The cloud comes and goes every few seconds while calls keep arriving:
/// the call on the cloud when it first dies is taken over, routing goes to
/// the local bot once and stays there (the failback delay is longer than any
/// healthy spell), and no call is dropped.
#[test]
fn a_flapping_cloud_neither_drops_calls_nor_flips_routing() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_cloud_pcap(dir);
    let cloud_port = free_port();
    let mut cloud = Some(start_cloud(dir, cloud_port, "cloud_bot", &[]));
    let serve = serve_in_path(cloud_port, &[("failback_after_s", "20")]);
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));

    let mut callers = vec![];
    let flaps_started = Instant::now();
    for spell in 0..6 {
        if spell % 2 == 0 && cloud.is_none() {
            cloud = Some(start_cloud(dir, cloud_port, "cloud_bot", &[]));
        }
        // A call in the middle of every spell, up or down; each lasts two spells.
        std::thread::sleep(Duration::from_millis(1_000));
        callers.push(call(&serve, dir, Duration::from_secs(6)));
        std::thread::sleep(Duration::from_millis(2_000));
        if spell % 2 == 0 {
            if let Some(mut up) = cloud.take() {
                up.kill();
            }
        }
    }
    eprintln!("flapped for {:.1} s", flaps_started.elapsed().as_secs_f64());
    for caller in callers {
        let heard_something = caller.peer.first_audio_after(caller.started).is_some();
        caller.sipp.wait().assert_ok("a caller during the flapping");
        assert!(heard_something, "a caller heard nothing");
    }
    std::thread::sleep(Duration::from_secs(1));
    let results = ended_results(&serve);
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(
        results.iter().all(|r| r == "completed"),
        "no call may be dropped: {results:?}"
    );
    assert!(
        !serve
            .logged("cloud leg failed: the local bot takes over")
            .is_empty(),
        "the first call should have been taken over"
    );
    let changes = serve.logged("cloud bot state changed");
    let moves: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            (
                c["from"].as_str().unwrap_or_default(),
                c["to"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    eprintln!("cloud state changes: {moves:?}");
    // Routing changes only on entering or leaving "down" (degraded still routes to the cloud).
    let routing: Vec<_> = moves
        .iter()
        .filter(|(from, to)| *from == "down" || *to == "down")
        .collect();
    assert_eq!(
        routing,
        vec![&("degraded", "down")],
        "routing must move once and not flip back to a flapping cloud"
    );
}

/// A cloud that comes back gets new calls again only after it has been
/// healthy for `failback_after_s`; then calls are bridged to it again.
#[test]
fn failback_waits_for_a_healthy_spell() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    write_cloud_pcap(dir);
    let cloud_port = free_port();
    let serve = serve_in_path(cloud_port, &[("failback_after_s", "5")]);
    // No cloud yet: down.
    wait_status(&serve, "\"routes_to_cloud\":false", Duration::from_secs(10));
    // (Timed from before the start: the serve's probes may see it up first.)
    let back = Instant::now();
    let mut cloud = start_cloud(dir, cloud_port, "cloud_bot", &[]);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(back.elapsed()));
    let (_, body) = http_get(serve.http, "/status").unwrap();
    assert!(
        body.contains("\"routes_to_cloud\":false"),
        "failback before the healthy spell was over: {body}"
    );
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));
    let waited = back.elapsed();
    eprintln!(
        "failback {:.1} s after the cloud came back",
        waited.as_secs_f64()
    );
    assert!(waited >= Duration::from_secs(5), "{waited:?}");
    let caller = call(&serve, dir, Duration::from_secs(4));
    serve.wait_logged("bridged to the cloud bot", 1, Duration::from_secs(5));
    caller.sipp.wait().assert_ok("a call after failback");
    cloud.kill();
    let up = serve
        .logged("cloud bot state changed")
        .into_iter()
        .filter(|c| c["to"] == "up")
        .count();
    assert_eq!(up, 1);
}

/// The cloud bot speaks the demo bundle's prompts; the caller answers the
/// order-number question and the cloud dies: the local bot answers with
/// that order's status (no greeting, no second ask). Then a cloud that dies
/// in the middle of the question: the local bot asks it again.
#[test]
fn the_local_bot_continues_the_conversation_where_the_cloud_bot_was() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let demo = write_demo_cloud_pcap(dir);
    let cloud_port = free_port();
    // What is tested is where the conversation goes on, not how fast: on a
    // 2-core box shared with builds, whisper can take seconds, so the
    // engines get time (the benchmark keeps the defaults).
    let serve = serve_in_path_with(
        "",
        cloud_port,
        &[("failback_after_s", "0"), ("up_after", "1")],
        "\n[engines.timeouts_ms]\nstt = 20000\n[session]\nturn_deadline_ms = 20000\n",
    );
    for (round, death) in [Death::AfterTheAnswer, Death::MidQuestion]
        .into_iter()
        .enumerate()
    {
        let cloud = start_cloud(dir, cloud_port, "cloud_bot", &[]);
        let c = continue_once(&serve, dir, cloud, demo, death, round);
        assert!(
            c.placed,
            "round {round}: the call was not placed at order_status"
        );
        let placed = serve.logged("takeover: placed in the flow");
        assert_eq!(placed.len(), round + 1, "{placed:?}");
        let p = placed.last().unwrap();
        assert_eq!(p["state"], "order_status", "{p}");
    }
    let results = ended_results(&serve);
    assert!(results.iter().all(|r| r == "completed"), "{results:?}");
}

/// A live cloud on a bad network (up to 120 ms of jitter, packets
/// overtaking each other, 1 % loss) is never taken over: 50 calls, ten at a
/// time, each a few seconds on the cloud.
#[test]
fn a_jittery_but_alive_cloud_is_never_taken_over() {
    require_peers();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut rtp = RtpCapture::new();
    rtp.audio(&say_as(
        "Hello from the cloud. How can I help?",
        dir,
        "en-gb",
    ));
    rtp.audio(&vec![0i16; 8_000 * 60]);
    let (longest, lost) = rtp.jitter(Duration::from_millis(120), 1.0, 11);
    rtp.write_pcap(&dir.join("cloud.pcap"));
    eprintln!(
        "cloud stream: longest gap {} ms, {lost} packets lost",
        longest.as_millis()
    );
    assert!(
        longest >= Duration::from_millis(100) && lost > 0,
        "the network must really be bad"
    );
    let mut caller_rtp = RtpCapture::new();
    caller_rtp.audio(&say("Hello?", dir));
    caller_rtp.write_pcap(&dir.join("caller.pcap"));

    let cloud_port = free_port();
    let mut cloud = start_cloud(dir, cloud_port, "cloud_bot", &[]);
    let serve = serve_in_path(cloud_port, &[]);
    wait_status(&serve, "\"routes_to_cloud\":true", Duration::from_secs(10));
    let calls = 50;
    let r = Sipp::new("call", dir)
        .set("greeting_ms", 2_500)
        .set("reply_ms", 2_500)
        .arg("-m")
        .arg(calls.to_string())
        .arg("-l")
        .arg("10")
        .arg("-r")
        .arg("3")
        .arg("-timeout")
        .arg("200s")
        .run(serve.sip);
    r.assert_ok("50 calls on a jittery cloud");
    std::thread::sleep(Duration::from_secs(1));
    cloud.kill();
    let bridged = serve.logged("bridged to the cloud bot").len();
    assert_eq!(bridged, calls, "every call goes to the cloud");
    let taken = serve.logged("cloud leg failed: the local bot takes over");
    assert!(taken.is_empty(), "false takeovers: {taken:?}");
    let results = ended_results(&serve);
    assert_eq!(results.len(), calls, "{results:?}");
    assert!(results.iter().all(|r| r == "completed"), "{results:?}");
}

/// The caller's experience of a takeover over repeated kills (the issue's
/// benchmark): the demo cloud bot dies right after the caller answered its
/// order-number question; measured at the caller's RTP from the SIGKILL:
/// the first local audio, and the first words that carry the conversation
/// on (the order's status). With the default `takeover_prompt_when =
/// "auto"` the first local audio is the acknowledgment (`takeover_ack`,
/// "Okay.") and the continuing words the next stretch of speech;
/// `UNDERSTUDY_TAKEOVER_PROMPT=always` puts the prompt first (then the first
/// local audio is the prompt, and the continuing words are not measured).
/// `UNDERSTUDY_TAKEOVER_PACK=default` runs it with the default pack (the
/// issue's floors are set for it; the test pack is the default here).
#[test]
#[ignore = "a benchmark: about five minutes; run on an idle machine"]
fn takeover_benchmark() {
    require_peers();
    let rounds: usize = std::env::var("UNDERSTUDY_TAKEOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let demo = write_demo_cloud_pcap(dir);
    let cloud_port = free_port();
    let when = std::env::var("UNDERSTUDY_TAKEOVER_PROMPT").unwrap_or_else(|_| "auto".into());
    let pack = std::env::var("UNDERSTUDY_TAKEOVER_PACK").unwrap_or_else(|_| "test".into());
    // Failback at once, so each round starts with the cloud routed again.
    let serve = serve_in_path_on(
        &pack,
        "",
        cloud_port,
        &[("failback_after_s", "0"), ("up_after", "1")],
        &format!("\n[session]\ntakeover_prompt_when = \"{when}\"\n"),
    );
    let (mut first, mut continuing, mut placed) = (vec![], vec![], 0);
    for round in 0..rounds {
        let cloud = start_cloud(dir, cloud_port, "cloud_bot", &[]);
        let c = continue_once(&serve, dir, cloud, demo, Death::AfterTheAnswer, round);
        first.push(c.first_audio.as_secs_f64() * 1e3);
        continuing.extend(c.continuing.map(|d| d.as_secs_f64() * 1e3));
        placed += usize::from(c.placed);
    }
    let results = ended_results(&serve);
    let dropped = results.iter().filter(|r| *r != "completed").count();
    let p = |v: &[f64], q: f64| understudy::stats::percentile(v, q).unwrap_or(f64::NAN);
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    let detectors: Vec<String> = serve
        .logged("cloud leg failed: the local bot takes over")
        .iter()
        .map(|t| t["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    println!(
        "takeover over {rounds} kills ({pack} pack, takeover_prompt_when = {when}): \
         SIGKILL -> first local audio p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; \
         SIGKILL -> continuing words ({} measured) p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms; \
         state found {placed}/{rounds}; calls dropped: {dropped}",
        p(&first, 50.0),
        p(&first, 95.0),
        max(&first),
        continuing.len(),
        p(&continuing, 50.0),
        p(&continuing, 95.0),
        max(&continuing),
    );
    println!("detected by: {detectors:?}");
    // Where the continuing words' time goes, from the server's own log.
    let field = |lines: &[serde_json::Value], name: &str| -> Vec<f64> {
        lines.iter().filter_map(|t| t[name].as_f64()).collect()
    };
    let placed_lines = serve.logged("takeover: placed in the flow");
    let answers: Vec<serde_json::Value> = serve
        .logged("turn")
        .into_iter()
        .filter(|t| t["turn"].as_u64() == Some(1))
        .collect();
    for (stage, values) in [
        ("cloud prompt transcribed", field(&placed_lines, "stt_ms")),
        ("placed (from the takeover)", field(&placed_lines, "ms")),
        (
            "answer: STT after its turn began",
            field(&answers, "stt_ms"),
        ),
        ("answer: dialog", field(&answers, "dialog_ms")),
        (
            "answer: TTS first audio",
            field(&answers, "tts_first_audio_ms"),
        ),
    ] {
        println!(
            "  {stage:<34} p50 {:>5.0} ms  p95 {:>5.0} ms  (n={})",
            p(&values, 50.0),
            p(&values, 95.0),
            values.len()
        );
    }
    assert_eq!(dropped, 0, "{results:?}");
    assert!(
        placed * 10 >= rounds * 9,
        "state found in only {placed} of {rounds}"
    );
    // Issue 11's floors (the 2-core box, default pack).
    assert_eq!(
        continuing.len(),
        rounds,
        "the continuing words were not heard in every round"
    );
    assert!(
        p(&first, 95.0) <= 300.0,
        "first local audio p95 {:.0} ms is over 300 ms",
        p(&first, 95.0)
    );
    assert!(
        p(&continuing, 95.0) <= 1500.0,
        "continuing words p95 {:.0} ms is over 1.5 s",
        p(&continuing, 95.0)
    );
}
