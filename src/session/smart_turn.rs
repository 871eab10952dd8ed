//! Semantic end of turn: at a pause the session asks Smart Turn v3 (in the
//! VAD worker) whether the caller has finished, and ends the turn at once or
//! keeps listening ([`super::endpoint::TurnVerdict`]). Without an answer in
//! time the fixed silence of the endpointer applies, as before.

use super::endpoint::{EndpointEvent, TurnVerdict};
use super::Session;
use crate::audio::{ms_to_samples, SAMPLE_RATE};
use crate::metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How a session uses Smart Turn (from `[session]`, docs/config.md).
#[derive(Debug, Clone)]
pub struct SmartTurnSettings {
    /// Probability at or above which a pause ends the turn.
    pub threshold: f32,
    /// Longest wait for the model's answer.
    pub timeout: Duration,
}

/// Audio before the turn's start that the model hears: 500 ms, as pipecat
/// feeds it.
const LEAD_IN_MS: f64 = 500.0;

/// The first fallback of the process is a warning, later ones are `info`
/// (a missing model would otherwise warn at every pause of every call).
static WARNED: AtomicBool = AtomicBool::new(false);

impl Session {
    /// The caller paused in a turn that began at `start`: ask Smart Turn.
    /// Returns `SpeechEnded` when the turn ends now; otherwise the
    /// endpointer has been told to hold the pause, or (no answer) left to
    /// its fixed silence.
    pub(super) async fn end_of_turn_at_pause(&mut self, start: u64) -> Option<EndpointEvent> {
        let settings = self.setup.settings.smart_turn.clone()?;
        let vad = self.setup.engines.vad.clone()?;
        let lead_in = ms_to_samples(LEAD_IN_MS, SAMPLE_RATE) as u64;
        let audio = self
            .audio
            .span(start.saturating_sub(lead_in), self.endpointer.position());
        let probability = match vad.end_of_turn(&audio, settings.timeout).await {
            Ok(p) => p,
            Err(error) => {
                metrics::counter_inc(metrics::SMART_TURN_DECISIONS, &[("decision", "fallback")]);
                if WARNED.swap(true, Ordering::Relaxed) {
                    tracing::info!(call = %self.call_id, %error, "no end-of-turn answer: waiting the fixed silence");
                } else {
                    tracing::warn!(call = %self.call_id, %error, "no end-of-turn answer: waiting the fixed silence (session.endpoint_silence_ms) instead (logged once; see understudy_smart_turn_decisions_total)");
                }
                return None;
            }
        };
        // Only a "finished" needs the words: the speculative transcription
        // started at this same pause, and the turn would wait for it anyway.
        let transcript = if probability >= settings.threshold {
            match self.speculative_text().await {
                Some(Ok(text)) => Some(text),
                // Without the words the guard cannot tell: the fixed silence decides.
                Some(Err(error)) => {
                    metrics::counter_inc(
                        metrics::SMART_TURN_DECISIONS,
                        &[("decision", "fallback")],
                    );
                    tracing::info!(call = %self.call_id, probability, %error, "no speculative transcript to check Smart Turn's \"finished\": waiting the fixed silence");
                    return None;
                }
                None => None,
            }
        } else {
            None
        };
        let verdict =
            TurnVerdict::from_model(probability, settings.threshold, transcript.as_deref());
        metrics::counter_inc(
            metrics::SMART_TURN_DECISIONS,
            &[("decision", verdict.as_str())],
        );
        tracing::debug!(call = %self.call_id, probability, ?verdict, transcript, "end of turn");
        match verdict {
            TurnVerdict::Finished => self.endpointer.end_now(),
            TurnVerdict::Unfinished | TurnVerdict::WordsGoOn => {
                self.endpointer.hold();
                None
            }
        }
    }

    /// The text of the speculative transcription, waiting for it (`None`:
    /// there is none, no STT engine); the result stays in place for the turn.
    async fn speculative_text(&mut self) -> Option<Result<String, String>> {
        let (end, task) = self.speculative.take()?;
        let Ok(result) = task.await else {
            return Some(Err("the speculative transcription was aborted".into()));
        };
        let text = match &result {
            Ok(t) => Ok(t.text.clone()),
            Err(e) => Err(e.to_string()),
        };
        self.speculative = Some((end, tokio::spawn(std::future::ready(result))));
        Some(text)
    }
}
