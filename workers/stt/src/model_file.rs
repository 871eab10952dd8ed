//! Up-front checks of the model files, so that a wrong path or a damaged
//! download fails with a message naming the file and the fix, before
//! whisper.cpp answers with a bare null pointer.

use std::io::Read;
use std::path::Path;

/// `ggml` as whisper.cpp writes it: the u32 0x67676d6c, little-endian.
const GGML_MAGIC: &[u8; 4] = b"lmgg";
/// After the magic, whisper.cpp's VAD files name their model ("silero-16k");
/// Whisper files start with their hyper-parameters instead.
const SILERO_NAME: &[u8] = b"silero";

/// The two kinds of ggml file this worker loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Whisper,
    SileroVad,
}

impl ModelKind {
    fn describe(self) -> &'static str {
        match self {
            ModelKind::Whisper => "Whisper model",
            ModelKind::SileroVad => "Silero VAD model",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            ModelKind::Whisper => "--model",
            ModelKind::SileroVad => "--vad-model",
        }
    }
}

/// Check that `path` is a readable whisper.cpp ggml file of kind `expected`.
pub fn check(path: &Path, expected: ModelKind) -> Result<(), String> {
    let what = expected.describe();
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|f| f.take(16).read(&mut head));
    let n = match read {
        Ok(n) => n,
        Err(e) => {
            return Err(format!(
                "{what} {} cannot be read ({e}); pass {} with the file from the model pack \
                 (`understudy models fetch`)",
                path.display(),
                expected.flag()
            ))
        }
    };
    let refetch = "the file is damaged or of another format: fetch the model pack again \
                   (`understudy models fetch`)";
    if n < head.len() {
        return Err(format!(
            "{what} {} is only {n} bytes long; {refetch}",
            path.display()
        ));
    }
    if &head[..4] == b"GGUF" {
        return Err(format!(
            "{what} {} is a GGUF file (llama.cpp), not a whisper.cpp ggml model; {refetch}",
            path.display()
        ));
    }
    if &head[..4] != GGML_MAGIC {
        return Err(format!(
            "{what} {} does not start with the ggml magic; {refetch}",
            path.display()
        ));
    }
    let found = if head[8..].starts_with(SILERO_NAME) {
        ModelKind::SileroVad
    } else {
        ModelKind::Whisper
    };
    if found != expected {
        return Err(format!(
            "{} is a {}, not a {what}: pass it with {} instead",
            path.display(),
            found.describe(),
            found.flag()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn recognises_both_kinds_and_rejects_swaps() {
        let mut silero = b"lmgg\x0a\x00\x00\x00silero-16k".to_vec();
        silero.resize(64, 0);
        let mut whisper = b"lmgg".to_vec();
        whisper.extend_from_slice(&51864u32.to_le_bytes());
        whisper.resize(64, 0);
        let (_d1, silero) = file_with(&silero);
        let (_d2, whisper) = file_with(&whisper);
        assert!(check(&silero, ModelKind::SileroVad).is_ok());
        assert!(check(&whisper, ModelKind::Whisper).is_ok());
        let swapped = check(&silero, ModelKind::Whisper).unwrap_err();
        assert!(
            swapped.contains("is a Silero VAD model") && swapped.contains("--vad-model"),
            "{swapped}"
        );
    }

    #[test]
    fn names_the_file_when_missing_short_or_foreign() {
        let missing = check(
            Path::new("/nonexistent/ggml-tiny.en.bin"),
            ModelKind::Whisper,
        )
        .unwrap_err();
        assert!(
            missing.contains("/nonexistent/ggml-tiny.en.bin") && missing.contains("--model"),
            "{missing}"
        );
        let (_d, short) = file_with(b"lmgg");
        assert!(check(&short, ModelKind::Whisper)
            .unwrap_err()
            .contains("only 4 bytes"));
        let (_d, gguf) = file_with(&[b"GGUF".as_slice(), &[0u8; 60]].concat());
        assert!(check(&gguf, ModelKind::Whisper)
            .unwrap_err()
            .contains("GGUF"));
        let (_d, junk) = file_with(&[7u8; 64]);
        let err = check(&junk, ModelKind::Whisper).unwrap_err();
        assert!(
            err.contains(&junk.display().to_string()) && err.contains("magic"),
            "{err}"
        );
    }
}
