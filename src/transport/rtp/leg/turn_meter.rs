//! Voice-to-voice as the caller gets it, measured on the wire.

use crate::audio::{self, g711::WIRE_RATE};
use std::time::{Duration, Instant};

/// Measures, on the wire, the time from the end of caller speech to the first
/// packet of the bot's answer: what the caller actually waits.
/// Measures, on the wire, the time from the end of caller speech to the first
/// packet of the bot's answer: what the caller actually waits.
#[derive(Default)]
pub(super) struct TurnMeter {
    voiced: Duration,
    last_voiced: Option<Instant>,
}

/// Speech needed before a bot answer counts as a turn (not a cough).
const MIN_TURN_SPEECH: Duration = Duration::from_millis(300);
/// The caller must have stopped this long before the bot's audio counts.
const MIN_GAP: Duration = Duration::from_millis(100);

impl TurnMeter {
    pub fn on_caller(&mut self, samples: &[i16], now: Instant) {
        if audio::is_speech_level(samples) {
            self.voiced += Duration::from_secs_f64(samples.len() as f64 / WIRE_RATE as f64);
            self.last_voiced = Some(now);
        }
    }

    /// The first packet of a bot talkspurt left: the turn's latency, if any.
    pub fn on_bot_talkspurt(&mut self, now: Instant) -> Option<Duration> {
        let last = self.last_voiced?;
        let gap = now.duration_since(last);
        if self.voiced < MIN_TURN_SPEECH || gap < MIN_GAP {
            return None;
        }
        self.voiced = Duration::ZERO;
        self.last_voiced = None;
        Some(gap)
    }
}
