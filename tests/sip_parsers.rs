//! Everything that reads network input in the SIP/RTP ingress, fed mutated
//! real messages: nothing may panic, and what parses must mean something
//! sane. (The cargo-fuzz targets in fuzz/ go much further; this runs in
//! every `cargo test`.)

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::SipMessage;
use understudy::audio::g711::Law;
use understudy::transport::rtp::dtmf::{self, EventDetector, TelephoneEvent};
use understudy::transport::rtp::jitter::JitterBuffer;
use understudy::transport::rtp::packet::{self, RtpSender};
use understudy::transport::sip::sdp::{self, LocalMedia, SdpSession};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One to four edits: flip, delete, duplicate, insert, truncate, or splice
/// from another seed (line structure survives often enough to go deep).
fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(32)).min(len);
                v.drain(i..j);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let j = (i + rng.below(64)).min(len);
                let piece = v[i..j].to_vec();
                let at = rng.below(v.len());
                v.splice(at..at, piece);
            }
            3 => {
                let at = rng.below(len + 1);
                let junk: Vec<u8> = (0..rng.below(16))
                    .map(|_| {
                        [b':', b';', b'<', b'>', b' ', b'\r', b'\n', b'=', 0, 0xff][rng.below(10)]
                    })
                    .collect();
                v.splice(at..at, junk);
            }
            4 => v.truncate(rng.below(len + 1)),
            5 if !other.is_empty() => {
                let i = rng.below(other.len());
                let j = (i + rng.below(80)).min(other.len());
                let at = rng.below(len + 1);
                v.splice(at..at, other[i..j].iter().copied());
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

const OFFER: &str =
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

fn sip_seeds() -> Vec<Vec<u8>> {
    let invite = format!(
        "INVITE sip:bot@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-1-1;rport\r\n\
         From: caller <sip:caller@127.0.0.1:5091>;tag=1call1\r\nTo: <sip:bot@127.0.0.1:5060>\r\n\
         Call-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:5091;transport=UDP>\r\n\
         Record-Route: <sip:127.0.0.1:5091;lr;proxy=sbc>, <sip:10.0.0.1;lr>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    );
    let info = "INFO sip:understudy@127.0.0.1:5060 SIP/2.0\r\nv: SIP/2.0/TCP 127.0.0.1:5091;branch=z9hG4bK-2\r\n\
                f: <sip:caller@127.0.0.1>;tag=a\r\nt: <sip:bot@127.0.0.1>;tag=b\r\ni: 1-1@127.0.0.1\r\nCSeq: 2 INFO\r\n\
                c: application/dtmf-relay\r\nl: 24\r\n\r\nSignal=5\r\nDuration=160\r\n";
    let notify = "NOTIFY sip:understudy@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-3\r\n\
                  From: <sip:caller@127.0.0.1>;tag=a\r\nTo: <sip:bot@127.0.0.1>;tag=b\r\nCall-ID: 1-1@127.0.0.1\r\n\
                  CSeq: 3 NOTIFY\r\nEvent: refer;id=2\r\nSubscription-State: terminated;reason=noresource\r\n\
                  Content-Type: message/sipfrag;version=2.0\r\nContent-Length: 16\r\n\r\nSIP/2.0 200 OK\r\n";
    let refer = "REFER sip:caller@127.0.0.1:5091 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-4\r\n\
                 From: <sip:bot@127.0.0.1>;tag=b\r\nTo: <sip:caller@127.0.0.1>;tag=a\r\nCall-ID: 1-1@127.0.0.1\r\n\
                 CSeq: 2 REFER\r\nRoute: <sip:127.0.0.1:5091;lr>\r\n\
                 Refer-To: <sip:agent@127.0.0.1:5070?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>\r\n\
                 Referred-By: <sip:understudy@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n";
    let response = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-4;received=127.0.0.1;rport=5060\r\n\
                    From: <sip:bot@127.0.0.1>;tag=b\r\nTo: <sip:caller@127.0.0.1>;tag=a\r\nCall-ID: 1-1@127.0.0.1\r\n\
                    CSeq: 2 REFER\r\nContent-Length: 0\r\n\r\n";
    [invite.as_str(), info, notify, refer, response]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

#[test]
fn sip_messages_never_panic() {
    let seeds = sip_seeds();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for i in 0..30_000 {
        let seed = &seeds[i % seeds.len()];
        let other = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, seed, other);
        let Ok(msg) = SipMessage::try_from(input.as_slice()) else {
            continue;
        };
        parsed += 1;
        let _ = msg.to_bytes();
        let _ = msg.via_header().and_then(|v| v.typed());
        let _ = msg.cseq_header().and_then(|c| c.seq());
        let _ = msg.to_header().and_then(|t| t.tag());
        let _ = msg.from_header().and_then(|f| f.typed());
        let _ = msg.typed_contact_headers();
        let _ = msg.typed_record_route_headers();
        if let SipMessage::Request(req) = &msg {
            let _ = rsipstack::dialog::DialogId::try_from((
                req,
                rsipstack::transaction::key::TransactionRole::Server,
            ));
            let content_type = req.header_value("Content-Type").unwrap_or_default();
            let _ = dtmf::key_from_info(&content_type, &req.body);
            let _ = understudy::transport::sip::transfer::sipfrag_status(&req.body);
        }
    }
    // The mutations must not be so wild that nothing parses.
    assert!(
        parsed > 3_000,
        "only {parsed} of 30000 mutated messages parsed"
    );
}

#[test]
fn sdp_bodies_never_panic_and_our_answers_always_parse() {
    let seeds: Vec<Vec<u8>> = vec![
        OFFER.as_bytes().to_vec(),
        OFFER
            .replace("a=sendrecv", "a=sendonly")
            .replace("0 8 101", "8")
            .into_bytes(),
        format!("{OFFER}m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n").into_bytes(),
        OFFER
            .replace("\r\n", "\n")
            .replace("IP4 127.0.0.1", "IP6 ::1")
            .into_bytes(),
    ];
    let both = [Law::Mu, Law::A];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut accepted = 0;
    for i in 0..30_000 {
        let other = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[i % seeds.len()], &seeds[other]);
        let local = LocalMedia {
            address: "127.0.0.1".parse().unwrap(),
            rtp_port: 20000,
            session_id: 1,
            version: 1,
            codecs: both.to_vec(),
        };
        let mut session = SdpSession::new(local);
        if let Ok((answer, params)) = session.answer(&input) {
            accepted += 1;
            let back = sdp::read_answer(answer.as_bytes(), &both).unwrap_or_else(|e| {
                panic!(
                    "our answer does not parse ({e}):\n{answer}\nto the offer\n{}",
                    String::from_utf8_lossy(&input)
                )
            });
            assert_eq!(back.law, params.law);
            let lines = |s: &str| s.lines().filter(|l| l.starts_with("m=")).count();
            let offered = sdp::parse(&input).unwrap().media_descriptions.len();
            assert_eq!(
                lines(&answer),
                offered,
                "an answer has as many m= lines as the offer"
            );
        }
        let _ = session.accept_answer(&input);
    }
    assert!(accepted > 3_000, "only {accepted} offers accepted");
}

#[test]
fn rtp_rtcp_and_events_never_panic() {
    let mut tx = RtpSender::new();
    let mut seeds = vec![
        tx.packet(0, &[0xff; 160], 160),
        tx.packet_at(101, &[5, 0x8a, 3, 0x20], 7, true),
    ];
    // An RTCP RR + BYE, and an RTP packet with CSRC, extension and padding.
    seeds.push(vec![
        0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 1, 0, 0, 0, 1,
    ]);
    seeds.push(vec![
        0xb1, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 9, 0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0,
        b'a', b'b', 0, 2,
    ]);
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let mut detector = EventDetector::default();
    for i in 0..50_000 {
        let other = rng.below(seeds.len());
        let input = mutate(&mut rng, &seeds[i % seeds.len()], &seeds[other]);
        if let Ok(packet::Received::Rtp(p)) = packet::parse(&input) {
            assert!(p.payload.len() <= input.len());
            let _ = detector.on_packet(p.timestamp, &p.payload);
        }
        let _ = packet::parse_rtcp(&input);
        let _ = TelephoneEvent::parse(&input);
    }
}

#[test]
fn the_jitter_buffer_keeps_its_clock_under_any_arrival_pattern() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..200 {
        let mut jb = JitterBuffer::new(160, 320, 1600);
        let mut ts: u32 = rng.next() as u32;
        for _ in 0..500 {
            match rng.below(10) {
                0..=4 => {
                    let (frame, _) = jb.pop();
                    assert_eq!(frame.len(), 160);
                }
                5 => ts = rng.next() as u32,
                6 => ts = ts.wrapping_sub(rng.below(4000) as u32),
                _ => {
                    let len = 80 * (1 + rng.below(4));
                    jb.push(
                        (rng.below(2)) as u32,
                        ts,
                        rng.below(8) == 0,
                        vec![1000; len],
                    );
                    ts = ts.wrapping_add(len as u32);
                    assert!(jb.depth() <= 1600 + 320 + 320, "depth {}", jb.depth());
                }
            }
        }
    }
}
