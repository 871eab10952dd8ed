//! When an engine fails mid-call the session's safety net apologizes and
//! asks for a human; over SIP that is the same transfer (REFER here), after
//! the apology has played. Every transcription is made to time out, so the
//! caller's first turn takes the safety net.

mod sip_support;

use sip_support::*;
use std::time::Duration;

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
    let failed = turns.iter().find(|t| t["safety_net"] == true).expect("no safety-net turn");
    assert_eq!(failed["action"], "transfer", "{failed}");
    let requested = serve.logged("transfer requested");
    assert!(requested.iter().any(|r| r["reason"].as_str().unwrap_or_default().contains("safety net")), "{requested:?}");
    let ended = serve.wait_logged("call ended", ended_before + 1, Duration::from_secs(5));
    let call = ended.last().unwrap();
    assert_eq!((&call["result"], &call["detail"]), (&"transferred".into(), &"by REFER".into()), "{call}");
    // The apology (about 4 s of audio) played out before the REFER.
    let asked = serve.logged_at("transfer requested").last().unwrap().0;
    let referred = serve.logged_at("REFER accepted; following the NOTIFYs").last().unwrap().0;
    assert!(referred - asked > 2.5, "REFER {:.1} s after the request", referred - asked);
}
