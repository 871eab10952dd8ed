//! The RTP port range.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::net::UdpSocket;

/// Hands out RTP ports (even numbers; RTCP would take the odd one above)
/// from the configured range, rotating so that a new call does not get the
/// port a call just released (late packets of the old call would reach it).
/// Hands out RTP ports (even numbers; RTCP would take the odd one above)
/// from the configured range, rotating so that a new call does not get the
/// port a call just released (late packets of the old call would reach it).
pub struct RtpPorts {
    bind: IpAddr,
    first: u16,
    last: u16,
    cursor: AtomicU32,
}

impl RtpPorts {
    /// Ports `first..=last` (from an even one) on `bind`.
    pub fn new(bind: IpAddr, first: u16, last: u16) -> Self {
        let first = first + first % 2;
        RtpPorts {
            bind,
            first,
            last,
            cursor: AtomicU32::new(0),
        }
    }

    fn count(&self) -> u32 {
        if self.last < self.first {
            return 0;
        }
        ((self.last - self.first) / 2 + 1) as u32
    }

    /// Bind the next free port of the range.
    pub async fn bind(&self) -> std::io::Result<UdpSocket> {
        let count = self.count();
        for _ in 0..count {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % count;
            let port = self.first + (n as u16) * 2;
            match UdpSocket::bind(SocketAddr::new(self.bind, port)).await {
                Ok(socket) => return Ok(socket),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "every RTP port in {}-{} on {} is in use (widen sip.rtp_port_min/max or lower sip.capacity)",
                self.first, self.last, self.bind
            ),
        ))
    }
}
