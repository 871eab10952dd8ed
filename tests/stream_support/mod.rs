//! Peers for the streamed ingresses, written from the public protocol
//! descriptions, not from our server: a Twilio Media Streams platform
//! (WebSocket, JSON messages) and an Asterisk channel running
//! `AudioSocket()` (TCP, 3-byte headers). Each plays the caller's side in real
//! time, 20 ms at a time, and behaves as its platform does with the bot's
//! audio: Twilio buffers it, plays it at real time, echoes each `mark` once
//! the audio before it has played (at once after a `clear`); Asterisk plays
//! whatever arrives as it arrives.
#![allow(dead_code)]

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use understudy::audio::g711::Law;

/// Samples in 20 ms at 8 kHz.
pub const FRAME: usize = 160;

/// What the caller's side has seen of the bot.
#[derive(Debug, Default)]
pub struct Observed {
    /// Each piece of bot audio: when it arrived and how many samples (8 kHz).
    pub audio: Vec<(Instant, usize)>,
    /// The bot's audio, 8 kHz.
    pub heard: Vec<i16>,
    /// When the bot's audio will have finished playing at the caller's end.
    pub playing_until: Option<Instant>,
    /// `clear` messages (Twilio).
    pub clears: usize,
    /// Marks echoed (Twilio).
    pub marks_echoed: usize,
    /// How the far end closed: a WebSocket close code and reason, or
    /// AudioSocket's 0 (hang-up) / 255 (error) with the error code.
    pub closed: Option<(u16, String)>,
    /// Every JSON message (Twilio).
    pub messages: Vec<Value>,
}

impl Observed {
    /// The first bot audio that arrived at or after `t`.
    pub fn audio_after(&self, t: Instant) -> Option<Instant> {
        self.audio.iter().map(|(at, _)| *at).find(|at| *at >= t)
    }

    /// Each piece of bot audio that arrived at or after `t`: (when, samples).
    pub fn audio_since(&self, t: Instant) -> Vec<(Instant, usize)> {
        self.audio
            .iter()
            .filter(|(at, _)| *at >= t)
            .copied()
            .collect()
    }

    /// Still playing at `now`.
    pub fn playing(&self, now: Instant) -> bool {
        self.playing_until.is_some_and(|until| until > now)
    }

    /// Bot audio (8 kHz) arrived at `now`: it plays after what is queued.
    pub fn queue_audio(&mut self, now: Instant, samples: Vec<i16>) {
        let start = self.playing_until.filter(|u| *u > now).unwrap_or(now);
        self.playing_until = Some(start + Duration::from_secs_f64(samples.len() as f64 / 8000.0));
        self.audio.push((now, samples.len()));
        self.heard.extend(samples);
    }
}

/// One caller's line into the appliance.
pub trait Line {
    /// Send 20 ms of caller audio (8 kHz).
    fn send_frame(&mut self, frame: &[i16]) -> impl std::future::Future<Output = bool> + Send;
    /// Press a key.
    fn send_dtmf(&mut self, key: char) -> impl std::future::Future<Output = ()> + Send;
    /// Hang up.
    fn hang_up(&mut self) -> impl std::future::Future<Output = ()> + Send;
    /// What has been seen so far.
    fn observed(&self) -> Arc<Mutex<Observed>>;
}

/// A caller on a line: speaks in real time and keeps the line open with
/// silence, as a phone line does.
pub struct Caller<L: Line> {
    pub line: L,
    tick: tokio::time::Interval,
    /// When each frame was sent, by frame number (the call's audio clock).
    pub sent: Vec<Instant>,
    /// The line is gone (the far end closed it).
    pub gone: bool,
}

impl<L: Line> Caller<L> {
    pub fn new(line: L) -> Self {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Caller {
            line,
            tick,
            sent: vec![],
            gone: false,
        }
    }

    async fn frame(&mut self, frame: &[i16]) {
        self.tick.tick().await;
        if !self.gone && !self.line.send_frame(frame).await {
            self.gone = true;
        }
        self.sent.push(Instant::now());
    }

    /// Say `speech` (8 kHz) in real time.
    pub async fn say(&mut self, speech: &[i16]) {
        for chunk in speech.chunks(FRAME) {
            let mut frame = [0i16; FRAME];
            frame[..chunk.len()].copy_from_slice(chunk);
            self.frame(&frame).await;
        }
    }

    /// Keep the line open with silence for `d`.
    pub async fn silence(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until && !self.gone {
            self.frame(&[0; FRAME]).await;
        }
    }

    /// Silence until bot audio arrives after `t` (or `limit`); its time.
    pub async fn wait_audio_after(&mut self, t: Instant, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        while Instant::now() < until && !self.gone {
            if let Some(at) = self.line.observed().lock().unwrap().audio_after(t) {
                return Some(at);
            }
            self.frame(&[0; FRAME]).await;
        }
        self.line.observed().lock().unwrap().audio_after(t)
    }

    /// Silence until the bot has been quiet (nothing playing) for `quiet`.
    pub async fn wait_quiet(&mut self, quiet: Duration, limit: Duration) {
        let until = Instant::now() + limit;
        let mut quiet_since = Instant::now();
        while Instant::now() < until && !self.gone {
            let now = Instant::now();
            if self.line.observed().lock().unwrap().playing(now) {
                quiet_since = now;
            } else if now - quiet_since >= quiet {
                return;
            }
            self.frame(&[0; FRAME]).await;
        }
    }

    /// Silence until the far end closes the line (or `limit`).
    pub async fn wait_closed(&mut self, limit: Duration) -> Option<(u16, String)> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(closed) = self.line.observed().lock().unwrap().closed.clone() {
                return Some(closed);
            }
            if self.gone {
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                self.frame(&[0; FRAME]).await;
            }
        }
        None
    }

    /// When the frame holding call-audio time `ms` was sent.
    pub fn sent_at_ms(&self, ms: f64) -> Option<Instant> {
        self.sent.get((ms / 20.0) as usize).copied()
    }
}

/// The last moment of speech in `speech` (8 kHz), as a sample count.
pub fn speech_end(speech: &[i16]) -> usize {
    let frames: Vec<&[i16]> = speech.chunks(FRAME).collect();
    let last = frames
        .iter()
        .rposition(|f| understudy::audio::is_speech_level(f))
        .unwrap_or(0);
    (last + 1) * FRAME
}

/// Audio as it arrives over a G.711 line: the same samples whichever
/// ingress carries them.
pub fn through_mulaw(samples: &[i16]) -> Vec<i16> {
    Law::Mu.decode(&Law::Mu.encode(samples))
}

// ---------------------------------------------------- WebSocket platforms

/// The writer of a WebSocket peer: every message to the appliance goes
/// through the returned sender; a close is the last.
fn spawn_writer(
    mut sink: impl futures_util::Sink<Message> + Unpin + Send + 'static,
) -> mpsc::UnboundedSender<Message> {
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let close = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || close {
                break;
            }
        }
    });
    out
}

/// A platform's playout acknowledgements: each mark put in the returned
/// queue (when its audio will have played, its name) is answered with
/// `echo(name)` at that time.
fn echo_marks(
    out: mpsc::UnboundedSender<Message>,
    observed: Arc<Mutex<Observed>>,
    echo: impl Fn(String) -> String + Send + 'static,
) -> Arc<Mutex<VecDeque<(Instant, String)>>> {
    let marks: Arc<Mutex<VecDeque<(Instant, String)>>> = Default::default();
    let queue = marks.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = Instant::now();
            let due: Vec<String> = {
                let mut marks = queue.lock().unwrap();
                let mut due = vec![];
                while marks.front().is_some_and(|(at, _)| *at <= now) {
                    due.push(marks.pop_front().unwrap().1);
                }
                due
            };
            for name in due {
                observed.lock().unwrap().marks_echoed += 1;
                if out.send(Message::Text(echo(name).into())).is_err() {
                    return;
                }
            }
        }
    });
    marks
}

// ---------------------------------------------------------------- Twilio

/// A Twilio-shaped platform's side of one media stream.
pub struct TwilioLine {
    out: mpsc::UnboundedSender<Message>,
    pub stream_sid: String,
    pub call_sid: String,
    sequence: u64,
    chunk: u64,
    observed: Arc<Mutex<Observed>>,
}

/// How a test stream starts: Twilio's `start` as the documentation shows it.
pub fn twilio_start(stream_sid: &str, call_sid: &str, encoding: &str, rate: u32) -> Value {
    json!({
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "ACtest",
            "streamSid": stream_sid,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": encoding, "sampleRate": rate, "channels": 1},
            "customParameters": {}
        },
        "streamSid": stream_sid
    })
}

/// A raw WebSocket to the appliance's media-stream endpoint: send what you
/// like, read how it closes.
pub async fn raw_websocket(
    http: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/media-stream"))
        .await
        .expect("cannot open the media-stream WebSocket");
    ws
}

/// Read until the server closes: its close code and reason.
pub async fn close_of(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<(u16, String)> {
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return Some((u16::from(frame.code), frame.reason.to_string()))
            }
            Ok(Some(Ok(Message::Close(None)))) => return Some((1005, String::new())),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

impl TwilioLine {
    /// Connect and start a stream (`audio/x-mulaw`, 8 kHz).
    pub async fn connect(http: SocketAddr, call_sid: &str) -> TwilioLine {
        let ws = raw_websocket(http).await;
        let (sink, mut stream) = ws.split();
        let out = spawn_writer(sink);
        let observed = Arc::new(Mutex::new(Observed::default()));
        let stream_sid = format!("MZ{call_sid}");
        // Marks waiting for their audio to play: (due, name).
        let marks = {
            let sid = stream_sid.clone();
            echo_marks(out.clone(), observed.clone(), move |name| {
                json!({"event": "mark", "sequenceNumber": "0", "streamSid": sid, "mark": {"name": name}})
                    .to_string()
            })
        };
        // The reader: the platform's playout.
        {
            let (observed, marks) = (observed.clone(), marks.clone());
            tokio::spawn(async move {
                while let Some(message) = stream.next().await {
                    let now = Instant::now();
                    let message = match message {
                        Ok(Message::Text(text)) => text,
                        Ok(Message::Close(frame)) => {
                            observed.lock().unwrap().closed = Some(match frame {
                                Some(f) => (u16::from(f.code), f.reason.to_string()),
                                None => (1005, String::new()),
                            });
                            return;
                        }
                        Ok(_) => continue,
                        Err(e) => {
                            observed.lock().unwrap().closed = Some((1006, e.to_string()));
                            return;
                        }
                    };
                    let value: Value =
                        serde_json::from_str(&message).expect("the appliance sent JSON");
                    let mut o = observed.lock().unwrap();
                    match value["event"].as_str() {
                        Some("media") => {
                            let payload = value["media"]["payload"].as_str().unwrap_or("");
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(payload)
                                .expect("media payloads are base64");
                            let samples = Law::Mu.decode(&bytes);
                            o.queue_audio(now, samples);
                        }
                        Some("mark") => {
                            let name = value["mark"]["name"].as_str().unwrap_or("").to_string();
                            let due = o.playing_until.unwrap_or(now).max(now);
                            marks.lock().unwrap().push_back((due, name));
                        }
                        Some("clear") => {
                            o.clears += 1;
                            o.playing_until = Some(now);
                            for mark in marks.lock().unwrap().iter_mut() {
                                mark.0 = now;
                            }
                        }
                        _ => {}
                    }
                    o.messages.push(value);
                }
            });
        }
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let _ = out.send(Message::Text(connected.to_string().into()));
        let start = twilio_start(&stream_sid, call_sid, "audio/x-mulaw", 8000);
        let _ = out.send(Message::Text(start.to_string().into()));
        TwilioLine {
            out,
            stream_sid,
            call_sid: call_sid.to_string(),
            sequence: 1,
            chunk: 0,
            observed,
        }
    }

    fn send(&mut self, value: Value) -> bool {
        self.out
            .send(Message::Text(value.to_string().into()))
            .is_ok()
    }
}

impl Line for TwilioLine {
    async fn send_frame(&mut self, frame: &[i16]) -> bool {
        self.sequence += 1;
        self.chunk += 1;
        let payload = base64::engine::general_purpose::STANDARD.encode(Law::Mu.encode(frame));
        let message = json!({
            "event": "media",
            "sequenceNumber": self.sequence.to_string(),
            "media": {
                "track": "inbound",
                "chunk": self.chunk.to_string(),
                "timestamp": ((self.chunk - 1) * 20).to_string(),
                "payload": payload
            },
            "streamSid": self.stream_sid
        });
        self.send(message)
    }

    async fn send_dtmf(&mut self, key: char) {
        self.sequence += 1;
        let message = json!({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": self.sequence.to_string(),
            "dtmf": {"track": "inbound_track", "digit": key.to_string()}
        });
        self.send(message);
    }

    async fn hang_up(&mut self) {
        self.sequence += 1;
        let message = json!({
            "event": "stop",
            "sequenceNumber": self.sequence.to_string(),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": "ACtest", "callSid": self.call_sid}
        });
        self.send(message);
        let _ = self.out.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })));
    }

    fn observed(&self) -> Arc<Mutex<Observed>> {
        self.observed.clone()
    }
}

// ----------------------------------------------------------- AudioSocket

/// One AudioSocket message on the wire: kind, 16-bit big-endian length, payload.
pub fn audiosocket_message(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Read one AudioSocket message: (kind, payload), or `None` at the end.
pub async fn read_audiosocket(read: &mut (impl AsyncReadExt + Unpin)) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 3];
    read.read_exact(&mut header).await.ok()?;
    let mut payload = vec![0u8; u16::from_be_bytes([header[1], header[2]]) as usize];
    read.read_exact(&mut payload).await.ok()?;
    Some((header[0], payload))
}

/// An Asterisk channel's side of `AudioSocket(uuid, host:port)`.
pub struct AudioSocketLine {
    write: tokio::net::tcp::OwnedWriteHalf,
    pub uuid: [u8; 16],
    observed: Arc<Mutex<Observed>>,
}

impl AudioSocketLine {
    /// Connect and name the call, as Asterisk does.
    pub async fn connect(addr: SocketAddr, uuid: [u8; 16]) -> AudioSocketLine {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("cannot connect to the AudioSocket port");
        stream.set_nodelay(true).unwrap();
        let (mut read, mut write) = stream.into_split();
        let observed = Arc::new(Mutex::new(Observed::default()));
        {
            let observed = observed.clone();
            tokio::spawn(async move {
                loop {
                    let Some((kind, payload)) = read_audiosocket(&mut read).await else {
                        let mut o = observed.lock().unwrap();
                        if o.closed.is_none() {
                            o.closed = Some((1006, "connection closed".into()));
                        }
                        return;
                    };
                    let now = Instant::now();
                    let mut o = observed.lock().unwrap();
                    match kind {
                        0x10 => {
                            let samples: Vec<i16> = payload
                                .chunks_exact(2)
                                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                                .collect();
                            // Asterisk plays each frame as it comes.
                            o.queue_audio(now, samples);
                        }
                        0x00 => o.closed = Some((0, String::new())),
                        0xff => {
                            o.closed = Some((255, format!("{:?}", payload.first())));
                        }
                        other => panic!("the appliance sent AudioSocket kind 0x{other:02x}"),
                    }
                }
            });
        }
        write
            .write_all(&audiosocket_message(0x01, &uuid))
            .await
            .unwrap();
        AudioSocketLine {
            write,
            uuid,
            observed,
        }
    }
}

impl Line for AudioSocketLine {
    async fn send_frame(&mut self, frame: &[i16]) -> bool {
        let payload: Vec<u8> = frame.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.write
            .write_all(&audiosocket_message(0x10, &payload))
            .await
            .is_ok()
    }

    async fn send_dtmf(&mut self, key: char) {
        let _ = self
            .write
            .write_all(&audiosocket_message(0x03, &[key as u8]))
            .await;
    }

    async fn hang_up(&mut self) {
        let _ = self.write.write_all(&audiosocket_message(0x00, &[])).await;
    }

    fn observed(&self) -> Arc<Mutex<Observed>> {
        self.observed.clone()
    }
}

/// A UUID for test call `n`.
pub fn test_uuid(n: u8) -> [u8; 16] {
    let mut uuid = [0x5a; 16];
    uuid[15] = n;
    uuid
}

/// The string form of a UUID (as the appliance logs it).
pub fn uuid_text(uuid: &[u8; 16]) -> String {
    understudy::transport::audiosocket::uuid_string(uuid)
}

// ---------------------------------------------------------------- WebRTC

/// A WebRTC peer calling the appliance the way the softphone page does
/// (WHIP-style `POST /webrtc`, a data channel), written on the `webrtc`
/// crate's client side: PCMU, so that the caller's audio is the same G.711
/// as on the other lines. The bot's audio is heard as it arrives.
pub struct WebrtcLine {
    /// The call's id, from the answer's `Location`.
    pub call_id: String,
    location: String,
    http: SocketAddr,
    peer: Box<dyn webrtc::peer_connection::PeerConnection>,
    track: Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    channel: Arc<dyn webrtc::data_channel::DataChannel>,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    observed: Arc<Mutex<Observed>>,
}

struct WebrtcPeerEvents {
    observed: Arc<Mutex<Observed>>,
    connected: Arc<tokio::sync::Notify>,
    gathered: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl webrtc::peer_connection::PeerConnectionEventHandler for WebrtcPeerEvents {
    async fn on_ice_gathering_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceGatheringState,
    ) {
        if state == webrtc::peer_connection::RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(
        &self,
        state: webrtc::peer_connection::RTCPeerConnectionState,
    ) {
        use webrtc::peer_connection::RTCPeerConnectionState as S;
        match state {
            S::Connected => self.connected.notify_one(),
            S::Failed | S::Closed => {
                let mut o = self.observed.lock().unwrap();
                o.closed.get_or_insert((0, format!("{state}")));
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn webrtc::media_stream::track_remote::TrackRemote>) {
        use webrtc::media_stream::track_remote::TrackRemoteEvent;
        let observed = self.observed.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                    continue;
                };
                let samples = Law::Mu.decode(&packet.payload);
                observed
                    .lock()
                    .unwrap()
                    .queue_audio(Instant::now(), samples);
            }
        });
    }
}

impl WebrtcLine {
    /// Offer a call; the HTTP status and body when it is not answered.
    pub async fn connect(http: SocketAddr) -> Result<WebrtcLine, (u16, String)> {
        use webrtc::peer_connection::*;
        let pcmu = rtc::rtp_transceiver::rtp_sender::RTCRtpCodec {
            mime_type: "audio/PCMU".into(),
            clock_rate: 8000,
            channels: 1,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        };
        let mut engine = MediaEngine::default();
        engine
            .register_codec(
                rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters {
                    rtp_codec: pcmu.clone(),
                    payload_type: 0,
                },
                rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
            )
            .unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let observed = Arc::new(Mutex::new(Observed::default()));
        let connected = Arc::new(tokio::sync::Notify::new());
        let gathered = Arc::new(tokio::sync::Notify::new());
        let peer = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(WebrtcPeerEvents {
                observed: observed.clone(),
                connected: connected.clone(),
                gathered: gathered.clone(),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .unwrap();
        let ssrc = rand::random::<u32>();
        let track = Arc::new(
            webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP::new(
                webrtc::media_stream::MediaStreamTrack::new(
                    "caller".into(),
                    "mic".into(),
                    "mic".into(),
                    rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Audio,
                    vec![rtc::rtp_transceiver::rtp_sender::RTCRtpEncodingParameters {
                        rtp_coding_parameters:
                            rtc::rtp_transceiver::rtp_sender::RTCRtpCodingParameters {
                                ssrc: Some(ssrc),
                                ..Default::default()
                            },
                        codec: pcmu,
                        ..Default::default()
                    }],
                ),
            ),
        );
        peer.add_track(track.clone()).await.unwrap();
        let channel = peer.create_data_channel("understudy", None).await.unwrap();
        {
            let (channel, observed) = (channel.clone(), observed.clone());
            tokio::spawn(async move {
                use webrtc::data_channel::DataChannelEvent;
                while let Some(event) = channel.poll().await {
                    let DataChannelEvent::OnMessage(message) = event else {
                        continue;
                    };
                    let Ok(value) = serde_json::from_slice::<Value>(&message.data) else {
                        continue;
                    };
                    let mut o = observed.lock().unwrap();
                    if value["type"] == "ended" {
                        let result = value["result"].as_str().unwrap_or("").to_string();
                        o.closed.get_or_insert((0, result));
                    }
                    o.messages.push(value);
                }
            });
        }
        let offer = peer.create_offer(None).await.unwrap();
        peer.set_local_description(offer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(3), gathered.notified()).await;
        let offer = peer.local_description().await.unwrap().sdp;
        let response = reqwest::Client::new()
            .post(format!("http://{http}/webrtc"))
            .header("Content-Type", "application/sdp")
            .body(offer)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response.text().await.unwrap();
        if status != 201 {
            let _ = peer.close().await;
            return Err((status, body));
        }
        let answer = RTCSessionDescription::answer(body).unwrap();
        peer.set_remote_description(answer).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), connected.notified())
            .await
            .expect("the WebRTC call did not connect within 10 s");
        Ok(WebrtcLine {
            call_id: location.rsplit('/').next().unwrap_or("").to_string(),
            location,
            http,
            peer: Box::new(peer),
            track,
            channel,
            ssrc,
            sequence: rand::random(),
            timestamp: rand::random(),
            observed,
        })
    }
}

impl Line for WebrtcLine {
    async fn send_frame(&mut self, frame: &[i16]) -> bool {
        use webrtc::media_stream::track_local::TrackLocal;
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 0,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Law::Mu.encode(frame).into(),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(frame.len() as u32);
        self.track.write_rtp(packet).await.is_ok() && self.observed.lock().unwrap().closed.is_none()
    }

    async fn send_dtmf(&mut self, key: char) {
        let message = json!({"type": "dtmf", "digits": key.to_string()});
        let _ = self.channel.send_text(&message.to_string()).await;
    }

    async fn hang_up(&mut self) {
        let _ = reqwest::Client::new()
            .delete(format!("http://{}{}", self.http, self.location))
            .send()
            .await;
        let _ = self.peer.close().await;
    }

    fn observed(&self) -> Arc<Mutex<Observed>> {
        self.observed.clone()
    }
}

// --------------------------------------------------- Asterisk chan_websocket

/// Asterisk's WebSocket channel driver dialling the appliance
/// (`Dial(WebSocket/understudy/c(ulaw))`), as its documentation describes
/// it: subprotocol `media`; a `MEDIA_START` text event (plain-text control
/// format); the caller's audio as binary frames of `optimal_frame_size`
/// (160 bytes of mu-law, 20 ms); keys as `DTMF_END digit:<d>`. Asterisk
/// queues the bot's binary audio and plays it in real time; a `MARK_MEDIA
/// <id>` in the queue is answered `MEDIA_MARK_PROCESSED <id>` once the audio
/// before it has played; `FLUSH_MEDIA` empties the queue (its marks never
/// answer); `HANGUP` hangs the channel up.
pub struct AsteriskWsLine {
    out: mpsc::UnboundedSender<Message>,
    /// The channel's unique id (the call id at `/calls/{id}`).
    pub channel_id: String,
    observed: Arc<Mutex<Observed>>,
}

/// Asterisk's `MEDIA_START`, plain-text control format.
pub fn asterisk_media_start(channel_id: &str, format: &str, frame: usize) -> String {
    format!("MEDIA_START connection_id:understudy channel:WebSocket/understudy/0x{channel_id} channel_id:{channel_id} format:{format} optimal_frame_size:{frame} ptime:20")
}

/// A raw WebSocket to the appliance's Asterisk endpoint, with the `media`
/// subprotocol.
pub async fn raw_asterisk_websocket(
    http: SocketAddr,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{http}/asterisk-media{query}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "media".parse().unwrap());
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("cannot open the Asterisk media WebSocket");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("media"),
        "the appliance did not take the media subprotocol"
    );
    ws
}

impl AsteriskWsLine {
    /// Dial the appliance: connect, `MEDIA_START` in mu-law.
    pub async fn connect(http: SocketAddr, channel_id: &str) -> AsteriskWsLine {
        AsteriskWsLine::dial(http, channel_id, "").await
    }

    /// Dial with the dialplan's call id in the URI (`v(call=<id>)`).
    pub async fn connect_as(http: SocketAddr, channel_id: &str, call: &str) -> AsteriskWsLine {
        AsteriskWsLine::dial(http, channel_id, &format!("?call={call}")).await
    }

    async fn dial(http: SocketAddr, channel_id: &str, query: &str) -> AsteriskWsLine {
        let ws = raw_asterisk_websocket(http, query).await;
        let (sink, mut stream) = ws.split();
        let out = spawn_writer(sink);
        let observed = Arc::new(Mutex::new(Observed::default()));
        // Marks in Asterisk's queue: (due, id).
        let marks = echo_marks(out.clone(), observed.clone(), |id| {
            format!("MEDIA_MARK_PROCESSED {id}")
        });
        {
            let (observed, marks, out) = (observed.clone(), marks.clone(), out.clone());
            tokio::spawn(async move {
                while let Some(message) = stream.next().await {
                    let now = Instant::now();
                    let mut o = observed.lock().unwrap();
                    match message {
                        Ok(Message::Binary(bytes)) => {
                            let samples = Law::Mu.decode(&bytes);
                            o.queue_audio(now, samples);
                        }
                        Ok(Message::Text(text)) => {
                            let mut words = text.split_whitespace();
                            match words.next() {
                                Some("MARK_MEDIA") => {
                                    let id = words.next().unwrap_or("").to_string();
                                    let due = o.playing_until.unwrap_or(now).max(now);
                                    marks.lock().unwrap().push_back((due, id));
                                }
                                Some("FLUSH_MEDIA") => {
                                    o.clears += 1;
                                    o.playing_until = Some(now);
                                    marks.lock().unwrap().clear();
                                }
                                Some("HANGUP") => {
                                    o.closed.get_or_insert((0, "HANGUP".into()));
                                    let _ = out.send(Message::Close(None));
                                }
                                _ => {}
                            }
                            o.messages.push(Value::String(text.to_string()));
                        }
                        Ok(Message::Close(frame)) => {
                            o.closed.get_or_insert(match frame {
                                Some(f) => (u16::from(f.code), f.reason.to_string()),
                                None => (1005, String::new()),
                            });
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            o.closed.get_or_insert((1006, e.to_string()));
                            return;
                        }
                    }
                }
            });
        }
        let _ = out.send(Message::Text(
            asterisk_media_start(channel_id, "ulaw", 160).into(),
        ));
        AsteriskWsLine {
            out,
            channel_id: channel_id.to_string(),
            observed,
        }
    }
}

impl Line for AsteriskWsLine {
    async fn send_frame(&mut self, frame: &[i16]) -> bool {
        self.out
            .send(Message::Binary(Law::Mu.encode(frame).into()))
            .is_ok()
    }

    async fn send_dtmf(&mut self, key: char) {
        let event = format!("DTMF_END digit:{key} channel_id:{}", self.channel_id);
        let _ = self.out.send(Message::Text(event.into()));
    }

    async fn hang_up(&mut self) {
        let _ = self.out.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })));
    }

    fn observed(&self) -> Arc<Mutex<Observed>> {
        self.observed.clone()
    }
}
