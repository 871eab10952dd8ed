//! Calls the appliance places itself: to the human of a transfer of last
//! resort, and to the cloud bot in in-path mode. [`dial`] places one with a
//! fresh RTP leg; [`connect`] relays the media between the caller's leg and
//! the placed one (8 kHz frames and DTMF keys both ways), until either side
//! hangs up.

use super::context::SipContext;
use super::sdp::{self, LocalMedia, SdpSession};
use crate::transport::rtp::leg::{BridgeFrame, MediaCommand, MediaConfig, MediaLeg, Upstream};
use rsipstack::dialog::dialog::DialogStateReceiver;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::{Header, StatusCodeKind, Uri};
use rsipstack::transport::SipAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A call the appliance placed (to a human, or to the cloud bot), answered.
pub struct PlacedCall {
    pub dialog: InviteDialog,
    pub states: DialogStateReceiver,
    pub leg: MediaLeg,
    pub sdp: SdpSession,
    pub target: String,
}

/// Call `target` (a SIP URI) with a fresh RTP leg; returns once it answered.
pub(super) async fn dial(
    shared: &Arc<SipContext>,
    target: &str,
    caller_user: &str,
    media: MediaConfig,
) -> Result<PlacedCall, String> {
    let mut callee =
        Uri::try_from(target).map_err(|e| format!("bad transfer target {target:?}: {e}"))?;
    // Headers in the target URI (a cloud bot's REFER to `...?Replaces=...`)
    // are never part of a Request-URI (RFC 3261 19.1.5); of them only
    // `Replaces` (RFC 3891, an attended transfer) goes into the INVITE.
    let replaces = std::mem::take(&mut callee.headers)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("replaces"))
        .map(|(_, value)| {
            let value = percent_encoding::percent_decode_str(&value).decode_utf8_lossy();
            Header::Replaces(rsipstack::sip::Replaces::new(value.into_owned()))
        });
    let (to, transport) = super::resolve_uri(&callee).await?;
    let socket = shared.ports.bind().await.map_err(|e| e.to_string())?;
    let leg =
        MediaLeg::spawn(socket, media, format!("bridge/{target}")).map_err(|e| e.to_string())?;
    let local_ip = shared.local_ip_for(to.ip());
    let mut sdp = SdpSession::new(LocalMedia {
        address: local_ip,
        rtp_port: leg.local.port(),
        session_id: rand::random::<u32>() as u64,
        version: 1,
        codecs: shared.settings.codecs.clone(),
    });
    let contact = super::contact_uri(local_ip, shared.port_for(transport), transport);
    let user = if caller_user.is_empty() {
        "understudy"
    } else {
        caller_user
    };
    let caller =
        Uri::try_from(format!("sip:{user}@{local_ip}").as_str()).map_err(|e| e.to_string())?;
    let option = InviteOption {
        caller,
        callee,
        contact,
        destination: Some(SipAddr {
            r#type: Some(transport),
            addr: to.into(),
        }),
        content_type: Some("application/sdp".into()),
        offer: Some(sdp.offer(sdp::Direction::SendRecv).into_bytes()),
        headers: replaces.map(|h| vec![h]),
        ..Default::default()
    };
    let (state_tx, states) = shared.dialogs.new_dialog_state_channel();
    tracing::info!(%target, %to, rtp = %leg.local, "bridge: calling the target");
    let (dialog, response) = shared
        .dialogs
        .do_invite(option, state_tx)
        .await
        .map_err(|e| format!("calling {target} failed: {e}"))?;
    let response = response.ok_or_else(|| format!("{target} gave no answer"))?;
    if response.status_code.kind() != StatusCodeKind::Successful {
        leg.stop().await;
        return Err(format!("{target} answered {}", response.status_code));
    }
    match sdp.accept_answer(&response.body) {
        Ok(params) => leg.send(MediaCommand::Update(params)),
        Err(e) => {
            let _ = dialog.bye().await;
            shared.dialogs.remove_dialog(&dialog.id());
            leg.stop().await;
            return Err(format!("{target} answered with unusable SDP: {e}"));
        }
    }
    Ok(PlacedCall {
        dialog,
        states,
        leg,
        sdp,
        target: target.to_string(),
    })
}

/// Relay the two legs into each other.
pub fn connect(caller: &MediaLeg, agent: &MediaLeg) {
    // A second of frames in flight at most; the legs drop rather than wait.
    let (to_agent, from_caller) = mpsc::channel::<BridgeFrame>(50);
    let (to_caller, from_agent) = mpsc::channel::<BridgeFrame>(50);
    caller.send(MediaCommand::Clear);
    caller.send(MediaCommand::Attach(Upstream::Bridge(to_agent)));
    agent.send(MediaCommand::BridgeFrom(from_caller));
    agent.send(MediaCommand::Attach(Upstream::Bridge(to_caller)));
    caller.send(MediaCommand::BridgeFrom(from_agent));
}
