//! Handing the caller to a human: REFER to the caller's side first, else
//! the appliance calls the target itself and bridges the two legs
//! (`super::super::transfer`, `super::super::outbound`).

use super::*;

impl Call {
    pub(super) async fn begin_transfer(&mut self, target: String, reason: String) -> Option<End> {
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
        let contact = super::super::contact_uri(
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

    pub(super) fn on_transfer(&mut self, outcome: TransferResult) -> Option<End> {
        self.sipfrags = None;
        match outcome {
            TransferResult::Referred => {
                self.hang_up_at = Some(tokio::time::Instant::now() + REFERRED_GRACE);
                None
            }
            TransferResult::Bridged(b) => {
                tracing::info!(call = %self.id, target = %b.target, "bridged to the target");
                outbound::connect(&self.leg, &b.leg);
                self.bridge = Some(b);
                None
            }
            TransferResult::Failed(e) => {
                tracing::warn!(call = %self.id, error = %e, "transfer failed");
                end("transfer_failed", e)
            }
        }
    }

    pub(super) async fn on_agent_event(&mut self, event: AgentEvent) -> Option<End> {
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
}
