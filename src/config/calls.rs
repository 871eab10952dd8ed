//! `[calls]`: what every ingress shares (capacity), and the ingresses that
//! are not SIP: WebSocket media streams, Asterisk's AudioSocket and WebRTC
//! (docs/ingress.md).

use serde::{Deserialize, Serialize};

/// Calls, whichever way they arrive (`[calls]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Concurrent calls, every ingress together, before new ones are refused
    /// (measured default, docs/sip.md "Capacity").
    pub capacity: usize,
    /// Twilio-shaped WebSocket media streams at `/media-stream` on the HTTP
    /// listener (`[http] listen`).
    pub websocket: bool,
    /// Asterisk AudioSocket over TCP (`off` disables it).
    pub audiosocket_listen: String,
    /// Largest WebSocket message accepted, in bytes (a 20 ms media message is
    /// about 300).
    pub websocket_max_message: usize,
    /// WebRTC calls (`POST /webrtc`) and the softphone page (`/phone`) on the
    /// HTTP listener.
    pub webrtc: bool,
    /// Where WebRTC media binds, one UDP port per call on each: `0.0.0.0`
    /// stands for every LAN interface (its addresses become the ICE host
    /// candidates), `127.0.0.1` for a browser on this box.
    pub webrtc_addresses: Vec<std::net::IpAddr>,
}

/// Calls this 2-core box holds with voice-to-voice p95 under 1.5 s at the RTP
/// leg (SIPp load benchmark, docs/sip.md).
pub const DEFAULT_CAPACITY: usize = 4;

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            capacity: DEFAULT_CAPACITY,
            websocket: true,
            audiosocket_listen: "127.0.0.1:9092".into(),
            websocket_max_message: 64 * 1024,
            webrtc: true,
            webrtc_addresses: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv4Addr::UNSPECIFIED.into(),
            ],
        }
    }
}

impl super::Config {
    /// The capacity every ingress shares: `[calls] capacity`, or the older
    /// `[sip] capacity` when a config still sets it.
    pub fn call_capacity(&self) -> anyhow::Result<usize> {
        let capacity = self.sip.capacity.unwrap_or(self.calls.capacity);
        if capacity == 0 {
            anyhow::bail!("calls.capacity is 0: no call could ever be answered (use at least 1)");
        }
        Ok(capacity)
    }
}
