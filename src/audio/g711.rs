//! G.711 mu-law and A-law, as ITU-T G.711 (and its G.191 reference code)
//! defines them. The tests compare every one of the 65,536 inputs with an
//! independent encoder (sox).

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32635;

/// Encode one linear sample to mu-law.
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(MULAW_CLIP) + MULAW_BIAS;
    // Segment = position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) | mantissa) as u8
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

/// Encode one linear sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let s = (sample as i32) >> 3;
    let (sign, magnitude) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let exponent = 31 - (magnitude as u32).leading_zeros() as i32 - 4; // 1..=7 for 32..4095
        if exponent > 7 {
            0x7f
        } else {
            ((exponent << 4) | ((magnitude >> exponent) & 0x0f)) as u8
        }
    };
    (code | sign) ^ 0x55
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
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Law::Mu => samples.iter().map(|&s| mulaw_encode(s)).collect(),
            Law::A => samples.iter().map(|&s| alaw_encode(s)).collect(),
        }
    }

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

    /// Encode all 65,536 s16 values with sox, an implementation we did not write.
    fn sox_encode(encoding: &str) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("all.raw");
        let output = dir.path().join("all.out");
        let bytes: Vec<u8> = (i16::MIN..=i16::MAX).flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(&input, bytes).unwrap();
        let status = Command::new("sox")
            .args(["-t", "raw", "-r", "8000", "-e", "signed-integer", "-b", "16", "-c", "1", "-L"])
            .arg(&input)
            .args(["-t", "raw", "-e", encoding, "-b", "8"])
            .arg(&output)
            .status()
            .ok()?;
        assert!(status.success(), "sox failed");
        Some(std::fs::read(output).unwrap())
    }

    fn sox_or_fail() -> bool {
        let found = Command::new("sox").arg("--version").output().is_ok();
        assert!(found, "sox is required for the G.711 reference tests (apt-get install sox)");
        found
    }

    #[test]
    fn mulaw_matches_sox_for_every_input() {
        sox_or_fail();
        let reference = sox_encode("u-law").unwrap();
        let mismatches: Vec<i16> = (i16::MIN..=i16::MAX)
            .zip(&reference)
            .filter(|(s, r)| mulaw_encode(*s) != **r)
            .map(|(s, _)| s)
            .collect();
        assert!(mismatches.is_empty(), "{} mismatches, first {:?}", mismatches.len(), &mismatches[..mismatches.len().min(5)]);
    }

    #[test]
    fn alaw_matches_sox_for_every_input() {
        sox_or_fail();
        let reference = sox_encode("a-law").unwrap();
        let mismatches: Vec<i16> = (i16::MIN..=i16::MAX)
            .zip(&reference)
            .filter(|(s, r)| alaw_encode(*s) != **r)
            .map(|(s, _)| s)
            .collect();
        assert!(mismatches.is_empty(), "{} mismatches, first {:?}", mismatches.len(), &mismatches[..mismatches.len().min(5)]);
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
