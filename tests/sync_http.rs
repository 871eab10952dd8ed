//! The HTTP(S) source: an export published on a (loopback) web server is
//! polled with ETag / If-Modified-Since, a truncated download or an error
//! status leaves the active version alone, and inside `serve`'s sync task a
//! new version is picked up and activated while a call is in progress on
//! the old one (the call finishes on the version it started with).

mod support;
mod sync_support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sync_support::*;
use understudy::config::Config;
use understudy::dialog::UserInput;
use understudy::sync::{live::LiveSetup, PullOptions, PullResult, SyncAgent};

fn config_with(store: &std::path::Path, source: &str) -> Config {
    let mut c = Config::default();
    c.sync.store = Some(store.to_path_buf());
    c.sync.source = Some(source.into());
    c.sync.interval_s = 1;
    c
}

/// The cafe bot, version 1 and a version 2 whose opening hours answer differs.
fn cafe_versions(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
    let v2 = dir.join("cafe-v2");
    copy_dir(&fixture("rasa/cafe-bot"), &v2);
    edit(
        &v2.join("domain.yml"),
        "We are open from seven to seven, every day.",
        "We are open from eight to six, Monday to Saturday.",
    );
    (messy_zip(&fixture("rasa/cafe-bot")), messy_zip(&v2))
}

#[tokio::test]
async fn conditional_polling_and_failed_downloads_leave_the_active_version() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = cafe_versions(dir.path());
    let server = ExportServer::start(v1).await;
    let agent = SyncAgent::open(&config_with(&dir.path().join("store"), &server.url)).unwrap();
    let pull = || {
        agent.pull(PullOptions {
            activate: true,
            ..Default::default()
        })
    };

    let first = pull().await.unwrap();
    let PullResult::Stored {
        id: v1_id,
        activated: true,
        ..
    } = first.result
    else {
        panic!("{first:?}")
    };
    // Unchanged on the server: a 304, nothing downloaded or stored.
    assert!(matches!(
        pull().await.unwrap().result,
        PullResult::NotModified
    ));
    assert_eq!(server.not_modified.load(Ordering::SeqCst), 1);
    let state = agent.store.source_state(&server.url).unwrap();
    assert_eq!(state.etag.as_deref(), Some("\"v1\""));
    assert_eq!(
        state.last_modified.as_deref(),
        Some("Wed, 25 Nov 2026 10:00:00 GMT")
    );

    // A new export whose download breaks off, then a server error: both fail, v1 stays.
    server.publish(v2, "\"v2\"");
    server.set_mode(Mode::Truncate);
    let err = format!("{:#}", pull().await.unwrap_err());
    assert!(
        err.contains("truncated download") || err.contains("broke off"),
        "{err}"
    );
    server.set_mode(Mode::Fail500);
    let err = format!("{:#}", pull().await.unwrap_err());
    assert!(
        err.contains("500") && err.contains("keeps serving"),
        "{err}"
    );
    assert_eq!(
        agent.store.active().unwrap().as_deref(),
        Some(v1_id.as_str())
    );
    let status = agent.status(false).await.unwrap();
    assert_eq!(status.last_pull.as_ref().unwrap().result, "failed");
    // A source nobody answers at (a closed loopback port) fails the same way.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable = format!("http://{closed}/export.zip");
    let err = format!(
        "{:#}",
        agent
            .pull(PullOptions {
                from: Some(unreachable),
                activate: true,
                ..Default::default()
            })
            .await
            .unwrap_err()
    );
    assert!(err.contains("cannot reach"), "{err}");
    assert_eq!(
        agent.store.active().unwrap().as_deref(),
        Some(v1_id.as_str())
    );

    // Served whole: picked up and activated; status sees the cloud and the active version agree.
    server.set_mode(Mode::Normal);
    let PullResult::Stored {
        id: v2_id,
        activated: true,
        ..
    } = pull().await.unwrap().result
    else {
        panic!("v2 not activated")
    };
    assert_ne!(v1_id, v2_id);
    let status = agent.status(true).await.unwrap();
    assert!(status.drift.starts_with("in sync"), "{}", status.drift);
    assert_eq!(status.latest.as_deref(), Some(v2_id.as_str()));
    // The cloud rolls back its export: status reports the drift before any pull.
    server.publish(messy_zip(&fixture("rasa/cafe-bot")), "\"v1-again\"");
    let status = agent.status(true).await.unwrap();
    assert!(
        status.drift.starts_with("differs") && status.drift.contains(&v1_id),
        "{}",
        status.drift
    );
    assert!(server.requests.load(Ordering::SeqCst) >= 6);
}

/// With the real engines of the test pack (TTS for prompt audio, MiniLM for
/// the parity replay): `serve`'s sync task swaps versions under a live call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_goes_live_for_new_calls_while_a_call_finishes_on_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = cafe_versions(dir.path());
    let server = ExportServer::start(v1).await;
    let mut config = support::test_config();
    config.sync = config_with(&dir.path().join("store"), &server.url).sync;
    let engines = understudy::engines::Engines::start(
        &config.engine_config().unwrap(),
        understudy::engines::EngineSet {
            tts: true,
            embed: true,
            ..Default::default()
        },
    );
    engines
        .wait_ready(Duration::from_secs(120))
        .await
        .expect("the test pack's TTS and embedding workers start");

    // Version 1 serving, as `serve` starts: pulled, then prepared with its prompt audio.
    let agent = SyncAgent::open(&config).unwrap();
    let nlu = understudy::dialog::Nlu {
        embed: engines.embed.clone(),
        llm: None,
        stt: None,
    };
    let first = agent
        .pull(PullOptions {
            activate: true,
            nlu: nlu.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let PullResult::Stored {
        id: v1_id, parity, ..
    } = first.result
    else {
        panic!("{first:?}")
    };
    assert_eq!(parity.stages, ["rules", "embeddings"]);
    let live = Arc::new(LiveSetup::default());
    let audio = understudy::sync::service::prompt_audio(&config).unwrap();
    let started = Instant::now();
    let (setup, stats) = understudy::sync::live::prepare(
        &config,
        agent.store.bundle(&v1_id).unwrap(),
        engines.clone(),
        Some(&audio),
    )
    .await
    .unwrap();
    eprintln!(
        "v1 activation: {:.0} ms, {} prompts rendered, {} reused",
        started.elapsed().as_secs_f64() * 1e3,
        stats.rendered,
        stats.reused
    );
    assert!(stats.rendered >= 10, "{stats:?}");
    live.install(setup, Some(v1_id.clone()));

    // A call starts on version 1 and is mid-conversation.
    let call = live.current().unwrap();
    let (mut conv, greeting) = call.bot.start();
    assert_eq!(greeting.text(), "Corner Cafe, good morning!");
    assert!(
        call.prompts.get("Corner Cafe, good morning!").is_some(),
        "static prompts are pre-rendered"
    );

    // The cloud publishes version 2; the sync task polls, tests, activates and swaps.
    server.publish(v2, "\"v2\"");
    let task = understudy::sync::service::spawn(config.clone(), engines.clone(), live.clone());
    let published = Instant::now();
    while live.version().as_deref() == Some(v1_id.as_str()) {
        assert!(
            published.elapsed() < Duration::from_secs(60),
            "version 2 did not go live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let v2_id = live.version().unwrap();
    eprintln!(
        "v2 live {:.0} ms after it was published (poll every 1 s)",
        published.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(
        agent.store.active().unwrap().as_deref(),
        Some(v2_id.as_str())
    );

    // The call in progress still answers with version 1's words...
    let turn = call
        .bot
        .respond(&mut conv, UserInput::Text("when are you open".into()))
        .await
        .unwrap();
    assert!(turn.text().contains("seven to seven"), "{}", turn.text());
    // ...and a new call gets version 2, its unchanged prompts reused from disk.
    let new_call = live.current().unwrap();
    let (mut conv2, _) = new_call.bot.start();
    let turn = new_call
        .bot
        .respond(&mut conv2, UserInput::Text("when are you open".into()))
        .await
        .unwrap();
    assert!(turn.text().contains("eight to six"), "{}", turn.text());
    assert!(new_call
        .prompts
        .get("We are open from eight to six, Monday to Saturday.")
        .is_some());
    let reused = understudy::metrics::counter_value(
        "understudy_prompt_audio_total",
        &[("result", "reused")],
    );
    assert!(
        reused >= 10.0,
        "version 2 reuses version 1's prompt audio: {reused}"
    );

    // Rollback (as `understudy sync rollback` does): new calls are back on version 1.
    agent.rollback().unwrap();
    let rolled = Instant::now();
    while live.version().as_deref() != Some(v1_id.as_str()) {
        assert!(
            rolled.elapsed() < Duration::from_secs(30),
            "the rollback did not go live"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = live.current().unwrap();
    let (mut conv3, _) = back.bot.start();
    let turn = back
        .bot
        .respond(&mut conv3, UserInput::Text("when are you open".into()))
        .await
        .unwrap();
    assert!(turn.text().contains("seven to seven"), "{}", turn.text());
    task.abort();
    engines.shutdown();
}
