//! The parity test: the bundle's own test conversations (Rasa test stories,
//! exported CX test cases, tests written into the bundle) replayed against
//! the local dialog engine in text mode, and checks made from the training
//! phrases: each phrase must reach its own intent through the local
//! recognizer, a held-back share of them without being used for matching.
//! A version is activated only when the share that passes reaches
//! `[sync] min_pass_rate`: the conversations' share when the bundle has
//! test conversations, else the phrases' share (a bot without either is
//! not measured).

use crate::dialog::recognize::Recognizer;
use crate::dialog::{testing, Bot, Bundle, Nlu};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Every n-th training phrase of an intent is held back from matching.
const HOLD_BACK_EVERY: usize = 5;

/// One conversation that did not go as the test says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedConversation {
    /// The test conversation's name.
    pub name: String,
    /// What differed from the test, one line each.
    pub problems: Vec<String>,
}

/// The result of a parity run, kept in the version's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParityReport {
    /// Test conversations replayed.
    pub total: usize,
    /// Of those, how many passed.
    pub passed: usize,
    /// Recognition stages the replay used (`rules`, `embeddings`, `llm`).
    pub stages: Vec<String>,
    /// The test conversations that failed.
    pub failures: Vec<FailedConversation>,
    /// How long the run took (bot load, replay, phrase checks), in milliseconds.
    pub ms: f64,
    /// The training-phrase checks (absent in reports written before them).
    #[serde(default)]
    pub phrases: Option<PhraseCoverage>,
}

/// How the bundle's own training phrases fare in the local recognizer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PhraseCoverage {
    /// Phrases checked (default language), and how many reached their intent.
    pub checked: usize,
    /// Of the checked phrases, how many reached their intent.
    pub reached: usize,
    /// Of those, held back from the recognizer (every fifth of an intent's
    /// phrases): new words, as a caller says them.
    pub held_back: usize,
    /// Of the held-back phrases, how many reached their intent.
    pub held_back_reached: usize,
    /// Intents with phrases none of which reached them.
    pub never_reached: Vec<String>,
    /// A few phrases that missed: (phrase, its intent, what it reached).
    pub misses: Vec<(String, String, String)>,
}

impl PhraseCoverage {
    /// Phrases that reached their intent, held back or not: the measure
    /// used when the bundle has no test conversations (the held-back share
    /// is reported beside it: a handful per intent is too few to decide on).
    pub fn rate(&self) -> Option<f64> {
        (self.checked > 0).then(|| self.reached as f64 / self.checked as f64)
    }

    /// "47 of 52 phrases (8 of 10 held back), 3 intents never reached".
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} of {} phrases reach their intent ({} of {} held back)",
            self.reached, self.checked, self.held_back_reached, self.held_back
        );
        if !self.never_reached.is_empty() {
            s.push_str(&format!(
                ", {} intent(s) never reached ({})",
                self.never_reached.len(),
                self.never_reached.join(", ")
            ));
        }
        s
    }
}

impl ParityReport {
    /// Passed / total of the test conversations; without any, the
    /// training phrases' share; `None` when the bundle has neither.
    pub fn pass_rate(&self) -> Option<f64> {
        if self.total > 0 {
            return Some(self.passed as f64 / self.total as f64);
        }
        self.phrases.as_ref().and_then(PhraseCoverage::rate)
    }

    /// One cell of a table: "3/3 tests; 40/52 phrases (8/10 held back)".
    pub fn short(&self) -> String {
        let mut parts = vec![];
        if self.total > 0 {
            parts.push(format!("{}/{} tests", self.passed, self.total));
        }
        if let Some(p) = &self.phrases {
            let mut cell = format!(
                "{}/{} phrases ({}/{} held back)",
                p.reached, p.checked, p.held_back_reached, p.held_back
            );
            if !p.never_reached.is_empty() {
                cell.push_str(&format!(
                    ", {} intents never reached",
                    p.never_reached.len()
                ));
            }
            parts.push(cell);
        }
        if parts.is_empty() {
            "not measured (no tests, no phrases)".into()
        } else {
            parts.join("; ")
        }
    }

    /// Whether a version with this result may be activated.
    pub fn allows(&self, min_pass_rate: f64) -> bool {
        self.pass_rate().is_none_or(|r| r + 1e-9 >= min_pass_rate)
    }

    /// The result in one line: conversations passed, phrase checks and stages, or not measured.
    pub fn summary(&self) -> String {
        let phrases = self.phrases.as_ref().map(PhraseCoverage::summary);
        match (self.total, self.pass_rate(), phrases) {
            (0, Some(r), Some(p)) => format!(
                "no test conversations; {p}: {:.0}% (stages: {})",
                r * 100.0,
                self.stages.join(" -> ")
            ),
            (_, Some(r), p) => format!(
                "{} of {} test conversations passed ({:.0}%, stages: {}){}",
                self.passed,
                self.total,
                r * 100.0,
                self.stages.join(" -> "),
                p.map(|p| format!("; {p}")).unwrap_or_default()
            ),
            (_, None, _) => {
                "no test conversations and no training phrases in this bundle (parity not measured)"
                    .into()
            }
        }
    }

    /// The failing conversations, one block each, for the designer.
    pub fn failures_text(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.phrases {
            for (phrase, intent, got) in &p.misses {
                out.push_str(&format!(
                    "MISS \"{phrase}\" (intent {intent}) reached {got}\n"
                ));
            }
        }
        for f in &self.failures {
            out.push_str(&format!("FAIL {}\n", f.name));
            for p in &f.problems {
                out.push_str(&format!("     {p}\n"));
            }
        }
        out
    }
}

/// Replay every test conversation of `bundle` with the given engines.
pub async fn run(bundle: &Bundle, nlu: Nlu) -> Result<ParityReport> {
    let started = Instant::now();
    let bot = Bot::load(bundle.clone(), nlu.clone())
        .await
        .context("the bundle does not load into the dialog engine")?;
    let reports = testing::run_all(&bot)
        .await
        .context("an engine failed while replaying the test conversations")?;
    let failures: Vec<FailedConversation> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| FailedConversation {
            name: r.name.clone(),
            problems: r.failures.clone(),
        })
        .collect();
    let phrases = phrase_checks(bundle, &nlu)
        .await
        .context("an engine failed while checking the training phrases")?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    crate::metrics::observe_ms("understudy_sync_stage_seconds", &[("stage", "parity")], ms);
    let report = ParityReport {
        total: reports.len(),
        passed: reports.len() - failures.len(),
        stages: bot.stages().into_iter().map(str::to_string).collect(),
        failures,
        ms,
        phrases,
    };
    tracing::info!(
        passed = report.passed,
        total = report.total,
        ms,
        "parity test"
    );
    Ok(report)
}

/// Every training phrase of the default language, recognised by the rules
/// and (when running) the embeddings among the intents of each state that
/// listens for its intent, as on a call, with every
/// [`HOLD_BACK_EVERY`]-th phrase of each intent left out of the recognizer.
/// `None` when the bundle has no phrases.
async fn phrase_checks(
    bundle: &Bundle,
    nlu: &Nlu,
) -> Result<Option<PhraseCoverage>, crate::engines::EngineError> {
    let lang = bundle.language().to_string();
    let mut trimmed = bundle.clone();
    // (phrase, intent, held back)
    let mut checks: Vec<(String, String, bool)> = vec![];
    for (name, intent) in trimmed.intents.iter_mut() {
        let Some(phrases) = intent.phrases.get(&lang, &lang).cloned() else {
            continue;
        };
        let mut kept = vec![];
        for (i, p) in phrases.into_iter().enumerate() {
            let held = i % HOLD_BACK_EVERY == HOLD_BACK_EVERY - 1;
            checks.push((p.clone(), name.clone(), held));
            if !held {
                kept.push(p);
            }
        }
        intent.phrases = crate::dialog::bundle::Localized::One(kept);
    }
    if checks.is_empty() {
        return Ok(None);
    }
    // Where a caller can say each intent: the distinct sets of intents
    // listened for in the states that listen for it ("yes" after one
    // question is not "yes" after another). An intent no state listens for
    // is checked among all.
    let all: BTreeSet<String> = trimmed.intents.keys().cloned().collect();
    let listening: BTreeSet<BTreeSet<String>> = trimmed.flow.listening().into_values().collect();
    let contexts = |intent: &str| -> Vec<&BTreeSet<String>> {
        let sets: Vec<&BTreeSet<String>> =
            listening.iter().filter(|s| s.contains(intent)).collect();
        if sets.is_empty() {
            vec![&all]
        } else {
            sets
        }
    };
    let mut recognizer = Recognizer::new(&trimmed, &lang);
    let vectors = match &nlu.embed {
        Some(embed) => {
            recognizer.embed_phrases(embed, &trimmed, &lang).await?;
            // Each check's vectors as the embedding stage makes them: the
            // phrase, then its clauses.
            let per_check: Vec<Vec<String>> = checks
                .iter()
                .map(|c| Recognizer::embedding_texts(&c.0))
                .collect();
            let texts: Vec<String> = per_check.iter().flatten().cloned().collect();
            let mut flat = embed.embed_batched(&texts).await?.into_iter();
            let out: Vec<Vec<Vec<f32>>> = per_check
                .iter()
                .map(|t| flat.by_ref().take(t.len()).collect())
                .collect();
            Some(out)
        }
        None => None,
    };
    let mut cov = PhraseCoverage::default();
    let mut reached_intents: BTreeSet<&str> = BTreeSet::new();
    let mut with_phrases: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (phrase, intent, held)) in checks.iter().enumerate() {
        *with_phrases.entry(intent).or_default() += 1;
        // Right in every context it can be said in; the first wrong answer
        // is the one reported.
        let mut got = None;
        for active in contexts(intent) {
            got = recognizer.rules(phrase, active).or_else(|| {
                vectors
                    .as_ref()
                    .and_then(|v| recognizer.embedding(&v[i], active, &[]).0)
            });
            if got.as_ref().is_none_or(|r| &r.intent != intent) {
                break;
            }
        }
        let ok = got.as_ref().is_some_and(|r| &r.intent == intent);
        cov.checked += 1;
        cov.held_back += *held as usize;
        if ok {
            cov.reached += 1;
            cov.held_back_reached += *held as usize;
            reached_intents.insert(intent);
        } else if cov.misses.len() < 10 {
            cov.misses.push((
                phrase.clone(),
                intent.clone(),
                got.map_or("nothing".into(), |r| r.intent),
            ));
        }
    }
    cov.never_reached = with_phrases
        .keys()
        .filter(|i| !reached_intents.contains(*i))
        .map(|i| i.to_string())
        .collect();
    Ok(Some(cov))
}
