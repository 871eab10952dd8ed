//! `understudy talk` and the sound-card ingress behind it.
//!
//! - This CI box has no sound card: `talk` says so in the user's terms
//!   (what to do instead), and fast, before any model loads. On a machine
//!   that has one, `--list-devices` names each input and output.
//! - The plumbing behind the devices, with the real session and engines
//!   (test pack): a simulated 48 kHz stereo headset, clocked in real time,
//!   feeds the microphone callback's path (interleaved float, mixed down)
//!   and pulls the speaker callback's (`Speaker::fill`). The greeting is
//!   played, the caller's question is answered with the right intent, and
//!   the answer is played after it.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;
use understudy::audio;
use understudy::session::admission::{Admission, Ingress};
use understudy::session::TurnReport;
use understudy::transport::sound_card::{downmix, run_call, CardIo, Speaker};

#[test]
fn talk_names_the_devices_or_says_there_are_none() {
    let listed = understudy(&["talk", "--list-devices"]);
    let list = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let has_input = list.lines().any(|l| l.starts_with("input: "));
    let has_output = list.lines().any(|l| l.starts_with("output: "));
    eprintln!("--list-devices:\n{list}");
    if has_input && has_output {
        assert!(list
            .lines()
            .all(|l| l.starts_with("input: ") || l.starts_with("output: ")));
        return;
    }
    let started = Instant::now();
    let talk = understudy(&["talk", "--seconds", "1"]);
    let err = String::from_utf8_lossy(&talk.stderr).to_string();
    eprintln!("talk without a sound card:\n{err}");
    assert!(!talk.status.success(), "talk ran without a sound device");
    assert!(
        err.contains("no sound card") && err.contains("--list-devices"),
        "{err}"
    );
    assert!(
        err.contains("docs/ingress.md"),
        "no way forward offered: {err}"
    );
    // Before any model loads.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// A 48 kHz stereo headset in real time: 10 ms callbacks both ways.
struct Headset {
    /// When the speaker played bot audio (10 ms periods that were not silent).
    played: Arc<Mutex<Vec<Instant>>>,
    /// What the microphone will capture next (mono, 48 kHz).
    mic: Arc<Mutex<std::collections::VecDeque<i16>>>,
}

const RATE: u32 = 48_000;
const PERIOD: usize = 480;

impl Headset {
    fn start(speaker: Arc<Speaker>, captured: mpsc::UnboundedSender<Vec<i16>>) -> Headset {
        let played: Arc<Mutex<Vec<Instant>>> = Default::default();
        let mic: Arc<Mutex<std::collections::VecDeque<i16>>> = Default::default();
        {
            let (played, mic) = (played.clone(), mic.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                loop {
                    tick.tick().await;
                    // The microphone callback: interleaved stereo float.
                    let mono: Vec<i16> = {
                        let mut mic = mic.lock().unwrap();
                        (0..PERIOD).map(|_| mic.pop_front().unwrap_or(0)).collect()
                    };
                    let stereo: Vec<f32> =
                        mono.iter().flat_map(|s| [*s as f32 / 32768.0; 2]).collect();
                    if captured.send(downmix(&stereo, 2)).is_err() {
                        return;
                    }
                    // The speaker callback.
                    let mut out = vec![0f32; PERIOD * 2];
                    speaker.fill(&mut out);
                    if out.iter().any(|v| v.abs() > 0.01) {
                        played.lock().unwrap().push(Instant::now());
                    }
                }
            });
        }
        Headset { played, mic }
    }

    fn say(&self, samples_16k: &[i16]) -> Instant {
        let at_48k = audio::resample(samples_16k, audio::SAMPLE_RATE, RATE);
        self.mic.lock().unwrap().extend(at_48k);
        Instant::now()
    }

    fn played_after(&self, t: Instant) -> Option<Instant> {
        self.played.lock().unwrap().iter().copied().find(|p| *p > t)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_simulated_headset() {
    let question = caller("What time do you open tomorrow?", "en-us");
    let setup = understudy::cli::runtime::session_setup(&test_config(), None)
        .await
        .expect("session setup with the test pack");
    let admission = Admission::new(1, {
        let setup = setup.clone();
        Arc::new(move || Some(setup.clone()))
    });
    let admitted = admission.admit(Ingress::SoundCard).unwrap();
    assert!(admission
        .active_by_ingress()
        .iter()
        .any(|c| c.ingress == Ingress::SoundCard && c.active == 1));
    let (speaker, played) = Speaker::new(RATE, 2);
    let (captured_tx, captured) = mpsc::unbounded_channel();
    let headset = Headset::start(speaker.clone(), captured_tx);
    let io = CardIo {
        captured,
        input_rate: RATE,
        speaker,
        played,
    };
    let (hang_up, hung_up) = tokio::sync::oneshot::channel::<()>();
    let reports: Arc<Mutex<Vec<TurnReport>>> = Default::default();
    let call = {
        let reports = reports.clone();
        tokio::spawn(async move {
            run_call(
                io,
                admitted,
                "headset",
                async {
                    let _ = hung_up.await;
                },
                move |r| reports.lock().unwrap().push(r.clone()),
            )
            .await
        })
    };

    // The greeting plays, then the line goes quiet.
    let started = Instant::now();
    let greeting = loop {
        if let Some(at) = headset.played_after(started) {
            break at;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no greeting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        let last = headset.played.lock().unwrap().last().copied().unwrap();
        if last.elapsed() > Duration::from_millis(1500) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reports.lock().unwrap().iter().any(|r| r.turn == 0));

    let asked = headset.say(&question);
    let speech_ms = question.len() as u64 / 16;
    let answer = loop {
        if let Some(at) = headset.played_after(asked + Duration::from_millis(speech_ms)) {
            break at;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "no answer: {:?}",
            reports.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(answer > greeting);
    let _ = hang_up.send(());
    let ended = call.await.unwrap();
    assert_eq!(ended, "hung up");
    let reports = reports.lock().unwrap();
    let turn = reports
        .iter()
        .find(|r| r.turn >= 1)
        .expect("the question was not a turn");
    assert_eq!(turn.intent.as_deref(), Some("store_hours"), "{turn:?}");
    assert_eq!(admission.active(), 0, "the call's slot was not freed");
    setup.engines.shutdown();
}
