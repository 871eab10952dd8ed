//! The protocol between Understudy's call plane and its engine workers.
//!
//! Each engine (VAD, STT, LLM, TTS, embeddings) runs in its own process so that
//! an engine crash never takes a call down and so that whisper.cpp and
//! llama.cpp (two incompatible ggml copies) never share a binary. The call
//! plane talks to a worker over the worker's stdin/stdout; the worker's stderr
//! carries its logs. `docs/ipc.md` is the human-readable version of this file.
//!
//! # Framing
//! Every message, both directions, is one frame:
//! ```text
//! u32 LE header_len | u32 LE payload_len | header (UTF-8 JSON) | payload (raw bytes)
//! ```
//! The header is an [`Envelope`]: `{"id": N, "more": bool, "kind": "...", ...}`.
//! Requests carry a caller-chosen `id`; every response repeats it. A request may
//! get several responses: all but the last have `"more": true` (streamed LLM
//! tokens, streamed TTS audio). Audio travels in the payload as signed 16-bit
//! little-endian mono PCM; embeddings as f32 little-endian.
//!
//! # Life cycle
//! 1. The worker loads its model, then sends [`Response::Ready`] with id 0 (or
//!    [`Response::Error`] with id 0 and exits non-zero when the model is bad).
//! 2. It serves requests until stdin closes or [`Request::Shutdown`] arrives.
//! 3. [`Request::Ping`] is answered with [`Response::Pong`] even while a long
//!    request runs, so the supervisor can tell "busy" from "hung".
//! 4. [`Request::Cancel`] asks the worker to stop request `target` early; the
//!    target then ends with [`ErrorCode::Cancelled`].

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};

pub mod worker;

/// Protocol version, announced in [`Response::Ready`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Upper bound on a header, to reject garbage quickly (headers are small JSON).
pub const MAX_HEADER_BYTES: u32 = 1 << 20;
/// Upper bound on a payload (10 minutes of 16 kHz audio is ~19 MB).
pub const MAX_PAYLOAD_BYTES: u32 = 64 << 20;

/// The JSON header of every frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    /// Caller-chosen request id; every response to the request repeats it (0 is the unsolicited
    /// `ready`).
    pub id: u64,
    /// True when more responses for the same id follow.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// The message itself, flattened into the header next to `id` and `more` (its `kind` tag says
    /// which).
    #[serde(flatten)]
    pub body: T,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One chat message for [`Request::Generate`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message from `role` (`system`, `user` or `assistant`) saying `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// Requests from the call plane to a worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Finish and exit.
    Shutdown,
    /// Stop request `target` early.
    Cancel {
        /// The `id` of the request to stop.
        target: u64,
    },

    /// VAD worker: speech probabilities for the payload (s16le, 16 kHz).
    /// Streaming works by carrying the recurrent state: pass the `state` of the
    /// previous answer for the same audio stream, or `None` at stream start.
    /// The payload should be a multiple of [`VAD_CHUNK_SAMPLES`]; a tail is
    /// zero-padded.
    Vad {
        /// Recurrent state returned for the previous chunk of this stream; `None` at stream start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<VadState>,
    },

    /// VAD worker: the probability that the caller has finished the turn at
    /// the end of the payload (s16le, 16 kHz: the turn so far, up to its
    /// last 8 s; longer audio is cut to its last 8 s). Smart Turn v3 (see
    /// docs/models.md); answered with [`Response::EndOfTurn`], or with
    /// [`ErrorCode::BadRequest`] when the worker runs without that model.
    EndOfTurn,

    /// STT worker: transcribe the payload (s16le, 16 kHz mono). The worker
    /// first runs its own Silero VAD and answers `no_speech` without running
    /// Whisper when there is none (Whisper invents text on silence).
    Transcribe {
        /// Domain words that bias recognition (Whisper's initial prompt).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt: Option<String>,
        /// Use the worker's fast model (`--fast-model`) when it has one:
        /// clean bot speech, where speed matters more than the last word.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fast: bool,
    },

    /// STT worker: how well each candidate text explains an utterance it
    /// transcribed and still holds (`utterance` from its
    /// [`Response::Transcript`]): Whisper's decoder reads each candidate
    /// against the audio already encoded, so no audio travels again.
    /// Answered with [`Response::Scores`], or with [`ErrorCode::BadRequest`]
    /// when the worker no longer holds that utterance.
    Score {
        /// The handle of a transcribed utterance.
        utterance: u64,
        /// Texts to score, e.g. the training phrases of the likeliest intents.
        candidates: Vec<String>,
    },

    /// LLM worker: complete a chat with the model's own chat template.
    Generate {
        /// The conversation so far, oldest first, rendered with the model's chat template.
        messages: Vec<ChatMessage>,
        /// Most tokens to generate before stopping.
        max_tokens: u32,
        /// Sampling temperature; 0 (the default) means greedy decoding.
        #[serde(default)]
        temperature: f32,
        /// GBNF grammar constraining the output (classification, slot filling).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grammar: Option<String>,
        /// Stop as soon as the output contains one of these.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        stop: Vec<String>,
        /// Stream [`Response::Token`]s before the final [`Response::Generated`].
        #[serde(default)]
        stream: bool,
    },

    /// TTS worker: speak `text`. With `stream`, one [`Response::Audio`] per
    /// sentence as soon as it is ready, then [`Response::Synthesized`].
    Synthesize {
        /// The text to speak.
        text: String,
        /// Send one [`Response::Audio`] per sentence as it is ready instead of all audio at the
        /// end.
        #[serde(default)]
        stream: bool,
    },

    /// Embedding worker: one L2-normalised vector per text.
    Embed {
        /// The texts to embed, one vector each, in order.
        texts: Vec<String>,
    },
}

/// Silero's recurrent state between [`Request::Vad`] calls of one stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VadState {
    /// LSTM state, 2 x 1 x 128 floats.
    pub lstm: Vec<f32>,
    /// The last 64 samples of the previous chunk (Silero's context window).
    pub context: Vec<f32>,
}

/// Samples per Silero VAD chunk at 16 kHz (32 ms).
pub const VAD_CHUNK_SAMPLES: usize = 512;

/// Where time went inside a worker for one request (milliseconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WorkerTimings {
    /// Wall time of the whole request inside the worker, in ms.
    #[serde(default)]
    pub total_ms: f64,
    /// Time spent in the worker's own VAD (STT only), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vad_ms: Option<f64>,
    /// Time to the first streamed output (LLM token, TTS sentence), in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_output_ms: Option<f64>,
}

/// Responses from a worker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// Sent once, unsolicited, with id 0, after the model loaded.
    Ready {
        /// The worker's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// Engine name, e.g. `whisper.cpp`, `llama.cpp` or `piper`.
        engine: String,
        /// The loaded model (file name or id), for logs.
        model: String,
        /// Time to load the model, in ms.
        load_ms: f64,
        /// Engine facts worth logging (threads, sample rate, GPU...).
        #[serde(default)]
        info: serde_json::Map<String, serde_json::Value>,
    },
    /// Answer to [`Request::Ping`], sent even while a long request runs.
    Pong,
    /// Speech probability per [`VAD_CHUNK_SAMPLES`] chunk, and the state to
    /// pass with the next chunk of the same stream.
    VadProbs {
        /// Speech probability (0..1) of each chunk, in order.
        probs: Vec<f32>,
        /// State to pass with the next [`Request::Vad`] of the same stream.
        state: VadState,
    },
    /// Answer to [`Request::EndOfTurn`].
    EndOfTurn {
        /// 0 to 1: above 0.5 the model hears a finished turn.
        probability: f32,
        /// Time spent inside the worker.
        timings: WorkerTimings,
    },
    /// Answer to [`Request::Transcribe`].
    Transcript {
        /// The recognised text (empty when `no_speech`).
        text: String,
        /// The worker's VAD found no speech; Whisper was not run.
        no_speech: bool,
        /// Speech found by the worker's VAD, in ms from the start of the audio.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speech_ms: Option<(f64, f64)>,
        /// The worker holds this utterance's encoded audio for a while under
        /// this handle, for [`Request::Score`]; `None` when it keeps none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        utterance: Option<u64>,
        /// Where the worker spent its time.
        timings: WorkerTimings,
    },
    /// Answer to [`Request::Score`]: mean log-probability per token (end of
    /// text included) of each candidate given the audio, and of the
    /// worker's own transcript as the reference. Closer to the transcript's
    /// score means a better explanation of what was said.
    Scores {
        /// The transcript's own score.
        transcript: f32,
        /// One score per candidate, in the request's order.
        candidates: Vec<f32>,
        /// Where the worker spent its time.
        timings: WorkerTimings,
    },
    /// A streamed piece of LLM output (`more: true`).
    Token {
        /// The new text since the previous token.
        text: String,
    },
    /// Final answer to [`Request::Generate`], after any streamed tokens.
    Generated {
        /// The whole generated text.
        text: String,
        /// Tokens in the rendered prompt.
        prompt_tokens: u32,
        /// Tokens generated.
        completion_tokens: u32,
        /// Tokens of the prompt served from the KV cache of an earlier request.
        #[serde(default)]
        cached_tokens: u32,
        /// Where the worker spent its time (`first_output_ms` is time to first token).
        timings: WorkerTimings,
    },
    /// Streamed audio (`more: true`); payload s16le mono at `sample_rate`.
    Audio {
        /// Sample rate of the payload, in Hz.
        sample_rate: u32,
        /// The sentence this audio speaks.
        text: String,
    },
    /// End of a synthesis; with `stream: false` the payload holds all audio.
    Synthesized {
        /// Sample rate of the audio, in Hz.
        sample_rate: u32,
        /// Total samples synthesised for the request (all streamed chunks together).
        samples: u64,
        /// Where the worker spent its time.
        timings: WorkerTimings,
    },
    /// Payload: `count` x `dim` f32le.
    Embeddings {
        /// Number of vectors (one per input text).
        count: u32,
        /// Dimensions of each vector.
        dim: u32,
    },
    /// The request failed (with id 0: the model did not load and the worker exits).
    Error {
        /// Which kind of failure, so the caller can tell retryable from fatal.
        code: ErrorCode,
        /// Human-readable detail for logs.
        message: String,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request does not fit this worker or is malformed.
    BadRequest,
    /// The model could not be loaded (sent with id 0 before exiting).
    ModelLoad,
    /// The engine failed on this input.
    Engine,
    /// Stopped by [`Request::Cancel`].
    Cancelled,
}

/// Errors of the framing layer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading or writing the pipe failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The declared header length (bytes) exceeds [`MAX_HEADER_BYTES`].
    #[error("frame header of {0} bytes exceeds the {MAX_HEADER_BYTES}-byte limit")]
    HeaderTooLarge(u32),
    /// The declared payload length (bytes) exceeds [`MAX_PAYLOAD_BYTES`].
    #[error("frame payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    PayloadTooLarge(u32),
    /// The header is not JSON or does not match the expected message type.
    #[error("frame header is not valid JSON for this message: {0}")]
    BadHeader(#[from] serde_json::Error),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<T> {
    /// The decoded JSON header.
    pub envelope: Envelope<T>,
    /// The raw payload bytes (PCM audio, f32 vectors), empty when none.
    pub payload: Vec<u8>,
}

/// Serialise one frame into bytes.
pub fn encode_frame<T: Serialize>(envelope: &Envelope<T>, payload: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(envelope).expect("protocol types always serialise");
    let mut out = Vec::with_capacity(8 + header.len() + payload.len());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
    out
}

fn check_lengths(prefix: [u8; 8]) -> Result<(usize, usize), FrameError> {
    let header_len = u32::from_le_bytes(prefix[0..4].try_into().unwrap());
    let payload_len = u32::from_le_bytes(prefix[4..8].try_into().unwrap());
    if header_len > MAX_HEADER_BYTES {
        return Err(FrameError::HeaderTooLarge(header_len));
    }
    if payload_len > MAX_PAYLOAD_BYTES {
        return Err(FrameError::PayloadTooLarge(payload_len));
    }
    Ok((header_len as usize, payload_len as usize))
}

/// Write one frame and flush.
pub fn write_frame<W: Write, T: Serialize>(
    w: &mut W,
    envelope: &Envelope<T>,
    payload: &[u8],
) -> io::Result<()> {
    w.write_all(&encode_frame(envelope, payload))?;
    w.flush()
}

/// Read one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<Frame<T>>, FrameError> {
    let mut prefix = [0u8; 8];
    match r.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (header_len, payload_len) = check_lengths(prefix)?;
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)?;
    let mut payload = vec![0u8; payload_len];
    r.read_exact(&mut payload)?;
    let envelope = serde_json::from_slice(&header)?;
    Ok(Some(Frame { envelope, payload }))
}

/// Async framing for the call plane.
#[cfg(feature = "async")]
pub mod asynch {
    use super::*;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// Write one frame and flush, so the peer sees it at once.
    pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
        w: &mut W,
        envelope: &Envelope<T>,
        payload: &[u8],
    ) -> io::Result<()> {
        w.write_all(&encode_frame(envelope, payload)).await?;
        w.flush().await
    }

    /// Read one frame; `Ok(None)` on a clean end of stream before a frame starts.
    pub async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
        r: &mut R,
    ) -> Result<Option<Frame<T>>, FrameError> {
        let mut prefix = [0u8; 8];
        match r.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let (header_len, payload_len) = check_lengths(prefix)?;
        let mut header = vec![0u8; header_len];
        r.read_exact(&mut header).await?;
        let mut payload = vec![0u8; payload_len];
        r.read_exact(&mut payload).await?;
        let envelope = serde_json::from_slice(&header)?;
        Ok(Some(Frame { envelope, payload }))
    }
}

/// s16le bytes from samples.
pub fn pcm16_to_bytes(samples: &[i16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Samples from s16le bytes (a trailing odd byte is ignored).
pub fn bytes_to_pcm16(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// s16le bytes to f32 samples in [-1, 1), as the engines want them.
pub fn bytes_to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect()
}

/// f32 samples to s16le bytes, clamping.
pub fn f32_to_pcm16_bytes(samples: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let v = (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// f32 vector to f32le bytes (embeddings).
pub fn f32s_to_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// f32le bytes to floats.
pub fn bytes_to_f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[cfg(test)]
mod tests;
