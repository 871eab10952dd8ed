//! The TTS worker binary with the test pack's Piper voice, over the real protocol.

#[path = "../../llm/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{model, model_matching, path_str, scratch_dir, Worker};
use understudy_ipc::{bytes_to_pcm16, ErrorCode, Frame, Request, Response};

const EXE: &str = env!("CARGO_BIN_EXE_understudy-tts");
const VOICE: &str = "tts/en_US-joe-medium.onnx";
const TIMEOUT: Duration = Duration::from_secs(120);
const ESPEAK_ENV: &str = "PIPER_ESPEAKNG_DATA_DIRECTORY";

fn ort_lib() -> PathBuf {
    model_matching("lib", "libonnxruntime.so")
}

/// Start the worker the way the supervisor does: no espeak-ng data given, so
/// it must find the copy build.rs put beside the binary.
fn start() -> Worker {
    let voice = model(VOICE);
    let ort = ort_lib();
    Worker::start_with_env(
        EXE,
        &["--voice", path_str(&voice), "--ort-lib", path_str(&ort)],
        &[(ESPEAK_ENV, None)],
    )
}

fn synthesize(w: &mut Worker, id: u64, text: &str, stream: bool) -> Vec<Frame<Response>> {
    w.request(
        id,
        Request::Synthesize {
            text: text.into(),
            stream,
        },
        &[],
        TIMEOUT,
    )
}

/// Duration (s) and RMS (0..1) of s16le audio.
fn measure(pcm: &[u8], sample_rate: u32) -> (f64, f64) {
    let samples = bytes_to_pcm16(pcm);
    let energy: f64 = samples.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum();
    (
        samples.len() as f64 / sample_rate as f64,
        (energy / samples.len().max(1) as f64).sqrt(),
    )
}

/// Share of 20 ms frames louder than -40 dBFS: speech has many, silence none.
fn voiced_share(pcm: &[u8], sample_rate: u32) -> f64 {
    let samples = bytes_to_pcm16(pcm);
    let frame = (sample_rate / 50) as usize;
    let frames: Vec<f64> = samples
        .chunks(frame)
        .map(|f| {
            (f.iter().map(|&s| (s as f64 / 32768.0).powi(2)).sum::<f64>() / f.len() as f64).sqrt()
        })
        .collect();
    frames.iter().filter(|&&rms| rms > 0.01).count() as f64 / frames.len().max(1) as f64
}

#[test]
fn a_sentence_becomes_audio_of_plausible_length_and_energy() {
    let mut w = start();
    let info = w.ready_info().clone();
    assert_eq!(info["sample_rate"], 22050);
    assert!(
        info["espeak_data"]
            .as_str()
            .unwrap()
            .ends_with("espeak-ng-data"),
        "espeak-ng data found beside the binary: {info:?}"
    );
    let text = "Thank you for calling Northwind Outfitters. How can I help you today?";
    let frames = synthesize(&mut w, 1, text, false);
    assert_eq!(frames.len(), 1, "without stream, one answer");
    let Response::Synthesized {
        sample_rate,
        samples,
        timings,
    } = &frames[0].envelope.body
    else {
        panic!("{:?}", frames[0].envelope)
    };
    let pcm = &frames[0].payload;
    assert_eq!(pcm.len() as u64, samples * 2);
    let (seconds, rms) = measure(pcm, *sample_rate);
    eprintln!(
        "{seconds:.2} s of audio, rms {rms:.3}, synthesized in {:.0} ms",
        timings.total_ms
    );
    // 12 words at a speaking rate of 2-4 words per second.
    assert!((2.0..7.0).contains(&seconds), "{seconds} s");
    assert!(rms > 0.03, "audio is nearly silent: rms {rms}");
    let voiced = voiced_share(pcm, *sample_rate);
    assert!(voiced > 0.5, "only {voiced:.2} of the frames carry sound");
    let peak = bytes_to_pcm16(pcm)
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    assert!(peak < 32767, "clipped");
}

#[test]
fn streaming_sends_one_audio_frame_per_sentence_then_the_total() {
    let mut w = start();
    let text =
        "Hello there. Your order 48213 shipped on Mon. at 9:30 a.m.! Do you need anything else?";
    let frames = synthesize(&mut w, 1, text, true);
    let (audio, last) = frames.split_at(frames.len() - 1);
    let texts: Vec<&str> = audio
        .iter()
        .map(|f| {
            assert!(f.envelope.more);
            match &f.envelope.body {
                Response::Audio { sample_rate, text } => {
                    assert_eq!(*sample_rate, 22050);
                    let (seconds, rms) = measure(&f.payload, *sample_rate);
                    assert!(
                        seconds > 0.3 && rms > 0.02,
                        "{text:?}: {seconds} s, rms {rms}"
                    );
                    text.as_str()
                }
                other => panic!("expected audio, got {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        texts,
        [
            "Hello there.",
            "Your order 48213 shipped on Mon. at 9:30 a.m.!",
            "Do you need anything else?"
        ]
    );
    let Response::Synthesized {
        samples, timings, ..
    } = &last[0].envelope.body
    else {
        panic!("{:?}", last[0].envelope)
    };
    assert!(
        last[0].payload.is_empty(),
        "streamed audio is not sent twice"
    );
    let streamed: usize = audio.iter().map(|f| f.payload.len() / 2).sum();
    assert_eq!(*samples as usize, streamed);
    let first = timings.first_output_ms.unwrap();
    eprintln!(
        "first sentence after {first:.0} ms, all {:.0} ms",
        timings.total_ms
    );
    assert!(first < timings.total_ms);
}

#[test]
fn a_break_adds_its_silence_and_unspeakable_text_gives_no_audio() {
    let mut w = start();
    let duration = |w: &mut Worker, id, text: &str| {
        let frames = synthesize(w, id, text, false);
        let Response::Synthesized {
            samples,
            sample_rate,
            ..
        } = frames[0].envelope.body
        else {
            panic!("{:?}", frames[0].envelope)
        };
        samples as f64 / sample_rate as f64
    };
    let plain = duration(&mut w, 1, "Hello. Goodbye.");
    let paused = duration(
        &mut w,
        2,
        r#"<speak>Hello.<break time="1s"/>Goodbye.</speak>"#,
    );
    assert!(
        (paused - plain - 1.0).abs() < 0.25,
        "plain {plain:.2} s, with a 1 s break {paused:.2} s"
    );
    assert_eq!(duration(&mut w, 3, " *** 👍 ... "), 0.0);
}

#[test]
fn missing_or_bogus_onnx_runtime_fails_clearly_instead_of_hanging() {
    let dir = scratch_dir("tts-bogus-ort");
    let bogus = dir.join("libonnxruntime.so.1.24.4");
    std::fs::write(&bogus, b"not a shared library").unwrap();
    let missing = dir.join("missing/libonnxruntime.so.1.24.4");
    let voice = model(VOICE);
    for lib in [&missing, &bogus] {
        // The timeout turns ort's deadlock on a library it cannot load into a test failure.
        let mut w = Worker::spawn(
            EXE,
            &["--voice", path_str(&voice), "--ort-lib", path_str(lib)],
            Duration::from_secs(30),
        );
        match &w.first.envelope.body {
            Response::Error {
                code: ErrorCode::ModelLoad,
                message,
            } => assert!(message.contains(path_str(lib)), "{message}"),
            other => panic!("expected a model-load error, got {other:?}"),
        }
        assert!(!w.wait_exit(Duration::from_secs(30)).success());
    }
}

#[test]
fn missing_voice_fails_clearly() {
    let dir = scratch_dir("tts-missing-voice");
    let voice = dir.join("nobody.onnx");
    let ort = ort_lib();
    let mut w = Worker::spawn(
        EXE,
        &["--voice", path_str(&voice), "--ort-lib", path_str(&ort)],
        Duration::from_secs(30),
    );
    match &w.first.envelope.body {
        Response::Error {
            code: ErrorCode::ModelLoad,
            message,
        } => assert!(message.contains(path_str(&voice)), "{message}"),
        other => panic!("expected a model-load error, got {other:?}"),
    }
    assert!(!w.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn espeak_data_of_another_version_is_refused() {
    let built = Path::new(EXE).parent().unwrap().join("espeak-ng-data");
    assert!(
        built.join("phondata").is_file(),
        "build.rs must put espeak-ng-data beside {EXE}"
    );
    let dir = scratch_dir("tts-espeak-other").join("espeak-ng-data");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["phontab", "phonindex", "phondata", "en_dict"] {
        std::fs::copy(built.join(name), dir.join(name)).unwrap();
    }
    // Alter one phoneme table byte, as another espeak-ng release would.
    let mut phontab = std::fs::read(dir.join("phontab")).unwrap();
    phontab[100] ^= 0xff;
    std::fs::write(dir.join("phontab"), phontab).unwrap();

    let (voice, ort) = (model(VOICE), ort_lib());
    let mut w = Worker::spawn(
        EXE,
        &[
            "--voice",
            path_str(&voice),
            "--ort-lib",
            path_str(&ort),
            "--espeak-data",
            path_str(&dir),
        ],
        Duration::from_secs(30),
    );
    match &w.first.envelope.body {
        Response::Error {
            code: ErrorCode::ModelLoad,
            message,
        } => {
            assert!(message.contains("another espeak-ng version"), "{message}")
        }
        other => panic!("expected a model-load error, got {other:?}"),
    }
    assert!(!w.wait_exit(Duration::from_secs(30)).success());
}
