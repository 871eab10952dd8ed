//! What the streamed ingresses share: calls whose audio arrives as a stream
//! of messages on one connection (Twilio-shaped WebSocket media streams,
//! Asterisk's AudioSocket) rather than as RTP beside SIP signalling.
//!
//! - [`CallerAudio`]: the caller's audio at the wire rate, in pieces of any
//!   size, to the session's canonical 20 ms frames;
//! - [`Playout`]: the bot's audio at the wire rate, taken out a frame at a
//!   time by an ingress that paces its own output (AudioSocket, the sound
//!   card), with the session's playout marks;
//! - [`CallOutcomes`]: how each streamed call ended (a transfer and its
//!   target, a hang-up), kept for the platform to ask over HTTP, since these
//!   protocols have no transfer of their own (docs/ingress.md).

use crate::audio::{self, Frame, StreamResampler, FRAME_SAMPLES, SAMPLE_RATE};
use crate::session::admission::{Admission, Ingress};
use lru::LruCache;
use serde::Serialize;
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What every streamed call shares: the appliance's admission, the outcome
/// store and the limits.
pub struct StreamContext {
    /// Readiness and capacity, shared with every other ingress.
    pub admission: Arc<Admission>,
    /// How calls ended, for `GET /calls/{id}`.
    pub outcomes: Arc<CallOutcomes>,
    /// Largest WebSocket message taken before the call is closed (1009).
    pub max_message: usize,
}

/// How long a call that is ending waits for the bot's last words to be
/// played (a transfer announcement, a goodbye) before it closes anyway.
pub const LAST_WORDS_LIMIT: Duration = Duration::from_secs(15);

/// The caller's audio at the wire rate, turned into canonical frames.
pub struct CallerAudio {
    rate: u32,
    resampler: StreamResampler,
    pending: Vec<i16>,
}

impl CallerAudio {
    /// Audio arriving at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        CallerAudio {
            rate,
            resampler: StreamResampler::new(rate, SAMPLE_RATE),
            pending: Vec::with_capacity(FRAME_SAMPLES * 2),
        }
    }

    /// The wire rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Take `samples` at the wire rate; returns the canonical frames now complete.
    pub fn push(&mut self, samples: &[i16]) -> Vec<Frame> {
        self.pending.extend(self.resampler.push(samples));
        let whole = self.pending.len() / FRAME_SAMPLES * FRAME_SAMPLES;
        let frames = audio::frames(&self.pending[..whole]).collect();
        self.pending.drain(..whole);
        frames
    }
}

/// The bot's audio waiting to go to the caller, at the wire rate, with the
/// session's marks (each acknowledged once its last sample has been taken).
pub struct Playout {
    rate: u32,
    queue: VecDeque<i16>,
    /// Samples ever queued and ever taken: marks are positions in this count.
    queued: u64,
    taken: u64,
    marks: VecDeque<(u64, u64)>,
}

impl Playout {
    /// Audio for a caller whose line runs at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Playout {
            rate,
            queue: VecDeque::new(),
            queued: 0,
            taken: 0,
            marks: VecDeque::new(),
        }
    }

    /// The line's rate changed (AudioSocket can say so mid-call): what is
    /// queued is dropped, as after a barge-in.
    pub fn set_rate(&mut self, rate: u32) {
        if rate != self.rate {
            self.rate = rate;
            self.clear();
        }
    }

    /// Queue the session's audio (16 kHz) and its mark.
    pub fn queue(&mut self, samples: &[i16], mark: u64) {
        // Whole-clip resampling: exact length, so the mark lands on the last sample.
        let wire = audio::resample(samples, SAMPLE_RATE, self.rate);
        self.queued += wire.len() as u64;
        self.queue.extend(wire);
        self.marks.push_back((self.queued, mark));
    }

    /// Drop everything queued (barge-in); its marks are never acknowledged.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.taken = self.queued;
        self.marks.clear();
    }

    /// Nothing left to send.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next `samples` samples (fewer at the end of the queue), or `None`
    /// when nothing is queued.
    pub fn take(&mut self, samples: usize) -> Option<Vec<i16>> {
        if self.queue.is_empty() {
            return None;
        }
        let n = samples.min(self.queue.len());
        self.taken += n as u64;
        Some(self.queue.drain(..n).collect())
    }

    /// One 20 ms frame at the wire rate.
    pub fn take_frame(&mut self) -> Option<Vec<i16>> {
        self.take((self.rate / 50) as usize)
    }

    /// The marks whose audio has all been taken, oldest first.
    pub fn passed_marks(&mut self) -> Vec<u64> {
        let mut passed = vec![];
        while let Some(&(at, mark)) = self.marks.front() {
            if at > self.taken {
                break;
            }
            passed.push(mark);
            self.marks.pop_front();
        }
        passed
    }
}

/// How a streamed call ended, for the platform that sent it (`GET /calls/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct CallOutcome {
    /// The way the call came.
    pub ingress: Ingress,
    /// `in_progress`, `completed` (the bot said goodbye), `transfer`,
    /// `caller_hung_up`, `refused` or `error`.
    pub result: &'static str,
    /// Where the bot wants the caller to go (a transfer only): a number, a
    /// SIP URI or a queue name from the bot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_target: Option<String>,
    /// Why: the transfer's reason, the refusal or the protocol error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CallOutcome {
    /// A call that ended with `result` and no more to say.
    pub fn plain(ingress: Ingress, result: &'static str) -> Self {
        CallOutcome {
            ingress,
            result,
            transfer_target: None,
            reason: None,
        }
    }

    /// A call the bot handed to a human at `target`, for `reason`.
    pub fn transfer(ingress: Ingress, target: String, reason: String) -> Self {
        CallOutcome {
            transfer_target: Some(target),
            reason: Some(reason),
            ..CallOutcome::plain(ingress, "transfer")
        }
    }

    /// A call that ended with `result` for `reason`.
    pub fn because(ingress: Ingress, result: &'static str, reason: impl Into<String>) -> Self {
        CallOutcome {
            reason: Some(reason.into()),
            ..CallOutcome::plain(ingress, result)
        }
    }
}

/// The outcomes of the most recent streamed calls, by call id (a Twilio
/// `callSid`/`streamSid`, an AudioSocket UUID).
pub struct CallOutcomes {
    recent: Mutex<LruCache<String, CallOutcome>>,
}

/// Outcomes kept: a busy day's worth of calls asked about within minutes.
const OUTCOMES_KEPT: usize = 4096;

impl Default for CallOutcomes {
    fn default() -> Self {
        CallOutcomes {
            recent: Mutex::new(LruCache::new(
                NonZeroUsize::new(OUTCOMES_KEPT).expect("non-zero"),
            )),
        }
    }
}

impl CallOutcomes {
    /// Record (or update) how call `id` stands.
    pub fn record(&self, id: &str, outcome: CallOutcome) {
        tracing::info!(
            call = id,
            ingress = outcome.ingress.label(),
            result = outcome.result,
            transfer_target = outcome.transfer_target.as_deref().unwrap_or(""),
            reason = outcome.reason.as_deref().unwrap_or(""),
            "call outcome"
        );
        self.recent.lock().unwrap().put(id.to_string(), outcome);
    }

    /// How call `id` stands, if it is one of the recent ones.
    pub fn get(&self, id: &str) -> Option<CallOutcome> {
        self.recent.lock().unwrap().get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_audio_becomes_whole_canonical_frames() {
        let mut caller = CallerAudio::new(8000);
        let mut frames = 0;
        // One second at 8 kHz in odd-sized pieces.
        for piece in vec![1000i16; 8000].chunks(123) {
            frames += caller.push(piece).len();
        }
        // The resampler holds back its filter delay; the rest is whole frames.
        assert!((45..=50).contains(&frames), "{frames} frames");
    }

    #[test]
    fn marks_pass_when_their_last_sample_is_taken() {
        let mut playout = Playout::new(8000);
        playout.queue(&[1; 320], 1); // 20 ms at 16 kHz: 160 samples at 8 kHz
        playout.queue(&[1; 640], 2);
        assert_eq!(playout.take(100).map(|s| s.len()), Some(100));
        assert!(playout.passed_marks().is_empty());
        assert_eq!(playout.take_frame().map(|s| s.len()), Some(160));
        assert_eq!(playout.passed_marks(), vec![1]);
        assert_eq!(playout.take(1000).map(|s| s.len()), Some(220));
        assert_eq!(playout.passed_marks(), vec![2]);
        assert!(playout.take(1).is_none());
    }

    #[test]
    fn a_cleared_mark_is_never_acknowledged() {
        let mut playout = Playout::new(8000);
        playout.queue(&[1; 3200], 7);
        playout.take_frame();
        playout.clear();
        assert!(playout.is_empty());
        assert!(playout.passed_marks().is_empty());
        playout.queue(&[1; 320], 8);
        playout.take_frame();
        assert_eq!(playout.passed_marks(), vec![8]);
    }
}
