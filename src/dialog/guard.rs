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

use super::text::{content_words, is_negator, stem, yes_or_no, NumberFolder};
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The guard's decision, with every unsupported claim spelled out (for logs and tests).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// True when every checked claim is backed by the facts.
    pub supported: bool,
    /// Each unsupported claim, in words (empty when `supported`).
    pub problems: Vec<String>,
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Words an answer may use without a fact behind them: conversation, not claims.
const CONVERSATIONAL: &[&str] = &[
    "able",
    "absolutely",
    "anything",
    "ask",
    "assist",
    "call",
    "calling",
    "certainly",
    "check",
    "course",
    "currently",
    "definitely",
    "else",
    "glad",
    "great",
    "happy",
    "help",
    "however",
    "indeed",
    "information",
    "let",
    "no",
    "nope",
    "note",
    "question",
    "sorry",
    "sure",
    "thank",
    "thanks",
    "today",
    "unfortunately",
    "welcome",
    "yeah",
    "yep",
    "yes",
    "am",
    "pm",
    "oclock",
    "hour",
    "time",
    "from",
    "between",
    "except",
    "open",
    "closed",
    "everyday",
    "daily",
    "week",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// A number; `spoken_one` marks the word "one" (usually a pronoun, not a claim).
    Num {
        value: f64,
        colon_minutes: Option<u32>,
        spoken_one: bool,
    },
    Punct(char),
}

fn prepare(text: &str) -> String {
    static AMPM: OnceLock<Regex> = OnceLock::new();
    let re = AMPM.get_or_init(|| Regex::new(r"(?i)\b([ap])\.\s?m\b\.?").unwrap());
    let t = re.replace_all(text, "${1}m");
    t.replace("noon", "12 pm")
        .replace("midnight", "12 am")
        .replace("midday", "12 pm")
}

fn tokenize(text: &str) -> Vec<Tok> {
    let text = prepare(text);
    let chars: Vec<char> = text.chars().collect();
    let mut raw = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || (matches!(chars[i], '.' | ',' | ':')
                        && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            raw.push(number_token(&s));
        } else if c.is_alphabetic() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphabetic() || chars[i] == '\'' || chars[i] == '\u{2019}')
            {
                i += 1;
            }
            let w: String = chars[start..i]
                .iter()
                .filter(|c| c.is_alphabetic())
                .flat_map(|c| c.to_lowercase())
                .collect();
            raw.push(Tok::Word(w));
        } else {
            if !c.is_whitespace() {
                raw.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    fold_number_words(raw)
}

fn number_token(s: &str) -> Tok {
    if let Some((h, m)) = s.split_once(':') {
        let value = h.parse().unwrap_or(0.0);
        return Tok::Num {
            value,
            colon_minutes: m.parse().ok(),
            spoken_one: false,
        };
    }
    Tok::Num {
        value: s.replace(',', "").parse().unwrap_or(0.0),
        colon_minutes: None,
        spoken_one: false,
    }
}

/// "thirty" -> 30, "nine" -> 9, so spoken and written numbers compare.
fn fold_number_words(raw: Vec<Tok>) -> Vec<Tok> {
    let mut out = vec![];
    let mut folder = NumberFolder::default();
    let mut words_in_number = vec![];
    let flush = |folder: &mut NumberFolder, words: &mut Vec<String>, out: &mut Vec<Tok>| {
        let spoken_one = words.len() == 1 && words[0] == "one";
        for v in folder.drain() {
            out.push(Tok::Num {
                value: v as f64,
                colon_minutes: None,
                spoken_one,
            });
        }
        words.clear();
    };
    for tok in raw {
        if let Tok::Word(w) = &tok {
            if w != "and" && folder.push(w) {
                words_in_number.push(w.clone());
                continue;
            }
            if w == "and" && folder.is_open() && folder.push(w) {
                continue;
            }
        }
        flush(&mut folder, &mut words_in_number, &mut out);
        out.push(tok);
    }
    flush(&mut folder, &mut words_in_number, &mut out);
    out
}

fn day_index(w: &str) -> Option<usize> {
    let w = w.strip_suffix('s').filter(|s| s.len() >= 3).unwrap_or(w);
    Some(match w {
        "monday" | "mon" => 0,
        "tuesday" | "tue" | "tues" => 1,
        "wednesday" | "wed" => 2,
        "thursday" | "thu" | "thur" | "thurs" => 3,
        "friday" | "fri" => 4,
        "saturday" | "sat" => 5,
        "sunday" | "sun" => 6,
        _ => return None,
    })
}

fn is_range_word(t: &Tok) -> bool {
    match t {
        Tok::Word(w) => matches!(w.as_str(), "to" | "through" | "thru" | "till" | "until"),
        Tok::Punct(c) => matches!(c, '-' | '\u{2013}' | '\u{2014}'),
        _ => false,
    }
}

fn is_clause_end(t: &Tok) -> bool {
    match t {
        Tok::Punct(c) => matches!(c, '.' | '!' | '?' | ';'),
        Tok::Word(w) => matches!(
            w.as_str(),
            "but" | "however" | "although" | "though" | "whereas" | "while" | "except"
        ),
        _ => false,
    }
}

/// Polarity: does the clause say something is (true) or is not (false)?
type Polarity = bool;

/// A time of day on a 12-hour clock; `pm` unknown when not said.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeOfDay {
    minutes12: u32,
    pm: Option<bool>,
}

impl TimeOfDay {
    fn compatible(&self, other: &TimeOfDay) -> bool {
        self.minutes12 == other.minutes12
            && (self.pm.is_none() || other.pm.is_none() || self.pm == other.pm)
    }
    fn describe(&self) -> String {
        let (h, m) = (self.minutes12 / 60, self.minutes12 % 60);
        let h = if h == 0 { 12 } else { h };
        let suffix = match self.pm {
            Some(true) => " pm",
            Some(false) => " am",
            None => "",
        };
        format!("{h}:{m:02}{suffix}")
    }
}

/// Everything checkable in a text.
#[derive(Debug, Default)]
struct Claims {
    days: BTreeSet<(usize, Polarity)>,
    times: Vec<TimeOfDay>,
    numbers: Vec<f64>,
    months: BTreeSet<String>,
    /// Clauses without day claims: (content words, polarity, text).
    clauses: Vec<(BTreeSet<String>, Polarity, String)>,
    words: BTreeSet<String>,
}

fn clauses(toks: &[Tok]) -> Vec<&[Tok]> {
    let mut out = vec![];
    let mut start = 0;
    for (i, t) in toks.iter().enumerate() {
        if is_clause_end(t) {
            if i > start {
                out.push(&toks[start..i]);
            }
            // "except" starts the next clause (it is its polarity marker).
            start = if matches!(t, Tok::Word(w) if w == "except") {
                i
            } else {
                i + 1
            };
        }
    }
    if start < toks.len() {
        out.push(&toks[start..]);
    }
    out
}

fn word(t: &Tok) -> Option<&str> {
    match t {
        Tok::Word(w) => Some(w),
        _ => None,
    }
}

/// Positions and polarities of "open"/"closed"/negation markers in a clause.
fn markers(clause: &[Tok]) -> Vec<(usize, Polarity)> {
    let mut out = vec![];
    let negated_before =
        |i: usize| (i.saturating_sub(2)..i).any(|j| word(&clause[j]).is_some_and(is_negator));
    for (i, t) in clause.iter().enumerate() {
        let Some(w) = word(t) else { continue };
        match w {
            "open" | "opens" | "available" => out.push((i, !negated_before(i))),
            "closed" | "shut" | "unavailable" | "except" => out.push((i, negated_before(i))),
            _ if is_negator(w) => {
                let governs_marker = clause[i + 1..].iter().take(2).filter_map(word).any(|n| {
                    matches!(
                        n,
                        "open" | "opens" | "available" | "closed" | "shut" | "unavailable"
                    )
                });
                if !governs_marker {
                    out.push((i, false));
                }
            }
            _ => {}
        }
    }
    out
}

/// Days a clause mentions, with their positions: ranges expanded.
fn day_mentions(clause: &[Tok]) -> Vec<(usize, Vec<usize>)> {
    let mut out = vec![];
    let mut i = 0;
    while i < clause.len() {
        let w = word(&clause[i]).unwrap_or("");
        let next = clause.get(i + 1).and_then(word).unwrap_or("");
        if let Some(d) = day_index(w) {
            // "Monday to Friday", "Mon-Fri", "between Monday and Friday"
            let between = i > 0 && word(&clause[i - 1]) == Some("between");
            let range_end = clause
                .get(i + 1)
                .filter(|t| is_range_word(t) || (between && word(t) == Some("and")));
            if let Some(end) = range_end.and(clause.get(i + 2).and_then(word).and_then(day_index)) {
                let span: Vec<usize> = (0..7)
                    .map(|k| (d + k) % 7)
                    .take_while(|x| *x != (end + 1) % 7)
                    .collect();
                out.push((i, span));
                i += 3;
                continue;
            }
            out.push((i, vec![d]));
        } else if matches!(w, "weekend" | "weekends") {
            out.push((i, vec![5, 6]));
        } else if matches!(w, "weekday" | "weekdays") {
            out.push((i, (0..5).collect()));
        } else if matches!(w, "daily" | "everyday")
            || (w == "every" && matches!(next, "day" | "days"))
        {
            out.push((i, (0..7).collect()));
        } else if matches!(clause[i], Tok::Num { value, .. } if value == 7.0)
            && matches!(next, "days" | "day")
            && clause[i + 2..]
                .iter()
                .take(2)
                .filter_map(word)
                .any(|w| w == "week")
        {
            // "7 days a week", not "within 7 days".
            out.push((i, (0..7).collect()));
        }
        i += 1;
    }
    out
}

fn is_day_word(w: &str) -> bool {
    day_index(w).is_some()
        || matches!(
            w,
            "weekend" | "weekends" | "weekday" | "weekdays" | "daily" | "everyday"
        )
}

/// Words that say what a clause is about (days, months and numbers are checked on their own).
fn is_topic_word(w: &str) -> bool {
    !is_day_word(w)
        && !MONTHS.contains(&w)
        && !w.chars().all(|c| c.is_ascii_digit())
        && super::text::number_word(w).is_none()
        && !CONVERSATIONAL.contains(&w)
}

fn is_month(clause: &[Tok], i: usize) -> Option<&str> {
    let w = word(&clause[i])?;
    let m = MONTHS.iter().find(|m| **m == w)?;
    // "may" is a month only next to a number ("May 5", "5 May").
    let near_number = |j: Option<usize>| {
        j.and_then(|j| clause.get(j))
            .is_some_and(|t| matches!(t, Tok::Num { .. }))
    };
    (*m != "may" || near_number(i.checked_sub(1)) || near_number(Some(i + 1))).then_some(m)
}

impl Claims {
    fn of(text: &str) -> Claims {
        let toks = tokenize(text);
        let mut claims = Claims::default();
        let mut previous_days: Vec<usize> = vec![];
        for clause in clauses(&toks) {
            claims.add_clause(clause, &mut previous_days);
        }
        claims.words = content_words(&prepare(text)).into_iter().collect();
        claims
    }

    fn add_clause(&mut self, clause: &[Tok], previous_days: &mut Vec<usize>) {
        let marks = markers(clause);
        let mentions = day_mentions(clause);
        let excepting = word(&clause[0]) == Some("except");
        let mut these_days = vec![];
        for (pos, days) in &mentions {
            let polarity = marks
                .iter()
                .rev()
                .find(|(m, _)| m < pos)
                .or_else(|| marks.iter().find(|(m, _)| m > pos))
                .map(|(_, p)| *p)
                .unwrap_or(true);
            for d in days {
                if excepting && previous_days.contains(d) {
                    // "open every day except Sunday": Sunday leaves the positive set.
                    self.days.remove(&(*d, !polarity));
                }
                self.days.insert((*d, polarity));
                these_days.push(*d);
            }
        }
        *previous_days = these_days;
        self.add_times_and_numbers(clause);
        if mentions.is_empty() {
            let text = clause_text(clause);
            let content: BTreeSet<String> = content_words(&text)
                .into_iter()
                .filter(|w| is_topic_word(w))
                .collect();
            let polarity = !clause.iter().filter_map(word).any(is_negator);
            if !content.is_empty() {
                self.clauses.push((content, polarity, text));
            }
        }
    }

    fn add_times_and_numbers(&mut self, clause: &[Tok]) {
        for (i, t) in clause.iter().enumerate() {
            if let Some(m) = is_month(clause, i) {
                self.months.insert(m.to_string());
            }
            let Tok::Num {
                value,
                colon_minutes,
                spoken_one,
            } = *t
            else {
                continue;
            };
            let next = clause.get(i + 1).and_then(word);
            let meridiem = match next {
                Some("am") => Some(false),
                Some("pm") => Some(true),
                _ => None,
            };
            let hour = value as u32;
            let is_clock = colon_minutes.is_some() || meridiem.is_some() || next == Some("oclock");
            if is_clock && value.fract() == 0.0 && hour <= 24 {
                let (h12, pm) = if hour > 12 {
                    (hour - 12, Some(true))
                } else {
                    (hour % 12, meridiem)
                };
                self.times.push(TimeOfDay {
                    minutes12: h12 * 60 + colon_minutes.unwrap_or(0),
                    pm,
                });
                // A time's parts are numbers too, for a fact's "9 am" to back an answer's "9 to 6".
                self.numbers.push(value);
                self.numbers.push(f64::from(h12));
            } else if !spoken_one {
                self.numbers.push(value);
            }
        }
    }

    /// Numbers that are claims (not the hours of a checked time).
    fn claimed_numbers(text: &str) -> Vec<f64> {
        let toks = tokenize(text);
        let mut out = vec![];
        for clause in clauses(&toks) {
            for (i, t) in clause.iter().enumerate() {
                let Tok::Num {
                    value,
                    colon_minutes,
                    spoken_one,
                } = *t
                else {
                    continue;
                };
                let next = clause.get(i + 1).and_then(word);
                let clock = colon_minutes.is_some() || matches!(next, Some("am" | "pm" | "oclock"));
                if !clock && !spoken_one {
                    out.push(value);
                }
            }
        }
        out
    }
}

fn clause_text(clause: &[Tok]) -> String {
    clause
        .iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Num { value, .. } => value.to_string(),
            Tok::Punct(c) => c.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_day(day: usize, polarity: Polarity) -> String {
    format!(
        "{} {}",
        if polarity {
            "open/yes on"
        } else {
            "closed/no on"
        },
        DAYS[day]
    )
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
mod tests {
    use super::*;

    const HOURS: &str = "Our stores are open Monday to Friday, 9 am to 6 pm. We are closed on Saturdays and Sundays.";
    const RETURNS: &str = "You can return items within 30 days of purchase with the receipt. Without a receipt we can offer store credit.";
    const SHIPPING: &str = "Standard shipping takes 3 to 5 business days. Express shipping takes 1 to 2 business days and costs $12.";
    const GIFT: &str =
        "Gift cards are sold in all our stores and online, in amounts from $10 to $500.";
    const PRICE: &str = "We do not offer price matching.";
    const SUNDAY: &str = "The outlet store is open every day except Sunday, from 10 am to 4 pm.";

    fn ok(answer: &str, question: &str, facts: &[&str]) {
        let v = check(answer, question, facts);
        assert!(
            v.supported,
            "should pass: {answer:?} (q: {question:?}) problems: {:?}",
            v.problems
        );
    }

    fn bad(answer: &str, question: &str, facts: &[&str]) {
        let v = check(answer, question, facts);
        assert!(
            !v.supported,
            "should be rejected: {answer:?} (q: {question:?})"
        );
    }

    #[test]
    fn rejects_opening_on_a_closed_day() {
        let q = "Are you open on Saturday?";
        bad("Yes, we are open on Saturday.", q, &[HOURS]);
        bad(
            "Yes, we're open on Saturdays from 9 am to 6 pm.",
            q,
            &[HOURS],
        );
        bad("Yes.", q, &[HOURS]);
        bad("We are open Monday to Saturday, 9 am to 6 pm.", q, &[HOURS]);
        bad("We're open every day from 9 to 6.", q, &[HOURS]);
        bad("Saturday we are open from 9 am.", q, &[HOURS]);
        let v = check("Yes, we are open on Saturday.", q, &[HOURS]);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("Saturday") && p.contains("opposite")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn accepts_correct_hours_answers() {
        let q = "Are you open on Saturday?";
        ok("No, we are closed on Saturdays.", q, &[HOURS]);
        ok("No.", q, &[HOURS]);
        ok(
            "We're open Monday to Friday from 9 am to 6 pm.",
            q,
            &[HOURS],
        );
        ok(
            "Sorry, we're closed on weekends. We're open Monday through Friday, 9 to 6.",
            q,
            &[HOURS],
        );
        ok("No, we are not open on Saturday.", q, &[HOURS]);
        ok(
            "Our stores are open 9 a.m. to 6 p.m., Monday to Friday.",
            "what are your hours",
            &[HOURS],
        );
    }

    #[test]
    fn ranges_cover_the_days_inside_them() {
        let q = "Are you open on Wednesday?";
        ok(
            "Yes, we're open on Wednesday from 9 am to 6 pm.",
            q,
            &[HOURS],
        );
        ok("Yes.", q, &[HOURS]);
        bad("No, we are closed on Wednesday.", q, &[HOURS]);
        ok(
            "Yes, we are open Thursday.",
            "open thursday?",
            &["We are open Mon–Fri, 9:00–18:00."],
        );
        ok(
            "We open at 9 am and close at 6 pm on weekdays.",
            "hours?",
            &[HOURS],
        );
    }

    #[test]
    fn except_removes_days_from_every_day() {
        let q = "Is the outlet open on Sunday?";
        bad("Yes, the outlet store is open on Sunday.", q, &[SUNDAY]);
        ok("No, the outlet store is closed on Sunday.", q, &[SUNDAY]);
        ok(
            "Yes, the outlet store is open on Saturday from 10 am to 4 pm.",
            "Is the outlet open Saturday?",
            &[SUNDAY],
        );
    }

    #[test]
    fn times_must_match() {
        let q = "When do you close?";
        bad("We close at 5 pm on weekdays.", q, &[HOURS]);
        bad("We are open Monday to Friday, 9 am to 5 pm.", q, &[HOURS]);
        bad("We open at 8 am.", q, &[HOURS]);
        ok("We close at 6 pm.", q, &[HOURS]);
        ok("We close at 18:00.", q, &[HOURS]);
        bad("We close at 6 am.", q, &[HOURS]);
    }

    #[test]
    fn numbers_prices_and_durations_must_match() {
        ok(
            "You can return items within 30 days with the receipt.",
            "Can I return something after two weeks?",
            &[RETURNS],
        );
        bad(
            "You can return items within 60 days.",
            "how long do I have to return",
            &[RETURNS],
        );
        bad(
            "You can return items within thirty five days.",
            "how long do I have to return",
            &[RETURNS],
        );
        ok(
            "You can return items within thirty days of purchase.",
            "how long do I have to return",
            &[RETURNS],
        );
        ok(
            "Standard shipping takes 3 to 5 business days.",
            "How long does shipping take?",
            &[SHIPPING],
        );
        bad(
            "Standard shipping takes 2 to 4 business days.",
            "How long does shipping take?",
            &[SHIPPING],
        );
        ok(
            "Express shipping costs $12.",
            "how much is express shipping",
            &[SHIPPING],
        );
        bad(
            "Express shipping costs $15.",
            "how much is express shipping",
            &[SHIPPING],
        );
        ok(
            "Gift cards are sold in amounts from $10 to $500.",
            "what amounts do gift cards come in",
            &[GIFT],
        );
    }

    #[test]
    fn negation_against_the_facts_is_rejected() {
        let q = "Do you price match?";
        bad("Yes, we offer price matching.", q, &[PRICE]);
        bad("Yes.", q, &[PRICE]);
        ok("No, we do not offer price matching.", q, &[PRICE]);
        ok("No.", q, &[PRICE]);
        let q = "Do you sell gift cards?";
        ok(
            "Yes, gift cards are sold in our stores and online.",
            q,
            &[GIFT],
        );
        ok("Yes.", q, &[GIFT]);
        bad("No, we don't sell gift cards.", q, &[GIFT]);
        bad("No.", q, &[GIFT]);
    }

    #[test]
    fn another_clause_of_the_fact_does_not_vouch_for_a_negation() {
        // SmolLM2-135M's actual answer to "Do you sell gift cards?".
        let fact = "Gift cards are sold in all our stores and online, in amounts from $10 to $500. Gift cards never expire.";
        let q = "Do you sell gift cards?";
        bad("We do not sell gift cards.", q, &[fact]);
        bad("No.", q, &[fact]);
        ok(
            "Yes, gift cards are sold in all our stores and online.",
            q,
            &[fact],
        );
        ok("Gift cards never expire.", "Do gift cards expire?", &[fact]);
        bad("Gift cards expire.", "Do gift cards expire?", &[fact]);
    }

    #[test]
    fn yes_to_something_no_fact_covers_is_rejected() {
        bad("Yes.", "Do you sell pet food?", &[GIFT, HOURS]);
        bad(
            "Yes, we sell pet food.",
            "Do you sell pet food?",
            &[GIFT, HOURS],
        );
    }

    #[test]
    fn durations_are_not_weekdays_and_the_bot_may_name_itself() {
        let facts = [
            RETURNS,
            "Refunds go back to the original payment method within 5 to 7 business days.",
        ];
        ok(
            "Refunds go back to the original payment method within 5 to 7 business days.",
            "When will I get my refund?",
            &facts,
        );
        let v = check(
            "You can request a refund within 7 days of purchase.",
            "refund?",
            &facts,
        );
        assert!(
            v.problems.iter().all(|p| !p.contains("Monday")),
            "{:?}",
            v.problems
        );
        ok(
            "We're open 7 days a week.",
            "open every day?",
            &["The outlet is open 7 days a week."],
        );
        let named = "Understudy Outfitters stores are open Monday to Friday.";
        assert!(!check(named, "hours?", &[HOURS]).supported);
        assert!(
            check_with_vocabulary(named, "hours?", &[HOURS], &["Understudy Outfitters"]).supported
        );
    }

    #[test]
    fn invented_details_are_rejected() {
        bad(
            "Standard shipping is free and takes 3 to 5 business days.",
            "How long does shipping take?",
            &[SHIPPING],
        );
        bad(
            "Gift cards are sold in our stores and never expire.",
            "Do you sell gift cards?",
            &[GIFT],
        );
        bad(
            "You can return items within 30 days, and we also price match.",
            "returns?",
            &[RETURNS],
        );
        bad(
            "Our stores are open in December.",
            "open in december?",
            &[HOURS],
        );
    }

    #[test]
    fn conversational_wrapping_is_fine() {
        ok(
            "Sure, happy to help! Gift cards are sold in all our stores and online.",
            "Do you sell gift cards?",
            &[GIFT],
        );
        ok(
            "Unfortunately we do not offer price matching.",
            "can you match a competitor's price",
            &[PRICE],
        );
    }

    #[test]
    fn tokenizer_reads_times_and_spoken_numbers() {
        let c = Claims::of("Open 9:30 a.m. to six p.m., thirty days, one of our stores");
        assert_eq!(c.times.len(), 2, "{c:?}");
        assert!(c.times[0].compatible(&TimeOfDay {
            minutes12: 9 * 60 + 30,
            pm: Some(false)
        }));
        assert!(c.times[1].compatible(&TimeOfDay {
            minutes12: 6 * 60,
            pm: Some(true)
        }));
        assert_eq!(
            Claims::claimed_numbers("thirty days, one of our stores"),
            [30.0]
        );
    }
}
