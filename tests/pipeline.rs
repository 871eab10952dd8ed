//! The local voice bot end to end, through the `understudy` binary with the
//! test model pack: real worker processes, real models, synthesized callers.

mod support;

use serde_json::Value;
use support::*;

/// Run `understudy converse --json` and return its turns.
fn converse(wavs: &[&std::path::Path], out_dir: &std::path::Path) -> Vec<Value> {
    let mut args = vec![
        "converse".to_string(),
        "--json".into(),
        "--out-dir".into(),
        out_dir.display().to_string(),
    ];
    args.extend(wavs.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = understudy(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "converse failed:\n{stderr}");
    let turns: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    assert!(!turns.is_empty(), "no turns printed; stderr:\n{stderr}");
    turns
}

fn turn(turns: &[Value], n: u64) -> &Value {
    turns
        .iter()
        .find(|t| t["turn"] == n)
        .unwrap_or_else(|| panic!("no turn {n} in {turns:#?}"))
}

#[test]
fn a_synthesized_caller_reaches_the_intent_and_the_reply_audio_says_the_reply() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("caller.wav");
    write_wav(
        &wav,
        &caller("Hi, I want to know where my package is.", "en-us"),
    );
    let turns = converse(&[&wav], &dir.path().join("out"));

    let t1 = turn(&turns, 1);
    assert_eq!(t1["intent"], "order_status", "{t1:#}");
    assert!(
        word_recall("where my package is", t1["transcript"].as_str().unwrap()) >= 0.75,
        "{t1:#}"
    );
    for key in ["stt", "dialog", "tts_first_audio", "voice_to_voice"] {
        assert!(
            t1["timings_ms"][key].as_f64().is_some_and(|ms| ms >= 0.0),
            "timings_ms.{key} missing: {t1:#}"
        );
    }

    // The bot's audio for the turn, transcribed by the same STT, says the reply.
    let reply = t1["reply"].as_str().unwrap();
    let bot_wav = t1["bot_wav"].as_str().unwrap();
    let out = understudy(&["transcribe", bot_wav]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = String::from_utf8_lossy(&out.stdout);
    assert!(
        word_recall(reply, &heard) >= 0.7,
        "reply {reply:?} but the audio says {heard:?}"
    );
}

#[test]
fn an_8khz_g711_caller_is_understood_across_turns() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.wav");
    let second = dir.path().join("second.wav");
    write_telephone_wav(
        &first,
        &caller("Hello, I'd like to check on my order.", "en-us+m3"),
    );
    write_telephone_wav(&second, &caller("It is 4 8 2 1 3.", "en-us+m3"));
    // The files really are 8 kHz mu-law.
    let bytes = std::fs::read(&first).unwrap();
    assert_eq!(
        u16::from_le_bytes([bytes[20], bytes[21]]),
        7,
        "format tag must be mu-law"
    );
    assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 8000);

    let turns = converse(&[&first, &second], &dir.path().join("out"));
    assert_eq!(turn(&turns, 1)["intent"], "order_status", "{turns:#?}");
    let t2 = turn(&turns, 2);
    assert_eq!(t2["slots"]["order_number"], "48213", "{t2:#}");
    assert!(
        t2["reply"].as_str().unwrap().contains("4 8 2 1 3"),
        "{t2:#}"
    );
}

#[test]
fn silence_gives_no_transcript_and_a_reprompt() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("silence.wav");
    write_wav(&wav, &vec![0i16; 16000 * 2]);
    let turns = converse(&[&wav], &dir.path().join("out"));
    let t1 = turn(&turns, 1);
    assert_eq!(
        t1["transcript"], "",
        "silence must not produce words: {t1:#}"
    );
    assert!(t1["intent"].is_null(), "{t1:#}");
    assert!(
        !t1["reply"].as_str().unwrap().is_empty(),
        "the bot should reprompt: {t1:#}"
    );
    assert_eq!(t1["safety_net"], false);
}

/// A copy of the test pack in which one file is replaced.
fn pack_with(replace: &str, content: Option<Vec<u8>>) -> tempfile::TempDir {
    let src = models_dir();
    let dir = tempfile::tempdir().unwrap();
    for sub in ["stt", "vad", "llm", "tts", "lib", "embed", "test-audio"] {
        copy_tree(&src.join(sub), &dir.path().join(sub));
    }
    let target = dir.path().join(replace);
    std::fs::remove_file(&target).unwrap();
    if let Some(bytes) = content {
        std::fs::write(&target, bytes).unwrap();
    }
    dir
}

/// Symlink every file (the pack is large); replaced files become real files.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::os::unix::fs::symlink(entry.path(), dest).unwrap();
        }
    }
}

fn transcribe_with_models(models: &std::path::Path) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("x.wav");
    write_wav(&wav, &caller("Hello.", "en-us"));
    let output = std::process::Command::new(understudy_bin())
        .args(["--pack", "test", "--models-dir"])
        .arg(models)
        .arg("transcribe")
        .arg(&wav)
        .env("UNDERSTUDY_WORKER_DIR", worker_dir())
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn a_corrupt_model_file_gives_an_error_naming_it() {
    let rel = "stt/ggml-tiny.en.bin";
    let size = std::fs::metadata(models_dir().join(rel)).unwrap().len() as usize;
    // Same size (so only loading can tell), wrong bytes.
    let junk: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
    let models = pack_with(rel, Some(junk));
    let (ok, stderr) = transcribe_with_models(models.path());
    assert!(!ok, "a corrupt model must fail");
    assert!(
        stderr.contains("ggml-tiny.en.bin"),
        "the error must name the file:\n{stderr}"
    );
    assert!(
        stderr.contains("models verify") || stderr.contains("models fetch"),
        "the error must say what to do:\n{stderr}"
    );
}

#[test]
fn a_missing_model_file_gives_an_error_naming_it_and_the_fix() {
    let models = pack_with("tts/en_US-joe-medium.onnx", None);
    let output = std::process::Command::new(understudy_bin())
        .args(["--pack", "test", "--models-dir"])
        .arg(models.path())
        .args(["say", "hello", "--out", "/dev/null"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("en_US-joe-medium.onnx"), "{stderr}");
    assert!(stderr.contains("understudy models fetch"), "{stderr}");
}

#[test]
fn transcribe_and_say_round_trip_through_8khz() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("said.wav");
    let said = understudy(&[
        "say",
        "Your order will arrive on Thursday.",
        "--out",
        out.to_str().unwrap(),
        "--g711",
        "mulaw",
    ]);
    assert!(
        said.status.success(),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    let heard = understudy(&["transcribe", "--json", out.to_str().unwrap()]);
    assert!(
        heard.status.success(),
        "{}",
        String::from_utf8_lossy(&heard.stderr)
    );
    let v: Value = serde_json::from_slice(&heard.stdout).unwrap();
    assert_eq!(v["sample_rate"], 8000);
    assert!(
        word_recall(
            "your order will arrive on thursday",
            v["text"].as_str().unwrap()
        ) >= 0.8,
        "{v:#}"
    );
}
