//! Smart Turn v3 (pipecat-ai's end-of-turn classifier) on ONNX Runtime.
//!
//! The model is a Whisper-tiny encoder with a classification head: it takes
//! the last 8 s of 16 kHz audio as Whisper log-mel features (80 mels x 800
//! frames) and returns the probability that the speaker has finished the
//! turn. The features are computed here the way Hugging Face's
//! `WhisperFeatureExtractor` (and pipecat's numpy copy of it) computes them:
//! zero-mean unit-variance waveform, centred (reflect-padded) STFT with a
//! 400-point periodic Hann window and a 160-sample hop, power spectrum,
//! Slaney-scale mel filter bank, log10 floored at 1e-10, the trailing frame
//! dropped, clamped to (max - 8), then (x + 4) / 4.

use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};
use realfft::RealFftPlanner;
use std::path::Path;
use std::sync::Arc;

/// Sample rate the model was trained on.
pub const SAMPLE_RATE: usize = 16_000;
/// Audio the model sees: the last 8 s, zero-padded at the front.
pub const WINDOW_SAMPLES: usize = 8 * SAMPLE_RATE;
const N_FFT: usize = 400;
const HOP: usize = 160;
const N_MELS: usize = 80;
const N_BINS: usize = N_FFT / 2 + 1;
/// STFT frames of the padded window (801) less the dropped trailing one.
const N_FRAMES: usize = WINDOW_SAMPLES / HOP;
const MEL_FLOOR: f64 = 1e-10;
const NORM_EPS: f64 = 1e-7;

// Tensor names of smart-turn-v3.x onnx.
const IN_FEATURES: &str = "input_features";
const OUT_PROB: &str = "logits";

/// Whisper log-mel features of an 8 s window.
pub struct LogMel {
    fft: Arc<dyn realfft::RealToComplex<f64>>,
    window: Vec<f64>,
    /// `N_MELS` rows of `N_BINS` weights.
    filters: Vec<f64>,
}

impl LogMel {
    /// Plan the FFT and build the window and the filter bank once.
    pub fn new() -> Self {
        // Periodic Hann (torch.hann_window): the symmetric window of N + 1, last point dropped.
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos())
            .collect();
        LogMel {
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT),
            window,
            filters: slaney_mel_filters(),
        }
    }

    /// Features of the last [`WINDOW_SAMPLES`] of `audio` (samples in
    /// [-1, 1), 16 kHz; shorter audio is zero-padded at the front), as
    /// `N_MELS` rows of `N_FRAMES` values.
    pub fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let tail = &audio[audio.len().saturating_sub(WINDOW_SAMPLES)..];
        let mut x = vec![0.0f64; WINDOW_SAMPLES];
        x[WINDOW_SAMPLES - tail.len()..]
            .iter_mut()
            .zip(tail)
            .for_each(|(d, &s)| *d = f64::from(s));

        let mean = x.iter().sum::<f64>() / x.len() as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / x.len() as f64;
        let scale = 1.0 / (var + NORM_EPS).sqrt();
        x.iter_mut().for_each(|v| *v = (*v - mean) * scale);

        // Centre the frames: reflect-pad N_FFT / 2 on both sides.
        let pad = N_FFT / 2;
        let n = x.len();
        let padded: Vec<f64> = (0..n + 2 * pad)
            .map(|i| {
                let j = i as isize - pad as isize;
                let j = if j < 0 {
                    -j
                } else if j >= n as isize {
                    2 * (n as isize - 1) - j
                } else {
                    j
                };
                x[j as usize]
            })
            .collect();

        let mut frame = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = [0.0f64; N_BINS];
        let mut log_mel = vec![0.0f64; N_MELS * N_FRAMES];
        for t in 0..N_FRAMES {
            let start = t * HOP;
            for (k, f) in frame.iter_mut().enumerate() {
                *f = padded[start + k] * self.window[k];
            }
            self.fft
                .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                .expect("buffers come from the same plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for m in 0..N_MELS {
                let weights = &self.filters[m * N_BINS..(m + 1) * N_BINS];
                let energy: f64 = weights.iter().zip(&power).map(|(w, p)| w * p).sum();
                log_mel[m * N_FRAMES + t] = energy.max(MEL_FLOOR).log10();
            }
        }
        let max = log_mel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        log_mel
            .into_iter()
            .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    let log_step = 27.0 / 6.4f64.ln();
    if hz >= 1000.0 {
        15.0 + (hz / 1000.0).ln() * log_step
    } else {
        3.0 * hz / 200.0
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    let log_step = 6.4f64.ln() / 27.0;
    if mel >= 15.0 {
        1000.0 * (log_step * (mel - 15.0)).exp()
    } else {
        200.0 * mel / 3.0
    }
}

/// Triangular filters, equally spaced on the Slaney mel scale from 0 to 8 kHz,
/// area-normalised (librosa's `norm="slaney"`).
fn slaney_mel_filters() -> Vec<f64> {
    let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    let bin_hz = |k: usize| k as f64 * (SAMPLE_RATE / 2) as f64 / (N_BINS - 1) as f64;
    let mut filters = vec![0.0; N_MELS * N_BINS];
    for m in 0..N_MELS {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (hi - lo);
        for k in 0..N_BINS {
            let f = bin_hz(k);
            let down = (f - lo) / (mid - lo);
            let up = (hi - f) / (hi - mid);
            filters[m * N_BINS + k] = down.min(up).max(0.0) * norm;
        }
    }
    filters
}

/// The loaded model and its feature extractor.
pub struct SmartTurn {
    session: Session,
    features: LogMel,
}

impl SmartTurn {
    /// Load the model (ONNX Runtime must be initialised first) and check its signature.
    pub fn load(model: &Path, threads: usize) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!(
                "Smart Turn model {} not found; pass --turn-model with smart-turn-v3.2-cpu.onnx \
                 from the model pack (`understudy models fetch`)",
                model.display()
            ));
        }
        let cannot = |e: String| format!("cannot load Smart Turn model {}: {e}", model.display());
        let session =
            crate::silero::build_session(model, threads).map_err(|e| cannot(e.to_string()))?;
        check_signature(&session).map_err(cannot)?;
        Ok(SmartTurn {
            session,
            features: LogMel::new(),
        })
    }

    /// Probability that the speaker finished the turn at the end of `audio`
    /// (16 kHz, [-1, 1); only the last 8 s count).
    pub fn probability(&mut self, audio: &[f32]) -> Result<f32, String> {
        let engine = |e: ort::Error| format!("Smart Turn inference failed: {e}");
        let features = self.features.compute(audio);
        let input = Tensor::from_array(([1, N_MELS, N_FRAMES], features)).map_err(engine)?;
        let outputs = self
            .session
            .run(ort::inputs![IN_FEATURES => input])
            .map_err(engine)?;
        let (_, prob) = outputs[OUT_PROB]
            .try_extract_tensor::<f32>()
            .map_err(engine)?;
        match prob {
            [p] if (0.0..=1.0).contains(p) => Ok(*p),
            other => Err(format!(
                "Smart Turn returned {other:?} (expected one probability between 0 and 1)"
            )),
        }
    }
}

fn check_signature(session: &Session) -> Result<(), String> {
    let f32_named = |outlets: &[ort::value::Outlet], name: &str| {
        outlets.iter().any(|o| {
            o.name() == name
                && matches!(o.dtype(), ValueType::Tensor { ty, .. } if *ty == TensorElementType::Float32)
        })
    };
    if session.inputs().len() == 1
        && f32_named(session.inputs(), IN_FEATURES)
        && f32_named(session.outputs(), OUT_PROB)
    {
        Ok(())
    } else {
        let names = |outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| o.name().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(format!(
            "not a Smart Turn v3 model: expected input {IN_FEATURES} and output {OUT_PROB} \
             (f32); this model has inputs [{}] and outputs [{}] (use smart-turn-v3.2-cpu.onnx \
             from pipecat-ai)",
            names(session.inputs()),
            names(session.outputs())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from pipecat-ai 1.14.0's `compute_whisper_log_mel_features` (a
    /// numpy copy of transformers' `WhisperFeatureExtractor`) on the same
    /// signal: a rising 440 Hz tone plus a 2.5 kHz tone, 2 s, at the end of the window.
    #[test]
    fn features_match_the_reference_extractor() {
        let signal: Vec<f32> = (0..32_000)
            .map(|n| {
                let t = n as f64 / 16_000.0;
                let tau = 2.0 * std::f64::consts::PI;
                (0.5 * (tau * 440.0 * t).sin() * (n as f64 / 32_000.0)
                    + 0.2 * (tau * 2500.0 * t).sin()) as f32
            })
            .collect();
        let f = LogMel::new().compute(&signal);
        assert_eq!(f.len(), N_MELS * N_FRAMES);
        let at = |m: usize, t: usize| f[m * N_FRAMES + t];
        for (m, t, want) in [
            (10, 650, 1.500_717_2),
            (9, 640, 1.262_933_9),
            (50, 780, 1.611_305),
            (60, 799, 0.296_854_17),
            (70, 799, 0.125_826_2),
            (8, 750, 0.062_253_51),
            (45, 720, -0.048_296_195),
            (0, 0, -0.110_976_86),
        ] {
            assert!(
                (at(m, t) - want).abs() < 2e-4,
                "mel {m} frame {t}: {} vs {want}",
                at(m, t)
            );
        }
        let sum: f64 = f.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - -4163.407).abs() < 0.5, "sum {sum}");
    }

    #[test]
    fn long_audio_keeps_only_the_last_eight_seconds() {
        let mel = LogMel::new();
        let tone: Vec<f32> = (0..WINDOW_SAMPLES)
            .map(|n| (n as f32 * 0.05).sin() * 0.3)
            .collect();
        let mut longer = vec![0.9f32; 5_000];
        longer.extend_from_slice(&tone);
        assert_eq!(mel.compute(&tone), mel.compute(&longer));
    }

    #[test]
    fn the_filter_bank_is_slaney_normalised() {
        let filters = slaney_mel_filters();
        // Area normalisation: each triangle integrates to about 2 / (bin width in Hz)...
        // summed over every filter and bin, the reference's bank totals 1.99902.
        let total: f64 = filters.iter().sum();
        assert!((total - 1.999_024_1).abs() < 1e-6, "{total}");
    }
}
