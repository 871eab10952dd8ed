//! Hand-written SIP: malformed or unusual requests sent as raw datagrams,
//! and the headers and status of what comes back.

use super::*;

/// Send raw datagrams and stream bytes at a SIP port (garbage, truncations).
pub fn send_raw(to: SocketAddr, messages: &[Vec<u8>]) -> Vec<String> {
    let udp = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut replies = Vec::new();
    let mut buf = [0u8; 4096];
    for m in messages {
        udp.send_to(m, to).unwrap();
        while let Ok((n, _)) = udp.recv_from(&mut buf) {
            replies.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if let Ok(mut tcp) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
            let _ = tcp.write_all(m);
            let _ = tcp.set_read_timeout(Some(Duration::from_millis(50)));
            if let Ok(n) = tcp.read(&mut buf) {
                if n > 0 {
                    replies.push(
                        String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
    }
    replies
}
