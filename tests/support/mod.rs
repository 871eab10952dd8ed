//! Support for the call plane's end-to-end tests: the installed test model
//! pack, the built worker binaries, synthesized callers.
#![allow(dead_code)] // each test crate uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use understudy::audio::{self, g711::Law, wav};
use understudy::config::Config;

mod require;
#[allow(unused_imports)] // not every test crate needs a program
pub use require::require;

pub const FETCH_HINT: &str = "run `understudy models fetch --pack test` (scripts/test.sh does)";

/// The models directory holding an installed test pack; fails the test otherwise.
pub fn models_dir() -> PathBuf {
    let dir = understudy_models::default_models_dir();
    if let Err(e) = understudy_models::resolve(&dir, "test") {
        panic!(
            "the test model pack is not installed in {}: {e:#}\n{FETCH_HINT}",
            dir.display()
        );
    }
    dir
}

/// The `understudy` binary under test.
pub fn understudy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_understudy"))
}

/// Where cargo put the worker binaries (beside `understudy`).
pub fn worker_dir() -> PathBuf {
    let dir = understudy_bin().parent().unwrap().to_path_buf();
    for w in ["vad", "stt", "llm", "tts", "embed"] {
        let path = dir.join(format!("understudy-{w}"));
        assert!(
            path.is_file(),
            "{} is missing: build the workspace first (`cargo build --release --workspace`)",
            path.display()
        );
    }
    dir
}

/// The configuration the tests run with: the test pack, the built workers.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.models.dir = models_dir();
    config.models.pack = "test".into();
    config.engines.worker_dir = Some(worker_dir());
    config
}

/// Run `understudy` with the test pack.
pub fn understudy(args: &[&str]) -> Output {
    let output = Command::new(understudy_bin())
        .arg("--pack")
        .arg("test")
        .arg("--models-dir")
        .arg(models_dir())
        .args(args)
        .env("UNDERSTUDY_WORKER_DIR", worker_dir())
        .output()
        .expect("run understudy");
    output
}

/// A caller saying `text` (espeak-ng), at 16 kHz, with line silence around it.
pub fn caller(text: &str, voice: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    understudy::bench::synthesize_caller(text, voice, dir.path(), "caller")
        .expect("espeak-ng (apt-get install espeak-ng)")
}

/// Write `samples` (16 kHz) as a WAV file.
pub fn write_wav(path: &Path, samples: &[i16]) {
    wav::write(path, audio::SAMPLE_RATE, samples).unwrap();
}

/// Write `samples` (16 kHz) as an 8 kHz G.711 mu-law WAV, as a phone line carries it.
pub fn write_telephone_wav(path: &Path, samples: &[i16]) {
    let narrow = audio::resample(samples, audio::SAMPLE_RATE, 8000);
    wav::write_g711(path, Law::Mu, 8000, &narrow).unwrap();
}

/// Share of the reference's words found in the hypothesis (order-free, normalized).
pub fn word_recall(reference: &str, hypothesis: &str) -> f64 {
    let r = understudy::bench::normalize_words(reference);
    let h = understudy::bench::normalize_words(hypothesis);
    if r.is_empty() {
        return 1.0;
    }
    r.iter().filter(|w| h.contains(w)).count() as f64 / r.len() as f64
}
