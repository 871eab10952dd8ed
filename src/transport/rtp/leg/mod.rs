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

mod icmp;
mod receive;
mod send;
mod turn_meter;

use super::cadence::Cadence;
use super::dtmf::{self, EventDetector};
use super::jitter::{FrameKind, JitterBuffer};
use super::packet::{ReceiveStats, Received, RtpSender};
use super::MediaParams;
use crate::audio::g711::{WIRE_FRAME, WIRE_RATE};
use crate::audio::{self, Frame, StreamResampler, FRAME_SAMPLES, SAMPLE_RATE};
use crate::metrics;
use crate::session::CallEvent;
use icmp::{drain_error_queue, report_icmp_errors};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use turn_meter::TurnMeter;

const TICK: Duration = Duration::from_millis(20);
/// The RTP counters reach the metrics every this many ticks (1 s) during a call.
const PUBLISH_TICKS: u32 = 50;
/// Bridged audio queued beyond this is dropped (keeps the relay's delay bounded).
const BRIDGE_QUEUE_MAX: usize = WIRE_FRAME * 10;

/// Media settings shared by all legs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// Jitter buffer delay the playout aims for, in ms.
    pub jitter_target_ms: u32,
    /// Most delay the jitter buffer may build up, in ms; past it playout skips ahead.
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

/// Audio or a key passed from one bridged leg to the other.
#[derive(Debug)]
pub enum BridgeFrame {
    /// 20 ms at 8 kHz.
    Audio(Vec<i16>),
    /// One DTMF key, sent on as RFC 4733 events.
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
        /// The audio, 16 kHz.
        samples: Arc<Vec<i16>>,
        /// Returned in `CallEvent::PlayoutDone` once the audio's last packet has left.
        mark: u64,
    },
    /// Drop everything queued (barge-in).
    Clear,
    /// New negotiated parameters (answer, re-INVITE: hold, codec change).
    Update(MediaParams),
    /// Send what the leg receives to this upstream from now on.
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
    /// Packets of the negotiated stream received, audio and DTMF (duplicates included).
    pub received: u64,
    /// Packets that never came, by sequence number.
    pub lost: u64,
    /// Packets that arrived after their audio was due (dropped).
    pub late: u64,
    /// 20 ms frames filled by concealment.
    pub concealed: u64,
    /// Interarrival jitter (RFC 3550), in ms.
    pub jitter_ms: f64,
    /// RTP packets sent.
    pub sent: u64,
    /// DTMF keys received as RFC 4733 events.
    pub dtmf: u64,
    /// Datagrams ignored: unparsable, not a negotiated payload type, or from another source.
    pub invalid: u64,
}

/// A running leg.
pub struct MediaLeg {
    /// The local address the leg's socket is bound to.
    pub local: SocketAddr,
    commands: mpsc::UnboundedSender<MediaCommand>,
    /// What the leg reports: a timeout, an unreachable peer.
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
    /// The counters as last added to the metrics (see `publish`).
    published: LegStats,
    /// Ticks since the counters were last published.
    ticks_unpublished: u32,
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
            meter: TurnMeter::default(),
            epoch: Instant::now(),
            out: LegStats::default(),
            published: LegStats::default(),
            ticks_unpublished: 0,
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
        self.publish();
        if self.out.received > 0 {
            metrics::observe_ms("understudy_rtp_jitter_seconds", &[], self.out.jitter_ms);
        }
        self.out
    }

    /// Bring the leg's counters up to date and add what they gained since
    /// the last time to the RTP metrics, so those move during a call.
    fn publish(&mut self) {
        let j = self.jitter.stats();
        self.out.received = self.stats.received;
        self.out.lost = self.stats.lost();
        self.out.late = j.late;
        self.out.concealed = j.concealed;
        self.out.jitter_ms = self.stats.jitter_ms(WIRE_RATE);
        let (now, before) = (&self.out, &self.published);
        for (name, now, before) in [
            (
                "understudy_rtp_packets_received_total",
                now.received,
                before.received,
            ),
            ("understudy_rtp_packets_sent_total", now.sent, before.sent),
            ("understudy_rtp_packets_lost_total", now.lost, before.lost),
            ("understudy_rtp_packets_late_total", now.late, before.late),
            (
                "understudy_rtp_frames_concealed_total",
                now.concealed,
                before.concealed,
            ),
            (
                "understudy_rtp_packets_invalid_total",
                now.invalid,
                before.invalid,
            ),
        ] {
            // Lost counts can fall back when a late packet fills a gap.
            if now > before {
                metrics::counter_add(name, &[], (now - before) as f64);
            }
        }
        self.published = LegStats {
            lost: self.published.lost.max(self.out.lost),
            ..self.out.clone()
        };
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
        self.ticks_unpublished += 1;
        if self.ticks_unpublished >= PUBLISH_TICKS {
            self.ticks_unpublished = 0;
            self.publish();
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

async fn recv_bridge(rx: &mut Option<mpsc::Receiver<BridgeFrame>>) -> Option<BridgeFrame> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
