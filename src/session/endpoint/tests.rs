//! Unit tests of `endpoint`.

use super::*;

/// Probabilities for a pattern like "....SSSSSSS......", one char per chunk.
fn run(pattern: &str, params: EndpointParams) -> Vec<(usize, EndpointEvent)> {
    let mut ep = Endpointer::new(params);
    pattern
        .chars()
        .enumerate()
        .filter_map(|(i, c)| {
            let p = match c {
                'S' => 0.9,
                '~' => 0.42, // in the hysteresis band
                _ => 0.05,
            };
            ep.push(p).map(|e| (i, e))
        })
        .collect()
}

fn params() -> EndpointParams {
    // 512-sample chunks are 32 ms: min speech 4 chunks, pause 6, end 15.
    EndpointParams {
        min_speech_ms: 128,
        pause_ms: 192,
        end_silence_ms: 480,
        ..Default::default()
    }
}

#[test]
fn a_turn_starts_pauses_and_ends() {
    let events = run("..SSSSSSSS................", params());
    assert_eq!(
        events[0],
        (5, EndpointEvent::SpeechStarted { start: 2 * 512 })
    );
    assert_eq!(
        events[1],
        (
            15,
            EndpointEvent::Paused {
                start: 1024,
                end: 10 * 512
            }
        )
    );
    assert_eq!(
        events[2],
        (
            24,
            EndpointEvent::SpeechEnded {
                start: 1024,
                end: 10 * 512
            }
        )
    );
    assert_eq!(events.len(), 3);
}

#[test]
fn short_blips_are_not_turns() {
    assert!(run("..SS....S.....SSS.......", params()).is_empty());
}

#[test]
fn a_pause_that_resumes_keeps_one_turn() {
    let events = run("SSSSSS.......SSSS..................", params());
    let kinds: Vec<_> = events.iter().map(|(_, e)| *e).collect();
    assert!(matches!(
        kinds[0],
        EndpointEvent::SpeechStarted { start: 0 }
    ));
    assert!(matches!(kinds[1], EndpointEvent::Paused { .. }));
    assert!(matches!(kinds[2], EndpointEvent::Resumed { start: 0 }));
    // The second pause is a new chance to transcribe early.
    assert_eq!(
        kinds[3],
        EndpointEvent::Paused {
            start: 0,
            end: 17 * 512
        }
    );
    assert_eq!(
        kinds[4],
        EndpointEvent::SpeechEnded {
            start: 0,
            end: 17 * 512
        }
    );
    assert_eq!(kinds.len(), 5);
}

#[test]
fn a_held_pause_waits_for_the_longer_silence_and_end_now_ends_at_once() {
    // pause 6 chunks, end 15, max 30 (960 ms).
    let held = EndpointParams {
        max_silence_ms: 960,
        ..params()
    };
    let mut ep = Endpointer::new(held);
    let mut events = vec![];
    for (i, c) in "SSSSSS".chars().chain("..........".chars()).enumerate() {
        if let Some(e) = ep.push(if c == 'S' { 0.9 } else { 0.05 }) {
            events.push((i, e));
            if matches!(e, EndpointEvent::Paused { .. }) {
                ep.hold();
            }
        }
    }
    // 10 silent chunks: paused, held, not ended (the fixed end would be at 15).
    assert!(matches!(events[1], (11, EndpointEvent::Paused { .. })));
    for _ in 0..10 {
        assert_eq!(ep.push(0.05), None, "ended before max_silence_ms");
    }
    // 20 silent chunks so far; the end comes at 30.
    let ended: Vec<_> = (0..10).filter_map(|_| ep.push(0.05)).collect();
    assert_eq!(
        ended,
        vec![EndpointEvent::SpeechEnded {
            start: 0,
            end: 6 * 512
        }]
    );

    // Speech again clears the hold; end_now ends a pause immediately.
    let mut ep = Endpointer::new(params());
    for p in [0.9; 6].into_iter().chain([0.05; 6]) {
        ep.push(p);
    }
    ep.hold();
    for p in [0.9; 3].into_iter().chain([0.05; 6]) {
        ep.push(p);
    }
    assert_eq!(
        ep.end_now(),
        Some(EndpointEvent::SpeechEnded {
            start: 0,
            end: 15 * 512
        })
    );
    assert!(!ep.in_speech());
    assert_eq!(ep.end_now(), None, "nothing to end after the turn ended");
}

#[test]
fn hold_after_speech_resumed_does_not_carry_over() {
    let mut ep = Endpointer::new(params());
    for p in [0.9; 6].into_iter().chain([0.05; 6]) {
        ep.push(p);
    }
    ep.hold();
    // The caller speaks again: the next pause is a fresh one, ending at the fixed silence.
    let events: Vec<_> = [0.9; 4]
        .into_iter()
        .chain([0.05; 15])
        .filter_map(|p| ep.push(p))
        .collect();
    assert!(
        matches!(events.last(), Some(EndpointEvent::SpeechEnded { .. })),
        "{events:?}"
    );
}

#[test]
fn verdicts_follow_the_model_unless_the_words_go_on() {
    use TurnVerdict::*;
    assert_eq!(TurnVerdict::from_model(0.2, 0.5, None), Unfinished);
    assert_eq!(TurnVerdict::from_model(0.9, 0.5, None), Finished);
    assert_eq!(
        TurnVerdict::from_model(0.9, 0.5, Some("What time do you open tomorrow?")),
        Finished
    );
    for text in [
        "My order number is 4 8",
        "my order number is four eight",
        "It's 48.",
        "the code is 7, 7,",
        "My order number is...",
        "I'd like to cancel the",
        "Yes, and um",
    ] {
        assert_eq!(
            TurnVerdict::from_model(0.97, 0.5, Some(text)),
            WordsGoOn,
            "{text}"
        );
    }
    for text in ["Yes, please.", "Thank you, that's all.", "Where is it?"] {
        assert_eq!(
            TurnVerdict::from_model(0.97, 0.5, Some(text)),
            Finished,
            "{text}"
        );
    }
    assert_eq!(
        TurnVerdict::from_model(0.3, 0.5, Some("four eight")),
        Unfinished
    );
}

#[test]
fn the_hysteresis_band_neither_starts_nor_ends() {
    // Uncertain chunks inside speech do not count as silence.
    let events = run("SSSSS~~~~~~~~~~~~~~~~~~~~SS", params());
    assert_eq!(events.len(), 1, "{events:?}");
}
