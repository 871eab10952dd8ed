//! Transports: the ways a call reaches the appliance, at the edge of the call
//! plane. Each one turns its own protocol into the session's boundary
//! (`crate::session::boundary`: canonical frames, DTMF and hang-up in; play,
//! clear, transfer and hang-up out), so the session, the dialog, barge-in,
//! the safety net and the metrics work the same whichever way a call came.
//!
//! - [`sip`]: SIP signalling (an SBC, a softphone, the in-path relay to the
//!   cloud bot, transfers), with its media on [`rtp`] legs;
//! - [`rtp`]: RTP media, apart from signalling: packets, jitter buffer, G.711,
//!   RFC 4733 DTMF;
//! - [`websocket`]: Twilio-shaped WebSocket media streams (CPaaS platforms);
//! - [`audiosocket`]: Asterisk's AudioSocket over TCP;
//! - [`stream`]: what those two share (framing, paced playout, call outcomes);
//! - [`sound_card`]: this machine's microphone and speaker (`understudy talk`);
//! - [`file`]: a call from recorded turns (WAV files, the benchmark's callers).
//!
//! A new ingress is a module here that admits each live call
//! (`crate::session::admission`: readiness and capacity are shared by every
//! transport), starts its session (`crate::session::start_call`) and pumps
//! the boundary's messages (`transport::file` is the shortest example,
//! `transport::sip::call` the fullest).

pub mod audiosocket;
pub mod file;
pub mod rtp;
pub mod sip;
pub mod sound_card;
pub mod stream;
pub mod webrtc;
pub mod websocket;
