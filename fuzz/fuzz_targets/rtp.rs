//! A datagram on an RTP port: RTP, RTCP (multiplexed), RFC 4733 events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy::sip::dtmf::{EventDetector, TelephoneEvent};
use understudy::sip::rtp::{self, Received};

fuzz_target!(|data: &[u8]| {
    match rtp::parse(data) {
        Ok(Received::Rtp(p)) => {
            let mut d = EventDetector::default();
            let _ = d.on_packet(p.timestamp, &p.payload);
            let _ = TelephoneEvent::parse(&p.payload);
            let _ = understudy::audio::g711::Law::Mu.decode(&p.payload);
        }
        Ok(Received::Rtcp(_)) | Err(_) => {}
    }
    let _ = rtp::parse_rtcp(data);
    let _ = TelephoneEvent::parse(data);
});
