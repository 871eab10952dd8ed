//! In-path mode (B2BUA), the SIP side: the caller's leg is bridged to the
//! cloud bot's leg through the call task, which relays the audio and lets
//! `crate::continuity::inpath::Watch` hear it. What a failure of the cloud
//! leg means, and what the local bot starts from, is continuity's; this
//! module only moves frames and reports the cloud leg's events.

use super::context::SipContext;
use super::outbound::PlacedCall;
use crate::continuity::inpath::Watch;
use crate::transport::rtp::leg::{BridgeFrame, MediaCommand, MediaEvent, MediaLeg, Upstream};
use rsipstack::dialog::dialog::DialogState;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// What happened on an in-path call's cloud side.
pub(super) enum CloudEvent {
    /// A frame or key went across; nothing to do.
    Relayed,
    /// One of the legs stopped relaying (its task ended).
    RelayClosed,
    /// The cloud leg's dialog (`None`: it went away).
    State(Option<Box<DialogState>>),
    /// The cloud leg's RTP (`Timeout`: the cloud stopped sending).
    Media(Option<MediaEvent>),
}

/// The cloud bot's leg of an in-path call and the relay between it and the caller.
pub(super) struct CloudLeg {
    pub bridge: Box<PlacedCall>,
    from_caller: mpsc::Receiver<BridgeFrame>,
    from_cloud: mpsc::Receiver<BridgeFrame>,
    to_cloud: mpsc::Sender<BridgeFrame>,
    to_caller: mpsc::Sender<BridgeFrame>,
    /// What the relay heard of both sides.
    pub watch: Watch,
}

impl CloudLeg {
    /// Route both legs' audio through the call task.
    pub fn connect(caller: &MediaLeg, bridge: Box<PlacedCall>, keep: Duration) -> CloudLeg {
        // A second of frames in flight at most; the legs drop rather than wait.
        let (caller_up, from_caller) = mpsc::channel(50);
        let (cloud_up, from_cloud) = mpsc::channel(50);
        let (to_cloud, cloud_in) = mpsc::channel(50);
        let (to_caller, caller_in) = mpsc::channel(50);
        caller.send(MediaCommand::Clear);
        caller.send(MediaCommand::Attach(Upstream::Bridge(caller_up)));
        caller.send(MediaCommand::BridgeFrom(caller_in));
        bridge
            .leg
            .send(MediaCommand::Attach(Upstream::Bridge(cloud_up)));
        bridge.leg.send(MediaCommand::BridgeFrom(cloud_in));
        CloudLeg {
            bridge,
            from_caller,
            from_cloud,
            to_cloud,
            to_caller,
            watch: Watch::new(keep),
        }
    }

    /// Wait for the next frame from either leg and pass it across, or for
    /// the cloud leg's next signalling or media event.
    pub async fn next(&mut self) -> CloudEvent {
        tokio::select! {
            state = self.bridge.states.recv() => CloudEvent::State(state.map(Box::new)),
            event = self.bridge.leg.events.recv() => CloudEvent::Media(event),
            frame = self.from_caller.recv() => match frame {
                Some(BridgeFrame::Audio(samples)) => {
                    self.watch.caller_frame(&samples);
                    let _ = self.to_cloud.try_send(BridgeFrame::Audio(samples));
                    CloudEvent::Relayed
                }
                Some(key) => {
                    let _ = self.to_cloud.try_send(key);
                    CloudEvent::Relayed
                }
                None => CloudEvent::RelayClosed,
            },
            frame = self.from_cloud.recv() => match frame {
                Some(BridgeFrame::Audio(samples)) => {
                    self.watch.cloud_frame(&samples);
                    let _ = self.to_caller.try_send(BridgeFrame::Audio(samples));
                    CloudEvent::Relayed
                }
                Some(key) => {
                    let _ = self.to_caller.try_send(key);
                    CloudEvent::Relayed
                }
                None => CloudEvent::RelayClosed,
            },
        }
    }

    /// Hang up the cloud leg and free its port (in the background: a dead
    /// cloud may take seconds to not answer our BYE).
    pub fn close(self, shared: Arc<SipContext>) {
        let bridge = self.bridge;
        tokio::spawn(async move {
            if !bridge.dialog.state().is_terminated() {
                let _ = tokio::time::timeout(Duration::from_secs(5), bridge.dialog.hangup()).await;
            }
            shared.dialogs.remove_dialog(&bridge.dialog.id());
            let stats = bridge.leg.stop().await;
            tracing::debug!(
                received = stats.received,
                sent = stats.sent,
                "cloud leg closed"
            );
        });
    }
}
