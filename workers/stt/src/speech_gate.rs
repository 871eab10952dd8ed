//! Silero VAD (whisper.cpp's ggml port) in front of Whisper.
//!
//! Whisper invents text on silence and noise ("you", "(wind blowing)"), and
//! whisper-rs 0.16's own `enable_vad` has no effect, so the worker runs Silero
//! itself: no speech means Whisper does not run at all; otherwise Whisper gets
//! one window from the first speech start to the last speech end plus padding
//! (stitching the speech segments together raised the WER, BUILD-NOTES.md).

use std::ops::Range;
use std::path::Path;
use whisper_rs::{WhisperVadContext, WhisperVadContextParams, WhisperVadParams};

pub const SAMPLE_RATE: usize = 16_000;
/// Audio kept around the speech found, so that soft word edges survive.
const PADDING_SAMPLES: usize = SAMPLE_RATE / 5; // 0.2 s

pub struct SpeechGate {
    ctx: WhisperVadContext,
}

/// Where speech was found in a request's audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    /// First speech start to last speech end, in samples.
    pub found: Range<usize>,
    /// `found` with the padding, clamped to the audio: what Whisper gets.
    pub window: Range<usize>,
}

impl SpeechGate {
    pub fn load(model: &Path, threads: u16, use_gpu: bool) -> Result<Self, String> {
        let mut params = WhisperVadContextParams::new();
        params.set_n_threads(threads.into());
        params.set_use_gpu(use_gpu);
        crate::whisper_log::clear();
        let path = model
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", model.display()))?;
        let ctx = WhisperVadContext::new(path, params)
            .map_err(|e| crate::load_error("Silero VAD model", model, e))?;
        Ok(SpeechGate { ctx })
    }

    /// Find speech in 16 kHz `samples`; `None` when there is none.
    pub fn find(&mut self, samples: &[f32]) -> Result<Option<Speech>, String> {
        if samples.is_empty() {
            return Ok(None);
        }
        // whisper.cpp's defaults: threshold 0.5, speech >= 250 ms, silence
        // >= 100 ms ends a segment, 30 ms padding per segment.
        crate::whisper_log::clear();
        let segments = self
            .ctx
            .segments_from_samples(WhisperVadParams::new(), samples)
            .map_err(|e| format!("Silero VAD failed: {}", crate::whisper_log::reason(e)))?;
        // Segment times are in centiseconds.
        let to_sample = |cs: f32| {
            ((cs.max(0.0) as f64 / 100.0 * SAMPLE_RATE as f64) as usize).min(samples.len())
        };
        let mut found: Option<Range<usize>> = None;
        for segment in segments {
            let (start, end) = (to_sample(segment.start), to_sample(segment.end));
            found = Some(match found {
                None => start..end,
                Some(r) => r.start.min(start)..r.end.max(end),
            });
        }
        Ok(found.filter(|r| !r.is_empty()).map(|found| Speech {
            window: found.start.saturating_sub(PADDING_SAMPLES)
                ..(found.end + PADDING_SAMPLES).min(samples.len()),
            found,
        }))
    }
}
