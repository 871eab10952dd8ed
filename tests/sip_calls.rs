//! Calls by SIP against the real `understudy serve` (test model pack, demo
//! bot), driven by SIPp: readiness and admission, a spoken turn over RTP,
//! CANCEL, hold and codec change, DTMF both ways, garbage on the wire, and
//! transfer to a human by REFER and, when REFER is refused, by bridge.
//!
//! One appliance serves every step (starting one costs a model load), with
//! capacity 1 so that "full" is easy to reach; the steps run in order.

mod sip_support;

use sip_support::*;
use std::time::Duration;

/// Long enough for the demo bot's greeting (7 s of pre-rendered audio).
const GREETING_MS: u64 = 8_000;

#[test]
fn sip_calls_end_to_end() {
    require_peers();
    let agent_port = free_port();
    let mut serve = Serve::spawn(
        "test",
        &format!(
            "capacity = 1\nanswer_delay_ms = 300\ntransfer_target = \"sip:agent@127.0.0.1:{agent_port}\"\ntransfer_timeout_s = 20\n"
        ),
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    not_ready_until_warm(&mut serve);
    readiness(&serve, dir);
    udp_retransmission_and_488(&serve);
    spoken_turn(&serve, dir);
    full_and_garbage(&serve, dir);
    cancel_before_answer(&serve, dir);
    hold_and_codec_change(&serve, dir);
    dtmf_both_ways(&serve, dir);
    transfer_by_refer(&serve, dir);
    transfer_by_bridge(&serve, dir, agent_port);

    // Nothing leaked: every call released its slot.
    Sipp::new("options", dir)
        .run(serve.sip)
        .assert_ok("OPTIONS after all calls");
    let metrics = serve.metrics();
    assert!(
        metrics.contains("understudy_calls_admitted{ingress=\"sip\"} 0"),
        "{metrics}"
    );

    // The exposition: every metric with its HELP and TYPE lines, and the RTP
    // counters moved with the calls' media.
    for kind in ["received", "sent"] {
        let name = format!("understudy_rtp_packets_{kind}");
        assert!(
            metrics.contains(&format!("# HELP {name} RTP packets")),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("# TYPE {name} counter")),
            "{metrics}"
        );
        let packets = counter(&metrics, &format!("{name}_total"));
        assert!(packets > 100.0, "{packets} RTP packets {kind}:\n{metrics}");
    }
    let typed = metrics.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helped = metrics.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert!(
        typed > 10 && typed == helped,
        "{typed} TYPE, {helped} HELP lines"
    );
    assert!(!metrics.contains("no help text"), "{metrics}");
}

/// The value of an unlabelled counter in a metrics exposition (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// SIP answers as soon as the process is up, but 503 until the engines are
/// warm and the bot is loaded; then 200.
fn not_ready_until_warm(serve: &mut Serve) {
    let probe = RawSip::new(serve.sip);
    let started = std::time::Instant::now();
    let first = loop {
        if let Some(status) = probe.options_status() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no SIP answer 30 s after start\n{}",
            serve.log_tail(20)
        );
    };
    assert_eq!(first, 503, "OPTIONS while the models load");
    serve.wait_ready(Duration::from_secs(600));
    assert_eq!(probe.options_status(), Some(200), "OPTIONS once ready");
}

fn readiness(serve: &Serve, dir: &std::path::Path) {
    Sipp::new("options", dir)
        .run(serve.sip)
        .assert_ok("OPTIONS when ready: 200 with Allow");
    Sipp::new("options", dir)
        .arg("-t")
        .arg("t1")
        .run(serve.sip)
        .assert_ok("OPTIONS over TCP");
}

/// An offer without G.711 gets 488. Our 200 OK to an INVITE is retransmitted
/// over UDP until the ACK comes, at T1, 2*T1, 4*T1 (RFC 3261 17.2.1).
fn udp_retransmission_and_488(serve: &Serve) {
    let sip = RawSip::new(serve.sip);
    let invite = |call: &str, formats: &str, rtpmap: &str| {
        let sdp = format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP {formats}\r\n{rtpmap}"
        );
        format!(
            "INVITE sip:bot@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\n\
             From: <sip:raw@{me}>;tag=t-{call}\r\nTo: <sip:bot@{to}>\r\nCall-ID: {call}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:raw@{me}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{sdp}",
            to = serve.sip,
            me = sip.local,
            len = sdp.len()
        )
    };
    let ack = |call: &str, branch: &str, uri: &str, to: &str| {
        format!(
            "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nFrom: <sip:raw@{me}>;tag=t-{call}\r\n\
             To: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            me = sip.local
        )
    };

    sip.send(&invite("raw-g729", "18", "a=rtpmap:18 G729/8000\r\n"));
    let replies = sip.receive_for(Duration::from_millis(800));
    let refused = replies
        .iter()
        .map(|(_, r)| r)
        .find(|r| status_of(r) == Some(488))
        .expect("488 to a G.729-only offer");
    assert!(
        header(refused, "Warning")
            .unwrap_or_default()
            .contains("PCMU"),
        "{refused}"
    );
    let to = header(refused, "To").unwrap().to_string();
    sip.send(&ack(
        "raw-g729",
        "z9hG4bK-raw-g729",
        &format!("sip:bot@{}", serve.sip),
        &to,
    ));

    sip.send(&invite("raw-rt", "0", ""));
    let replies = sip.receive_for(Duration::from_millis(2_600));
    let oks: Vec<&(std::time::Instant, String)> = replies
        .iter()
        .filter(|(_, r)| status_of(r) == Some(200))
        .collect();
    assert!(
        oks.len() >= 3,
        "the 200 OK was not retransmitted: {} copies",
        oks.len()
    );
    let gaps: Vec<f64> = oks
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_secs_f64())
        .collect();
    assert!(
        gaps[0] > 0.35 && gaps[0] < 0.8,
        "first retransmission after {:.2} s (T1 = 0.5 s)",
        gaps[0]
    );
    assert!(
        gaps[1] > 0.8 && gaps[1] < 1.4,
        "second after {:.2} s (2*T1)",
        gaps[1]
    );
    let ok = &oks[0].1;
    let contact = header(ok, "Contact")
        .unwrap()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let to = header(ok, "To").unwrap().to_string();
    sip.send(&ack("raw-rt", "z9hG4bK-raw-rt-ack", &contact, &to));
    std::thread::sleep(Duration::from_millis(1_200));
    let after_ack = sip.receive_for(Duration::from_millis(1_200));
    assert!(
        !after_ack.iter().any(|(_, r)| status_of(r) == Some(200)),
        "the 200 OK kept coming after the ACK"
    );
    sip.send(&format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-raw-rt-bye\r\nFrom: <sip:raw@{me}>;tag=t-raw-rt\r\n\
         To: {to}\r\nCall-ID: raw-rt\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me = sip.local
    ));
    let bye = sip.receive_for(Duration::from_millis(800));
    assert!(
        bye.iter()
            .any(|(_, r)| status_of(r) == Some(200) && r.contains("BYE")),
        "no 200 to BYE: {bye:?}"
    );
    serve.wait_logged("call ended", 1, Duration::from_secs(5));
}

/// The caller asks a question by voice; the bot hears it and answers.
fn spoken_turn(serve: &Serve, dir: &std::path::Path) {
    let speech = say("What time does the store open?", dir);
    let mut rtp = RtpCapture::new();
    rtp.audio(&speech);
    rtp.write_pcap(&dir.join("caller.pcap"));
    let turns_before = serve.logged("turn").len();
    let ended_before = serve.logged("call ended").len();
    Sipp::new("call", dir)
        .set("greeting_ms", GREETING_MS)
        .set("reply_ms", rtp.duration().as_millis() as u64 + 16_000)
        .run(serve.sip)
        .assert_ok("a spoken turn");
    let turns = serve.wait_logged("turn", turns_before + 2, Duration::from_secs(10));
    let answer = turns[turns_before..]
        .iter()
        .find(|t| t["turn"] == 1)
        .unwrap_or_else(|| panic!("no caller turn in {turns:?}"));
    let transcript = answer["transcript"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        transcript.contains("store") || transcript.contains("open"),
        "the bot heard {transcript:?}"
    );
    assert_eq!(answer["intent"], "store_hours", "{answer}");
    let reply = answer["reply"].as_str().unwrap_or_default();
    assert!(reply.contains("Monday"), "{reply}");
    // The RTP leg measured the caller's wait on the wire.
    let v2v = serve.logged("rtp voice-to-voice");
    let ms = v2v
        .last()
        .and_then(|e| e["ms"].as_u64())
        .expect("no voice-to-voice measured at the RTP leg");
    assert!(ms > 100 && ms < 10_000, "{ms} ms");
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let call = ended.last().unwrap();
    assert_eq!(call["result"], "completed");
    assert!(
        call["rtp_received"].as_u64().unwrap() >= (speech.len() / 160) as u64,
        "{call}"
    );
    assert_eq!(call["rtp_lost"], 0, "{call}");
}

/// While a call holds the only slot: OPTIONS and INVITE get 503 with
/// Retry-After; garbage over UDP and TCP is answered 400 or ignored, and the
/// call in progress carries on to a clean end.
fn full_and_garbage(serve: &Serve, dir: &std::path::Path) {
    let answered = serve.logged("answered").len();
    let ended_before = serve.logged("call ended").len();
    let busy_dir = dir.join("long");
    std::fs::create_dir_all(&busy_dir).unwrap();
    let mut rtp = RtpCapture::new();
    rtp.audio(&vec![0; 8000]);
    rtp.write_pcap(&busy_dir.join("caller.pcap"));
    let sent = "understudy_rtp_packets_sent_total";
    let sent_before = counter(&serve.metrics(), sent);
    let long_call = Sipp::new("call", &busy_dir)
        .set("greeting_ms", 4_000)
        .set("reply_ms", 2_000)
        .spawn(Some(serve.sip));
    serve.wait_logged("answered", answered + 1, Duration::from_secs(10));
    // The RTP counters move while the call is up, not only when it ends.
    std::thread::sleep(Duration::from_millis(2_500));
    let sent_during = counter(&serve.metrics(), sent);
    assert_eq!(
        serve.logged("call ended").len(),
        ended_before,
        "the long call ended early"
    );
    assert!(
        sent_during >= sent_before + 50.0,
        "{sent_before} RTP packets sent before the call, {sent_during} during it"
    );

    Sipp::new("options_503", dir)
        .run(serve.sip)
        .assert_ok("OPTIONS when full: 503");
    let busy = Sipp::new("busy", dir).run(serve.sip);
    busy.assert_ok("INVITE when full: 503");
    assert!(busy.messages.contains("at capacity"), "{}", busy.messages);

    let invite = format!(
        "INVITE sip:bot@{0} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-junk\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\n\
         To: <sip:bot@{0}>\r\nCall-ID: junk-1\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:9>\r\n\
         Content-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n\
         c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n",
        serve.sip
    );
    let mut garbage: Vec<Vec<u8>> = Vec::new();
    for cut in (1..invite.len()).step_by(7) {
        garbage.push(invite.as_bytes()[..cut].to_vec());
    }
    let mut seed = 0x2545_f491_u32;
    for n in 0..200 {
        let len = 1 + (n * 37) % 1400;
        garbage.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect(),
        );
    }
    garbage.push(
        invite
            .replace("CSeq: 1 INVITE", "CSeq: x INVITE")
            .into_bytes(),
    );
    garbage.push(invite.replace("Call-ID: junk-1\r\n", "").into_bytes());
    garbage.push(
        invite
            .replace("Content-Length: 129", "Content-Length: 4000")
            .into_bytes(),
    );
    garbage.push(b"SIP/2.0 200 OK\r\n\r\n".to_vec());
    let replies = send_raw(serve.sip, &garbage);
    for reply in &replies {
        assert!(
            reply.starts_with("SIP/2.0 400") || reply.starts_with("SIP/2.0 503"),
            "garbage got {reply:?}"
        );
    }

    long_call
        .wait()
        .assert_ok("the call in progress while garbage arrived");
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    assert_eq!(ended.last().unwrap()["result"], "completed");
    Sipp::new("options", dir)
        .run(serve.sip)
        .assert_ok("OPTIONS once the slot is free again");
}

fn cancel_before_answer(serve: &Serve, dir: &std::path::Path) {
    let ended_before = serve.logged("call ended").len();
    let r = Sipp::new("cancel", dir).run(serve.sip);
    r.assert_ok("CANCEL while ringing");
    let flow = r.flow();
    assert!(
        flow.iter().any(|l| l.starts_with("SIP/2.0 487")),
        "{flow:?}"
    );
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    assert_eq!(ended.last().unwrap()["result"], "cancelled", "{ended:?}");
}

/// re-INVITE with a=sendonly is answered a=recvonly (hold); a re-INVITE
/// offering PCMA only moves the call to PCMA.
fn hold_and_codec_change(serve: &Serve, dir: &std::path::Path) {
    Sipp::new("hold", dir)
        .run(serve.sip)
        .assert_ok("hold, resume, codec change");
    let renegotiated = serve.logged("media renegotiated");
    assert!(
        renegotiated.iter().any(|e| e["hold"] == true),
        "{renegotiated:?}"
    );
    assert!(
        renegotiated.iter().any(|e| e["law"] == "A"),
        "{renegotiated:?}"
    );
}

/// Keys by RFC 4733 (select order status, key an order number) and by SIP
/// INFO (`application/dtmf-relay`, then `application/dtmf`) reach the bot.
fn dtmf_both_ways(serve: &Serve, dir: &std::path::Path) {
    let mut rtp = RtpCapture::new();
    // "1": order status; the bot asks for the number (after its 3 s entry timeout).
    rtp.keys("1").pause(8_000).keys("48213#");
    rtp.write_pcap(&dir.join("dtmf.pcap"));
    let turns_before = serve.logged("turn").len();
    let r = Sipp::new("dtmf", dir)
        .set("greeting_ms", GREETING_MS)
        .set("keys_ms", rtp.duration().as_millis() as u64 + 2_000)
        .key("relay_key", "2")
        .key("dtmf_key", "#")
        .run(serve.sip);
    r.assert_ok("DTMF call");
    let turns = serve.logged("turn");
    let keyed: Vec<&str> = turns[turns_before..]
        .iter()
        .filter_map(|t| t["dtmf"].as_str())
        .filter(|d| !d.is_empty())
        .collect();
    assert!(keyed.contains(&"1"), "RFC 4733 key 1 missing: {keyed:?}");
    assert!(
        keyed.contains(&"48213"),
        "RFC 4733 order number missing: {keyed:?}"
    );
    // INFO "2" (dtmf-relay) then INFO "#" (application/dtmf) make an entry "2";
    // the next INFO key cuts the bot's answer short, which reports the turn.
    assert!(keyed.contains(&"2"), "SIP INFO keys missing: {keyed:?}");
    let order = turns[turns_before..]
        .iter()
        .find(|t| t["dtmf"] == "48213")
        .unwrap();
    assert!(
        order["reply"]
            .as_str()
            .unwrap_or_default()
            .contains("shipped on Monday"),
        "{order}"
    );
    let infos = serve.logged("DTMF (SIP INFO)");
    assert!(
        infos.iter().any(|e| e["key"] == "2") && infos.iter().any(|e| e["key"] == "#"),
        "{infos:?}"
    );
}

/// "Press 0 for an agent": the bot REFERs the caller's side (through the
/// proxy its Record-Route named, over TCP) and hangs up once the NOTIFY says 200.
fn transfer_by_refer(serve: &Serve, dir: &std::path::Path) {
    let mut rtp = RtpCapture::new();
    rtp.keys("0");
    rtp.write_pcap(&dir.join("trigger.pcap"));
    let ended_before = serve.logged("call ended").len();
    let r = Sipp::new("refer_accept", dir)
        .set("greeting_ms", GREETING_MS)
        .key("target_user", "agent")
        .arg("-t")
        .arg("t1")
        .run(serve.sip);
    r.assert_ok("transfer by REFER");
    let flow = r.flow();
    let refer = flow
        .iter()
        .position(|l| l.starts_with("REFER "))
        .expect("no REFER");
    assert!(
        flow[refer..].iter().any(|l| l.starts_with("BYE ")),
        "{flow:?}"
    );
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    assert_eq!(ended.last().unwrap()["result"], "transferred", "{ended:?}");
    assert!(serve
        .metrics()
        .contains("understudy_sip_transfers_total{via=\"refer\",result=\"ok\"} 1"));
}

/// The caller's side refuses REFER: the bot calls the human itself and
/// relays the call; the call ends when the human hangs up.
fn transfer_by_bridge(serve: &Serve, dir: &std::path::Path, agent_port: u16) {
    let agent_dir = dir.join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let mut voice = RtpCapture::new();
    voice.audio(&say(
        "Hello, this is Sam from customer service.",
        &agent_dir,
    ));
    voice.write_pcap(&agent_dir.join("agent.pcap"));
    let mut target = Sipp::new("target", &agent_dir);
    target.port = agent_port;
    let target = target.set("talk_ms", 4_000).spawn(None);

    let mut rtp = RtpCapture::new();
    rtp.keys("0");
    rtp.write_pcap(&dir.join("trigger.pcap"));
    let ended_before = serve.logged("call ended").len();
    let caller = Sipp::new("refer_refuse", dir)
        .set("greeting_ms", GREETING_MS)
        .key("target_user", "agent")
        .run(serve.sip);
    let agent = target.wait();
    caller.assert_ok("caller refusing REFER");
    agent.assert_ok("the human receives the bridged call");
    assert!(
        agent.messages.contains("User-Agent: Understudy"),
        "the bridge INVITE came from the appliance"
    );
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let last = ended.last().unwrap();
    assert_eq!(last["result"], "transferred", "{last}");
    let bridge = serve.logged("bridge leg closed");
    assert!(
        bridge.last().unwrap()["received"].as_u64().unwrap() > 50,
        "the agent's audio reached the bridge: {bridge:?}"
    );
}
