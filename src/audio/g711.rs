//! G.711 mu-law and A-law, bit-exact with the ITU-T G.191 reference
//! implementation (STL `g711.c`): negative inputs take the 1's complement
//! before dropping the bits G.711 does not carry. Other encoders round those
//! bits differently (sox does) and then differ by one quantization step on a
//! few hundred inputs; the tests check that, too.

/// The sample rate of G.711 on the wire (telephone audio).
pub const WIRE_RATE: u32 = 8000;
/// Samples per 20 ms packet on the wire.
pub const WIRE_FRAME: usize = 160;

const MULAW_BIAS: i32 = 0x84;

/// Encode one linear sample to mu-law (14 significant bits, as G.191).
pub fn mulaw_encode(sample: i16) -> u8 {
    let x = sample as i32;
    // 14-bit magnitude (1's complement for negatives) plus the mu-law offset of 33.
    let magnitude = (if x < 0 { !x } else { x } >> 2) + 33;
    let magnitude = magnitude.min(0x1fff);
    // Segment 1..=8: one more than the bit length of magnitude / 64.
    let segment = 1 + (32 - ((magnitude >> 6) as u32).leading_zeros()) as i32;
    let high = 8 - segment;
    let low = 0x0f - ((magnitude >> segment) & 0x0f);
    let sign = if x >= 0 { 0x80 } else { 0 };
    ((high << 4) | low | sign) as u8
}

/// Decode one mu-law byte.
pub fn mulaw_decode(code: u8) -> i16 {
    let c = !code as i32;
    let sign = c & 0x80;
    let exponent = (c >> 4) & 0x07;
    let mantissa = c & 0x0f;
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

/// Encode one linear sample to A-law (13 significant bits, as G.191).
pub fn alaw_encode(sample: i16) -> u8 {
    let x = sample as i32;
    // 12-bit magnitude below the sign, 1's complement for negatives.
    let mut code = if x < 0 { !x } else { x } >> 4;
    if code > 15 {
        // Segments 1..=7: normalise the mantissa to 16..=31, counting shifts.
        let mut exponent = 1;
        while code > 31 {
            code >>= 1;
            exponent += 1;
        }
        code = (code - 16) + (exponent << 4);
    }
    if x >= 0 {
        code |= 0x80;
    }
    (code ^ 0x55) as u8
}

/// Decode one A-law byte.
pub fn alaw_decode(code: u8) -> i16 {
    let c = (code ^ 0x55) as i32;
    let exponent = (c >> 4) & 0x07;
    let mantissa = c & 0x0f;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    (if c & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Law {
    /// PCMU, RTP payload type 0.
    Mu,
    /// PCMA, RTP payload type 8.
    A,
}

impl Law {
    /// Encode 16-bit linear PCM to one G.711 byte per sample.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Law::Mu => samples.iter().map(|&s| mulaw_encode(s)).collect(),
            Law::A => samples.iter().map(|&s| alaw_encode(s)).collect(),
        }
    }

    /// Decode G.711 bytes to 16-bit linear PCM, one sample per byte.
    pub fn decode(self, codes: &[u8]) -> Vec<i16> {
        match self {
            Law::Mu => codes.iter().map(|&c| mulaw_decode(c)).collect(),
            Law::A => codes.iter().map(|&c| alaw_decode(c)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Encode all 65,536 s16 values with sox, an encoder we did not write.
    fn sox_encode(encoding: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("all.raw");
        let output = dir.path().join("all.out");
        let bytes: Vec<u8> = (i16::MIN..=i16::MAX)
            .flat_map(|s| s.to_le_bytes())
            .collect();
        std::fs::write(&input, bytes).unwrap();
        // -D: no dither (sox dithers by default when reducing bit depth).
        let status = Command::new("sox")
            .args([
                "-D",
                "-t",
                "raw",
                "-r",
                "8000",
                "-e",
                "signed-integer",
                "-b",
                "16",
                "-c",
                "1",
                "-L",
            ])
            .arg(&input)
            .args(["-t", "raw", "-e", encoding, "-b", "8"])
            .arg(&output)
            .status()
            .expect("sox is required for the G.711 cross-check (apt-get install sox)");
        assert!(status.success(), "sox failed");
        std::fs::read(output).unwrap()
    }

    /// A code's position on the signed quantization scale.
    fn level(law: Law, code: u8) -> i32 {
        law.decode(&[code])[0] as i32
    }

    /// sox rounds the dropped low bits where G.191 truncates: the two may
    /// only disagree by one quantization step, and only near step edges.
    fn check_against_sox(law: Law, encoding: &str, max_disagreements: usize) {
        let reference = sox_encode(encoding);
        let mut levels: Vec<i32> = (0..=255u8).map(|c| level(law, c)).collect();
        levels.sort();
        levels.dedup();
        let index = |v: i32| levels.binary_search(&v).unwrap() as i64;
        let mut disagreements = 0;
        for (x, sox_code) in (i16::MIN..=i16::MAX).zip(&reference) {
            let ours = law.encode(&[x])[0];
            if ours != *sox_code {
                disagreements += 1;
                let steps = (index(level(law, ours)) - index(level(law, *sox_code))).abs();
                assert!(
                    steps <= 1,
                    "{law:?} {x}: ours {ours:#x} vs sox {sox_code:#x}, {steps} steps apart"
                );
            }
        }
        assert!(
            disagreements <= max_disagreements,
            "{law:?}: {disagreements} disagreements with sox"
        );
    }

    #[test]
    fn mulaw_agrees_with_sox_up_to_rounding() {
        check_against_sox(Law::Mu, "u-law", 600);
    }

    #[test]
    fn alaw_agrees_with_sox_up_to_rounding() {
        check_against_sox(Law::A, "a-law", 1100);
    }

    /// The G.191 convention: a negative input codes like its 1's complement
    /// with the sign bit cleared.
    #[test]
    fn negative_inputs_mirror_their_ones_complement() {
        for x in i16::MIN..0 {
            assert_eq!(mulaw_encode(x) ^ 0x80, mulaw_encode(!x), "mu-law {x}");
            assert_eq!(alaw_encode(x) ^ 0x80, alaw_encode(!x), "A-law {x}");
        }
    }

    /// Positive inputs land in the G.711 interval whose reconstruction value
    /// is nearest: the decoded value is within half a step of the input
    /// (plus the low bits G.711 drops).
    #[test]
    fn positive_inputs_decode_within_half_a_step() {
        for x in 0..=i16::MAX {
            let x32 = x as i32;
            let mu = mulaw_encode(x);
            let exponent = ((!mu >> 4) & 7) as i32;
            let step = 8 << exponent;
            let decoded = mulaw_decode(mu) as i32;
            assert!(
                x32 > 32124 || (decoded - x32).abs() <= step / 2 + 3,
                "mu-law {x} -> {decoded}"
            );

            let a = alaw_encode(x);
            let exponent = (((a ^ 0x55) >> 4) & 7) as i32;
            let step = if exponent <= 1 {
                16
            } else {
                16 << (exponent - 1)
            };
            let decoded = alaw_decode(a) as i32;
            assert!(
                x32 > 32256 || (decoded - x32).abs() <= step / 2 + 15,
                "A-law {x} -> {decoded}"
            );
        }
    }

    #[test]
    fn known_codes() {
        // G.711: mu-law silence is 0xFF, A-law's smallest positive is 0xD5.
        assert_eq!(mulaw_encode(0), 0xff);
        assert_eq!(mulaw_decode(0xff), 0);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(mulaw_decode(0x80), 32124);
        assert_eq!(alaw_decode(0xaa), 32256);
    }

    #[test]
    fn decode_then_encode_is_identity_on_codes() {
        for code in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#x}");
            // 0x7f and 0xff both mean zero in mu-law.
            if code != 0x7f {
                assert_eq!(mulaw_encode(mulaw_decode(code)), code, "mu-law {code:#x}");
            }
        }
    }
}
