//! Process-wide metrics: counters, gauges and latency histograms, rendered in
//! the Prometheus text format by the HTTP endpoint. Every pipeline stage
//! reports here, so what the benchmark measures is also visible in production.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Histogram bucket bounds, in milliseconds: dense where voice latency lives.
const BUCKETS_MS: [f64; 16] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 650.0, 800.0, 1000.0, 1500.0, 2000.0,
    3000.0, 5000.0,
];

/// Histogram: round trip of one Smart Turn end-of-turn call, in ms.
pub const SMART_TURN_MS: &str = "understudy_smart_turn_ms";
/// Counter, label `decision`: what the session did at a pause after asking
/// Smart Turn (`finished`, `unfinished`, `words_go_on`, `fallback`).
pub const SMART_TURN_DECISIONS: &str = "understudy_smart_turn_decisions_total";

type Key = (String, Vec<(String, String)>);

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<Key, f64>,
    gauges: BTreeMap<Key, f64>,
    histograms: BTreeMap<Key, Histogram>,
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

fn key(name: &str, labels: &[(&str, &str)]) -> Key {
    (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Add `v` to the counter `name` with these labels (created at 0).
pub fn counter_add(name: &str, labels: &[(&str, &str)], v: f64) {
    *registry()
        .lock()
        .unwrap()
        .counters
        .entry(key(name, labels))
        .or_default() += v;
}

/// Add 1 to the counter `name` with these labels.
pub fn counter_inc(name: &str, labels: &[(&str, &str)]) {
    counter_add(name, labels, 1.0);
}

/// Set the gauge `name` with these labels to `v`.
pub fn gauge_set(name: &str, labels: &[(&str, &str)], v: f64) {
    registry()
        .lock()
        .unwrap()
        .gauges
        .insert(key(name, labels), v);
}

/// Add `v` (may be negative) to the gauge `name` with these labels, e.g. calls in progress.
pub fn gauge_add(name: &str, labels: &[(&str, &str)], v: f64) {
    *registry()
        .lock()
        .unwrap()
        .gauges
        .entry(key(name, labels))
        .or_default() += v;
}

/// Record one latency sample in milliseconds.
pub fn observe_ms(name: &str, labels: &[(&str, &str)], ms: f64) {
    let mut reg = registry().lock().unwrap();
    let h = reg.histograms.entry(key(name, labels)).or_default();
    for (i, bound) in BUCKETS_MS.iter().enumerate() {
        if ms <= *bound {
            h.counts[i] += 1;
        }
    }
    h.count += 1;
    h.sum += ms;
}

/// The current value of a counter (tests and readiness use this).
pub fn counter_value(name: &str, labels: &[(&str, &str)]) -> f64 {
    registry()
        .lock()
        .unwrap()
        .counters
        .get(&key(name, labels))
        .copied()
        .unwrap_or(0.0)
}

fn labels_text(labels: &[(String, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Everything, in the Prometheus text exposition format.
pub fn render() -> String {
    let reg = registry().lock().unwrap();
    let mut out = String::new();
    let mut typed = std::collections::HashSet::new();
    let mut type_line = |out: &mut String, name: &str, kind: &str| {
        if typed.insert(name.to_string()) {
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
    };
    for ((name, labels), v) in &reg.counters {
        type_line(&mut out, name, "counter");
        let _ = writeln!(out, "{name}{} {v}", labels_text(labels, None));
    }
    for ((name, labels), v) in &reg.gauges {
        type_line(&mut out, name, "gauge");
        let _ = writeln!(out, "{name}{} {v}", labels_text(labels, None));
    }
    for ((name, labels), h) in &reg.histograms {
        type_line(&mut out, name, "histogram");
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                labels_text(labels, Some(("le", bound.to_string()))),
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            labels_text(labels, Some(("le", "+Inf".into()))),
            h.count
        );
        let _ = writeln!(out, "{name}_sum{} {}", labels_text(labels, None), h.sum);
        let _ = writeln!(out, "{name}_count{} {}", labels_text(labels, None), h.count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        observe_ms("test_hist_ms", &[("stage", "x")], 7.0);
        observe_ms("test_hist_ms", &[("stage", "x")], 700.0);
        let text = render();
        assert!(
            text.contains("test_hist_ms_bucket{stage=\"x\",le=\"10\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("test_hist_ms_bucket{stage=\"x\",le=\"800\"} 2"),
            "{text}"
        );
        assert!(text.contains("test_hist_ms_count{stage=\"x\"} 2"), "{text}");
    }

    #[test]
    fn counters_add_up_per_label_set() {
        counter_inc("test_total", &[("engine", "a")]);
        counter_inc("test_total", &[("engine", "a")]);
        counter_inc("test_total", &[("engine", "b")]);
        assert_eq!(counter_value("test_total", &[("engine", "a")]), 2.0);
        assert_eq!(counter_value("test_total", &[("engine", "b")]), 1.0);
    }
}
