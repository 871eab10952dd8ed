//! When an engine fails mid-call the session's safety net apologizes and
//! asks for a human; over SIP that is the same transfer (REFER or bridge),
//! after the apology has played. A slow turn says a filler first, so the
//! caller never hears more than 2 s of dead air (docs/continuity.md).
//!
//! The timing tests put SIPp on the signalling and a Rust RTP peer on the
//! media (tests/sip_support/rtp_peer.rs): gaps are measured where the
//! caller hears them.

mod safety_net_support;
mod sip_support;

use safety_net_support::*;
use sip_support::*;
use std::time::Duration;

/// Every transcription is made to time out, so the caller's first turn
/// takes the safety net; the caller's side takes the REFER.
#[test]
fn the_safety_net_hands_the_caller_to_a_human() {
    require_peers();
    let serve = Serve::start(
        "transfer_target = \"sip:agent@127.0.0.1:5999\"\n\
         [engines.timeouts_ms]\nstt = 1\n",
    );
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut rtp = RtpCapture::new();
    rtp.audio(&say("What time does the store open?", dir));
    rtp.write_pcap(&dir.join("trigger.pcap"));

    let ended_before = serve.logged("call ended").len();
    Sipp::new("refer_accept", dir)
        .set("greeting_ms", 8_000)
        .key("target_user", "agent")
        .run(serve.sip)
        .assert_ok("transfer by REFER after the safety net");

    let turns = serve.logged("turn");
    let failed = turns
        .iter()
        .find(|t| t["safety_net"] == true)
        .expect("no safety-net turn");
    assert_eq!(failed["action"], "transfer", "{failed}");
    let requested = serve.logged("transfer requested");
    assert!(
        requested.iter().any(|r| r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("safety net")),
        "{requested:?}"
    );
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let call = ended.last().unwrap();
    assert_eq!(
        (&call["result"], &call["detail"]),
        (&"transferred".into(), &"by REFER".into()),
        "{call}"
    );
    // The apology (about 4 s of audio) played out before the REFER.
    let asked = serve.logged_at("transfer requested").last().unwrap().0;
    let referred = serve
        .logged_at("REFER accepted; following the NOTIFYs")
        .last()
        .unwrap()
        .0;
    assert!(
        referred - asked > 2.5,
        "REFER {:.1} s after the request",
        referred - asked
    );
}

/// The RTP test peer and the external-media SIPp caller: the peer hears the
/// greeting and the bot's answer to what it says, and SIPp hangs up when
/// the hold time passes.
#[test]
fn the_rtp_peer_measures_a_call() {
    require_peers();
    let serve = Serve::start("");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let peer = RtpPeer::start();
    let caller = Sipp::new("call_external_media", dir)
        .key("rtp_port", peer.port)
        .arg("-recv_timeout")
        .arg("14000")
        .spawn(Some(serve.sip));
    let started = std::time::Instant::now();
    peer.wait_remote(Duration::from_secs(10));
    let greeting = peer
        .wait_audio_after(started, Duration::from_secs(10))
        .expect("no greeting");
    // Let the greeting play out, then ask.
    std::thread::sleep(Duration::from_secs(6));
    let asked = std::time::Instant::now();
    peer.say(&say("What time does the store open?", dir));
    let speech_end = peer
        .wait_said(asked, Duration::from_secs(10))
        .expect("the question had no speech");
    let answer = peer
        .wait_audio_after(speech_end, Duration::from_secs(8))
        .expect("no answer");
    assert!(
        answer - speech_end < Duration::from_millis(1200),
        "a quick turn: {:?}",
        answer - speech_end
    );
    eprintln!(
        "greeting {:.0} ms after the INVITE, answer {:.0} ms after the end of speech",
        (greeting - started).as_secs_f64() * 1e3,
        (answer - speech_end).as_secs_f64() * 1e3
    );
    let sipp = caller.wait();
    sipp.assert_ok("the caller holds, then hangs up");
    assert!(
        sipp.flow().iter().any(|l| l.starts_with("BYE ")),
        "SIPp hung up after the hold: {:?}",
        sipp.flow()
    );
    let heard = peer.recording_between(Some(speech_end), None);
    assert!(
        heard.len() > 8000,
        "{} samples after the question",
        heard.len()
    );
    let wav = dir.join("heard.wav");
    write_wav(&wav, &heard);
    let text = transcribe(&wav).to_lowercase();
    assert!(
        text.contains("monday")
            || text.contains("9")
            || text.contains("nine")
            || text.contains("open"),
        "{text}"
    );
    let gaps = peer.utterances(
        started,
        std::time::Instant::now(),
        Duration::from_millis(600),
    );
    assert!(gaps.len() >= 2, "greeting and answer: {gaps:?}");
    // A turn answered in time plays no filler.
    assert!(
        serve.logged("turn is slow: filler").is_empty(),
        "{}",
        serve.log_tail(20)
    );
    assert!(serve
        .logged("turn")
        .iter()
        .all(|t| t["safety_net"] == false));
}

#[test]
fn a_stalled_llm_gets_a_filler_then_the_apology_and_a_human() {
    let m = safety_net_call(Fault::StallLlm);
    let filler = m.filler.expect("a stalled turn says the filler");
    // The filler comes after filler_after_ms (1.2 s), not before: a quick
    // turn would not have needed it.
    assert!(
        filler.0 - m.speech_end > Duration::from_millis(1000),
        "filler {:?} after speech",
        filler.0 - m.speech_end
    );
    assert!(
        m.metrics.contains("understudy_fillers_total 1"),
        "{}",
        m.metrics
    );
    assert!(
        m.error.contains("turn") && m.error.contains("timed out"),
        "the turn deadline fired: {}",
        m.error
    );
}

/// The dead-air bound holds whatever is slow: here the turn has its answer
/// at once and the TTS stalls, so the filler must cover the wait for the
/// answer's speech (not only the thinking) and the deadline the rest.
#[test]
fn a_stalled_tts_gets_a_filler_then_the_apology_and_a_human() {
    let m = safety_net_call(Fault::StallTts);
    let filler = m
        .filler
        .expect("a turn whose speech is late says the filler");
    assert!(
        filler.0 - m.speech_end > Duration::from_millis(1000),
        "filler {:?} after the last key",
        filler.0 - m.speech_end
    );
    assert!(
        m.metrics.contains("understudy_fillers_total 1"),
        "{}",
        m.metrics
    );
    assert!(
        m.error.contains("tts") && m.error.contains("timed out"),
        "the turn deadline fired on the TTS: {}",
        m.error
    );
}

#[test]
fn a_worker_killed_mid_turn_sends_the_caller_to_a_human() {
    let m = safety_net_call(Fault::KillStt);
    assert!(
        m.error.contains("stt"),
        "the STT failure took the safety net: {}",
        m.error
    );
    // A dead worker fails fast: the apology does not wait for the deadline.
    assert!(
        m.apology.0 - m.speech_end < Duration::from_millis(2500),
        "apology {:?} after speech",
        m.apology.0 - m.speech_end
    );
}

#[test]
fn an_llm_killed_mid_answer_sends_the_caller_to_a_human() {
    let m = safety_net_call(Fault::KillLlm);
    assert!(
        m.error.contains("llm"),
        "the LLM failure took the safety net: {}",
        m.error
    );
    // Killed while the filler played: the apology follows the whole filler
    // (not cut), with no dead air between them.
    assert!(m.filler_logged);
    let heard = m.texts.join(" ");
    assert!(
        heard.contains("moment please") || heard.contains("moment, please"),
        "the filler was cut: {heard}"
    );
}
