//! The parts of a ggml Whisper file that are not tensors: the mel filter bank
//! (as Whisper computes it) and the BPE vocabulary as bytes.

use super::*;

/// Slaney-style mel filter bank (librosa `filters.mel(sr, n_fft, n_mels)` with its defaults:
/// fmin 0, fmax sr/2, norm "slaney"), row-major `[n_mels, n_fft/2 + 1]`. The arithmetic follows
/// librosa step by step, including computing in f64 and rounding the triangle weights to f32
/// before the normalisation, so the result is bit-identical to whisper's `mel_filters.npz`.
pub fn mel_filters(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<f32> {
    // Slaney's auditory scale: linear below 1 kHz, logarithmic above.
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    let hz_to_mel = |hz: f64| {
        if hz >= MIN_LOG_HZ {
            MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
        } else {
            hz / F_SP
        }
    };
    let mel_to_hz = |mel: f64| {
        if mel >= MIN_LOG_MEL {
            MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
        } else {
            F_SP * mel
        }
    };

    // n_mels + 2 band edges, evenly spaced in mel (numpy.linspace: i * step + start, exact end).
    let n_edges = n_mels + 2;
    let (low, high) = (hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0));
    let step = (high - low) / (n_edges - 1) as f64;
    let edges_hz: Vec<f64> = (0..n_edges)
        .map(|i| {
            if i == n_edges - 1 {
                high
            } else {
                i as f64 * step + low
            }
        })
        .map(mel_to_hz)
        .collect();
    let n_bins = n_fft / 2 + 1;
    let bin_hz = 1.0 / (n_fft as f64 * (1.0 / sample_rate)); // numpy.fft.rfftfreq
    let mut weights = Vec::with_capacity(n_mels * n_bins);
    for m in 0..n_mels {
        let (left, center, right) = (edges_hz[m], edges_hz[m + 1], edges_hz[m + 2]);
        let norm = 2.0 / (right - left);
        for k in 0..n_bins {
            let f = k as f64 * bin_hz;
            let rising = -(left - f) / (center - left);
            let falling = (right - f) / (right - center);
            let triangle = rising.min(falling);
            // `if` rather than f64::max so that -0.0 becomes +0.0 as in numpy.maximum(0, x).
            let triangle = if triangle > 0.0 { triangle as f32 } else { 0.0 };
            weights.push((triangle as f64 * norm) as f32);
        }
    }
    weights
}

/// GPT-2's byte-level BPE alphabet: printable bytes stand for themselves, the others were
/// shifted to U+0100.. so that every token is printable text (`bytes_to_unicode` in GPT-2).
pub(super) fn gpt2_byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                shifted += 1;
                (char::from_u32(255 + shifted).expect("valid code point"), b)
            }
        })
        .collect()
}

/// The BPE tokens whisper.cpp expects in the vocab section, as raw bytes: the entries of
/// `vocabulary.txt` before the special tokens, plus `<|endoftext|>` for English-only models.
/// That is what whisper.cpp's published files hold (50257 entries for both kinds of model);
/// whisper.cpp names the special tokens after these itself.
pub fn bpe_tokens(vocabulary: &str, multilingual: bool) -> Result<Vec<Vec<u8>>> {
    // One token per line; an empty line is a real (empty) token in multilingual vocabularies.
    let lines: Vec<&str> = vocabulary
        .strip_suffix('\n')
        .unwrap_or(vocabulary)
        .split('\n')
        .collect();
    let eot = lines
        .iter()
        .position(|t| *t == END_OF_TEXT)
        .with_context(|| format!("vocabulary has no {END_OF_TEXT} token"))?;
    let count = if multilingual { eot } else { eot + 1 };
    let decoder = gpt2_byte_decoder();
    lines[..count]
        .iter()
        .enumerate()
        .map(|(id, token)| {
            token
                .chars()
                .map(|c| decoder.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .with_context(|| {
                    format!("vocabulary token {id} ({token:?}) is not GPT-2 byte-level text")
                })
        })
        .collect()
}
