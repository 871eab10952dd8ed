//! Unit tests of `manifest`.

use super::*;

#[test]
fn builtin_manifest_parses_and_pins_every_file() {
    let m = Manifest::builtin().unwrap();
    for artefact in &m.artefacts {
        for package in &artefact.packages {
            assert!(
                package.sha256.is_some(),
                "package {} of {} is not pinned",
                package.name,
                artefact.name
            );
        }
        for file in &artefact.files {
            assert!(file.sha256.is_some(), "{} has no sha256", file.path);
            assert!(file.size > 0, "{} has no size", file.path);
        }
    }
}

#[test]
fn engine_packs_provide_every_engine_role() {
    let m = Manifest::builtin().unwrap();
    let engine_roles = [
        Role::SttModel,
        Role::SttVadModel,
        Role::VadModel,
        Role::TurnModel,
        Role::LlmModel,
        Role::TtsVoice,
        Role::OnnxruntimeLib,
        Role::EmbedDir,
        Role::TestAudio,
    ];
    for pack in ["test", "default", "default-1.5b"] {
        let roles: BTreeSet<Role> = m.select(pack).unwrap().iter().map(|a| a.role).collect();
        assert_eq!(roles, engine_roles.into_iter().collect(), "pack {pack}");
    }
}

#[test]
fn pinned_sizes_match_models_md() {
    // Figures MODELS.md measured; the converter must reproduce the ggml sizes exactly.
    let m = Manifest::builtin().unwrap();
    let size = |artefact: &str| m.artefact(artefact).unwrap().files[0].size;
    assert_eq!(size("whisper-tiny.en"), 77_704_715);
    assert_eq!(size("whisper-base"), 147_951_465);
    assert_eq!(size("qwen2.5-coder-0.5b-instruct-q4_k_m"), 491_400_064);
    assert_eq!(size("qwen2.5-coder-1.5b-instruct-q4_k_m"), 1_117_320_768);
    assert_eq!(size("silero-vad-ggml"), 885_098);
    assert_eq!(size("silero-vad-onnx"), 2_327_524);
    assert_eq!(size("smart-turn-v3.2"), 8_679_182);
    assert_eq!(size("piper-en_US-joe-medium"), 63_201_294);
}

#[test]
fn larger_llm_pack_differs_from_default_only_by_its_llm() {
    let m = Manifest::builtin().unwrap();
    let names = |pack| {
        m.select(pack)
            .unwrap()
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
    };
    let (default, big) = (names("default"), names("default-1.5b"));
    let differing: Vec<(&&str, &&str)> = default.iter().zip(&big).filter(|(a, b)| a != b).collect();
    assert_eq!(default.len(), big.len());
    assert_eq!(
        differing,
        [(
            &"qwen2.5-coder-0.5b-instruct-q4_k_m",
            &"qwen2.5-coder-1.5b-instruct-q4_k_m"
        )]
    );
}

#[test]
fn unknown_pack_lists_the_known_ones() {
    let m = Manifest::builtin().unwrap();
    let err = m.select("tiny").unwrap_err().to_string();
    assert!(
        err.contains("\"tiny\"") && err.contains("test, default"),
        "{err}"
    );
}

#[test]
fn validation_rejects_bad_manifests() {
    let base = r#"
schema = 1
[[pack]]
name = "p"
description = "d"
artefacts = ["a"]
[[artefact]]
name = "a"
role = "stt_model"
path = "stt/a.bin"
licence = "MIT"
upstream = "u"
description = "d"
[[artefact.package]]
registry = "pypi"
name = "pkg"
version = "1"
file = "pkg-1-py3-none-any.whl"
[[artefact.file]]
path = "stt/a.bin"
size = 1
build = "copy"
inputs = [{ package = "pkg", member = "a.bin" }]
"#;
    Manifest::parse(base).unwrap();
    let cases = [
        (
            base.replace("\"stt/a.bin\"\nsize", "\"../a.bin\"\nsize"),
            "must be relative",
        ),
        (
            base.replace("{ package = \"pkg\"", "{ package = \"other\""),
            "not a package of this artefact",
        ),
        (
            base.replace("build = \"copy\"", "build = \"ct2-whisper-ggml\""),
            "vocabulary",
        ),
        (
            base.replace("artefacts = [\"a\"]", "artefacts = [\"a\", \"b\"]"),
            "unknown artefact",
        ),
        (
            base.replace("size = 1\n", "size = 1\nsha256 = \"ABC\"\n"),
            "64 lowercase hex",
        ),
        (base.replace("schema = 1", "schema = 2"), "schema 2"),
        (
            base.replace(
                "artefacts = [\"a\"]",
                "artefacts = [\"a\"]\nfast_stt = \"b\"",
            ),
            "not one of the pack's artefacts",
        ),
    ];
    for (text, expected) in cases {
        let err = format!("{:#}", Manifest::parse(&text).unwrap_err());
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}
