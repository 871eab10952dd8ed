//! The held-out caller set and the benchmark that runs it (docs/benchmarks.md).
//!
//! The set must stay held out: no utterance may contain a training phrase or
//! a keyword of the demo bundle. A slice of it runs through `understudy
//! bench` with the test pack (one voice, 16 kHz and 8 kHz mu-law) and must
//! reach the accuracy floors measured for that pack, time every stage, and
//! transcribe nothing from lines without speech.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use support::*;
use understudy::bench::callers::{CallerSet, KNOWLEDGE, OUT_OF_SCOPE};
use understudy::dialog::bundle::Bundle;

#[test]
fn the_caller_set_is_held_out_from_the_demo_bundle() {
    let set = CallerSet::builtin();
    let overlap = set.training_overlap(&Bundle::demo());
    assert!(
        overlap.is_empty(),
        "held-out callers say what the bot was trained on:\n{}",
        overlap.join("\n")
    );
}

#[test]
fn the_caller_set_covers_what_the_benchmark_reports() {
    let set = CallerSet::builtin();
    let bundle = Bundle::demo();
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &set.turns {
        *per.entry(t.category.as_str()).or_default() += 1;
    }
    for intent in bundle.intents.keys() {
        let n = per.get(intent.as_str()).copied().unwrap_or(0);
        assert!(n >= 12, "{intent}: {n} first turns, want 12");
    }
    for cat in per.keys() {
        assert!(
            bundle.intents.contains_key(*cat) || [OUT_OF_SCOPE, KNOWLEDGE].contains(cat),
            "unknown category {cat}"
        );
    }
    assert!(per[OUT_OF_SCOPE] >= 15 && per[KNOWLEDGE] >= 15, "{per:?}");
    let turns = set.turns.len() + set.tasks.iter().map(|t| t.turns.len()).sum::<usize>();
    assert!(turns >= 100, "{turns} caller turns");
    assert!(set.tasks.len() >= 3 && set.tasks.iter().all(|t| !t.turns.is_empty()));
    let kinds: Vec<&str> = set.clips.iter().map(|c| c.kind.as_str()).collect();
    assert!(
        kinds.contains(&"silence") && kinds.contains(&"noise"),
        "{kinds:?}"
    );
}

#[test]
fn bad_selections_are_refused_before_anything_starts() {
    for (args, said) in [
        (&["--conditions", "gsm"][..], "expected 16k, mulaw"),
        (&["--voices", "en-us@fast"][..], "words per minute"),
        (&["--categories", "weather"][..], "no category \"weather\""),
    ] {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        let out = understudy(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("ready"),
            "engines started for {args:?}: {stderr}"
        );
    }
}

/// Floors for the test pack's slice (docs/benchmarks.md, "CI slice"): measured 5/10 at 16 kHz
/// and 5/10 at mu-law on 2026-12-06 (box at load average ~11); one miss of margin.
const FLOOR_16K: f64 = 0.40;
const FLOOR_MULAW: f64 = 0.40;

#[test]
fn a_slice_of_the_held_out_set_through_the_test_pack() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    // Accuracy, not speed: a loaded CI box must not turn a slow turn into the
    // safety net (engine and turn deadlines raised, no filler).
    let config = dir.path().join("understudy.toml");
    std::fs::write(
        &config,
        "[engines.timeouts_ms]\nvad = 5000\nstt = 20000\nllm = 20000\ntts = 20000\nembed = 20000\n\
         [session]\nturn_deadline_ms = 30000\nfiller_after_ms = 0\n",
    )
    .unwrap();
    let output = understudy(&[
        "--config",
        config.to_str().unwrap(),
        "bench",
        "--per-category",
        "2",
        "--tasks",
        "1",
        "--voices",
        "en-us@160",
        "--conditions",
        "16k,mulaw",
        "--no-raw",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    println!("{}", String::from_utf8_lossy(&output.stdout));

    let summaries = report["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 2);
    for (s, floor) in summaries.iter().zip([FLOOR_16K, FLOOR_MULAW]) {
        let c = &s["condition"];
        let accuracy = s["intent_accuracy"]["rate"].as_f64().unwrap();
        assert_eq!(
            s["intent_accuracy"]["n"], 10,
            "{c}: 2 first turns x 5 intents"
        );
        assert!(
            accuracy >= floor,
            "{c}: intent accuracy {accuracy:.2} under the floor {floor}\n{stderr}"
        );
        assert_eq!(s["out_of_scope_false_accepts"]["n"], 2, "{c}");
        assert_eq!(s["task_success"]["n"], 1, "{c}");
        assert_eq!(
            s["clips_transcribed"]["correct"], 0,
            "{c}: a transcript from a line without speech\n{stderr}"
        );
        assert_eq!(s["clips_transcribed"]["n"], 3, "{c}");
        assert!(s["wer"].as_f64().unwrap() < 0.6, "{c}: WER {}", s["wer"]);
    }
    // Every stage of every turn timed: every first turn, and each task turn the
    // call reached (a task cut short by a failure counts in task success).
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(
        samples.len(),
        2 * (14 + 3),
        "14 first turns and a 3-turn task per condition"
    );
    let reached = |s: &&Value| s["task"].is_null() || s["transcript"] != "";
    for sample in samples.iter().filter(reached) {
        for stage in [
            "endpoint_ms",
            "stt_ms",
            "dialog_ms",
            "tts_first_audio_ms",
            "voice_to_voice_ms",
        ] {
            let v = sample[stage].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{stage} not timed: {sample:#}");
        }
    }
}
