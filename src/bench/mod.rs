//! `understudy bench`: what callers get from the voice pipeline, measured.
//!
//! A held-out caller set (`callers`: first turns per intent, out of scope,
//! knowledge questions, multi-turn tasks, lines with no speech) is spoken by
//! several voices (`voice`) and passed through line conditions (16 kHz, 8 kHz
//! G.711 mu-law and A-law with packet loss through the SIP leg's jitter
//! buffer). Each first turn and each task is one call through the real
//! session, fed in real time as a phone line would; each first turn also goes
//! through the raw engines alone, so the pipeline's own overhead shows.
//! `report` turns the samples into accuracy, WER and latency per condition.
//! `capacity` measures how many calls at once hold the latency target.

pub mod callers;
pub mod capacity;
pub mod report;
pub mod score;
pub mod voice;

pub use report::{render, BenchReport};
pub use score::{normalize_words, word_errors};
pub use voice::{synthesize_caller, through_telephone_line, Condition, Voice};

use crate::audio::{self, SAMPLE_RATE};
use crate::dialog::UserInput;
use crate::session::{SessionSetup, TurnReport};
use crate::transport::file::run_call;
use anyhow::{Context, Result};
use callers::{CallerSet, CallerTurn};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What to run (`understudy bench` options; the defaults run everything).
#[derive(clap::Args, Debug, Clone)]
pub struct Selection {
    /// The caller set (YAML). Default: the built-in held-out set for the
    /// demo bot (tests/fixtures/heldout/callers.yaml).
    #[arg(long)]
    pub callers: Option<PathBuf>,
    /// Caller voices, comma-separated: espeak-ng voices with a speed in
    /// words per minute (en-us@160, en-gb+f3@175) and `piper` (the pack's
    /// TTS voice). Utterance i is spoken by voice i mod N.
    #[arg(long, default_value = voice::DEFAULT_VOICES)]
    pub voices: String,
    /// Line conditions, comma-separated: 16k (linear PCM), mulaw, alaw
    /// (8 kHz G.711 through the SIP jitter buffer), with packet loss as
    /// mulaw-loss2 (2 % of packets lost at random, seeded).
    #[arg(long, default_value = voice::DEFAULT_CONDITIONS)]
    pub conditions: String,
    /// Only these categories of first turns, comma-separated (intent names,
    /// out_of_scope, knowledge).
    #[arg(long)]
    pub categories: Option<String>,
    /// Only the first N first turns of each category (a quick run).
    #[arg(long)]
    pub per_category: Option<usize>,
    /// Only the first N multi-turn tasks (0: none).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Skip the lines with no speech (silence, noise, hum).
    #[arg(long)]
    pub no_clips: bool,
    /// Skip timing the raw engines after each first turn.
    #[arg(long)]
    pub no_raw: bool,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            callers: None,
            voices: voice::DEFAULT_VOICES.into(),
            conditions: voice::DEFAULT_CONDITIONS.into(),
            categories: None,
            per_category: None,
            tasks: None,
            no_clips: false,
            no_raw: false,
        }
    }
}

/// A parsed, checked selection.
#[derive(Debug, Clone)]
pub struct Options {
    /// The caller set, cut down to the selection.
    pub set: CallerSet,
    /// The caller voices, taken in turn.
    pub voices: Vec<Voice>,
    /// The line conditions; the whole set runs under each.
    pub conditions: Vec<Condition>,
    /// Also time the raw engines after each first turn (no `--no-raw`).
    pub raw: bool,
}

fn list<T: std::str::FromStr<Err = anyhow::Error>>(s: &str, what: &str) -> Result<Vec<T>> {
    let items = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(str::parse)
        .collect::<Result<Vec<T>>>()?;
    anyhow::ensure!(!items.is_empty(), "no {what} given");
    Ok(items)
}

impl Selection {
    /// Parse and apply the selection to the caller set.
    pub fn options(&self) -> Result<Options> {
        let mut set = match &self.callers {
            Some(path) => CallerSet::load(path)?,
            None => CallerSet::builtin(),
        };
        if let Some(cats) = &self.categories {
            let wanted: Vec<&str> = cats.split(',').map(str::trim).collect();
            let known: Vec<&str> = set.turns.iter().map(|t| t.category.as_str()).collect();
            for w in &wanted {
                anyhow::ensure!(
                    known.contains(w),
                    "no category {w:?} in the caller set (it has: {})",
                    dedup(&known).join(", ")
                );
            }
            set.turns.retain(|t| wanted.contains(&t.category.as_str()));
        }
        if let Some(n) = self.per_category {
            let mut seen: HashMap<String, usize> = HashMap::new();
            set.turns.retain(|t| {
                let c = seen.entry(t.category.clone()).or_default();
                *c += 1;
                *c <= n
            });
        }
        if let Some(n) = self.tasks {
            set.tasks.truncate(n);
        }
        if self.no_clips {
            set.clips.clear();
        }
        Ok(Options {
            set,
            voices: list(&self.voices, "voices")?,
            conditions: list(&self.conditions, "conditions")?,
            raw: !self.no_raw,
        })
    }
}

fn dedup<'a>(v: &[&'a str]) -> Vec<&'a str> {
    let mut out: Vec<&str> = v.to_vec();
    out.sort();
    out.dedup();
    out
}

/// One caller turn's result under one condition.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The line condition (`16k`, `mulaw`, `mulaw-loss2`...).
    pub condition: String,
    /// The caller voice (`en-us@160`, `piper`...).
    pub voice: String,
    /// The first turn's category, or `task` for a task's turns.
    pub category: String,
    /// The task's name, for a task's turns; `None` for first turns.
    pub task: Option<String>,
    /// 1-based turn of the call.
    pub turn: usize,
    /// What the caller voice said.
    pub text: String,
    /// The intent expected (`none`: no intent); `None` when not checked.
    pub expected_intent: Option<String>,
    /// What the session transcribed (the turn's reports joined).
    pub transcript: String,
    /// The intent the bot reached, if any.
    pub intent: Option<String>,
    /// How the bot decided (`rule`, `embedding`, `llm`, `knowledge`, `none`...).
    pub matched_by: String,
    /// What the bot said (the turn's reports joined).
    pub reply: String,
    /// The turn met every expectation (see `callers::judge`).
    pub correct: bool,
    /// The bot asked to confirm the expected intent instead of taking it.
    pub confirmed: bool,
    /// Out of scope, yet the bot acted on it (an intent, or a knowledge answer).
    pub false_accept: bool,
    /// Why the turn was not correct.
    pub miss: Option<String>,
    /// `llm` when the LLM decided the turn (an LLM match or a knowledge
    /// answer), else `flow` (rules, embeddings, the flow's prompts).
    pub path: &'static str,
    /// The reply was synthesized after the turn (not a pre-rendered prompt).
    pub tts_uncached: bool,
    /// Word errors of the transcript against the expected one.
    pub word_errors: usize,
    /// Words in the expected transcript.
    pub reference_words: usize,
    /// Length of the caller speech the session detected, in ms (0: none).
    pub speech_ms: f64,
    /// Pipeline stages, ms.
    pub endpoint_ms: Option<f64>,
    /// Transcription after the endpoint, in ms.
    pub stt_ms: Option<f64>,
    /// The bot's response to the transcript (NLU and flow), in ms.
    pub dialog_ms: Option<f64>,
    /// Start of speech output until the first audio was ready, in ms.
    pub tts_first_audio_ms: Option<f64>,
    /// End of caller speech until the first bot audio left, in ms.
    pub voice_to_voice_ms: Option<f64>,
    /// The transcription started during the pause and was kept.
    pub speculative_stt: bool,
    /// The turn ended in the safety net (an engine failed or timed out).
    pub safety_net: bool,
    /// The same work on the raw engines, ms (first turns, unless --no-raw).
    pub raw_stt_ms: Option<f64>,
    /// The dialog alone on the transcript, in ms.
    pub raw_dialog_ms: Option<f64>,
    /// TTS alone on the reply until its first audio, in ms.
    pub raw_tts_first_audio_ms: Option<f64>,
}

/// A line with no speech, under one condition.
#[derive(Debug, Clone, Serialize)]
pub struct ClipResult {
    /// The line condition (`16k`, `mulaw`...).
    pub condition: String,
    /// The clip's name in the caller set.
    pub name: String,
    /// What the session transcribed (should be nothing).
    pub transcripts: Vec<String>,
}

/// TTS first audio above this was synthesized for the turn, not pre-rendered.
const CACHED_TTS_MS: f64 = 1.0;

fn sample(
    condition: &Condition,
    voice: &Voice,
    category: &str,
    task: Option<&str>,
    turn_no: usize,
    turn: &CallerTurn,
    reports: &[TurnReport],
) -> Sample {
    let verdict = callers::judge(turn, reports);
    let first = reports.first().cloned().unwrap_or_default();
    let transcript = reports
        .iter()
        .map(|r| r.transcript.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let reference = normalize_words(turn.reference());
    let t = &first.timings_ms;
    Sample {
        condition: condition.to_string(),
        voice: voice.to_string(),
        category: category.to_string(),
        task: task.map(str::to_string),
        turn: turn_no,
        text: turn.say.clone(),
        expected_intent: turn
            .expected_intent()
            .map(|i| i.unwrap_or("none").to_string()),
        word_errors: word_errors(&reference, &normalize_words(&transcript)),
        reference_words: reference.len(),
        transcript,
        intent: first.intent.clone(),
        path: if first.is_llm_turn() { "llm" } else { "flow" },
        matched_by: first.matched_by.clone(),
        reply: reports
            .iter()
            .map(|r| r.reply.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        correct: verdict.correct,
        confirmed: verdict.confirmed,
        false_accept: verdict.false_accept,
        miss: verdict.miss,
        tts_uncached: t.tts_first_audio.is_some_and(|v| v > CACHED_TTS_MS),
        speech_ms: first.speech_ms.map(|(a, b)| b - a).unwrap_or(0.0),
        endpoint_ms: t.endpoint,
        stt_ms: t.stt,
        dialog_ms: t.dialog,
        tts_first_audio_ms: t.tts_first_audio,
        voice_to_voice_ms: t.voice_to_voice,
        speculative_stt: t.speculative_stt,
        safety_net: reports.iter().any(|r| r.safety_net),
        raw_stt_ms: None,
        raw_dialog_ms: None,
        raw_tts_first_audio_ms: None,
    }
}

/// One call: the caller's turns in order; the reports of each turn.
async fn call(setup: &Arc<SessionSetup>, turns: Vec<Vec<i16>>) -> Vec<Vec<TurnReport>> {
    quiesce(&setup.engines).await;
    let mut out = vec![vec![]; turns.len()];
    run_call(setup.clone(), "bench", &turns, |turn, o| {
        if turn >= 1 {
            out[turn - 1] = o.reports;
        }
    })
    .await;
    out
}

/// The raw engines on a first turn's input: STT on the detected speech, the
/// dialog on the transcript, TTS on the reply.
async fn raw_engines(
    setup: &SessionSetup,
    audio_in: &[i16],
    speech: Option<(f64, f64)>,
    s: &mut Sample,
) -> Result<()> {
    quiesce(&setup.engines).await;
    let stt = setup.engines.stt.as_ref().context("STT not running")?;
    let (start_ms, end_ms) =
        speech.unwrap_or((0.0, audio::samples_to_ms(audio_in.len(), SAMPLE_RATE)));
    let from = audio::ms_to_samples((start_ms - 200.0).max(0.0), SAMPLE_RATE);
    let to = audio::ms_to_samples(end_ms + 160.0, SAMPLE_RATE).min(audio_in.len());
    let t = Instant::now();
    let _ = stt
        .transcribe(
            &audio_in[from..to.max(from)],
            setup.settings.stt_prompt.as_deref(),
        )
        .await?;
    s.raw_stt_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    quiesce(&setup.engines).await;
    let (mut conversation, _) = setup.bot.start();
    let t = Instant::now();
    let _ = setup
        .bot
        .respond(&mut conversation, UserInput::Text(s.transcript.clone()))
        .await?;
    s.raw_dialog_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    quiesce(&setup.engines).await;
    let tts = setup.engines.tts.as_ref().context("TTS not running")?;
    let t = Instant::now();
    let mut stream = tts
        .stream(if s.reply.is_empty() {
            "Okay."
        } else {
            &s.reply
        })
        .await?;
    let _ = stream.next().await;
    s.raw_tts_first_audio_ms = Some(t.elapsed().as_secs_f64() * 1e3);
    Ok(())
}

/// Wait until no worker is busy: a call's reply is still being rendered
/// after its first audio (the caller would be listening to it), and timing
/// the next step against that would measure the contention, not the step.
async fn quiesce(engines: &crate::engines::Engines) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while engines.workers().iter().any(|w| w.in_flight() > 0) && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Speech for every (voice, text), rendered once and reused across conditions.
struct Voices<'a> {
    setup: &'a SessionSetup,
    dir: tempfile::TempDir,
    cache: BTreeMap<(String, String), Vec<i16>>,
}

impl Voices<'_> {
    async fn speak(&mut self, voice: &Voice, text: &str) -> Result<Vec<i16>> {
        let key = (voice.to_string(), text.to_string());
        if let Some(a) = self.cache.get(&key) {
            return Ok(a.clone());
        }
        let name = format!("c{}", self.cache.len());
        let a = voice
            .speak(
                text,
                self.dir.path(),
                &name,
                self.setup.engines.tts.as_ref(),
            )
            .await?;
        self.cache.insert(key, a.clone());
        Ok(a)
    }
}

/// Run the benchmark on a ready session setup.
pub async fn run(
    setup: Arc<SessionSetup>,
    pack: &str,
    threads: crate::config::Threads,
    options: &Options,
) -> Result<BenchReport> {
    let set = &options.set;
    let mut voices = Voices {
        setup: &setup,
        dir: tempfile::tempdir()?,
        cache: BTreeMap::new(),
    };
    let pick = |i: usize| &options.voices[i % options.voices.len()];
    let mut samples = Vec::new();
    let mut clips = Vec::new();
    for condition in &options.conditions {
        for (i, turn) in set.turns.iter().enumerate() {
            let voice = pick(i);
            let audio_in = condition.apply(&voices.speak(voice, &turn.say).await?, i as u64);
            let reports = call(&setup, vec![audio_in.clone()]).await.remove(0);
            let mut s = sample(condition, voice, &turn.category, None, 1, turn, &reports);
            if options.raw && !reports.is_empty() {
                // A slow raw engine costs its figure, not the run.
                if let Err(e) = raw_engines(&setup, &audio_in, reports[0].speech_ms, &mut s).await {
                    tracing::warn!(error = %format!("{e:#}"), text = %turn.say, "raw engines not timed");
                }
            }
            progress(&format!("{:>3}/{}", i + 1, set.turns.len()), &s);
            samples.push(s);
        }
        for (t, task) in set.tasks.iter().enumerate() {
            let voice = pick(t);
            let mut audio_in = vec![];
            for (j, turn) in task.turns.iter().enumerate() {
                let a = voices.speak(voice, &turn.say).await?;
                audio_in.push(condition.apply(&a, (1000 + 10 * t + j) as u64));
            }
            let reports = call(&setup, audio_in).await;
            for (j, (turn, r)) in task.turns.iter().zip(&reports).enumerate() {
                let s = sample(condition, voice, "task", Some(&task.name), j + 1, turn, r);
                progress(&format!("task {}.{}", t + 1, j + 1), &s);
                samples.push(s);
            }
        }
        for (c, clip) in set.clips.iter().enumerate() {
            let line = voice::line_clip(&clip.kind, clip.ms, clip.dbfs, c as u64)?;
            let reports = call(&setup, vec![condition.apply(&line, c as u64)])
                .await
                .remove(0);
            let transcripts: Vec<String> = reports
                .into_iter()
                .map(|r| r.transcript)
                .filter(|t| !t.trim().is_empty())
                .collect();
            eprintln!(
                "  {condition:<11} clip {:<12} {}",
                clip.name,
                if transcripts.is_empty() {
                    "no transcript (ok)".to_string()
                } else {
                    format!("TRANSCRIBED {transcripts:?}")
                }
            );
            clips.push(ClipResult {
                condition: condition.to_string(),
                name: clip.name.clone(),
                transcripts,
            });
        }
    }
    Ok(report::build(pack, threads, options, samples, clips))
}

fn progress(label: &str, s: &Sample) {
    eprintln!(
        "  {:<11} {label:<9} {:<13} {:<12} {} v2v {:>5} ms  \"{}\"{}",
        s.condition,
        s.voice,
        s.intent.as_deref().unwrap_or("-"),
        match (s.correct, s.confirmed) {
            (true, _) => "ok ",
            (false, true) => "ASK",
            (false, false) => "BAD",
        },
        s.voice_to_voice_ms
            .map(|v| format!("{v:.0}"))
            .unwrap_or_else(|| "-".into()),
        s.transcript,
        s.miss
            .as_deref()
            .map(|m| format!("  ({m})"))
            .unwrap_or_default()
    );
}
