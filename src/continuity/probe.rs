//! Active probes of the cloud bot: SIP OPTIONS to its URI (UDP with
//! retransmissions, or TCP) and an HTTP(S) health URL.
//!
//! OPTIONS counts as healthy when the cloud answers with any final status
//! below 500 other than 408/480: a 404 or 405 still proves a live SIP stack
//! (many bots do not implement OPTIONS), while 5xx/6xx, 408, 480 and silence
//! do not. Probes use their own ephemeral socket, so they measure the path
//! to the cloud, not our SIP server's queue.

use super::CloudSettings;
use crate::net::{resolve_uri, USER_AGENT};
use rsipstack::sip::Transport;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// UDP retransmission interval (RFC 3261 T1).
const T1: Duration = Duration::from_millis(500);

/// The configured probes of the cloud bot: SIP OPTIONS to its URI and/or the HTTP health URL.
pub struct Probes {
    options_uri: Option<String>,
    http: Option<(reqwest::Client, String)>,
    timeout: Duration,
}

impl Probes {
    /// The probes `settings` ask for (an HTTP client that cannot be made is logged and left out).
    pub fn new(settings: &CloudSettings) -> Probes {
        let options_uri = settings.uri.clone().filter(|_| settings.probe_options);
        let http = settings.health_url.clone().and_then(|url| {
            match reqwest::Client::builder()
                .timeout(settings.probe_timeout)
                .build()
            {
                Ok(client) => Some((client, url)),
                Err(e) => {
                    tracing::error!(error = %e, "cloud: cannot make the HTTP probe client");
                    None
                }
            }
        });
        Probes {
            options_uri,
            http,
            timeout: settings.probe_timeout,
        }
    }

    /// True when no probe is configured.
    pub fn is_empty(&self) -> bool {
        self.options_uri.is_none() && self.http.is_none()
    }

    /// Run every configured probe once, concurrently.
    pub async fn run_all(&self) -> Vec<(&'static str, Result<(), String>)> {
        let options = async {
            match &self.options_uri {
                Some(uri) => Some(("sip_options", options(uri, self.timeout).await)),
                None => None,
            }
        };
        let http = async {
            match &self.http {
                Some((client, url)) => Some(("http", http(client, url).await)),
                None => None,
            }
        };
        let (a, b) = tokio::join!(options, http);
        a.into_iter().chain(b).collect()
    }
}

async fn http(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// Whether an OPTIONS answer shows a healthy cloud bot.
pub fn options_status_healthy(code: u16) -> bool {
    (200..500).contains(&code) && code != 408 && code != 480
}

/// One OPTIONS transaction to `uri`.
pub async fn options(uri: &str, timeout: Duration) -> Result<(), String> {
    let parsed = rsipstack::sip::Uri::try_from(uri).map_err(|e| format!("bad URI {uri:?}: {e}"))?;
    let (to, transport) = resolve_uri(&parsed).await?;
    let call_id = format!("{:016x}@understudy-probe", rand::random::<u64>());
    let exchange = async {
        let code = match transport {
            Transport::Tcp => options_tcp(uri, to, &call_id).await?,
            _ => options_udp(uri, to, &call_id).await?,
        };
        if options_status_healthy(code) {
            Ok(())
        } else {
            Err(format!("OPTIONS answered {code}"))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer to OPTIONS within {} ms",
                timeout.as_millis()
            ))
        })
}

fn request(uri: &str, local: SocketAddr, transport: &str, call_id: &str) -> String {
    let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
    let tag = format!("{:08x}", rand::random::<u32>());
    format!(
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:understudy@{local}>;tag={tag}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         User-Agent: {USER_AGENT}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The final status of a response to our probe (`None`: not ours, or provisional).
fn final_status(response: &str, call_id: &str) -> Option<u16> {
    let mut lines = response.lines();
    let status_line = lines.next()?;
    let mut parts = status_line.split_whitespace();
    if parts.next()? != "SIP/2.0" {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    let ours = lines.take_while(|l| !l.is_empty()).any(|l| {
        let Some((name, value)) = l.split_once(':') else {
            return false;
        };
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name == "i") && value.trim() == call_id
    });
    (ours && code >= 200).then_some(code)
}

async fn options_udp(uri: &str, to: SocketAddr, call_id: &str) -> Result<u16, String> {
    let bind: SocketAddr = if to.is_ipv6() {
        "[::]:0".parse().unwrap()
    } else {
        "0.0.0.0:0".parse().unwrap()
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| e.to_string())?;
    socket.connect(to).await.map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let message = request(uri, local, "UDP", call_id);
    let mut buf = vec![0u8; 4096];
    let mut wait = T1;
    loop {
        socket
            .send(message.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Err(_) => break,
                // ICMP port unreachable: nothing listens there.
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => {
                    if let Some(code) = final_status(&String::from_utf8_lossy(&buf[..n]), call_id) {
                        return Ok(code);
                    }
                }
            }
        }
        wait = (wait * 2).min(Duration::from_secs(4));
    }
}

async fn options_tcp(uri: &str, to: SocketAddr, call_id: &str) -> Result<u16, String> {
    let mut stream = tokio::net::TcpStream::connect(to)
        .await
        .map_err(|e| e.to_string())?;
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    stream
        .write_all(request(uri, local, "TCP", call_id).as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the connection closed without an answer".into());
        }
        received.extend_from_slice(&buf[..n]);
        // Responses are header-only; look at each complete one.
        let text = String::from_utf8_lossy(&received).to_string();
        for message in text.split("\r\n\r\n").filter(|m| m.contains("\r\n")) {
            if let Some(code) = final_status(message, call_id) {
                return Ok(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_healthy() {
        for code in [200, 202, 404, 405, 486] {
            assert!(options_status_healthy(code), "{code}");
        }
        for code in [408, 480, 500, 503, 603] {
            assert!(!options_status_healthy(code), "{code}");
        }
    }

    #[test]
    fn only_our_final_answers_count() {
        let ok = "SIP/2.0 200 OK\r\nVia: x\r\nCall-ID: abc@u\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert_eq!(final_status(ok, "abc@u"), Some(200));
        assert_eq!(final_status(ok, "other@u"), None);
        assert_eq!(
            final_status("SIP/2.0 100 Trying\r\ni: abc@u\r\n\r\n", "abc@u"),
            None
        );
        assert_eq!(
            final_status(
                "SIP/2.0 503 Service Unavailable\r\ni: abc@u\r\n\r\n",
                "abc@u"
            ),
            Some(503)
        );
        assert_eq!(final_status("garbage", "abc@u"), None);
        assert_eq!(final_status("", "abc@u"), None);
    }

    #[tokio::test]
    async fn a_silent_peer_fails_within_the_timeout() {
        // A bound socket that never answers.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let uri = format!("sip:bot@{}", silent.local_addr().unwrap());
        let started = std::time::Instant::now();
        let e = options(&uri, Duration::from_millis(300)).await.unwrap_err();
        assert!(e.contains("no answer"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_live_peer_answers() {
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("sip:bot@{}", peer.local_addr().unwrap());
        let answer = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, from) = peer.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let call_id = text
                .lines()
                .find(|l| l.starts_with("Call-ID:"))
                .unwrap()
                .to_string();
            let reply = format!("SIP/2.0 503 Service Unavailable\r\n{call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
            peer.send_to(reply.as_bytes(), from).await.unwrap();
        });
        let e = options(&uri, Duration::from_secs(2)).await.unwrap_err();
        assert!(e.contains("503"), "{e}");
        answer.await.unwrap();
    }
}
