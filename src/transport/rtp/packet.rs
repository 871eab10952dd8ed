//! RTP (RFC 3550) on the wire: reading packets (with `rtc-rtp`, which survived
//! fuzzing; the `rtp` crate did not), writing ours, telling RTCP apart when a
//! peer multiplexes it on the RTP port (RFC 5761), and the receive statistics
//! RFC 3550 defines (loss from sequence numbers, interarrival jitter).

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, Unmarshal};

/// What arrived on an RTP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An RTP packet.
    Rtp(RtpPacket),
    /// RTCP multiplexed on the RTP port: counted, not interpreted.
    Rtcp(RtcpSummary),
}

/// The parts of an RTP packet the media leg uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The payload type (0 PCMU, 8 PCMA, or a dynamic one such as `telephone-event`).
    pub payload_type: u8,
    /// The M bit: the first packet of a talkspurt (or of a DTMF event).
    pub marker: bool,
    /// Sequence number, +1 per packet (wraps at 65536).
    pub sequence: u16,
    /// Media timestamp of the first sample, in clock-rate units (8 kHz for G.711).
    pub timestamp: u32,
    /// The sender's synchronisation source id.
    pub ssrc: u32,
    /// Payload without header, CSRCs, extension or padding.
    pub payload: Bytes,
}

/// Why a datagram was not RTP we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Fewer bytes than the fixed 12-byte header; the length found.
    #[error("shorter than an RTP header ({0} bytes)")]
    Short(usize),
    /// A version other than 2; the version found.
    #[error("RTP version {0}, not 2")]
    Version(u8),
    /// Lengths (CSRCs, extension, padding) that do not fit the packet.
    #[error("malformed RTP: {0}")]
    Malformed(String),
    /// An RTCP packet whose lengths do not fit.
    #[error("malformed RTCP: {0}")]
    MalformedRtcp(String),
}

/// Parse one datagram from an RTP port.
pub fn parse(datagram: &[u8]) -> Result<Received, RtpError> {
    if datagram.len() < 12 {
        // An RTCP packet is at least 8 bytes; anything shorter is neither.
        if datagram.len() >= 8 && is_rtcp(datagram) {
            return parse_rtcp(datagram).map(Received::Rtcp);
        }
        return Err(RtpError::Short(datagram.len()));
    }
    let version = datagram[0] >> 6;
    if version != 2 {
        return Err(RtpError::Version(version));
    }
    if is_rtcp(datagram) {
        return parse_rtcp(datagram).map(Received::Rtcp);
    }
    let mut buf = datagram;
    let packet =
        rtc_rtp::Packet::unmarshal(&mut buf).map_err(|e| RtpError::Malformed(e.to_string()))?;
    let h = packet.header;
    Ok(Received::Rtp(RtpPacket {
        payload_type: h.payload_type,
        marker: h.marker,
        sequence: h.sequence_number,
        timestamp: h.timestamp,
        ssrc: h.ssrc,
        payload: packet.payload,
    }))
}

/// RFC 5761 section 4: RTCP packet types 192-223 put 64-95 in RTP's
/// payload-type bits, which RTP audio never uses.
fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[0] >> 6 == 2 && (64..=95).contains(&(datagram[1] & 0x7f))
}

/// What a compound RTCP packet contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtcpSummary {
    /// Sender reports (SR) in the packet.
    pub sender_reports: u32,
    /// Receiver reports (RR) in the packet.
    pub receiver_reports: u32,
    /// The peer said it is leaving (RTCP BYE).
    pub bye: bool,
}

/// Walk a compound RTCP packet (RFC 3550 section 6.1) by its length fields.
pub fn parse_rtcp(datagram: &[u8]) -> Result<RtcpSummary, RtpError> {
    let mut summary = RtcpSummary::default();
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtpError::MalformedRtcp(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        if rest[0] >> 6 != 2 {
            return Err(RtpError::MalformedRtcp(format!("version {}", rest[0] >> 6)));
        }
        let words = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let len = (words + 1) * 4;
        if len > rest.len() {
            return Err(RtpError::MalformedRtcp(format!(
                "length {len} beyond the datagram ({})",
                rest.len()
            )));
        }
        match rest[1] {
            200 => summary.sender_reports += 1,
            201 => summary.receiver_reports += 1,
            203 => summary.bye = true,
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(summary)
}

/// Writes our outgoing stream: one SSRC, sequence numbers and timestamps that
/// only move forward, the marker bit on the first packet of a talkspurt.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    marker_next: bool,
}

impl RtpSender {
    /// Random SSRC, sequence and timestamp (RFC 3550 section 5.1).
    pub fn new() -> Self {
        RtpSender {
            ssrc: rand::random(),
            sequence: rand::random(),
            timestamp: rand::random(),
            marker_next: true,
        }
    }

    /// Our synchronisation source id.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The next packet starts a talkspurt (after silence).
    pub fn mark_talkspurt(&mut self) {
        self.marker_next = true;
    }

    /// Advance the clock without sending (hold, or nothing to send).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// A packet carrying `payload` that covers `samples` of the clock; the
    /// timestamp then advances by `samples`.
    pub fn packet(&mut self, payload_type: u8, payload: &[u8], samples: u32) -> Vec<u8> {
        let bytes = self.packet_at(payload_type, payload, self.timestamp, self.marker_next);
        self.marker_next = false;
        self.timestamp = self.timestamp.wrapping_add(samples);
        bytes
    }

    /// A packet with an explicit timestamp and marker (RFC 4733 events keep
    /// the timestamp of their start); the clock does not move.
    pub fn packet_at(
        &mut self,
        payload_type: u8,
        payload: &[u8],
        timestamp: u32,
        marker: bool,
    ) -> Vec<u8> {
        let header = rtc_rtp::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: self.sequence,
            timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        self.sequence = self.sequence.wrapping_add(1);
        let packet = rtc_rtp::Packet {
            header,
            payload: Bytes::copy_from_slice(payload),
        };
        // A plain 12-byte header cannot fail to marshal.
        packet.marshal().map(|b| b.to_vec()).unwrap_or_default()
    }

    /// The timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
}

impl Default for RtpSender {
    fn default() -> Self {
        Self::new()
    }
}

/// Receive statistics of one source (RFC 3550 appendix A.1, A.3, A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiveStats {
    started: bool,
    base_seq: u32,
    /// Highest sequence number seen, extended with the wrap count.
    max_seq: u32,
    /// Packets received (duplicates included).
    pub received: u64,
    /// Packets whose sequence number was already seen or is behind the highest one (duplicated or
    /// reordered).
    pub duplicates_or_late: u64,
    /// Interarrival jitter in timestamp units.
    jitter: f64,
    last_transit: Option<i64>,
}

impl ReceiveStats {
    /// Count a packet; `timing` is its (timestamp, arrival time in timestamp
    /// units), `None` for packets whose timestamp is not a sampling instant
    /// (RFC 4733 events keep their start time), which count for loss only.
    pub fn on_packet(&mut self, sequence: u16, timing: Option<(u32, u32)>) {
        let seq = sequence as u32;
        if !self.started {
            self.started = true;
            self.base_seq = seq;
            self.max_seq = seq;
        } else {
            let cycles = self.max_seq & 0xffff_0000;
            let max_low = self.max_seq & 0xffff;
            let delta = seq.wrapping_sub(max_low) & 0xffff;
            if delta == 0 {
                self.duplicates_or_late += 1;
            } else if delta < 0x8000 {
                // In order (possibly after a gap); a wrap bumps the cycle count.
                let cycles = if seq < max_low {
                    cycles.wrapping_add(0x1_0000)
                } else {
                    cycles
                };
                self.max_seq = cycles | seq;
            } else {
                // Older than the highest: reordered or duplicate.
                self.duplicates_or_late += 1;
            }
        }
        self.received += 1;
        let Some((timestamp, arrival)) = timing else {
            return;
        };
        let transit = arrival as i64 - timestamp as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            // Ignore jumps across a timestamp discontinuity (a new talkspurt
            // after a long silence, a clock restart).
            if d < 8000.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Packets the sequence numbers promised.
    pub fn expected(&self) -> u64 {
        if !self.started {
            return 0;
        }
        (self.max_seq.wrapping_sub(self.base_seq) as u64) + 1
    }

    /// Packets that never came (never negative: duplicates are not credit).
    pub fn lost(&self) -> u64 {
        let unique = self.received - self.duplicates_or_late;
        self.expected().saturating_sub(unique)
    }

    /// Interarrival jitter in milliseconds at `clock_rate`.
    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        self.jitter * 1000.0 / clock_rate as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_packets_parse_back() {
        let mut tx = RtpSender::new();
        let first_ts = tx.timestamp();
        let a = tx.packet(0, &[0xff; 160], 160);
        let b = tx.packet(0, &[0x7f; 160], 160);
        let (Received::Rtp(a), Received::Rtp(b)) = (parse(&a).unwrap(), parse(&b).unwrap()) else {
            panic!()
        };
        assert!(a.marker && !b.marker, "marker on the first packet only");
        assert_eq!(b.sequence, a.sequence.wrapping_add(1));
        assert_eq!(a.timestamp, first_ts);
        assert_eq!(b.timestamp, first_ts.wrapping_add(160));
        assert_eq!(a.ssrc, tx.ssrc());
        assert_eq!(&b.payload[..], &[0x7f; 160][..]);
        tx.skip(320);
        tx.mark_talkspurt();
        let Received::Rtp(c) = parse(&tx.packet(8, &[1], 160)).unwrap() else {
            panic!()
        };
        assert!(c.marker);
        assert_eq!(c.timestamp, first_ts.wrapping_add(640));
    }

    #[test]
    fn padding_csrc_and_extensions_are_stripped() {
        // V=2 P=1 X=1 CC=1, PT 0, seq 1, ts 2, ssrc 3, one CSRC, a one-word
        // extension, payload "ab", two bytes of padding.
        let mut p = vec![0xb1, 0x00, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 9];
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        p.extend_from_slice(b"ab");
        p.extend_from_slice(&[0, 2]);
        let Received::Rtp(r) = parse(&p).unwrap() else {
            panic!()
        };
        assert_eq!(&r.payload[..], b"ab");
        assert_eq!((r.sequence, r.timestamp, r.ssrc), (1, 2, 3));
    }

    #[test]
    fn rtcp_on_the_rtp_port_is_recognized() {
        // An RR with no report blocks, then a BYE for one source.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let bye = [0x81, 203, 0, 1, 0, 0, 0, 1];
        let compound: Vec<u8> = rr.iter().chain(bye.iter()).copied().collect();
        assert_eq!(
            parse(&compound).unwrap(),
            Received::Rtcp(RtcpSummary {
                receiver_reports: 1,
                bye: true,
                ..Default::default()
            })
        );
        assert!(matches!(
            parse_rtcp(&compound[..10]),
            Err(RtpError::MalformedRtcp(_))
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x80; 5]).is_err());
        assert_eq!(parse(&[0x40; 20]), Err(RtpError::Version(1)));
        // Header claims 15 CSRCs in a 16-byte datagram.
        assert!(parse(&[0x8f, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0]).is_err());
        // Padding longer than the payload.
        assert!(parse(&[0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9]).is_err());
    }

    #[test]
    fn loss_counts_gaps_across_the_sequence_wrap() {
        let mut s = ReceiveStats::default();
        let mut seq: u16 = 65530;
        for i in 0..20u32 {
            if i != 7 && i != 8 {
                s.on_packet(seq, Some((i * 160, i * 160)));
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(s.expected(), 20);
        assert_eq!(s.lost(), 2);
        // A late duplicate does not hide a loss.
        s.on_packet(65531, Some((160, 4000)));
        // Events share the sequence space: not a loss.
        s.on_packet(seq, None);
        assert_eq!(s.expected(), 21);
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn jitter_follows_arrival_variation() {
        let mut steady = ReceiveStats::default();
        let mut shaky = ReceiveStats::default();
        for i in 0..200u32 {
            steady.on_packet(i as u16, Some((i * 160, i * 160 + 50)));
            let wobble = if i % 2 == 0 { 0 } else { 160 };
            shaky.on_packet(i as u16, Some((i * 160, i * 160 + wobble)));
        }
        assert!(steady.jitter_ms(8000) < 0.01);
        assert!(
            (shaky.jitter_ms(8000) - 20.0).abs() < 2.0,
            "{}",
            shaky.jitter_ms(8000)
        );
    }
}
