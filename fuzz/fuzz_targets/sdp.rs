//! An SDP offer or answer off the wire, through negotiation and our answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::audio::g711::Law;
use understudy::transport::sip::sdp::{self, LocalMedia, SdpSession};

fuzz_target!(|data: &[u8]| {
    let local = LocalMedia {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: 20000,
        session_id: 1,
        version: 1,
        codecs: vec![Law::Mu, Law::A],
    };
    let mut session = SdpSession::new(local);
    if let Ok((answer, params)) = session.answer(data) {
        // Our answer must always be SDP we accept back.
        let back = sdp::read_answer(answer.as_bytes(), &[Law::Mu, Law::A]).expect("our own answer parses");
        assert_eq!(back.law, params.law);
    }
    let _ = session.accept_answer(data);
    let _ = sdp::negotiate_offer(data, &[Law::A]);
});
