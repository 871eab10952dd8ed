//! Voice-to-voice at the caller's RTP leg, through real SIP: the headline
//! figure (docs/benchmarks.md "RTP leg"). For a subset of the held-out set
//! (tests/fixtures/heldout/callers.yaml), one call per question: SIPp does
//! the signalling, the test's RTP peer sends the question (espeak-ng en-us,
//! 8 kHz PCMU in real time) after the greeting and times the first packet of
//! the answer against the last packet of the question. Flow turns (decided
//! by rules, embeddings, the flow) and LLM turns (LLM match, knowledge
//! answer) are reported apart, p50/p95 interpolated. Agent requests are
//! left out: their transfer needs a REFER target this caller does not play.
//!
//! It asserts what it reports: every call completed, every question answered
//! at the RTP leg and logged as a turn, first-turn accuracy above the floor
//! stated for the pack. Latency is printed, not asserted (it depends on the
//! machine's load). Not part of the normal test run:
//!   cargo test --release --test bench_rtp -- --ignored --nocapture
//! Knobs: UNDERSTUDY_RTP_BENCH_PACK (default "test"),
//! UNDERSTUDY_RTP_BENCH_PER_CATEGORY (first turns per intent, default 3;
//! twice as many knowledge questions), UNDERSTUDY_RTP_BENCH_OUT (write the
//! results as JSON there, e.g. bench/results/rtp-test.json).

mod sip_support;

use serde_json::{json, Value};
use sip_support::*;
use std::collections::BTreeMap;
use understudy::audio;
use understudy::bench::callers::{judge, CallerSet, KNOWLEDGE};
use understudy::session::TurnReport;
use understudy::stats::Stat;

/// First-turn accuracy floor per pack (measured; docs/benchmarks.md).
fn floor(pack: &str) -> f64 {
    match pack {
        "test" => 0.5,
        _ => 0.7,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a benchmark: minutes long, run on an idle machine"]
fn rtp_leg_benchmark() {
    require_peers();
    let pack: String = env_or("UNDERSTUDY_RTP_BENCH_PACK", "test".to_string());
    let per: usize = env_or("UNDERSTUDY_RTP_BENCH_PER_CATEGORY", 3);
    let serve = Serve::start_with_pack(&pack, "");
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();

    let set = CallerSet::builtin();
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let picked: Vec<_> = set
        .turns
        .iter()
        .filter(|t| {
            let want = match t.category.as_str() {
                "order_status" | "returns" | "store_hours" | "goodbye" => per,
                KNOWLEDGE => 2 * per,
                _ => 0,
            };
            let n = taken.entry(t.category.as_str()).or_default();
            *n += 1;
            *n <= want
        })
        .collect();

    let mut rows = vec![];
    for (i, turn) in picked.iter().enumerate() {
        let speech = understudy::bench::synthesize_caller(&turn.say, "en-us", dir, "q").unwrap();
        let speech = audio::resample(&speech, audio::SAMPLE_RATE, 8000);
        let (v2v, logged) = ask_over_sip(
            &serve,
            dir,
            &speech,
            &format!("call {} ({:?})", i + 1, turn.say),
        );
        let reports: Vec<TurnReport> = logged
            .iter()
            .map(|t| TurnReport {
                transcript: t["transcript"].as_str().unwrap_or("").into(),
                intent: t["intent"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(Into::into),
                matched_by: t["matched_by"].as_str().unwrap_or("none").into(),
                reply: t["reply"].as_str().unwrap_or("").into(),
                ..Default::default()
            })
            .collect();
        let verdict = judge(turn, &reports);
        let path = match reports.first().map(|r| r.matched_by.as_str()) {
            Some("llm" | "knowledge") => "llm",
            _ => "flow",
        };
        eprintln!(
            "  [{:>2}/{}] {:<12} {path:<4} {} rtp v2v {:>5} ms  {:?} -> {:?}{}",
            i + 1,
            picked.len(),
            turn.category,
            if verdict.correct { "ok " } else { "BAD" },
            v2v.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
            turn.say,
            reports.first().map(|r| r.transcript.as_str()).unwrap_or(""),
            verdict
                .miss
                .as_deref()
                .map(|m| format!("  ({m})"))
                .unwrap_or_default()
        );
        rows.push(json!({
            "category": turn.category,
            "say": turn.say,
            "transcript": reports.first().map(|r| r.transcript.clone()),
            "intent": reports.first().and_then(|r| r.intent.clone()),
            "matched_by": reports.first().map(|r| r.matched_by.clone()),
            "path": path,
            "correct": verdict.correct,
            "rtp_voice_to_voice_ms": v2v,
            "session_voice_to_voice_ms": logged.first().and_then(|t| t["voice_to_voice_ms"].as_f64()),
        }));
    }

    let v2v = |path: &str| {
        Stat::of(
            rows.iter()
                .filter(|r| path == "all" || r["path"] == path)
                .filter_map(|r| r["rtp_voice_to_voice_ms"].as_f64()),
        )
    };
    let (all, flow, llm) = (v2v("all"), v2v("flow"), v2v("llm"));
    let correct = rows.iter().filter(|r| r["correct"] == true).count();
    let accuracy = correct as f64 / rows.len() as f64;
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    eprintln!("\n== RTP-leg voice-to-voice, pack {pack} (p50 / p95 ms, n)");
    for (name, s) in [("flow turns", &flow), ("LLM turns", &llm), ("all", &all)] {
        eprintln!("{name:<11} {:>6} / {:>6}  n={}", f(s.p50), f(s.p95), s.n);
    }
    eprintln!(
        "first-turn accuracy {correct}/{} = {:.1} %",
        rows.len(),
        accuracy * 100.0
    );
    if let Ok(out) = std::env::var("UNDERSTUDY_RTP_BENCH_OUT") {
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let report = json!({
            "pack": pack,
            "voice": "en-us@160",
            "condition": "8 kHz PCMU over SIP/RTP, loopback",
            "load_average": load.split_whitespace().next(),
            "accuracy": accuracy,
            "flow": flow, "llm": llm, "all": all,
            "turns": rows,
        });
        std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
        eprintln!("(written to {out})");
    }

    let unanswered: Vec<&Value> = rows
        .iter()
        .filter(|r| r["rtp_voice_to_voice_ms"].is_null() || r["transcript"].is_null())
        .collect();
    assert!(
        unanswered.is_empty(),
        "no answer or no turn logged: {unanswered:#?}"
    );
    assert!(
        accuracy >= floor(&pack),
        "first-turn accuracy {accuracy:.2} under the floor {} for pack {pack}",
        floor(&pack)
    );
}
