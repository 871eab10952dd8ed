//! What every SIP call shares, apart from the server that made it (calls
//! and the legs they place use it; the server only creates it).

use super::SipSettings;
use crate::continuity::Continuity;
use crate::session::admission::Admission;
use crate::transport::rtp::{MediaConfig, RtpPorts};
use lru::LruCache;
use rsipstack::dialog::dialog_layer::DialogLayer;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};

/// BYE `Reason`s kept for calls that have not read them yet.
pub(super) const MAX_BYE_REASONS: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(1_000).unwrap();

/// What every SIP call shares: settings, the dialog layer, admission, RTP
/// ports and the cloud bot's state.
pub(super) struct SipContext {
    pub settings: SipSettings,
    pub dialogs: Arc<DialogLayer>,
    pub admission: std::sync::Arc<Admission>,
    pub ports: RtpPorts,
    pub media: MediaConfig,
    /// Where SIP is served over UDP and TCP.
    pub listen: SocketAddr,
    /// The port of SIP over TLS, when served.
    pub tls_port: Option<u16>,
    /// The cloud bot's health and routing (in-path mode bridges calls to it).
    pub continuity: Option<Arc<Continuity>>,
    /// `Reason` headers of BYEs received, by Call-ID, until the call reads
    /// them (rsipstack reports a BYE without its headers; in-path mode tells
    /// a cloud bot that hung up from one that failed by this). Bounded
    /// against BYEs for calls that never read them: the oldest go first.
    pub bye_reasons: Mutex<LruCache<String, String>>,
}

impl SipContext {
    /// Our port for a peer on `transport` (Contact): TLS has its own.
    pub fn port_for(&self, transport: rsipstack::sip::Transport) -> u16 {
        match (transport, self.tls_port) {
            (rsipstack::sip::Transport::Tls, Some(port)) => port,
            _ => self.listen.port(),
        }
    }

    /// The local address a peer at `peer` reaches us on (for Contact and SDP).
    pub fn local_ip_for(&self, peer: IpAddr) -> IpAddr {
        if let Some(ip) = self.settings.advertised_address {
            return ip;
        }
        if !self.listen.ip().is_unspecified() {
            return self.listen.ip();
        }
        // The kernel's route to the peer names the interface (no packet is sent).
        let probe = || -> std::io::Result<IpAddr> {
            let bind: SocketAddr = if peer.is_ipv6() {
                "[::]:0".parse().unwrap()
            } else {
                "0.0.0.0:0".parse().unwrap()
            };
            let socket = StdUdpSocket::bind(bind)?;
            socket.connect(SocketAddr::new(peer, 9))?;
            Ok(socket.local_addr()?.ip())
        };
        probe().unwrap_or(self.listen.ip())
    }
}
