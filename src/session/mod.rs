//! The per-call conversation session: one task per call, a state machine
//! (listening, thinking, speaking, transferring, ended) driven by events.
//!
//! An ingress (SIP/RTP, a WAV file, ...) sends [`CallEvent`]s: caller audio as
//! canonical 20 ms frames, DTMF digits, playout acknowledgements and hang-up.
//! The session answers with [`SessionAction`]s: audio to play, "stop playing"
//! (barge-in), transfer, hang-up, and a [`TurnReport`] per turn. The session
//! never knows how the call arrived.
//!
//! Latency design: VAD runs on every chunk as it arrives; a pause in the
//! caller's speech starts a speculative transcription that is kept when the
//! pause turns out to be the end of the turn; prompts are pre-rendered; TTS
//! streams sentence by sentence.

pub mod admission;
pub mod boundary;
mod caller_audio;
pub mod endpoint;
mod listen;
mod report;
mod safety_net;
mod settings;
pub mod smart_turn;
pub mod speech;
pub mod takeover;
mod turn_tasks;

pub use boundary::{start_call, start_call_with, CallEvent, CallHandle, Opening, SessionAction};
pub use report::{TurnReport, TurnTimings};
use settings::ListenPolicy;
pub use settings::{settings_for, SessionSettings, SessionSetup};

use crate::audio::SAMPLE_RATE;
use crate::dialog::{Action, BotTurn, Conversation};
use crate::engines::EngineError;
use crate::metrics;
use caller_audio::CallerAudio;
use endpoint::{EndpointEvent, EndpointParams, Endpointer};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turn_tasks::{Decided, Pace, Spoken, TurnInput};
use understudy_ipc::{VadState, VAD_CHUNK_SAMPLES};

/// The state of a call, as the design names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Waiting for the caller to speak or key.
    Listening,
    /// Transcribing the caller's turn and deciding the answer.
    Thinking,
    /// Playing the bot's turn to the caller.
    Speaking,
    /// Handing the caller over to a human.
    Transferring,
    /// The call is over.
    Ended,
}

/// Where a turn's work stands.
enum TurnStage {
    Idle,
    /// Transcribing and deciding; the conversation is inside the task.
    Thinking(JoinHandle<Decided>),
    /// Speaking: the speaker task queues audio; once it is done (`task`
    /// None) the turn completes when the egress acknowledges `last_mark`.
    Speaking {
        task: Option<JoinHandle<Spoken>>,
        after: Action,
        last_mark: Option<u64>,
    },
}

struct Session {
    setup: Arc<SessionSetup>,
    call_id: String,
    actions: mpsc::Sender<SessionAction>,
    state: CallState,
    conversation: Option<Conversation>,
    audio: CallerAudio,
    endpointer: Endpointer,
    vad_state: Option<VadState>,
    /// Samples not yet sent to the VAD (less than one chunk).
    vad_pending: Vec<i16>,
    work: TurnStage,
    /// A transcription started at a pause: (speech end it assumed, task).
    speculative: Option<(
        u64,
        JoinHandle<Result<crate::engines::Transcript, EngineError>>,
    )>,
    next_mark: u64,
    /// The highest mark the egress has acknowledged as played.
    played_mark: u64,
    turn: u32,
    no_input_deadline: Option<tokio::time::Instant>,
    dtmf: String,
    dtmf_deadline: Option<tokio::time::Instant>,
    /// Barge-in detection during playback.
    barge_in: Endpointer,
    /// Set from each of the bot's turns.
    listen: ListenPolicy,
    /// The report of the turn being spoken.
    pending_report: Option<TurnReport>,
    /// A turn that ended while another was in progress.
    queued_turn: Option<TurnInput>,
    /// When the thinking turn's filler is due (no answer yet by then).
    filler_due: Option<tokio::time::Instant>,
    /// The current turn played its filler.
    filler_played: bool,
    /// A takeover finding its place in the flow.
    locating: Option<takeover::Locating>,
}

impl Session {
    /// A session with its conversation started, and the bot's greeting.
    fn new(
        setup: Arc<SessionSetup>,
        call_id: String,
        actions: mpsc::Sender<SessionAction>,
    ) -> (Self, BotTurn) {
        let (conversation, greeting) = setup.bot.start();
        let endpoint = setup.settings.endpoint.clone();
        let barge_in = Endpointer::new(EndpointParams {
            min_speech_ms: setup.settings.barge_in_min_speech_ms,
            ..endpoint.clone()
        });
        let session = Session {
            call_id,
            actions,
            state: CallState::Listening,
            conversation: Some(conversation),
            audio: CallerAudio::new(),
            endpointer: Endpointer::new(endpoint),
            vad_state: None,
            vad_pending: Vec::with_capacity(VAD_CHUNK_SAMPLES),
            work: TurnStage::Idle,
            speculative: None,
            next_mark: 1,
            played_mark: 0,
            turn: 0,
            no_input_deadline: None,
            dtmf: String::new(),
            dtmf_deadline: None,
            barge_in,
            listen: ListenPolicy::new(&setup.settings, &greeting.listen),
            pending_report: None,
            queued_turn: None,
            filler_due: None,
            filler_played: false,
            locating: None,
            setup,
        };
        (session, greeting)
    }

    async fn emit(&self, action: SessionAction) {
        // Every turn is logged here, whichever transport carries the call,
        // and even when that transport has already gone.
        if let SessionAction::Report(report) = &action {
            report.log(&self.call_id);
            if report.turn >= 1 {
                crate::metrics::recent::record_turn(report.sample());
            }
        }
        // The ingress went away: the run loop notices on its next event.
        let _ = self.actions.send(action).await;
    }

    async fn set_state(&mut self, state: CallState) {
        if self.state != state {
            tracing::debug!(call = %self.call_id, from = ?self.state, to = ?state, "state");
            self.state = state;
            self.emit(SessionAction::State(state)).await;
        }
    }

    async fn run(
        &mut self,
        mut events: mpsc::Receiver<CallEvent>,
        greeting: BotTurn,
        opening: Opening,
    ) {
        match opening {
            Opening::Greeting => {
                let report = TurnReport {
                    turn: 0,
                    reply: greeting.say.join(" "),
                    intent: greeting.intent.clone(),
                    matched_by: "greeting".into(),
                    action: format!("{:?}", greeting.action),
                    ..Default::default()
                };
                self.speak(
                    greeting.say.clone(),
                    greeting.action.clone(),
                    report,
                    Pace::default(),
                )
                .await;
            }
            Opening::Takeover(handover) => self.take_over(*handover).await,
        }

        loop {
            if self.state == CallState::Ended {
                break;
            }
            let no_input = self.no_input_deadline;
            let dtmf_due = self.dtmf_deadline;
            let filler_due = self.filler_due;
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => self.on_event(event).await,
                    None => { self.hang_up_quietly().await; break; }
                },
                done = wait_work(&mut self.work) => match done {
                    StageFinished::Thought(done) => self.on_thought(*done).await,
                    StageFinished::Spoken(done) => self.on_spoken(*done).await,
                },
                _ = sleep_until(no_input) => {
                    self.no_input_deadline = None;
                    self.run_turn(TurnInput::NoInput).await;
                }
                _ = sleep_until(dtmf_due) => {
                    self.dtmf_deadline = None;
                    let digits = std::mem::take(&mut self.dtmf);
                    self.run_turn(TurnInput::Dtmf(digits)).await;
                }
                _ = sleep_until(filler_due) => self.play_filler().await,
                found = takeover::wait(&mut self.locating) => self.on_located(found).await,
            }
        }
        self.stop_work();
    }

    fn stop_work(&mut self) {
        match std::mem::replace(&mut self.work, TurnStage::Idle) {
            TurnStage::Thinking(task) => task.abort(),
            TurnStage::Speaking {
                task: Some(task), ..
            } => task.abort(),
            TurnStage::Speaking { task: None, .. } | TurnStage::Idle => {}
        }
        if let Some((_, task)) = self.speculative.take() {
            task.abort();
        }
        if let Some(locating) = self.locating.take() {
            locating.task.abort();
        }
    }

    async fn hang_up_quietly(&mut self) {
        self.stop_work();
        // The caller heard part of the answer: the turn still counts.
        if let Some(report) = self.pending_report.take() {
            self.emit(SessionAction::Report(Box::new(report))).await;
        }
        self.set_state(CallState::Ended).await;
    }

    async fn on_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Audio(frame) => self.on_audio(&frame[..]).await,
            CallEvent::Dtmf(key) => self.on_dtmf(key).await,
            CallEvent::PlayoutDone { mark } => self.on_playout_done(mark).await,
            CallEvent::Hangup => self.hang_up_quietly().await,
        }
    }

    async fn on_dtmf(&mut self, key: char) {
        if matches!(self.state, CallState::Transferring | CallState::Ended) {
            return;
        }
        metrics::counter_inc("understudy_dtmf_total", &[]);
        if self.state == CallState::Speaking && self.listen.barge_in {
            self.on_barge_in().await;
        }
        self.no_input_deadline = None;
        let terminator = self.listen.dtmf_terminator == Some(key);
        if !terminator {
            self.dtmf.push(key);
        }
        if (terminator && !self.dtmf.is_empty()) || self.dtmf.len() >= self.listen.dtmf_max_digits {
            self.dtmf_deadline = None;
            let digits = std::mem::take(&mut self.dtmf);
            self.run_turn(TurnInput::Dtmf(digits)).await;
            return;
        }
        if !self.dtmf.is_empty() {
            self.dtmf_deadline = Some(tokio::time::Instant::now() + self.listen.dtmf_interdigit);
        }
    }

    async fn on_playout_done(&mut self, mark: u64) {
        self.played_mark = self.played_mark.max(mark);
        let finished = matches!(&self.work, TurnStage::Speaking { task: None, last_mark: Some(m), .. } if *m <= mark);
        if finished {
            self.finish_speaking().await;
        }
    }

    /// Start (or queue) a turn.
    async fn run_turn(&mut self, input: TurnInput) {
        if matches!(self.state, CallState::Transferring | CallState::Ended) {
            return;
        }
        if matches!(self.work, TurnStage::Thinking(_)) {
            // One turn at a time; the newest input waits.
            self.queued_turn = Some(input);
            return;
        }
        if let TurnStage::Speaking { task, .. } = std::mem::replace(&mut self.work, TurnStage::Idle)
        {
            if let Some(task) = task {
                task.abort();
            }
            self.emit(SessionAction::ClearPlayout).await;
        }
        let Some(conversation) = self.conversation.take() else {
            self.queued_turn = Some(input);
            return;
        };
        self.no_input_deadline = None;
        self.turn += 1;
        self.set_state(CallState::Thinking).await;
        // Like the turn deadline, the filler counts from the end of speech.
        let since = match &input {
            TurnInput::Speech { speech_end, .. } => *speech_end,
            _ => Instant::now(),
        };
        self.filler_played = false;
        self.filler_due = self
            .setup
            .settings
            .filler_after
            .map(|after| tokio::time::Instant::from_std(since + after));
        let task = tokio::spawn(turn_tasks::think(
            self.setup.clone(),
            conversation,
            input,
            self.turn,
        ));
        self.work = TurnStage::Thinking(task);
    }

    /// The turn is slow: say the filler (pre-rendered) so the caller does not
    /// hear dead air. The answer, when it comes, queues behind it.
    async fn play_filler(&mut self) {
        self.filler_due = None;
        if !matches!(self.work, TurnStage::Thinking(_)) {
            return;
        }
        let Some(audio) = turn_tasks::filler_audio(&self.setup, &self.call_id, self.turn) else {
            return;
        };
        self.filler_played = true;
        let mark = self.next_mark;
        self.next_mark += 1;
        self.emit(SessionAction::Play {
            samples: audio,
            mark,
        })
        .await;
    }

    async fn on_thought(&mut self, done: Result<Decided, tokio::task::JoinError>) {
        self.work = TurnStage::Idle;
        // Not played yet: the speaker says it if the answer's audio is late.
        let filler_due = self.filler_due.take();
        let done = match done {
            Ok(done) => done,
            Err(e) => {
                // The conversation went down with the task: start it over.
                let (conversation, _) = self.setup.bot.start();
                self.conversation = Some(conversation);
                let err = EngineError::Protocol {
                    engine: "dialog",
                    detail: format!("turn task failed: {e}"),
                };
                self.safety_net(err, None).await;
                return;
            }
        };
        self.conversation = Some(done.conversation);
        match done.outcome {
            Ok((bot_turn, mut report)) => {
                self.listen = ListenPolicy::new(&self.setup.settings, &bot_turn.listen);
                report.filler = std::mem::take(&mut self.filler_played);
                let pace = Pace {
                    speech_end: done.speech_end,
                    filler_due,
                    deadline: Some(done.deadline),
                };
                self.speak(bot_turn.say.clone(), bot_turn.action.clone(), report, pace)
                    .await;
            }
            Err(e) => self.safety_net(e, Some(done.report)).await,
        }
    }

    /// Speak a turn's texts, then do its action.
    async fn speak(&mut self, texts: Vec<String>, after: Action, report: TurnReport, pace: Pace) {
        self.set_state(CallState::Speaking).await;
        self.barge_in.reset();
        let first_mark = self.next_mark;
        // Marks are numbered by the speaker; reserve a generous block.
        self.next_mark += 10_000;
        let task = tokio::spawn(turn_tasks::speak(
            self.setup.clone(),
            texts,
            self.actions.clone(),
            first_mark,
            pace,
            self.call_id.clone(),
            report,
        ));
        self.pending_report = None;
        self.work = TurnStage::Speaking {
            task: Some(task),
            after,
            last_mark: None,
        };
    }

    async fn on_spoken(&mut self, done: Result<Spoken, tokio::task::JoinError>) {
        let Ok(done) = done else { return };
        let last_mark = done.last_mark;
        match done.error {
            Some(e) => {
                self.work = TurnStage::Idle;
                // With none of the answer queued, only the filler can be playing: not cut.
                self.apologize(e, Some(done.report), last_mark.is_some())
                    .await;
            }
            None => {
                self.pending_report = Some(done.report);
                // Everything is queued; the egress tells when it has been played.
                if let TurnStage::Speaking {
                    task,
                    last_mark: mark,
                    ..
                } = &mut self.work
                {
                    *task = None;
                    *mark = last_mark;
                }
                // Nothing to play (an empty turn), or the egress already
                // played it all (a fast egress acknowledges before we get here).
                if last_mark.is_none_or(|m| m <= self.played_mark) {
                    self.finish_speaking().await;
                }
            }
        }
    }

    async fn finish_speaking(&mut self) {
        let after = match std::mem::replace(&mut self.work, TurnStage::Idle) {
            TurnStage::Speaking { task, after, .. } => {
                if let Some(task) = task {
                    task.abort();
                }
                after
            }
            other => {
                self.work = other;
                return;
            }
        };
        if let Some(report) = self.pending_report.take() {
            self.emit(SessionAction::Report(Box::new(report))).await;
        }
        match after {
            Action::Listen => {
                self.set_state(CallState::Listening).await;
                if let Some(input) = self.queued_turn.take() {
                    self.run_turn(input).await;
                } else {
                    self.no_input_deadline =
                        Some(tokio::time::Instant::now() + self.listen.no_input_timeout);
                }
            }
            Action::Transfer { target, reason } => {
                self.set_state(CallState::Transferring).await;
                metrics::counter_inc("understudy_transfers_total", &[("reason", "dialog")]);
                self.emit(SessionAction::Transfer { target, reason }).await;
            }
            Action::Hangup => {
                self.emit(SessionAction::Hangup).await;
                self.set_state(CallState::Ended).await;
            }
        }
    }
}

/// Sleep until `deadline`, or forever when there is none (a `select!` arm
/// that only fires when a deadline is set).
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum StageFinished {
    Thought(Box<Result<Decided, tokio::task::JoinError>>),
    Spoken(Box<Result<Spoken, tokio::task::JoinError>>),
}

/// The turn task or the speaker task finishing, whichever is running.
async fn wait_work(work: &mut TurnStage) -> StageFinished {
    match work {
        TurnStage::Thinking(task) => StageFinished::Thought(Box::new(task.await)),
        TurnStage::Speaking {
            task: Some(task), ..
        } => StageFinished::Spoken(Box::new(task.await)),
        _ => std::future::pending().await,
    }
}
