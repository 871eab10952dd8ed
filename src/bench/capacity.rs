//! `understudy capacity`: how many calls at once this box answers within
//! the latency target, measured here with the bot in use.
//!
//! Steps of 1, 2, 3... concurrent lines. On each line a caller places calls
//! one after another: the greeting, one first turn from the held-out caller
//! set (every category in turn, so intents, out-of-scope requests and
//! knowledge questions that need the LLM all come up), spoken by the bench's
//! espeak-ng voices through an 8 kHz mu-law line and fed in real time, then
//! the caller listens to the reply for as long as it lasts. Lines start
//! staggered, as real calls do. A step holds when every turn was answered,
//! none ended in the safety net, and voice-to-voice p95 (interpolated, in
//! process) is within the target; the capacity is the largest step that
//! holds, and the run stops at the first that does not.

use super::callers::{CallerSet, KNOWLEDGE};
use super::voice::{Condition, Voice};
use crate::session::SessionSetup;
use crate::stats::Stat;
use crate::transport::file::run_call;
use anyhow::{bail, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Over how long the lines of a step start, so they do not all speak at
/// once (about one caller turn).
const STAGGER: Duration = Duration::from_millis(3000);

/// `understudy capacity` options.
#[derive(clap::Args, Debug, Clone)]
pub struct CapacityOptions {
    /// The most concurrent calls to try.
    #[arg(long, default_value_t = 8)]
    pub max_calls: usize,
    /// Calls each line places, one after another, at each step.
    #[arg(long, default_value_t = 3)]
    pub calls_per_line: usize,
    /// The latency target: voice-to-voice p95 of a step's turns, in ms
    /// (1500: what callers should get for flow and LLM turns alike).
    #[arg(long, default_value_t = 1500.0)]
    pub p95_ms: f64,
}

impl CapacityOptions {
    /// An error that says what to change when the options cannot run.
    pub fn check(&self) -> Result<()> {
        if self.max_calls == 0 || self.max_calls > 64 {
            bail!("--max-calls must be 1 to 64");
        }
        if self.calls_per_line == 0 || self.calls_per_line > 20 {
            bail!("--calls-per-line must be 1 to 20");
        }
        if !self.p95_ms.is_finite() || self.p95_ms <= 0.0 {
            bail!("--p95-ms must be a positive number of milliseconds");
        }
        Ok(())
    }
}

/// One caller turn of a step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOutcome {
    /// End of speech to the bot's first audio, ms; `None`: no answer.
    pub voice_to_voice_ms: Option<f64>,
    /// Decided by the LLM or a knowledge answer.
    pub llm: bool,
    /// Ended in the safety net.
    pub safety_net: bool,
}

/// What one step of concurrent calls gave.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// Concurrent lines.
    pub calls: usize,
    /// Caller turns.
    pub turns: usize,
    /// Of those, decided by the LLM or answered from the knowledge facts.
    pub llm_turns: usize,
    /// Turns the bot did not answer.
    pub unanswered: usize,
    /// Turns that ended in the safety net.
    pub safety_nets: usize,
    /// Voice-to-voice of every answered turn, ms.
    pub voice_to_voice: Stat,
    /// Flow turns only.
    pub flow: Stat,
    /// LLM turns only.
    pub llm: Stat,
    /// Every turn answered, none in the safety net, p95 within the target.
    pub holds: bool,
}

impl Step {
    /// The step's figures and verdict from its turns.
    pub fn of(calls: usize, turns: &[TurnOutcome], p95_ms: f64) -> Step {
        let v2v = |pick: &dyn Fn(&TurnOutcome) -> bool| {
            Stat::of(
                turns
                    .iter()
                    .filter(|t| pick(t))
                    .filter_map(|t| t.voice_to_voice_ms),
            )
        };
        let all = v2v(&|_| true);
        let unanswered = turns
            .iter()
            .filter(|t| t.voice_to_voice_ms.is_none())
            .count();
        let safety_nets = turns.iter().filter(|t| t.safety_net).count();
        Step {
            calls,
            turns: turns.len(),
            llm_turns: turns.iter().filter(|t| t.llm).count(),
            unanswered,
            safety_nets,
            holds: !turns.is_empty()
                && unanswered == 0
                && safety_nets == 0
                && all.p95.is_some_and(|p| p <= p95_ms),
            flow: v2v(&|t| !t.llm),
            llm: v2v(&|t| t.llm),
            voice_to_voice: all,
        }
    }
}

impl Step {
    /// Why the step does not hold, in a few words (empty when it does).
    pub fn misses(&self, p95_ms: f64) -> String {
        let mut why = vec![];
        if let Some(p95) = self.voice_to_voice.p95.filter(|p| *p > p95_ms) {
            why.push(format!(
                "voice-to-voice p95 {p95:.0} ms over {p95_ms:.0} ms"
            ));
        }
        if self.unanswered > 0 {
            why.push(format!("{} turn(s) without an answer", self.unanswered));
        }
        if self.safety_nets > 0 {
            why.push(format!("{} turn(s) in the safety net", self.safety_nets));
        }
        if self.turns == 0 {
            why.push("no turn was measured".into());
        }
        why.join(", ")
    }
}

/// The whole measurement.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// The model pack.
    pub pack: String,
    /// The bot measured.
    pub bot: String,
    /// The target: voice-to-voice p95, ms.
    pub p95_target_ms: f64,
    /// Every step run, in order.
    pub steps: Vec<Step>,
    /// The most concurrent calls that held the target (0: not even one).
    pub capacity: usize,
}

/// The largest number of calls of the run of holding steps from 1 up.
pub fn capacity_of(steps: &[Step]) -> usize {
    steps
        .iter()
        .take_while(|s| s.holds)
        .last()
        .map_or(0, |s| s.calls)
}

/// The callers' utterances with every category in turn (one of each
/// category, then the next of each...), so every step hears the mix; the
/// knowledge questions (the LLM's work) first, so even one line has one.
fn interleaved(set: &CallerSet) -> Vec<String> {
    let mut categories: Vec<&str> = vec![];
    if set.turns.iter().any(|t| t.category == KNOWLEDGE) {
        categories.push(KNOWLEDGE);
    }
    for t in &set.turns {
        if !categories.contains(&t.category.as_str()) {
            categories.push(&t.category);
        }
    }
    let by_category: Vec<Vec<&str>> = categories
        .iter()
        .map(|c| {
            set.turns
                .iter()
                .filter(|t| t.category == *c)
                .map(|t| t.say.as_str())
                .collect()
        })
        .collect();
    let rounds = by_category.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|i| by_category.iter().filter_map(move |c| c.get(i)))
        .map(|s| s.to_string())
        .collect()
}

/// Measure, printing each step as it ends.
pub async fn run(
    setup: Arc<SessionSetup>,
    pack: &str,
    options: &CapacityOptions,
) -> Result<CapacityReport> {
    options.check()?;
    let line: Condition = "mulaw".parse()?;
    // The bench's caller voices but Piper: that is the bot's own voice.
    let voices: Vec<Voice> = super::voice::DEFAULT_VOICES
        .split(',')
        .map(str::parse)
        .filter(|v| !matches!(v, Ok(Voice::Piper)))
        .collect::<Result<_>>()?;
    let texts = interleaved(&CallerSet::builtin());
    // Enough distinct callers for the biggest step; rendered before any
    // call, so synthesis does not compete with the calls.
    let needed = (options.max_calls * options.calls_per_line).min(texts.len());
    let dir = tempfile::tempdir()?;
    eprintln!("capacity: rendering {needed} callers");
    let mut callers = Vec::with_capacity(needed);
    for (i, text) in texts.iter().take(needed).enumerate() {
        let voice = &voices[i % voices.len()];
        let speech = voice
            .speak(text, dir.path(), &format!("c{i}"), None)
            .await?;
        callers.push(Arc::new(line.apply(&speech, i as u64)));
    }
    let mut steps = vec![];
    for calls in 1..=options.max_calls {
        let turns = step(&setup, &callers, calls, options.calls_per_line).await;
        let s = Step::of(calls, &turns, options.p95_ms);
        eprintln!("{}", render_step(&s));
        let holds = s.holds;
        steps.push(s);
        if !holds {
            break;
        }
    }
    Ok(CapacityReport {
        pack: pack.to_string(),
        bot: setup.bot.bundle().name().to_string(),
        p95_target_ms: options.p95_ms,
        capacity: capacity_of(&steps),
        steps,
    })
}

/// `calls` lines at once, each placing `per_line` calls.
async fn step(
    setup: &Arc<SessionSetup>,
    callers: &[Arc<Vec<i16>>],
    calls: usize,
    per_line: usize,
) -> Vec<TurnOutcome> {
    super::quiesce(&setup.engines).await;
    let mut lines = tokio::task::JoinSet::new();
    for line in 0..calls {
        let setup = setup.clone();
        let picks: Vec<Arc<Vec<i16>>> = (0..per_line)
            .map(|j| callers[(line * per_line + j) % callers.len()].clone())
            .collect();
        let start = STAGGER.mul_f64(line as f64 / calls as f64);
        lines.spawn(async move {
            tokio::time::sleep(start).await;
            let mut out = vec![];
            for (j, audio) in picks.iter().enumerate() {
                let mut listen = Duration::ZERO;
                let mut answered = None;
                let id = format!("capacity-{calls}-{line}-{j}");
                run_call(
                    setup.clone(),
                    &id,
                    std::slice::from_ref(audio),
                    |turn, o| {
                        if turn == 1 {
                            listen = Duration::from_secs_f64(
                                o.bot_audio.len() as f64 / crate::audio::SAMPLE_RATE as f64,
                            );
                            answered = Some(o);
                        }
                    },
                )
                .await;
                let first = answered.as_ref().and_then(|o| o.reports.first());
                out.push(TurnOutcome {
                    voice_to_voice_ms: first.and_then(|r| r.timings_ms.voice_to_voice),
                    llm: first.is_some_and(|r| r.is_llm_turn()),
                    safety_net: answered
                        .as_ref()
                        .is_some_and(|o| o.reports.iter().any(|r| r.safety_net)),
                });
                // The caller hears the reply out before calling again.
                tokio::time::sleep(listen).await;
            }
            out
        });
    }
    let mut turns = vec![];
    while let Some(done) = lines.join_next().await {
        match done {
            Ok(out) => turns.extend(out),
            Err(e) => tracing::error!(error = %e, "a capacity line failed"),
        }
    }
    turns
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// One line of the table.
fn render_step(s: &Step) -> String {
    format!(
        "{:>5} {:>5} {:>4} {:>11} {:>11} {:>11} {:>6} {:>5}  {}",
        s.calls,
        s.turns,
        s.llm_turns,
        format!("{}/{}", ms(s.voice_to_voice.p50), ms(s.voice_to_voice.p95)),
        format!("{}/{}", ms(s.flow.p50), ms(s.flow.p95)),
        format!("{}/{}", ms(s.llm.p50), ms(s.llm.p95)),
        s.safety_nets,
        s.unanswered,
        if s.holds { "holds" } else { "MISSES" }
    )
}

/// The report as a table, with the verdict.
pub fn render(report: &CapacityReport) -> String {
    let mut out = format!(
        "capacity of this box for {} (pack {}), voice-to-voice in process, ms (p50/p95)\n\
         {:>5} {:>5} {:>4} {:>11} {:>11} {:>11} {:>6} {:>5}\n",
        report.bot, report.pack, "calls", "turns", "llm", "all", "flow", "llm", "safety", "unans"
    );
    for s in &report.steps {
        out.push_str(&render_step(s));
        out.push('\n');
    }
    if report.capacity == 0 {
        let why = report
            .steps
            .first()
            .map_or("no step ran".into(), |s| s.misses(report.p95_target_ms));
        out.push_str(&format!(
            "capacity: 0: even one call misses the target ({why}); try a faster model pack or a looser --p95-ms\n"
        ));
    } else {
        out.push_str(&format!(
            "capacity: {} concurrent calls hold voice-to-voice p95 <= {:.0} ms{}\n",
            report.capacity,
            report.p95_target_ms,
            if report.steps.last().is_some_and(|s| s.holds) {
                " (every step tried held: raise --max-calls to look further)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(v2v: Option<f64>, llm: bool) -> TurnOutcome {
        TurnOutcome {
            voice_to_voice_ms: v2v,
            llm,
            safety_net: false,
        }
    }

    #[test]
    fn a_step_holds_only_within_the_target_and_fully_answered() {
        let turns = [turn(Some(500.0), false), turn(Some(1200.0), true)];
        let s = Step::of(2, &turns, 1500.0);
        assert!(s.holds);
        assert_eq!((s.turns, s.llm_turns), (2, 1));
        assert_eq!(s.flow.p50, Some(500.0));
        assert_eq!(s.llm.p50, Some(1200.0));
        assert!(!Step::of(2, &turns, 1000.0).holds, "p95 over the target");
        let unanswered = [turn(Some(500.0), false), turn(None, false)];
        assert!(!Step::of(2, &unanswered, 1500.0).holds);
        let mut net = turn(Some(400.0), false);
        net.safety_net = true;
        assert!(!Step::of(1, &[net], 1500.0).holds);
        assert!(!Step::of(1, &[], 1500.0).holds, "no turns prove nothing");
        let s = Step::of(2, &unanswered, 100.0);
        assert_eq!(
            s.misses(100.0),
            "voice-to-voice p95 500 ms over 100 ms, 1 turn(s) without an answer"
        );
        assert_eq!(Step::of(2, &turns, 1500.0).misses(1500.0), "");
    }

    #[test]
    fn capacity_is_the_last_step_of_the_holding_run() {
        let step = |calls, holds| Step {
            holds,
            ..Step::of(calls, &[], 1.0)
        };
        assert_eq!(capacity_of(&[]), 0);
        assert_eq!(capacity_of(&[step(1, false)]), 0);
        assert_eq!(
            capacity_of(&[step(1, true), step(2, true), step(3, false)]),
            2
        );
        assert_eq!(
            capacity_of(&[step(1, true), step(2, false), step(3, true)]),
            1
        );
    }

    #[test]
    fn every_category_comes_up_early() {
        let set = CallerSet::builtin();
        let texts = interleaved(&set);
        assert_eq!(texts.len(), set.turns.len());
        let categories = set
            .turns
            .iter()
            .map(|t| t.category.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let first: std::collections::BTreeSet<&str> = texts[..categories]
            .iter()
            .map(|text| {
                set.turns
                    .iter()
                    .find(|t| &t.say == text)
                    .unwrap()
                    .category
                    .as_str()
            })
            .collect();
        assert_eq!(first.len(), categories, "one of each category first");
        let knowledge = set.turns.iter().find(|t| t.category == KNOWLEDGE).unwrap();
        assert_eq!(texts[0], knowledge.say, "an LLM question comes first");
    }

    #[test]
    fn bad_options_say_what_to_change() {
        let mut o = CapacityOptions {
            max_calls: 0,
            calls_per_line: 3,
            p95_ms: 1500.0,
        };
        assert!(o.check().unwrap_err().to_string().contains("--max-calls"));
        o.max_calls = 4;
        o.p95_ms = f64::NAN;
        assert!(o.check().unwrap_err().to_string().contains("--p95-ms"));
    }
}
