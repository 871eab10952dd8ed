//! The work of one turn, run off the session task so the session keeps
//! listening (for barge-in, DTMF, hang-up) while it happens: `think`
//! (transcribe, then decide) and `speak` (play prompt audio or stream TTS).

use super::speech::Speech;
use super::{SessionAction, SessionSetup, TurnReport};
use crate::dialog::{BotTurn, Conversation, UserInput};
use crate::engines::{EngineError, Transcript};
use crate::metrics;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What a turn starts from.
pub enum TurnInput {
    Speech {
        audio: Vec<i16>,
        speech_ms: (f64, f64),
        /// When the caller stopped talking (wall clock).
        speech_end: Instant,
        endpoint_ms: f64,
        /// A transcription already running since the pause.
        speculative: Option<JoinHandle<Result<Transcript, EngineError>>>,
    },
    Dtmf(String),
    NoInput,
}

/// The end of `think`: the conversation always comes back.
pub struct Decided {
    pub conversation: Conversation,
    pub outcome: Result<(BotTurn, TurnReport), EngineError>,
    /// The report so far (for the safety net's report on failure).
    pub report: TurnReport,
    pub speech_end: Option<Instant>,
    /// When the turn's first audio is due (speech and keyed turns alike).
    pub deadline: tokio::time::Instant,
}

/// When a turn must have produced audio: `turn_deadline` after the caller
/// stopped talking (the caller's wait counts from there, endpointing included).
pub fn turn_deadline(setup: &SessionSetup, speech_end: Option<Instant>) -> Instant {
    speech_end.unwrap_or_else(Instant::now) + setup.settings.turn_deadline
}

/// Transcribe (if speech) and decide what to say.
pub async fn think(
    setup: Arc<SessionSetup>,
    mut conversation: Conversation,
    input: TurnInput,
    turn: u32,
) -> Decided {
    let mut report = TurnReport {
        turn,
        ..Default::default()
    };
    let mut speech_end = None;
    let ended = match &input {
        TurnInput::Speech { speech_end, .. } => Some(*speech_end),
        _ => None,
    };
    let deadline = tokio::time::Instant::from_std(turn_deadline(&setup, ended));
    let outcome = match tokio::time::timeout_at(
        deadline,
        decide(
            &setup,
            &mut conversation,
            input,
            &mut report,
            &mut speech_end,
        ),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(EngineError::Timeout { engine: "turn" }),
    };
    let outcome = outcome.map(|bot_turn| {
        let mut done = report.clone();
        done.intent = bot_turn.intent.clone();
        done.confidence = bot_turn.confidence;
        done.matched_by = format!("{:?}", bot_turn.matched_by).to_lowercase();
        done.asked = bot_turn.asked.clone();
        done.reply = bot_turn.say.join(" ");
        done.action = bot_turn.action.label().to_string();
        done.slots = bot_turn.slots.clone();
        (bot_turn, done)
    });
    Decided {
        conversation,
        outcome,
        report,
        speech_end,
        deadline,
    }
}

async fn decide(
    setup: &SessionSetup,
    conversation: &mut Conversation,
    input: TurnInput,
    report: &mut TurnReport,
    speech_end_out: &mut Option<Instant>,
) -> Result<BotTurn, EngineError> {
    let user_input =
        match input {
            TurnInput::Speech {
                audio,
                speech_ms,
                speech_end,
                endpoint_ms,
                speculative,
            } => {
                *speech_end_out = Some(speech_end);
                report.speech_ms = Some(speech_ms);
                report.timings_ms.endpoint = Some(endpoint_ms);
                let started = Instant::now();
                let transcript =
                    match speculative {
                        Some(task) => {
                            report.timings_ms.speculative_stt = true;
                            match task.await {
                                Ok(result) => result?,
                                Err(e) => {
                                    return Err(EngineError::Protocol {
                                        engine: "stt",
                                        detail: e.to_string(),
                                    })
                                }
                            }
                        }
                        None => {
                            let stt = setup.engines.stt.as_ref().ok_or_else(|| {
                                EngineError::Unavailable {
                                    engine: "stt",
                                    reason: "not started".into(),
                                }
                            })?;
                            stt.transcribe(&audio, setup.settings.stt_prompt.as_deref())
                                .await?
                        }
                    };
                // With a speculative transcription, only the wait after the turn's end counts.
                let stt_ms = started.elapsed().as_secs_f64() * 1e3;
                report.timings_ms.stt = Some(stt_ms);
                metrics::observe_ms("understudy_stage_seconds", &[("stage", "stt")], stt_ms);
                report.transcript = transcript.text.clone();
                if transcript.no_speech || transcript.text.trim().is_empty() {
                    UserInput::NoInput
                } else if let Some(utterance) = transcript.utterance {
                    UserInput::Heard {
                        text: transcript.text,
                        utterance,
                    }
                } else {
                    UserInput::Text(transcript.text)
                }
            }
            TurnInput::Dtmf(digits) => {
                report.dtmf = Some(digits.clone());
                UserInput::Dtmf(digits)
            }
            TurnInput::NoInput => UserInput::NoInput,
        };
    let started = Instant::now();
    let bot_turn = setup.bot.respond(conversation, user_input).await?;
    let dialog_ms = started.elapsed().as_secs_f64() * 1e3;
    report.timings_ms.dialog = Some(dialog_ms);
    metrics::observe_ms(
        "understudy_stage_seconds",
        &[("stage", "dialog")],
        dialog_ms,
    );
    Ok(bot_turn)
}

/// The end of `speak`.
pub struct Spoken {
    /// The mark of the last audio queued (`None`: nothing was played).
    pub last_mark: Option<u64>,
    pub error: Option<EngineError>,
    pub report: TurnReport,
}

/// When a turn's first audio is due: the filler goes out at `filler_due`
/// (`None`: already played, or never) and the safety net takes over at
/// `deadline`, both counted from the end of the caller's input, so they
/// bound the caller's wait whatever is slow (STT, LLM or TTS).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// When the caller stopped speaking (voice-to-voice is counted from it);
    /// `None` for the greeting and keyed turns.
    pub speech_end: Option<Instant>,
    /// When the filler falls due.
    pub filler_due: Option<tokio::time::Instant>,
    /// `None`: no deadline (the greeting).
    pub deadline: Option<tokio::time::Instant>,
}

/// The filler's audio for a slow turn, counted and logged; `None` when it
/// is not pre-rendered (the caller then waits in silence).
pub(super) fn filler_audio(setup: &SessionSetup, call: &str, turn: u32) -> Option<Arc<Vec<i16>>> {
    let Some(audio) = setup.prompts.get(&setup.settings.filler) else {
        tracing::warn!(
            call,
            "the filler is not pre-rendered; the caller waits in silence"
        );
        return None;
    };
    tracing::info!(call, turn, ms = audio.len() / 16, "turn is slow: filler");
    metrics::counter_inc("understudy_fillers_total", &[]);
    Some(audio)
}

/// Queue the turn's speech for the caller, as soon as each piece is ready;
/// until the first piece of it is queued, `pace` applies.
pub async fn speak(
    setup: Arc<SessionSetup>,
    texts: Vec<String>,
    actions: mpsc::Sender<SessionAction>,
    first_mark: u64,
    pace: Pace,
    call: String,
    mut report: TurnReport,
) -> Spoken {
    let started = Instant::now();
    let mut mark = first_mark;
    let mut last_mark = None;
    let mut waiting = Waiting {
        pace,
        setup: &setup,
        actions: &actions,
        call: &call,
    };
    for text in texts.iter().filter(|t| !t.trim().is_empty()) {
        let started_speech = Speech::start(&setup.prompts, setup.engines.tts.as_ref(), text);
        let speech = match last_mark {
            Some(_) => started_speech.await,
            None => {
                waiting
                    .first_audio(&mut mark, &mut report, started_speech)
                    .await
            }
        };
        let mut speech = match speech {
            Ok(s) => s,
            Err(e) => {
                return Spoken {
                    last_mark,
                    error: Some(e),
                    report,
                }
            }
        };
        loop {
            let piece = match last_mark {
                Some(_) => speech.next(&setup.prompts).await,
                None => waiting
                    .first_audio(&mut mark, &mut report, async {
                        Ok(speech.next(&setup.prompts).await)
                    })
                    .await
                    .unwrap_or_else(|e| Some(Err(e))),
            };
            let Some(piece) = piece else { break };
            let samples = match piece {
                Ok(s) => s,
                Err(e) => {
                    return Spoken {
                        last_mark,
                        error: Some(e),
                        report,
                    }
                }
            };
            if last_mark.is_none() {
                let first_audio_ms = started.elapsed().as_secs_f64() * 1e3;
                report.timings_ms.tts_first_audio = Some(first_audio_ms);
                metrics::observe_ms(
                    "understudy_stage_seconds",
                    &[("stage", "tts_first_audio")],
                    first_audio_ms,
                );
                if let Some(end) = pace.speech_end {
                    let v2v = end.elapsed().as_secs_f64() * 1e3;
                    report.timings_ms.voice_to_voice = Some(v2v);
                    metrics::observe_ms(
                        "understudy_stage_seconds",
                        &[("stage", "voice_to_voice")],
                        v2v,
                    );
                }
            }
            if actions
                .send(SessionAction::Play {
                    samples: Arc::new(samples),
                    mark,
                })
                .await
                .is_err()
            {
                return Spoken {
                    last_mark,
                    error: None,
                    report,
                };
            }
            last_mark = Some(mark);
            mark += 1;
        }
    }
    Spoken {
        last_mark,
        error: None,
        report,
    }
}

/// The speaker before its first audio: it says the filler when that is
/// due, and gives up at the deadline.
struct Waiting<'a> {
    pace: Pace,
    setup: &'a SessionSetup,
    actions: &'a mpsc::Sender<SessionAction>,
    call: &'a str,
}

impl Waiting<'_> {
    /// `work`, with the filler queued if it is due first; a TTS timeout at
    /// the deadline (a stalled TTS is dead air too).
    async fn first_audio<T>(
        &mut self,
        mark: &mut u64,
        report: &mut TurnReport,
        work: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        tokio::pin!(work);
        loop {
            tokio::select! {
                // An answer ready as the filler falls due wins.
                biased;
                done = &mut work => return done,
                _ = super::sleep_until(self.pace.filler_due) => {
                    self.pace.filler_due = None;
                    if let Some(samples) = filler_audio(self.setup, self.call, report.turn) {
                        report.filler = true;
                        let _ = self.actions.send(SessionAction::Play { samples, mark: *mark }).await;
                        *mark += 1;
                    }
                }
                _ = super::sleep_until(self.pace.deadline) => {
                    return Err(EngineError::Timeout { engine: "tts" });
                }
            }
        }
    }
}
