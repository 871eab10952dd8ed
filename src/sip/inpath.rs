//! In-path mode (B2BUA): the caller's leg is bridged to the cloud bot's leg
//! through the call task, which relays the audio and watches it. The relay
//! keeps both sides' recent audio, as decoded frames and nothing more (no
//! engine runs while the cloud is healthy): the caller's since the cloud bot
//! last began to speak, so that the local bot hears the question the cloud
//! never answered, and the cloud bot's own since its turn began, so that the
//! local bot can tell where in the flow the call was
//! (`crate::session::takeover`). The decision to take over lives in
//! `super::call`; the cloud's health in `crate::continuity`.

use super::bridge::Bridge;
use super::media::{BridgeFrame, MediaCommand, MediaEvent, MediaLeg, Upstream};
use super::server::Shared;
use crate::audio::SAMPLE_RATE;
use crate::session::takeover::Handover;
use rsipstack::dialog::dialog::DialogState;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// 8 kHz frames at or above this RMS are speech (telephone speech is
/// ~1000-5000; line noise and comfort silence are far below).
const SPEECH_RMS: f64 = 400.0;
/// The cloud bot counts as quiet after this long without a speech frame.
const QUIET_AFTER: Duration = Duration::from_millis(300);
const WIRE_RATE: u32 = 8_000;
/// The cloud bot's audio kept: its last turn's prompts (longer turns keep their end).
const CLOUD_KEEP: Duration = Duration::from_secs(20);
/// Caller speech this close to the cloud's last frame (or after it) means
/// the caller was speaking when the cloud died.
const MID_SENTENCE: Duration = Duration::from_millis(150);
/// Silence kept either side of the cloud's speech for the transcription.
const SPEECH_PAD: usize = WIRE_RATE as usize / 10;

/// The last seconds of the caller's audio (8 kHz), cut back whenever the
/// cloud bot starts to speak: what is left is what the caller said since.
pub(super) struct RecentAudio {
    samples: VecDeque<i16>,
    max: usize,
}

impl RecentAudio {
    pub fn new(keep: Duration) -> Self {
        let max = (keep.as_millis() as usize) * WIRE_RATE as usize / 1000;
        RecentAudio {
            samples: VecDeque::with_capacity(max),
            max,
        }
    }

    pub fn push(&mut self, frame: &[i16]) {
        self.samples.extend(frame);
        let excess = self.samples.len().saturating_sub(self.max);
        self.samples.drain(..excess);
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len_ms(&self) -> u64 {
        (self.samples.len() as u64 * 1000) / WIRE_RATE as u64
    }

    /// The audio at the canonical rate, for the session.
    pub fn to_canonical(&self) -> Vec<i16> {
        let (a, b) = self.samples.as_slices();
        crate::audio::resample(&[a, b].concat(), WIRE_RATE, SAMPLE_RATE)
    }

    /// The span from the first to the last 20 ms frame with speech in it
    /// (with a little silence either side), at the canonical rate; empty
    /// when there is no speech.
    pub fn speech_canonical(&self) -> Vec<i16> {
        let samples: Vec<i16> = self.samples.iter().copied().collect();
        let frames = samples.chunks(WIRE_RATE as usize / 50);
        let voiced: Vec<usize> = frames
            .enumerate()
            .filter(|(_, f)| rms(f) >= SPEECH_RMS)
            .map(|(i, _)| i * WIRE_RATE as usize / 50)
            .collect();
        let (Some(&first), Some(&last)) = (voiced.first(), voiced.last()) else {
            return vec![];
        };
        let from = first.saturating_sub(SPEECH_PAD);
        let to = (last + WIRE_RATE as usize / 50 + SPEECH_PAD).min(samples.len());
        crate::audio::resample(&samples[from..to], WIRE_RATE, SAMPLE_RATE)
    }
}

fn rms(frame: &[i16]) -> f64 {
    if frame.is_empty() {
        return 0.0;
    }
    (frame
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum::<f64>()
        / frame.len() as f64)
        .sqrt()
}

/// What happened on an in-path call's cloud side.
pub(super) enum CloudEvent {
    /// A frame or key went across; nothing to do.
    Relayed,
    /// One of the legs stopped relaying (its task ended).
    RelayClosed,
    /// The cloud leg's dialog (`None`: it went away).
    State(Option<Box<DialogState>>),
    /// The cloud leg's RTP (`Timeout`: the cloud stopped sending).
    Media(Option<MediaEvent>),
}

/// The cloud bot's leg of an in-path call and the relay between it and the caller.
pub(super) struct CloudLeg {
    pub bridge: Box<Bridge>,
    from_caller: mpsc::Receiver<BridgeFrame>,
    from_cloud: mpsc::Receiver<BridgeFrame>,
    to_cloud: mpsc::Sender<BridgeFrame>,
    to_caller: mpsc::Sender<BridgeFrame>,
    pub recent: RecentAudio,
    /// What the cloud bot said since its current turn began (a turn begins
    /// when it starts to speak after the caller spoke).
    pub cloud_recent: RecentAudio,
    /// The caller spoke since the cloud bot last began to speak.
    pub caller_spoke: bool,
    last_caller_speech: Option<Instant>,
    /// The last frame the cloud sent, and the last one with speech in it.
    pub last_cloud_frame: Option<Instant>,
    last_cloud_speech: Option<Instant>,
    pub connected: Instant,
}

impl CloudLeg {
    /// Route both legs' audio through the call task.
    pub fn connect(caller: &MediaLeg, bridge: Box<Bridge>, keep: Duration) -> CloudLeg {
        // A second of frames in flight at most; the legs drop rather than wait.
        let (caller_up, from_caller) = mpsc::channel(50);
        let (cloud_up, from_cloud) = mpsc::channel(50);
        let (to_cloud, cloud_in) = mpsc::channel(50);
        let (to_caller, caller_in) = mpsc::channel(50);
        caller.send(MediaCommand::Clear);
        caller.send(MediaCommand::Attach(Upstream::Bridge(caller_up)));
        caller.send(MediaCommand::BridgeFrom(caller_in));
        bridge
            .leg
            .send(MediaCommand::Attach(Upstream::Bridge(cloud_up)));
        bridge.leg.send(MediaCommand::BridgeFrom(cloud_in));
        CloudLeg {
            bridge,
            from_caller,
            from_cloud,
            to_cloud,
            to_caller,
            recent: RecentAudio::new(keep),
            cloud_recent: RecentAudio::new(CLOUD_KEEP),
            caller_spoke: false,
            last_caller_speech: None,
            last_cloud_frame: None,
            last_cloud_speech: None,
            connected: Instant::now(),
        }
    }

    /// Wait for the next frame from either leg and pass it across, or for
    /// the cloud leg's next signalling or media event.
    pub async fn next(&mut self) -> CloudEvent {
        tokio::select! {
            state = self.bridge.states.recv() => CloudEvent::State(state.map(Box::new)),
            event = self.bridge.leg.events.recv() => CloudEvent::Media(event),
            frame = self.from_caller.recv() => match frame {
                Some(BridgeFrame::Audio(samples)) => {
                    self.recent.push(&samples);
                    if rms(&samples) >= SPEECH_RMS {
                        self.caller_spoke = true;
                        self.last_caller_speech = Some(Instant::now());
                    }
                    let _ = self.to_cloud.try_send(BridgeFrame::Audio(samples));
                    CloudEvent::Relayed
                }
                Some(key) => {
                    let _ = self.to_cloud.try_send(key);
                    CloudEvent::Relayed
                }
                None => CloudEvent::RelayClosed,
            },
            frame = self.from_cloud.recv() => match frame {
                Some(BridgeFrame::Audio(samples)) => {
                    let now = Instant::now();
                    self.last_cloud_frame = Some(now);
                    if rms(&samples) >= SPEECH_RMS {
                        let was_quiet = self.last_cloud_speech.is_none_or(|t| now.duration_since(t) > QUIET_AFTER);
                        if was_quiet {
                            // The cloud bot begins to answer: what the caller said before is handled.
                            self.recent.clear();
                            if self.caller_spoke {
                                // A new turn of the cloud bot's: its earlier prompts are answered.
                                self.cloud_recent.clear();
                            }
                            self.caller_spoke = false;
                        }
                        self.last_cloud_speech = Some(now);
                    }
                    self.cloud_recent.push(&samples);
                    let _ = self.to_caller.try_send(BridgeFrame::Audio(samples));
                    CloudEvent::Relayed
                }
                Some(key) => {
                    let _ = self.to_caller.try_send(key);
                    CloudEvent::Relayed
                }
                None => CloudEvent::RelayClosed,
            },
        }
    }

    /// What the relay heard, for the local bot that takes over.
    pub fn heard(&self) -> Handover {
        let died = self.last_cloud_frame.unwrap_or(self.connected);
        Handover {
            caller: self.recent.to_canonical(),
            cloud: self.cloud_recent.speech_canonical(),
            caller_mid_sentence: self
                .last_caller_speech
                .is_some_and(|t| t + MID_SENTENCE >= died),
            caller_spoke: self.caller_spoke,
            cloud_mid_prompt: self
                .last_cloud_speech
                .is_some_and(|t| t + QUIET_AFTER >= died),
        }
    }

    /// Hang up the cloud leg and free its port (in the background: a dead
    /// cloud may take seconds to not answer our BYE).
    pub fn close(self, shared: Arc<Shared>) {
        let bridge = self.bridge;
        tokio::spawn(async move {
            if !bridge.dialog.state().is_terminated() {
                let _ = tokio::time::timeout(Duration::from_secs(5), bridge.dialog.hangup()).await;
            }
            shared.dialogs.remove_dialog(&bridge.dialog.id());
            let stats = bridge.leg.stop().await;
            tracing::debug!(
                received = stats.received,
                sent = stats.sent,
                "cloud leg closed"
            );
        });
    }
}

/// Whether a BYE's `Reason` header reports an error (cause 5xx/6xx, or a
/// Q.850 cause other than normal clearing), rather than a finished call.
pub fn bye_reason_is_error(reason: &str) -> bool {
    let lower = reason.to_ascii_lowercase();
    let cause = lower
        .split(';')
        .find_map(|p| p.trim().strip_prefix("cause="))
        .and_then(|c| c.trim().parse::<u16>().ok());
    match (lower.trim_start().starts_with("q.850"), cause) {
        (true, Some(c)) => !matches!(c, 16 | 31),
        (false, Some(c)) => c >= 500,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_audio_keeps_the_last_seconds() {
        let mut r = RecentAudio::new(Duration::from_secs(1));
        for i in 0..100 {
            r.push(&[i as i16; 160]);
        }
        assert_eq!(r.len_ms(), 1000);
        assert_eq!(r.samples.front(), Some(&50));
        assert_eq!(r.to_canonical().len(), 16_000);
        r.clear();
        assert_eq!(r.len_ms(), 0);
        assert!(r.to_canonical().is_empty());
    }

    #[test]
    fn the_speech_span_is_cut_out_of_the_silence_around_it() {
        let mut r = RecentAudio::new(Duration::from_secs(10));
        assert!(r.speech_canonical().is_empty());
        for _ in 0..50 {
            r.push(&[0; 160]);
        }
        for _ in 0..25 {
            r.push(&[3000; 160]);
        }
        for _ in 0..50 {
            r.push(&[0; 160]);
        }
        // Half a second of speech and 100 ms of padding either side, at 16 kHz.
        assert_eq!(r.speech_canonical().len(), 16_000 * 700 / 1000);
    }

    #[test]
    fn bye_reasons() {
        assert!(bye_reason_is_error("SIP;cause=500;text=\"Server Error\""));
        assert!(bye_reason_is_error("SIP ;cause=503"));
        assert!(bye_reason_is_error(
            "Q.850;cause=41;text=\"Temporary failure\""
        ));
        assert!(!bye_reason_is_error(
            "Q.850;cause=16;text=\"Normal call clearing\""
        ));
        assert!(!bye_reason_is_error(
            "SIP;cause=200;text=\"Call completed elsewhere\""
        ));
        assert!(!bye_reason_is_error(""));
        assert!(!bye_reason_is_error("garbage;cause=x"));
    }

    #[test]
    fn speech_energy() {
        assert!(rms(&[0; 160]) < SPEECH_RMS);
        assert!(rms(&[3000; 160]) >= SPEECH_RMS);
        assert_eq!(rms(&[]), 0.0);
    }
}
