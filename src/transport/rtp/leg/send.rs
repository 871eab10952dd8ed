//! The sending side of a leg: one packet every 20 ms (bot audio, bridged
//! audio, DTMF events or comfort silence), and playout marks.

use super::*;

impl LegWorker {
    pub(super) async fn send_one(&mut self, now: Instant) {
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
                        metrics::observe_ms("understudy_sip_voice_to_voice_seconds", &[], ms);
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

    pub(super) async fn transmit(&mut self, packet: &[u8], to: SocketAddr) {
        match self.socket.send_to(packet, to).await {
            Ok(_) => self.out.sent += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => self.on_receive_error(e),
            Err(e) => tracing::trace!(leg = %self.name, error = %e, %to, "RTP send failed"),
        }
    }
}
