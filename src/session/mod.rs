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

pub mod endpoint;
pub mod file_call;
pub mod prompts;
pub mod smart_turn;
pub mod takeover;
mod turn;

use crate::audio::{Frame, SAMPLE_RATE};
use crate::dialog::{Action, Bot, BotTurn, Conversation, ListenHints};
use crate::engines::{EngineError, Engines};
use crate::metrics;
use endpoint::{EndpointEvent, EndpointParams, Endpointer};
use prompts::PromptCache;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turn::{CallerAudio, Pace, SpeakerDone, TurnDone, TurnInput};
use understudy_ipc::{VadState, VAD_CHUNK_SAMPLES};

/// The state of a call, as the design names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Listening,
    Thinking,
    Speaking,
    Transferring,
    Ended,
}

/// Events into a session.
#[derive(Debug)]
pub enum CallEvent {
    /// 20 ms of caller audio at 16 kHz.
    Audio(Box<Frame>),
    /// One DTMF key (`0`-`9`, `*`, `#`, `A`-`D`).
    Dtmf(char),
    /// The egress finished playing everything up to this mark.
    PlayoutDone { mark: u64 },
    /// The caller hung up (or the ingress lost the call).
    Hangup,
}

/// What the session asks of the ingress.
#[derive(Debug, Clone)]
pub enum SessionAction {
    /// Queue this audio (16 kHz) for the caller; acknowledge with
    /// `CallEvent::PlayoutDone { mark }` once it has been played.
    Play { samples: Arc<Vec<i16>>, mark: u64 },
    /// Drop everything queued: the caller barged in.
    ClearPlayout,
    /// Hand the caller to a human at `target` (a SIP URI or number).
    Transfer { target: String, reason: String },
    /// End the call.
    Hangup,
    /// A turn finished (for logs, tests and `understudy converse`).
    Report(Box<TurnReport>),
    /// The state changed.
    State(CallState),
}

/// Where time went in one turn, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnTimings {
    /// End of caller speech until the endpointer was sure.
    pub endpoint: Option<f64>,
    pub stt: Option<f64>,
    pub dialog: Option<f64>,
    /// Start of speech output until the first audio was ready.
    pub tts_first_audio: Option<f64>,
    /// End of caller speech until the first bot audio left for the caller.
    pub voice_to_voice: Option<f64>,
    /// The transcription started during the pause and was kept.
    pub speculative_stt: bool,
}

/// One turn, for reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TurnReport {
    pub turn: u32,
    /// What the caller said (empty for no-input and DTMF).
    pub transcript: String,
    pub dtmf: Option<String>,
    pub intent: Option<String>,
    pub confidence: f32,
    pub matched_by: String,
    /// The intents a confirmation question asked about (empty: none asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// What the bot said.
    pub reply: String,
    pub action: String,
    pub slots: std::collections::BTreeMap<String, String>,
    /// Caller speech in the call's audio, in ms.
    pub speech_ms: Option<(f64, f64)>,
    pub timings_ms: TurnTimings,
    /// The turn ended in the safety net (engine failure).
    pub safety_net: bool,
    /// The turn was slow and the caller heard the filler first.
    pub filler: bool,
    pub barged_in: bool,
    pub error: Option<String>,
}

/// Session settings (appliance config merged with the bot's own).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub endpoint: EndpointParams,
    /// Semantic end of turn at pauses; `None`: the fixed silence only.
    pub smart_turn: Option<smart_turn::SmartTurnSettings>,
    /// The appliance allows barge-in (the bot's states may still turn it off).
    pub barge_in: bool,
    /// Speech needed during playback before it counts as a barge-in.
    pub barge_in_min_speech_ms: u32,
    /// The longest no-input timeout of any of the bot's states (what a
    /// caller of the session waits for at most before the bot speaks again).
    pub longest_no_input: Duration,
    /// The site's DTMF inter-digit timeout, over every bot's own.
    pub dtmf_interdigit: Option<Duration>,
    /// A turn that has produced no audio this long after the caller stopped
    /// talking gets the safety net.
    pub turn_deadline: Duration,
    /// A turn with no answer this long after the caller stopped talking
    /// plays `filler` (once); `None`: never.
    pub filler_after: Option<Duration>,
    pub filler: String,
    /// Where the safety net sends callers.
    pub safety_target: String,
    pub apology: String,
    /// Said when the local bot takes over a call from the cloud bot.
    pub takeover: String,
    /// When `takeover` is said.
    pub takeover_when: crate::config::TakeoverPromptWhen,
    /// Said at once at a takeover when the caller had just answered (empty: nothing).
    pub takeover_ack: String,
    /// Whisper's domain prompt (words the bot expects).
    pub stt_prompt: Option<String>,
}

impl SessionSettings {
    /// Texts the session may have to say when an engine cannot help (the
    /// apology, the takeover prompt): pre-rendered with the bot's prompts.
    pub fn fixed_prompts(&self) -> Vec<String> {
        let mut fixed = vec![
            self.apology.clone(),
            self.takeover.clone(),
            self.filler.clone(),
        ];
        if !self.takeover_ack.is_empty() {
            fixed.push(self.takeover_ack.clone());
        }
        fixed
    }
}

/// How the session listens after the bot's latest turn: that turn's
/// [`ListenHints`] (per-state overrides included) within what the appliance allows.
#[derive(Debug, Clone, PartialEq)]
struct ListenPolicy {
    barge_in: bool,
    no_input_timeout: Duration,
    dtmf_interdigit: Duration,
    /// The key that ends an entry at once (`None`: only the timeout or the length does).
    dtmf_terminator: Option<char>,
    /// An entry this long is complete.
    dtmf_max_digits: usize,
}

impl ListenPolicy {
    fn new(settings: &SessionSettings, hints: &ListenHints) -> Self {
        ListenPolicy {
            barge_in: settings.barge_in && hints.barge_in,
            no_input_timeout: Duration::from_millis(u64::from(hints.no_input_timeout_ms)),
            dtmf_interdigit: settings
                .dtmf_interdigit
                .unwrap_or(Duration::from_millis(u64::from(
                    hints.dtmf_inter_digit_timeout_ms,
                ))),
            dtmf_terminator: hints.dtmf_terminator.chars().next(),
            dtmf_max_digits: (hints.dtmf_max_digits as usize).max(1),
        }
    }
}

/// Everything calls share: the bot, the engines, the prompt audio.
pub struct SessionSetup {
    pub bot: Arc<Bot>,
    pub engines: Engines,
    pub prompts: Arc<PromptCache>,
    pub settings: SessionSettings,
}

/// The ingress side of a running session.
pub struct CallHandle {
    pub events: mpsc::Sender<CallEvent>,
    pub actions: mpsc::Receiver<SessionAction>,
    pub task: JoinHandle<()>,
}

/// Start a session for one call.
pub fn start_call(setup: Arc<SessionSetup>, call_id: String) -> CallHandle {
    start_call_with(setup, call_id, Opening::Greeting)
}

/// How a session begins.
pub enum Opening {
    /// A new call: the bot's greeting.
    Greeting,
    /// The local bot takes over a call the cloud bot was handling: the
    /// cloud's last words place the call in the flow, and the caller's
    /// recent speech is heard as if live, so an answer or a question the
    /// cloud never answered gets answered now ([`takeover`]).
    Takeover(Box<takeover::Handover>),
}

/// Start a session for one call, opening as `opening` says.
pub fn start_call_with(setup: Arc<SessionSetup>, call_id: String, opening: Opening) -> CallHandle {
    // Events: 50 audio frames a second; a few seconds of slack.
    let (event_tx, event_rx) = mpsc::channel(512);
    let (action_tx, action_rx) = mpsc::channel(512);
    let task = tokio::spawn(async move {
        let (mut session, greeting) = Session::new(setup, call_id.clone(), action_tx);
        metrics::gauge_add("understudy_calls_active", &[], 1.0);
        metrics::counter_inc("understudy_calls_total", &[]);
        session.run(event_rx, greeting, opening).await;
        metrics::gauge_add("understudy_calls_active", &[], -1.0);
        tracing::info!(call = %call_id, "session ended");
    });
    CallHandle {
        events: event_tx,
        actions: action_rx,
        task,
    }
}

/// Where a turn's work stands.
enum Work {
    Idle,
    /// Transcribing and deciding; the conversation is inside the task.
    Thinking(JoinHandle<TurnDone>),
    /// Speaking: the speaker task queues audio; once it is done (`task`
    /// None) the turn completes when the egress acknowledges `last_mark`.
    Speaking {
        task: Option<JoinHandle<SpeakerDone>>,
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
    work: Work,
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
            work: Work::Idle,
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
                    WorkDone::Thought(done) => self.on_thought(*done).await,
                    WorkDone::Spoken(done) => self.on_spoken(*done).await,
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

    /// Open a taken-over call. The takeover prompt, when it is due at once
    /// (`Handover::prompt_at_once`), goes out first (queued on the line
    /// directly, not as a turn, so the caller's speech neither cuts it nor
    /// waits for it). The cloud bot's last words are transcribed and placed
    /// in the flow meanwhile; the conversation is held until then, so a turn
    /// from the recent caller audio (run through endpointing now) waits for
    /// the place, and its transcription starts at once.
    async fn take_over(&mut self, mut handover: takeover::Handover) {
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
            self.locating = Some(takeover::Locating {
                task: takeover::locate(
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
    async fn play_takeover_prompt(&mut self) -> bool {
        let text = self.setup.settings.takeover.clone();
        self.play_now(text, "takeover").await
    }

    /// Say a pre-rendered `text` now, reported as `matched_by`; false when it
    /// is not pre-rendered (nothing is said).
    async fn play_now(&mut self, text: String, matched_by: &str) -> bool {
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
    async fn on_located(&mut self, found: takeover::Found) {
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
        if matches!(self.work, Work::Idle) && self.state == CallState::Listening {
            self.no_input_deadline =
                Some(tokio::time::Instant::now() + self.listen.no_input_timeout);
        }
    }

    fn stop_work(&mut self) {
        match std::mem::replace(&mut self.work, Work::Idle) {
            Work::Thinking(task) => task.abort(),
            Work::Speaking {
                task: Some(task), ..
            } => task.abort(),
            Work::Speaking { task: None, .. } | Work::Idle => {}
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

    async fn on_audio(&mut self, samples: &[i16]) {
        if matches!(self.state, CallState::Transferring | CallState::Ended) {
            return;
        }
        self.audio.push(samples);
        self.vad_pending.extend_from_slice(samples);
        while self.vad_pending.len() >= VAD_CHUNK_SAMPLES {
            let chunk: Vec<i16> = self.vad_pending.drain(..VAD_CHUNK_SAMPLES).collect();
            let prob = match self.vad(&chunk).await {
                Ok(p) => p,
                Err(e) => {
                    self.safety_net(e, None).await;
                    return;
                }
            };
            self.on_vad(prob).await;
            if matches!(self.state, CallState::Transferring | CallState::Ended) {
                return;
            }
        }
    }

    async fn vad(&mut self, chunk: &[i16]) -> Result<f32, EngineError> {
        let vad = self
            .setup
            .engines
            .vad
            .as_ref()
            .ok_or_else(|| EngineError::Unavailable {
                engine: "vad",
                reason: "not started".into(),
            })?;
        let (probs, state) = vad.probs(chunk, self.vad_state.take()).await?;
        self.vad_state = Some(state);
        Ok(probs.first().copied().unwrap_or(0.0))
    }

    async fn on_vad(&mut self, prob: f32) {
        // Barge-in: a separate, stricter endpointer watches speech over playback.
        if self.state == CallState::Speaking && self.listen.barge_in {
            if let Some(EndpointEvent::SpeechStarted { .. }) = self.barge_in.push(prob) {
                self.on_barge_in().await;
            }
        } else {
            self.barge_in.reset();
            let _ = self.barge_in.push(0.0);
        }
        if self.state == CallState::Speaking && !self.listen.barge_in {
            // A prompt that may not be interrupted: what the caller says over
            // it is not heard (as in Dialogflow and Lex). The position still
            // advances, so later turns find their audio.
            self.endpointer.reset();
            let _ = self.endpointer.push(0.0);
            return;
        }
        let Some(event) = self.endpointer.push(prob) else {
            return;
        };
        let event = match event {
            EndpointEvent::Paused { start, end } if self.state == CallState::Listening => {
                self.start_speculative(start, end);
                self.end_of_turn_at_pause(start).await.unwrap_or(event)
            }
            other => other,
        };
        match event {
            EndpointEvent::SpeechStarted { start } => {
                tracing::debug!(call = %self.call_id, start, "speech started");
                self.no_input_deadline = None;
            }
            // The speculative transcription and Smart Turn started above.
            EndpointEvent::Paused { .. } => {}
            EndpointEvent::Resumed { .. } => {
                if let Some((_, task)) = self.speculative.take() {
                    task.abort();
                    metrics::counter_inc(
                        "understudy_speculative_stt_total",
                        &[("result", "discarded")],
                    );
                }
            }
            EndpointEvent::SpeechEnded { start, end } => {
                let detected_at = Instant::now();
                let lag = crate::audio::samples_to_ms(
                    (self.endpointer.position() - end) as usize,
                    SAMPLE_RATE,
                );
                let speech_end = detected_at
                    .checked_sub(Duration::from_secs_f64(lag / 1000.0))
                    .unwrap_or(detected_at);
                let speculative = match self.speculative.take() {
                    Some((spec_end, task)) if spec_end == end => {
                        metrics::counter_inc(
                            "understudy_speculative_stt_total",
                            &[("result", "kept")],
                        );
                        Some(task)
                    }
                    Some((_, task)) => {
                        task.abort();
                        None
                    }
                    None => None,
                };
                let input = TurnInput::Speech {
                    audio: self.audio.utterance(start, end),
                    speech_ms: (
                        crate::audio::samples_to_ms(start as usize, SAMPLE_RATE),
                        crate::audio::samples_to_ms(end as usize, SAMPLE_RATE),
                    ),
                    speech_end,
                    endpoint_ms: lag,
                    speculative,
                };
                self.run_turn(input).await;
            }
        }
    }

    fn start_speculative(&mut self, start: u64, end: u64) {
        let Some(stt) = self.setup.engines.stt.clone() else {
            return;
        };
        if let Some((_, old)) = self.speculative.take() {
            old.abort();
        }
        let audio = self.audio.utterance(start, end);
        let prompt = self.setup.settings.stt_prompt.clone();
        let task = tokio::spawn(async move { stt.transcribe(&audio, prompt.as_deref()).await });
        self.speculative = Some((end, task));
    }

    async fn on_barge_in(&mut self) {
        tracing::info!(call = %self.call_id, "barge-in: stopping playback");
        metrics::counter_inc("understudy_barge_in_total", &[]);
        if let Work::Speaking {
            task: Some(task), ..
        } = std::mem::replace(&mut self.work, Work::Idle)
        {
            task.abort();
        }
        self.emit(SessionAction::ClearPlayout).await;
        if let Some(mut report) = self.pending_report.take() {
            report.barged_in = true;
            self.emit(SessionAction::Report(Box::new(report))).await;
        }
        self.set_state(CallState::Listening).await;
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
        let finished = matches!(&self.work, Work::Speaking { task: None, last_mark: Some(m), .. } if *m <= mark);
        if finished {
            self.finish_speaking().await;
        }
    }

    /// Start (or queue) a turn.
    async fn run_turn(&mut self, input: TurnInput) {
        if matches!(self.state, CallState::Transferring | CallState::Ended) {
            return;
        }
        if matches!(self.work, Work::Thinking(_)) {
            // One turn at a time; the newest input waits.
            self.queued_turn = Some(input);
            return;
        }
        if let Work::Speaking { task, .. } = std::mem::replace(&mut self.work, Work::Idle) {
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
        let task = tokio::spawn(turn::think(
            self.setup.clone(),
            conversation,
            input,
            self.turn,
        ));
        self.work = Work::Thinking(task);
    }

    /// The turn is slow: say the filler (pre-rendered) so the caller does not
    /// hear dead air. The answer, when it comes, queues behind it.
    async fn play_filler(&mut self) {
        self.filler_due = None;
        if !matches!(self.work, Work::Thinking(_)) {
            return;
        }
        let Some(audio) = turn::filler_audio(&self.setup, &self.call_id, self.turn) else {
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

    async fn on_thought(&mut self, done: Result<TurnDone, tokio::task::JoinError>) {
        self.work = Work::Idle;
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
        let task = tokio::spawn(turn::speak(
            self.setup.clone(),
            texts,
            self.actions.clone(),
            first_mark,
            pace,
            self.call_id.clone(),
            report,
        ));
        self.pending_report = None;
        self.work = Work::Speaking {
            task: Some(task),
            after,
            last_mark: None,
        };
    }

    async fn on_spoken(&mut self, done: Result<SpeakerDone, tokio::task::JoinError>) {
        let Ok(done) = done else { return };
        let last_mark = done.last_mark;
        match done.error {
            Some(e) => {
                self.work = Work::Idle;
                // With none of the answer queued, only the filler can be playing: not cut.
                self.apologize(e, Some(done.report), last_mark.is_some())
                    .await;
            }
            None => {
                self.pending_report = Some(done.report);
                // Everything is queued; the egress tells when it has been played.
                if let Work::Speaking {
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
        let after = match std::mem::replace(&mut self.work, Work::Idle) {
            Work::Speaking { task, after, .. } => {
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

    /// An engine failed: apologise (pre-rendered audio) and transfer to a human.
    async fn safety_net(&mut self, error: EngineError, report: Option<TurnReport>) {
        // While thinking, only a prompt (the filler, a takeover prompt) can be
        // queued: let it finish, the apology follows at once. A half-spoken
        // answer is cut.
        let cut = self.state != CallState::Thinking;
        self.apologize(error, report, cut).await;
    }

    /// The safety net; `cut`: what is queued for the caller is dropped first.
    async fn apologize(&mut self, error: EngineError, report: Option<TurnReport>, cut: bool) {
        tracing::error!(call = %self.call_id, %error, "engine failure: safety net");
        metrics::counter_inc("understudy_safety_net_total", &[]);
        if cut {
            self.emit(SessionAction::ClearPlayout).await;
        }
        self.stop_work();
        self.filler_due = None;
        let setup = self.setup.clone();
        let settings = &setup.settings;
        let mut report = report.unwrap_or_else(|| TurnReport {
            turn: self.turn,
            ..Default::default()
        });
        report.safety_net = true;
        report.filler |= std::mem::take(&mut self.filler_played);
        report.error = Some(error.to_string());
        report.reply = settings.apology.clone();
        report.action = "transfer".into();
        if let Some(audio) = self.setup.prompts.get(&settings.apology) {
            let mark = self.next_mark;
            self.next_mark += 1;
            self.emit(SessionAction::Play {
                samples: audio,
                mark,
            })
            .await;
        }
        self.emit(SessionAction::Report(Box::new(report))).await;
        self.set_state(CallState::Transferring).await;
        metrics::counter_inc("understudy_transfers_total", &[("reason", "safety_net")]);
        let target = settings.safety_target.clone();
        self.emit(SessionAction::Transfer {
            target,
            reason: format!("safety net: {error}"),
        })
        .await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

enum WorkDone {
    Thought(Box<Result<TurnDone, tokio::task::JoinError>>),
    Spoken(Box<Result<SpeakerDone, tokio::task::JoinError>>),
}

/// The turn task or the speaker task finishing, whichever is running.
async fn wait_work(work: &mut Work) -> WorkDone {
    match work {
        Work::Thinking(task) => WorkDone::Thought(Box::new(task.await)),
        Work::Speaking {
            task: Some(task), ..
        } => WorkDone::Spoken(Box::new(task.await)),
        _ => std::future::pending().await,
    }
}

/// Merge the bot's turn-taking settings with the appliance's.
pub fn settings_for(bot: &Bot, config: &crate::config::SessionConfig) -> SessionSettings {
    let bundle = bot.bundle();
    SessionSettings {
        endpoint: EndpointParams {
            threshold: config.vad_threshold,
            min_speech_ms: config.min_speech_ms,
            end_silence_ms: config.endpoint_silence_ms,
            max_silence_ms: config.turn_max_silence_ms,
            ..Default::default()
        },
        smart_turn: config.smart_turn.then(|| smart_turn::SmartTurnSettings {
            threshold: config.smart_turn_threshold,
            timeout: Duration::from_millis(u64::from(config.smart_turn_timeout_ms)),
        }),
        barge_in: config.barge_in,
        barge_in_min_speech_ms: config.barge_in_min_speech_ms,
        longest_no_input: bundle.longest_no_input_timeout(),
        dtmf_interdigit: config
            .dtmf_interdigit_ms
            .map(|ms| Duration::from_millis(u64::from(ms))),
        turn_deadline: Duration::from_millis(config.turn_deadline_ms as u64),
        filler_after: (config.filler_after_ms > 0)
            .then(|| Duration::from_millis(config.filler_after_ms as u64)),
        filler: bundle
            .filler_prompt()
            .unwrap_or_else(|| prompts::DEFAULT_FILLER.to_string()),
        safety_target: bundle.safety_net_target(),
        apology: bundle
            .safety_net_prompt()
            .unwrap_or_else(|| prompts::DEFAULT_APOLOGY.to_string()),
        takeover: config
            .takeover_prompt
            .clone()
            .unwrap_or_else(|| prompts::DEFAULT_TAKEOVER.to_string()),
        takeover_when: config.takeover_prompt_when,
        takeover_ack: config.takeover_ack.trim().to_string(),
        stt_prompt: Some(bundle.stt_hint()),
    }
}
