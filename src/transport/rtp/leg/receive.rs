//! The receiving side of a leg: datagrams in (RTP, RTCP, RFC 4733 events),
//! the jitter buffer, and canonical frames out to the session or a bridge.

use super::*;
use crate::transport::rtp::packet;

impl LegWorker {
    pub(super) fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr) {
        let Some(params) = self.params.clone() else {
            return;
        };
        let now = Instant::now();
        let packet = match packet::parse(datagram) {
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
    pub(super) fn alive(&mut self, now: Instant) {
        self.last_rx = Some(now);
        self.refusals = 0;
        if let Some(cadence) = &mut self.cadence {
            cadence.on_packet(now);
        }
    }

    pub(super) fn on_receive_error(&mut self, e: std::io::Error) {
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
    pub(super) fn drain_socket(&mut self) {
        let mut buf = [0u8; 2048];
        loop {
            match self.socket.try_recv_from(&mut buf) {
                Ok((len, from)) => self.on_datagram(&buf[..len], from),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => self.on_receive_error(e),
            }
        }
    }

    /// One frame of caller audio up the leg, every tick.
    pub(super) fn deliver_caller_audio(&mut self) {
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
    pub(super) fn flush_backlog(&mut self) {
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
}
