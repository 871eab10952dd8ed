//! A raw SIP dialog over UDP: INVITE, ACK, BYE written by hand.

use super::*;

/// A UDP socket talking raw SIP, for what SIPp cannot show: the timing of
/// retransmissions, answers before readiness.
pub struct RawSip {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub to: SocketAddr,
}

impl RawSip {
    pub fn new(to: SocketAddr) -> RawSip {
        let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let local = socket.local_addr().unwrap();
        RawSip { socket, local, to }
    }

    pub fn send(&self, message: &str) {
        self.socket.send_to(message.as_bytes(), self.to).unwrap();
    }

    /// Everything received for `window`, with arrival times.
    pub fn receive_for(&self, window: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match self.socket.recv_from(&mut buf) {
                Ok((n, _)) => out.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(_) => break,
            }
        }
        out
    }

    /// An out-of-dialog OPTIONS: the status code, if any answer came.
    pub fn options_status(&self) -> Option<u16> {
        let branch: u32 = rand::random();
        self.send(&format!(
            "OPTIONS sip:understudy@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{branch}\r\n\
             From: <sip:probe@{me}>;tag=p{branch}\r\nTo: <sip:understudy@{to}>\r\nCall-ID: probe-{branch}\r\n\
             CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = self.to,
            me = self.local
        ));
        let replies = self.receive_for(Duration::from_millis(300));
        replies.iter().find_map(|(_, r)| status_of(r))
    }
}

/// The status code of a SIP response.
pub fn status_of(message: &str) -> Option<u16> {
    let line = message.lines().next()?;
    line.strip_prefix("SIP/2.0 ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A header's value (first occurrence, case-insensitive name).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
