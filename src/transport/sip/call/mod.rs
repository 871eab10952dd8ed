//! One call from INVITE to hang-up, owned by one task: answer, run the
//! session over the RTP leg, answer the caller's in-dialog requests (hold,
//! codec change, DTMF by INFO, OPTIONS), and, when the bot asks, transfer
//! the caller to a human and relay the bridge if it comes to that.

mod handoff;
mod in_dialog;
mod inpath;

use super::cloud_leg::{CloudEvent, CloudLeg};
use super::context::SipContext;
use super::outbound::{self, PlacedCall};
use super::sdp::{Direction, LocalMedia, Negotiated, SdpSession};
use super::transfer::{self, TransferResult};
use super::ALLOW;
use crate::metrics;
use crate::session::admission::Admitted;
use crate::session::{self, sleep_until, CallEvent, Opening, SessionAction};
use crate::transport::rtp::leg::{MediaCommand, MediaConfig, MediaEvent, MediaLeg, Upstream};
use in_dialog::{answer_offer, answer_placed_leg, info_key};
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Request, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Everything the server settled before the call task starts.
pub(super) struct CallSetup {
    pub shared: Arc<SipContext>,
    pub dialog: InviteDialog,
    pub states: DialogStateReceiver,
    pub leg: MediaLeg,
    /// The INVITE's offer (`None`: a delayed offer, we offer in the 200 OK).
    pub offer: Option<Negotiated>,
    pub local: LocalMedia,
    /// The call slot (`None` for a call bridged to the cloud bot).
    pub admitted: Option<Admitted>,
    /// In-path mode with a live cloud: bridge the call to the cloud bot.
    pub to_cloud: bool,
    pub call_id: String,
    /// Where the INVITE came from (the SBC).
    pub peer: SocketAddr,
}

/// How long queued bot audio may take to finish before a transfer or hang-up.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// After a successful REFER the caller's side usually hangs up itself; we
/// send BYE if it has not within this time (and never before our answer to
/// its final NOTIFY has left).
const REFERRED_GRACE: Duration = Duration::from_secs(1);

/// Why a call ended: a metrics label and the details for the log.
struct End {
    result: &'static str,
    detail: String,
}

fn end(result: &'static str, detail: impl Into<String>) -> Option<End> {
    Some(End {
        result,
        detail: detail.into(),
    })
}

struct SessionLink {
    events: mpsc::Sender<CallEvent>,
    actions: mpsc::Receiver<SessionAction>,
    _task: JoinHandle<()>,
}

type TransferTask = Pin<Box<dyn Future<Output = TransferResult> + Send>>;

struct Call {
    shared: Arc<SipContext>,
    id: String,
    peer: SocketAddr,
    dialog: InviteDialog,
    states: DialogStateReceiver,
    leg: MediaLeg,
    sdp: SdpSession,
    offer: Option<Negotiated>,
    /// Our offer went out in a 2xx; the answer comes in the ACK.
    answer_in_ack: bool,
    /// The call slot; released once the session is over (a transfer needs no engines).
    admitted: Option<Admitted>,
    session: Option<SessionLink>,
    transfer: Option<TransferTask>,
    sipfrags: Option<mpsc::Sender<u16>>,
    bridge: Option<Box<PlacedCall>>,
    /// In-path mode: the cloud bot's leg while it has the call.
    cloud: Option<Box<CloudLeg>>,
    to_cloud: bool,
    /// The transfer is done; hang up at this time unless the caller does first.
    hang_up_at: Option<tokio::time::Instant>,
    confirmed: bool,
    started: Instant,
}

/// Run a call to its end.
pub(super) async fn run(setup: CallSetup) {
    let mut call = Call {
        sdp: SdpSession::new(setup.local),
        shared: setup.shared,
        id: setup.call_id,
        peer: setup.peer,
        dialog: setup.dialog,
        states: setup.states,
        leg: setup.leg,
        offer: setup.offer,
        answer_in_ack: false,
        admitted: setup.admitted,
        session: None,
        transfer: None,
        sipfrags: None,
        bridge: None,
        cloud: None,
        to_cloud: setup.to_cloud,
        hang_up_at: None,
        confirmed: false,
        started: Instant::now(),
    };
    let end = call.lifecycle().await;
    call.finish(end).await;
}

impl Call {
    async fn lifecycle(&mut self) -> End {
        // 180 only when there is ringing to hear (a ring time, or the cloud
        // bot being called): a 180 right before the 200 adds nothing, and a
        // proxy forwarding replies from several processes can deliver it
        // after the 200 (seen with Kamailio).
        if self.to_cloud || !self.shared.settings.answer_delay.is_zero() {
            let _ = self.dialog.ringing(None, None);
        }
        if self.to_cloud {
            if let Some(end) = self.connect_cloud().await {
                return end;
            }
        }
        if let Some(end) = self.ring_and_answer().await {
            return end;
        }
        loop {
            let ended = tokio::select! {
                state = self.states.recv() => match state {
                    Some(state) => self.on_caller_state(state).await,
                    None => end("failed", "the dialog went away"),
                },
                action = next_action(&mut self.session) => self.on_action(action).await,
                event = self.leg.events.recv() => match event {
                    Some(MediaEvent::Timeout | MediaEvent::Unreachable) => end("rtp_timeout", "no RTP from the caller"),
                    None => end("failed", "the RTP leg stopped"),
                },
                outcome = next_outcome(&mut self.transfer) => self.on_transfer(outcome),
                event = next_agent_event(&mut self.bridge) => self.on_agent_event(event).await,
                event = next_cloud_event(&mut self.cloud) => match event {
                    CloudEvent::Relayed => None,
                    CloudEvent::RelayClosed => self.take_over("the cloud leg's media stopped".into()).await,
                    CloudEvent::State(state) => self.on_cloud_event(AgentEvent::State(state)).await,
                    CloudEvent::Media(event) => self.on_cloud_event(AgentEvent::Media(event)).await,
                },
                _ = sleep_until(self.hang_up_at) => end("transferred", "by REFER"),
            };
            if let Some(end) = ended {
                return end;
            }
        }
    }

    /// An optional ring time (a CANCEL ends the call there), then 200 with SDP.
    async fn ring_and_answer(&mut self) -> Option<End> {
        let delay = self.shared.settings.answer_delay;
        if !delay.is_zero() {
            let ring = tokio::time::sleep(delay);
            tokio::pin!(ring);
            loop {
                tokio::select! {
                    _ = &mut ring => break,
                    state = self.states.recv() => match state {
                        Some(DialogState::Terminated(_, reason)) => return end("cancelled", format!("{reason:?} while ringing")),
                        None => return end("failed", "the dialog went away while ringing"),
                        Some(_) => {}
                    },
                }
            }
        }
        let body = match self.offer.take() {
            Some(offer) => self.sdp.answer_negotiated(&offer),
            None => {
                self.answer_in_ack = true;
                self.sdp.offer(Direction::SendRecv)
            }
        };
        let headers = vec![
            Header::ContentType("application/sdp".into()),
            Header::Allow(ALLOW.into()),
            Header::Supported("replaces".into()),
        ];
        if let Err(e) = self.dialog.accept(Some(headers), Some(body.into_bytes())) {
            return end("failed", format!("cannot answer: {e}"));
        }
        if let Some(params) = &self.sdp.params {
            self.leg.send(MediaCommand::Update(params.clone()));
        }
        metrics::counter_inc("understudy_sip_calls_total", &[("result", "answered")]);
        tracing::info!(call = %self.id, "answered");
        None
    }

    async fn on_caller_state(&mut self, state: DialogState) -> Option<End> {
        match state {
            DialogState::Confirmed(..) => {
                if self.answer_in_ack {
                    self.answer_in_ack = false;
                    let ack = self
                        .dialog
                        .last_remote_ack()
                        .map(|r| r.body)
                        .unwrap_or_default();
                    match self.sdp.accept_answer(&ack) {
                        Ok(params) => self.leg.send(MediaCommand::Update(params)),
                        Err(e) if !self.confirmed => {
                            return end("failed", format!("the ACK carried no usable answer: {e}"))
                        }
                        Err(e) => {
                            tracing::warn!(call = %self.id, error = %e, "unusable answer in ACK; media unchanged")
                        }
                    }
                }
                if !self.confirmed {
                    self.confirmed = true;
                    self.start_session();
                }
                None
            }
            DialogState::Updated(_, request, handle) => {
                self.answer_in_ack |=
                    answer_offer(&mut self.sdp, &self.leg, &request, handle).await;
                None
            }
            DialogState::Info(_, request, handle) => {
                match info_key(&request) {
                    Some(key) => {
                        let _ = handle.reply(StatusCode::OK).await;
                        self.on_caller_key(key).await;
                    }
                    None => {
                        let _ = handle.reply(StatusCode::UnsupportedMediaType).await;
                    }
                }
                None
            }
            DialogState::Notify(_, request, handle) => {
                let is_refer = request
                    .header_value("Event")
                    .is_some_and(|e| e.to_ascii_lowercase().starts_with("refer"));
                if !is_refer {
                    let _ = handle.reply(StatusCode::BadEvent).await;
                    return None;
                }
                let _ = handle.reply(StatusCode::OK).await;
                if let (Some(code), Some(tx)) =
                    (transfer::sipfrag_status(&request.body), &self.sipfrags)
                {
                    let _ = tx.send(code).await;
                }
                None
            }
            DialogState::Options(_, _, handle) => {
                let _ = handle
                    .respond(
                        StatusCode::OK,
                        Some(vec![Header::Allow(ALLOW.into())]),
                        None,
                    )
                    .await;
                None
            }
            // We transfer callers; we do not take transfers.
            DialogState::Refer(_, _, handle) => {
                let _ = handle.reply(StatusCode::Decline).await;
                None
            }
            DialogState::Message(_, _, handle) | DialogState::Publish(_, _, handle) => {
                let _ = handle
                    .respond(
                        StatusCode::MethodNotAllowed,
                        Some(vec![Header::Allow(ALLOW.into())]),
                        None,
                    )
                    .await;
                None
            }
            DialogState::Terminated(_, reason) => match reason {
                TerminatedReason::UacCancel => end("cancelled", "CANCEL"),
                TerminatedReason::UacBye if self.bridge.is_some() => {
                    end("transferred", "the caller hung up the bridge")
                }
                TerminatedReason::UacBye if self.hang_up_at.is_some() => {
                    end("transferred", "by REFER")
                }
                TerminatedReason::UacBye => end("completed", "the caller hung up"),
                TerminatedReason::Timeout => end("failed", "no ACK for our answer"),
                other => end("failed", format!("dialog terminated: {other:?}")),
            },
            DialogState::Calling(_)
            | DialogState::Trying(_)
            | DialogState::Early(..)
            | DialogState::WaitAck(..) => None,
        }
    }

    async fn on_caller_key(&mut self, key: char) {
        tracing::info!(call = %self.id, %key, "DTMF (SIP INFO)");
        metrics::counter_inc("understudy_sip_dtmf_total", &[("via", "info")]);
        if let Some(bridge) = &self.bridge {
            bridge.leg.send(MediaCommand::SendDtmf(key));
        } else if let Some(cloud) = &self.cloud {
            cloud.bridge.leg.send(MediaCommand::SendDtmf(key));
        } else if let Some(session) = &self.session {
            let _ = session.events.send(CallEvent::Dtmf(key)).await;
        }
    }

    fn start_session(&mut self) {
        self.start_session_with(Opening::Greeting);
    }

    fn start_session_with(&mut self, opening: Opening) {
        let Some(admitted) = &self.admitted else {
            return;
        };
        let handle = session::start_call_with(admitted.setup.clone(), self.id.clone(), opening);
        self.leg.send(MediaCommand::Attach(Upstream::Session(
            handle.events.clone(),
        )));
        self.session = Some(SessionLink {
            events: handle.events,
            actions: handle.actions,
            _task: handle.task,
        });
    }

    /// End the session (if any); the call itself may go on (a transfer).
    fn end_session(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.events.try_send(CallEvent::Hangup);
            // The leg holds the other sender; with both gone the session ends even
            // if its queue was full.
            self.leg.send(MediaCommand::Attach(Upstream::Nowhere));
        }
    }

    async fn on_action(&mut self, action: Option<SessionAction>) -> Option<End> {
        let Some(action) = action else {
            // The session is over. A transfer or bridge carries on without it.
            self.session = None;
            if self.transfer.is_some() || self.bridge.is_some() {
                return None;
            }
            return end("completed", "the session ended");
        };
        match action {
            SessionAction::Play { samples, mark } => {
                self.leg.send(MediaCommand::Play { samples, mark })
            }
            SessionAction::ClearPlayout => self.leg.send(MediaCommand::Clear),
            SessionAction::Transfer { target, reason } => {
                return self.begin_transfer(target, reason).await
            }
            SessionAction::Hangup => {
                self.leg.drained(DRAIN_LIMIT).await;
                return end("completed", "the bot hung up");
            }
            // The session logged it; the call has nothing to add.
            SessionAction::Report(_) => {}
            SessionAction::State(state) => {
                tracing::debug!(call = %self.id, ?state, "session state")
            }
        }
        None
    }

    /// Tear everything down: session, transfer in progress, bridge, dialog, RTP.
    async fn finish(mut self, end: End) {
        self.end_session();
        if let Some(cloud) = self.cloud.take() {
            cloud.close(self.shared.clone());
        }
        // Dropping a transfer in progress cancels its INVITE to the target.
        self.transfer = None;
        if let Some(bridge) = self.bridge.take() {
            if !bridge.dialog.state().is_terminated() {
                let _ = bridge.dialog.hangup().await;
            }
            self.shared.dialogs.remove_dialog(&bridge.dialog.id());
            let stats = bridge.leg.stop().await;
            tracing::info!(call = %self.id, received = stats.received, sent = stats.sent, "bridge leg closed");
        }
        let state = self.dialog.state();
        if state.is_confirmed() || state.waiting_ack() {
            let reason = match end.result {
                "rtp_timeout" => Some("SIP;cause=408;text=\"RTP timeout\""),
                "transfer_failed" => Some("SIP;cause=480;text=\"Transfer failed\""),
                "failed" => Some("SIP;cause=500;text=\"Internal error\""),
                _ => None,
            };
            let result = match reason {
                Some(reason) => self.dialog.bye_with_reason(reason.to_string()).await,
                None => self.dialog.bye().await,
            };
            if let Err(e) = result {
                tracing::debug!(call = %self.id, error = %e, "BYE failed");
            }
        } else if !state.is_terminated() {
            let _ = self.dialog.reject(
                Some(StatusCode::ServerInternalError),
                Some(end.detail.clone()),
            );
        }
        self.shared.dialogs.remove_dialog(&self.dialog.id());
        let stats = self.leg.stop().await;
        metrics::counter_inc(
            "understudy_sip_calls_ended_total",
            &[("result", end.result)],
        );
        tracing::info!(
            call = %self.id,
            result = end.result,
            detail = %end.detail,
            secs = self.started.elapsed().as_secs_f64().round() as u64,
            rtp_received = stats.received,
            rtp_lost = stats.lost,
            rtp_late = stats.late,
            concealed = stats.concealed,
            jitter_ms = format!("{:.1}", stats.jitter_ms),
            rtp_sent = stats.sent,
            "call ended"
        );
    }
}

/// The caller's user part (number), for the From of a bridge call.
fn caller_user(invite: &Request) -> String {
    invite
        .from_header()
        .ok()
        .and_then(|f| f.typed().ok())
        .and_then(|f| f.uri.user().map(str::to_string))
        .unwrap_or_default()
}

async fn next_action(session: &mut Option<SessionLink>) -> Option<SessionAction> {
    match session {
        Some(s) => s.actions.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_outcome(task: &mut Option<TransferTask>) -> TransferResult {
    let Some(running) = task.as_mut() else {
        return std::future::pending().await;
    };
    let outcome = running.as_mut().await;
    *task = None;
    outcome
}

enum AgentEvent {
    State(Option<Box<DialogState>>),
    Media(Option<MediaEvent>),
}

async fn next_cloud_event(cloud: &mut Option<Box<CloudLeg>>) -> CloudEvent {
    match cloud {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

async fn next_agent_event(bridge: &mut Option<Box<PlacedCall>>) -> AgentEvent {
    match bridge {
        Some(b) => leg_event(b).await,
        None => std::future::pending().await,
    }
}

/// The next signalling or media event of a leg we placed (agent or cloud bot).
async fn leg_event(b: &mut PlacedCall) -> AgentEvent {
    tokio::select! {
        state = b.states.recv() => AgentEvent::State(state.map(Box::new)),
        event = b.leg.events.recv() => AgentEvent::Media(event),
    }
}
