//! Unit tests of `sdp`.

use super::*;

const BOTH: &[Law] = &[Law::Mu, Law::A];

fn sipp_offer(formats: &str, extra: &str) -> String {
    format!(
        "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 6000 RTP/AVP {formats}\r\n{extra}"
    )
}

fn local() -> LocalMedia {
    LocalMedia {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: 20000,
        session_id: 7,
        version: 1,
        codecs: BOTH.to_vec(),
    }
}

#[test]
fn static_payload_types_without_rtpmap_are_g711() {
    let n = negotiate_offer(sipp_offer("8 0", "").as_bytes(), BOTH).unwrap();
    assert_eq!(n.params.law, Law::A, "the offerer's order wins");
    assert_eq!(n.params.payload_type, 8);
    assert_eq!(n.params.remote, Some("127.0.0.1:6000".parse().unwrap()));
    assert_eq!(n.params.dtmf_payload_type, None);
    assert_eq!(n.params.remote_direction, Direction::SendRecv);
}

#[test]
fn telephone_event_and_dynamic_types_are_found() {
    let extra = "a=rtpmap:0 PCMU/8000\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\na=ptime:30\r\n";
    let n = negotiate_offer(sipp_offer("18 0 96", extra).as_bytes(), BOTH).unwrap();
    assert_eq!((n.params.law, n.params.payload_type), (Law::Mu, 0));
    assert_eq!(n.params.dtmf_payload_type, Some(96));
    assert_eq!(n.params.ptime_ms, Some(30));
    let a = answer(&local(), &n);
    assert!(a.contains("m=audio 20000 RTP/AVP 0 96\r\n"), "{a}");
    assert!(a.contains("a=rtpmap:96 telephone-event/8000\r\n"), "{a}");
    assert!(a.contains("a=sendrecv\r\n"), "{a}");
    // Our answer parses back to the same stream.
    let back = read_answer(a.as_bytes(), BOTH).unwrap();
    assert_eq!(back.remote, Some("127.0.0.1:20000".parse().unwrap()));
    assert_eq!(back.dtmf_payload_type, Some(96));
}

#[test]
fn hold_directions_are_answered_in_reverse() {
    for (offered, answered, we_send) in [
        ("a=sendonly\r\n", "a=recvonly", false),
        ("a=inactive\r\n", "a=inactive", false),
        ("a=recvonly\r\n", "a=sendonly", true),
    ] {
        let n = negotiate_offer(sipp_offer("0", offered).as_bytes(), BOTH).unwrap();
        assert_eq!(n.params.we_send(), we_send, "{offered}");
        assert!(answer(&local(), &n).contains(answered), "{offered}");
    }
    // The old hold form: c=0.0.0.0.
    let old = sipp_offer("0", "").replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    let n = negotiate_offer(old.as_bytes(), BOTH).unwrap();
    assert_eq!(n.params.remote, None);
    assert!(!n.params.we_send());
}

#[test]
fn unacceptable_offers_say_why() {
    let g729 = negotiate_offer(
        sipp_offer("18", "a=rtpmap:18 G729/8000\r\n").as_bytes(),
        BOTH,
    )
    .unwrap_err();
    assert_eq!(g729.status(), 488);
    assert!(g729.to_string().contains("PCMU"), "{g729}");
    let srtp = sipp_offer("0", "").replace("RTP/AVP", "RTP/SAVP");
    assert_eq!(
        negotiate_offer(srtp.as_bytes(), BOTH).unwrap_err().status(),
        488
    );
    // Only PCMA allowed by the configuration.
    assert_eq!(
        negotiate_offer(sipp_offer("0", "").as_bytes(), &[Law::A])
            .unwrap_err()
            .status(),
        488
    );
    // A wideband PCMU is not ours either.
    let wide = sipp_offer("97", "a=rtpmap:97 PCMU/16000\r\n");
    assert_eq!(
        negotiate_offer(wide.as_bytes(), BOTH).unwrap_err().status(),
        488
    );
    assert_eq!(negotiate_offer(b"hello", BOTH).unwrap_err().status(), 400);
    assert_eq!(negotiate_offer(b"", BOTH).unwrap_err().status(), 400);
}

#[test]
fn answers_keep_every_offered_line_and_reject_the_rest() {
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                m=audio 5002 RTP/AVP 8\r\nc=IN IP4 10.0.0.2\r\na=sendonly\r\n";
    let n = negotiate_offer(body.as_bytes(), BOTH).unwrap();
    assert_eq!(
        n.params.remote,
        Some("10.0.0.2:5002".parse().unwrap()),
        "media-level c= wins"
    );
    let a = answer(&local(), &n);
    let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        ["m=video 0 RTP/AVP 96", "m=audio 20000 RTP/AVP 8"],
        "{a}"
    );
    assert!(a.contains("a=recvonly"));
}

#[test]
fn our_offer_is_valid_sdp_with_both_laws_and_events() {
    let o = offer(&local(), Direction::SendRecv);
    let n = negotiate_offer(o.as_bytes(), BOTH).unwrap();
    assert_eq!(
        (
            n.params.law,
            n.params.payload_type,
            n.params.dtmf_payload_type
        ),
        (Law::Mu, 0, Some(101))
    );
    let only_a = negotiate_offer(o.as_bytes(), &[Law::A]).unwrap();
    assert_eq!(only_a.params.payload_type, 8);
}

#[test]
fn lf_only_and_missing_final_newline_parse() {
    let body =
        "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0";
    assert!(negotiate_offer(body.as_bytes(), BOTH).is_ok());
}

#[test]
fn the_origin_version_moves_only_when_our_sdp_changes() {
    let mut session = SdpSession::new(local());
    let first = session.answer(sipp_offer("0", "").as_bytes()).unwrap().0;
    let same = session.answer(sipp_offer("0", "").as_bytes()).unwrap().0;
    assert_eq!(first, same);
    assert!(first.contains("o=understudy 7 1 "), "{first}");
    let hold = session
        .answer(sipp_offer("0", "a=sendonly\r\n").as_bytes())
        .unwrap()
        .0;
    assert!(
        hold.contains("o=understudy 7 2 ") && hold.contains("a=recvonly"),
        "{hold}"
    );
    assert!(!session.params.as_ref().unwrap().we_send());
}

#[test]
fn host_names_are_refused_not_resolved() {
    let body = sipp_offer("0", "").replace("c=IN IP4 127.0.0.1", "c=IN IP4 sbc.invalid");
    let e = negotiate_offer(body.as_bytes(), BOTH).unwrap_err();
    assert_eq!(e.status(), 488, "{e}");
}
