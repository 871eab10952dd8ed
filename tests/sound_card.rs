//! `understudy talk` and the sound-card ingress behind it.
//!
//! - On a machine without a sound card (an ALSA that knows no device),
//!   `talk` says so in the user's terms (what to do instead), and fast,
//!   before any model loads.
//! - Through a clocked virtual sound card (a private PulseAudio server with
//!   null sinks, reached by ALSA's `pulse` device): `--list-devices` names
//!   it; `talk --json` hears a caller played into the microphone's source,
//!   answers with the right intent, and its voice comes out of the speaker.
//! - The plumbing behind the devices, with the real session and engines
//!   (test pack): a simulated 48 kHz stereo headset, clocked in real time,
//!   feeds the microphone callback's path (interleaved float, mixed down)
//!   and pulls the speaker callback's (`Speaker::fill`). The greeting is
//!   played, the caller's question is answered with the right intent, and
//!   the answer is played after it.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;
use understudy::audio;
use understudy::session::admission::{Admission, Ingress};
use understudy::session::TurnReport;
use understudy::transport::sound_card::{downmix, run_call, CardIo, Speaker};

/// `understudy` with the test pack and the built workers, and `env` set.
fn understudy_with(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(understudy_bin());
    command
        .args(["--pack", "test", "--models-dir"])
        .arg(models_dir())
        .args(args)
        .env("UNDERSTUDY_WORKER_DIR", worker_dir());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

#[test]
fn talk_without_a_sound_card_says_what_to_do() {
    // A machine whose ALSA knows no device at all, as a server without a
    // sound card (an empty ALSA configuration).
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("alsa.conf");
    std::fs::write(&empty, "").unwrap();
    let no_card = [("ALSA_CONFIG_PATH", empty.to_str().unwrap())];
    let listed = understudy_with(&["talk", "--list-devices"], &no_card)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.status.success());
    assert!(list.contains("no sound devices"), "{list}");

    let started = Instant::now();
    let talk = understudy_with(&["talk", "--seconds", "1"], &no_card)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&talk.stderr).to_string();
    eprintln!("talk without a sound card:\n{err}");
    assert!(!talk.status.success(), "talk ran without a sound device");
    assert!(
        err.contains("no sound card") && err.contains("--list-devices"),
        "{err}"
    );
    assert!(
        err.contains("docs/ingress.md") && err.contains("/phone"),
        "no way forward offered: {err}"
    );
    // Before any model loads.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// A clocked virtual sound card: a private PulseAudio server with two null
/// sinks, `caller` (what the microphone hears: the default source is its
/// monitor) and `bot` (the speaker: the default sink), reached by ALSA's
/// `pulse` device. Null sinks play in real time on the server's clock.
struct VirtualCard {
    daemon: std::process::Child,
    server: String,
    dir: tempfile::TempDir,
}

impl VirtualCard {
    fn start() -> VirtualCard {
        require("pulseaudio", "pulseaudio");
        require("paplay", "pulseaudio-utils");
        assert!(
            Path::new("/usr/share/alsa/alsa.conf.d/50-pulseaudio.conf").exists(),
            "ALSA's pulse device is missing: apt-get install libasound2-plugins"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("native");
        let script = dir.path().join("card.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-null-sink sink_name=bot rate=48000 channels=2\n\
                 load-module module-null-sink sink_name=caller rate=48000 channels=2\n\
                 load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 set-default-sink bot\n\
                 set-default-source caller.monitor\n",
                socket.display()
            ),
        )
        .unwrap();
        let daemon = std::process::Command::new("pulseaudio")
            .args([
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
            ])
            .args(["--log-target=stderr", "-F"])
            .arg(&script)
            .env("HOME", dir.path())
            .env("PULSE_RUNTIME_PATH", dir.path().join("run"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("pulseaudio.log")).unwrap())
            .spawn()
            .expect("cannot start pulseaudio");
        let card = VirtualCard {
            daemon,
            server: format!("unix:{}", socket.display()),
            dir,
        };
        let started = Instant::now();
        while !card.pulse("pactl", &["info"]).status().unwrap().success() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the PulseAudio server did not start: {}",
                std::fs::read_to_string(card.dir.path().join("pulseaudio.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        card
    }

    /// A PulseAudio client command talking to this server.
    fn pulse(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        command
            .args(args)
            .env("PULSE_SERVER", &self.server)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    }
}

impl Drop for VirtualCard {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

#[test]
fn talk_through_a_virtual_sound_card() {
    let card = VirtualCard::start();
    let env = [("PULSE_SERVER", card.server.as_str())];
    let listed = understudy_with(&["talk", "--list-devices"], &env)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        list.contains("input: pulse") && list.contains("output: pulse"),
        "{list}"
    );

    // The caller waits out the greeting (about 9 s), then asks.
    let question = "I would like to check the status of my order";
    let speech =
        understudy::bench::synthesize_caller(question, "en-us", card.dir.path(), "q").unwrap();
    let mut caller = vec![0i16; audio::SAMPLE_RATE as usize * 11];
    caller.extend(&speech);
    let wav = card.dir.path().join("caller.wav");
    std::fs::write(&wav, audio::wav::encode_pcm16(audio::SAMPLE_RATE, &caller)).unwrap();
    // What the speaker plays, recorded off the bot sink's monitor.
    let heard = card.dir.path().join("heard.wav");
    let mut recorder = card
        .pulse(
            "parec",
            &["-d", "bot.monitor", "--rate=16000", "--channels=1"],
        )
        .args(["--format=s16le", "--file-format=wav"])
        .arg(&heard)
        .spawn()
        .unwrap();
    let talk = understudy_with(
        &[
            "talk",
            "--input",
            "pulse",
            "--output",
            "pulse",
            "--seconds",
            "24",
            "--json",
        ],
        &env,
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut player = card
        .pulse("paplay", &["-d", "caller"])
        .arg(&wav)
        .spawn()
        .unwrap();
    let talked = talk.wait_with_output().unwrap();
    let _ = player.kill();
    let _ = player.wait();
    let _ = recorder.kill();
    let _ = recorder.wait();
    let stdout = String::from_utf8_lossy(&talked.stdout).to_string();
    let stderr = String::from_utf8_lossy(&talked.stderr).to_string();
    assert!(talked.status.success(), "talk failed:\n{stderr}");
    let turns: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    eprintln!("turns: {turns:#?}");
    let turn = turns
        .iter()
        .find(|t| t["transcript"].as_str().is_some_and(|s| !s.is_empty()))
        .unwrap_or_else(|| panic!("no caller turn heard through the card:\n{stdout}\n{stderr}"));
    let transcript = turn["transcript"].as_str().unwrap().to_lowercase();
    assert!(transcript.contains("order"), "{transcript:?}");
    assert_eq!(turn["intent"], "order_status", "{turn}");

    // The bot's voice came out of the speaker: the greeting and the answer.
    let recorded = audio::wav::read(&heard).unwrap();
    let spoken = recorded
        .samples
        .chunks(recorded.sample_rate as usize / 50)
        .filter(|f| audio::is_speech_level(f))
        .count() as f64
        * 0.02;
    eprintln!("the speaker played {spoken:.1} s of speech");
    assert!(spoken > 6.0, "the speaker played {spoken:.1} s of speech");
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
