//! Addresses shared by the SIP transport and the cloud probes (which sit
//! below it: `crate::continuity` must not depend on a transport): where a
//! SIP URI points, and what the appliance calls itself.

pub mod tls;

use std::net::SocketAddr;

/// Parse a setting's list of addresses (`192.0.2.7`) and networks
/// (`10.1.0.0/16`); an error names `field` and the entry.
pub fn parse_networks(field: &str, entries: &[String]) -> anyhow::Result<Vec<ipnet::IpNet>> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "{field}: {entry:?} is neither an address (192.0.2.7) nor a network (10.1.0.0/16)"
                    )
                })
        })
        .collect()
}

/// What we say we are.
pub const USER_AGENT: &str = concat!("Understudy/", env!("CARGO_PKG_VERSION"));
/// Where to send a request for `uri`: its host (IP, or resolved) and port,
/// and the transport its `transport` parameter names (UDP by default).
pub async fn resolve_uri(
    uri: &rsipstack::sip::Uri,
) -> Result<(SocketAddr, rsipstack::sip::Transport), String> {
    use rsipstack::sip::{Host, Param, Transport};
    let transport = uri
        .params
        .iter()
        .find_map(|p| match p {
            Param::Transport(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(Transport::Udp);
    let port = uri.host_with_port.port.map(u16::from).unwrap_or(5060);
    let addr = match &uri.host_with_port.host {
        Host::IpAddr(ip) => SocketAddr::new(*ip, port),
        Host::Domain(domain) => tokio::net::lookup_host((domain.to_string(), port))
            .await
            .map_err(|e| format!("cannot resolve {domain}: {e}"))?
            .next()
            .ok_or_else(|| format!("{domain} has no address"))?,
    };
    Ok((addr, transport))
}
