//! WebRTC calls: the softphone page at `/phone` (or any WHIP-style client)
//! calls the bot from a browser (docs/ingress.md).
//!
//! Signalling is one HTTP exchange on the HTTP listener, as WHIP does it:
//! `POST /webrtc` with the offer (`application/sdp`, ICE candidates
//! gathered) answers `201 Created` with the answer and a `Location` for the
//! call; `DELETE` on that location hangs up. Media is DTLS-SRTP over ICE host
//! candidates on `[calls] webrtc_addresses`: Opus when offered (every browser
//! does), else PCMU. A data channel (any label) carries the call's live
//! events to the page (`turn` reports with transcript, intent and timings,
//! `state`, `transfer`, `ended`) and its keys back (`{"type":"dtmf","digits":"1"}`,
//! `{"type":"hangup"}`).
//!
//! The caller's packets are decoded as they arrive (no jitter buffer: a
//! browser on the LAN or this box); a late or repeated packet is dropped and
//! a lost one concealed. The bot's audio leaves paced at 20 ms, the first
//! frame of each answer at once. Refusals are `503` with the reason and a
//! `Retry-After`; an offer we cannot answer is a `400` that says why.

pub mod media;

use super::stream::{CallOutcome, CallerAudio, Playout, StreamContext, LAST_WORDS_LIMIT};
use crate::metrics;
use crate::session::admission::{Admitted, Ingress};
use crate::session::{start_call, CallEvent, CallHandle, SessionAction};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use media::{Chosen, Decoder, Encoder};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCConfigurationBuilder, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription, Registry,
};

/// Where offers are posted, on the HTTP listener.
pub const OFFER_PATH: &str = "/webrtc";
/// The softphone page.
pub const PHONE_PATH: &str = "/phone";

/// What every WebRTC call shares.
pub struct WebrtcContext {
    /// Admission, outcomes and limits, shared with the other streamed ingresses.
    pub streams: Arc<StreamContext>,
    /// Where media sockets bind: `0.0.0.0` stands for every LAN interface.
    pub addresses: Vec<IpAddr>,
    /// Calls in progress, by id: a hang-up (`DELETE`) is sent here.
    calls: Mutex<HashMap<String, mpsc::Sender<()>>>,
}

impl WebrtcContext {
    /// Calls share `streams`; media binds `addresses`.
    pub fn new(streams: Arc<StreamContext>, addresses: Vec<IpAddr>) -> Self {
        WebrtcContext {
            streams,
            addresses,
            calls: Mutex::new(HashMap::new()),
        }
    }
}

/// The WebRTC routes (offer, hang-up) and the softphone page.
pub fn routes(ctx: Arc<WebrtcContext>) -> Router {
    Router::new()
        .route(OFFER_PATH, post(offer))
        .route("/webrtc/{id}", delete(hang_up))
        .route(PHONE_PATH, get(|| async { Html(PHONE_PAGE) }))
        .with_state(ctx)
}

/// The softphone: call the bot, hear it, see each turn (transcript, intent,
/// timings), press keys, hang up.
const PHONE_PAGE: &str = include_str!("phone.html");

/// How long a browser may take from the answer to a connected call.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long ICE gathering may take before the answer goes with what it has.
const GATHER_WAIT: Duration = Duration::from_secs(3);
/// Packets lost in a row that are concealed; a longer gap is left silent.
const MAX_CONCEALED: u16 = 5;

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (status, text).into_response()
}

async fn offer(
    State(ctx): State<Arc<WebrtcContext>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "post the SDP offer as Content-Type: application/sdp",
        );
    }
    let admitted = match ctx.streams.admission.admit(Ingress::Webrtc) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = refusal.label(), "WebRTC call refused: 503");
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, refusal.explain());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            return response;
        }
    };
    let chosen = match media::choose(&body) {
        Ok(chosen) => chosen,
        Err(why) => {
            metrics::counter_inc("understudy_stream_errors_total", &[("ingress", "webrtc")]);
            return plain(StatusCode::BAD_REQUEST, why);
        }
    };
    let id = format!("webrtc-{:016x}", rand::random::<u64>());
    let (events_tx, events) = mpsc::unbounded_channel();
    let connection = match connect(&ctx.addresses, chosen, body, events_tx).await {
        Ok(connection) => connection,
        Err(why) => {
            tracing::warn!(call = %id, %why, "WebRTC offer not answered");
            metrics::counter_inc("understudy_stream_errors_total", &[("ingress", "webrtc")]);
            return plain(
                StatusCode::BAD_REQUEST,
                format!("the offer could not be answered: {why}"),
            );
        }
    };
    let (hang_up_tx, hang_up) = mpsc::channel(1);
    ctx.calls.lock().unwrap().insert(id.clone(), hang_up_tx);
    metrics::counter_inc("understudy_stream_calls_total", &[("ingress", "webrtc")]);
    tracing::info!(call = %id, codec = chosen.codec.label(), "WebRTC call answered");
    ctx.streams
        .outcomes
        .record(&id, CallOutcome::plain(Ingress::Webrtc, "in_progress"));
    let answer = connection.answer.clone();
    let call = WebrtcCall {
        id: id.clone(),
        ctx: ctx.clone(),
        admitted,
        chosen,
        connection,
        events,
        hang_up,
    };
    tokio::spawn(call.run());
    let location = format!("{OFFER_PATH}/{id}");
    (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response()
}

async fn hang_up(State(ctx): State<Arc<WebrtcContext>>, Path(id): Path<String>) -> Response {
    let sender = ctx.calls.lock().unwrap().get(&id).cloned();
    match sender {
        Some(sender) => {
            let _ = sender.try_send(());
            plain(StatusCode::OK, "hanging up")
        }
        None => plain(StatusCode::NOT_FOUND, "no such call (or it has ended)"),
    }
}

/// What the peer connection tells the call.
enum PeerEvent {
    Track(Arc<dyn TrackRemote>),
    Channel(Arc<dyn DataChannel>),
    State(RTCPeerConnectionState),
}

/// The peer connection's callbacks, passed on to the call.
struct Events {
    call: mpsc::UnboundedSender<PeerEvent>,
    /// ICE gathering is complete: the answer can go.
    gathered: Arc<Notify>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.call.send(PeerEvent::State(state));
    }
    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.call.send(PeerEvent::Channel(channel));
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.call.send(PeerEvent::Track(track));
    }
}

/// An answered peer connection.
struct Connection {
    peer: Box<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    answer: String,
}

/// Answer `offer` with the one `chosen` codec, ICE candidates gathered.
async fn connect(
    addresses: &[IpAddr],
    chosen: Chosen,
    offer: String,
    events: mpsc::UnboundedSender<PeerEvent>,
) -> Result<Connection, String> {
    let codec = chosen.codec.rtp_codec();
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec.clone(),
                payload_type: chosen.payload_type,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| e.to_string())?;
    let registry =
        register_default_interceptors(Registry::new(), &mut engine).map_err(|e| e.to_string())?;
    let udp: Vec<String> = addresses.iter().map(|ip| format!("{ip}:0")).collect();
    let gathered = Arc::new(Notify::new());
    let peer = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Events {
            call: events,
            gathered: gathered.clone(),
        }))
        .with_udp_addrs(udp)
        .build()
        .await
        .map_err(|e| format!("media sockets: {e}"))?;
    let ssrc = rand::random::<u32>();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "understudy".into(),
        "bot".into(),
        "bot".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )));
    let offer = RTCSessionDescription::offer(offer).map_err(|e| e.to_string())?;
    peer.set_remote_description(offer)
        .await
        .map_err(|e| e.to_string())?;
    peer.add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| e.to_string())?;
    let answer = peer.create_answer(None).await.map_err(|e| e.to_string())?;
    peer.set_local_description(answer)
        .await
        .map_err(|e| e.to_string())?;
    // One exchange, no trickle: the answer carries every host candidate.
    if tokio::time::timeout(GATHER_WAIT, gathered.notified())
        .await
        .is_err()
    {
        tracing::warn!("ICE gathering took over 3 s: answering with the candidates so far");
    }
    let answer = peer
        .local_description()
        .await
        .ok_or("no local description after the answer")?
        .sdp;
    Ok(Connection {
        peer: Box::new(peer),
        track,
        ssrc,
        answer,
    })
}

/// One WebRTC call, from the answer to the hang-up.
struct WebrtcCall {
    id: String,
    ctx: Arc<WebrtcContext>,
    admitted: Admitted,
    chosen: Chosen,
    connection: Connection,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    hang_up: mpsc::Receiver<()>,
}

/// The call's running parts once the browser is connected.
struct Live {
    session: CallHandle,
    playout: Playout,
    encoder: Encoder,
    /// The next RTP sequence number and timestamp of the bot's audio.
    sequence: u16,
    timestamp: u32,
    /// The last tick sent audio (the next packet starts a talkspurt if not).
    talking: bool,
}

impl WebrtcCall {
    async fn run(mut self) {
        let outcome = self.serve().await;
        if outcome.result == "error" {
            metrics::counter_inc("understudy_stream_errors_total", &[("ingress", "webrtc")]);
        }
        let _ = self.connection.peer.close().await;
        self.ctx.calls.lock().unwrap().remove(&self.id);
        self.ctx.streams.outcomes.record(&self.id, outcome);
        tracing::info!(call = %self.id, "WebRTC call ended");
    }

    async fn serve(&mut self) -> CallOutcome {
        let hung_up = |why: &str| CallOutcome::because(Ingress::Webrtc, "caller_hung_up", why);
        let connect_by = Instant::now() + CONNECT_WAIT;
        let mut live: Option<Live> = None;
        let mut pending_track: Option<Arc<dyn TrackRemote>> = None;
        let mut channel: Option<Arc<dyn DataChannel>> = None;
        let (channel_tx, mut channel_rx) = mpsc::unbounded_channel::<String>();
        let mut receiver: Option<tokio::task::JoinHandle<()>> = None;
        let mut ending: Option<(Instant, CallOutcome)> = None;
        let mut session_over = false;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let outcome = loop {
            let deadline = ending.as_ref().map(|(at, _)| *at);
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(PeerEvent::State(state)) => {
                        tracing::debug!(call = %self.id, ?state, "WebRTC connection state");
                        match state {
                            RTCPeerConnectionState::Connected if live.is_none() => {
                                match self.go_live() {
                                    Ok(started) => live = Some(started),
                                    Err(why) => break CallOutcome::because(Ingress::Webrtc, "error", why),
                                }
                            }
                            RTCPeerConnectionState::Failed => break hung_up("the connection failed (ICE or DTLS)"),
                            RTCPeerConnectionState::Closed => break hung_up("the browser closed the call"),
                            _ => {}
                        }
                    }
                    Some(PeerEvent::Track(track)) => pending_track = Some(track),
                    Some(PeerEvent::Channel(dc)) => {
                        spawn_channel_reader(dc.clone(), channel_tx.clone());
                        let hello = json!({"type": "call", "id": self.id, "codec": self.chosen.codec.label()});
                        let _ = dc.send_text(&hello.to_string()).await;
                        channel = Some(dc);
                    }
                    None => break hung_up("the connection went away"),
                },
                text = channel_rx.recv() => {
                    let Some(text) = text else { continue };
                    match page_message(&text) {
                        PageMessage::Dtmf(keys) => {
                            // (A sender of its own: the call's codec state is not Sync.)
                            let Some(session) = live.as_ref().map(|l| l.session.events.clone()) else { continue };
                            for key in keys {
                                metrics::counter_inc("understudy_stream_dtmf_total", &[("ingress", "webrtc")]);
                                let _ = session.send(CallEvent::Dtmf(key)).await;
                            }
                        }
                        PageMessage::Hangup => break hung_up("the caller hung up"),
                        PageMessage::Unknown(why) => tracing::debug!(call = %self.id, %why, "data channel message ignored"),
                    }
                }
                _ = self.hang_up.recv() => break hung_up("the caller hung up (DELETE)"),
                action = next_action(&mut live), if !session_over => match action {
                    Some(action) => {
                        let live = live.as_mut().expect("actions come from a live call");
                        let was_quiet = live.playout.is_empty();
                        if let Some(end) = on_action(&self.id, live, action, channel.as_deref()).await {
                            ending.get_or_insert((Instant::now() + LAST_WORDS_LIMIT, end));
                        }
                        if was_quiet && !live.playout.is_empty() {
                            // The pace starts with the answer's first frame.
                            tick.reset();
                            self.send_frame(live).await;
                        }
                    }
                    None => {
                        session_over = true;
                        ending.get_or_insert((
                            Instant::now() + LAST_WORDS_LIMIT,
                            CallOutcome::plain(Ingress::Webrtc, "completed"),
                        ));
                    }
                },
                _ = tick.tick() => {
                    if let Some(live) = live.as_mut() {
                        self.send_frame(live).await;
                        if live.playout.is_empty() {
                            if let Some((_, outcome)) = ending.take() {
                                break outcome;
                            }
                        }
                    }
                }
                _ = crate::session::sleep_until(deadline) => {
                    break ending.take().expect("a deadline means an ending").1;
                }
                _ = tokio::time::sleep_until(connect_by), if live.is_none() => {
                    break CallOutcome::because(Ingress::Webrtc, "error", "the browser never connected (ICE or DTLS did not complete within 20 s)");
                }
            }
            // The track may come before or after the call is live.
            if let Some(live) = live.as_ref().filter(|_| receiver.is_none()) {
                if let Some(track) = pending_track.take() {
                    receiver = Some(tokio::spawn(receive(
                        self.id.clone(),
                        track,
                        self.chosen,
                        live.session.events.clone(),
                    )));
                }
            }
        };
        if let Some(dc) = &channel {
            let mut ended = serde_json::to_value(&outcome).unwrap_or(Value::Null);
            ended["type"] = "ended".into();
            let _ = dc.send_text(&ended.to_string()).await;
        }
        if let Some(receiver) = receiver {
            receiver.abort();
        }
        if let Some(live) = live {
            let _ = live.session.events.send(CallEvent::Hangup).await;
            drop(live.session.actions);
            let _ = live.session.task.await;
        }
        outcome
    }

    /// The browser is connected: start the session (its greeting plays now).
    fn go_live(&self) -> Result<Live, String> {
        tracing::info!(call = %self.id, "WebRTC call connected");
        Ok(Live {
            session: start_call(self.admitted.setup.clone(), self.id.clone()),
            playout: Playout::new(self.chosen.codec.rate()),
            encoder: Encoder::new(self.chosen.codec)?,
            sequence: rand::random(),
            timestamp: rand::random(),
            talking: false,
        })
    }

    /// The next 20 ms of the bot's audio, if any, as one RTP packet; the
    /// marks it completes are acknowledged.
    async fn send_frame(&self, live: &mut Live) {
        let frame_samples = self.chosen.codec.rate() / 50;
        let Some(samples) = live.playout.take_frame() else {
            live.talking = false;
            live.timestamp = live.timestamp.wrapping_add(frame_samples);
            return;
        };
        let payload = live.encoder.encode(&samples);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker: !live.talking,
                payload_type: self.chosen.payload_type,
                sequence_number: live.sequence,
                timestamp: live.timestamp,
                ssrc: self.connection.ssrc,
                ..Default::default()
            },
            payload: Bytes::from(payload),
        };
        live.talking = true;
        live.sequence = live.sequence.wrapping_add(1);
        live.timestamp = live.timestamp.wrapping_add(frame_samples);
        if let Err(e) = self.connection.track.write_rtp(packet).await {
            tracing::debug!(call = %self.id, error = %e, "WebRTC audio not sent");
        }
        for mark in live.playout.passed_marks() {
            let _ = live
                .session
                .events
                .send(CallEvent::PlayoutDone { mark })
                .await;
        }
    }
}

/// The session's next action, or never before the call is live.
async fn next_action(live: &mut Option<Live>) -> Option<SessionAction> {
    match live {
        Some(live) => live.session.actions.recv().await,
        None => std::future::pending().await,
    }
}

/// Carry out one session action; an outcome when the bot ends the call.
async fn on_action(
    id: &str,
    live: &mut Live,
    action: SessionAction,
    channel: Option<&dyn DataChannel>,
) -> Option<CallOutcome> {
    let tell = |message: Value| async move {
        if let Some(dc) = channel {
            let _ = dc.send_text(&message.to_string()).await;
        }
    };
    match action {
        SessionAction::Play { samples, mark } => live.playout.queue(&samples, mark),
        SessionAction::ClearPlayout => live.playout.clear(),
        SessionAction::Transfer { target, reason } => {
            tracing::info!(call = %id, %target, %reason, "transfer: the page is told where; the call ends once the last words have played");
            tell(json!({"type": "transfer", "target": target, "reason": reason})).await;
            return Some(CallOutcome::transfer(Ingress::Webrtc, target, reason));
        }
        SessionAction::Hangup => return Some(CallOutcome::plain(Ingress::Webrtc, "completed")),
        SessionAction::Report(report) => {
            let mut message = serde_json::to_value(&*report).unwrap_or(Value::Null);
            message["type"] = "turn".into();
            tell(message).await;
        }
        SessionAction::State(state) => tell(json!({"type": "state", "state": state})).await,
    }
    None
}

/// What the page may send on the data channel.
#[derive(Debug, PartialEq)]
enum PageMessage {
    /// Keys pressed on the keypad.
    Dtmf(Vec<char>),
    /// The hang-up button.
    Hangup,
    /// Anything else (ignored, logged at debug).
    Unknown(String),
}

fn page_message(text: &str) -> PageMessage {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return PageMessage::Unknown(format!("not JSON: {text:.80}"));
    };
    match value["type"].as_str() {
        Some("dtmf") => PageMessage::Dtmf(
            value["digits"]
                .as_str()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
                .collect(),
        ),
        Some("hangup") => PageMessage::Hangup,
        other => PageMessage::Unknown(format!("type {other:?}")),
    }
}

fn spawn_channel_reader(dc: Arc<dyn DataChannel>, to_call: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnMessage(message) if message.is_string => {
                    let text = String::from_utf8_lossy(&message.data).into_owned();
                    if to_call.send(text).is_err() {
                        return;
                    }
                }
                DataChannelEvent::OnClose => return,
                _ => {}
            }
        }
    });
}

/// The caller's audio: packets decoded in arrival order into canonical
/// frames for the session.
async fn receive(
    id: String,
    track: Arc<dyn TrackRemote>,
    chosen: Chosen,
    session: mpsc::Sender<CallEvent>,
) {
    let mut decoder = match Decoder::new(chosen.codec) {
        Ok(decoder) => decoder,
        Err(why) => {
            tracing::error!(call = %id, %why, "WebRTC audio cannot be decoded");
            return;
        }
    };
    let mut caller = CallerAudio::new(chosen.codec.rate());
    let mut last: Option<u16> = None;
    tracing::debug!(call = %id, "WebRTC: receiving the caller's audio");
    while let Some(event) = track.poll().await {
        let packet = match event {
            TrackRemoteEvent::OnRtpPacket(packet) => packet,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        if packet.header.payload_type != chosen.payload_type || packet.payload.is_empty() {
            continue;
        }
        let sequence = packet.header.sequence_number;
        let mut audio = vec![];
        if let Some(last) = last {
            let step = sequence.wrapping_sub(last);
            if step == 0 || step >= 0x8000 {
                // A repeat or a packet overtaken by later ones: its moment has passed.
                metrics::counter_inc(
                    "understudy_stream_messages_dropped_total",
                    &[("ingress", "webrtc"), ("reason", "out_of_order")],
                );
                continue;
            }
            for _ in 1..step.min(MAX_CONCEALED + 1) {
                audio.extend(decoder.conceal());
            }
        }
        last = Some(sequence);
        match decoder.decode(&packet.payload) {
            Ok(samples) => audio.extend(samples),
            Err(why) => {
                tracing::debug!(call = %id, %why, "WebRTC packet concealed");
                audio.extend(decoder.conceal());
            }
        }
        for frame in caller.push(&audio) {
            if session
                .send(CallEvent::Audio(Box::new(frame)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_sends_keys_and_hang_ups() {
        assert_eq!(
            page_message(r#"{"type":"dtmf","digits":"12x#"}"#),
            PageMessage::Dtmf(vec!['1', '2', '#'])
        );
        assert_eq!(page_message(r#"{"type":"hangup"}"#), PageMessage::Hangup);
        assert!(matches!(page_message("nonsense"), PageMessage::Unknown(_)));
        assert!(matches!(
            page_message(r#"{"type":"other"}"#),
            PageMessage::Unknown(_)
        ));
    }
}
