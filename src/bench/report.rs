//! The benchmark's figures per line condition, and the table it prints.

use super::{callers, ClipResult, Options, Sample};
use crate::stats::Stat;
use serde::Serialize;
use std::collections::BTreeMap;

/// `correct` of `n`, and the rate (none for no samples).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Score {
    /// Outcomes counted.
    pub n: usize,
    /// Outcomes that were true.
    pub correct: usize,
    /// `correct / n`, 0 to 1; `None` for no samples.
    pub rate: Option<f64>,
}

impl Score {
    fn of(outcomes: impl IntoIterator<Item = bool>) -> Score {
        let v: Vec<bool> = outcomes.into_iter().collect();
        let correct = v.iter().filter(|x| **x).count();
        Score {
            n: v.len(),
            correct,
            rate: (!v.is_empty()).then(|| correct as f64 / v.len() as f64),
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.rate {
            Some(r) => write!(f, "{}/{} = {:.1} %", self.correct, self.n, r * 100.0),
            None => f.write_str("-"),
        }
    }
}

/// Everything measured under one line condition.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionSummary {
    /// The line condition (`16k`, `mulaw`...).
    pub condition: String,
    /// First turns whose category is an intent: reached that intent.
    pub intent_accuracy: Score,
    /// The same, counting a confirmation question about the right intent as
    /// reaching it (one "yes" later).
    pub intent_accuracy_with_confirmation: Score,
    /// Every first-turn category (intents, out_of_scope, knowledge).
    pub by_category: BTreeMap<String, Score>,
    /// Intent accuracy by caller voice.
    pub intent_accuracy_by_voice: BTreeMap<String, Score>,
    /// Out-of-scope first turns the bot acted on (`correct` counts false accepts).
    pub out_of_scope_false_accepts: Score,
    /// Knowledge questions answered from the facts.
    pub knowledge_answered: Score,
    /// Multi-turn tasks with every turn as expected.
    pub task_success: Score,
    /// Word error rate over every caller turn.
    pub wer: Option<f64>,
    /// Turns that ended in the safety net (an engine failed or timed out).
    pub safety_net_turns: usize,
    /// Lines with no speech that produced a transcript (`correct` counts them; should be 0).
    pub clips_transcribed: Score,
    /// End of caller speech until the endpointer was sure, every turn.
    pub endpoint_ms: Stat,
    /// Transcription after the endpoint, every turn.
    pub stt_ms: Stat,
    /// The bot's response to the transcript (NLU and flow), every turn.
    pub dialog_ms: Stat,
    /// Start of speech output until the first audio was ready, every turn.
    pub tts_first_audio_ms: Stat,
    /// End of caller speech to the first bot audio leaving the session, every turn.
    pub voice_to_voice_ms: Stat,
    /// Turns decided without the LLM (rules, embeddings, flow prompts).
    pub voice_to_voice_flow_ms: Stat,
    /// Turns the LLM decided (LLM match or knowledge answer).
    pub voice_to_voice_llm_ms: Stat,
    /// First audio of replies synthesized during the turn (not pre-rendered).
    pub tts_uncached_first_audio_ms: Stat,
    /// Voice-to-voice minus the endpointing wait: the pipeline's processing.
    pub processing_ms: Stat,
    /// STT alone on the detected speech (raw engines, first turns).
    pub raw_stt_ms: Stat,
    /// The dialog alone on the transcript (raw engines, first turns).
    pub raw_dialog_ms: Stat,
    /// TTS alone until the reply's first audio (raw engines, first turns).
    pub raw_tts_first_audio_ms: Stat,
    /// STT + dialog + first audio (when synthesized) on the raw engines.
    pub raw_processing_ms: Stat,
    /// (pipeline processing p50 - raw processing p50) / raw processing p50.
    /// Negative when the pipeline's overlap (transcribing during the
    /// endpointing pause, pre-rendered prompts) beats running the engines
    /// one after another.
    pub overhead_pct: Option<f64>,
}

/// The whole report (`--out` JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The model pack the engines ran.
    pub pack: String,
    /// CPU threads available and CPU model (`N x <model name>`).
    pub machine: String,
    /// When it ran (Unix seconds).
    pub started_unix_s: u64,
    /// Threads per engine worker, as configured.
    pub threads: crate::config::Threads,
    /// The caller voices.
    pub voices: Vec<String>,
    /// The line conditions, in the order they ran.
    pub conditions: Vec<String>,
    /// The figures per condition, in the same order.
    pub summaries: Vec<ConditionSummary>,
    /// Every caller turn under every condition.
    pub samples: Vec<Sample>,
    /// Every line with no speech under every condition.
    pub clips: Vec<ClipResult>,
}

fn summarize(condition: &str, samples: &[&Sample], clips: &[&ClipResult]) -> ConditionSummary {
    let first: Vec<&Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.task.is_none())
        .collect();
    let is_intent =
        |s: &&Sample| s.category != callers::OUT_OF_SCOPE && s.category != callers::KNOWLEDGE;
    let of_category =
        |c: &str| Score::of(first.iter().filter(|s| s.category == c).map(|s| s.correct));
    let mut by_category = BTreeMap::new();
    let mut by_voice: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    for s in &first {
        by_category
            .entry(s.category.clone())
            .or_insert_with(|| of_category(&s.category));
        if is_intent(s) {
            by_voice.entry(s.voice.clone()).or_default().push(s.correct);
        }
    }
    let mut tasks: BTreeMap<&str, bool> = BTreeMap::new();
    for s in samples
        .iter()
        .filter_map(|s| s.task.as_deref().map(|t| (t, s)))
    {
        *tasks.entry(s.0).or_insert(true) &= s.1.correct;
    }
    let words: usize = samples.iter().map(|x| x.reference_words).sum();
    let errors: usize = samples.iter().map(|x| x.word_errors).sum();
    let stat = |f: &dyn Fn(&Sample) -> Option<f64>| Stat::of(samples.iter().filter_map(|s| f(s)));
    let processing = |x: &Sample| Some(x.voice_to_voice_ms? - x.endpoint_ms?);
    let raw_processing = |x: &Sample| {
        Some(
            x.raw_stt_ms?
                + x.raw_dialog_ms?
                + if x.tts_uncached {
                    x.raw_tts_first_audio_ms?
                } else {
                    0.0
                },
        )
    };
    let processing_ms = stat(&processing);
    let raw_processing_ms = stat(&raw_processing);
    ConditionSummary {
        condition: condition.to_string(),
        intent_accuracy: Score::of(first.iter().filter(|s| is_intent(s)).map(|s| s.correct)),
        intent_accuracy_with_confirmation: Score::of(
            first
                .iter()
                .filter(|s| is_intent(s))
                .map(|s| s.correct || s.confirmed),
        ),
        by_category,
        intent_accuracy_by_voice: by_voice
            .into_iter()
            .map(|(v, o)| (v, Score::of(o)))
            .collect(),
        out_of_scope_false_accepts: Score::of(
            first
                .iter()
                .filter(|s| s.category == callers::OUT_OF_SCOPE)
                .map(|s| s.false_accept),
        ),
        knowledge_answered: of_category(callers::KNOWLEDGE),
        task_success: Score::of(tasks.into_values()),
        wer: (words > 0).then(|| errors as f64 / words as f64),
        safety_net_turns: samples.iter().filter(|s| s.safety_net).count(),
        clips_transcribed: Score::of(clips.iter().map(|c| !c.transcripts.is_empty())),
        endpoint_ms: stat(&|s| s.endpoint_ms),
        stt_ms: stat(&|s| s.stt_ms),
        dialog_ms: stat(&|s| s.dialog_ms),
        tts_first_audio_ms: stat(&|s| s.tts_first_audio_ms),
        voice_to_voice_ms: stat(&|s| s.voice_to_voice_ms),
        voice_to_voice_flow_ms: stat(&|s| s.voice_to_voice_ms.filter(|_| s.path == "flow")),
        voice_to_voice_llm_ms: stat(&|s| s.voice_to_voice_ms.filter(|_| s.path == "llm")),
        tts_uncached_first_audio_ms: stat(&|s| s.tts_first_audio_ms.filter(|_| s.tts_uncached)),
        overhead_pct: match (processing_ms.p50, raw_processing_ms.p50) {
            (Some(p), Some(r)) if r > 0.0 => Some((p - r) / r * 100.0),
            _ => None,
        },
        processing_ms,
        raw_stt_ms: stat(&|s| s.raw_stt_ms),
        raw_dialog_ms: stat(&|s| s.raw_dialog_ms),
        raw_tts_first_audio_ms: stat(&|s| s.raw_tts_first_audio_ms),
        raw_processing_ms,
    }
}

/// Summaries per condition, and the report around them.
pub fn build(
    pack: &str,
    threads: crate::config::Threads,
    options: &Options,
    samples: Vec<Sample>,
    clips: Vec<ClipResult>,
) -> BenchReport {
    let conditions: Vec<String> = options.conditions.iter().map(|c| c.to_string()).collect();
    let summaries = conditions
        .iter()
        .map(|c| {
            let s: Vec<&Sample> = samples.iter().filter(|s| &s.condition == c).collect();
            let k: Vec<&ClipResult> = clips.iter().filter(|k| &k.condition == c).collect();
            summarize(c, &s, &k)
        })
        .collect();
    BenchReport {
        pack: pack.to_string(),
        machine: machine_description(),
        started_unix_s: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        threads,
        voices: options.voices.iter().map(|v| v.to_string()).collect(),
        conditions,
        summaries,
        samples,
        clips,
    }
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{} x {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

/// The report as a table.
pub fn render(report: &BenchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let f = |v: Option<f64>| v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "pack {} on {}; voices {}",
        report.pack,
        report.machine,
        report.voices.join(", ")
    );
    for s in &report.summaries {
        let _ = writeln!(out, "\n{}:", s.condition);
        let _ = writeln!(out, "  first-turn intent accuracy  {}", s.intent_accuracy);
        let _ = writeln!(
            out,
            "    with confirmations        {}",
            s.intent_accuracy_with_confirmation
        );
        for (c, score) in &s.by_category {
            let _ = writeln!(out, "    {c:<24}  {score}");
        }
        for (v, score) in &s.intent_accuracy_by_voice {
            let _ = writeln!(out, "    voice {v:<18}  {score}");
        }
        let _ = writeln!(
            out,
            "  out-of-scope false accepts  {}",
            s.out_of_scope_false_accepts
        );
        let _ = writeln!(
            out,
            "  knowledge answered          {}",
            s.knowledge_answered
        );
        let _ = writeln!(out, "  multi-turn task success     {}", s.task_success);
        let _ = writeln!(
            out,
            "  word error rate             {}",
            s.wer
                .map(|w| format!("{:.1} %", w * 100.0))
                .unwrap_or_else(|| "-".into())
        );
        let _ = writeln!(out, "  no-speech clips transcribed {}", s.clips_transcribed);
        let _ = writeln!(out, "  turns in the safety net     {}", s.safety_net_turns);
        let _ = writeln!(
            out,
            "  {:<32} {:>7} {:>7} {:>5}",
            "stage (ms)", "p50", "p95", "n"
        );
        for (name, stat) in [
            ("endpoint wait", &s.endpoint_ms),
            ("stt (after endpoint)", &s.stt_ms),
            ("dialog", &s.dialog_ms),
            ("tts first audio", &s.tts_first_audio_ms),
            ("voice-to-voice, all turns", &s.voice_to_voice_ms),
            ("voice-to-voice, flow turns", &s.voice_to_voice_flow_ms),
            ("voice-to-voice, LLM turns", &s.voice_to_voice_llm_ms),
            ("tts first audio, uncached", &s.tts_uncached_first_audio_ms),
            ("processing (v2v - endpoint)", &s.processing_ms),
            ("raw stt", &s.raw_stt_ms),
            ("raw dialog", &s.raw_dialog_ms),
            ("raw tts first audio", &s.raw_tts_first_audio_ms),
            ("raw processing", &s.raw_processing_ms),
        ] {
            let _ = writeln!(
                out,
                "  {:<32} {:>7} {:>7} {:>5}",
                name,
                f(stat.p50),
                f(stat.p95),
                stat.n
            );
        }
        let _ = writeln!(
            out,
            "  pipeline vs raw engines run one after another (p50): {} %",
            f(s.overhead_pct)
        );
    }
    out
}
