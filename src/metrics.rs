//! Process-wide metrics: counters, gauges and latency histograms, kept by the
//! `prometheus-client` crate and rendered in the OpenMetrics text format (which
//! Prometheus scrapes) by the HTTP endpoint, each with its `# HELP` and `# TYPE`
//! lines. Every pipeline stage reports here, so what the benchmark measures is
//! also visible in production. Latencies are histograms in seconds.
//!
//! A metric is named where it is reported; its help text is in [`HELP`], which a
//! test keeps complete. [`recent`] keeps the last turns and calls for the
//! dashboard.

pub mod recent;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

/// Histogram bucket bounds, in seconds: dense where voice latency lives.
const BUCKETS_S: [f64; 16] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0,
];

/// Histogram: round trip of one Smart Turn end-of-turn call, in seconds.
pub const SMART_TURN_SECONDS: &str = "understudy_smart_turn_seconds";
/// Counter, label `decision`: what the session did at a pause after asking
/// Smart Turn (`finished`, `unfinished`, `words_go_on`, `fallback`).
pub const SMART_TURN_DECISIONS: &str = "understudy_smart_turn_decisions_total";

/// Every metric's help text (the `# HELP` line), by name.
pub const HELP: &[(&str, &str)] = &[
    (
        "understudy_admin_refused_total",
        "Admin API requests refused for a missing or wrong token.",
    ),
    (
        "understudy_barge_in_total",
        "Times a caller interrupted the bot's speech.",
    ),
    (
        "understudy_call_capacity",
        "Concurrent calls allowed, every ingress together.",
    ),
    (
        "understudy_calls_active",
        "Calls in progress in the session layer.",
    ),
    (
        "understudy_calls_admitted",
        "Calls holding a capacity slot, by ingress.",
    ),
    (
        "understudy_calls_refused_total",
        "Calls refused, by ingress and reason (full, not ready, draining).",
    ),
    (
        "understudy_calls_total",
        "Calls started in the session layer.",
    ),
    (
        "understudy_cloud_call_failures_total",
        "In-path calls whose cloud leg failed.",
    ),
    (
        "understudy_cloud_probes_total",
        "Health probes of the cloud bot, by probe and result.",
    ),
    (
        "understudy_cloud_state",
        "The cloud bot's state: 0 up, 1 degraded, 2 down.",
    ),
    (
        "understudy_cloud_transitions_total",
        "Changes of the cloud bot's state, by from and to.",
    ),
    (
        "understudy_dialog_confirmations_total",
        "Confirmation questions the bot asked when unsure.",
    ),
    (
        "understudy_dialog_guard_total",
        "Knowledge answers checked by the guard, by verdict.",
    ),
    (
        "understudy_dialog_stage_seconds",
        "Time of one dialog stage (recognition, slots, knowledge...), by stage.",
    ),
    (
        "understudy_dialog_transfers_total",
        "Transfers to a human decided by the dialog, by reason.",
    ),
    (
        "understudy_dialog_turn_seconds",
        "Time the dialog took for one caller turn, by what matched it.",
    ),
    (
        "understudy_dialog_turns_total",
        "Caller turns handled by the dialog, by outcome.",
    ),
    (
        "understudy_draining",
        "1 while new calls are refused so the calls in progress can finish.",
    ),
    ("understudy_dtmf_total", "DTMF digits received in calls."),
    (
        "understudy_engine_request_seconds",
        "Round trip of one engine worker request, by engine and operation.",
    ),
    (
        "understudy_engine_timeouts_total",
        "Engine requests past their deadline, by engine.",
    ),
    (
        "understudy_fillers_total",
        "Filler phrases played while the bot was thinking or speaking slowly.",
    ),
    (
        "understudy_http_tls_handshakes_total",
        "TLS handshakes on the HTTP listener, by result.",
    ),
    (
        "understudy_inpath_calls_total",
        "In-path calls, by where they were routed.",
    ),
    (
        "understudy_prompt_audio_total",
        "Pre-rendered prompt audio, by result.",
    ),
    (
        "understudy_prompt_cache_entries",
        "Entries in the prompt audio cache.",
    ),
    (
        "understudy_prompt_cache_evictions_total",
        "Entries evicted from the prompt audio cache.",
    ),
    (
        "understudy_prompt_cache_total",
        "Prompt audio lookups, by result (hit, miss).",
    ),
    (
        "understudy_rtp_frames_concealed_total",
        "RTP audio frames concealed (lost and filled in).",
    ),
    (
        "understudy_rtp_frames_dropped_total",
        "RTP audio frames dropped by the jitter buffer.",
    ),
    (
        "understudy_rtp_jitter_seconds",
        "RTP interarrival jitter per call.",
    ),
    (
        "understudy_rtp_packets_invalid_total",
        "RTP packets that could not be parsed.",
    ),
    (
        "understudy_rtp_packets_late_total",
        "RTP packets that arrived too late to play.",
    ),
    (
        "understudy_rtp_packets_lost_total",
        "RTP packets never received.",
    ),
    (
        "understudy_rtp_packets_received_total",
        "RTP packets received.",
    ),
    ("understudy_rtp_packets_sent_total", "RTP packets sent."),
    (
        "understudy_rtp_timeouts_total",
        "Calls ended because their media stopped, by cause.",
    ),
    (
        "understudy_safety_net_total",
        "Turns the safety net took over (apology and transfer).",
    ),
    (
        "understudy_sip_503_total",
        "SIP requests answered 503, by request and reason.",
    ),
    (
        "understudy_sip_auth_total",
        "SIP digest authentication checks, by result.",
    ),
    (
        "understudy_sip_calls_ended_total",
        "SIP calls ended, by result.",
    ),
    ("understudy_sip_calls_total", "SIP INVITEs, by result."),
    (
        "understudy_sip_dropped_total",
        "SIP requests dropped at the edge, by method and reason.",
    ),
    (
        "understudy_sip_dtmf_total",
        "DTMF digits over SIP, by how they came (RTP event, SIP INFO).",
    ),
    (
        "understudy_sip_options_total",
        "SIP OPTIONS answered, by status.",
    ),
    (
        "understudy_sip_transfers_total",
        "SIP transfers, by how (REFER, bridge) and result.",
    ),
    (
        "understudy_sip_voice_to_voice_seconds",
        "End of the caller's speech to the bot's answer, measured on the wire.",
    ),
    (
        "understudy_smart_turn_decisions_total",
        "What a pause became after asking Smart Turn, by decision.",
    ),
    (
        "understudy_smart_turn_seconds",
        "Round trip of one Smart Turn end-of-turn call.",
    ),
    (
        "understudy_speculative_stt_total",
        "Speculative transcriptions started at a pause, by result.",
    ),
    (
        "understudy_stage_seconds",
        "Time of one pipeline stage of a turn (endpoint, STT, dialog, TTS...), by stage.",
    ),
    (
        "understudy_stream_calls_total",
        "Media-stream calls (WebSocket, AudioSocket), by ingress.",
    ),
    (
        "understudy_stream_dtmf_total",
        "DTMF digits on media streams, by ingress.",
    ),
    (
        "understudy_stream_errors_total",
        "Malformed media-stream messages, by ingress.",
    ),
    (
        "understudy_stream_messages_dropped_total",
        "Media-stream messages dropped, by ingress and reason.",
    ),
    (
        "understudy_sync_activations_total",
        "Bot versions activated.",
    ),
    (
        "understudy_sync_pulls_total",
        "Pulls of the cloud bot's export, by result.",
    ),
    (
        "understudy_sync_stage_seconds",
        "Time of one sync stage (import, parity, prompt audio...), by stage.",
    ),
    (
        "understudy_takeover_locate_seconds",
        "Time to place a taken-over call in the flow (transcription and matching).",
    ),
    (
        "understudy_takeover_placements_total",
        "Taken-over calls placed in the flow, by result.",
    ),
    (
        "understudy_takeovers_total",
        "Calls taken over from the cloud bot, by who continued them.",
    ),
    (
        "understudy_transfers_total",
        "Transfers to a human, by reason.",
    ),
    (
        "understudy_worker_deaths_total",
        "Engine worker processes that died, by engine.",
    ),
    (
        "understudy_worker_failed_total",
        "Engine workers given up after repeated failures, by engine.",
    ),
    (
        "understudy_worker_load_seconds",
        "Time the engine worker took to load its model, by engine.",
    ),
    (
        "understudy_worker_restarts_total",
        "Engine worker restarts, by engine.",
    ),
];

/// A metric's label set, in the order reported.
type Labels = Vec<(String, String)>;

struct Store {
    registry: Registry,
    counters: HashMap<String, Family<Labels, Counter<f64, AtomicU64>>>,
    gauges: HashMap<String, Family<Labels, Gauge<f64, AtomicU64>>>,
    histograms: HashMap<String, Family<Labels, Histogram>>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(|| {
        Mutex::new(Store {
            registry: Registry::default(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        })
    })
}

fn help(name: &str) -> &'static str {
    HELP.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, h)| *h)
        .unwrap_or("(no help text: add it to understudy::metrics::HELP)")
        // The encoder ends the line with a period of its own.
        .trim_end_matches('.')
}

fn labels(labels: &[(&str, &str)]) -> Labels {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn new_histogram() -> Histogram {
    Histogram::new(BUCKETS_S)
}

/// The family `name` of `map`, registered with its help text at first use.
fn family<'a, M: Clone + prometheus_client::registry::Metric>(
    registry: &mut Registry,
    map: &'a mut HashMap<String, M>,
    name: &str,
    new: impl FnOnce() -> M,
) -> &'a M {
    // Looked up first: the name is copied only the first time (every RTP
    // leg and stage timing comes through here).
    if !map.contains_key(name) {
        let family = new();
        // The encoder adds `_total` to counters itself.
        let registered = name.strip_suffix("_total").unwrap_or(name);
        registry.register(registered, help(name), family.clone());
        map.insert(name.to_string(), family);
    }
    &map[name]
}

fn with_counter<R>(name: &str, f: impl FnOnce(&Family<Labels, Counter<f64, AtomicU64>>) -> R) -> R {
    let mut store = store().lock().unwrap();
    let Store {
        registry, counters, ..
    } = &mut *store;
    f(family(registry, counters, name, Family::default))
}

fn with_gauge(name: &str, f: impl FnOnce(&Family<Labels, Gauge<f64, AtomicU64>>)) {
    let mut store = store().lock().unwrap();
    let Store {
        registry, gauges, ..
    } = &mut *store;
    f(family(registry, gauges, name, Family::default))
}

/// Add `v` to the counter `name` with these labels (created at 0).
pub fn counter_add(name: &str, labels_: &[(&str, &str)], v: f64) {
    with_counter(name, |c| {
        c.get_or_create(&labels(labels_)).inc_by(v);
    });
}

/// Add 1 to the counter `name` with these labels.
pub fn counter_inc(name: &str, labels: &[(&str, &str)]) {
    counter_add(name, labels, 1.0);
}

/// Set the gauge `name` with these labels to `v`.
pub fn gauge_set(name: &str, labels_: &[(&str, &str)], v: f64) {
    with_gauge(name, |g| {
        g.get_or_create(&labels(labels_)).set(v);
    });
}

/// Add `v` (may be negative) to the gauge `name` with these labels, e.g. calls in progress.
pub fn gauge_add(name: &str, labels_: &[(&str, &str)], v: f64) {
    with_gauge(name, |g| {
        g.get_or_create(&labels(labels_)).inc_by(v);
    });
}

/// Record one latency of `ms` milliseconds in the histogram `name` (in seconds).
pub fn observe_ms(name: &str, labels_: &[(&str, &str)], ms: f64) {
    let mut store = store().lock().unwrap();
    let Store {
        registry,
        histograms,
        ..
    } = &mut *store;
    let family = family(registry, histograms, name, || {
        Family::new_with_constructor(new_histogram as fn() -> Histogram)
    });
    family.get_or_create(&labels(labels_)).observe(ms / 1000.0);
}

/// The current value of a counter (tests use this).
pub fn counter_value(name: &str, labels_: &[(&str, &str)]) -> f64 {
    with_counter(name, |c| {
        c.get(&labels(labels_)).map(|c| c.get()).unwrap_or(0.0)
    })
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything, in the OpenMetrics text format.
pub fn render() -> String {
    let store = store().lock().unwrap();
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &store.registry)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_in_seconds_with_help_and_type() {
        observe_ms("understudy_stage_seconds", &[("stage", "x")], 7.0);
        observe_ms("understudy_stage_seconds", &[("stage", "x")], 700.0);
        let text = render();
        assert!(
            text.contains("# HELP understudy_stage_seconds Time of one pipeline stage of a turn (endpoint, STT, dialog, TTS...), by stage.\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE understudy_stage_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("understudy_stage_seconds_bucket{le=\"0.01\",stage=\"x\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("understudy_stage_seconds_bucket{le=\"0.8\",stage=\"x\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("understudy_stage_seconds_count{stage=\"x\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("understudy_stage_seconds_sum{stage=\"x\"} 0.707"),
            "{text}"
        );
    }

    #[test]
    fn counters_add_up_per_label_set_and_keep_their_total_name() {
        counter_inc("understudy_dtmf_total", &[("engine", "a")]);
        counter_inc("understudy_dtmf_total", &[("engine", "a")]);
        counter_inc("understudy_dtmf_total", &[("engine", "b")]);
        assert_eq!(
            counter_value("understudy_dtmf_total", &[("engine", "a")]),
            2.0
        );
        assert_eq!(
            counter_value("understudy_dtmf_total", &[("engine", "b")]),
            1.0
        );
        let text = render();
        assert!(text.contains("# TYPE understudy_dtmf counter"), "{text}");
        assert!(
            text.contains("understudy_dtmf_total{engine=\"a\"} 2"),
            "{text}"
        );
        gauge_add("understudy_calls_active", &[], 1.0);
        gauge_add("understudy_calls_active", &[], -1.0);
        assert!(
            render().contains("understudy_calls_active 0"),
            "{}",
            render()
        );
    }

    /// Every metric reported anywhere in the code has its help text.
    #[test]
    fn every_metric_has_help() {
        let call = regex::Regex::new(
            r#"metrics::(?:counter_inc|counter_add|gauge_set|gauge_add|observe_ms)\(\s*"(\w+)""#,
        )
        .unwrap();
        let mut missing = vec![];
        let mut found = 0;
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for name in call.captures_iter(&text).map(|c| c[1].to_string()) {
                        found += 1;
                        if !HELP.iter().any(|(n, _)| *n == name) {
                            missing.push(format!("{name} ({})", path.display()));
                        }
                    }
                }
            }
        }
        assert!(found > 50, "the scan found only {found} metric calls");
        assert!(missing.is_empty(), "no help text for: {missing:?}");
        for name in [SMART_TURN_SECONDS, SMART_TURN_DECISIONS] {
            assert!(HELP.iter().any(|(n, _)| *n == name), "{name}");
        }
    }
}
