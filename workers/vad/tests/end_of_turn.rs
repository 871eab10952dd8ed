//! Smart Turn v3 in the VAD worker: a real process, the model and ONNX
//! Runtime from the test pack, espeak-ng speech, the real protocol.

mod support;

use support::{espeak, onnxruntime_lib, pack_file, silence, Worker};
use understudy_ipc::{ErrorCode, Request, Response};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-vad");

fn start(
    turn_model: &dyn AsRef<std::ffi::OsStr>,
) -> (Worker, serde_json::Map<String, serde_json::Value>) {
    let worker = Worker::spawn(
        EXE,
        &[
            &"--model",
            &pack_file("vad/silero_vad.onnx"),
            &"--ort-lib",
            &onnxruntime_lib(),
            &"--turn-model",
            turn_model,
        ],
    );
    let info = worker.ready();
    (worker, info)
}

/// `text` followed by `pause_ms` of silence, as the session sends it at a pause.
fn said_then_paused(text: &str, pause_ms: usize) -> Vec<i16> {
    [espeak(text), vec![0; pause_ms * 16]].concat()
}

fn probability(worker: &mut Worker, audio: &[i16]) -> f32 {
    match worker.request(Request::EndOfTurn, audio) {
        Response::EndOfTurn {
            probability,
            timings,
        } => {
            assert!(timings.total_ms > 0.0);
            probability
        }
        other => panic!("expected end_of_turn, got {other:?}"),
    }
}

/// The reference figures come from pipecat-ai 1.14.0's own pipeline
/// (`_whisper_features.py` + onnxruntime 1.32 in Python) on the same audio
/// (espeak-ng, sox -D to 16 kHz, then the pause as zeros). The features
/// themselves are checked to 2e-4 in `smart_turn.rs`; here the tolerance is
/// wide because this int8 model is touchy near its boundary: moving the end
/// of "I want to talk to" by one sample moves its answer between 0.04 and
/// 0.19 in the Python pipeline, and the pack's ONNX Runtime is 1.24.
#[test]
fn finished_questions_score_finished_and_cut_sentences_unfinished() {
    let (mut worker, info) = start(&pack_file("vad/smart-turn-v3.2-cpu.onnx"));
    assert!(
        info["turn_model"]
            .as_str()
            .is_some_and(|p| p.ends_with("smart-turn-v3.2-cpu.onnx")),
        "{info:?}"
    );
    for (text, pause_ms, reference) in [
        ("What time do you open tomorrow?", 192, 0.9893),
        ("I want to talk to", 192, 0.0443),
        ("I would like to speak to", 192, 0.2960),
    ] {
        let p = probability(&mut worker, &said_then_paused(text, pause_ms));
        assert!(
            (p - reference).abs() < 0.1,
            "{text:?} + {pause_ms} ms: {p} (reference {reference})"
        );
        assert_eq!(p >= 0.5, text.ends_with('?'), "{text:?}: {p}");
    }

    // The brief's paused order number: Smart Turn v3.2 hears espeak-ng's
    // "My order number is four eight" as a finished turn (reference 0.9849
    // at 192 ms, 0.9889 at 600 ms). The session keeps such turns open with
    // its words guard (session::endpoint::TurnVerdict::WordsGoOn: the transcript so far ends in a number); if
    // this starts failing, the model got better at numbers: revisit the guard.
    let p = probability(
        &mut worker,
        &said_then_paused("My order number is four eight", 600),
    );
    assert!((p - 0.9889).abs() < 0.1, "order number + 600 ms: {p}");

    // Longer than 8 s: only the last 8 s count (the same answer as the tail alone).
    let question = said_then_paused("What time do you open tomorrow?", 192);
    let long = [espeak("I want to talk to"), silence(7.0), question.clone()].concat();
    let tail = &long[long.len() - 8 * 16_000..];
    assert_eq!(
        probability(&mut worker, &long),
        probability(&mut worker, tail)
    );
}

#[test]
fn without_a_turn_model_the_vad_still_serves_and_end_of_turn_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let junk = support::junk_file(dir.path(), "smart-turn.onnx", 50_000);
    let (mut worker, info) = start(&junk);
    assert!(info["turn_model"].is_null(), "{info:?}");
    match worker.request(Request::EndOfTurn, &silence(1.0)) {
        Response::Error {
            code: ErrorCode::BadRequest,
            message,
        } => assert!(
            message.contains("no end-of-turn model") && message.contains("smart-turn.onnx"),
            "{message}"
        ),
        other => panic!("expected bad_request, got {other:?}"),
    }
    // The VAD is unaffected.
    match worker.request(Request::Vad { state: None }, &silence(0.064)) {
        Response::VadProbs { probs, .. } => assert_eq!(probs.len(), 2),
        other => panic!("expected vad_probs, got {other:?}"),
    }
    assert!(worker
        .stderr()
        .contains("serving VAD without end-of-turn detection"));

    // With the model, empty audio is refused and the worker goes on.
    let (mut worker, _) = start(&pack_file("vad/smart-turn-v3.2-cpu.onnx"));
    match worker.request(Request::EndOfTurn, &[]) {
        Response::Error {
            code: ErrorCode::BadRequest,
            message,
        } => assert!(message.contains("needs audio"), "{message}"),
        other => panic!("expected bad_request, got {other:?}"),
    }
    let p = probability(&mut worker, &silence(1.0));
    assert!((0.0..=1.0).contains(&p));
}
