//! The held-out caller set (`tests/fixtures/heldout/callers.yaml`): what
//! callers say, what the bot should make of it, and how a turn is judged.

use crate::dialog::bundle::Bundle;
use crate::dialog::recognize::meaningful_words;
use crate::dialog::slots::contains_words;
use crate::session::TurnReport;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The set built into the binary (the demo bot's).
pub const BUILTIN: &str = include_str!("../../tests/fixtures/heldout/callers.yaml");

/// A first turn that is out of scope: no intent, no knowledge answer.
pub const OUT_OF_SCOPE: &str = "out_of_scope";
/// A first turn answered from the bundle's facts by the LLM.
pub const KNOWLEDGE: &str = "knowledge";

/// The whole set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerSet {
    /// Single first turns, one call each.
    pub turns: Vec<CallerTurn>,
    /// Multi-turn calls.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Lines with no speech (must give no transcript).
    #[serde(default)]
    pub clips: Vec<Clip>,
}

/// One thing a caller says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerTurn {
    /// An intent name, `out_of_scope` or `knowledge` (first turns only).
    #[serde(default)]
    pub category: String,
    /// What the voice speaks.
    pub say: String,
    /// The expected transcript, where it differs from `say`.
    pub transcript: Option<String>,
    /// In tasks: the intent expected (`none`: no intent); unset: not checked.
    pub intent: Option<String>,
    /// Slots the turn should fill.
    #[serde(default)]
    pub slots: BTreeMap<String, String>,
    /// Words the bot's reply should contain (normalised).
    #[serde(default)]
    pub reply_contains: Vec<String>,
}

/// A multi-turn call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// The task's name (in samples and progress lines).
    pub name: String,
    /// The caller's turns, in order.
    pub turns: Vec<CallerTurn>,
}

/// A line condition with no caller speech.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    /// The clip's name (in results and progress lines).
    pub name: String,
    /// `silence`, `noise` or `hum` (see `voice::line_clip`).
    pub kind: String,
    /// Length, in ms.
    pub ms: u32,
    /// RMS level of the noise or hum, in dBFS (default -50).
    #[serde(default = "quiet")]
    pub dbfs: f64,
}

fn quiet() -> f64 {
    -50.0
}

impl CallerSet {
    /// The built-in set.
    pub fn builtin() -> CallerSet {
        serde_norway::from_str(BUILTIN).expect("the built-in caller set parses")
    }

    /// A set from a YAML file.
    pub fn load(path: &Path) -> Result<CallerSet> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the caller set {}", path.display()))?;
        serde_norway::from_str(&text).with_context(|| {
            format!(
                "{} is not a caller set (format: tests/fixtures/heldout/callers.yaml)",
                path.display()
            )
        })
    }

    /// Every utterance with where it is, for checks.
    pub fn utterances(&self) -> impl Iterator<Item = (String, &CallerTurn)> {
        let singles = self.turns.iter().map(|t| (t.category.clone(), t));
        let tasks = self.tasks.iter().flat_map(|task| {
            task.turns
                .iter()
                .enumerate()
                .map(move |(i, t)| (format!("task {:?} turn {}", task.name, i + 1), t))
        });
        singles.chain(tasks)
    }

    /// Utterances that contain one of `bundle`'s training phrases or keywords
    /// (compared as the rules compare them): each one a line saying which.
    /// Empty when the set is held out from the bundle.
    pub fn training_overlap(&self, bundle: &Bundle) -> Vec<String> {
        let lang = bundle.language();
        let mut needles = vec![];
        for (intent, def) in &bundle.intents {
            for list in [&def.phrases, &def.keywords] {
                for text in list.get(lang, lang).into_iter().flatten() {
                    needles.push((intent.as_str(), text.as_str(), meaningful_words(text)));
                }
            }
        }
        let mut found = vec![];
        for (place, turn) in self.utterances() {
            let said = meaningful_words(&turn.say);
            for (intent, text, words) in &needles {
                if contains_words(&said, words).is_some() {
                    found.push(format!(
                        "{place}: {:?} contains {intent}'s {text:?}",
                        turn.say
                    ));
                }
            }
        }
        found
    }
}

impl CallerTurn {
    /// The expected transcript.
    pub fn reference(&self) -> &str {
        self.transcript.as_deref().unwrap_or(&self.say)
    }

    /// The intent expected: `Some(None)` no intent, `None` not checked.
    pub fn expected_intent(&self) -> Option<Option<&str>> {
        if let Some(i) = &self.intent {
            return Some((i != "none").then_some(i.as_str()));
        }
        match self.category.as_str() {
            "" => None,
            OUT_OF_SCOPE | KNOWLEDGE => Some(None),
            intent => Some(Some(intent)),
        }
    }
}

/// What a turn's reports (usually one; an utterance with a long pause can
/// make two) say about the caller's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Met every expectation of its category.
    pub correct: bool,
    /// Out of scope, yet the bot acted on it (an intent, or a knowledge answer).
    pub false_accept: bool,
    /// Why not correct.
    pub miss: Option<String>,
    /// The bot asked to confirm the expected intent (a caller answering yes
    /// or picking it gets there on the next turn).
    pub confirmed: bool,
}

/// Judge a caller turn by the bot's reports for it.
pub fn judge(turn: &CallerTurn, reports: &[TurnReport]) -> Verdict {
    let first = reports.first();
    let intent = first.and_then(|r| r.intent.as_deref());
    let matched_by = first.map(|r| r.matched_by.as_str()).unwrap_or("none");
    let reply: String = reports
        .iter()
        .map(|r| r.reply.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let mut misses = vec![];
    if first.is_none() {
        misses.push("no turn".to_string());
    }
    if let Some(expected) = turn.expected_intent() {
        if intent != expected {
            misses.push(format!(
                "intent {} (expected {})",
                intent.unwrap_or("none"),
                expected.unwrap_or("none")
            ));
        }
    }
    let knowledge_answer = matched_by == "knowledge";
    if turn.category == KNOWLEDGE && !knowledge_answer {
        misses.push(format!("answered by {matched_by}, not knowledge"));
    }
    let false_accept = turn.category == OUT_OF_SCOPE && (intent.is_some() || knowledge_answer);
    if false_accept && intent.is_none() {
        misses.push("answered from knowledge".into());
    }
    let last_slots = reports.last().map(|r| &r.slots);
    for (slot, value) in &turn.slots {
        let got = last_slots.and_then(|s| s.get(slot));
        if got != Some(value) {
            misses.push(format!("slot {slot} = {got:?} (expected {value})"));
        }
    }
    let said = super::score::normalize_words(&reply).join(" ");
    for needle in &turn.reply_contains {
        if !said.contains(&super::score::normalize_words(needle).join(" ")) {
            misses.push(format!("reply lacks {needle:?}"));
        }
    }
    let confirmed = match (turn.expected_intent(), first) {
        (Some(Some(expected)), Some(r)) => r.asked.iter().any(|a| a == expected),
        _ => false,
    };
    Verdict {
        correct: misses.is_empty(),
        false_accept,
        miss: (!misses.is_empty()).then(|| misses.join("; ")),
        confirmed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(intent: Option<&str>, matched_by: &str, reply: &str) -> TurnReport {
        TurnReport {
            intent: intent.map(str::to_string),
            matched_by: matched_by.into(),
            reply: reply.into(),
            ..Default::default()
        }
    }

    fn turn(category: &str) -> CallerTurn {
        serde_norway::from_str(&format!("{{ category: {category}, say: hello }}")).unwrap()
    }

    #[test]
    fn turns_are_judged_by_their_category() {
        let r = |i, m| vec![report(i, m, "Sure.")];
        assert!(judge(&turn("returns"), &r(Some("returns"), "embedding")).correct);
        assert!(!judge(&turn("returns"), &r(Some("agent"), "rule")).correct);
        assert!(!judge(&turn("returns"), &[]).correct);
        let oos = turn(OUT_OF_SCOPE);
        assert!(judge(&oos, &r(None, "none")).correct);
        assert!(judge(&oos, &r(Some("agent"), "llm")).false_accept);
        assert!(judge(&oos, &r(None, "knowledge")).false_accept);
        assert!(judge(&turn(KNOWLEDGE), &r(None, "knowledge")).correct);
        assert!(!judge(&turn(KNOWLEDGE), &r(None, "none")).correct);
    }

    #[test]
    fn slots_and_reply_are_checked_across_split_reports() {
        let t: CallerTurn = serde_norway::from_str(
            "{ say: x, intent: none, slots: { order_number: '48213' }, reply_contains: [Order 48213] }",
        )
        .unwrap();
        let mut second = report(None, "none", "Order 4 8 2 1 3 shipped on Monday.");
        second.slots.insert("order_number".into(), "48213".into());
        let v = judge(&t, &[report(None, "none", "Go on."), second]);
        assert!(v.correct, "{v:?}");
        let v = judge(&t, &[report(None, "none", "Go on.")]);
        assert!(!v.correct && v.miss.unwrap().contains("slot order_number"));
    }

    #[test]
    fn the_builtin_set_parses_and_overlap_is_found() {
        let set = CallerSet::builtin();
        assert!(set.turns.len() >= 100);
        let mut leaky = set.clone();
        leaky.turns[0].say = "um, where is my order".into();
        let found = leaky.training_overlap(&Bundle::demo());
        assert!(
            found.iter().any(|f| f.contains("\"where is my order\"")),
            "{found:?}"
        );
    }
}
