//! One RTP leg: a UDP socket, the jitter buffer and the 20 ms playout clock.
//!
//! The leg converts at the edge: G.711 at 8 kHz on the wire, canonical 16 kHz
//! 20 ms frames towards the session, so the session never knows how the call
//! arrived. Every tick (20 ms) it hands the session exactly one frame (audio,
//! concealment or silence, so the session has a clock even while the caller
//! sends nothing) and sends one packet: queued bot audio, a DTMF event, or
//! comfort silence (many SBCs drop calls without continuous RTP).
//!
//! In a bridge (transfer by the appliance itself) two legs feed each other
//! 8 kHz frames instead of talking to a session.

use super::cadence::Cadence;
use super::dtmf::{self, EventDetector};
use super::jitter::{FrameKind, JitterBuffer};
use super::rtp::{self, ReceiveStats, Received, RtpSender};
use super::sdp::MediaParams;
use crate::audio::{self, Frame, StreamResampler, FRAME_SAMPLES, SAMPLE_RATE};
use crate::metrics;
use crate::session::CallEvent;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The wire rate of G.711.
pub const WIRE_RATE: u32 = 8000;
/// Samples per 20 ms packet on the wire.
pub const WIRE_FRAME: usize = 160;
const TICK: Duration = Duration::from_millis(20);
/// Bridged audio queued beyond this is dropped (keeps the relay's delay bounded).
const BRIDGE_QUEUE_MAX: usize = WIRE_FRAME * 10;

/// Media settings shared by all legs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub jitter_target_ms: u32,
    pub jitter_max_ms: u32,
    /// No RTP for this long from a peer that should be sending ends the call.
    pub rtp_timeout: Duration,
    /// Some: the timeout follows the peer's observed packet cadence
    /// (`super::cadence`), between this floor and `rtp_timeout`, and ICMP
    /// "port unreachable" for the peer's address counts at once. None: the
    /// fixed `rtp_timeout`.
    pub rtp_timeout_floor: Option<Duration>,
    /// Send silence packets while there is nothing to play.
    pub comfort_silence: bool,
}

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

/// Audio or a key passed from one bridged leg to the other.
#[derive(Debug)]
pub enum BridgeFrame {
    /// 20 ms at 8 kHz.
    Audio(Vec<i16>),
    Dtmf(char),
}

/// Where the audio a leg receives goes.
pub enum Upstream {
    /// Nowhere yet (ringing, or the session has ended).
    Nowhere,
    /// To the session, as canonical frames (plus DTMF and playout marks).
    Session(mpsc::Sender<CallEvent>),
    /// To the other leg of a bridge.
    Bridge(mpsc::Sender<BridgeFrame>),
}

/// Orders to a leg.
pub enum MediaCommand {
    /// Queue bot audio (16 kHz); `PlayoutDone { mark }` once its last packet left.
    Play {
        samples: Arc<Vec<i16>>,
        mark: u64,
    },
    /// Drop everything queued (barge-in).
    Clear,
    /// New negotiated parameters (answer, re-INVITE: hold, codec change).
    Update(MediaParams),
    Attach(Upstream),
    /// Play what the other leg of a bridge receives.
    BridgeFrom(mpsc::Receiver<BridgeFrame>),
    /// Send a key as RFC 4733 events.
    SendDtmf(char),
    /// Tell when the playout queue is empty.
    WhenDrained(oneshot::Sender<()>),
}

/// What a leg reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// The peer should be sending but nothing arrived for the timeout.
    Timeout,
    /// The peer's address answers our packets with ICMP "port unreachable"
    /// and its RTP stopped (a cadence-watched leg only): the process is gone.
    Unreachable,
}

/// RTP payload type 13: comfort noise (RFC 3389). Not decoded, but it shows
/// that a peer using DTX is alive.
const COMFORT_NOISE: u8 = 13;
/// ICMP refusals needed, with the peer silent for [`REFUSED_SILENCE`], before
/// a cadence-watched peer counts as gone: one stray error is not enough.
const REFUSALS: u32 = 2;
const REFUSED_SILENCE: Duration = Duration::from_millis(60);

/// Counters of a finished leg.
#[derive(Debug, Clone, Default)]
pub struct LegStats {
    pub received: u64,
    pub lost: u64,
    pub late: u64,
    pub concealed: u64,
    pub jitter_ms: f64,
    pub sent: u64,
    pub dtmf: u64,
    pub invalid: u64,
}

/// A running leg.
pub struct MediaLeg {
    pub local: SocketAddr,
    commands: mpsc::UnboundedSender<MediaCommand>,
    pub events: mpsc::Receiver<MediaEvent>,
    task: JoinHandle<LegStats>,
}

impl MediaLeg {
    /// Start a leg on a bound socket; it sends nothing until the first `Update`.
    pub fn spawn(
        socket: UdpSocket,
        config: MediaConfig,
        name: String,
    ) -> std::io::Result<MediaLeg> {
        let local = socket.local_addr()?;
        if config.rtp_timeout_floor.is_some() {
            report_icmp_errors(&socket);
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(4);
        let worker = LegWorker::new(socket, config, name, event_tx);
        let task = tokio::spawn(worker.run(command_rx));
        Ok(MediaLeg {
            local,
            commands,
            events,
            task,
        })
    }

    /// Send an order; a leg that has stopped ignores it.
    pub fn send(&self, command: MediaCommand) {
        let _ = self.commands.send(command);
    }

    /// Wait until queued audio has been sent (or `limit` passed).
    pub async fn drained(&self, limit: Duration) {
        let (tx, rx) = oneshot::channel();
        self.send(MediaCommand::WhenDrained(tx));
        let _ = tokio::time::timeout(limit, rx).await;
    }

    /// Stop the leg and get its counters.
    pub async fn stop(self) -> LegStats {
        drop(self.commands);
        self.task.await.unwrap_or_default()
    }
}

/// Measures, on the wire, the time from the end of caller speech to the first
/// packet of the bot's answer: what the caller actually waits.
struct TurnMeter {
    voiced: Duration,
    last_voiced: Option<Instant>,
}

/// Level above which a received packet counts as speech (telephone speech
/// sits around -20 dBFS; line noise well below -50).
const VOICED_DBFS: f64 = -40.0;
/// Speech needed before a bot answer counts as a turn (not a cough).
const MIN_TURN_SPEECH: Duration = Duration::from_millis(300);
/// The caller must have stopped this long before the bot's audio counts.
const MIN_GAP: Duration = Duration::from_millis(100);

impl TurnMeter {
    fn on_caller(&mut self, samples: &[i16], now: Instant) {
        if audio::rms_dbfs(samples) > VOICED_DBFS {
            self.voiced += Duration::from_secs_f64(samples.len() as f64 / WIRE_RATE as f64);
            self.last_voiced = Some(now);
        }
    }

    /// The first packet of a bot talkspurt left: the turn's latency, if any.
    fn on_bot_talkspurt(&mut self, now: Instant) -> Option<Duration> {
        let last = self.last_voiced?;
        let gap = now.duration_since(last);
        if self.voiced < MIN_TURN_SPEECH || gap < MIN_GAP {
            return None;
        }
        self.voiced = Duration::ZERO;
        self.last_voiced = None;
        Some(gap)
    }
}

/// Sending one key as RFC 4733 packets.
struct DtmfOut {
    packets: VecDeque<[u8; 4]>,
    timestamp: u32,
    first: bool,
}

struct LegWorker {
    socket: UdpSocket,
    config: MediaConfig,
    name: String,
    events: mpsc::Sender<MediaEvent>,
    params: Option<MediaParams>,
    started: Option<Instant>,
    /// Where RTP actually comes from (symmetric RTP sends back there).
    latched: Option<SocketAddr>,
    last_rx: Option<Instant>,
    timed_out: bool,
    /// The peer's cadence, when the timeout follows it.
    cadence: Option<Cadence>,
    /// ICMP refusals since the peer's last packet.
    refusals: u32,
    jitter: JitterBuffer,
    stats: ReceiveStats,
    detector: EventDetector,
    upstream: Upstream,
    to_canonical: StreamResampler,
    canonical: Vec<i16>,
    /// Events the session's channel had no room for; retried every tick.
    backlog: VecDeque<CallEvent>,
    sender: RtpSender,
    /// Bot audio at 8 kHz, and the total ever queued / sent, for the marks.
    queue: VecDeque<i16>,
    queued: u64,
    played: u64,
    marks: VecDeque<(u64, u64)>,
    talking: bool,
    bridge_in: Option<mpsc::Receiver<BridgeFrame>>,
    dtmf_out: VecDeque<char>,
    dtmf_sending: Option<DtmfOut>,
    drained: Vec<oneshot::Sender<()>>,
    meter: TurnMeter,
    epoch: Instant,
    out: LegStats,
}

impl LegWorker {
    fn new(
        socket: UdpSocket,
        config: MediaConfig,
        name: String,
        events: mpsc::Sender<MediaEvent>,
    ) -> Self {
        let ms = |ms: u32| (ms as usize) * WIRE_RATE as usize / 1000;
        let jitter = JitterBuffer::new(
            WIRE_FRAME,
            ms(config.jitter_target_ms),
            ms(config.jitter_max_ms),
        );
        LegWorker {
            socket,
            name,
            events,
            params: None,
            started: None,
            latched: None,
            last_rx: None,
            timed_out: false,
            cadence: config
                .rtp_timeout_floor
                .map(|floor| Cadence::new(floor, config.rtp_timeout)),
            refusals: 0,
            jitter,
            stats: ReceiveStats::default(),
            detector: EventDetector::default(),
            upstream: Upstream::Nowhere,
            to_canonical: StreamResampler::new(WIRE_RATE, SAMPLE_RATE),
            canonical: Vec::with_capacity(FRAME_SAMPLES * 2),
            backlog: VecDeque::new(),
            sender: RtpSender::new(),
            queue: VecDeque::new(),
            queued: 0,
            played: 0,
            marks: VecDeque::new(),
            talking: false,
            bridge_in: None,
            dtmf_out: VecDeque::new(),
            dtmf_sending: None,
            drained: Vec::new(),
            meter: TurnMeter {
                voiced: Duration::ZERO,
                last_voiced: None,
            },
            epoch: Instant::now(),
            out: LegStats::default(),
            config,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<MediaCommand>) -> LegStats {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(TICK);
        // Catch up after a stall: the session's clock and the RTP timestamps
        // must both keep real time.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.on_datagram(&buf[..len], from),
                    // ICMP port unreachable from an earlier send, and the like.
                    Err(e) => self.on_receive_error(e),
                },
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                frame = recv_bridge(&mut self.bridge_in) => match frame {
                    Some(frame) => self.on_bridge_frame(frame),
                    None => self.bridge_in = None,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        self.finish()
    }

    fn finish(mut self) -> LegStats {
        let j = self.jitter.stats();
        self.out.received = self.stats.received;
        self.out.lost = self.stats.lost();
        self.out.late = j.late;
        self.out.concealed = j.concealed;
        self.out.jitter_ms = self.stats.jitter_ms(WIRE_RATE);
        metrics::counter_add(
            "understudy_rtp_packets_received_total",
            &[],
            self.out.received as f64,
        );
        metrics::counter_add(
            "understudy_rtp_packets_sent_total",
            &[],
            self.out.sent as f64,
        );
        metrics::counter_add(
            "understudy_rtp_packets_lost_total",
            &[],
            self.out.lost as f64,
        );
        metrics::counter_add(
            "understudy_rtp_packets_late_total",
            &[],
            self.out.late as f64,
        );
        metrics::counter_add(
            "understudy_rtp_frames_concealed_total",
            &[],
            self.out.concealed as f64,
        );
        metrics::counter_add(
            "understudy_rtp_packets_invalid_total",
            &[],
            self.out.invalid as f64,
        );
        if self.out.received > 0 {
            metrics::observe_ms("understudy_rtp_jitter_ms", &[], self.out.jitter_ms);
        }
        self.out
    }

    fn on_command(&mut self, command: MediaCommand) {
        match command {
            MediaCommand::Play { samples, mark } => {
                // Whole-clip resampling: exact length, so the mark lands on the last sample.
                let wire = audio::resample(&samples, SAMPLE_RATE, WIRE_RATE);
                self.queued += wire.len() as u64;
                self.queue.extend(wire);
                self.marks.push_back((self.queued, mark));
            }
            MediaCommand::Clear => {
                self.queue.clear();
                self.played = self.queued;
                self.marks.clear();
            }
            MediaCommand::Update(params) => {
                if self.params.as_ref().map(|p| p.remote) != Some(params.remote) {
                    // The peer moved (or we just learned where it is): relatch.
                    self.latched = None;
                }
                if self.started.is_none() {
                    self.started = Some(Instant::now());
                }
                tracing::debug!(leg = %self.name, ?params, "media parameters");
                self.params = Some(params);
                self.timed_out = false;
            }
            MediaCommand::Attach(upstream) => {
                self.canonical.clear();
                self.upstream = upstream;
            }
            MediaCommand::BridgeFrom(rx) => self.bridge_in = Some(rx),
            MediaCommand::SendDtmf(key) => self.dtmf_out.push_back(key),
            MediaCommand::WhenDrained(tx) => {
                if self.queue.is_empty() {
                    let _ = tx.send(());
                } else {
                    self.drained.push(tx);
                }
            }
        }
    }

    fn on_bridge_frame(&mut self, frame: BridgeFrame) {
        match frame {
            BridgeFrame::Audio(samples) => {
                self.queue.extend(samples);
                let excess = self.queue.len().saturating_sub(BRIDGE_QUEUE_MAX);
                self.queue.drain(..excess);
            }
            BridgeFrame::Dtmf(key) => self.dtmf_out.push_back(key),
        }
    }

    fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(params) = self.params.clone() else {
            return;
        };
        let now = Instant::now();
        let packet = match rtp::parse(datagram) {
            Ok(Received::Rtp(p)) => p,
            Ok(Received::Rtcp(summary)) => {
                if summary.bye {
                    tracing::debug!(leg = %self.name, "RTCP BYE");
                }
                return;
            }
            Err(e) => {
                self.out.invalid += 1;
                tracing::trace!(leg = %self.name, error = %e, "ignoring a datagram");
                return;
            }
        };
        let ours = packet.payload_type == params.payload_type
            || Some(packet.payload_type) == params.dtmf_payload_type;
        if packet.payload_type == COMFORT_NOISE && self.latched == Some(from) {
            // Not played, but the peer is alive (DTX).
            self.alive(now);
            return;
        }
        if !ours {
            // Comfort noise (13) and anything else we did not negotiate.
            self.out.invalid += 1;
            return;
        }
        // Symmetric RTP: answer where the stream really comes from. Only a
        // valid packet of our stream latches; another source is taken only
        // once the latched one has gone quiet (an SBC moving media).
        match self.latched {
            Some(addr) if addr != from => {
                let quiet = self
                    .last_rx
                    .is_none_or(|t| now.duration_since(t) > Duration::from_secs(1));
                if !quiet {
                    self.out.invalid += 1;
                    return;
                }
                tracing::info!(leg = %self.name, old = %addr, new = %from, "RTP source moved");
                self.latched = Some(from);
            }
            Some(_) => {}
            None => self.latched = Some(from),
        }
        self.alive(now);
        if packet.payload_type == params.payload_type {
            let samples = params.law.decode(&packet.payload);
            let arrival =
                (now.duration_since(self.epoch).as_secs_f64() * WIRE_RATE as f64) as u64 as u32;
            self.stats
                .on_packet(packet.sequence, Some((packet.timestamp, arrival)));
            self.meter.on_caller(&samples, now);
            self.jitter
                .push(packet.ssrc, packet.timestamp, packet.marker, samples);
        } else {
            self.stats.on_packet(packet.sequence, None);
            if let Some(key) = self.detector.on_packet(packet.timestamp, &packet.payload) {
                self.out.dtmf += 1;
                tracing::info!(leg = %self.name, key = %key, "DTMF (RFC 4733)");
                metrics::counter_inc("understudy_sip_dtmf_total", &[("via", "rfc4733")]);
                match &self.upstream {
                    Upstream::Session(_) => self.backlog.push_back(CallEvent::Dtmf(key)),
                    Upstream::Bridge(tx) => {
                        let _ = tx.try_send(BridgeFrame::Dtmf(key));
                    }
                    Upstream::Nowhere => {}
                }
            }
        }
    }

    /// A packet of the peer's stream arrived.
    fn alive(&mut self, now: Instant) {
        self.last_rx = Some(now);
        self.refusals = 0;
        if let Some(cadence) = &mut self.cadence {
            cadence.on_packet(now);
        }
    }

    fn on_receive_error(&mut self, e: std::io::Error) {
        tracing::trace!(leg = %self.name, error = %e, "RTP socket error");
        if self.cadence.is_some() {
            drain_error_queue(&self.socket);
        }
        // Linux reports an ICMP "port unreachable" for an earlier send as a
        // refused receive, even on an unconnected socket. It only means
        // something once the peer's stream was established.
        if e.kind() == std::io::ErrorKind::ConnectionRefused
            && self.cadence.is_some()
            && self.last_rx.is_some()
        {
            self.refusals += 1;
        }
    }

    /// Read whatever already waits on the socket: after a stall of this
    /// task, packets that did arrive must count before a timeout is declared.
    fn drain_socket(&mut self) {
        let mut buf = [0u8; 2048];
        loop {
            match self.socket.try_recv_from(&mut buf) {
                Ok((len, from)) => self.on_datagram(&buf[..len], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => self.on_receive_error(e),
            }
        }
    }

    /// How long the peer may stay silent now.
    fn timeout(&self) -> Duration {
        self.cadence
            .as_ref()
            .map_or(self.config.rtp_timeout, Cadence::timeout)
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        if !self.timed_out && self.silent_for(now).is_some_and(|s| s > REFUSED_SILENCE) {
            self.drain_socket();
        }
        self.deliver_caller_audio();
        self.flush_backlog();
        self.send_one(now).await;
        if self.queue.is_empty() {
            for tx in self.drained.drain(..) {
                let _ = tx.send(());
            }
        }
        self.check_timeout(now);
    }

    /// One frame of caller audio up the leg, every tick.
    fn deliver_caller_audio(&mut self) {
        let (frame, kind) = self.jitter.pop();
        match &self.upstream {
            Upstream::Nowhere => {}
            Upstream::Bridge(tx) => {
                // Relay silence as silence: the other leg sends comfort packets itself.
                if kind != FrameKind::Silence {
                    let _ = tx.try_send(BridgeFrame::Audio(frame));
                }
            }
            Upstream::Session(tx) => {
                self.canonical.extend(self.to_canonical.push(&frame));
                while self.canonical.len() >= FRAME_SAMPLES {
                    let mut out: Frame = [0; FRAME_SAMPLES];
                    out.copy_from_slice(&self.canonical[..FRAME_SAMPLES]);
                    self.canonical.drain(..FRAME_SAMPLES);
                    // Never block the clock on a slow session: drop the frame.
                    if tx.try_send(CallEvent::Audio(Box::new(out))).is_err() {
                        metrics::counter_inc("understudy_rtp_frames_dropped_total", &[]);
                    }
                }
            }
        }
    }

    /// Keys and playout marks must not be lost: keep them until there is room.
    fn flush_backlog(&mut self) {
        let Upstream::Session(tx) = &self.upstream else {
            self.backlog.clear();
            return;
        };
        while let Some(event) = self.backlog.pop_front() {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
    }

    async fn send_one(&mut self, now: Instant) {
        let Some(params) = self.params.clone() else {
            return;
        };
        let target = if params.we_send() {
            self.latched.or(params.remote)
        } else {
            None
        };

        // A key in progress owns the stream.
        if self.dtmf_sending.is_none() {
            if let Some(key) = self.dtmf_out.pop_front() {
                match (params.dtmf_payload_type, dtmf::key_packets(key, 100)) {
                    (Some(_), Some(packets)) => {
                        self.dtmf_sending = Some(DtmfOut {
                            packets: packets.into(),
                            timestamp: self.sender.timestamp(),
                            first: true,
                        })
                    }
                    _ => {
                        tracing::warn!(leg = %self.name, %key, "cannot send DTMF: the peer took no telephone-event")
                    }
                }
            }
        }
        if let (Some(out), Some(pt)) = (self.dtmf_sending.as_mut(), params.dtmf_payload_type) {
            if let Some(payload) = out.packets.pop_front() {
                let packet = self
                    .sender
                    .packet_at(pt, &payload, out.timestamp, out.first);
                out.first = false;
                let finished = out.packets.is_empty();
                self.sender.skip(WIRE_FRAME as u32);
                if finished {
                    self.dtmf_sending = None;
                    self.sender.mark_talkspurt();
                }
                if let Some(to) = target {
                    self.transmit(&packet, to).await;
                }
                return;
            }
        }

        let n = self.queue.len().min(WIRE_FRAME);
        if n > 0 {
            let mut frame: Vec<i16> = self.queue.drain(..n).collect();
            frame.resize(WIRE_FRAME, 0);
            self.played += n as u64;
            if !self.talking {
                self.talking = true;
                self.sender.mark_talkspurt();
                if matches!(self.upstream, Upstream::Session(_)) {
                    if let Some(gap) = self.meter.on_bot_talkspurt(now) {
                        let ms = gap.as_secs_f64() * 1e3;
                        tracing::info!(leg = %self.name, ms = ms.round() as u64, "rtp voice-to-voice");
                        metrics::observe_ms("understudy_sip_voice_to_voice_ms", &[], ms);
                    }
                }
            }
            let packet = self.sender.packet(
                params.payload_type,
                &params.law.encode(&frame),
                WIRE_FRAME as u32,
            );
            if let Some(to) = target {
                self.transmit(&packet, to).await;
            }
            while self
                .marks
                .front()
                .is_some_and(|(end, _)| *end <= self.played)
            {
                if let Some((_, mark)) = self.marks.pop_front() {
                    self.backlog.push_back(CallEvent::PlayoutDone { mark });
                }
            }
            return;
        }
        // Marks of empty clips are done at once.
        while let Some((_, mark)) = self.marks.pop_front() {
            self.backlog.push_back(CallEvent::PlayoutDone { mark });
        }
        self.talking = false;
        match target {
            Some(to) if self.config.comfort_silence => {
                let silence = params.law.encode(&[0; WIRE_FRAME]);
                let packet = self
                    .sender
                    .packet(params.payload_type, &silence, WIRE_FRAME as u32);
                self.transmit(&packet, to).await;
            }
            _ => {
                self.sender.skip(WIRE_FRAME as u32);
                self.sender.mark_talkspurt();
            }
        }
    }

    async fn transmit(&mut self, packet: &[u8], to: SocketAddr) {
        match self.socket.send_to(packet, to).await {
            Ok(_) => self.out.sent += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => self.on_receive_error(e),
            Err(e) => tracing::trace!(leg = %self.name, error = %e, %to, "RTP send failed"),
        }
    }

    /// How long the peer has sent nothing, when it should be sending.
    fn silent_for(&self, now: Instant) -> Option<Duration> {
        let (Some(params), Some(started)) = (&self.params, self.started) else {
            return None;
        };
        if !params.remote_sends() {
            return None;
        }
        let since = self.last_rx.map_or(started, |t| t.max(started));
        Some(now.saturating_duration_since(since))
    }

    fn check_timeout(&mut self, now: Instant) {
        if self.timed_out {
            return;
        }
        let Some(silent) = self.silent_for(now) else {
            return;
        };
        let timeout = self.timeout();
        let event = if self.refusals >= REFUSALS && silent > REFUSED_SILENCE {
            tracing::warn!(leg = %self.name, silent_ms = silent.as_millis() as u64, refusals = self.refusals, "the peer's RTP port is unreachable");
            MediaEvent::Unreachable
        } else if silent > timeout {
            let longest_gap_ms = self
                .cadence
                .as_ref()
                .map(|c| c.longest_gap().as_millis() as u64);
            tracing::warn!(leg = %self.name, ms = timeout.as_millis() as u64, longest_gap_ms, "no RTP from the peer");
            MediaEvent::Timeout
        } else {
            return;
        };
        self.timed_out = true;
        let label = match event {
            MediaEvent::Timeout => "silence",
            MediaEvent::Unreachable => "unreachable",
        };
        metrics::counter_inc("understudy_rtp_timeouts_total", &[("cause", label)]);
        let _ = self.events.try_send(event);
    }
}

/// Ask the kernel for ICMP errors on this unconnected socket (Linux passes
/// "port unreachable" only to connected sockets otherwise): they then come
/// back as a refused receive, and wait in the socket's error queue.
fn report_icmp_errors(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    let (level, name) = match socket.local_addr() {
        Ok(a) if a.is_ipv6() => (libc::SOL_IPV6, libc::IPV6_RECVERR),
        _ => (libc::SOL_IP, libc::IP_RECVERR),
    };
    // SAFETY: a valid descriptor, and an int option with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot enable ICMP errors on an RTP socket: a dead peer is noticed by its silence only");
    }
}

/// Empty the socket's error queue (see [`report_icmp_errors`]); the error
/// itself has been seen, and the queue must not fill up.
fn drain_error_queue(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    for _ in 0..64 {
        let mut data = [0u8; 256];
        let mut control = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain data; every pointer in it is to a live
        // local buffer of the stated length.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() as _;
            libc::recvmsg(
                socket.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            break;
        }
    }
}

async fn recv_bridge(rx: &mut Option<mpsc::Receiver<BridgeFrame>>) -> Option<BridgeFrame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::Law;
    use crate::sip::sdp::Direction;

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

    async fn recv_rtp(s: &UdpSocket) -> rtp::RtpPacket {
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        match rtp::parse(&buf[..n]).unwrap() {
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
}
