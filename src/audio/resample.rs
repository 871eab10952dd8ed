//! Sample-rate conversion with rubato's synchronous FFT resampler (fixed
//! ratios: 8 kHz telephony, 16 kHz canonical, 22.05 kHz Piper, 48 kHz WebRTC).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

fn to_f32(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| s as f32 / 32768.0).collect()
}

fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resample a whole clip (delay-compensated: the output lines up with the input).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let input = to_f32(samples);
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .expect("valid resampler parameters for positive rates");
    let adapter = InterleavedSlice::new(&input, 1, input.len()).expect("mono slice");
    match resampler.process_all(&adapter, input.len(), None) {
        Ok(out) => to_i16(&out.take_data()),
        // Unreachable for mono buffers sized by rubato itself; keep the call alive anyway.
        Err(e) => {
            tracing::error!(error = %e, from, to, "resampling failed");
            vec![0; (samples.len() as u64 * to as u64 / from as u64) as usize]
        }
    }
}

/// A resampler for a live stream fed in pieces of any size (RTP frames, TTS
/// sentences). Output is delayed by the filter; [`StreamResampler::flush`]
/// returns the tail.
///
/// Doubling the rate (8 kHz telephony to the 16 kHz canonical rate: every
/// caller on a phone line) takes a short interpolation filter instead of the
/// FFT resampler: each 20 ms in is 20 ms out at once, 3 ms late, where the
/// FFT's delay and its chunking held a caller's words back 20 ms.
pub struct StreamResampler {
    doubler: Option<Doubler>,
    inner: Option<Fft<f32>>,
    chunk_in: usize,
    pending: Vec<f32>,
    /// Start-up samples still to drop from the output.
    to_trim: usize,
    from: u32,
    to: u32,
    /// Input samples taken and output samples given, to size the flush.
    taken: u64,
    given: u64,
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz; equal rates pass samples through untouched.
    pub fn new(from: u32, to: u32) -> Self {
        if from == to || to == 2 * from {
            return StreamResampler {
                doubler: (to == 2 * from).then(Doubler::new),
                inner: None,
                chunk_in: 0,
                pending: vec![],
                to_trim: 0,
                from,
                to,
                taken: 0,
                given: 0,
            };
        }
        // 20 ms chunks: the unit every ingress delivers.
        let chunk_in = (from / 50) as usize;
        let inner = Fft::<f32>::new(from as usize, to as usize, chunk_in, 1, FixedSync::Input)
            .expect("valid resampler parameters for positive rates");
        let to_trim = inner.output_delay();
        StreamResampler {
            doubler: None,
            inner: Some(inner),
            chunk_in,
            pending: vec![],
            to_trim,
            from,
            to,
            taken: 0,
            given: 0,
        }
    }

    /// Feed samples; returns whatever output is ready.
    pub fn push(&mut self, samples: &[i16]) -> Vec<i16> {
        if let Some(doubler) = self.doubler.as_mut() {
            return doubler.push(samples);
        }
        let Some(inner) = self.inner.as_mut() else {
            return samples.to_vec();
        };
        self.taken += samples.len() as u64;
        self.pending
            .extend(samples.iter().map(|&s| s as f32 / 32768.0));
        let mut out = Vec::new();
        while self.pending.len() >= self.chunk_in {
            let chunk: Vec<f32> = self.pending.drain(..self.chunk_in).collect();
            let adapter = InterleavedSlice::new(&chunk, 1, chunk.len()).expect("mono slice");
            match inner.process(&adapter, None) {
                Ok(buf) => out.extend(buf.take_data()),
                Err(e) => tracing::error!(error = %e, "stream resampling failed"),
            }
        }
        let trim = self.to_trim.min(out.len());
        self.to_trim -= trim;
        let out = to_i16(&out[trim..]);
        self.given += out.len() as u64;
        out
    }

    /// Push silence through to get the rest of the signal out; the total
    /// output then matches the input duration.
    pub fn flush(&mut self) -> Vec<i16> {
        if self.inner.is_none() {
            return vec![];
        }
        let expected = self.taken * self.to as u64 / self.from as u64;
        let real_taken = self.taken;
        let silence = vec![0i16; self.chunk_in];
        let mut out = Vec::new();
        // The filter delay is a few chunks; the bound only guards against a bug.
        for _ in 0..64 {
            if self.given >= expected {
                break;
            }
            out.extend(self.push(&silence));
        }
        self.taken = real_taken;
        let excess = self.given.saturating_sub(expected) as usize;
        out.truncate(out.len().saturating_sub(excess));
        self.given -= excess as u64;
        self.pending.clear();
        out
    }
}

/// Taps each side of the doubler's centre: its delay, in output samples.
const DOUBLER_HALF: usize = 47;

/// Rate doubling by a half-band interpolation filter (Blackman-windowed
/// sinc, 95 taps: flat to 3.3 kHz, below -70 dB from 4.7 kHz, 3 ms delay
/// at 16 kHz). Output is exactly twice the input, delayed, never held back.
struct Doubler {
    taps: Vec<f32>,
    /// The zero-stuffed input, newest last, as long as the filter.
    history: std::collections::VecDeque<f32>,
}

impl Doubler {
    fn new() -> Self {
        let len = 2 * DOUBLER_HALF + 1;
        let taps = (0..len)
            .map(|i| {
                let n = i as f64 - DOUBLER_HALF as f64;
                // Cut-off at half the new Nyquist, gain 2 for the zeros stuffed in.
                let sinc = if n == 0.0 {
                    1.0
                } else {
                    (std::f64::consts::PI * n / 2.0).sin() / (std::f64::consts::PI * n / 2.0)
                };
                let x = 2.0 * std::f64::consts::PI * i as f64 / (len - 1) as f64;
                let blackman = 0.42 - 0.5 * x.cos() + 0.08 * (2.0 * x).cos();
                (sinc * blackman) as f32
            })
            .collect();
        Doubler {
            taps,
            history: std::iter::repeat_n(0.0, len).collect(),
        }
    }

    fn push(&mut self, samples: &[i16]) -> Vec<i16> {
        let mut out = Vec::with_capacity(samples.len() * 2);
        for &s in samples {
            for v in [s as f32, 0.0] {
                self.history.pop_front();
                self.history.push_back(v);
                let y: f32 = self
                    .taps
                    .iter()
                    .zip(self.history.iter().rev())
                    .map(|(t, h)| t * h)
                    .sum();
                out.push(y.round().clamp(-32768.0, 32767.0) as i16);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, rate: u32, ms: u32) -> Vec<i16> {
        let n = (rate * ms / 1000) as usize;
        (0..n)
            .map(|i| {
                ((i as f64 * freq * 2.0 * std::f64::consts::PI / rate as f64).sin() * 12000.0)
                    as i16
            })
            .collect()
    }

    /// Dominant frequency by counting zero crossings.
    fn zero_crossing_hz(s: &[i16], rate: u32) -> f64 {
        let crossings = s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        crossings as f64 / 2.0 / (s.len() as f64 / rate as f64)
    }

    #[test]
    fn whole_clip_keeps_duration_and_pitch() {
        for (from, to) in [
            (8000, 16000),
            (16000, 8000),
            (22050, 16000),
            (48000, 16000),
            (16000, 22050),
        ] {
            let input = sine(440.0, from, 1000);
            let out = resample(&input, from, to);
            assert!(
                (out.len() as i64 - to as i64).abs() <= 2,
                "{from}->{to}: {} samples",
                out.len()
            );
            let hz = zero_crossing_hz(&out[100..out.len() - 100], to);
            assert!((hz - 440.0).abs() < 5.0, "{from}->{to}: {hz} Hz");
        }
    }

    #[test]
    fn downsampling_removes_what_the_new_rate_cannot_hold() {
        // 6 kHz is above 8 kHz's Nyquist limit: it must be filtered, not aliased to 2 kHz.
        let input = sine(6000.0, 16000, 500);
        let out = resample(&input, 16000, 8000);
        assert!(
            crate::audio::rms_dbfs(&out[200..]) < -40.0,
            "{}",
            crate::audio::rms_dbfs(&out)
        );
    }

    #[test]
    fn stream_matches_duration_across_odd_pieces() {
        for (from, to) in [(8000u32, 16000u32), (16000, 8000), (22050, 16000)] {
            let input = sine(300.0, from, 1000);
            let mut rs = StreamResampler::new(from, to);
            let mut out = vec![];
            for piece in input.chunks(97) {
                out.extend(rs.push(piece));
            }
            out.extend(rs.flush());
            assert_eq!(out.len(), to as usize, "{from}->{to}");
            let hz = zero_crossing_hz(&out[200..out.len() - 200], to);
            assert!((hz - 300.0).abs() < 5.0, "{from}->{to}: {hz}");
        }
    }

    #[test]
    fn same_rate_is_a_passthrough() {
        let input = sine(300.0, 16000, 100);
        assert_eq!(resample(&input, 16000, 16000), input);
        let mut rs = StreamResampler::new(16000, 16000);
        assert_eq!(rs.push(&input), input);
    }

    /// Power of `freq` in `s` (Goertzel).
    fn power(s: &[i16], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / rate as f64;
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for &x in s {
            let c = x as f64 + 2.0 * w.cos() * a - b;
            b = a;
            a = c;
        }
        a * a + b * b - 2.0 * w.cos() * a * b
    }

    #[test]
    fn doubling_gives_every_frame_at_once_without_images() {
        let input = sine(1000.0, 8000, 1000);
        let mut rs = StreamResampler::new(8000, 16000);
        let mut out = vec![];
        for frame in input.chunks(160) {
            let piece = rs.push(frame);
            // 20 ms in, 20 ms out: nothing held back.
            assert_eq!(piece.len(), 320);
            out.extend(piece);
        }
        let steady = &out[1000..];
        let signal = power(steady, 16000, 1000.0);
        let image = power(steady, 16000, 7000.0);
        assert!(
            10.0 * (signal / image).log10() > 60.0,
            "image only {:.0} dB down",
            10.0 * (signal / image).log10()
        );
        let rms = |s: &[i16]| {
            (s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let gain = rms(steady) / rms(&input[500..]);
        assert!((gain - 1.0).abs() < 0.02, "gain {gain}");
    }
}
