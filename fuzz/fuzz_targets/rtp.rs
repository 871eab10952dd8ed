//! A datagram on an RTP port: RTP, RTCP (multiplexed), RFC 4733 events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::transport::rtp::dtmf::{EventDetector, TelephoneEvent};
use understudy::transport::rtp::packet::{self, Received};

fuzz_target!(|data: &[u8]| {
    match packet::parse(data) {
        Ok(Received::Rtp(p)) => {
            let mut d = EventDetector::default();
            let _ = d.on_packet(p.timestamp, &p.payload);
            let _ = TelephoneEvent::parse(&p.payload);
            let _ = understudy::audio::g711::Law::Mu.decode(&p.payload);
        }
        Ok(Received::Rtcp(_)) | Err(_) => {}
    }
    let _ = packet::parse_rtcp(data);
    let _ = TelephoneEvent::parse(data);
});
