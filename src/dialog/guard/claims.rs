//! The claims a text makes that the guard can check: days with polarity,
//! times, numbers, months, negated clauses.

use super::tokens::*;
use super::*;

/// A time of day on a 12-hour clock; `pm` unknown when not said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TimeOfDay {
    pub(super) minutes12: u32,
    pub(super) pm: Option<bool>,
}

impl TimeOfDay {
    pub(super) fn compatible(&self, other: &TimeOfDay) -> bool {
        self.minutes12 == other.minutes12
            && (self.pm.is_none() || other.pm.is_none() || self.pm == other.pm)
    }
    pub(super) fn describe(&self) -> String {
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
pub(super) struct Claims {
    pub(super) days: BTreeSet<(usize, Polarity)>,
    pub(super) times: Vec<TimeOfDay>,
    pub(super) numbers: Vec<f64>,
    pub(super) months: BTreeSet<String>,
    /// Clauses without day claims: (content words, polarity, text).
    pub(super) clauses: Vec<(BTreeSet<String>, Polarity, String)>,
    pub(super) words: BTreeSet<String>,
}

pub(super) fn clauses(toks: &[Tok]) -> Vec<&[Tok]> {
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

pub(super) fn word(t: &Tok) -> Option<&str> {
    match t {
        Tok::Word(w) => Some(w),
        _ => None,
    }
}

/// Positions and polarities of "open"/"closed"/negation markers in a clause.
pub(super) fn markers(clause: &[Tok]) -> Vec<(usize, Polarity)> {
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
pub(super) fn day_mentions(clause: &[Tok]) -> Vec<(usize, Vec<usize>)> {
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

pub(super) fn is_day_word(w: &str) -> bool {
    day_index(w).is_some()
        || matches!(
            w,
            "weekend" | "weekends" | "weekday" | "weekdays" | "daily" | "everyday"
        )
}

/// Words that say what a clause is about (days, months and numbers are checked on their own).
pub(super) fn is_topic_word(w: &str) -> bool {
    !is_day_word(w)
        && !MONTHS.contains(&w)
        && !w.chars().all(|c| c.is_ascii_digit())
        && super::super::text::number_word(w).is_none()
        && !CONVERSATIONAL.contains(&w)
}

pub(super) fn is_month(clause: &[Tok], i: usize) -> Option<&str> {
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
    pub(super) fn of(text: &str) -> Claims {
        let toks = tokenize(text);
        let mut claims = Claims::default();
        let mut previous_days: Vec<usize> = vec![];
        for clause in clauses(&toks) {
            claims.add_clause(clause, &mut previous_days);
        }
        claims.words = content_words(&prepare(text)).into_iter().collect();
        claims
    }

    pub(super) fn add_clause(&mut self, clause: &[Tok], previous_days: &mut Vec<usize>) {
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

    pub(super) fn add_times_and_numbers(&mut self, clause: &[Tok]) {
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
    pub(super) fn claimed_numbers(text: &str) -> Vec<f64> {
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

pub(super) fn clause_text(clause: &[Tok]) -> String {
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

pub(super) fn describe_day(day: usize, polarity: Polarity) -> String {
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
