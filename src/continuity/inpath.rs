//! The in-path watch: while the cloud bot has a call, the SIP relay passes
//! every frame through a [`Watch`], which keeps both sides' recent audio as
//! decoded frames and nothing more (no engine runs while the cloud is
//! healthy): the caller's since the cloud bot last began to speak, so that
//! the local bot hears the question the cloud never answered, and the cloud
//! bot's own since its turn began, so that the local bot can tell where in
//! the flow the call was (`crate::session::takeover`). When the cloud leg
//! fails (its media stops, its dialog ends, it hangs up with an error: see
//! [`bye_reason_is_error`]) the call takes over with [`Watch::heard`]; the
//! SIP side of the relay is `crate::transport::sip::cloud_leg`.

use super::Continuity;
use crate::audio::{self, g711::WIRE_RATE, SAMPLE_RATE};
use crate::metrics;
use crate::session::admission::{Admission, Admitted, Ingress};
use crate::session::takeover::Handover;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The cloud bot counts as quiet after this long without a speech frame.
const QUIET_AFTER: Duration = Duration::from_millis(300);
/// The cloud bot's audio kept: its last turn's prompts (longer turns keep their end).
const CLOUD_KEEP: Duration = Duration::from_secs(20);
/// Caller speech this close to the cloud's last frame (or after it) means
/// the caller was speaking when the cloud died.
const MID_SENTENCE: Duration = Duration::from_millis(150);
/// Silence kept either side of the cloud's speech for the transcription.
const SPEECH_PAD: usize = WIRE_RATE as usize / 10;

/// The last seconds of the caller's audio (8 kHz), cut back whenever the
/// cloud bot starts to speak: what is left is what the caller said since.
pub struct RecentAudio {
    samples: VecDeque<i16>,
    max: usize,
}

impl RecentAudio {
    /// A buffer that keeps at most the last `keep` of audio.
    pub fn new(keep: Duration) -> Self {
        let max = (keep.as_millis() as usize) * WIRE_RATE as usize / 1000;
        RecentAudio {
            samples: VecDeque::with_capacity(max),
            max,
        }
    }

    /// Append an 8 kHz frame, dropping the oldest audio past the limit.
    pub fn push(&mut self, frame: &[i16]) {
        self.samples.extend(frame);
        let excess = self.samples.len().saturating_sub(self.max);
        self.samples.drain(..excess);
    }

    /// Drop everything kept.
    pub fn clear(&mut self) {
        self.samples.clear();
    }

    /// How much audio is kept, in ms.
    pub fn len_ms(&self) -> u64 {
        (self.samples.len() as u64 * 1000) / WIRE_RATE as u64
    }

    /// The audio at the canonical rate, for the session.
    pub fn to_canonical(&self) -> Vec<i16> {
        let (a, b) = self.samples.as_slices();
        audio::resample(&[a, b].concat(), WIRE_RATE, SAMPLE_RATE)
    }

    /// The span from the first to the last 20 ms frame with speech in it
    /// (with a little silence either side), at the canonical rate; empty
    /// when there is no speech.
    pub fn speech_canonical(&self) -> Vec<i16> {
        let samples: Vec<i16> = self.samples.iter().copied().collect();
        let frames = samples.chunks(WIRE_RATE as usize / 50);
        let voiced: Vec<usize> = frames
            .enumerate()
            .filter(|(_, f)| audio::is_speech_level(f))
            .map(|(i, _)| i * WIRE_RATE as usize / 50)
            .collect();
        let (Some(&first), Some(&last)) = (voiced.first(), voiced.last()) else {
            return vec![];
        };
        let from = first.saturating_sub(SPEECH_PAD);
        let to = (last + WIRE_RATE as usize / 50 + SPEECH_PAD).min(samples.len());
        audio::resample(&samples[from..to], WIRE_RATE, SAMPLE_RATE)
    }
}

/// What the relay has heard of an in-path call: both sides' recent audio
/// and when each last spoke. The SIP relay feeds it every frame it passes
/// across; when the cloud leg fails, [`Watch::heard`] is what the local bot
/// starts from.
pub struct Watch {
    /// The caller's audio since the cloud bot last began to speak.
    pub recent: RecentAudio,
    /// What the cloud bot said since its current turn began (a turn begins
    /// when it starts to speak after the caller spoke).
    pub cloud_recent: RecentAudio,
    /// The caller spoke since the cloud bot last began to speak.
    pub caller_spoke: bool,
    last_caller_speech: Option<Instant>,
    /// The last frame the cloud sent.
    pub last_cloud_frame: Option<Instant>,
    /// The last frame the cloud sent with speech in it.
    last_cloud_speech: Option<Instant>,
    /// When the cloud leg was connected.
    pub connected: Instant,
}

impl Watch {
    /// A watch that keeps `keep` of the caller's recent audio.
    pub fn new(keep: Duration) -> Watch {
        Watch {
            recent: RecentAudio::new(keep),
            cloud_recent: RecentAudio::new(CLOUD_KEEP),
            caller_spoke: false,
            last_caller_speech: None,
            last_cloud_frame: None,
            last_cloud_speech: None,
            connected: Instant::now(),
        }
    }

    /// A caller frame (8 kHz) on its way to the cloud bot.
    pub fn caller_frame(&mut self, samples: &[i16]) {
        self.recent.push(samples);
        if audio::is_speech_level(samples) {
            self.caller_spoke = true;
            self.last_caller_speech = Some(Instant::now());
        }
    }

    /// A cloud frame (8 kHz) on its way to the caller.
    pub fn cloud_frame(&mut self, samples: &[i16]) {
        let now = Instant::now();
        self.last_cloud_frame = Some(now);
        if audio::is_speech_level(samples) {
            let was_quiet = self
                .last_cloud_speech
                .is_none_or(|t| now.duration_since(t) > QUIET_AFTER);
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
        self.cloud_recent.push(samples);
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
}

/// What a failed cloud leg leads to.
pub enum Takeover {
    /// The local bot takes the call, starting from what the relay heard.
    Local {
        /// The call's slot.
        admitted: Admitted,
        /// The recent audio of both sides.
        heard: Box<Handover>,
    },
    /// No room for the local bot: the caller hears the apology (when a bot
    /// is loaded to say it) and goes to a human; never a dropped call.
    ToHuman {
        /// The apology's pre-rendered audio.
        apology: Option<Arc<Vec<i16>>>,
        /// The bot's safety-net target (empty: the site's transfer target).
        target: String,
        /// Why, for the transfer's log line.
        reason: String,
    },
}

/// Decide what a call whose cloud leg failed (`why`) becomes: the failure
/// counts against the cloud's health, and the local bot takes the call when
/// admission has room for it.
pub fn take_over(
    call: &str,
    why: &str,
    watch: &Watch,
    continuity: Option<&Continuity>,
    admission: &Admission,
) -> Takeover {
    if let Some(continuity) = continuity {
        continuity.call_failed(why);
    }
    match admission.admit(Ingress::Sip) {
        Ok(admitted) => {
            let heard = watch.heard();
            tracing::warn!(
                call,
                reason = why,
                quiet_ms = watch
                    .last_cloud_frame
                    .map(|t| t.elapsed().as_millis() as u64),
                recent_ms = watch.recent.len_ms(),
                cloud_ms = heard.cloud.len() / 16,
                on_cloud_s = watch.connected.elapsed().as_secs_f64(),
                "cloud leg failed: the local bot takes over"
            );
            metrics::counter_inc("understudy_takeovers_total", &[("to", "local_bot")]);
            Takeover::Local {
                admitted,
                heard: Box::new(heard),
            }
        }
        Err(refusal) => {
            tracing::warn!(
                call,
                reason = why,
                local = refusal.label(),
                "cloud leg failed and the local bot cannot take over: to a human"
            );
            metrics::counter_inc("understudy_takeovers_total", &[("to", "human")]);
            let setup = admission.current_setup();
            Takeover::ToHuman {
                apology: setup
                    .as_ref()
                    .and_then(|s| s.prompts.get(&s.settings.apology)),
                target: setup
                    .map(|s| s.settings.safety_target.clone())
                    .unwrap_or_default(),
                reason: format!("cloud failed ({why}); local bot {}", refusal.label()),
            }
        }
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
    fn the_caller_speaking_after_the_cloud_is_heard_as_unanswered() {
        let mut w = Watch::new(Duration::from_secs(10));
        w.cloud_frame(&[3000; 160]);
        assert!(!w.caller_spoke);
        w.caller_frame(&[3000; 160]);
        w.caller_frame(&[0; 160]);
        let heard = w.heard();
        assert!(heard.caller_spoke);
        assert_eq!(heard.caller.len(), 640);
        assert_eq!(heard.cloud.len(), 320);
        assert!(heard.cloud_mid_prompt);
    }
}
