//! The receive jitter buffer: packets in, exactly one 20 ms frame out per
//! tick of the playout clock.
//!
//! Audio is placed on a timeline by RTP timestamp (not by packet), so any
//! packet size (10, 20, 30 ms) works, reordered packets land where they
//! belong, and a hole is concealed for a frame or two (the last frame,
//! fading) and is silence after that. The playout point trails the newest
//! audio by a target delay; it is re-anchored when a talkspurt starts on an
//! empty buffer, when the source changes, and when the sender's timeline
//! jumps away (a restart, or a clock that drifted past the limits).

use std::collections::BTreeMap;

/// What one output frame is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Received audio (possibly with a concealed part).
    Audio,
    /// A hole inside a talkspurt, filled from the last frame.
    Concealed,
    /// Nothing to play (before the first packet, DTX, a long gap).
    Silence,
}

/// Buffer counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets that arrived after their audio was due.
    pub late: u64,
    /// Frames filled by concealment.
    pub concealed: u64,
    /// Times the playout point was re-anchored.
    pub resyncs: u64,
    /// Packets dropped because the buffer was over its limit.
    pub overflow: u64,
}

/// A jitter buffer for one stream at a fixed sample rate.
pub struct JitterBuffer {
    frame: usize,
    target: i64,
    max: i64,
    /// Audio by extended start timestamp.
    slots: BTreeMap<i64, Vec<i16>>,
    /// Extended timestamp of the next sample to play.
    play: i64,
    ssrc: Option<u32>,
    /// The last raw timestamp seen and its extension, to unwrap 32-bit wraps.
    last_raw: u32,
    last_ext: i64,
    last_frame: Vec<i16>,
    /// Consecutive concealed frames.
    concealing: u32,
    stats: JitterStats,
}

/// Concealed frames before a hole becomes silence (RFC 3550 talkspurts end
/// with silence anyway; repeating longer sounds worse than a gap).
const MAX_CONCEALED: u32 = 3;

impl JitterBuffer {
    /// `frame` samples per tick; `target` and `max` delay in samples.
    pub fn new(frame: usize, target: usize, max: usize) -> Self {
        JitterBuffer {
            frame,
            target: target as i64,
            max: max.max(target + frame) as i64,
            slots: BTreeMap::new(),
            play: 0,
            ssrc: None,
            last_raw: 0,
            last_ext: 0,
            last_frame: vec![0; frame],
            concealing: 0,
            stats: JitterStats::default(),
        }
    }

    /// Counters since the buffer was created.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Samples buffered ahead of the playout point.
    pub fn depth(&self) -> i64 {
        match self.slots.iter().next_back() {
            Some((start, audio)) => (start + audio.len() as i64 - self.play).max(0),
            None => 0,
        }
    }

    fn extend(&mut self, raw: u32) -> i64 {
        // The nearest extension of `raw` to the last timestamp seen.
        let delta = raw.wrapping_sub(self.last_raw) as i32 as i64;
        self.last_raw = raw;
        self.last_ext += delta;
        self.last_ext
    }

    fn anchor(&mut self, start: i64) {
        self.slots.clear();
        self.play = start - self.target;
        self.concealing = 0;
    }

    /// Add decoded audio that starts at RTP timestamp `timestamp`.
    pub fn push(&mut self, ssrc: u32, timestamp: u32, marker: bool, samples: Vec<i16>) {
        if samples.is_empty() {
            return;
        }
        if self.ssrc != Some(ssrc) {
            // A new source: its timeline has nothing to do with the old one.
            if self.ssrc.is_some() {
                self.stats.resyncs += 1;
            }
            self.ssrc = Some(ssrc);
            self.last_raw = timestamp;
            self.last_ext = 0;
            self.anchor(0);
        }
        let start = self.extend(timestamp);
        let end = start + samples.len() as i64;
        let idle = self.slots.is_empty();
        if marker && idle {
            // A new talkspurt on an empty buffer: restart at the target delay.
            if start - self.play != self.target {
                self.anchor(start);
            }
        } else if end <= self.play - self.max || start > self.play + self.max + self.target {
            // Far outside the window: the sender's timeline moved.
            self.stats.resyncs += 1;
            self.anchor(start);
        } else if end <= self.play {
            self.stats.late += 1;
            return;
        } else if end > self.play + self.max {
            // More than the limit ahead: drop the oldest audio to catch up.
            self.stats.overflow += 1;
            self.play = end - self.max;
            let play = self.play;
            self.slots.retain(|s, a| s + a.len() as i64 > play);
        }
        self.slots.entry(start).or_insert(samples);
    }

    /// The next frame of the playout clock.
    pub fn pop(&mut self) -> (Vec<i16>, FrameKind) {
        let from = self.play;
        let to = from + self.frame as i64;
        let mut out = vec![0i16; self.frame];
        let mut covered = 0usize;
        for (&start, audio) in self.slots.range(..to) {
            let end = start + audio.len() as i64;
            if end <= from {
                continue;
            }
            let a = start.max(from);
            let b = end.min(to);
            let src = &audio[(a - start) as usize..(b - start) as usize];
            out[(a - from) as usize..(b - from) as usize].copy_from_slice(src);
            covered += (b - a) as usize;
        }
        self.slots.retain(|s, a| s + a.len() as i64 > to);
        self.play = to;
        let kind = if covered > 0 {
            self.concealing = 0;
            FrameKind::Audio
        } else if self.slots.is_empty() && self.concealing >= MAX_CONCEALED {
            FrameKind::Silence
        } else if self.concealing < MAX_CONCEALED && self.last_frame.iter().any(|&s| s != 0) {
            // Repeat the last frame, halving it each time.
            self.concealing += 1;
            self.stats.concealed += 1;
            let shift = self.concealing;
            for (o, s) in out.iter_mut().zip(&self.last_frame) {
                *o = s >> shift;
            }
            FrameKind::Concealed
        } else {
            FrameKind::Silence
        };
        if kind == FrameKind::Audio {
            self.last_frame.copy_from_slice(&out);
        } else if kind == FrameKind::Silence {
            self.last_frame.iter_mut().for_each(|s| *s = 0);
        }
        (out, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 ms packet whose samples encode its own index.
    fn packet(i: u32) -> Vec<i16> {
        vec![(i + 1) as i16 * 100; 160]
    }

    fn buffer() -> JitterBuffer {
        // 40 ms target, 200 ms limit.
        JitterBuffer::new(160, 320, 1600)
    }

    #[test]
    fn in_order_stream_plays_after_the_target_delay() {
        let mut jb = buffer();
        let mut out = vec![];
        for i in 0..10u32 {
            jb.push(1, 1000 + i * 160, i == 0, packet(i));
            out.push(jb.pop());
        }
        // Two frames of silence (the 40 ms delay), then every packet in order.
        assert_eq!(out[0].1, FrameKind::Silence);
        assert_eq!(out[1].1, FrameKind::Silence);
        for (i, frame) in out.iter().enumerate().skip(2) {
            assert_eq!(
                *frame,
                (packet(i as u32 - 2), FrameKind::Audio),
                "frame {i}"
            );
        }
    }

    #[test]
    fn reordered_packets_land_in_place() {
        let mut jb = buffer();
        let order = [0u32, 2, 1, 3, 5, 4, 6, 7];
        let mut out = vec![];
        for (n, &i) in order.iter().enumerate() {
            jb.push(1, i * 160, n == 0, packet(i));
            out.push(jb.pop().0);
        }
        assert_eq!(
            &out[2..],
            &[
                packet(0),
                packet(1),
                packet(2),
                packet(3),
                packet(4),
                packet(5)
            ]
        );
        assert_eq!(jb.stats().late, 0);
    }

    #[test]
    fn a_lost_packet_is_concealed_and_a_long_gap_is_silence() {
        let mut jb = buffer();
        let mut kinds = vec![];
        for i in 0..30u32 {
            if i != 5 && !(10..20).contains(&i) {
                jb.push(1, i * 160, i == 0, packet(i));
            }
            kinds.push(jb.pop().1);
        }
        // Packet 5 plays at tick 7.
        assert_eq!(kinds[7], FrameKind::Concealed);
        assert_eq!(kinds[8], FrameKind::Audio);
        // Ten packets missing: concealed three times, then silence.
        assert_eq!(&kinds[12..15], &[FrameKind::Concealed; 3]);
        assert!(
            kinds[15..22].iter().all(|k| *k == FrameKind::Silence),
            "{kinds:?}"
        );
        assert_eq!(kinds[22], FrameKind::Audio);
        assert_eq!(jb.stats().concealed, 4);
    }

    #[test]
    fn late_packets_are_dropped_not_played_out_of_place() {
        let mut jb = buffer();
        for i in 0..6u32 {
            if i != 1 {
                jb.push(1, i * 160, i == 0, packet(i));
            }
            jb.pop();
        }
        // Packet 1 was due at tick 3.
        jb.push(1, 160, false, packet(1));
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.pop().0, packet(4));
    }

    #[test]
    fn timestamps_wrap_without_a_glitch() {
        let mut jb = buffer();
        let base = u32::MAX - 400;
        let mut out = vec![];
        for i in 0..8u32 {
            jb.push(9, base.wrapping_add(i * 160), i == 0, packet(i));
            out.push(jb.pop());
        }
        assert_eq!(out[7], (packet(5), FrameKind::Audio));
        assert_eq!(jb.stats().resyncs, 0);
    }

    #[test]
    fn other_packet_sizes_are_reframed() {
        // 30 ms packets (240 samples) come out as 20 ms frames.
        let mut jb = JitterBuffer::new(160, 320, 1600);
        let mut samples = vec![];
        let mut next = 0i16;
        for i in 0..20u32 {
            let p: Vec<i16> = (0..240).map(|k| next.wrapping_add(k as i16)).collect();
            next = next.wrapping_add(240);
            jb.push(1, i * 240, i == 0, p);
            samples.extend(jb.pop().0);
            if i % 2 == 1 {
                samples.extend(jb.pop().0);
            }
        }
        let audio: Vec<i16> = samples.into_iter().skip(320).collect();
        assert!(audio.len() > 3000);
        assert!(
            audio.iter().enumerate().all(|(k, &s)| s == k as i16),
            "continuous ramp"
        );
    }

    #[test]
    fn a_new_talkspurt_after_silence_keeps_the_target_delay() {
        let mut jb = buffer();
        for i in 0..5u32 {
            jb.push(1, i * 160, i == 0, packet(i));
            jb.pop();
        }
        // 5 s of DTX: the clock keeps ticking.
        for _ in 0..250 {
            jb.pop();
        }
        // The talkspurt resumes 3 s later on the sender's timeline (clocks differ).
        let ts = 5 * 160 + 24_000;
        jb.push(1, ts, true, packet(50));
        assert_eq!(jb.pop().1, FrameKind::Silence);
        assert_eq!(jb.pop().1, FrameKind::Silence);
        assert_eq!(jb.pop(), (packet(50), FrameKind::Audio));
    }

    #[test]
    fn a_burst_beyond_the_limit_drops_the_oldest() {
        let mut jb = buffer();
        // 30 packets (600 ms) at once, nothing played: at most 200 ms stays.
        for i in 0..30u32 {
            jb.push(1, i * 160, i == 0, packet(i));
        }
        assert!(jb.depth() <= 1600, "{}", jb.depth());
        assert!(jb.stats().overflow > 0);
        assert_eq!(jb.pop().0, packet(20));
    }

    #[test]
    fn a_new_source_restarts_the_timeline() {
        let mut jb = buffer();
        for i in 0..4u32 {
            jb.push(1, i * 160, i == 0, packet(i));
            jb.pop();
        }
        for i in 0..4u32 {
            jb.push(2, 777_777 + i * 160, false, packet(10 + i));
            jb.pop();
        }
        assert_eq!(jb.pop().0, packet(12));
        assert_eq!(jb.stats().resyncs, 1);
    }
}
