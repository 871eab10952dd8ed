//! Digest authentication of new calls (`sip.auth_users`): an INVITE without
//! credentials gets 401 with a challenge while OPTIONS is still answered; a
//! real softphone (baresip) with the trunk's password answers the challenge
//! and its call is understood; with a wrong password no call is admitted and
//! the log says so.

mod sip_support;

use sip_support::*;
use std::time::Duration;

#[test]
fn only_callers_with_the_trunk_password_get_a_call() {
    require_peers();
    require("baresip", "baresip");
    let serve = Serve::start("auth_users = [\"sbc:s3cret\"]\nauth_realm = \"understudy-test\"\n");
    let to = serve.sip;

    // No credentials: a challenge, not a call. OPTIONS is never challenged.
    let raw = RawSip::new(to);
    assert_eq!(raw.options_status(), Some(200));
    raw.send(&format!(
        "INVITE sip:bot@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-noauth\r\n\
         From: <sip:caller@{me}>;tag=na\r\nTo: <sip:bot@{to}>\r\nCall-ID: no-auth\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{me}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n",
        me = raw.local
    ));
    let replies = raw.receive_for(Duration::from_secs(1));
    let challenge = replies
        .iter()
        .map(|(_, r)| r)
        .find(|r| status_of(r) == Some(401))
        .unwrap_or_else(|| panic!("no 401 to an INVITE without credentials: {replies:?}"));
    let www = header(challenge, "WWW-Authenticate").expect("a challenge");
    assert!(
        www.starts_with("Digest")
            && www.contains("realm=\"understudy-test\"")
            && www.contains("qop=\"auth\""),
        "{www}"
    );

    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let wav = caller_wav(dir, 8_000, "What time does the store open?", 10_000);
    let uri = format!("sip:bot@{to}");

    // A wrong password: challenged again, never admitted.
    let wrong_dir = dir.join("wrong");
    std::fs::create_dir_all(&wrong_dir).unwrap();
    let wrong = Baresip::call_as(&wrong_dir, &uri, &wav, ";auth_user=sbc;auth_pass=guess");
    let warned = serve.wait_logged(
        "INVITE with wrong credentials: 401 (check the SBC's trunk user and password against sip.auth_users)",
        1,
        Duration::from_secs(20),
    );
    assert_eq!(warned[0]["user"], "sbc", "{warned:?}");
    // baresip gives up on the second 401 and stays up; it is stopped on drop.
    let started = std::time::Instant::now();
    while !wrong.log().contains("session closed: 401") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "baresip did not give up:\n{}",
            tail(&wrong.log(), 20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(wrong);
    assert!(
        serve.logged("incoming call").is_empty(),
        "a call was admitted without the password"
    );

    // The trunk's password: the call goes through and is understood.
    let turns_before = serve.logged("turn").len();
    let right_dir = dir.join("right");
    std::fs::create_dir_all(&right_dir).unwrap();
    let mut phone = Baresip::call_as(&right_dir, &uri, &wav, ";auth_user=sbc;auth_pass=s3cret");
    let turns = serve.wait_logged("turn", turns_before + 2, Duration::from_secs(60));
    assert_eq!(
        turns[turns_before + 1]["intent"],
        "store_hours",
        "{}\n{}",
        turns[turns_before + 1],
        tail(&phone.log(), 20)
    );
    phone.wait_call_end(Duration::from_secs(60));
    let metrics = serve.metrics();
    for result in ["challenged", "wrong", "ok"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("understudy_sip_auth_total")
                    && l.contains(&format!("result=\"{result}\""))),
            "no {result} in the auth metric:\n{metrics}"
        );
    }
}
