//! SIP over TLS: a real softphone (baresip) calls the appliance's TLS port
//! with a certificate made here (openssl), is understood and hears the
//! answer; the same port refuses a caller that does not speak TLS.

mod sip_support;

use sip_support::*;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn a_softphone_calls_over_tls_and_hears_the_answer() {
    require_peers();
    require("baresip", "baresip");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (cert, key) = certificate(dir);
    let tls_port = free_port();
    let serve = Serve::start(&format!(
        "tls_listen = \"{LOOPBACK}:{tls_port}\"\n\
         tls_certificate = \"{cert}\"\n\
         tls_private_key = \"{key}\"\n"
    ));

    // Plain text on the TLS port is not SIP to it: no answer comes back.
    let mut plain = std::net::TcpStream::connect((LOOPBACK, tls_port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let options = format!(
        "OPTIONS sip:bot@{LOOPBACK}:{tls_port} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {LOOPBACK}:5999;branch=z9hG4bK-plain\r\n\
         From: <sip:probe@{LOOPBACK}>;tag=1\r\nTo: <sip:bot@{LOOPBACK}>\r\n\
         Call-ID: plain-on-tls\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let _ = plain.write_all(options.as_bytes());
    let mut answer = vec![0u8; 512];
    let n = plain.read(&mut answer).unwrap_or(0);
    assert!(
        !String::from_utf8_lossy(&answer[..n]).contains("SIP/2.0 200"),
        "the TLS port answered plain text"
    );

    let wav = caller_wav(dir, 8_000, "What time does the store open?", 12_000);

    let turns_before = serve.logged("turn").len();
    let phone_dir = dir.join("phone");
    std::fs::create_dir_all(&phone_dir).unwrap();
    let mut phone = Baresip::call(
        &phone_dir,
        &format!("sip:bot@{LOOPBACK}:{tls_port};transport=tls"),
        &wav,
    );
    let turns = serve.wait_logged("turn", turns_before + 2, Duration::from_secs(60));
    let answer = &turns[turns_before + 1];
    assert_eq!(
        answer["intent"],
        "store_hours",
        "{answer}\n{}",
        tail(&phone.log(), 20)
    );
    phone.wait_call_end(Duration::from_secs(60));
    // The call's signalling went over TLS.
    let incoming = serve.logged("incoming call");
    let transport = incoming.last().expect("the call came in")["transport"]
        .as_str()
        .unwrap_or("")
        .to_ascii_uppercase();
    assert_eq!(transport, "TLS", "{incoming:?}");
    let calls = serve.logged("call ended");
    let call = calls.last().expect("the call ended");
    assert_eq!(call["rtp_lost"], 0, "{call}");
    let heard = transcribe(&phone.recording()).to_lowercase();
    assert!(
        ["monday", "friday", "open"]
            .iter()
            .any(|w| heard.contains(w)),
        "no store hours in {heard:?}"
    );
}
