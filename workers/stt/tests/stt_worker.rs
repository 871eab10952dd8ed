//! The STT worker as the call plane sees it: a real process, Whisper tiny.en
//! and Silero (ggml) from the test pack, the real protocol.

#[path = "../../vad/tests/support/mod.rs"]
mod support;

use std::time::Duration;
use support::{espeak, jfk, normalize, pack_file, silence, white_noise, Worker};
use understudy_ipc::{ErrorCode, Request, Response};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-stt");
const WHISPER: &str = "stt/ggml-tiny.en.bin";
const SILERO: &str = "stt/ggml-silero-v6.2.0.bin";

fn start() -> Worker {
    start_with(&[]).0
}

/// The worker with the test pack's models and `extra` arguments, and what it
/// said when ready.
fn start_with(
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> (Worker, serde_json::Map<String, serde_json::Value>) {
    let (whisper, silero) = (pack_file(WHISPER), pack_file(SILERO));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--model",
        &whisper,
        &"--vad-model",
        &silero,
        &"--threads",
        &"2",
    ];
    args.extend_from_slice(extra);
    let worker = Worker::spawn(EXE, &args);
    let info = worker.ready();
    assert_eq!(
        (info["threads"].as_u64(), info["vad_threads"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(info["model_type"], "tiny");
    (worker, info)
}

struct Transcript {
    text: String,
    no_speech: bool,
    speech_ms: Option<(f64, f64)>,
    utterance: Option<u64>,
}

fn transcribe(worker: &mut Worker, audio: &[i16], prompt: Option<&str>) -> Transcript {
    transcribe_by(worker, audio, prompt, false)
}

/// One transcription, by the fast model when `fast`.
fn transcribe_by(
    worker: &mut Worker,
    audio: &[i16],
    prompt: Option<&str>,
    fast: bool,
) -> Transcript {
    match worker.request(
        Request::Transcribe {
            prompt: prompt.map(str::to_string),
            fast,
        },
        audio,
    ) {
        Response::Transcript {
            text,
            no_speech,
            speech_ms,
            utterance,
            timings,
        } => {
            assert!(timings.total_ms > 0.0 && timings.vad_ms.is_some());
            Transcript {
                text,
                no_speech,
                speech_ms,
                utterance,
            }
        }
        other => panic!(
            "expected a transcript, got {other:?}\nlog:\n{}",
            worker.stderr()
        ),
    }
}

#[test]
fn jfk_is_transcribed() {
    let mut worker = start();
    let t = transcribe(&mut worker, &jfk(), None);
    assert!(!t.no_speech);
    let text = normalize(&t.text);
    assert!(
        text.contains("ask not what your country can do for you"),
        "{:?}",
        t.text
    );
    assert!(
        text.contains("ask what you can do for your country"),
        "{:?}",
        t.text
    );
    let (start, end) = t.speech_ms.expect("speech_ms with speech");
    assert!(
        start < 1_000.0 && end > 10_000.0 && end <= 11_000.0,
        "speech found at {start}-{end} ms"
    );
}

#[test]
fn synthesized_sentences_are_transcribed_without_carry_over() {
    let mut worker = start();
    // One worker, one reused Whisper state: each answer must hold its own
    // words and none of the previous caller's.
    let cases = [
        (
            "Please transfer me to the billing department.",
            &["transfer", "billing", "department"][..],
        ),
        (
            "I want to check the status of my order.",
            &["check", "status", "order"][..],
        ),
        (
            "I would like to speak to an agent please.",
            &["speak", "agent"][..],
        ),
    ];
    let mut previous: Option<&[&str]> = None;
    for (sentence, words) in cases {
        let t = transcribe(&mut worker, &espeak(sentence), None);
        let text = normalize(&t.text);
        for word in words {
            assert!(text.contains(word), "{sentence:?} came out as {:?}", t.text);
        }
        for word in previous.unwrap_or_default() {
            assert!(
                !text.contains(word),
                "{:?} carries {word:?} from the previous request",
                t.text
            );
        }
        previous = Some(words);
    }
    // tiny.en hears "My count number" here; the domain prompt of the request
    // fixes it (BUILD-NOTES: prompts cut tiny's WER).
    let account = espeak("My account number is four five six seven.");
    let t = transcribe(
        &mut worker,
        &account,
        Some("Account number, billing, agent."),
    );
    assert!(
        normalize(&t.text).contains("account number"),
        "{:?}",
        t.text
    );
}

#[test]
fn fast_requests_use_the_fast_model_and_fall_back_without_one() {
    // The test pack has one Whisper; it serves as the fast model too.
    let tiny = pack_file(WHISPER);
    let (mut worker, info) = start_with(&[&"--fast-model", &tiny]);
    assert_eq!(info["fast_model_type"], "tiny");
    let sentence = "Sure. What's your order number? You can say it or key it in.";
    let t = transcribe_by(&mut worker, &espeak(sentence), None, true);
    assert!(
        normalize(&t.text).contains("order number"),
        "{sentence:?} came out as {:?}",
        t.text
    );
    let log = worker.stderr();
    assert!(
        log.contains("fast=true"),
        "the fast request is not logged as such:\n{log}"
    );
    // A worker without one answers a fast request with its own model.
    let mut plain = start();
    let t = transcribe_by(&mut plain, &espeak(sentence), None, true);
    assert!(normalize(&t.text).contains("order number"), "{:?}", t.text);
}

#[test]
fn silence_and_low_noise_are_no_speech() {
    let mut worker = start();
    for (what, audio) in [
        ("silence", silence(3.0)),
        ("white noise", white_noise(3.0, 300, 1)),
    ] {
        let t = transcribe(&mut worker, &audio, None);
        assert!(t.no_speech, "{what} was taken for speech: {:?}", t.text);
        assert_eq!(t.text, "", "{what}");
        assert_eq!(t.speech_ms, None, "{what}");
    }
    let t = transcribe(&mut worker, &[], None);
    assert!(t.no_speech, "empty audio");
}

#[test]
fn a_cancelled_request_stops_and_the_worker_goes_on() {
    let mut worker = start();
    let audio = understudy_ipc::pcm16_to_bytes(&jfk());
    worker.send(
        1,
        Request::Transcribe {
            prompt: None,
            fast: false,
        },
        &audio,
    );
    worker.send(2, Request::Cancel { target: 1 }, &[]);
    let frame = worker.recv(Duration::from_secs(120));
    assert_eq!(frame.envelope.id, 1);
    match frame.envelope.body {
        Response::Error {
            code: ErrorCode::Cancelled,
            ..
        } => {}
        other => panic!("expected cancelled, got {other:?}"),
    }
    // The aborted run left the reused Whisper state usable.
    let t = transcribe(&mut worker, &jfk(), None);
    assert!(
        normalize(&t.text).contains("ask not what your country"),
        "{:?}",
        t.text
    );
}

#[test]
fn damaged_models_are_model_load_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = support::junk_file(dir.path(), "ggml-tiny.en.bin", 1 << 20);
    // The real header followed by nothing: whisper.cpp's own loader fails.
    let truncated = dir.path().join("ggml-truncated.bin");
    let real = std::fs::read(pack_file(WHISPER)).unwrap();
    std::fs::write(&truncated, &real[..1 << 20]).unwrap();
    let (whisper, silero) = (pack_file(WHISPER), pack_file(SILERO));

    for (model, vad_model, bad) in [
        (&junk, &silero, &junk),
        (&truncated, &silero, &truncated),
        (&whisper, &junk, &junk),
        (&silero, &whisper, &silero), // swapped flags
    ] {
        let worker = Worker::spawn(EXE, &[&"--model", model, &"--vad-model", vad_model]);
        let message = worker.expect_model_load_error();
        assert!(message.contains(&bad.display().to_string()), "{message}");
    }
    let missing = dir.path().join("nope.bin");
    let worker = Worker::spawn(EXE, &[&"--model", &missing, &"--vad-model", &silero]);
    let message = worker.expect_model_load_error();
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("--model"),
        "{message}"
    );
}

#[test]
fn other_requests_and_odd_payloads_are_bad_requests() {
    let mut worker = start();
    match worker.request(Request::Vad { state: None }, &silence(0.1)) {
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        } => {}
        other => panic!("expected bad_request, got {other:?}"),
    }
    worker.send(
        10,
        Request::Transcribe {
            prompt: None,
            fast: false,
        },
        &[1, 2, 3],
    );
    let frame = worker.recv(Duration::from_secs(30));
    assert!(matches!(
        frame.envelope.body,
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
}

/// Score `candidates` against a held utterance: the scores, or the error.
fn score(
    worker: &mut Worker,
    utterance: u64,
    candidates: &[&str],
) -> Result<(f32, Vec<f32>), String> {
    let request = Request::Score {
        utterance,
        candidates: candidates.iter().map(|c| c.to_string()).collect(),
    };
    match worker.request(request, &[]) {
        Response::Scores {
            transcript,
            candidates,
            timings,
        } => {
            assert!(timings.total_ms > 0.0);
            Ok((transcript, candidates))
        }
        Response::Error {
            code: ErrorCode::BadRequest,
            message,
        } => Err(message),
        other => panic!("expected scores, got {other:?}"),
    }
}

#[test]
fn candidates_are_scored_against_the_held_audio() {
    let (mut worker, info) = start_with(&[&"--keep-utterances", &"2"]);
    assert_eq!(info["keep_utterances"].as_u64(), Some(2));
    let said = transcribe(&mut worker, &jfk(), None);
    let first = said.utterance.expect("a held utterance has a handle");
    let (transcript, scores) = score(
        &mut worker,
        first,
        &[
            "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
            "And so my fellow Americans, ask not what your country can do for you.",
            "I want to return a jacket that does not fit.",
        ],
    )
    .unwrap();
    // Mean log-probabilities per token: the transcript is Whisper's own
    // reading; the words said score as well as it, the first half of them
    // (ending too early) lower, other words far lower.
    assert!(
        transcript <= 0.0 && transcript > -1.0,
        "{transcript} {:?}",
        said.text
    );
    assert!(
        (scores[0] - transcript).abs() < 0.3,
        "{transcript} {scores:?}"
    );
    assert!(scores[0] > scores[1] + 0.2, "{scores:?}");
    assert!(scores[1] > scores[2] + 1.0, "{scores:?}");

    // Two more utterances push the first out; the newest is still held.
    let second = transcribe(&mut worker, &espeak("Goodbye."), None);
    let third = transcribe(&mut worker, &espeak("Thank you."), None);
    let message = score(&mut worker, first, &["where's my order"]).unwrap_err();
    assert!(message.contains("no longer held"), "{message}");
    assert!(score(&mut worker, third.utterance.unwrap(), &["thank you"]).is_ok());
    assert_ne!(second.utterance, third.utterance);
    // Silence holds nothing.
    assert_eq!(transcribe(&mut worker, &silence(1.0), None).utterance, None);
}
