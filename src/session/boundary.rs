//! The one boundary between a call's transport and its session. Every
//! ingress (SIP/RTP, a recorded WAV call, and the ones to come) does the same
//! four things and nothing else reaches the session:
//!
//! - it turns the caller's audio into canonical frames (16 kHz, 20 ms) and
//!   sends them as [`CallEvent::Audio`], with [`CallEvent::Dtmf`] keys and a
//!   [`CallEvent::Hangup`] when the caller goes;
//! - it plays [`SessionAction::Play`] audio at the caller's pace and answers
//!   each with [`CallEvent::PlayoutDone`] once its last sample has left;
//! - it drops queued audio on [`SessionAction::ClearPlayout`] (barge-in);
//! - it carries out [`SessionAction::Transfer`] and [`SessionAction::Hangup`]
//!   in its own terms (a SIP REFER, a platform's own transfer, ...).
//!
//! [`SessionAction::Report`] and [`SessionAction::State`] are for logs,
//! status and tests. A transport starts the session with [`start_call`] once
//! it has admitted the call (`crate::session::admission`).

use super::takeover;
use super::{CallState, Session, SessionSetup, TurnReport};
use crate::audio::Frame;
use crate::metrics;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events into a session.
#[derive(Debug)]
pub enum CallEvent {
    /// 20 ms of caller audio at 16 kHz.
    Audio(Box<Frame>),
    /// One DTMF key (`0`-`9`, `*`, `#`, `A`-`D`).
    Dtmf(char),
    /// The egress finished playing everything up to this mark.
    PlayoutDone {
        /// The `mark` of the last `SessionAction::Play` played out.
        mark: u64,
    },
    /// The caller hung up (or the ingress lost the call).
    Hangup,
}

/// What the session asks of the ingress.
#[derive(Debug, Clone)]
pub enum SessionAction {
    /// Queue this audio (16 kHz) for the caller; acknowledge with
    /// `CallEvent::PlayoutDone { mark }` once it has been played.
    Play {
        /// The audio, 16 kHz.
        samples: Arc<Vec<i16>>,
        /// Returned in `CallEvent::PlayoutDone` once this audio has been played.
        mark: u64,
    },
    /// Drop everything queued: the caller barged in.
    ClearPlayout,
    /// Hand the caller to a human at `target` (a SIP URI or number).
    Transfer {
        /// Where the caller goes: a SIP URI or a number.
        target: String,
        /// Why: a `TransferReason` label, or `safety net: <error>`.
        reason: String,
    },
    /// End the call.
    Hangup,
    /// A turn finished (for logs, tests and `understudy converse`).
    Report(Box<TurnReport>),
    /// The state changed.
    State(CallState),
}

/// The ingress side of a running session.
pub struct CallHandle {
    /// Where the transport sends the call's events.
    pub events: mpsc::Sender<CallEvent>,
    /// What the session asks of the transport.
    pub actions: mpsc::Receiver<SessionAction>,
    /// The session task; it ends with the call.
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
