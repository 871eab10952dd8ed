//! The audio core: one canonical frame format inside the call plane, with
//! codecs and resampling at the edges.
//!
//! Every ingress (SIP/RTP, WAV files, ...) turns its audio into
//! [`SAMPLE_RATE`] Hz mono signed 16-bit frames of [`FRAME_SAMPLES`] samples
//! (20 ms), and every egress takes the same frames back, so the session never
//! knows how a call arrived.

pub mod g711;
pub mod resample;
pub mod wav;

pub use resample::{resample, StreamResampler};

/// The canonical sample rate (what Whisper and Silero want).
pub const SAMPLE_RATE: u32 = 16_000;
/// The canonical frame length.
pub const FRAME_MS: u32 = 20;
/// Samples per canonical frame.
pub const FRAME_SAMPLES: usize = (SAMPLE_RATE * FRAME_MS / 1000) as usize;

/// One canonical frame: 20 ms of 16 kHz mono s16.
pub type Frame = [i16; FRAME_SAMPLES];

/// Split audio into canonical frames, zero-padding the last one.
pub fn frames(samples: &[i16]) -> impl Iterator<Item = Frame> + '_ {
    samples.chunks(FRAME_SAMPLES).map(|chunk| {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        frame
    })
}

/// Duration of `n` samples at `rate`, in milliseconds.
pub fn samples_to_ms(n: usize, rate: u32) -> f64 {
    n as f64 * 1000.0 / rate as f64
}

/// Samples in `ms` milliseconds at `rate`.
pub fn ms_to_samples(ms: f64, rate: u32) -> usize {
    (ms * rate as f64 / 1000.0).round() as usize
}

/// Root-mean-square level in dBFS (-inf for digital silence).
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| (s as f64) * (s as f64)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    20.0 * (rms / 32768.0).log10()
}

/// Frames louder than this (RMS, dBFS) sound like speech to the level
/// checks that run without a VAD (the in-path watch, the wire-side turn
/// meter): telephone speech sits around -20 dBFS, line noise and comfort
/// silence below -50. Silero decides everything the bot acts on.
pub const SPEECH_DBFS: f64 = -40.0;

/// Whether a frame is loud enough to be speech (see [`SPEECH_DBFS`]).
pub fn is_speech_level(samples: &[i16]) -> bool {
    rms_dbfs(samples) > SPEECH_DBFS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cover_everything_and_pad_the_tail() {
        let samples: Vec<i16> = (0..700).map(|i| i as i16).collect();
        let all: Vec<Frame> = frames(&samples).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2][59], 699);
        assert_eq!(all[2][60], 0);
        assert_eq!(FRAME_SAMPLES, 320);
    }

    #[test]
    fn levels() {
        assert_eq!(rms_dbfs(&[0; 10]), f64::NEG_INFINITY);
        let full: Vec<i16> = (0..1000)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(rms_dbfs(&full).abs() < 0.01);
        assert!(!is_speech_level(&[0; 160]));
        assert!(!is_speech_level(&[100; 160]));
        assert!(is_speech_level(&[3000; 160]));
        assert!(!is_speech_level(&[]));
    }
}
