//! Drive one call from recorded caller turns (WAV files, benchmark
//! utterances, tests), through the same session a phone call gets.
//!
//! The caller's audio is fed in real time, 20 ms at a time, exactly as a
//! phone line delivers it, so endpointing and latency are what a caller would
//! get. After each turn the line stays open (silence) until the bot has
//! answered. The bot's audio is "played" at once (collected), so a recorded
//! call never barges in on itself.

use crate::audio::{self, FRAME_SAMPLES};
use crate::session::{start_call, CallEvent, CallState, SessionAction, SessionSetup, TurnReport};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What happened during one caller turn (index 0 is the greeting).
#[derive(Debug, Default)]
pub struct RecordedTurn {
    /// Usually one; more when the caller's audio held several utterances.
    pub reports: Vec<TurnReport>,
    /// Everything the bot said during the turn, 16 kHz.
    pub bot_audio: Vec<i16>,
    /// Set when the bot handed the call over.
    pub transfer: Option<(String, String)>,
    /// The bot did not answer within the wait.
    pub timed_out: bool,
}

struct Collector {
    actions: mpsc::Receiver<SessionAction>,
    events: mpsc::Sender<CallEvent>,
    current: RecordedTurn,
    state: CallState,
}

impl Collector {
    /// Handle one action; playout is instant, so marks are acknowledged at once.
    async fn handle(&mut self, action: SessionAction) {
        match action {
            SessionAction::Play { samples, mark } => {
                self.current.bot_audio.extend_from_slice(&samples);
                let _ = self.events.send(CallEvent::PlayoutDone { mark }).await;
            }
            SessionAction::ClearPlayout => {}
            SessionAction::Transfer { target, reason } => {
                self.current.transfer = Some((target, reason))
            }
            SessionAction::Hangup => self.state = CallState::Ended,
            SessionAction::Report(report) => self.current.reports.push(*report),
            SessionAction::State(state) => self.state = state,
        }
    }

    fn settled(&self) -> bool {
        matches!(
            self.state,
            CallState::Listening | CallState::Transferring | CallState::Ended
        )
    }

    fn over(&self) -> bool {
        matches!(self.state, CallState::Transferring | CallState::Ended)
    }
}

/// Run a call: the greeting, then each caller turn (16 kHz audio) in order.
/// `on_turn` sees each outcome as soon as the turn is over. Stops early when
/// the bot transfers or hangs up.
pub async fn run_call(
    setup: Arc<SessionSetup>,
    call_id: &str,
    turns: &[Vec<i16>],
    mut on_turn: impl FnMut(usize, RecordedTurn),
) {
    let max_wait =
        setup.settings.longest_no_input + setup.settings.turn_deadline + Duration::from_secs(10);
    let call = start_call(setup, call_id.to_string());
    let mut c = Collector {
        actions: call.actions,
        events: call.events.clone(),
        current: RecordedTurn::default(),
        state: CallState::Speaking,
    };

    // The greeting.
    let deadline = tokio::time::Instant::now() + max_wait;
    while !c.settled() {
        match tokio::time::timeout_at(deadline, c.actions.recv()).await {
            Ok(Some(action)) => c.handle(action).await,
            _ => {
                c.current.timed_out = true;
                break;
            }
        }
    }
    on_turn(0, std::mem::take(&mut c.current));

    let mut ticker = tokio::time::interval(Duration::from_millis(audio::FRAME_MS as u64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for (i, samples) in turns.iter().enumerate() {
        if c.over() {
            tracing::warn!(
                remaining = turns.len() - i,
                "the call ended before these caller turns"
            );
            break;
        }
        let reports_before = c.current.reports.len();
        for frame in audio::frames(samples) {
            ticker.tick().await;
            if call
                .events
                .send(CallEvent::Audio(Box::new(frame)))
                .await
                .is_err()
            {
                break;
            }
            while let Ok(action) = c.actions.try_recv() {
                c.handle(action).await;
            }
        }
        // Keep the line open (silence) until the bot has answered this turn.
        let deadline = tokio::time::Instant::now() + max_wait;
        while !(c.current.reports.len() > reports_before && c.settled()) {
            if tokio::time::Instant::now() > deadline {
                tracing::warn!(turn = i + 1, "no answer from the bot in time");
                c.current.timed_out = true;
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    if call.events.send(CallEvent::Audio(Box::new([0; FRAME_SAMPLES]))).await.is_err() { break; }
                }
                action = c.actions.recv() => match action {
                    Some(action) => c.handle(action).await,
                    None => break,
                },
            }
        }
        on_turn(i + 1, std::mem::take(&mut c.current));
    }
    let _ = call.events.send(CallEvent::Hangup).await;
    let _ = call.task.await;
}
