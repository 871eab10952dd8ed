//! How long a peer may stay silent before its leg counts as dead, derived
//! per call from the packets it has actually sent (in-path mode's cloud leg).
//!
//! A media server that streams a packet every 20 ms, even while it listens,
//! can be declared dead after a few hundred milliseconds of nothing; one
//! whose network jitters, or that stops sending while it listens (DTX,
//! comfort noise), cannot. So the timeout follows the longest gap seen
//! between two packets of this call: twice that plus a margin, never below
//! the floor and never above the configured ceiling. Until the stream has
//! shown its cadence (the first second of packets) the ceiling applies.

use std::time::{Duration, Instant};

/// Packets seen before the cadence is trusted (one second of 20 ms packets).
const WARM_UP_PACKETS: u32 = 50;
/// Added to twice the longest gap: one more packet interval and scheduling slack.
const MARGIN: Duration = Duration::from_millis(40);

/// The cadence of one peer's RTP and the silence that means it is dead.
#[derive(Debug, Clone)]
pub struct Cadence {
    floor: Duration,
    ceiling: Duration,
    last: Option<Instant>,
    packets: u32,
    longest_gap: Duration,
}

impl Cadence {
    /// A cadence whose timeout stays within `floor..=ceiling`.
    pub fn new(floor: Duration, ceiling: Duration) -> Cadence {
        Cadence {
            floor: floor.min(ceiling),
            ceiling,
            last: None,
            packets: 0,
            longest_gap: Duration::ZERO,
        }
    }

    /// A packet (audio, a key or comfort noise) arrived at `now`.
    pub fn on_packet(&mut self, now: Instant) {
        if let Some(last) = self.last {
            self.longest_gap = self.longest_gap.max(now.saturating_duration_since(last));
        }
        self.last = Some(now);
        self.packets = self.packets.saturating_add(1);
    }

    /// The longest gap between two packets so far.
    pub fn longest_gap(&self) -> Duration {
        self.longest_gap
    }

    /// How long without a packet means the peer is gone.
    pub fn timeout(&self) -> Duration {
        if self.packets < WARM_UP_PACKETS {
            return self.ceiling;
        }
        (self.longest_gap * 2 + MARGIN).clamp(self.floor, self.ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(gaps_ms: impl IntoIterator<Item = u64>) -> Cadence {
        let mut c = Cadence::new(Duration::from_millis(160), Duration::from_millis(500));
        let mut t = Instant::now();
        c.on_packet(t);
        for g in gaps_ms {
            t += Duration::from_millis(g);
            c.on_packet(t);
        }
        c
    }

    #[test]
    fn the_ceiling_holds_until_the_stream_has_shown_its_cadence() {
        assert_eq!(fed([20; 10]).timeout(), Duration::from_millis(500));
    }

    #[test]
    fn a_steady_stream_gets_the_floor() {
        // 20 ms packets with a little scheduling wobble.
        let c = fed((0..200).map(|i| if i % 7 == 0 { 45 } else { 20 }));
        assert_eq!(c.longest_gap(), Duration::from_millis(45));
        assert_eq!(c.timeout(), Duration::from_millis(160));
    }

    #[test]
    fn jitter_and_loss_lengthen_it() {
        // Up to 120 ms of jitter and a lost packet: gaps up to 160 ms.
        let c = fed((0..200).map(|i| match i % 50 {
            10 => 160,
            30 => 0,
            _ => 20,
        }));
        assert_eq!(c.timeout(), Duration::from_millis(360));
    }

    #[test]
    fn a_peer_that_goes_quiet_while_it_listens_keeps_the_ceiling() {
        // DTX: a second without packets between talkspurts.
        let c = fed((0..100).map(|i| if i == 60 { 1_000 } else { 20 }));
        assert_eq!(c.timeout(), Duration::from_millis(500));
    }
}
