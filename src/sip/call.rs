//! One call from INVITE to hang-up, owned by one task: answer, run the
//! session over the RTP leg, answer the caller's in-dialog requests (hold,
//! codec change, DTMF by INFO, OPTIONS), and, when the bot asks, transfer
//! the caller to a human and relay the bridge if it comes to that.

use super::admission::Admitted;
use super::bridge::{self, Bridge};
use super::dtmf;
use super::inpath::{self, CloudEvent, CloudLeg};
use super::media::{MediaCommand, MediaConfig, MediaEvent, MediaLeg, Upstream};
use super::sdp::{Direction, LocalMedia, Negotiated, SdpSession};
use super::server::Shared;
use super::transfer::{self, Outcome};
use super::ALLOW;
use crate::metrics;
use crate::session::{self, CallEvent, Opening, SessionAction, TurnReport};
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, TerminatedReason, TransactionHandle,
};
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Everything the server settled before the call task starts.
pub(super) struct CallSetup {
    pub shared: Arc<Shared>,
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

type TransferTask = Pin<Box<dyn Future<Output = Outcome> + Send>>;

struct Call {
    shared: Arc<Shared>,
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
    bridge: Option<Box<Bridge>>,
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
            SessionAction::Report(report) => log_turn(&self.id, &report),
            SessionAction::State(state) => {
                tracing::debug!(call = %self.id, ?state, "session state")
            }
        }
        None
    }

    async fn begin_transfer(&mut self, target: String, reason: String) -> Option<End> {
        if self.transfer.is_some() || self.bridge.is_some() {
            return None;
        }
        let resolved = transfer::resolve_target(&target, &self.shared.settings.transfer, self.peer);
        let shown = resolved.as_deref().unwrap_or(&target);
        tracing::info!(call = %self.id, target = %shown, bot_target = %target, %reason, "transfer requested");
        // The caller hears what was queued ("let me connect you") first.
        self.leg.drained(DRAIN_LIMIT).await;
        self.end_session();
        // From here the call uses no engine: free its slot for the next caller.
        self.admitted = None;
        let uri = match resolved {
            Ok(uri) => uri,
            Err(e) => return end("transfer_failed", e),
        };
        let (sipfrag_tx, sipfrags) = mpsc::channel(16);
        self.sipfrags = Some(sipfrag_tx);
        let local_ip = self.sdp.local.address;
        let contact = super::contact_uri(
            local_ip,
            self.shared.listen.port(),
            rsipstack::sip::Transport::Udp,
        );
        let job = transfer::Job {
            shared: self.shared.clone(),
            dialog: self.dialog.clone(),
            target: uri,
            sipfrags,
            caller_user: caller_user(&self.dialog.initial_request()),
            referred_by: contact.to_string(),
        };
        self.transfer = Some(Box::pin(transfer::run(job)));
        None
    }

    fn on_transfer(&mut self, outcome: Outcome) -> Option<End> {
        self.sipfrags = None;
        match outcome {
            Outcome::Referred => {
                self.hang_up_at = Some(tokio::time::Instant::now() + REFERRED_GRACE);
                None
            }
            Outcome::Bridged(b) => {
                tracing::info!(call = %self.id, target = %b.target, "bridged to the target");
                bridge::connect(&self.leg, &b.leg);
                self.bridge = Some(b);
                None
            }
            Outcome::Failed(e) => {
                tracing::warn!(call = %self.id, error = %e, "transfer failed");
                end("transfer_failed", e)
            }
        }
    }

    async fn on_agent_event(&mut self, event: AgentEvent) -> Option<End> {
        let bridge = self.bridge.as_mut()?;
        let state = match event {
            AgentEvent::Media(Some(MediaEvent::Timeout | MediaEvent::Unreachable)) => {
                return end("transferred", "no RTP from the agent")
            }
            AgentEvent::Media(None) => return end("failed", "the bridge's RTP leg stopped"),
            AgentEvent::State(None) => return end("transferred", "the agent's dialog went away"),
            AgentEvent::State(Some(state)) => *state,
        };
        match answer_placed_leg(bridge, &self.leg, state).await? {
            DialogState::Terminated(_, reason) => end(
                "transferred",
                format!("the bridge ended on the agent's side ({reason:?})"),
            ),
            DialogState::Refer(_, _, handle) => {
                let _ = handle.reply(StatusCode::Decline).await;
                None
            }
            _ => None,
        }
    }

    /// In-path: the caller hears ringing while the cloud bot answers; if it
    /// does not (error, timeout), the local bot answers instead, or the
    /// caller gets 503 (the SBC's next route) when the local bot cannot.
    async fn connect_cloud(&mut self) -> Option<End> {
        let continuity = self.shared.continuity.clone()?;
        let uri = continuity.settings.uri.clone()?;
        let media = MediaConfig {
            rtp_timeout: continuity.settings.rtp_timeout,
            rtp_timeout_floor: continuity.settings.rtp_timeout_floor,
            ..self.shared.media.clone()
        };
        let caller_user = caller_user(&self.dialog.initial_request());
        let started = Instant::now();
        let dial = bridge::dial(&self.shared, &uri, &caller_user, media);
        let give_up = tokio::time::sleep(continuity.settings.setup_timeout);
        tokio::pin!(dial, give_up);
        let result = loop {
            tokio::select! {
                result = &mut dial => break result,
                _ = &mut give_up => break Err(format!("no answer within {} ms", continuity.settings.setup_timeout.as_millis())),
                state = self.states.recv() => match state {
                    Some(DialogState::Terminated(_, reason)) => return end("cancelled", format!("{reason:?} while calling the cloud bot")),
                    None => return end("failed", "the dialog went away while calling the cloud bot"),
                    Some(_) => {}
                },
            }
        };
        match result {
            Ok(cloud) => {
                tracing::info!(call = %self.id, cloud = %uri, ms = started.elapsed().as_millis() as u64, "bridged to the cloud bot");
                metrics::counter_inc("understudy_inpath_calls_total", &[("route", "cloud")]);
                self.cloud = Some(Box::new(CloudLeg::connect(
                    &self.leg,
                    Box::new(cloud),
                    continuity.settings.recent_audio,
                )));
                None
            }
            Err(why) => {
                tracing::warn!(call = %self.id, cloud = %uri, error = %why, "the cloud bot did not take the call: the local bot answers");
                continuity.call_failed(&format!("call setup: {why}"));
                match self.shared.admission.admit() {
                    Ok(admitted) => {
                        metrics::counter_inc(
                            "understudy_inpath_calls_total",
                            &[("route", "local_after_setup_failure")],
                        );
                        self.admitted = Some(admitted);
                        None
                    }
                    Err(refusal) => {
                        metrics::counter_inc(
                            "understudy_inpath_calls_total",
                            &[("route", "refused")],
                        );
                        let _ = self.dialog.reject(
                            Some(StatusCode::ServiceUnavailable),
                            Some(refusal.label().to_string()),
                        );
                        end(
                            "refused",
                            format!(
                                "the cloud bot failed ({why}) and the local bot is {}",
                                refusal.label()
                            ),
                        )
                    }
                }
            }
        }
    }

    async fn on_cloud_event(&mut self, event: AgentEvent) -> Option<End> {
        let cloud = self.cloud.as_mut()?;
        let state = match event {
            AgentEvent::Media(Some(MediaEvent::Timeout)) => {
                return self
                    .take_over(
                        "no RTP from the cloud bot for longer than its packet cadence allows"
                            .into(),
                    )
                    .await;
            }
            AgentEvent::Media(Some(MediaEvent::Unreachable)) => {
                return self
                    .take_over(
                        "the cloud bot's RTP port is unreachable (ICMP) and its RTP stopped".into(),
                    )
                    .await;
            }
            AgentEvent::Media(None) => {
                return self.take_over("the cloud leg's RTP stopped".into()).await
            }
            AgentEvent::State(None) => {
                return self
                    .take_over("the cloud leg's dialog went away".into())
                    .await
            }
            AgentEvent::State(Some(state)) => *state,
        };
        match answer_placed_leg(&mut cloud.bridge, &self.leg, state).await? {
            DialogState::Terminated(id, TerminatedReason::UasBye) => {
                let reason = self
                    .shared
                    .bye_reasons
                    .lock()
                    .unwrap()
                    .pop(&id.call_id)
                    .unwrap_or_default();
                if inpath::bye_reason_is_error(&reason) {
                    return self
                        .take_over(format!("the cloud bot hung up with an error ({reason})"))
                        .await;
                }
                end("completed", "the cloud bot hung up")
            }
            DialogState::Terminated(_, reason) => {
                self.take_over(format!("the cloud leg ended: {reason:?}"))
                    .await
            }
            // The cloud bot hands the caller to a human: we do the transfer
            // (REFER to the caller's side, else bridge), the cloud leg ends.
            DialogState::Refer(_, request, handle) => {
                let target = request
                    .header_value("Refer-To")
                    .ok_or_else(|| "no Refer-To".to_string())
                    .and_then(|v| transfer::refer_to_target(&v));
                let target = match target {
                    Ok(target) => target,
                    Err(e) => {
                        tracing::warn!(call = %self.id, error = %e, "the cloud bot's REFER is refused");
                        let _ = handle.reply(StatusCode::BadRequest).await;
                        return None;
                    }
                };
                let _ = handle.reply(StatusCode::Accepted).await;
                tracing::info!(call = %self.id, %target, "the cloud bot transfers the caller");
                if let Some(cloud) = self.cloud.take() {
                    cloud.close(self.shared.clone());
                }
                self.leg.send(MediaCommand::Attach(Upstream::Nowhere));
                self.begin_transfer(target, "the cloud bot asked for it".into())
                    .await
            }
            _ => None,
        }
    }

    /// The cloud leg failed mid-call: the caller's leg stays up and the
    /// local bot takes over with what the caller said since the cloud bot
    /// last spoke. With no room for the local bot, the caller hears the
    /// apology and goes to a human; never a dropped call.
    async fn take_over(&mut self, why: String) -> Option<End> {
        let cloud = self.cloud.take()?;
        let quiet_ms = cloud
            .last_cloud_frame
            .map(|t| t.elapsed().as_millis() as u64);
        let recent_ms = cloud.recent.len_ms();
        let heard = cloud.heard();
        let on_cloud_s = cloud.connected.elapsed().as_secs_f64();
        cloud.close(self.shared.clone());
        if let Some(continuity) = &self.shared.continuity {
            continuity.call_failed(&why);
        }
        // Stale cloud audio out; from here the caller's audio is the session's.
        self.leg.send(MediaCommand::Clear);
        self.leg.send(MediaCommand::Attach(Upstream::Nowhere));
        match self.shared.admission.admit() {
            Ok(admitted) => {
                tracing::warn!(call = %self.id, reason = %why, quiet_ms, recent_ms, cloud_ms = heard.cloud.len() / 16, on_cloud_s, "cloud leg failed: the local bot takes over");
                metrics::counter_inc("understudy_takeovers_total", &[("to", "local_bot")]);
                self.admitted = Some(admitted);
                self.start_session_with(Opening::Takeover(Box::new(heard)));
                None
            }
            Err(refusal) => {
                tracing::warn!(call = %self.id, reason = %why, local = refusal.label(), "cloud leg failed and the local bot cannot take over: to a human");
                metrics::counter_inc("understudy_takeovers_total", &[("to", "human")]);
                let setup = self.shared.admission.current_setup();
                if let Some(setup) = &setup {
                    if let Some(samples) = setup.prompts.get(&setup.settings.apology) {
                        self.leg.send(MediaCommand::Play { samples, mark: 0 });
                    }
                }
                let target = setup
                    .map(|s| s.settings.safety_target.clone())
                    .unwrap_or_default();
                self.begin_transfer(
                    target,
                    format!("cloud failed ({why}); local bot {}", refusal.label()),
                )
                .await
            }
        }
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

/// Answer an in-dialog offer (re-INVITE, UPDATE) on a leg; returns true when
/// our own offer went out and the answer will come in the ACK.
async fn answer_offer(
    sdp: &mut SdpSession,
    leg: &MediaLeg,
    request: &Request,
    handle: TransactionHandle,
) -> bool {
    let sdp_type = || vec![Header::ContentType("application/sdp".into())];
    if request.body.is_empty() {
        if request.method == Method::Update {
            // A session refresh.
            let _ = handle.reply(StatusCode::OK).await;
            return false;
        }
        // An offerless re-INVITE: we offer what we have.
        let body = sdp.offer(Direction::SendRecv);
        let _ = handle
            .respond(StatusCode::OK, Some(sdp_type()), Some(body.into_bytes()))
            .await;
        return true;
    }
    match sdp.answer(&request.body) {
        Ok((body, params)) => {
            tracing::info!(leg = ?leg.local, hold = !params.we_send(), law = ?params.law, "media renegotiated");
            leg.send(MediaCommand::Update(params));
            let _ = handle
                .respond(StatusCode::OK, Some(sdp_type()), Some(body.into_bytes()))
                .await;
        }
        Err(e) => {
            tracing::info!(error = %e, "re-offer refused; media unchanged");
            let warning = Header::Warning(
                format!("304 understudy \"{}\"", e.to_string().replace('"', "'")).into(),
            );
            let _ = handle
                .respond(StatusCode::from(e.status()), Some(vec![warning]), None)
                .await;
        }
    }
    false
}

/// What both legs we place (to an agent, to the cloud bot) answer alike:
/// their re-offers (our INVITE carried the offer; later ones come from
/// them), their keys (passed to the caller), and requests that need only a
/// 200. Anything else comes back for the caller of this to handle.
async fn answer_placed_leg(
    leg: &mut Bridge,
    caller: &MediaLeg,
    state: DialogState,
) -> Option<DialogState> {
    match state {
        DialogState::Updated(_, request, handle) => {
            let _ = answer_offer(&mut leg.sdp, &leg.leg, &request, handle).await;
        }
        DialogState::Info(_, request, handle) => {
            let key = info_key(&request);
            let status = if key.is_some() {
                StatusCode::OK
            } else {
                StatusCode::UnsupportedMediaType
            };
            let _ = handle.reply(status).await;
            if let Some(key) = key {
                caller.send(MediaCommand::SendDtmf(key));
            }
        }
        DialogState::Options(_, _, handle)
        | DialogState::Notify(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            let _ = handle.reply(StatusCode::OK).await;
        }
        other => return Some(other),
    }
    None
}

/// A DTMF key carried by an INFO request.
fn info_key(request: &Request) -> Option<char> {
    let content_type = request.header_value("Content-Type").unwrap_or_default();
    dtmf::key_from_info(&content_type, &request.body)
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

fn log_turn(call: &str, r: &TurnReport) {
    tracing::info!(
        call = %call,
        turn = r.turn,
        transcript = %r.transcript,
        dtmf = r.dtmf.as_deref().unwrap_or(""),
        intent = r.intent.as_deref().unwrap_or(""),
        matched_by = %r.matched_by,
        reply = %r.reply,
        action = %r.action,
        voice_to_voice_ms = r.timings_ms.voice_to_voice.map(|v| v.round() as u64),
        endpoint_ms = r.timings_ms.endpoint.map(|v| v.round() as u64),
        stt_ms = r.timings_ms.stt.map(|v| v.round() as u64),
        dialog_ms = r.timings_ms.dialog.map(|v| v.round() as u64),
        tts_first_audio_ms = r.timings_ms.tts_first_audio.map(|v| v.round() as u64),
        safety_net = r.safety_net,
        filler = r.filler,
        "turn"
    );
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_action(session: &mut Option<SessionLink>) -> Option<SessionAction> {
    match session {
        Some(s) => s.actions.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_outcome(task: &mut Option<TransferTask>) -> Outcome {
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

async fn next_agent_event(bridge: &mut Option<Box<Bridge>>) -> AgentEvent {
    match bridge {
        Some(b) => leg_event(b).await,
        None => std::future::pending().await,
    }
}

/// The next signalling or media event of a leg we placed (agent or cloud bot).
async fn leg_event(b: &mut Bridge) -> AgentEvent {
    tokio::select! {
        state = b.states.recv() => AgentEvent::State(state.map(Box::new)),
        event = b.leg.events.recv() => AgentEvent::Media(event),
    }
}
