//! Taking a call over from the cloud bot (in-path mode) and continuing the
//! conversation where it was: the relay hands over both sides' recent audio
//! ([`Handover`]); the cloud bot's last prompt is transcribed and matched
//! against the bundle's prompts ([`crate::dialog::Bot::locate`]) while the
//! caller's recent words run through endpointing as usual; the session then
//! resumes the flow at that state ([`crate::dialog::Bot::resume`]), so the
//! caller's pending answer is answered there, or the pending question is
//! asked again in one short sentence. A weak match falls back to the start
//! state with the caller's recent question, as before (docs/continuity.md).

use super::SessionSetup;
use crate::config::TakeoverPromptWhen;
use crate::dialog::Located;
use crate::metrics;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinHandle;

/// What the relay heard before the cloud leg failed.
#[derive(Debug, Default)]
pub struct Handover {
    /// The caller's audio since the cloud bot last began to speak (16 kHz).
    pub caller: Vec<i16>,
    /// The cloud bot's speech of its last turn (16 kHz; empty: none heard).
    pub cloud: Vec<i16>,
    /// The caller was speaking when the cloud died.
    pub caller_mid_sentence: bool,
    /// The caller spoke after the cloud bot's last turn began.
    pub caller_spoke: bool,
    /// The cloud bot was speaking when it died (its last prompt is cut).
    pub cloud_mid_prompt: bool,
}

impl Handover {
    /// Whether the takeover prompt plays at once: `auto` says it only when
    /// the caller was mid-sentence or nothing of the cloud's words can place
    /// the call (a state found later needs none; an unknown one gets it then).
    pub fn prompt_at_once(&self, when: TakeoverPromptWhen) -> bool {
        match when {
            TakeoverPromptWhen::Always => true,
            TakeoverPromptWhen::Never => false,
            TakeoverPromptWhen::Auto => self.caller_mid_sentence || self.cloud.is_empty(),
        }
    }

    /// Whether a short acknowledgment (the bundle's filler) plays at once
    /// under `auto` when no prompt does: the caller answered the cloud's
    /// question and waits for the reply while the place is found.
    pub fn acknowledge_at_once(&self, when: TakeoverPromptWhen) -> bool {
        when == TakeoverPromptWhen::Auto
            && self.caller_spoke
            && !self.caller_mid_sentence
            && !self.cloud.is_empty()
    }
}

/// Where the cloud bot's last words put the call.
pub struct Found {
    pub located: Located,
    /// The cloud bot's last words, as transcribed.
    pub transcript: String,
    /// Transcription and matching, in ms.
    pub ms: f64,
}

/// A takeover whose place in the flow is being found.
pub struct Locating {
    pub task: JoinHandle<Found>,
    /// The caller spoke since the cloud's last prompt began: their turn answers.
    pub caller_spoke: bool,
    /// The takeover prompt has been said.
    pub prompt_played: bool,
    pub started: Instant,
}

/// Transcribe the cloud bot's last words (`cloud`, 16 kHz) and place the call.
pub fn locate(setup: Arc<SessionSetup>, cloud: Vec<i16>, cut: bool) -> JoinHandle<Found> {
    tokio::spawn(async move {
        let started = Instant::now();
        let Some(stt) = setup.engines.stt.clone() else {
            return Found {
                located: Located::Unknown {
                    why: "no STT engine to transcribe the cloud bot".into(),
                    best: None,
                },
                transcript: String::new(),
                ms: 0.0,
            };
        };
        let prompt = setup.settings.stt_prompt.clone();
        let (located, transcript) = match stt.transcribe(&cloud, prompt.as_deref()).await {
            Ok(t) => (setup.bot.locate(&t.text, cut), t.text),
            Err(e) => (
                Located::Unknown {
                    why: format!("transcribing the cloud bot failed: {e}"),
                    best: None,
                },
                String::new(),
            ),
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let result = match &located {
            Located::Found(_) => "found",
            Located::Unknown { .. } => "unknown",
        };
        metrics::observe_ms("understudy_takeover_locate_ms", &[], ms);
        metrics::counter_inc(
            "understudy_takeover_placements_total",
            &[("result", result)],
        );
        Found {
            located,
            transcript,
            ms,
        }
    })
}

/// The place being found, when there is one to wait for.
pub async fn wait(locating: &mut Option<Locating>) -> Found {
    let Some(l) = locating.as_mut() else {
        return std::future::pending().await;
    };
    let found = (&mut l.task).await;
    found.unwrap_or_else(|e| Found {
        located: Located::Unknown {
            why: format!("the locating task failed: {e}"),
            best: None,
        },
        transcript: String::new(),
        ms: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_plays_at_once_only_when_needed() {
        let quiet = Handover {
            cloud: vec![1; 160],
            ..Default::default()
        };
        assert!(!quiet.prompt_at_once(TakeoverPromptWhen::Auto));
        assert!(quiet.prompt_at_once(TakeoverPromptWhen::Always));
        let mid = Handover {
            cloud: vec![1; 160],
            caller_mid_sentence: true,
            ..Default::default()
        };
        assert!(mid.prompt_at_once(TakeoverPromptWhen::Auto));
        assert!(!mid.prompt_at_once(TakeoverPromptWhen::Never));
        // Nothing to place the call by: the state is unknown from the start.
        assert!(Handover::default().prompt_at_once(TakeoverPromptWhen::Auto));
    }

    #[test]
    fn an_answered_question_is_acknowledged_at_once() {
        let answered = Handover {
            cloud: vec![1; 160],
            caller_spoke: true,
            ..Default::default()
        };
        assert!(answered.acknowledge_at_once(TakeoverPromptWhen::Auto));
        assert!(!answered.acknowledge_at_once(TakeoverPromptWhen::Never));
        // Mid-question (the caller has not answered): the question is asked again instead.
        let asking = Handover {
            cloud: vec![1; 160],
            cloud_mid_prompt: true,
            ..Default::default()
        };
        assert!(!asking.acknowledge_at_once(TakeoverPromptWhen::Auto));
    }
}
