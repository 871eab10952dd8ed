//! Taking a call over from the cloud bot (in-path mode) and continuing the
//! conversation where it was: the relay hands over both sides' recent audio
//! ([`Handover`]); the cloud bot's last prompt is transcribed and matched
//! against the bundle's prompts ([`crate::dialog::Bot::locate`]) while the
//! caller's recent words run through endpointing as usual; the session then
//! resumes the flow at that state ([`crate::dialog::Bot::resume`]), so the
//! caller's pending answer is answered there, or the pending question is
//! asked again in one short sentence. A weak match falls back to the start
//! state with the caller's recent question, as before (docs/continuity.md).

use super::turn_tasks::{Pace, TurnInput};
use super::{CallState, ListenPolicy, Session, SessionAction, SessionSetup, TurnReport, TurnStage};
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
    /// The state (and slot) found, or why none was.
    pub located: Located,
    /// The cloud bot's last words, as transcribed.
    pub transcript: String,
    /// Transcription and matching, in ms.
    pub ms: f64,
}

/// A takeover whose place in the flow is being found.
pub struct Locating {
    /// The task transcribing and matching the cloud bot's last words.
    pub task: JoinHandle<Found>,
    /// The caller spoke since the cloud's last prompt began: their turn answers.
    pub caller_spoke: bool,
    /// The takeover prompt has been said.
    pub prompt_played: bool,
    /// When the search began (for the log).
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
        let (located, transcript) = match stt.transcribe_bot(&cloud, prompt.as_deref()).await {
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
        metrics::observe_ms("understudy_takeover_locate_seconds", &[], ms);
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

impl Session {
    /// Open a taken-over call. The takeover prompt, when it is due at once
    /// (`Handover::prompt_at_once`), goes out first (queued on the line
    /// directly, not as a turn, so the caller's speech neither cuts it nor
    /// waits for it). The cloud bot's last words are transcribed and placed
    /// in the flow meanwhile; the conversation is held until then, so a turn
    /// from the recent caller audio (run through endpointing now) waits for
    /// the place, and its transcription starts at once.
    pub(super) async fn take_over(&mut self, mut handover: Handover) {
        let cloud_ms = handover.cloud.len() / 16;
        let when = self.setup.settings.takeover_when;
        let prompt_played = handover.prompt_at_once(when) && self.play_takeover_prompt().await;
        // The caller answered and is waiting: acknowledge at once ("Okay.")
        // while the cloud's last words are transcribed and placed, instead
        // of a second or more of silence.
        let ack = self.setup.settings.takeover_ack.clone();
        let acknowledged = !prompt_played
            && !ack.is_empty()
            && handover.acknowledge_at_once(when)
            && self.play_now(ack, "takeover_ack").await;
        if handover.cloud.is_empty() {
            tracing::warn!(call = %self.call_id, why = "the relay heard no speech from the cloud bot", "takeover: the flow state is unknown; starting at the start state");
            metrics::counter_inc(
                "understudy_takeover_placements_total",
                &[("result", "unknown")],
            );
            self.no_input_deadline =
                Some(tokio::time::Instant::now() + self.listen.no_input_timeout);
        } else {
            // Held until the place is known (turns queue meanwhile).
            self.conversation = None;
            self.locating = Some(Locating {
                task: locate(
                    self.setup.clone(),
                    std::mem::take(&mut handover.cloud),
                    handover.cloud_mid_prompt,
                ),
                caller_spoke: handover.caller_spoke,
                prompt_played,
                started: Instant::now(),
            });
        }
        for frame in handover.caller.chunks(crate::audio::FRAME_SAMPLES) {
            self.on_audio(frame).await;
        }
        tracing::info!(call = %self.call_id, recent_ms = handover.caller.len() / 16, cloud_ms, caller_mid_sentence = handover.caller_mid_sentence, cloud_mid_prompt = handover.cloud_mid_prompt, prompt_played, acknowledged, state = ?self.state, "took the call over");
    }

    /// Say the takeover prompt now; false when it is not pre-rendered.
    pub(super) async fn play_takeover_prompt(&mut self) -> bool {
        let text = self.setup.settings.takeover.clone();
        self.play_now(text, "takeover").await
    }

    /// Say a pre-rendered `text` now, reported as `matched_by`; false when it
    /// is not pre-rendered (nothing is said).
    pub(super) async fn play_now(&mut self, text: String, matched_by: &str) -> bool {
        let Some(samples) = self.setup.prompts.get(&text) else {
            tracing::warn!(call = %self.call_id, text, "not pre-rendered; going on without it");
            return false;
        };
        let mark = self.next_mark;
        self.next_mark += 1;
        self.emit(SessionAction::Play { samples, mark }).await;
        let report = TurnReport {
            turn: 0,
            reply: text,
            matched_by: matched_by.into(),
            action: "listen".into(),
            ..Default::default()
        };
        self.emit(SessionAction::Report(Box::new(report))).await;
        true
    }

    /// The takeover's place in the flow is known (or known to be unknown):
    /// the conversation continues there. The caller's pending words are
    /// answered at that state; if the caller said nothing, the pending
    /// question is asked again in one short sentence.
    pub(super) async fn on_located(&mut self, found: Found) {
        let Some(locating) = self.locating.take() else {
            return;
        };
        let took_ms = locating.started.elapsed().as_secs_f64() * 1e3;
        let reask = match found.located {
            crate::dialog::Located::Found(p) => {
                tracing::info!(call = %self.call_id, state = %p.place.state, collecting = ?p.place.collecting, kind = p.kind, score = format!("{:.2}", p.score), prompt = %p.prompt, transcript = %found.transcript, stt_ms = found.ms.round() as u64, ms = took_ms.round() as u64, "takeover: placed in the flow");
                let (conversation, turn) = self.setup.bot.resume(&p.place);
                self.conversation = Some(conversation);
                self.listen = ListenPolicy::new(&self.setup.settings, &turn.listen);
                Some(turn)
            }
            crate::dialog::Located::Unknown { why, best } => {
                tracing::warn!(call = %self.call_id, %why, best_state = best.as_ref().map(|b| b.place.state.as_str()).unwrap_or("-"), transcript = %found.transcript, ms = took_ms.round() as u64, "takeover: the flow state is unknown; starting at the start state");
                let (conversation, _) = self.setup.bot.start();
                self.conversation = Some(conversation);
                if !locating.prompt_played
                    && self.setup.settings.takeover_when != crate::config::TakeoverPromptWhen::Never
                {
                    self.play_takeover_prompt().await;
                }
                None
            }
        };
        if let Some(mut input) = self.queued_turn.take() {
            // The turn's deadline and filler count from now: the wait for the
            // place (a slow transcription on a busy box) is the takeover's, and
            // must not cost the caller the safety net.
            if let TurnInput::Speech { speech_end, .. } = &mut input {
                *speech_end = Instant::now();
            }
            self.run_turn(input).await;
            return;
        }
        match reask {
            // The caller's words are still being heard: their turn answers.
            Some(_) if locating.caller_spoke || self.endpointer.in_speech() => {}
            Some(turn) => {
                let report = TurnReport {
                    turn: 0,
                    reply: turn.say.join(" "),
                    intent: turn.intent.clone(),
                    matched_by: "takeover".into(),
                    action: format!("{:?}", turn.action),
                    transcript: found.transcript,
                    ..Default::default()
                };
                self.speak(turn.say, turn.action, report, Pace::default())
                    .await;
                return;
            }
            None => {}
        }
        if matches!(self.work, TurnStage::Idle) && self.state == CallState::Listening {
            self.no_input_deadline =
                Some(tokio::time::Instant::now() + self.listen.no_input_timeout);
        }
    }
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
