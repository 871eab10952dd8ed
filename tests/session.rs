//! The conversation session with real engines (test pack): barge-in, DTMF,
//! and the safety net when a worker dies mid-request.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;
use understudy::audio::{self, FRAME_SAMPLES};
use understudy::session::{
    start_call, CallEvent, CallState, SessionAction, SessionSetup, TurnReport,
};

async fn setup() -> Arc<SessionSetup> {
    let config = test_config();
    understudy::cli::runtime::session_setup(&config, None)
        .await
        .expect("session setup with the test pack")
}

/// A phone line in real time: caller frames go in every 20 ms, the bot's
/// audio is played out at 20 ms per frame and acknowledged by mark.
struct Line {
    events: mpsc::Sender<CallEvent>,
    actions: mpsc::Receiver<SessionAction>,
    /// Bot audio waiting to be played: (samples left, mark).
    queue: std::collections::VecDeque<(Vec<i16>, u64)>,
    /// Frames of bot audio actually played, with when.
    played: Vec<Instant>,
    cleared_at: Option<Instant>,
    reports: Vec<TurnReport>,
    transfers: Vec<(String, String)>,
    state: CallState,
}

impl Line {
    fn new(setup: Arc<SessionSetup>) -> (Line, tokio::task::JoinHandle<()>) {
        let call = start_call(setup, "test".into());
        let line = Line {
            events: call.events,
            actions: call.actions,
            queue: Default::default(),
            played: vec![],
            cleared_at: None,
            reports: vec![],
            transfers: vec![],
            state: CallState::Listening,
        };
        (line, call.task)
    }

    fn take_actions(&mut self) {
        while let Ok(action) = self.actions.try_recv() {
            match action {
                SessionAction::Play { samples, mark } => {
                    self.queue.push_back((samples.to_vec(), mark))
                }
                SessionAction::ClearPlayout => {
                    self.queue.clear();
                    self.cleared_at.get_or_insert_with(Instant::now);
                }
                SessionAction::Transfer { target, reason } => self.transfers.push((target, reason)),
                SessionAction::Hangup => self.state = CallState::Ended,
                SessionAction::Report(r) => self.reports.push(*r),
                SessionAction::State(s) => self.state = s,
            }
        }
    }

    /// One 20 ms tick: send a caller frame, play one frame of bot audio.
    async fn tick(&mut self, caller: [i16; FRAME_SAMPLES]) {
        self.take_actions();
        let _ = self.events.send(CallEvent::Audio(Box::new(caller))).await;
        if let Some((samples, mark)) = self.queue.front_mut() {
            let n = samples.len().min(FRAME_SAMPLES);
            samples.drain(..n);
            self.played.push(Instant::now());
            if samples.is_empty() {
                let mark = *mark;
                self.queue.pop_front();
                let _ = self.events.send(CallEvent::PlayoutDone { mark }).await;
            }
        }
    }

    /// Tick silence until `done` holds or `limit` passes.
    async fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Line) -> bool) -> bool {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            ticker.tick().await;
            self.tick([0; FRAME_SAMPLES]).await;
            self.take_actions();
            if done(self) {
                return true;
            }
        }
        false
    }

    /// Feed caller audio in real time while the bot's audio plays.
    async fn say(&mut self, samples: &[i16]) {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for frame in audio::frames(samples) {
            ticker.tick().await;
            self.tick(frame).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_during_playback_stops_it() {
    let setup = setup().await;
    let (mut line, task) = Line::new(setup.clone());
    // Let the greeting start playing (it is several seconds long).
    assert!(
        line.run_until(Duration::from_secs(10), |l| l.played.len() >= 25)
            .await,
        "the greeting never played"
    );
    let queued_before: usize = line.queue.iter().map(|(s, _)| s.len()).sum();
    let greeting_marks: Vec<u64> = line.queue.iter().map(|(_, m)| *m).collect();
    assert!(
        queued_before > 16000,
        "the greeting should still have over a second to play"
    );

    // The caller talks over it.
    let speech = caller("I want to talk to a person.", "en-us");
    let onset = Instant::now();
    line.say(&speech).await;
    let cleared = line.cleared_at.expect("barge-in did not stop playback");
    // Detection needs barge_in_min_speech_ms of speech after the 300 ms lead-in,
    // plus VAD chunking; the stop itself must follow within 200 ms of detection.
    let lead_in = Duration::from_millis(300);
    let detection_bound =
        lead_in + Duration::from_millis(setup.settings.barge_in_min_speech_ms as u64 + 128);
    assert!(
        cleared.duration_since(onset) <= detection_bound + Duration::from_millis(200),
        "playback stopped {:?} after the caller started",
        cleared.duration_since(onset) - lead_in
    );
    // Nothing of the greeting is left to play once the caller barged in.
    assert!(
        line.queue.iter().all(|(_, m)| !greeting_marks.contains(m)),
        "greeting audio still queued after the barge-in"
    );
    assert!(
        line.reports.iter().any(|r| r.barged_in),
        "the greeting's report should say it was barged in on"
    );
    // And the caller's request is answered.
    assert!(
        line.run_until(Duration::from_secs(20), |l| !l.transfers.is_empty())
            .await,
        "no transfer after asking for a person"
    );
    let _ = line.events.send(CallEvent::Hangup).await;
    let _ = task.await;
    setup.engines.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_request_takes_the_safety_net_and_the_call_plane_lives_on() {
    let setup = setup().await;
    let stt = setup.engines.stt.clone().unwrap();
    let (mut line, task) = Line::new(setup.clone());
    assert!(
        line.run_until(Duration::from_secs(30), |l| l.state == CallState::Listening
            && l.queue.is_empty())
            .await
    );

    // Kill the STT worker whenever a transcription is in flight, until the call
    // is handed over. Killing only the first one is not enough: it may be a
    // speculative transcription the session discards when the caller goes on
    // talking, and the restarted worker would then serve the turn normally.
    let stop_killing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stt = stt.clone();
        let stop = stop_killing.clone();
        tokio::spawn(async move {
            let mut first_kill = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if stt.worker.in_flight() > 0 {
                    stt.worker.kill();
                    first_kill.get_or_insert_with(Instant::now);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            first_kill
        })
    };
    let speech = caller("Where is my order?", "en-us");
    line.say(&speech).await;
    let transferred = line
        .run_until(Duration::from_secs(15), |l| !l.transfers.is_empty())
        .await;
    stop_killing.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed_at = killer
        .await
        .unwrap()
        .expect("no transcription was ever in flight");
    assert!(transferred, "no transfer after the worker died");
    let report = line
        .reports
        .iter()
        .find(|r| r.safety_net)
        .expect("a safety-net report");
    assert!(
        report.error.as_deref().unwrap_or("").contains("stt"),
        "{report:?}"
    );
    assert_eq!(line.transfers[0].0, setup.settings.safety_target);
    assert!(line.state == CallState::Transferring);
    // The apology was played (pre-rendered: no engine needed).
    assert!(
        line.run_until(Duration::from_secs(10), |l| l.queue.is_empty())
            .await
    );
    assert!(
        line.played.iter().any(|t| *t > killed_at),
        "the apology was not played"
    );
    let _ = line.events.send(CallEvent::Hangup).await;
    let _ = task.await;

    // The supervisor restarts the worker, and the next call is served normally.
    stt.worker
        .wait_ready(Duration::from_secs(30))
        .await
        .expect("the STT worker came back");
    assert!(stt.worker.health().restarts >= 1);
    let (mut line, task) = Line::new(setup.clone());
    assert!(
        line.run_until(Duration::from_secs(30), |l| l.state == CallState::Listening
            && l.queue.is_empty())
            .await
    );
    line.say(&caller("What are your store hours?", "en-us"))
        .await;
    assert!(
        line.run_until(Duration::from_secs(20), |l| l
            .reports
            .iter()
            .any(|r| r.turn == 1))
            .await
    );
    let r = line.reports.iter().find(|r| r.turn == 1).unwrap();
    assert!(!r.safety_net, "{r:?}");
    assert_eq!(r.intent.as_deref(), Some("store_hours"), "{r:?}");
    let _ = line.events.send(CallEvent::Hangup).await;
    let _ = task.await;
    setup.engines.shutdown();
}

/// The bot's states decide how the call listens: tests/fixtures/bundles/keypad_line.yaml
/// opens with a prompt that may not be interrupted, asks again after 1.5 s of
/// silence (the bot-wide timeout is 60 s), and takes a four-key code that `*`
/// or the fourth key ends (the inter-digit timeout is 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_states_barge_in_no_input_and_keypad_settings_are_followed() {
    let bundle = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bundles/keypad_line.yaml");
    let setup = understudy::cli::runtime::session_setup(&test_config(), Some(&bundle))
        .await
        .expect("session setup");
    let (mut line, task) = Line::new(setup.clone());
    assert!(
        line.run_until(Duration::from_secs(10), |l| l.played.len() >= 25)
            .await,
        "the greeting never played"
    );

    // Talking over the greeting neither stops it nor counts as a turn.
    line.say(&caller("Let me talk to someone.", "en-us")).await;
    assert!(
        line.cleared_at.is_none(),
        "a prompt with barge_in: false was cut"
    );
    assert!(
        line.run_until(Duration::from_secs(30), |l| l.queue.is_empty())
            .await,
        "the greeting never ended"
    );
    let greeting_done = Instant::now();
    assert!(
        line.reports.iter().all(|r| !r.barged_in),
        "{:?}",
        line.reports
    );

    // The state's own no-input timeout, not the bot's 60 s.
    assert!(
        line.run_until(Duration::from_secs(15), |l| l
            .reports
            .iter()
            .any(|r| r.turn >= 1))
            .await,
        "no no-input prompt 15 s after the greeting"
    );
    let first = line.reports.iter().find(|r| r.turn >= 1).unwrap().clone();
    assert!(
        line.transfers.is_empty(),
        "speech over the greeting was acted on: {:?}",
        line.transfers
    );
    assert!(first.reply.contains("still there"), "{first:?}");
    assert!(greeting_done.elapsed() < Duration::from_secs(15));

    // "*" ends an entry at once: one key is too short for the code.
    assert!(
        line.run_until(Duration::from_secs(15), |l| l.state == CallState::Listening
            && l.queue.is_empty())
            .await
    );
    let _ = line.events.send(CallEvent::Dtmf('9')).await;
    let _ = line.events.send(CallEvent::Dtmf('*')).await;
    assert!(
        line.run_until(Duration::from_secs(10), |l| l
            .reports
            .iter()
            .any(|r| r.dtmf.as_deref() == Some("9")))
            .await,
        "\"9*\" did not end the entry"
    );
    // The fourth key ends the next one without a terminator.
    assert!(
        line.run_until(Duration::from_secs(15), |l| l.state == CallState::Listening
            && l.queue.is_empty())
            .await
    );
    for key in ['1', '2', '3', '4'] {
        let _ = line.events.send(CallEvent::Dtmf(key)).await;
    }
    assert!(
        line.run_until(Duration::from_secs(10), |l| l
            .reports
            .iter()
            .any(|r| r.dtmf.as_deref() == Some("1234")))
            .await,
        "four keys did not complete the entry"
    );
    let code = line
        .reports
        .iter()
        .find(|r| r.dtmf.as_deref() == Some("1234"))
        .unwrap();
    assert_eq!(
        code.slots.get("code").map(String::as_str),
        Some("1234"),
        "{code:?}"
    );
    assert!(
        line.run_until(Duration::from_secs(15), |l| l.state == CallState::Ended)
            .await,
        "the bot should hang up"
    );
    let _ = task.await;
    setup.engines.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_keys_reach_the_dialog() {
    let setup = setup().await;
    let (mut line, task) = Line::new(setup.clone());
    assert!(
        line.run_until(Duration::from_secs(30), |l| l.state == CallState::Listening
            && l.queue.is_empty())
            .await
    );
    // "1" for orders in the demo menu is not guaranteed; 0 is the agent key.
    let _ = line.events.send(CallEvent::Dtmf('0')).await;
    let _ = line.events.send(CallEvent::Dtmf('#')).await;
    assert!(
        line.run_until(Duration::from_secs(15), |l| !l.transfers.is_empty())
            .await,
        "0# should reach an agent"
    );
    let r = line
        .reports
        .iter()
        .find(|r| r.dtmf.is_some())
        .expect("a DTMF turn");
    assert_eq!(r.dtmf.as_deref(), Some("0"));
    let _ = line.events.send(CallEvent::Hangup).await;
    let _ = task.await;
    setup.engines.shutdown();
}

/// A long-running appliance streams thousands of distinct sentences (LLM
/// answers, order confirmations) into the prompt cache. The pre-rendered
/// prompts (the safety net's apology, the filler, the takeover prompt, the
/// bot's flow prompts) must never be evicted for them: the safety net
/// plays the apology from there when the TTS is what failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_prompt_cache_keeps_the_pre_rendered_prompts() {
    let setup = setup().await;
    let mut pre_rendered = setup.settings.fixed_prompts();
    pre_rendered.extend(setup.bot.static_prompts());
    for text in &pre_rendered {
        assert!(
            setup.prompts.get(text).is_some(),
            "{text:?} not pre-rendered"
        );
    }
    // Streamed speech enters the cache the way `Speech::next` adds it.
    let streamed = |i: usize| format!("Order {i} shipped on Monday.");
    for i in 0..5_000 {
        setup.prompts.insert(&streamed(i), vec![100; 1_600]);
    }
    for text in &pre_rendered {
        assert!(
            setup.prompts.get(text).is_some(),
            "{text:?} was dropped from the cache by streamed speech"
        );
    }
    // The streamed sentences are bounded, the least recently used go first.
    assert!(setup.prompts.get(&streamed(4_999)).is_some());
    assert!(setup.prompts.get(&streamed(0)).is_none());
    assert!(
        setup.prompts.len() < pre_rendered.len() + 5_000,
        "{} entries",
        setup.prompts.len()
    );
    setup.engines.shutdown();
}
