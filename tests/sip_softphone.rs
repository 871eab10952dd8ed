//! A real softphone (baresip) calls the appliance: it plays a caller WAV,
//! records what it hears, presses 0 for an agent (RFC 4733) and follows the
//! bot's REFER to the human (a SIPp UAS). The recording, transcribed, holds
//! the bot's answer.

mod sip_support;

use sip_support::*;
use std::time::Duration;

const GREETING_MS: usize = 8_000;

#[test]
fn a_softphone_is_understood_hears_the_answer_and_reaches_an_agent() {
    require_peers();
    require("baresip", "baresip");
    let agent_port = free_port();
    let serve = Serve::start(&format!(
        "transfer_target = \"sip:agent@127.0.0.1:{agent_port}\"\n"
    ));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    // The human the bot transfers to.
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
    let agent = target.set("talk_ms", 3_000).spawn(None);

    // The caller's voice: quiet through the greeting, the question, then quiet
    // while the bot answers and transfers (baresip hangs up when it ends).
    let wav = caller_wav(dir, GREETING_MS, "What time does the store open?", 40_000);

    let turns_before = serve.logged("turn").len();
    let phone_dir = dir.join("phone");
    std::fs::create_dir_all(&phone_dir).unwrap();
    let mut phone = Baresip::call(&phone_dir, &format!("sip:bot@{}", serve.sip), &wav);

    // The greeting, then the answer to the question.
    let turns = serve.wait_logged("turn", turns_before + 2, Duration::from_secs(60));
    let answer = &turns[turns_before + 1];
    assert_eq!(
        answer["intent"],
        "store_hours",
        "{answer}\n{}",
        tail(&phone.log(), 20)
    );
    // The report comes once the answer has played; now ask for an agent.
    std::thread::sleep(Duration::from_secs(1));
    phone.press('0');

    let agent = agent.wait();
    agent.assert_ok("the agent receives the transferred call");
    // The softphone called the agent itself (REFER), the appliance did not bridge.
    assert!(
        agent.messages.contains("User-Agent: baresip")
            && !agent.messages.contains("User-Agent: Understudy"),
        "the agent's call did not come from the softphone:\n{}",
        tail(&agent.messages, 40)
    );
    phone.wait_call_end(Duration::from_secs(60));

    let turns = serve.logged("turn");
    let keyed = turns[turns_before..]
        .iter()
        .find(|t| t["dtmf"] == "0")
        .expect("the key 0 (RFC 4733) reached the bot");
    assert_eq!(keyed["intent"], "agent", "{keyed}");
    let ended = serve.logged("call ended");
    let call = ended.last().expect("the call ended");
    assert_eq!(
        (&call["result"], &call["detail"]),
        (&"transferred".into(), &"by REFER".into()),
        "{call}"
    );
    assert_eq!(call["rtp_lost"], 0, "{call}");

    // What the caller heard, as words.
    let heard = transcribe(&phone.recording()).to_lowercase();
    assert!(
        heard.contains("thank") || heard.contains("calling"),
        "no greeting in {heard:?}"
    );
    assert!(
        ["monday", "friday", "open"]
            .iter()
            .any(|w| heard.contains(w)),
        "no store hours in {heard:?}"
    );
}
