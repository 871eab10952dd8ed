//! The benchmark's callers: voices that speak the held-out set, and the line
//! their audio comes through (16 kHz, or 8 kHz G.711 with packet loss through
//! the SIP leg's own jitter buffer), and line conditions with no speech.

use crate::audio::g711::{WIRE_FRAME, WIRE_RATE};
use crate::audio::{self, g711::Law, SAMPLE_RATE};
use crate::engines::TtsClient;
use crate::transport::rtp::jitter::JitterBuffer;
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// A synthetic caller voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voice {
    /// espeak-ng: a voice (`en-us`, `en-gb+f3`...) at a speed in words per minute.
    Espeak {
        /// The espeak-ng voice name (`en-us`, `en-gb+f3`...).
        name: String,
        /// Speaking rate, in words per minute.
        speed: u32,
    },
    /// The appliance's own Piper voice (the pack's TTS worker). The worker
    /// has no length-scale option, so Piper speaks at its model's default rate.
    Piper,
}

/// The default caller voices: six espeak-ng accents and speeds, and Piper.
pub const DEFAULT_VOICES: &str =
    "en-us@160,en-gb@150,en-us+f3@175,en-us+m3@140,en-gb-scotland@165,en-029@155,piper";

impl FromStr for Voice {
    type Err = anyhow::Error;

    /// `piper`, or an espeak-ng voice with an optional speed: `en-gb`, `en-us+f3@175`.
    fn from_str(s: &str) -> Result<Voice> {
        let s = s.trim();
        if s == "piper" {
            return Ok(Voice::Piper);
        }
        let (name, speed) = match s.split_once('@') {
            Some((n, sp)) => (
                n,
                sp.parse()
                    .ok()
                    .filter(|v| (80..=450).contains(v))
                    .with_context(|| {
                        format!("voice {s:?}: the speed after @ is words per minute, 80 to 450")
                    })?,
            ),
            None => (s, 160),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-+_".contains(c))
        {
            bail!("voice {s:?}: expected `piper` or an espeak-ng voice such as en-us@160 (espeak-ng --voices=en lists them)");
        }
        Ok(Voice::Espeak {
            name: name.to_string(),
            speed,
        })
    }
}

impl fmt::Display for Voice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Voice::Espeak { name, speed } => write!(f, "{name}@{speed}"),
            Voice::Piper => f.write_str("piper"),
        }
    }
}

impl Voice {
    /// `text` in this voice at 16 kHz, with the lead-in and tail silence of a caller's line.
    pub async fn speak(
        &self,
        text: &str,
        dir: &Path,
        name: &str,
        tts: Option<&TtsClient>,
    ) -> Result<Vec<i16>> {
        let speech = match self {
            Voice::Espeak { name: voice, speed } => espeak(text, voice, *speed, dir, name)?,
            Voice::Piper => {
                let tts = tts.context("the piper voice needs the TTS worker")?;
                let mut stream = tts.stream(text).await?;
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    out.extend(audio::resample(
                        &chunk.samples,
                        chunk.sample_rate,
                        SAMPLE_RATE,
                    ));
                }
                out
            }
        };
        Ok(with_line_silence(speech))
    }
}

fn espeak(text: &str, voice: &str, speed: u32, dir: &Path, name: &str) -> Result<Vec<i16>> {
    let path = dir.join(format!("{name}.wav"));
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", &speed.to_string(), "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .context("cannot run espeak-ng (apt-get install espeak-ng)")?;
    anyhow::ensure!(
        status.success(),
        "espeak-ng failed for {text:?} in voice {voice} (espeak-ng --voices=en lists the voices)"
    );
    Ok(audio::wav::read_canonical(&path)?)
}

fn with_line_silence(speech: Vec<i16>) -> Vec<i16> {
    let silence = |ms: f64| vec![0i16; audio::ms_to_samples(ms, SAMPLE_RATE)];
    [silence(300.0), speech, silence(100.0)].concat()
}

/// Synthesize `text` with espeak-ng (160 words per minute), at the canonical
/// rate, with the lead-in and tail silence a caller's line has.
pub fn synthesize_caller(text: &str, voice: &str, dir: &Path, name: &str) -> Result<Vec<i16>> {
    Ok(with_line_silence(espeak(text, voice, 160, dir, name)?))
}

/// How the caller's audio reaches the appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// `None`: 16 kHz linear PCM (WebRTC, wideband SIP); else 8 kHz G.711.
    pub law: Option<Law>,
    /// Packets lost at random, percent (G.711 only).
    pub loss_pct: u32,
}

/// The default line conditions.
pub const DEFAULT_CONDITIONS: &str = "16k,mulaw,alaw,mulaw-loss2,alaw-loss2";

impl FromStr for Condition {
    type Err = anyhow::Error;

    /// `16k`, `mulaw`, `alaw`, or a G.711 law with loss: `mulaw-loss2` (2 %).
    fn from_str(s: &str) -> Result<Condition> {
        let s = s.trim();
        let (codec, loss) = match s.split_once("-loss") {
            Some((c, l)) => (c, Some(l)),
            None => (s, None),
        };
        let law = match codec {
            "16k" => None,
            "mulaw" => Some(Law::Mu),
            "alaw" => Some(Law::A),
            _ => bail!("condition {s:?}: expected 16k, mulaw, alaw, mulaw-lossN or alaw-lossN (N: percent of packets lost)"),
        };
        let loss_pct = match loss {
            None => 0,
            Some(l) => l
                .parse()
                .ok()
                .filter(|l| *l <= 50 && law.is_some())
                .with_context(|| format!("condition {s:?}: loss is a G.711 percentage, 0 to 50"))?,
        };
        Ok(Condition { law, loss_pct })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.law {
            None => f.write_str("16k")?,
            Some(Law::Mu) => f.write_str("mulaw")?,
            Some(Law::A) => f.write_str("alaw")?,
        }
        if self.loss_pct > 0 {
            write!(f, "-loss{}", self.loss_pct)?;
        }
        Ok(())
    }
}

impl Condition {
    /// 16 kHz audio as the session receives it over this line. G.711: 8 kHz,
    /// encoded in 20 ms packets, `loss_pct` of them dropped (seeded, so a
    /// rerun loses the same packets), the rest through the SIP leg's jitter
    /// buffer (its default 40 ms target) played out one frame per tick, and
    /// back to 16 kHz, as `transport::rtp::leg` does.
    pub fn apply(&self, samples: &[i16], seed: u64) -> Vec<i16> {
        let Some(law) = self.law else {
            return samples.to_vec();
        };
        let ms = |ms: usize| ms * WIRE_RATE as usize / 1000;
        let mut jitter = JitterBuffer::new(WIRE_FRAME, ms(40), ms(200));
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let narrow = audio::resample(samples, SAMPLE_RATE, WIRE_RATE);
        let mut out = Vec::with_capacity(narrow.len() + ms(100));
        let packets = narrow.chunks(WIRE_FRAME).collect::<Vec<_>>();
        for (i, packet) in packets.iter().enumerate() {
            let lost = rng.random::<f64>() * 100.0 < self.loss_pct as f64;
            if !lost {
                let payload = law.encode(packet);
                let ts = (i * WIRE_FRAME) as u32;
                jitter.push(0x5eed, ts, i == 0, law.decode(&payload));
            }
            out.extend(jitter.pop().0);
        }
        // Drain what the target delay still holds.
        for _ in 0..ms(40).div_ceil(WIRE_FRAME) {
            out.extend(jitter.pop().0);
        }
        audio::resample(&out, WIRE_RATE, SAMPLE_RATE)
    }
}

/// The same audio after a phone line: 8 kHz mu-law through the jitter buffer, back at 16 kHz.
pub fn through_telephone_line(samples: &[i16]) -> Vec<i16> {
    Condition {
        law: Some(Law::Mu),
        loss_pct: 0,
    }
    .apply(samples, 0)
}

/// A line with no caller speech: `silence`, `noise` (white hiss) or `hum`
/// (50 Hz mains and its odd harmonics), `ms` long, at `dbfs` RMS.
pub fn line_clip(kind: &str, ms: u32, dbfs: f64, seed: u64) -> Result<Vec<i16>> {
    let n = audio::ms_to_samples(ms as f64, SAMPLE_RATE);
    let rms = 32768.0 * 10f64.powf(dbfs / 20.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Ok(match kind {
        "silence" => vec![0; n],
        // Uniform noise of amplitude a has RMS a / sqrt(3).
        "noise" => (0..n)
            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * rms * 3f64.sqrt()) as i16)
            .collect(),
        "hum" => (0..n)
            .map(|i| {
                let t = i as f64 / SAMPLE_RATE as f64;
                let w = 2.0 * std::f64::consts::PI * 50.0 * t;
                // 1, 1/3, 1/5 of the fundamental: RMS sqrt((1 + 1/9 + 1/25) / 2).
                let v = w.sin() + (3.0 * w).sin() / 3.0 + (5.0 * w).sin() / 5.0;
                (v * rms / ((1.0 + 1.0 / 9.0 + 1.0 / 25.0) / 2.0f64).sqrt()) as i16
            })
            .collect(),
        _ => bail!("clip kind {kind:?}: expected silence, noise or hum"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone() -> Vec<i16> {
        (0..16000)
            .map(|i| {
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 16000.0).sin() * 8000.0) as i16
            })
            .collect()
    }

    #[test]
    fn telephone_line_keeps_the_speech_band_behind_the_jitter_delay() {
        let tone = tone();
        let out = through_telephone_line(&tone);
        // The jitter buffer's 40 ms target comes first, then the whole tone.
        let delay = audio::ms_to_samples(40.0, SAMPLE_RATE);
        assert!(
            (out.len() as i64 - (16000 + delay) as i64).abs() <= 4,
            "{}",
            out.len()
        );
        assert!(audio::rms_dbfs(&out[..delay - 40]) < -60.0);
        let db_in = audio::rms_dbfs(&tone);
        let db_out = audio::rms_dbfs(&out[delay + 400..delay + 15600]);
        assert!((db_in - db_out).abs() < 1.0, "{db_in} vs {db_out}");
    }

    #[test]
    fn packet_loss_is_concealed_or_silent_and_reproducible() {
        let tone = tone();
        let lossy: Condition = "alaw-loss10".parse().unwrap();
        let a = lossy.apply(&tone, 7);
        assert_eq!(a, lossy.apply(&tone, 7));
        assert_ne!(a, "alaw".parse::<Condition>().unwrap().apply(&tone, 7));
        assert_eq!(a.len(), through_telephone_line(&tone).len());
    }

    #[test]
    fn conditions_and_voices_parse_and_print_back() {
        for s in DEFAULT_CONDITIONS.split(',') {
            assert_eq!(s.parse::<Condition>().unwrap().to_string(), s);
        }
        for s in DEFAULT_VOICES.split(',') {
            assert_eq!(s.parse::<Voice>().unwrap().to_string(), s);
        }
        assert_eq!("en-gb".parse::<Voice>().unwrap().to_string(), "en-gb@160");
        for bad in ["gsm", "16k-loss2", "mulaw-loss", "mulaw-loss90"] {
            assert!(bad.parse::<Condition>().is_err(), "{bad}");
        }
        for bad in ["en-us@fast", "en us", "", "en-us@5"] {
            assert!(bad.parse::<Voice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn line_clips_have_the_level_asked_for() {
        assert!(line_clip("silence", 1000, -50.0, 1)
            .unwrap()
            .iter()
            .all(|&s| s == 0));
        for kind in ["noise", "hum"] {
            let clip = line_clip(kind, 1000, -40.0, 1).unwrap();
            assert_eq!(clip.len(), 16000);
            assert!((audio::rms_dbfs(&clip) + 40.0).abs() < 0.5, "{kind}");
        }
        assert!(line_clip("music", 1000, -40.0, 1).is_err());
    }
}
