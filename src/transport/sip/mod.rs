//! Calls by SIP and RTP: what an SBC or a softphone talks to.
//!
//! ```text
//!  SBC ──SIP──> server (rsipstack: transports, transactions, dialogs)
//!                 │ OPTIONS ─> admission (ready? capacity?) ─> 200 / 503
//!                 │ INVITE  ─> admission, sdp (offer/answer) ─> call task
//!                 v
//!               call: answer, in-dialog requests, transfer (REFER, else bridge)
//!                 │ CallEvent / SessionAction
//!                 v
//!  SBC ──RTP──> media leg: jitter buffer + 20 ms clock, G.711 8 kHz <-> 16 kHz
//!               frames, RFC 4733 DTMF, comfort silence, inactivity timeout
//! ```
//!
//! Every parser of network input here (rsipstack's SIP parser, rtc-sdp, the
//! RTP/RTCP and RFC 4733 readers, the jitter buffer) has a fuzz target in
//! `fuzz/`. See docs/sip.md for the configuration and the measured figures.

pub mod auth;
mod call;
mod cloud_leg;
mod context;
pub mod edge;
mod outbound;
pub mod sdp;
pub mod server;
pub mod tls;
pub mod transfer;

pub use server::SipServer;

use crate::audio::g711::Law;
use crate::config::SipConfig;
use crate::session::admission::Admission;
use crate::transport::rtp::MediaConfig;
use anyhow::{bail, Context, Result};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use transfer::TransferSettings;

pub use crate::net::{resolve_uri, USER_AGENT};
/// The methods we answer.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY";

/// The `[sip]` configuration, checked and parsed.
#[derive(Debug, Clone)]
pub struct SipSettings {
    /// Where SIP is served, UDP and TCP on the same port (TLS: `tls`).
    pub listen: SocketAddr,
    /// Serve SIP over UDP.
    pub udp: bool,
    /// Serve SIP over TCP.
    pub tcp: bool,
    /// The address written in Contact and SDP (NAT); `None`: the local address facing the peer.
    pub advertised_address: Option<IpAddr>,
    /// `Retry-After` on a 503, in seconds.
    pub retry_after_s: u32,
    /// The RTP port range, lowest and highest (inclusive).
    pub rtp_ports: (u16, u16),
    /// The address RTP sockets bind to; `None`: the SIP listen address.
    pub rtp_bind: Option<IpAddr>,
    /// Settings for every RTP leg: jitter buffer, timeout, comfort silence.
    pub media: MediaConfig,
    /// Accepted codecs, preferred first.
    pub codecs: Vec<Law>,
    /// How a caller is transferred to a human.
    pub transfer: TransferSettings,
    /// Ring this long before answering (zero: answer at once).
    pub answer_delay: Duration,
    /// Who may send SIP, and how fast (allow-list, flood limits).
    pub edge: edge::EdgeSettings,
    /// SIP over TLS, when configured.
    pub tls: Option<tls::TlsSettings>,
    /// Digest authentication of new calls, when users are configured.
    pub auth: Option<std::sync::Arc<auth::DigestAuth>>,
}

impl SipSettings {
    /// `None` when SIP is switched off (`listen = "off"`).
    pub fn from_config(c: &SipConfig) -> Result<Option<SipSettings>> {
        if c.listen.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let listen: SocketAddr = c.listen.parse().with_context(|| {
            format!(
                "sip.listen {:?} is not an address like 0.0.0.0:5060 (or \"off\")",
                c.listen
            )
        })?;
        let mut udp = false;
        let mut tcp = false;
        for t in &c.transports {
            match t.to_ascii_lowercase().as_str() {
                "udp" => udp = true,
                "tcp" => tcp = true,
                other => {
                    bail!("sip.transports: {other:?} is not supported (use \"udp\" and/or \"tcp\")")
                }
            }
        }
        if !udp && !tcp {
            bail!("sip.transports is empty: name \"udp\" and/or \"tcp\" (or set sip.listen = \"off\")");
        }
        let ip = |field: &str, value: &Option<String>| -> Result<Option<IpAddr>> {
            value
                .as_deref()
                .map(|v| {
                    v.parse()
                        .with_context(|| format!("sip.{field} {v:?} is not an IP address"))
                })
                .transpose()
        };
        let mut codecs = Vec::new();
        for name in &c.codecs {
            let law = sdp::law_from_name(name).with_context(|| {
                format!("sip.codecs: {name:?} is not supported (use \"PCMU\" and/or \"PCMA\")")
            })?;
            if !codecs.contains(&law) {
                codecs.push(law);
            }
        }
        if codecs.is_empty() {
            bail!("sip.codecs is empty: name \"PCMU\" and/or \"PCMA\"");
        }
        if c.rtp_port_min == 0 || c.rtp_port_max < c.rtp_port_min.saturating_add(1) {
            bail!(
                "sip.rtp_port_min/max ({}-{}) must be a range of at least two ports above 0",
                c.rtp_port_min,
                c.rtp_port_max
            );
        }
        if !(c.flood_requests_per_s >= 0.0 && c.flood_requests_per_s.is_finite()) {
            bail!(
                "sip.flood_requests_per_s ({}) must be 0 (no limit) or a positive rate",
                c.flood_requests_per_s
            );
        }
        if c.flood_requests_per_s > 0.0 && c.flood_burst == 0 {
            bail!("sip.flood_burst must be at least 1 while sip.flood_requests_per_s is set");
        }
        let edge = edge::EdgeSettings {
            allow_from: edge::EdgeSettings::parse_allow_from(&c.allow_from)?,
            flood: (c.flood_requests_per_s > 0.0).then_some(edge::FloodLimit {
                per_s: c.flood_requests_per_s,
                burst: c.flood_burst as f64,
            }),
        };
        Ok(Some(SipSettings {
            listen,
            udp,
            tcp,
            advertised_address: ip("advertised_address", &c.advertised_address)?,
            retry_after_s: c.retry_after_s,
            rtp_ports: (c.rtp_port_min, c.rtp_port_max),
            rtp_bind: ip("rtp_bind", &c.rtp_bind)?,
            media: MediaConfig {
                jitter_target_ms: c.jitter_target_ms,
                jitter_max_ms: c.jitter_max_ms.max(c.jitter_target_ms + 20),
                rtp_timeout: Duration::from_secs(c.rtp_timeout_s.max(1)),
                rtp_timeout_floor: None,
                comfort_silence: c.comfort_silence,
            },
            codecs,
            transfer: TransferSettings {
                target: c.transfer_target.clone().filter(|t| !t.trim().is_empty()),
                domain: c.transfer_domain.clone().filter(|t| !t.trim().is_empty()),
                mode: c.transfer_mode,
                timeout: Duration::from_secs(c.transfer_timeout_s.max(1)),
            },
            answer_delay: Duration::from_millis(c.answer_delay_ms),
            edge,
            tls: tls::TlsSettings::from_config(c)?,
            auth: auth::DigestAuth::from_config(&c.auth_realm, &c.auth_users)?
                .map(std::sync::Arc::new),
        }))
    }
}

/// Start the SIP server (`Ok(None)` when switched off). Until `admission`
/// is ready, and while it is full, OPTIONS and INVITE get 503.
pub async fn start(
    config: &SipConfig,
    admission: std::sync::Arc<Admission>,
    continuity: Option<std::sync::Arc<crate::continuity::Continuity>>,
) -> Result<Option<SipServer>> {
    let Some(settings) = SipSettings::from_config(config)? else {
        tracing::info!("SIP is off (sip.listen = \"off\")");
        return Ok(None);
    };
    SipServer::start(settings, admission, continuity)
        .await
        .map(Some)
}

/// Our Contact URI as seen from a peer.
pub(crate) fn contact_uri(
    ip: IpAddr,
    port: u16,
    transport: rsipstack::sip::Transport,
) -> rsipstack::sip::Uri {
    let host = match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    };
    let params = match transport {
        rsipstack::sip::Transport::Udp => String::new(),
        other => format!(";transport={}", other.to_string().to_ascii_lowercase()),
    };
    let text = format!("sip:understudy@{host}:{port}{params}");
    // An IP, a port and a known transport always make a valid URI.
    rsipstack::sip::Uri::try_from(text.as_str()).expect("contact URI")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off_means_off() {
        let s = SipSettings::from_config(&SipConfig::default())
            .unwrap()
            .unwrap();
        assert!(s.udp && s.tcp);
        assert_eq!(s.codecs, vec![Law::Mu, Law::A]);
        let off = SipConfig {
            listen: "off".into(),
            ..Default::default()
        };
        assert!(SipSettings::from_config(&off).unwrap().is_none());
    }

    #[test]
    fn bad_settings_say_which_field() {
        for (config, field) in [
            (
                SipConfig {
                    listen: "5060".into(),
                    ..Default::default()
                },
                "sip.listen",
            ),
            (
                SipConfig {
                    transports: vec!["tls".into()],
                    ..Default::default()
                },
                "sip.transports",
            ),
            (
                SipConfig {
                    codecs: vec!["G729".into()],
                    ..Default::default()
                },
                "sip.codecs",
            ),
            (
                SipConfig {
                    rtp_port_min: 3000,
                    rtp_port_max: 3000,
                    ..Default::default()
                },
                "sip.rtp_port",
            ),
            (
                SipConfig {
                    advertised_address: Some("pbx".into()),
                    ..Default::default()
                },
                "sip.advertised_address",
            ),
        ] {
            let e = format!("{:#}", SipSettings::from_config(&config).unwrap_err());
            assert!(e.contains(field), "{e}");
        }
    }

    #[test]
    fn contact_uris() {
        let udp = contact_uri(
            "127.0.0.1".parse().unwrap(),
            5060,
            rsipstack::sip::Transport::Udp,
        );
        assert_eq!(udp.to_string(), "sip:understudy@127.0.0.1:5060");
        let tcp = contact_uri(
            "10.0.0.1".parse().unwrap(),
            5080,
            rsipstack::sip::Transport::Tcp,
        );
        assert!(
            tcp.to_string()
                .to_ascii_lowercase()
                .contains("transport=tcp"),
            "{tcp}"
        );
    }
}
