//! The VAD worker as the call plane sees it: a real process, the real Silero
//! model and ONNX Runtime from the test pack, the real protocol.

mod support;

use std::time::{Duration, Instant};
use support::{jfk, onnxruntime_lib, pack_file, silence, white_noise, Worker};
use understudy_ipc::{ErrorCode, Request, Response, VadState, VAD_CHUNK_SAMPLES};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-vad");

fn start() -> Worker {
    let worker = Worker::spawn(
        EXE,
        &[
            &"--model",
            &pack_file("vad/silero_vad.onnx"),
            &"--ort-lib",
            &onnxruntime_lib(),
        ],
    );
    let info = worker.ready();
    assert_eq!(info["threads"], 1);
    assert!(
        info["onnxruntime"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{info:?}"
    );
    worker
}

fn vad(worker: &mut Worker, audio: &[i16], state: Option<VadState>) -> (Vec<f32>, VadState) {
    match worker.request(Request::Vad { state }, audio) {
        Response::VadProbs { probs, state } => (probs, state),
        other => panic!("expected vad_probs, got {other:?}"),
    }
}

fn chunk_at(seconds: f32) -> usize {
    (seconds * 16_000.0) as usize / VAD_CHUNK_SAMPLES
}

#[test]
fn probabilities_are_high_in_speech_and_low_in_silence_and_noise() {
    let mut worker = start();
    let audio = jfk();
    let (probs, _) = vad(&mut worker, &audio, None);
    assert_eq!(probs.len(), audio.len().div_ceil(VAD_CHUNK_SAMPLES));

    // Kennedy starts at ~0.3 s ("And so my fellow Americans" until ~2.1 s).
    let lead_in = &probs[..chunk_at(0.25)];
    assert!(lead_in.iter().all(|&p| p < 0.5), "lead-in: {lead_in:?}");
    let phrase = &probs[chunk_at(0.5)..chunk_at(2.0)];
    let mean = phrase.iter().sum::<f32>() / phrase.len() as f32;
    assert!(
        mean > 0.9,
        "mean speech probability {mean} in 0.5-2.0 s: {phrase:?}"
    );
    // Pauses between phrases are found too.
    let speech_share = probs.iter().filter(|&&p| p > 0.5).count() as f32 / probs.len() as f32;
    assert!(
        (0.4..0.9).contains(&speech_share),
        "speech in {speech_share} of the chunks"
    );

    let (quiet, _) = vad(&mut worker, &silence(3.0), None);
    assert!(quiet.iter().all(|&p| p < 0.1), "silence: {quiet:?}");
    let (noise, _) = vad(&mut worker, &white_noise(3.0, 300, 1), None);
    assert!(noise.iter().all(|&p| p < 0.5), "low white noise: {noise:?}");
}

#[test]
fn streaming_in_small_calls_matches_one_call() {
    let mut worker = start();
    let audio = jfk();
    let (whole, whole_state) = vad(&mut worker, &audio, None);

    for chunks_per_call in [1, 3] {
        let mut streamed = Vec::new();
        let mut state = None;
        // Whole chunks, as a stream sends them; the last call takes the tail.
        for piece in audio.chunks(VAD_CHUNK_SAMPLES * chunks_per_call) {
            let (probs, next) = vad(&mut worker, piece, state.take());
            streamed.extend(probs);
            state = Some(next);
        }
        assert_eq!(streamed.len(), whole.len());
        let worst = whole
            .iter()
            .zip(&streamed)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            worst < 1e-4,
            "{chunks_per_call}-chunk calls differ from one call by up to {worst}"
        );
        let state = state.unwrap();
        assert_eq!(state.context, whole_state.context);
        let drift = state
            .lstm
            .iter()
            .zip(&whole_state.lstm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(drift < 1e-4, "final LSTM state differs by {drift}");
    }
}

#[test]
fn a_partial_chunk_is_padded_and_a_foreign_state_rejected() {
    let mut worker = start();
    let (probs, state) = vad(&mut worker, &silence(0.0625), None); // 1000 samples
    assert_eq!(probs.len(), 2);
    assert_eq!((state.lstm.len(), state.context.len()), (256, 64));

    let bad = VadState {
        lstm: vec![0.0; 10],
        context: vec![],
    };
    match worker.request(Request::Vad { state: Some(bad) }, &silence(0.1)) {
        Response::Error {
            code: ErrorCode::BadRequest,
            message,
        } => {
            assert!(message.contains("256"), "{message}")
        }
        other => panic!("expected bad_request, got {other:?}"),
    }
    match worker.request(
        Request::Transcribe {
            prompt: None,
            fast: false,
        },
        &silence(0.1),
    ) {
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        } => {}
        other => panic!("expected bad_request, got {other:?}"),
    }
    // Still serving.
    assert_eq!(vad(&mut worker, &silence(0.064), None).0.len(), 2);
}

#[test]
fn a_missing_or_wrong_onnxruntime_library_fails_fast_instead_of_hanging() {
    let model = pack_file("vad/silero_vad.onnx");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("libonnxruntime.so.1.24.4");
    let not_a_library = support::junk_file(dir.path(), "libonnxruntime.so.1", 4096);

    for (lib, expected) in [
        (&missing, "not found"),
        (&not_a_library, "not a usable ONNX Runtime library"),
    ] {
        let started = Instant::now();
        let worker = Worker::spawn(EXE, &[&"--model", &model, &"--ort-lib", lib]);
        let message = worker.expect_model_load_error();
        assert!(message.contains(&lib.display().to_string()), "{message}");
        assert!(
            message.contains(expected) && message.contains("--ort-lib"),
            "{message}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn a_damaged_model_is_a_model_load_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = support::junk_file(dir.path(), "silero_vad.onnx", 100_000);
    let worker = Worker::spawn(EXE, &[&"--model", &junk, &"--ort-lib", &onnxruntime_lib()]);
    let message = worker.expect_model_load_error();
    assert!(message.contains(&junk.display().to_string()), "{message}");

    // An ONNX model with other inputs (here: the Piper voice) is refused at load.
    let voice = pack_file("tts/en_US-joe-medium.onnx");
    let worker = Worker::spawn(EXE, &[&"--model", &voice, &"--ort-lib", &onnxruntime_lib()]);
    let message = worker.expect_model_load_error();
    assert!(
        message.contains("not a Silero VAD v5/v6 model") && message.contains("inputs ["),
        "{message}"
    );
}
