//! The SIP edge against the real server over loopback: an allow-list that
//! refuses other sources at the socket (UDP and TCP), and flood limits that
//! drop a source's burst of new requests while a call in progress from
//! another source goes on untouched. Loopback has every 127.0.0.0/8 address,
//! so the "other" sources are sockets bound to 127.0.0.2 and 127.0.0.3.

mod sip_support;

use sip_support::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A raw SIP sender bound to one loopback address.
struct Source {
    socket: UdpSocket,
    local: SocketAddr,
    to: SocketAddr,
}

impl Source {
    fn bind(ip: &str, to: SocketAddr) -> Source {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        let local = socket.local_addr().unwrap();
        Source { socket, local, to }
    }

    /// A new request (`method`, no To tag) with its own Call-ID.
    fn request(&self, method: &str, n: u64) -> (String, String) {
        let call_id = format!("edge-{}-{method}-{n}", self.local.port());
        let text = format!(
            "{method} sip:understudy@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{n}-{method}\r\n\
             From: <sip:edge@{me}>;tag=e{n}\r\nTo: <sip:understudy@{to}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 {method}\r\nContact: <sip:edge@{me}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            to = self.to,
            me = self.local
        );
        (call_id, text)
    }

    /// One OPTIONS: its status, or `None` when nothing came back in `wait`.
    fn options(&self, n: u64, wait: Duration) -> Option<u16> {
        let (call_id, text) = self.request("OPTIONS", n);
        self.socket.send_to(text.as_bytes(), self.to).unwrap();
        let mut status = None;
        self.receive(wait, |reply| {
            if reply.contains(&call_id) {
                status = reply.split_whitespace().nth(1).and_then(|c| c.parse().ok());
            }
            status.is_some()
        });
        status
    }

    /// The requests (by Call-ID) answered within `wait`, whatever was sent
    /// so far (a retransmitted answer counts once).
    fn answered(&self, wait: Duration) -> std::collections::HashSet<String> {
        let mut calls = std::collections::HashSet::new();
        self.receive(wait, |reply| {
            if let Some(id) = reply.lines().find_map(|l| l.strip_prefix("Call-ID:")) {
                calls.insert(id.trim().to_string());
            }
            false
        });
        calls
    }

    /// Hand each datagram that arrives within `wait` to `each`, until it
    /// says it has what it wanted.
    fn receive(&self, wait: Duration, mut each: impl FnMut(&str) -> bool) {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 8192];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                break;
            };
            if each(&String::from_utf8_lossy(&buf[..len])) {
                break;
            }
        }
    }
}

/// OPTIONS over TCP from `ip`: the first line of the answer, or why none.
fn options_over_tcp(ip: &str, to: SocketAddr) -> Result<String, String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{ip}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket
        .connect_timeout(&to.into(), Duration::from_secs(2))
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream: TcpStream = socket.into();
    let local = stream.local_addr().unwrap();
    let request = format!(
        "OPTIONS sip:understudy@{to} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-tcp\r\n\
         From: <sip:edge@{local}>;tag=t1\r\nTo: <sip:understudy@{to}>\r\nCall-ID: edge-tcp-{local}\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Refused at accept: the write or the read finds the connection closed.
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => Err("closed without an answer".into()),
        Ok(n) => Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()),
        Err(e) => Err(format!("read: {e}")),
    }
}

fn dropped(serve: &Serve, reason: &str) -> f64 {
    serve
        .metrics()
        .lines()
        .filter(|l| {
            l.starts_with("understudy_sip_dropped_total")
                && l.contains(&format!("reason=\"{reason}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn only_listed_sources_are_served() {
    require_peers();
    let serve = Serve::start("allow_from = [\"127.0.0.1\", \"127.0.0.2/32\"]\n");
    let listed = Source::bind("127.0.0.2", serve.sip);
    let other = Source::bind("127.0.0.3", serve.sip);
    assert_eq!(listed.options(1, Duration::from_secs(2)), Some(200));
    assert_eq!(
        other.options(1, Duration::from_millis(1500)),
        None,
        "a source not in sip.allow_from was answered"
    );
    assert!(
        options_over_tcp("127.0.0.2", serve.sip).is_ok_and(|line| line.starts_with("SIP/2.0 200")),
        "a listed source over TCP: {:?}",
        options_over_tcp("127.0.0.2", serve.sip)
    );
    let refused = options_over_tcp("127.0.0.3", serve.sip);
    assert!(refused.is_err(), "TCP from an unlisted source: {refused:?}");
    assert!(dropped(&serve, "not_allowed") >= 2.0, "{}", serve.metrics());
    assert!(
        serve.log_text().contains("not in sip.allow_from"),
        "the refusal is not logged"
    );

    // A whole call from a listed source (SIPp and the RTP peer on 127.0.0.1).
    let dir = tempfile::tempdir().unwrap();
    let speech = say("What time do you open on Saturday?", dir.path());
    let (v2v, turns) = ask_over_sip(&serve, dir.path(), &speech, "a call from a listed source");
    assert!(
        v2v.is_some() && !turns.is_empty(),
        "the listed caller got no answer"
    );
}

#[test]
fn a_flood_is_dropped_and_the_call_in_progress_goes_on() {
    require_peers();
    let serve = Serve::start("flood_requests_per_s = 5\nflood_burst = 10\ncapacity = 2\n");
    let flood_source = Source::bind("127.0.0.3", serve.sip);
    let quiet = Source::bind("127.0.0.2", serve.sip);
    let dir = tempfile::tempdir().unwrap();
    let speech = say("Where is my order? I ordered it last week.", dir.path());

    std::thread::scope(|scope| {
        let flood = scope.spawn(|| {
            // Let the call start, then flood while it is in progress: 300
            // each of OPTIONS, REGISTER and INVITE in about a second.
            std::thread::sleep(Duration::from_secs(3));
            let started = Instant::now();
            let mut n = 0;
            for round in 0..300u64 {
                for method in ["OPTIONS", "REGISTER", "INVITE"] {
                    let (_, text) = flood_source.request(method, round);
                    flood_source
                        .socket
                        .send_to(text.as_bytes(), flood_source.to)
                        .unwrap();
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            let lasted = started.elapsed().as_secs_f64();
            (
                n,
                lasted,
                flood_source.answered(Duration::from_secs(2)).len(),
            )
        });
        let (v2v, turns) = ask_over_sip(&serve, dir.path(), &speech, "the call during the flood");
        let (sent, lasted, answered) = flood.join().unwrap();
        eprintln!(
            "flood: {sent} requests in {lasted:.1} s, {answered} answered; the call: v2v {v2v:?}"
        );
        assert!(
            v2v.is_some() && !turns.is_empty(),
            "the call in progress was disturbed by the flood\n{}",
            serve.log_tail(30)
        );
        assert_eq!(turns[0]["intent"], "order_status", "{:?}", turns[0]);
        // Per method: the burst of 10 and 5 a second after it.
        let allowed = 3.0 * (10.0 + 5.0 * (lasted + 1.0));
        assert!(
            (answered as f64) <= allowed,
            "{answered} of {sent} flood requests were answered (the limit allows {allowed:.0})"
        );
        assert!(
            answered >= 3 * 10 - 5,
            "not even the burst was answered: {answered}"
        );
    });
    assert!(dropped(&serve, "flood") >= 700.0, "{}", serve.metrics());
    // Another source is not held back by the flooder's limit.
    assert_eq!(quiet.options(1, Duration::from_secs(2)), Some(200));
    assert!(
        serve.log_text().contains("over sip.flood_requests_per_s"),
        "the flood is not logged"
    );
}
