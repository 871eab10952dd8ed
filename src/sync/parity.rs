//! The parity test: the bundle's own test conversations (Rasa test stories,
//! exported CX test cases, tests written into the bundle) replayed against
//! the local dialog engine in text mode. A version is activated only when
//! the share that passes reaches `[sync] min_pass_rate`.

use crate::dialog::{testing, Bot, Bundle, Nlu};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One conversation that did not go as the test says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedConversation {
    pub name: String,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParityReport {
    pub total: usize,
    pub passed: usize,
    /// Recognition stages the replay used (`rules`, `embeddings`, `llm`).
    pub stages: Vec<String>,
    pub failures: Vec<FailedConversation>,
    pub ms: f64,
}

impl ParityReport {
    /// Passed / total; `None` when the bundle has no tests.
    pub fn pass_rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.passed as f64 / self.total as f64)
    }

    /// Whether a version with this result may be activated.
    pub fn allows(&self, min_pass_rate: f64) -> bool {
        self.pass_rate().is_none_or(|r| r + 1e-9 >= min_pass_rate)
    }

    pub fn summary(&self) -> String {
        match self.pass_rate() {
            Some(r) => format!(
                "{} of {} test conversations passed ({:.0}%, stages: {})",
                self.passed,
                self.total,
                r * 100.0,
                self.stages.join(" -> ")
            ),
            None => "no test conversations in this bundle (parity not measured)".into(),
        }
    }

    /// The failing conversations, one block each, for the designer.
    pub fn failures_text(&self) -> String {
        let mut out = String::new();
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
    let bot = Bot::load(bundle.clone(), nlu)
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
    let ms = started.elapsed().as_secs_f64() * 1e3;
    crate::metrics::observe_ms("understudy_sync_stage_ms", &[("stage", "parity")], ms);
    let report = ParityReport {
        total: reports.len(),
        passed: reports.len() - failures.len(),
        stages: bot.stages().into_iter().map(str::to_string).collect(),
        failures,
        ms,
    };
    tracing::info!(
        passed = report.passed,
        total = report.total,
        ms,
        "parity test"
    );
    Ok(report)
}
