//! Twilio-shaped WebSocket media streams: a CPaaS `<Connect><Stream>` (or
//! Telnyx, Exotel, Fonoster, SignalWire, which copy its shape) points at
//! `ws://<box>/media-stream` on the HTTP listener (docs/ingress.md).
//!
//! In: `connected`, `start` (call ids, media format), `media` (base64 audio,
//! 20 ms at a time), `dtmf`, `mark` (the platform has played our audio up to
//! this mark) and `stop`. Out: `media` (the bot's audio, sent as soon as it
//! is ready: the platform buffers and paces it), `mark` after each reply
//! (its echo is the session's playout acknowledgement) and `clear` on
//! barge-in. These streams have no transfer: the bot ends the stream once
//! its last words have played, and the platform reads where the caller goes
//! from `GET /calls/{callSid}` (or simply continues its own script, e.g. a
//! `<Dial>` after `<Connect>`).
//!
//! Asterisk's WebSocket channel driver connects to `ws://<box>/asterisk-media`
//! instead: binary frames of audio both ways and text control events
//! (`MEDIA_START`, `DTMF_END`, `MEDIA_MARK_PROCESSED`) and commands
//! (`MARK_MEDIA`, `FLUSH_MEDIA`, `HANGUP`); see `asterisk.rs`. The call, its
//! marks, barge-in and endings are the same code as for Twilio's shape.
//!
//! Bad input ends that call only, with a close code that says why: 1003
//! (binary frames, an encoding we do not take), 1007 (not JSON, not base64),
//! 1008 (out of order: media before start, a second start, no start within
//! 10 s), 1009 (a message over `[calls] websocket_max_message`), 1013 (not
//! ready or full).

mod asterisk;

use super::stream::{CallOutcome, CallerAudio, StreamContext, LAST_WORDS_LIMIT};
use crate::audio::{self, g711::Law};
use crate::metrics;
use crate::session::admission::{Admitted, Ingress};
use crate::session::{start_call, CallEvent, CallHandle, SessionAction};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use tokio::time::Instant;

/// Where media streams connect, on the HTTP listener.
pub const PATH: &str = "/media-stream";
/// Where Asterisk's WebSocket channel driver connects.
pub const ASTERISK_PATH: &str = "/asterisk-media";

/// Close codes (RFC 6455 section 7.4.1).
mod close {
    pub const NORMAL: u16 = 1000;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The media-stream routes (Twilio's shape, Asterisk's), for the HTTP server.
pub fn routes(ctx: Arc<StreamContext>) -> Router {
    Router::new()
        .route(PATH, get(upgrade_twilio))
        .route(ASTERISK_PATH, get(upgrade_asterisk))
        .with_state(ctx)
}

/// Which platform's messages a stream speaks.
#[derive(Debug, Clone, PartialEq)]
enum Dialect {
    /// Twilio Media Streams and the platforms that copy them: JSON text.
    Twilio,
    /// Asterisk's `chan_websocket`: binary media, text control; the call id
    /// the dialplan gave in the URI (`v(call=${UNIQUEID})`), if any.
    Asterisk { call: Option<String> },
}

async fn upgrade_twilio(ws: WebSocketUpgrade, State(ctx): State<Arc<StreamContext>>) -> Response {
    upgrade(ws, ctx, Dialect::Twilio)
}

async fn upgrade_asterisk(
    ws: WebSocketUpgrade,
    State(ctx): State<Arc<StreamContext>>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let call = params.get("call").filter(|c| !c.is_empty()).cloned();
    // Asterisk asks for the `media` subprotocol.
    upgrade(ws.protocols(["media"]), ctx, Dialect::Asterisk { call })
}

fn upgrade(ws: WebSocketUpgrade, ctx: Arc<StreamContext>, dialect: Dialect) -> Response {
    // The protocol layer's own limit sits above ours, so that an oversized
    // message gets our clear 1009 rather than a dropped connection.
    let hard = ctx.max_message.saturating_mul(4).max(1 << 16);
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| run(socket, ctx, dialect))
}

/// Messages a platform sends (Twilio's names, with Telnyx's snake_case ones
/// accepted too).
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Inbound {
    Connected(Ignored),
    Start(Start),
    Media(Media),
    Dtmf(Dtmf),
    Mark(Mark),
    Stop(Ignored),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Ignored {}

#[derive(Debug, Deserialize)]
struct Start {
    #[serde(rename = "sequenceNumber", alias = "sequence_number", default)]
    sequence: Option<Value>,
    #[serde(rename = "streamSid", alias = "stream_id", default)]
    stream_sid: Option<String>,
    start: StartInfo,
}

#[derive(Debug, Deserialize)]
struct StartInfo {
    #[serde(rename = "streamSid", alias = "stream_id", default)]
    stream_sid: Option<String>,
    #[serde(
        rename = "callSid",
        alias = "call_sid",
        alias = "call_control_id",
        default
    )]
    call_sid: Option<String>,
    #[serde(rename = "mediaFormat", alias = "media_format")]
    media_format: MediaFormat,
}

#[derive(Debug, Deserialize)]
struct MediaFormat {
    encoding: String,
    #[serde(rename = "sampleRate", alias = "sample_rate")]
    sample_rate: u32,
    #[serde(default = "one")]
    channels: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
struct Media {
    #[serde(rename = "sequenceNumber", alias = "sequence_number", default)]
    sequence: Option<Value>,
    media: MediaPayload,
}

#[derive(Debug, Deserialize)]
struct MediaPayload {
    #[serde(default)]
    track: Option<String>,
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Dtmf {
    dtmf: DtmfInfo,
}

#[derive(Debug, Deserialize)]
struct DtmfInfo {
    digit: String,
}

#[derive(Debug, Deserialize)]
struct Mark {
    mark: MarkInfo,
}

#[derive(Debug, Deserialize)]
struct MarkInfo {
    name: String,
}

/// How the stream's audio is encoded, both ways.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    G711(Law),
    /// Signed 16-bit little-endian PCM.
    Linear,
}

impl Encoding {
    fn parse(format: &MediaFormat) -> Result<(Encoding, u32), String> {
        let name = format.encoding.to_ascii_lowercase();
        let encoding = match name.as_str() {
            "audio/x-mulaw" | "audio/pcmu" | "pcmu" | "mulaw" => Encoding::G711(Law::Mu),
            "audio/x-alaw" | "audio/pcma" | "pcma" | "alaw" => Encoding::G711(Law::A),
            "audio/l16" | "audio/x-l16" | "l16" | "linear16" => Encoding::Linear,
            _ => {
                return Err(format!(
                    "encoding {:?} is not supported: send audio/x-mulaw, audio/x-alaw or audio/L16",
                    format.encoding
                ))
            }
        };
        let rate = format.sample_rate;
        let rate_ok = match encoding {
            Encoding::G711(_) => rate == 8000,
            Encoding::Linear => (8000..=48000).contains(&rate),
        };
        if !rate_ok {
            return Err(format!(
                "sample rate {rate} Hz is not supported for {} (G.711 is 8000 Hz; L16 8000-48000 Hz)",
                format.encoding
            ));
        }
        if format.channels != 1 {
            return Err(format!(
                "{} channels: only mono media streams are supported",
                format.channels
            ));
        }
        Ok((encoding, rate))
    }

    fn decode(self, bytes: &[u8]) -> Result<Vec<i16>, String> {
        match self {
            Encoding::G711(law) => Ok(law.decode(bytes)),
            Encoding::Linear if bytes.len() % 2 == 1 => {
                Err("an L16 payload has an odd number of bytes".into())
            }
            Encoding::Linear => Ok(bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect()),
        }
    }

    fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Encoding::G711(law) => law.encode(samples),
            Encoding::Linear => samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
        }
    }
}

/// A started stream: its ids, its format and its session.
struct Started {
    call_id: String,
    /// Twilio's `streamSid` (every message names it); Asterisk's channel.
    stream_sid: String,
    encoding: Encoding,
    caller: CallerAudio,
    session: CallHandle,
    /// Asterisk: commands go back in JSON (else plain text).
    json_commands: bool,
    /// Asterisk: bytes per media frame (`optimal_frame_size`).
    frame_bytes: usize,
}

/// How the call ends: what the platform is told and what is recorded.
struct End {
    code: u16,
    reason: String,
    outcome: CallOutcome,
}

impl End {
    fn error(code: u16, reason: impl Into<String>) -> End {
        let reason = reason.into();
        End {
            code,
            outcome: CallOutcome::because(Ingress::Websocket, "error", reason.clone()),
            reason,
        }
    }

    fn normal(outcome: CallOutcome) -> End {
        End {
            code: close::NORMAL,
            reason: outcome.result.to_string(),
            outcome,
        }
    }
}

struct WsCall {
    socket: WebSocket,
    dialect: Dialect,
    ctx: Arc<StreamContext>,
    admitted: Admitted,
    started: Option<Started>,
    last_sequence: Option<u64>,
    /// Marks sent and not yet echoed, oldest first.
    outstanding: VecDeque<u64>,
    /// Set once the bot has ended the call: it closes when its last words
    /// have played, or at the deadline.
    ending: Option<(Instant, End)>,
    /// The session has ended (its last audio may still be playing).
    session_over: bool,
}

/// How long a new stream may take to send its `start`.
const START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

async fn run(mut socket: WebSocket, ctx: Arc<StreamContext>, dialect: Dialect) {
    let admitted = match ctx.admission.admit(Ingress::Websocket) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = refusal.label(), "media stream refused: close 1013");
            let _ = socket
                .send(close_message(close::TRY_AGAIN_LATER, refusal.explain()))
                .await;
            return;
        }
    };
    metrics::counter_inc("understudy_stream_calls_total", &[("ingress", "websocket")]);
    let mut call = WsCall {
        socket,
        dialect,
        ctx,
        admitted,
        started: None,
        last_sequence: None,
        outstanding: VecDeque::new(),
        ending: None,
        session_over: false,
    };
    let end = call.serve().await;
    call.finish(end).await;
}

impl WsCall {
    async fn serve(&mut self) -> End {
        let start_by = Instant::now() + START_WAIT;
        loop {
            if self.outstanding.is_empty() && self.ending.is_some() {
                return self.ending.take().expect("checked").1;
            }
            let deadline = self.ending.as_ref().map(|(at, _)| *at);
            tokio::select! {
                message = self.socket.recv() => match message {
                    Some(Ok(message)) => {
                        if let Some(end) = self.on_message(message).await {
                            return end;
                        }
                    }
                    Some(Err(e)) => return End::error(close::POLICY, format!("the stream broke: {e}")),
                    None => return End::normal(CallOutcome::because(Ingress::Websocket, "caller_hung_up", "the platform closed the stream")),
                },
                action = next_action(&mut self.started), if !self.session_over => match action {
                    Some(action) => {
                        if let Some(end) = self.on_action(action).await {
                            return end;
                        }
                    }
                    // The session is over; its last words may still be playing.
                    None => {
                        self.session_over = true;
                        if self.ending.is_none() {
                            self.ending = Some((
                                Instant::now() + LAST_WORDS_LIMIT,
                                End::normal(CallOutcome::plain(Ingress::Websocket, "completed")),
                            ));
                        }
                    }
                },
                _ = crate::session::sleep_until(deadline) => {
                    return self.ending.take().expect("a deadline means an ending").1;
                }
                _ = tokio::time::sleep_until(start_by), if self.started.is_none() => {
                    return End::error(close::POLICY, match self.dialect {
                        Dialect::Twilio => "no start within 10 s: send connected, then start",
                        Dialect::Asterisk { .. } => "no MEDIA_START within 10 s",
                    });
                }
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Option<End> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(bytes) if matches!(self.dialect, Dialect::Asterisk { .. }) => {
                if bytes.len() > self.ctx.max_message {
                    return Some(too_big(bytes.len(), self.ctx.max_message));
                }
                let Some(started) = self.started.as_mut() else {
                    return Some(End::error(close::POLICY, "media before MEDIA_START"));
                };
                return started.hear(&bytes).await;
            }
            Message::Binary(_) => {
                return Some(End::error(
                    close::UNSUPPORTED,
                    "binary frames are not part of a media stream: send JSON text messages",
                ))
            }
            Message::Close(_) => {
                return Some(End::normal(CallOutcome::because(
                    Ingress::Websocket,
                    "caller_hung_up",
                    "the platform closed the stream",
                )))
            }
            Message::Ping(_) | Message::Pong(_) => return None,
        };
        if text.len() > self.ctx.max_message {
            return Some(too_big(text.len(), self.ctx.max_message));
        }
        if matches!(self.dialect, Dialect::Asterisk { .. }) {
            return self.on_asterisk_event(text.as_str()).await;
        }
        let inbound: Inbound = match serde_json::from_str(text.as_str()) {
            Ok(inbound) => inbound,
            Err(e) => {
                return Some(End::error(
                    close::INVALID_PAYLOAD,
                    format!("not a media stream message: {e}"),
                ))
            }
        };
        match inbound {
            Inbound::Connected(_) | Inbound::Other => None,
            Inbound::Start(start) => self.on_start(start),
            Inbound::Media(media) => self.on_media(media).await,
            Inbound::Dtmf(dtmf) => {
                let started = self.started.as_ref()?;
                for key in dtmf.dtmf.digit.chars().filter(|c| is_dtmf_key(*c)) {
                    metrics::counter_inc(
                        "understudy_stream_dtmf_total",
                        &[("ingress", "websocket")],
                    );
                    let _ = started.session.events.send(CallEvent::Dtmf(key)).await;
                }
                None
            }
            Inbound::Mark(mark) => {
                // Echoes come in order; anything before this one has played too.
                if let Ok(mark) = mark.mark.name.parse::<u64>() {
                    self.mark_played(mark).await;
                }
                None
            }
            Inbound::Stop(_) => Some(End::normal(CallOutcome::because(
                Ingress::Websocket,
                "caller_hung_up",
                "the platform stopped the stream",
            ))),
        }
    }

    fn on_start(&mut self, start: Start) -> Option<End> {
        if self.started.is_some() {
            return Some(End::error(
                close::POLICY,
                "a second start on one stream: open one stream per call",
            ));
        }
        self.last_sequence = sequence(&start.sequence);
        let (encoding, rate) = match Encoding::parse(&start.start.media_format) {
            Ok(format) => format,
            Err(why) => return Some(End::error(close::UNSUPPORTED, why)),
        };
        let stream_sid = start
            .start
            .stream_sid
            .or(start.stream_sid)
            .unwrap_or_else(|| format!("stream-{}", rand::random::<u64>()));
        let call_id = start.start.call_sid.unwrap_or_else(|| stream_sid.clone());
        self.start(call_id, stream_sid, encoding, rate, false, 0);
        None
    }

    async fn on_media(&mut self, media: Media) -> Option<End> {
        let Some(started) = self.started.as_mut() else {
            return Some(End::error(
                close::POLICY,
                "media before start: send connected, then start, then media",
            ));
        };
        if let (Some(seq), Some(last)) = (sequence(&media.sequence), self.last_sequence) {
            if seq <= last {
                // A duplicate or a late message: its moment has passed.
                metrics::counter_inc(
                    "understudy_stream_messages_dropped_total",
                    &[("ingress", "websocket"), ("reason", "out_of_order")],
                );
                return None;
            }
        }
        if let Some(seq) = sequence(&media.sequence) {
            self.last_sequence = Some(seq);
        }
        // Our own audio echoed back (a two-track stream) is not the caller.
        if media
            .media
            .track
            .as_deref()
            .is_some_and(|t| t.starts_with("outbound"))
        {
            return None;
        }
        let bytes = match base64::engine::general_purpose::STANDARD.decode(&media.media.payload) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Some(End::error(
                    close::INVALID_PAYLOAD,
                    format!("a media payload is not base64: {e}"),
                ))
            }
        };
        started.hear(&bytes).await
    }

    /// An Asterisk control event.
    async fn on_asterisk_event(&mut self, text: &str) -> Option<End> {
        let event = match asterisk::Event::parse(text) {
            Ok(event) => event,
            Err(why) => return Some(End::error(close::INVALID_PAYLOAD, why)),
        };
        match event.name.as_str() {
            "MEDIA_START" => {
                if self.started.is_some() {
                    return Some(End::error(close::POLICY, "a second MEDIA_START"));
                }
                let (encoding, rate) = match asterisk::format(event.field("format").unwrap_or("")) {
                    Ok(format) => format,
                    Err(why) => return Some(End::error(close::UNSUPPORTED, why)),
                };
                let channel = event.field("channel").unwrap_or("").to_string();
                let given = match &self.dialect {
                    Dialect::Asterisk { call } => call.clone(),
                    Dialect::Twilio => None,
                };
                let call_id = given
                    .or_else(|| event.field("channel_id").map(str::to_string))
                    .unwrap_or_else(|| format!("asterisk-{}", rand::random::<u64>()));
                // 20 ms of the format unless Asterisk says otherwise.
                let frame_bytes = event
                    .field("optimal_frame_size")
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(match encoding {
                        Encoding::G711(_) => rate as usize / 50,
                        Encoding::Linear => rate as usize / 25,
                    });
                self.start(call_id, channel, encoding, rate, event.json, frame_bytes);
                // With the `n` dial option the channel waits for us to answer.
                self.send_command("ANSWER", None).await;
                None
            }
            "DTMF_END" => {
                let started = self.started.as_ref()?;
                let key = event.field("digit")?.chars().next()?;
                if is_dtmf_key(key) {
                    metrics::counter_inc(
                        "understudy_stream_dtmf_total",
                        &[("ingress", "websocket")],
                    );
                    let _ = started.session.events.send(CallEvent::Dtmf(key)).await;
                }
                None
            }
            "MEDIA_MARK_PROCESSED" => {
                let mark = event.field("correlation_id")?.parse::<u64>().ok()?;
                self.mark_played(mark).await;
                None
            }
            "ERROR" => {
                tracing::warn!(
                    error = event.field("error_text").unwrap_or(text),
                    "Asterisk reported an error on a media WebSocket"
                );
                None
            }
            // MEDIA_XOFF/XON (a bot's reply is far below Asterisk's 18 s
            // queue), QUEUE_DRAINED, STATUS, MEDIA_BUFFERING_COMPLETED.
            _ => None,
        }
    }

    /// Start the call's session.
    fn start(
        &mut self,
        call_id: String,
        stream_sid: String,
        encoding: Encoding,
        rate: u32,
        json_commands: bool,
        frame_bytes: usize,
    ) {
        tracing::info!(call = %call_id, stream = %stream_sid, ?encoding, rate, dialect = ?self.dialect, "media stream started");
        self.ctx.outcomes.record(
            &call_id,
            CallOutcome::plain(Ingress::Websocket, "in_progress"),
        );
        let session = start_call(self.admitted.setup.clone(), call_id.clone());
        self.started = Some(Started {
            call_id,
            stream_sid,
            encoding,
            caller: CallerAudio::new(rate),
            session,
            json_commands,
            frame_bytes,
        });
    }

    /// The platform has played our audio up to `mark` (and so everything before it).
    async fn mark_played(&mut self, mark: u64) {
        let Some(started) = self.started.as_ref() else {
            return;
        };
        if let Some(i) = self.outstanding.iter().position(|m| *m == mark) {
            self.outstanding.drain(..=i);
            let _ = started
                .session
                .events
                .send(CallEvent::PlayoutDone { mark })
                .await;
        }
    }

    /// Send an Asterisk command (nothing for other platforms).
    async fn send_command(&mut self, name: &str, correlation_id: Option<&str>) {
        let Some(started) = self.started.as_ref() else {
            return;
        };
        if matches!(self.dialect, Dialect::Asterisk { .. }) {
            let text = asterisk::command(started.json_commands, name, correlation_id);
            let _ = self.socket.send(Message::Text(text.into())).await;
        }
    }

    async fn on_action(&mut self, action: SessionAction) -> Option<End> {
        let started = self.started.as_mut()?;
        match action {
            SessionAction::Play { samples, mark } => {
                // The platform buffers and paces: send it all now, 20 ms a
                // message; the platform's echo of the mark says it has played.
                let rate = started.caller.rate();
                let wire = audio::resample(&samples, audio::SAMPLE_RATE, rate);
                let sid = started.stream_sid.clone();
                let messages: Vec<Message> = match self.dialect {
                    Dialect::Twilio => {
                        let mut messages: Vec<Value> = wire
                            .chunks((rate / 50) as usize)
                            .map(|chunk| {
                                let payload = base64::engine::general_purpose::STANDARD
                                    .encode(started.encoding.encode(chunk));
                                json!({"event": "media", "streamSid": sid, "media": {"payload": payload}})
                            })
                            .collect();
                        messages.push(
                            json!({"event": "mark", "streamSid": sid, "mark": {"name": mark.to_string()}}),
                        );
                        messages
                            .iter()
                            .map(|m| Message::Text(m.to_string().into()))
                            .collect()
                    }
                    // Whole frames of the channel's size; Asterisk queues them.
                    Dialect::Asterisk { .. } => {
                        let bytes = started.encoding.encode(&wire);
                        let mut messages: Vec<Message> = bytes
                            .chunks(started.frame_bytes)
                            .map(|frame| Message::Binary(frame.to_vec().into()))
                            .collect();
                        let command = asterisk::command(
                            started.json_commands,
                            "MARK_MEDIA",
                            Some(&mark.to_string()),
                        );
                        messages.push(Message::Text(command.into()));
                        messages
                    }
                };
                self.outstanding.push_back(mark);
                for message in messages {
                    if self.socket.send(message).await.is_err() {
                        return Some(End::normal(CallOutcome::because(
                            Ingress::Websocket,
                            "caller_hung_up",
                            "the stream closed",
                        )));
                    }
                }
            }
            SessionAction::ClearPlayout => {
                let sid = started.stream_sid.clone();
                self.outstanding.clear();
                match self.dialect {
                    Dialect::Twilio => {
                        let _ = self
                            .send_json(&json!({"event": "clear", "streamSid": sid}))
                            .await;
                    }
                    Dialect::Asterisk { .. } => self.send_command("FLUSH_MEDIA", None).await,
                }
            }
            SessionAction::Transfer { target, reason } => {
                tracing::info!(call = %started.call_id, %target, %reason, "transfer: the stream ends once the last words have played; the platform reads the target from /calls");
                let outcome = CallOutcome::transfer(Ingress::Websocket, target, reason);
                self.ending = Some((Instant::now() + LAST_WORDS_LIMIT, End::normal(outcome)));
            }
            SessionAction::Hangup => {
                self.ending = Some((
                    Instant::now() + LAST_WORDS_LIMIT,
                    End::normal(CallOutcome::plain(Ingress::Websocket, "completed")),
                ));
            }
            SessionAction::Report(_) | SessionAction::State(_) => {}
        }
        None
    }

    async fn send_json(&mut self, message: &Value) -> Result<(), axum::Error> {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
    }

    async fn finish(mut self, end: End) {
        let call_id = match &self.started {
            Some(started) => started.call_id.clone(),
            None => "(not started)".to_string(),
        };
        if end.code != close::NORMAL {
            tracing::warn!(call = %call_id, code = end.code, reason = %end.reason, "media stream closed on bad input");
            metrics::counter_inc(
                "understudy_stream_errors_total",
                &[("ingress", "websocket")],
            );
        }
        if end.code == close::NORMAL && !end.outcome.result.starts_with("caller") {
            // The bot ends an Asterisk call with a hang-up of the channel.
            self.send_command("HANGUP", None).await;
        }
        let _ = self.socket.send(close_message(end.code, &end.reason)).await;
        if let Some(started) = self.started.take() {
            let _ = started.session.events.send(CallEvent::Hangup).await;
            drop(started.session.actions);
            let _ = started.session.task.await;
            self.ctx.outcomes.record(&call_id, end.outcome);
        }
        tracing::info!(call = %call_id, "media stream ended");
    }
}

impl Started {
    /// The caller's audio, as it came (`bytes` in the stream's encoding).
    async fn hear(&mut self, bytes: &[u8]) -> Option<End> {
        let samples = match self.encoding.decode(bytes) {
            Ok(samples) => samples,
            Err(why) => return Some(End::error(close::INVALID_PAYLOAD, why)),
        };
        for frame in self.caller.push(&samples) {
            let _ = self
                .session
                .events
                .send(CallEvent::Audio(Box::new(frame)))
                .await;
        }
        None
    }
}

/// A message over the limit.
fn too_big(len: usize, limit: usize) -> End {
    End::error(
        close::TOO_BIG,
        format!("a {len}-byte message is over the {limit}-byte limit"),
    )
}

/// The session's next action, or never when the stream has not started.
async fn next_action(started: &mut Option<Started>) -> Option<SessionAction> {
    match started {
        Some(started) => started.session.actions.recv().await,
        None => std::future::pending().await,
    }
}

/// Twilio sends sequence numbers as strings; others as numbers.
fn sequence(value: &Option<Value>) -> Option<u64> {
    match value.as_ref()? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

/// A close frame; the reason is cut to the 123 bytes a close frame holds.
fn close_message(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_messages_parse() {
        let start = r#"{"event":"start","sequenceNumber":"1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},"customParameters":{}},"streamSid":"MZ1"}"#;
        let Inbound::Start(start) = serde_json::from_str(start).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(start.start.call_sid.as_deref(), Some("CA1"));
        assert_eq!(
            Encoding::parse(&start.start.media_format),
            Ok((Encoding::G711(Law::Mu), 8000))
        );
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        assert!(matches!(
            serde_json::from_str(connected).unwrap(),
            Inbound::Connected(_)
        ));
        let unknown = r#"{"event":"something_new","x":1}"#;
        assert!(matches!(
            serde_json::from_str(unknown).unwrap(),
            Inbound::Other
        ));
    }

    #[test]
    fn telnyx_names_parse_too() {
        let start = r#"{"event":"start","sequence_number":"1","start":{"call_control_id":"v3:1","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},"stream_id":"32DE"}"#;
        let Inbound::Start(start) = serde_json::from_str(start).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(start.stream_sid.as_deref(), Some("32DE"));
        assert_eq!(sequence(&start.sequence), Some(1));
    }

    #[test]
    fn unsupported_formats_say_what_to_send() {
        let format = |encoding: &str, sample_rate, channels| MediaFormat {
            encoding: encoding.into(),
            sample_rate,
            channels,
        };
        let err = Encoding::parse(&format("audio/opus", 48000, 1)).unwrap_err();
        assert!(err.contains("audio/x-mulaw"), "{err}");
        assert!(Encoding::parse(&format("audio/x-mulaw", 16000, 1)).is_err());
        assert!(Encoding::parse(&format("audio/x-mulaw", 8000, 2)).is_err());
        assert_eq!(
            Encoding::parse(&format("audio/L16", 16000, 1)),
            Ok((Encoding::Linear, 16000))
        );
    }

    #[test]
    fn a_long_close_reason_is_cut_at_a_character() {
        let Message::Close(Some(frame)) = close_message(1008, &"é".repeat(100)) else {
            panic!()
        };
        assert!(frame.reason.len() <= 123);
    }
}
