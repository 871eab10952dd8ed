//! The recent past, kept in memory for the dashboard: the last caller turns
//! with their stage timings, and calls in progress sampled over the last
//! hour. Prometheus keeps the long history from `/metrics`; this is what a
//! person looking at the box wants without one (percentiles of the last
//! turns, latency and calls over time).

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Caller turns kept.
pub const TURNS_KEPT: usize = 500;
/// Samples of calls in progress kept (an hour at one every 5 s).
pub const CALL_SAMPLES_KEPT: usize = 720;
/// How often serve samples calls in progress.
pub const CALL_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One caller turn's timings, in milliseconds (`None`: the stage did not run).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TurnSample {
    /// When the turn was reported, Unix milliseconds.
    pub at_ms: u64,
    /// Decided by the LLM or answered from the knowledge facts (else a flow turn).
    pub llm: bool,
    /// The turn ended in the safety net.
    pub safety_net: bool,
    /// End of speech until the endpointer was sure.
    pub endpoint: Option<f64>,
    /// Transcription after the endpoint.
    pub stt: Option<f64>,
    /// Deciding the bot's reply.
    pub dialog: Option<f64>,
    /// Speech output until its first audio.
    pub tts_first_audio: Option<f64>,
    /// End of the caller's speech until the bot's first audio left.
    pub voice_to_voice: Option<f64>,
}

/// Calls in progress at one moment.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CallSample {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Calls holding a slot.
    pub active: usize,
    /// The capacity then.
    pub capacity: usize,
}

/// What [`snapshot`] gives: oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recent {
    /// The last caller turns.
    pub turns: Vec<TurnSample>,
    /// Calls in progress over the last hour.
    pub calls: Vec<CallSample>,
}

#[derive(Default)]
struct Store {
    turns: VecDeque<TurnSample>,
    calls: VecDeque<CallSample>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Default::default)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn push<T>(ring: &mut VecDeque<T>, item: T, keep: usize) {
    if ring.len() == keep {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// Keep one caller turn (the oldest goes past [`TURNS_KEPT`]).
pub fn record_turn(turn: TurnSample) {
    push(&mut store().lock().unwrap().turns, turn, TURNS_KEPT);
}

/// Keep one sample of calls in progress (the oldest goes past [`CALL_SAMPLES_KEPT`]).
pub fn record_calls(active: usize, capacity: usize) {
    let sample = CallSample {
        at_ms: now_ms(),
        active,
        capacity,
    };
    push(
        &mut store().lock().unwrap().calls,
        sample,
        CALL_SAMPLES_KEPT,
    );
}

/// Everything kept, oldest first.
pub fn snapshot() -> Recent {
    let store = store().lock().unwrap();
    Recent {
        turns: store.turns.iter().cloned().collect(),
        calls: store.calls.iter().copied().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_keep_the_newest() {
        let mut ring = VecDeque::new();
        for i in 0..5 {
            push(&mut ring, i, 3);
        }
        assert_eq!(ring, [2, 3, 4]);
    }

    #[test]
    fn turns_and_calls_come_back_oldest_first() {
        record_turn(TurnSample {
            at_ms: 1,
            voice_to_voice: Some(700.0),
            ..Default::default()
        });
        record_turn(TurnSample {
            at_ms: 2,
            llm: true,
            ..Default::default()
        });
        record_calls(1, 4);
        let recent = snapshot();
        let kept: Vec<u64> = recent.turns.iter().map(|t| t.at_ms).collect();
        assert!(kept.ends_with(&[1, 2]), "{kept:?}");
        assert_eq!(recent.calls.last().unwrap().active, 1);
        assert_eq!(recent.calls.last().unwrap().capacity, 4);
    }
}
