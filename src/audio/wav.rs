//! WAV files in and out. Reads PCM (8/16/24/32-bit), IEEE float and G.711
//! (A-law, mu-law) WAVs, including WAVE_FORMAT_EXTENSIBLE, at any rate and
//! channel count; writes 16-bit PCM or G.711. Malformed files give an error
//! that says what is wrong, never a panic.

use super::g711::Law;
use std::path::Path;

/// Mono audio at some rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second, in Hz.
    pub sample_rate: u32,
    /// Signed 16-bit PCM samples, one channel.
    pub samples: Vec<i16>,
}

impl Audio {
    /// Length of the audio, in ms.
    pub fn duration_ms(&self) -> f64 {
        super::samples_to_ms(self.samples.len(), self.sample_rate)
    }

    /// The same audio at the canonical rate.
    pub fn to_canonical(&self) -> Vec<i16> {
        super::resample(&self.samples, self.sample_rate, super::SAMPLE_RATE)
    }
}

/// Why a WAV file could not be read; each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be read from disk.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, as given.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// Not a well-formed WAV file (bad header or chunks).
    #[error("{path} is not a WAV file: {reason}")]
    Malformed {
        /// The file, as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid WAV file in an encoding we do not decode.
    #[error("{path} uses an unsupported WAV encoding ({what}); convert it to 16-bit PCM, e.g. `sox IN -b 16 -e signed-integer OUT.wav`")]
    Unsupported {
        /// The file, as given.
        path: String,
        /// The encoding found (format tag, bits per sample).
        what: String,
    },
}

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_ALAW: u16 = 6;
const FORMAT_MULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xfffe;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// Read a WAV file as mono audio (channels are averaged).
pub fn read(path: &Path) -> Result<Audio, WavError> {
    let bytes = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes).map_err(|e| e.with_path(path))
}

/// Read a WAV file and convert it to the canonical 16 kHz mono.
pub fn read_canonical(path: &Path) -> Result<Vec<i16>, WavError> {
    Ok(read(path)?.to_canonical())
}

/// An error before we know the file name.
#[derive(Debug)]
pub enum ParseError {
    /// Not a well-formed WAV file; the reason.
    Malformed(String),
    /// An encoding we do not decode; which one.
    Unsupported(String),
}

impl ParseError {
    fn with_path(self, path: &Path) -> WavError {
        let path = path.display().to_string();
        match self {
            ParseError::Malformed(reason) => WavError::Malformed { path, reason },
            ParseError::Unsupported(what) => WavError::Unsupported { path, what },
        }
    }
}

fn malformed(s: &str) -> ParseError {
    ParseError::Malformed(s.to_string())
}

/// Parse WAV bytes.
pub fn parse(bytes: &[u8]) -> Result<Audio, ParseError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(malformed("no RIFF/WAVE header"));
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None; // (format, channels, rate, bits)
    let mut data: Option<&[u8]> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len =
            u32_at(bytes, pos + 4).ok_or_else(|| malformed("truncated chunk header"))? as usize;
        let body_start = pos + 8;
        // A data chunk whose length overruns the file is common in streamed
        // recordings (length 0 or 0xFFFFFFFF): take what is there.
        let body_end = body_start.saturating_add(len).min(bytes.len());
        let body = &bytes[body_start..body_end];
        match id {
            b"fmt " => {
                if body.len() < 16 {
                    return Err(malformed("fmt chunk shorter than 16 bytes"));
                }
                let mut format = u16_at(body, 0).unwrap();
                let channels = u16_at(body, 2).unwrap();
                let rate = u32_at(body, 4).unwrap();
                let bits = u16_at(body, 14).unwrap();
                if format == FORMAT_EXTENSIBLE {
                    // The real format is the first two bytes of the sub-format GUID.
                    format = u16_at(body, 24)
                        .ok_or_else(|| malformed("truncated WAVE_FORMAT_EXTENSIBLE"))?;
                }
                fmt = Some((format, channels, rate, bits));
            }
            b"data" => {
                data = Some(body);
                if len == 0 || len == u32::MAX as usize {
                    data = Some(&bytes[body_start..]);
                }
            }
            _ => {}
        }
        // Chunks are padded to even lengths.
        pos = body_start.saturating_add(len).saturating_add(len & 1);
    }
    let (format, channels, rate, bits) = fmt.ok_or_else(|| malformed("no fmt chunk"))?;
    let data = data.ok_or_else(|| malformed("no data chunk"))?;
    if channels == 0 {
        return Err(malformed("zero channels"));
    }
    if !(1000..=384_000).contains(&rate) {
        return Err(malformed(&format!("implausible sample rate {rate} Hz")));
    }
    let interleaved: Vec<i32> = match (format, bits) {
        (FORMAT_PCM, 8) => data.iter().map(|&b| ((b as i32) - 128) << 8).collect(),
        (FORMAT_PCM, 16) => data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
            .collect(),
        (FORMAT_PCM, 24) => data
            .chunks_exact(3)
            .map(|c| i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 16)
            .collect(),
        (FORMAT_PCM, 32) => data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) >> 16)
            .collect(),
        (FORMAT_FLOAT, 32) => data
            .chunks_exact(4)
            .map(|c| {
                (f32::from_le_bytes([c[0], c[1], c[2], c[3]]).clamp(-1.0, 1.0) * 32767.0) as i32
            })
            .collect(),
        (FORMAT_FLOAT, 64) => data
            .chunks_exact(8)
            .map(|c| (f64::from_le_bytes(c.try_into().unwrap()).clamp(-1.0, 1.0) * 32767.0) as i32)
            .collect(),
        (FORMAT_ALAW, 8) => Law::A.decode(data).into_iter().map(i32::from).collect(),
        (FORMAT_MULAW, 8) => Law::Mu.decode(data).into_iter().map(i32::from).collect(),
        (f, b) => {
            return Err(ParseError::Unsupported(format!(
                "format tag {f:#x} with {b} bits per sample"
            )))
        }
    };
    let channels = channels as usize;
    let samples = interleaved
        .chunks_exact(channels)
        .map(|frame| (frame.iter().sum::<i32>() / channels as i32).clamp(-32768, 32767) as i16)
        .collect();
    Ok(Audio {
        sample_rate: rate,
        samples,
    })
}

fn header(format: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block_align = bits / 8;
    let mut h = Vec::with_capacity(46);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len + (data_len & 1)).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// 16-bit PCM mono WAV bytes.
pub fn encode_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let mut out = header(FORMAT_PCM, rate, 16, (samples.len() * 2) as u32);
    out.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    out
}

/// Write 16-bit PCM mono.
pub fn write(path: &Path, rate: u32, samples: &[i16]) -> std::io::Result<()> {
    std::fs::write(path, encode_pcm16(rate, samples))
}

/// Write G.711 mono (as a telephone line would carry it).
pub fn write_g711(path: &Path, law: Law, rate: u32, samples: &[i16]) -> std::io::Result<()> {
    let codes = law.encode(samples);
    let tag = match law {
        Law::A => FORMAT_ALAW,
        Law::Mu => FORMAT_MULAW,
    };
    let mut out = header(tag, rate, 8, codes.len() as u32);
    out.extend_from_slice(&codes);
    if codes.len() % 2 == 1 {
        out.push(0);
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16_round_trip() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 31 % 2000 - 1000) as i16).collect();
        let audio = parse(&encode_pcm16(8000, &samples)).unwrap();
        assert_eq!(
            audio,
            Audio {
                sample_rate: 8000,
                samples
            }
        );
    }

    #[test]
    fn g711_files_written_by_sox_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.wav");
        let samples: Vec<i16> = (0..800)
            .map(|i| ((i as f64 / 10.0).sin() * 10000.0) as i16)
            .collect();
        write(&src, 8000, &samples).unwrap();
        for (enc, law) in [("u-law", Law::Mu), ("a-law", Law::A)] {
            let out = dir.path().join(format!("{enc}.wav"));
            let status = std::process::Command::new("sox")
                .arg("-D") // no dither: compare the codec, not sox's noise
                .arg(&src)
                .args(["-e", enc, "-b", "8"])
                .arg(&out)
                .status()
                .expect("sox is required for this test (apt-get install sox)");
            assert!(status.success());
            let audio = read(&out).unwrap();
            assert_eq!(audio.sample_rate, 8000);
            assert_eq!(audio.samples.len(), samples.len());
            // sox's encoder rounds where ours truncates (see g711.rs): compare
            // with one quantization step of slack.
            for (read, original) in audio.samples.iter().zip(&samples) {
                let (r, o) = (*read as i32, *original as i32);
                assert!(
                    (r - o).abs() <= o.abs() / 8 + 40,
                    "{enc}: {o} read back as {r}"
                );
            }
            // And our own G.711 writer reads back identically.
            let ours = dir.path().join(format!("ours-{enc}.wav"));
            write_g711(&ours, law, 8000, &samples).unwrap();
            assert_eq!(
                read(&ours).unwrap().samples,
                law.decode(&law.encode(&samples))
            );
        }
    }

    #[test]
    fn stereo_and_float_files_are_mixed_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("f.wav");
        let status = std::process::Command::new("sox")
            .args([
                "-n",
                "-r",
                "44100",
                "-c",
                "2",
                "-e",
                "floating-point",
                "-b",
                "32",
            ])
            .arg(&out)
            .args(["synth", "0.5", "sine", "440", "vol", "0.5"])
            .status()
            .expect("sox");
        assert!(status.success());
        let audio = read(&out).unwrap();
        assert_eq!(audio.sample_rate, 44100);
        assert_eq!(audio.samples.len(), 22050);
        let peak = audio
            .samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap();
        assert!((15000..=17000).contains(&peak), "{peak}");
    }

    #[test]
    fn garbage_gives_errors_not_panics() {
        assert!(matches!(parse(b""), Err(ParseError::Malformed(_))));
        assert!(matches!(
            parse(b"RIFF\0\0\0\0WAVE"),
            Err(ParseError::Malformed(_))
        ));
        let mut truncated = encode_pcm16(16000, &[1, 2, 3]);
        truncated.truncate(30);
        assert!(parse(&truncated).is_err());
        // Every prefix and a few corruptions of a valid file: no panic.
        let good = encode_pcm16(16000, &[5; 64]);
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = parse(&bad);
        }
        let mut mp3ish = encode_pcm16(16000, &[0; 4]);
        mp3ish[20] = 0x55; // MPEG layer 3 format tag
        assert!(matches!(parse(&mp3ish), Err(ParseError::Unsupported(_))));
    }
}
