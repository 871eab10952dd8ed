//! An in-path call while the cloud bot has it: placing the cloud leg, its
//! events, and the takeover when it fails. What counts as a failure and
//! what the local bot starts from is `crate::continuity::inpath`'s; this is
//! the SIP side of it.

use super::*;
use crate::continuity::{self, inpath::Takeover};

impl Call {
    /// In-path: the caller hears ringing while the cloud bot answers; if it
    /// does not (error, timeout), the local bot answers instead, or the
    /// caller gets 503 (the SBC's next route) when the local bot cannot.
    pub(super) async fn connect_cloud(&mut self) -> Option<End> {
        let continuity = self.shared.continuity.clone()?;
        let uri = continuity.settings.uri.clone()?;
        let media = MediaConfig {
            rtp_timeout: continuity.settings.rtp_timeout,
            rtp_timeout_floor: continuity.settings.rtp_timeout_floor,
            ..self.shared.media.clone()
        };
        let caller_user = caller_user(&self.dialog.initial_request());
        let started = Instant::now();
        let dial = outbound::dial(&self.shared, &uri, &caller_user, media);
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
                match self
                    .shared
                    .admission
                    .admit(crate::session::admission::Ingress::Sip)
                {
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

    pub(super) async fn on_cloud_event(&mut self, event: AgentEvent) -> Option<End> {
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
                if crate::continuity::inpath::bye_reason_is_error(&reason) {
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

    /// The cloud leg failed mid-call: the caller's leg stays up and what
    /// becomes of the call is continuity's decision
    /// ([`crate::continuity::inpath::take_over`]): the local bot takes over
    /// with what the caller said since the cloud bot last spoke, or the
    /// caller hears the apology and goes to a human; never a dropped call.
    pub(super) async fn take_over(&mut self, why: String) -> Option<End> {
        let cloud = self.cloud.take()?;
        let decided = continuity::inpath::take_over(
            &self.id,
            &why,
            &cloud.watch,
            self.shared.continuity.as_deref(),
            &self.shared.admission,
        );
        cloud.close(self.shared.clone());
        // Stale cloud audio out; from here the caller's audio is the session's.
        self.leg.send(MediaCommand::Clear);
        self.leg.send(MediaCommand::Attach(Upstream::Nowhere));
        match decided {
            Takeover::Local { admitted, heard } => {
                self.admitted = Some(admitted);
                self.start_session_with(Opening::Takeover(heard));
                None
            }
            Takeover::ToHuman {
                apology,
                target,
                reason,
            } => {
                if let Some(samples) = apology {
                    self.leg.send(MediaCommand::Play { samples, mark: 0 });
                }
                self.begin_transfer(target, reason).await
            }
        }
    }
}
