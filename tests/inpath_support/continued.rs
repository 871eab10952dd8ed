//! One conversation the cloud bot began and the local bot continued: where
//! the cloud leg died, what the caller had said, and what the local bot
//! said next.

use super::*;
use crate::sip_support::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the demo cloud bot dies in a continuation round.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Death {
    /// Right after the caller answered the order-number question.
    AfterTheAnswer,
    /// In the middle of the order-number question, before any answer.
    MidQuestion,
}

/// What a continuation round measured, from the SIGKILL, at the caller's RTP.
pub struct Continued {
    pub first_audio: Duration,
    /// The first words that carry the conversation on (the answer or the
    /// re-asked question); None when a takeover prompt came first (then
    /// they start somewhere behind it, not measured).
    pub continuing: Option<Duration>,
    pub placed: bool,
}

/// A call to the demo cloud bot: the caller asks for their order after the
/// welcome; the cloud asks for the order number and dies as `death` says.
/// The local bot must neither greet nor start over: after the answer it
/// gives that order's status, mid-question it asks for the number again.
pub fn continue_once(
    serve: &Serve,
    dir: &Path,
    mut cloud: SippRun,
    demo: DemoCloud,
    death: Death,
    round: usize,
) -> Continued {
    wait_status(serve, "\"routes_to_cloud\":true", Duration::from_secs(20));
    let caller = call(serve, dir, Duration::from_secs(50));
    serve.wait_logged(
        "bridged to the cloud bot",
        round + 1,
        Duration::from_secs(10),
    );
    let start = caller
        .peer
        .wait_audio_after(caller.started, Duration::from_secs(10))
        .expect("no cloud welcome");
    let sleep_until = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
    // The caller's request, in the pause after the welcome.
    sleep_until(start + demo.welcome_end + Duration::from_millis(400));
    caller.peer.say(&say("Where is my order?", dir));
    let killed = match death {
        Death::AfterTheAnswer => {
            sleep_until(start + demo.question_end + Duration::from_millis(500));
            let answering = Instant::now();
            caller.peer.say(&say("It's 4 8 2 1 3.", dir));
            caller
                .peer
                .wait_said(answering, Duration::from_secs(10))
                .expect("the answer was not sent");
            std::thread::sleep(Duration::from_millis(200));
            Instant::now()
        }
        Death::MidQuestion => {
            // "Sure. What's your order number? You can sa-"
            sleep_until(start + demo.question_start + Duration::from_millis(3_800));
            Instant::now()
        }
    };
    // The acknowledgment ("Okay.") is logged as a turn too; the continuing words are the next one.
    let local_turns = || {
        serve
            .logged("turn")
            .iter()
            .filter(|t| t["matched_by"] != "takeover_ack")
            .count()
    };
    let turns_before = local_turns();
    cloud.kill();
    let first = caller
        .peer
        .wait_audio_after(killed, Duration::from_secs(8))
        .expect("no local bot audio after the cloud died");
    let taken = serve.wait_logged("took the call over", round + 1, Duration::from_secs(5));
    let taken = taken.last().unwrap();
    let prompted = taken["prompt_played"] == true;
    let acknowledged = taken["acknowledged"] == true;
    let mut started_over = vec!["thanks for calling", "how can i help"];
    if !prompted {
        started_over.push("back with you");
    }
    // The local bot's first turn is logged once it has been played out.
    let waited = Instant::now();
    while local_turns() <= turns_before {
        assert!(
            waited.elapsed() < Duration::from_secs(40),
            "no local turn:\n{}",
            serve.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let local = heard(
        &caller.peer,
        first,
        Instant::now(),
        dir,
        &format!("continued-{round}"),
    );
    eprintln!(
        "round {round} ({death:?}): local audio {} ms after SIGKILL: {local:?}",
        (first - killed).as_millis()
    );
    for greeting in started_over {
        assert!(
            !local.contains(greeting),
            "the local bot started over: {local:?}"
        );
    }
    let placed = serve
        .logged("takeover: placed in the flow")
        .into_iter()
        .filter(|p| p["state"] == "order_status")
        .count()
        > 0;
    match death {
        Death::AfterTheAnswer => {
            assert!(
                // The status sentence; whisper tiny sometimes hears "shipped" as "shep".
                ["shipped", "monday", "arrive", "thursday"]
                    .iter()
                    .filter(|w| local.contains(*w))
                    .count()
                    >= 3,
                "the order's status is missing: {local:?}"
            );
            assert!(
                !local.contains("your order number"),
                "the local bot asked for the number again: {local:?}"
            );
        }
        Death::MidQuestion => {
            assert!(
                local.contains("order number"),
                "the local bot should ask for the order number again: {local:?}"
            );
        }
    }
    caller.sipp.wait().assert_ok("the caller's call");
    // After the acknowledgment ("Okay.", about 0.4 s) the continuing words
    // are the next stretch of speech.
    let continuing = match (prompted, acknowledged) {
        (true, _) => None,
        (false, false) => Some(first - killed),
        (false, true) => {
            let parts = caller.peer.utterances(
                first - Duration::from_millis(1),
                Instant::now(),
                Duration::from_millis(300),
            );
            assert!(
                parts.len() >= 2,
                "the acknowledgment and the continuing words should be heard apart: {parts:?}"
            );
            Some(parts[1].0 - killed)
        }
    };
    Continued {
        first_audio: first - killed,
        continuing,
        placed,
    }
}
