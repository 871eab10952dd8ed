//! A caller's RTP endpoint in the test process, for measuring media
//! precisely: SIPp does the signalling (tests/sipp/call_external_media.xml
//! offers this peer's port) and this peer sends the caller's voice and
//! records every packet the appliance sends, with its arrival time.
//!
//! Sending: 8 kHz PCMU, one 20 ms packet per tick on an absolute clock (no
//! drift), from a queue of samples; silence packets when the queue is empty,
//! so the appliance never sees an RTP timeout. The peer sends to the address
//! the appliance's RTP comes from (symmetric RTP) unless told otherwise.
//!
//! Receiving: every RTP packet with its arrival `Instant` and decoded
//! samples. "Speech" is a packet whose RMS is above [`SPEECH_RMS`]; comfort
//! silence and line noise are below it.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use understudy::audio::g711::Law;
use understudy::transport::rtp::dtmf;
use understudy::transport::rtp::packet::{self, Received, RtpSender};

/// 20 ms at 8 kHz.
pub const PACKET_SAMPLES: usize = 160;
pub const PACKET_TIME: Duration = Duration::from_millis(20);
/// RMS (s16 scale) above which a packet carries speech: about -43 dBFS,
/// well above G.711 idle noise and below the quietest voiced sounds.
pub const SPEECH_RMS: f64 = 230.0;

/// One packet from the appliance.
#[derive(Debug, Clone)]
pub struct Packet {
    pub at: Instant,
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload_type: u8,
    /// Decoded audio (8 kHz); empty for payloads that are not PCMU/PCMA.
    pub samples: Vec<i16>,
    pub rms: f64,
}

impl Packet {
    pub fn is_speech(&self) -> bool {
        self.rms > SPEECH_RMS
    }
}

/// One packet we sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub at: Instant,
    pub speech: bool,
}

#[derive(Default)]
struct State {
    remote: Option<SocketAddr>,
    /// Samples still to send.
    queue: VecDeque<i16>,
    /// Keys not yet sent to their end (RFC 4733 events), after the queued samples.
    keys: VecDeque<char>,
    /// When the last key's end packets went out.
    keyed: Option<Instant>,
    received: Vec<Packet>,
    sent: Vec<Sent>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

/// A UDP RTP endpoint on loopback.
pub struct RtpPeer {
    pub port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// RMS of a block of samples.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / samples.len() as f64)
        .sqrt()
}

impl RtpPeer {
    /// Bind an even loopback port (RTP convention; SDP offers it) and start
    /// the send and receive threads.
    pub fn start() -> RtpPeer {
        // Three free ports hold an even one and the one above it (RTCP).
        let (first, _) = super::free_range(3);
        let port = first + first % 2;
        let socket = UdpSocket::bind((super::LOOPBACK, port)).expect("cannot bind the RTP peer");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let receiver = {
            let (socket, shared) = (socket.try_clone().unwrap(), shared.clone());
            std::thread::spawn(move || receive_loop(socket, shared))
        };
        let sender = {
            let shared = shared.clone();
            std::thread::spawn(move || send_loop(socket, shared))
        };
        RtpPeer {
            port,
            shared,
            threads: vec![receiver, sender],
        }
    }

    /// Send to `addr` instead of where the appliance's RTP comes from.
    pub fn set_remote(&self, addr: SocketAddr) {
        self.shared.state.lock().unwrap().remote = Some(addr);
    }

    pub fn remote(&self) -> Option<SocketAddr> {
        self.shared.state.lock().unwrap().remote
    }

    /// Wait until the appliance's first packet arrives (and so we know where to send).
    pub fn wait_remote(&self, limit: Duration) -> SocketAddr {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let Some(remote) = state.remote {
                return remote;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no RTP from the appliance within {limit:?}"));
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Queue caller audio (8 kHz mono); it goes out in 20 ms packets after
    /// whatever is queued already.
    pub fn say(&self, samples: &[i16]) {
        self.shared
            .state
            .lock()
            .unwrap()
            .queue
            .extend(samples.iter().copied());
    }

    /// Queue keypad presses: RFC 4733 events (payload type 101, as the SDP
    /// of tests/sipp/call_external_media.xml offers), 100 ms each, 300 ms
    /// apart, after whatever audio is queued.
    pub fn press(&self, keys: &str) {
        self.shared.state.lock().unwrap().keys.extend(keys.chars());
    }

    /// Wait until every queued key has been sent; returns when the last
    /// one's end packets went out.
    pub fn wait_pressed(&self, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock().unwrap();
        loop {
            if let (true, Some(at)) = (state.keys.is_empty(), state.keyed) {
                return at;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("keys not sent within {limit:?}"));
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// Wait until everything queued has been sent; returns when the last
    /// packet with speech energy went out (the end of the caller's speech),
    /// if any was sent since `since`.
    pub fn wait_said(&self, since: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock().unwrap();
        while !state.queue.is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("caller audio not sent within {limit:?}"));
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
        state
            .sent
            .iter()
            .rev()
            .take_while(|s| s.at >= since)
            .find(|s| s.speech)
            .map(|s| s.at)
    }

    /// Every packet received so far.
    pub fn received(&self) -> Vec<Packet> {
        self.shared.state.lock().unwrap().received.clone()
    }

    /// Every packet sent so far.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.state.lock().unwrap().sent.clone()
    }

    /// Arrival of the first packet with speech energy after `t`.
    pub fn first_audio_after(&self, t: Instant) -> Option<Instant> {
        let state = self.shared.state.lock().unwrap();
        state
            .received
            .iter()
            .find(|p| p.at > t && p.is_speech())
            .map(|p| p.at)
    }

    /// Arrival of the last packet with speech energy before `t`.
    pub fn last_audio_before(&self, t: Instant) -> Option<Instant> {
        let state = self.shared.state.lock().unwrap();
        state
            .received
            .iter()
            .rev()
            .find(|p| p.at < t && p.is_speech())
            .map(|p| p.at)
    }

    /// Wait until the appliance has been quiet (no speech energy) for
    /// `quiet`, after speaking at least once: a prompt has ended.
    pub fn wait_quiet(&self, quiet: Duration, limit: Duration) {
        let started = Instant::now();
        loop {
            let now = Instant::now();
            if self
                .last_audio_before(now)
                .is_some_and(|last| now - last > quiet)
            {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the appliance did not fall quiet within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until a packet with speech energy arrives after `t`.
    pub fn wait_audio_after(&self, t: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.first_audio_after(t) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The longest span in `[from, to]` without a packet with speech energy
    /// (between arrivals: conservative by up to one packet time).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let state = self.shared.state.lock().unwrap();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for p in state
            .received
            .iter()
            .filter(|p| p.at > from && p.at <= to && p.is_speech())
        {
            longest = longest.max(p.at - last);
            last = p.at;
        }
        longest.max(to.saturating_duration_since(last))
    }

    /// Stretches of speech in `[from, to]`: (first, last) arrival of speech
    /// packets, split wherever nothing but silence arrived for `split`.
    pub fn utterances(
        &self,
        from: Instant,
        to: Instant,
        split: Duration,
    ) -> Vec<(Instant, Instant)> {
        let state = self.shared.state.lock().unwrap();
        let mut out: Vec<(Instant, Instant)> = vec![];
        for p in state
            .received
            .iter()
            .filter(|p| p.at > from && p.at <= to && p.is_speech())
        {
            match out.last_mut() {
                Some((_, end)) if p.at - *end < split => *end = p.at,
                _ => out.push((p.at, p.at)),
            }
        }
        out
    }

    /// Everything received, as 8 kHz samples in arrival order (the appliance
    /// sends a packet every 20 ms, silence included, so this is its timeline).
    pub fn recording(&self) -> Vec<i16> {
        self.recording_between(None, None)
    }

    /// The received audio whose packets arrived in `[from, to]`.
    pub fn recording_between(&self, from: Option<Instant>, to: Option<Instant>) -> Vec<i16> {
        let state = self.shared.state.lock().unwrap();
        state
            .received
            .iter()
            .filter(|p| from.is_none_or(|f| p.at >= f) && to.is_none_or(|t| p.at <= t))
            .flat_map(|p| p.samples.iter().copied())
            .collect()
    }
}

impl Drop for RtpPeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn receive_loop(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = [0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let at = Instant::now();
        let Ok(Received::Rtp(p)) = packet::parse(&buf[..n]) else {
            continue;
        };
        let samples = match p.payload_type {
            0 => Law::Mu.decode(&p.payload),
            8 => Law::A.decode(&p.payload),
            _ => vec![],
        };
        let packet = Packet {
            at,
            sequence: p.sequence,
            timestamp: p.timestamp,
            marker: p.marker,
            payload_type: p.payload_type,
            rms: rms(&samples),
            samples,
        };
        let mut state = shared.state.lock().unwrap();
        state.remote.get_or_insert(from);
        state.received.push(packet);
        shared.changed.notify_all();
    }
}

fn send_loop(socket: UdpSocket, shared: Arc<Shared>) {
    let mut sender = RtpSender::new();
    let mut next = Instant::now();
    let mut talking = false;
    // The current key's packets, one tick's worth each; then ticks of silence.
    let mut key_ticks: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        next += PACKET_TIME;
        let mut state = shared.state.lock().unwrap();
        let Some(remote) = state.remote else { continue };
        if key_ticks.is_empty() && state.queue.is_empty() {
            if let Some(&key) = state.keys.front() {
                key_ticks = key_packets(&mut sender, key);
            }
        }
        if let Some(packets) = key_ticks.pop_front() {
            let at = Instant::now();
            for packet in &packets {
                let _ = socket.send_to(packet, remote);
            }
            if packets.len() > 1 {
                // The end packets: the key is done.
                state.keys.pop_front();
                state.keyed = Some(at);
            }
            state.sent.push(Sent { at, speech: false });
            shared.changed.notify_all();
            continue;
        }
        let take = state.queue.len().min(PACKET_SAMPLES);
        let mut frame: Vec<i16> = state.queue.drain(..take).collect();
        frame.resize(PACKET_SAMPLES, 0);
        let speech = rms(&frame) > SPEECH_RMS;
        if take > 0 && !talking {
            sender.mark_talkspurt();
        }
        talking = take > 0;
        let packet = sender.packet(0, &Law::Mu.encode(&frame), PACKET_SAMPLES as u32);
        let at = Instant::now();
        let _ = socket.send_to(&packet, remote);
        state.sent.push(Sent { at, speech });
        shared.changed.notify_all();
    }
}

/// One key as RFC 4733 packets grouped by 20 ms tick (the three end
/// packets go out together), then 300 ms of silence before the next key.
fn key_packets(sender: &mut RtpSender, key: char) -> VecDeque<Vec<Vec<u8>>> {
    let payloads = dtmf::key_packets(key, 100).unwrap_or_else(|| panic!("no DTMF key {key:?}"));
    let start = sender.timestamp();
    let mut ticks: VecDeque<Vec<Vec<u8>>> = VecDeque::new();
    let ends = payloads.len() - 3;
    for (i, payload) in payloads.iter().enumerate() {
        let packet = sender.packet_at(101, payload, start, i == 0);
        if i <= ends {
            ticks.push_back(vec![packet]);
        } else {
            ticks.back_mut().unwrap().push(packet);
        }
    }
    sender.skip(160 * ticks.len() as u32);
    for _ in 0..15 {
        let silence = sender.packet(
            0,
            &Law::Mu.encode(&[0; PACKET_SAMPLES]),
            PACKET_SAMPLES as u32,
        );
        ticks.push_back(vec![silence]);
    }
    sender.mark_talkspurt();
    ticks
}
