//! Media: the RTP side of a call, apart from its signalling. A [`leg::MediaLeg`]
//! is one RTP stream (a UDP socket) turned into canonical frames and back:
//! RTP/RTCP packets ([`packet`]), the jitter buffer and its 20 ms clock
//! ([`jitter`]), G.711 (`crate::audio::g711`), RFC 4733 DTMF ([`dtmf`]) and
//! the peer's packet cadence ([`cadence`]). Signalling (SIP, SDP) settles a
//! [`MediaParams`] and hands it to the leg; the leg knows nothing of SIP.

pub mod cadence;
pub mod dtmf;
pub mod jitter;
pub mod leg;
pub mod packet;
pub mod ports;

pub use leg::{MediaConfig, MediaLeg};
pub use ports::RtpPorts;

use crate::audio::g711::Law;
use std::net::SocketAddr;

/// An SDP media direction (RFC 3264 section 6.1), as the remote side states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives (the default).
    SendRecv,
    /// The remote side only sends (it put us on hold); we only receive.
    SendOnly,
    /// The remote side only receives; we send, it does not.
    RecvOnly,
    /// Neither side sends.
    Inactive,
}

impl Direction {
    /// The SDP attribute naming this direction.
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer states for an offer in this direction.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// The side that stated this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// The side that stated this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What a negotiation settled for the audio stream, from the remote side's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaParams {
    /// Where the remote side wants RTP (`None`: the old hold form `c=0.0.0.0`).
    pub remote: Option<SocketAddr>,
    /// The G.711 law of the chosen codec.
    pub law: Law,
    /// The payload type for `law` (0 or 8, or a dynamic number the offer chose).
    pub payload_type: u8,
    /// RFC 4733 events, when both sides do them.
    pub dtmf_payload_type: Option<u8>,
    /// The remote side's direction attribute.
    pub remote_direction: Direction,
    /// The remote side's `a=ptime`, if any (we always send 20 ms).
    pub ptime_ms: Option<u32>,
}

impl MediaParams {
    /// We may send RTP: the remote side receives and gave an address.
    pub fn we_send(&self) -> bool {
        self.remote.is_some() && self.remote_direction.receives()
    }

    /// The remote side says it sends RTP (so silence from it means trouble).
    pub fn remote_sends(&self) -> bool {
        self.remote_direction.sends()
    }

    /// The direction our answer states.
    pub fn local_direction(&self) -> Direction {
        self.remote_direction.reversed()
    }
}
