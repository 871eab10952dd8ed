//! Asterisk AudioSocket: the dialplan's `AudioSocket(${UUID},<box>:9092)`
//! (or the AudioSocket channel driver) opens a TCP connection per call and
//! streams the channel's audio (docs/ingress.md).
//!
//! Every message is a 3-byte header (kind, then the payload length, 16-bit
//! big-endian) and its payload:
//!
//! | kind | payload |
//! |---|---|
//! | `0x00` | hang up (closing the socket says the same) |
//! | `0x01` | the call's UUID, 16 bytes; first on every connection |
//! | `0x03` | one DTMF key, ASCII |
//! | `0x10` | audio, signed 16-bit little-endian mono at 8 kHz |
//! | `0x11`-`0x18` | the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz |
//! | `0xff` | an error, with an optional code |
//!
//! Asterisk plays what it gets as it gets it, so the application paces its
//! own output: the bot's audio leaves here one 20 ms frame every 20 ms, at
//! the rate (and in the kind) the caller's audio came in. A mark is played
//! once its last frame has left. AudioSocket has no transfer: the bot hangs
//! up once its last words have played and the dialplan reads where the
//! caller goes from `GET /calls/${UUID}/transfer`.
//!
//! Bad input (an unknown kind, audio before the UUID, an audio frame over
//! 100 ms, an odd-length one) ends that call only, with an error message
//! back. A refused call (not ready, full) gets an error message at once:
//! code `0x01` not ready, `0x02` full.

use super::stream::{CallOutcome, CallerAudio, Playout, StreamContext, LAST_WORDS_LIMIT};
use crate::metrics;
use crate::session::admission::{Ingress, Refusal};
use crate::session::{start_call, CallEvent, SessionAction};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Message kinds.
pub mod kind {
    /// Hang up.
    pub const HANGUP: u8 = 0x00;
    /// The call's UUID (16 bytes).
    pub const UUID: u8 = 0x01;
    /// One DTMF key (ASCII).
    pub const DTMF: u8 = 0x03;
    /// Audio at 8 kHz; `0x11`-`0x18` are the higher rates of [`super::AUDIO_RATES`].
    pub const AUDIO_8K: u8 = 0x10;
    /// An error, with an optional one-byte code.
    pub const ERROR: u8 = 0xff;
}

/// The audio kinds' rates, from `0x10` up.
pub const AUDIO_RATES: [u32; 9] = [
    8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000,
];

/// How long a new connection may take to name its call.
const UUID_WAIT: Duration = Duration::from_secs(5);
/// A peer that takes longer than this to accept 20 ms of audio is gone.
const WRITE_LIMIT: Duration = Duration::from_secs(2);

/// One AudioSocket message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The call is over.
    Hangup,
    /// The call's UUID.
    Uuid([u8; 16]),
    /// A DTMF key.
    Dtmf(char),
    /// Audio at `rate` Hz.
    Audio {
        /// Samples per second.
        rate: u32,
        /// The samples, mono.
        samples: Vec<i16>,
    },
    /// The peer reports an error (Asterisk: 0x01 hang-up, 0x02 frame
    /// forwarding, 0x04 memory).
    Error(Option<u8>),
}

impl Message {
    /// Read one message, checking it; `Ok(None)` at a clean end of stream.
    pub async fn read(reader: &mut (impl AsyncReadExt + Unpin)) -> Result<Option<Message>, String> {
        let mut header = [0u8; 3];
        match reader.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(format!("the connection broke: {e}")),
        }
        let length = u16::from_be_bytes([header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        reader
            .read_exact(&mut payload)
            .await
            .map_err(|e| format!("a message was cut short: {e}"))?;
        Message::parse(header[0], &payload).map(Some)
    }

    /// Check one message's payload.
    pub fn parse(kind: u8, payload: &[u8]) -> Result<Message, String> {
        match kind {
            kind::HANGUP => Ok(Message::Hangup),
            kind::UUID => <[u8; 16]>::try_from(payload)
                .map(Message::Uuid)
                .map_err(|_| format!("a UUID message of {} bytes (a UUID is 16)", payload.len())),
            kind::DTMF => match payload {
                [key] if key.is_ascii_digit() || b"*#ABCD".contains(key) => {
                    Ok(Message::Dtmf(*key as char))
                }
                _ => Err(format!("a DTMF message {payload:?} is not one key")),
            },
            0x10..=0x18 => {
                let rate = AUDIO_RATES[(kind - kind::AUDIO_8K) as usize];
                // 100 ms: five times what Asterisk sends at once.
                let most = rate as usize / 10 * 2;
                if payload.len() > most {
                    return Err(format!(
                        "an audio message of {} bytes is over 100 ms at {rate} Hz ({most} bytes)",
                        payload.len()
                    ));
                }
                if payload.len() % 2 == 1 {
                    return Err("an audio message has an odd number of bytes".into());
                }
                let samples = payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                Ok(Message::Audio { rate, samples })
            }
            kind::ERROR => Ok(Message::Error(payload.first().copied())),
            other => Err(format!("unknown message kind 0x{other:02x}")),
        }
    }

    /// The message on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, Vec<u8>) = match self {
            Message::Hangup => (kind::HANGUP, vec![]),
            Message::Uuid(uuid) => (kind::UUID, uuid.to_vec()),
            Message::Dtmf(key) => (kind::DTMF, vec![*key as u8]),
            Message::Audio { rate, samples } => (
                audio_kind(*rate),
                samples.iter().flat_map(|s| s.to_le_bytes()).collect(),
            ),
            Message::Error(code) => (kind::ERROR, code.iter().copied().collect()),
        };
        let mut out = Vec::with_capacity(3 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// The audio kind for `rate` (8 kHz for a rate AudioSocket has no kind for).
pub fn audio_kind(rate: u32) -> u8 {
    AUDIO_RATES
        .iter()
        .position(|r| *r == rate)
        .map_or(kind::AUDIO_8K, |i| kind::AUDIO_8K + i as u8)
}

/// A UUID in its string form.
pub fn uuid_string(uuid: &[u8; 16]) -> String {
    let hex = hex::encode(uuid);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The AudioSocket listener.
pub struct AudioSocketServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl AudioSocketServer {
    /// Stop accepting calls (calls in progress go on until they end).
    pub fn shutdown(self) {
        self.task.abort();
    }
}

/// Listen for AudioSocket calls on `listen` (`off`: not at all).
pub async fn start(listen: &str, ctx: Arc<StreamContext>) -> Result<Option<AudioSocketServer>> {
    if listen.trim().eq_ignore_ascii_case("off") {
        tracing::info!("AudioSocket is off (calls.audiosocket_listen = \"off\")");
        return Ok(None);
    }
    let listener = TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen for AudioSocket on {listen} (in use? set --audiosocket-listen or calls.audiosocket_listen, or \"off\")")
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "AudioSocket: listening");
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, peer, ctx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AudioSocket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(Some(AudioSocketServer { addr, task }))
}

/// The reader side: messages (or the reason the stream is unusable) in order.
fn spawn_reader(read: OwnedReadHalf) -> mpsc::Receiver<Result<Message, String>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut reader = BufReader::new(read);
        loop {
            match Message::read(&mut reader).await {
                Ok(Some(message)) => {
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(why) => {
                    let _ = tx.send(Err(why)).await;
                    return;
                }
            }
        }
    });
    rx
}

async fn write(writer: &mut OwnedWriteHalf, message: &Message) -> Result<(), String> {
    match tokio::time::timeout(WRITE_LIMIT, writer.write_all(&message.encode())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the connection broke: {e}")),
        Err(_) => Err("the peer stopped taking audio".into()),
    }
}

fn refusal_code(refusal: Refusal) -> u8 {
    match refusal {
        Refusal::NotReady => 0x01,
        Refusal::Full | Refusal::Draining => 0x02,
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, ctx: Arc<StreamContext>) {
    let (read, mut writer) = stream.into_split();
    let admitted = match ctx.admission.admit(Ingress::Audiosocket) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(%peer, reason = refusal.label(), "AudioSocket call refused: error message");
            let _ = write(&mut writer, &Message::Error(Some(refusal_code(refusal)))).await;
            let _ = writer.shutdown().await;
            return;
        }
    };
    metrics::counter_inc(
        "understudy_stream_calls_total",
        &[("ingress", "audiosocket")],
    );
    let mut inbound = spawn_reader(read);
    let uuid = match tokio::time::timeout(UUID_WAIT, inbound.recv()).await {
        Ok(Some(Ok(Message::Uuid(uuid)))) => uuid_string(&uuid),
        Ok(Some(Ok(other))) => {
            return refuse_bad_input(
                &mut writer,
                peer,
                format!("{other:?} before the UUID: send the UUID first"),
            )
            .await
        }
        Ok(Some(Err(why))) => return refuse_bad_input(&mut writer, peer, why).await,
        Ok(None) => return,
        Err(_) => {
            return refuse_bad_input(&mut writer, peer, "no UUID within 5 s".to_string()).await
        }
    };
    tracing::info!(call = %uuid, %peer, "AudioSocket call");
    ctx.outcomes.record(
        &uuid,
        CallOutcome::plain(Ingress::Audiosocket, "in_progress"),
    );
    let mut call = Call {
        uuid: uuid.clone(),
        caller: CallerAudio::new(AUDIO_RATES[0]),
        playout: Playout::new(AUDIO_RATES[0]),
        session: start_call(admitted.setup.clone(), uuid.clone()),
        ending: None,
    };
    let outcome = call.serve(&mut inbound, &mut writer).await;
    if outcome.result == "error" {
        tracing::warn!(call = %uuid, reason = outcome.reason.as_deref().unwrap_or(""), "AudioSocket call ended on bad input");
        metrics::counter_inc(
            "understudy_stream_errors_total",
            &[("ingress", "audiosocket")],
        );
        let _ = write(&mut writer, &Message::Error(None)).await;
    } else {
        let _ = write(&mut writer, &Message::Hangup).await;
    }
    let _ = writer.shutdown().await;
    let _ = call.session.events.send(CallEvent::Hangup).await;
    drop(call.session.actions);
    let _ = call.session.task.await;
    ctx.outcomes.record(&uuid, outcome);
    drop(admitted);
    tracing::info!(call = %uuid, "AudioSocket call ended");
}

async fn refuse_bad_input(writer: &mut OwnedWriteHalf, peer: SocketAddr, why: String) {
    tracing::warn!(%peer, reason = %why, "AudioSocket connection closed on bad input");
    metrics::counter_inc(
        "understudy_stream_errors_total",
        &[("ingress", "audiosocket")],
    );
    let _ = write(writer, &Message::Error(None)).await;
    let _ = writer.shutdown().await;
}

struct Call {
    uuid: String,
    caller: CallerAudio,
    playout: Playout,
    session: crate::session::CallHandle,
    /// Set once the bot has ended the call: it closes when its last words
    /// have left, or at the deadline.
    ending: Option<(Instant, CallOutcome)>,
}

impl Call {
    async fn serve(
        &mut self,
        inbound: &mut mpsc::Receiver<Result<Message, String>>,
        writer: &mut OwnedWriteHalf,
    ) -> CallOutcome {
        let error = |why: String| CallOutcome::because(Ingress::Audiosocket, "error", why);
        let hung_up = |why: &str| CallOutcome::because(Ingress::Audiosocket, "caller_hung_up", why);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut session_over = false;
        loop {
            let deadline = self.ending.as_ref().map(|(at, _)| *at);
            tokio::select! {
                message = inbound.recv() => match message {
                    Some(Ok(message)) => match message {
                        Message::Audio { rate, samples } => {
                            if rate != self.caller.rate() {
                                tracing::debug!(call = %self.uuid, rate, "AudioSocket audio rate");
                                self.caller = CallerAudio::new(rate);
                                self.playout.set_rate(rate);
                            }
                            for frame in self.caller.push(&samples) {
                                let _ = self.session.events.send(CallEvent::Audio(Box::new(frame))).await;
                            }
                        }
                        Message::Dtmf(key) => {
                            metrics::counter_inc("understudy_stream_dtmf_total", &[("ingress", "audiosocket")]);
                            let _ = self.session.events.send(CallEvent::Dtmf(key)).await;
                        }
                        Message::Hangup => return hung_up("the caller hung up"),
                        Message::Error(code) => return hung_up(&format!("Asterisk reported error {code:?}")),
                        Message::Uuid(_) => return error("a second UUID on one connection".into()),
                    },
                    Some(Err(why)) => return error(why),
                    None => return hung_up("the connection closed"),
                },
                action = self.session.actions.recv(), if !session_over => match action {
                    Some(action) => {
                        // Audio for a quiet line leaves now, not at the next
                        // tick: the pace starts with its first frame.
                        let was_quiet = self.playout.is_empty();
                        self.on_action(action);
                        if was_quiet && !self.playout.is_empty() {
                            tick.reset();
                            if let Err(why) = self.send_frame(writer).await {
                                return hung_up(&why);
                            }
                        }
                    }
                    // The session is over; its last words may still be queued.
                    None => {
                        session_over = true;
                        if self.ending.is_none() {
                            self.ending = Some((
                                Instant::now() + LAST_WORDS_LIMIT,
                                CallOutcome::plain(Ingress::Audiosocket, "completed"),
                            ));
                        }
                    }
                },
                _ = tick.tick() => {
                    if let Err(why) = self.send_frame(writer).await {
                        return hung_up(&why);
                    }
                    if self.playout.is_empty() {
                        if let Some((_, outcome)) = self.ending.take() {
                            return outcome;
                        }
                    }
                },
                _ = crate::session::sleep_until(deadline) => {
                    return self.ending.take().expect("a deadline means an ending").1;
                }
            }
        }
    }

    /// Send the next 20 ms of the bot's audio, if any, and acknowledge the
    /// marks it completes.
    async fn send_frame(&mut self, writer: &mut OwnedWriteHalf) -> Result<(), String> {
        let Some(samples) = self.playout.take_frame() else {
            return Ok(());
        };
        let rate = self.caller.rate();
        write(writer, &Message::Audio { rate, samples }).await?;
        for mark in self.playout.passed_marks() {
            let _ = self
                .session
                .events
                .send(CallEvent::PlayoutDone { mark })
                .await;
        }
        Ok(())
    }

    fn on_action(&mut self, action: SessionAction) {
        match action {
            SessionAction::Play { samples, mark } => self.playout.queue(&samples, mark),
            SessionAction::ClearPlayout => self.playout.clear(),
            SessionAction::Transfer { target, reason } => {
                tracing::info!(call = %self.uuid, %target, %reason, "transfer: hanging up once the last words have played; the dialplan reads the target from /calls");
                let outcome = CallOutcome::transfer(Ingress::Audiosocket, target, reason);
                self.ending = Some((Instant::now() + LAST_WORDS_LIMIT, outcome));
            }
            SessionAction::Hangup => {
                self.ending = Some((
                    Instant::now() + LAST_WORDS_LIMIT,
                    CallOutcome::plain(Ingress::Audiosocket, "completed"),
                ))
            }
            SessionAction::Report(_) | SessionAction::State(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        for message in [
            Message::Hangup,
            Message::Uuid([7; 16]),
            Message::Dtmf('#'),
            Message::Audio {
                rate: 16000,
                samples: vec![1, -2, 3],
            },
            Message::Error(Some(2)),
        ] {
            let wire = message.encode();
            assert_eq!(Message::parse(wire[0], &wire[3..]), Ok(message));
        }
        assert_eq!(Message::Hangup.encode(), vec![0, 0, 0]);
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        assert!(Message::parse(0x42, &[]).unwrap_err().contains("0x42"));
        assert!(Message::parse(kind::UUID, &[1, 2])
            .unwrap_err()
            .contains("16"));
        assert!(Message::parse(kind::DTMF, b"12").is_err());
        assert!(Message::parse(kind::AUDIO_8K, &[0; 3]).is_err());
        assert!(Message::parse(kind::AUDIO_8K, &[0; 1602])
            .unwrap_err()
            .contains("100 ms"));
    }

    #[test]
    fn uuids_print_in_their_string_form() {
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
            0xde, 0xf0,
        ];
        assert_eq!(uuid_string(&uuid), "12345678-9abc-def0-1234-56789abcdef0");
    }
}
