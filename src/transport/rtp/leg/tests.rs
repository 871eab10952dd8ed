//! The leg against real UDP sockets on loopback.

use super::*;
use crate::audio::g711::Law;
use crate::transport::rtp::Direction;
use crate::transport::rtp::{packet, RtpPorts};

fn config() -> MediaConfig {
    MediaConfig {
        jitter_target_ms: 40,
        jitter_max_ms: 200,
        rtp_timeout: Duration::from_millis(400),
        rtp_timeout_floor: None,
        comfort_silence: true,
    }
}

fn params(remote: SocketAddr) -> MediaParams {
    MediaParams {
        remote: Some(remote),
        law: Law::Mu,
        payload_type: 0,
        dtmf_payload_type: Some(101),
        remote_direction: Direction::SendRecv,
        ptime_ms: None,
    }
}

async fn bound() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

async fn recv_rtp(s: &UdpSocket) -> packet::RtpPacket {
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    match packet::parse(&buf[..n]).unwrap() {
        Received::Rtp(p) => p,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn plays_marks_and_comfort_silence_at_20ms() {
    let (peer, peer_addr) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut leg = MediaLeg::spawn(socket, config(), "test".into()).unwrap();
    let (events_tx, mut events_rx) = mpsc::channel(512);
    leg.send(MediaCommand::Attach(Upstream::Session(events_tx)));
    leg.send(MediaCommand::Update(params(peer_addr)));
    // 100 ms of a loud 16 kHz tone: five packets of audio, then the mark.
    let tone: Vec<i16> = (0..1600)
        .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
        .collect();
    leg.send(MediaCommand::Play {
        samples: Arc::new(tone),
        mark: 7,
    });
    let started = Instant::now();
    let mut packets = vec![];
    for _ in 0..12 {
        packets.push(recv_rtp(&peer).await);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(400),
        "{took:?}"
    );
    for w in packets.windows(2) {
        assert_eq!(w[1].sequence, w[0].sequence.wrapping_add(1));
        assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(160));
    }
    let loud: Vec<bool> = packets
        .iter()
        .map(|p| audio::rms_dbfs(&Law::Mu.decode(&p.payload)) > -30.0)
        .collect();
    let first_loud = loud.iter().position(|&l| l).unwrap();
    assert_eq!(loud.iter().filter(|&&l| l).count(), 5, "{loud:?}");
    assert!(
        packets[first_loud].marker,
        "talkspurt starts with the marker bit"
    );
    // The session got frames (its clock) and the mark.
    let mut mark = None;
    let mut frames = 0;
    while let Ok(e) = events_rx.try_recv() {
        match e {
            CallEvent::PlayoutDone { mark: m } => mark = Some(m),
            CallEvent::Audio(_) => frames += 1,
            _ => {}
        }
    }
    assert_eq!(mark, Some(7));
    assert!(frames >= 8, "{frames}");
    // Inactivity: the peer never sent anything.
    let e = tokio::time::timeout(Duration::from_secs(2), leg.events.recv())
        .await
        .unwrap();
    assert_eq!(e, Some(MediaEvent::Timeout));
    leg.stop().await;
}

#[tokio::test]
async fn received_audio_and_dtmf_reach_the_session_and_replies_go_to_the_source() {
    let (peer, _) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let leg = MediaLeg::spawn(socket, config(), "test".into()).unwrap();
    let (events_tx, mut events_rx) = mpsc::channel(512);
    leg.send(MediaCommand::Attach(Upstream::Session(events_tx)));
    // The SDP names a port nobody listens on; RTP comes from `peer`.
    let mut p = params("127.0.0.1:9".parse().unwrap());
    p.remote = Some("127.0.0.1:9".parse().unwrap());
    leg.send(MediaCommand::Update(p));
    let mut tx = RtpSender::new();
    let tone: Vec<i16> = (0..160)
        .map(|i| ((i as f64 * 0.5).sin() * 8000.0) as i16)
        .collect();
    for _ in 0..10 {
        peer.send_to(&tx.packet(0, &Law::Mu.encode(&tone), 160), leg.local)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ts = tx.timestamp();
    for payload in dtmf::key_packets('7', 60).unwrap() {
        peer.send_to(&tx.packet_at(101, &payload, ts, false), leg.local)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Symmetric RTP: our packets come back to the peer's real address.
    let back = recv_rtp(&peer).await;
    assert_eq!(back.payload_type, 0);
    let mut keys = String::new();
    let mut loud = 0;
    while let Ok(e) = events_rx.try_recv() {
        match e {
            CallEvent::Dtmf(k) => keys.push(k),
            CallEvent::Audio(f) if audio::rms_dbfs(&f[..]) > -30.0 => loud += 1,
            _ => {}
        }
    }
    assert_eq!(keys, "7");
    assert!(loud >= 5, "{loud}");
    let stats = leg.stop().await;
    assert_eq!(stats.received, 15, "ten audio packets and five of the key");
    assert_eq!(stats.dtmf, 1);
    assert_eq!(stats.lost, 0);
}

#[tokio::test]
async fn a_codec_change_takes_effect_and_strangers_do_not_latch() {
    let (peer, peer_addr) = bound().await;
    let (stranger, _) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let leg = MediaLeg::spawn(socket, config(), "test".into()).unwrap();
    let mut p = params(peer_addr);
    leg.send(MediaCommand::Update(p.clone()));
    assert_eq!(recv_rtp(&peer).await.payload_type, 0);
    // Garbage and a packet of a type we did not agree from elsewhere: ignored.
    stranger.send_to(b"hello", leg.local).await.unwrap();
    stranger
        .send_to(&RtpSender::new().packet(18, &[0; 20], 160), leg.local)
        .await
        .unwrap();
    p.law = Law::A;
    p.payload_type = 8;
    leg.send(MediaCommand::Update(p));
    let mut seen = vec![];
    for _ in 0..10 {
        seen.push(recv_rtp(&peer).await.payload_type);
    }
    assert_eq!(seen.last(), Some(&8), "{seen:?}");
    assert!(seen.iter().all(|&pt| pt == 0 || pt == 8));
    let stats = leg.stop().await;
    assert_eq!(stats.invalid, 2);
}

#[tokio::test]
async fn hold_stops_sending_and_suspends_the_timeout() {
    let (peer, peer_addr) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut leg = MediaLeg::spawn(socket, config(), "test".into()).unwrap();
    let mut p = params(peer_addr);
    p.remote_direction = Direction::Inactive;
    leg.send(MediaCommand::Update(p));
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(600), peer.recv_from(&mut buf)).await;
    assert!(got.is_err(), "nothing is sent on hold");
    assert!(
        leg.events.try_recv().is_err(),
        "no timeout while the peer is inactive"
    );
    leg.stop().await;
}

/// A peer streaming 20 ms packets for `ms`, then stopping; returns when it stopped.
async fn stream(peer: &UdpSocket, to: SocketAddr, ms: u64) -> Instant {
    let mut tx = RtpSender::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..ms / 20 {
        tick.tick().await;
        peer.send_to(&tx.packet(0, &Law::Mu.encode(&[0; 160]), 160), to)
            .await
            .unwrap();
    }
    Instant::now()
}

fn watched() -> MediaConfig {
    MediaConfig {
        rtp_timeout: Duration::from_millis(500),
        rtp_timeout_floor: Some(Duration::from_millis(160)),
        ..config()
    }
}

#[tokio::test]
async fn a_steady_peer_that_stops_is_declared_dead_after_its_cadence_timeout() {
    let (peer, peer_addr) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut leg = MediaLeg::spawn(socket, watched(), "test".into()).unwrap();
    leg.send(MediaCommand::Update(params(peer_addr)));
    let stopped = stream(&peer, leg.local, 1_500).await;
    // The peer's socket stays open: no ICMP, only the silence tells.
    let e = tokio::time::timeout(Duration::from_secs(2), leg.events.recv())
        .await
        .unwrap();
    let after = stopped.elapsed();
    assert_eq!(e, Some(MediaEvent::Timeout));
    assert!(
        after >= Duration::from_millis(150) && after < Duration::from_millis(450),
        "declared dead {after:?} after the last packet (the ceiling is 500 ms)"
    );
    leg.stop().await;
}

#[tokio::test]
async fn a_peer_whose_port_closes_is_unreachable_at_once() {
    let (peer, peer_addr) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut leg = MediaLeg::spawn(socket, watched(), "test".into()).unwrap();
    leg.send(MediaCommand::Update(params(peer_addr)));
    stream(&peer, leg.local, 600).await;
    drop(peer);
    let closed = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(2), leg.events.recv())
        .await
        .unwrap();
    assert_eq!(e, Some(MediaEvent::Unreachable));
    // Still in the warm-up (the ceiling would be 500 ms): the ICMP told.
    assert!(
        closed.elapsed() < Duration::from_millis(300),
        "{:?}",
        closed.elapsed()
    );
    leg.stop().await;
}

#[tokio::test]
async fn a_fixed_timeout_ignores_icmp() {
    let (peer, peer_addr) = bound().await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut leg = MediaLeg::spawn(socket, config(), "test".into()).unwrap();
    leg.send(MediaCommand::Update(params(peer_addr)));
    stream(&peer, leg.local, 300).await;
    drop(peer);
    let closed = Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(2), leg.events.recv())
        .await
        .unwrap();
    assert_eq!(e, Some(MediaEvent::Timeout));
    assert!(
        closed.elapsed() >= Duration::from_millis(380),
        "{:?}",
        closed.elapsed()
    );
    leg.stop().await;
}

#[tokio::test]
async fn ports_come_from_the_range_and_run_out_cleanly() {
    let ports = RtpPorts::new("127.0.0.1".parse().unwrap(), 41001, 41004);
    let a = ports.bind().await.unwrap();
    let b = ports.bind().await.unwrap();
    let mut got = [
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ];
    got.sort();
    assert_eq!(got, [41002, 41004]);
    let e = ports.bind().await.unwrap_err();
    assert!(e.to_string().contains("rtp_port"), "{e}");
}
