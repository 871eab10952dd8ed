//! Requests inside an established dialog that the caller's leg and the legs
//! we place answer alike: re-offers (re-INVITE, UPDATE: hold, codec change)
//! and DTMF by INFO.

use super::super::outbound::PlacedCall;
use super::super::sdp::{Direction, SdpSession};
use crate::transport::rtp::dtmf;
use crate::transport::rtp::leg::{MediaCommand, MediaLeg};
use rsipstack::dialog::dialog::{DialogState, TransactionHandle};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, Request, StatusCode};

/// Answer an in-dialog offer (re-INVITE, UPDATE) on a leg; returns true when
/// our own offer went out and the answer will come in the ACK.
pub(super) async fn answer_offer(
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
pub(super) async fn answer_placed_leg(
    leg: &mut PlacedCall,
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
pub(super) fn info_key(request: &Request) -> Option<char> {
    let content_type = request.header_value("Content-Type").unwrap_or_default();
    dtmf::key_from_info(&content_type, &request.body)
}
