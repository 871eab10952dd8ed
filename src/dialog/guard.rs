//! The grounding guard: before an LLM-worded answer is spoken, every claim
//! it makes that can be checked must be supported by the facts it was given.
//! Small models say a Monday-to-Friday shop opens on Saturday; this catches
//! that and the bot speaks the fact itself instead.
//!
//! Checked claims:
//! - days, with polarity: "open Saturday" needs a fact saying open on Saturday
//!   (ranges "Monday to Friday", "weekdays", "weekends", "every day ... except
//!   Sunday" expand; "closed"/"not open" flip polarity);
//! - times of day ("9 am", "18:00", "noon") and every other number (prices,
//!   durations, counts), months;
//! - yes/no answers, read against the question ("Are you open Saturday?"
//!   "Yes." claims open on Saturday);
//! - negation: an answer clause that matches a fact clause's words with the
//!   opposite polarity ("we offer price matching" vs "we do not offer price
//!   matching");
//! - wording: every content word must come from the facts or the question (a
//!   paraphrase the guard cannot check is not worth the risk: the verbatim
//!   fact is a correct answer).

mod claims;
mod tokens;

use super::text::{content_words, is_negator, stem, yes_or_no, NumberFolder};
use claims::*;
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use tokens::*;

/// The guard's decision, with every unsupported claim spelled out (for logs and tests).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// True when every checked claim is backed by the facts.
    pub supported: bool,
    /// Each unsupported claim, in words (empty when `supported`).
    pub problems: Vec<String>,
}

/// Check `answer` (to `question`) against `facts`.
pub fn check(answer: &str, question: &str, facts: &[&str]) -> Verdict {
    check_with_vocabulary(answer, question, facts, &[])
}

/// [`check`], also allowing the words of `vocabulary` (the bot's own name).
pub fn check_with_vocabulary(
    answer: &str,
    question: &str,
    facts: &[&str],
    vocabulary: &[&str],
) -> Verdict {
    let mut known = Claims::default();
    for fact in facts {
        let c = Claims::of(fact);
        known.days.extend(c.days);
        known.times.extend(c.times);
        known.numbers.extend(c.numbers);
        known.months.extend(c.months);
        known.clauses.extend(c.clauses);
        known.words.extend(c.words);
    }
    let said = Claims::of(answer);
    let asked = Claims::of(question);
    let mut problems = vec![];

    // A bare "yes"/"no" makes the question's claims the answer's.
    let mut day_claims = said.days.clone();
    let mut clause_claims = said.clauses.clone();
    if let Some(affirm) = yes_or_no(answer) {
        day_claims.extend(asked.days.iter().map(|(d, p)| (*d, *p == affirm)));
        for (words, polarity, text) in &asked.clauses {
            let covered = known
                .clauses
                .iter()
                .any(|(f, _, _)| overlap(words, f) >= 2.min(words.len()));
            if !covered && asked.days.is_empty() {
                problems.push(format!(
                    "answers yes/no to \"{text}\", which no fact covers"
                ));
            }
            clause_claims.push((words.clone(), *polarity == affirm, text.clone()));
        }
    }

    for (day, polarity) in &day_claims {
        if !known.days.contains(&(*day, *polarity)) {
            let opposite = known.days.contains(&(*day, !polarity));
            let why = if opposite {
                "the facts say the opposite"
            } else {
                "no fact says so"
            };
            problems.push(format!("says {}: {why}", describe_day(*day, *polarity)));
        }
    }
    for t in &said.times {
        if !known.times.iter().any(|k| k.compatible(t)) {
            problems.push(format!("says the time {}: no fact has it", t.describe()));
        }
    }
    for n in Claims::claimed_numbers(answer) {
        if !known.numbers.iter().any(|k| (k - n).abs() < 1e-9) {
            problems.push(format!("says the number {n}: no fact has it"));
        }
    }
    for m in said.months.difference(&known.months) {
        problems.push(format!("mentions {m}: no fact does"));
    }
    for (words, polarity, text) in &clause_claims {
        // The fact clauses about the same thing: those sharing the most words
        // (a fact's other clause, "gift cards never expire", must not vouch
        // for "we do not sell gift cards").
        let best = known
            .clauses
            .iter()
            .map(|(f, _, _)| overlap(words, f))
            .max()
            .unwrap_or(0);
        if best < 2 || best * 2 < words.len() {
            continue;
        }
        let closest: Vec<&(BTreeSet<String>, Polarity, String)> = known
            .clauses
            .iter()
            .filter(|(f, _, _)| overlap(words, f) == best)
            .collect();
        if closest.iter().all(|(_, p, _)| p != polarity) {
            problems.push(format!(
                "\"{text}\" contradicts the fact \"{}\"",
                closest[0].2
            ));
        }
    }
    let mut question_words: BTreeSet<String> =
        content_words(&prepare(question)).into_iter().collect();
    question_words.extend(vocabulary.iter().flat_map(|v| content_words(v)));
    let novel: Vec<&String> = said
        .words
        .iter()
        .filter(|w| {
            !known.words.contains(*w)
                && !question_words.contains(*w)
                && is_topic_word(w)
                && !known.words.iter().any(|k| same_word(k, w))
        })
        .collect();
    if !novel.is_empty() {
        let list: Vec<&str> = novel.iter().map(|s| s.as_str()).collect();
        problems.push(format!("uses words no fact contains: {}", list.join(", ")));
    }
    Verdict {
        supported: problems.is_empty(),
        problems,
    }
}

fn overlap(a: &BTreeSet<String>, b: &BTreeSet<String>) -> usize {
    a.iter()
        .filter(|w| b.contains(*w) || b.iter().any(|x| same_word(x, w)))
        .count()
}

/// Inflections of one word ("ship"/"shipping"/"shipped", "sell"/"sold").
fn same_word(a: &str, b: &str) -> bool {
    const IRREGULAR: &[(&str, &str)] = &[
        ("sold", "sell"),
        ("bought", "buy"),
        ("took", "take"),
        ("paid", "pay"),
        ("kept", "keep"),
        ("gave", "give"),
    ];
    let base = |w: &str| -> String {
        let w = IRREGULAR
            .iter()
            .find(|(from, _)| *from == w)
            .map(|(_, to)| *to)
            .unwrap_or(w);
        stem(w)
    };
    let (a, b) = (base(a), base(b));
    if a == b {
        return true;
    }
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    common >= 5 || (common >= 4 && a.len().min(b.len()) <= 5)
}

#[cfg(test)]
mod tests;
