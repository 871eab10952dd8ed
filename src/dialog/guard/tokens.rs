//! The guard's reading of a text: words, numbers (digits and number words
//! folded together), times of day, day and month names, clause ends.

use super::*;

pub(super) const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
pub(super) const MONTHS: [&str; 12] = [
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
pub(super) const CONVERSATIONAL: &[&str] = &[
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
pub(super) enum Tok {
    Word(String),
    /// A number; `spoken_one` marks the word "one" (usually a pronoun, not a claim).
    Num {
        value: f64,
        colon_minutes: Option<u32>,
        spoken_one: bool,
    },
    Punct(char),
}

pub(super) fn prepare(text: &str) -> String {
    static AMPM: OnceLock<Regex> = OnceLock::new();
    let re = AMPM.get_or_init(|| Regex::new(r"(?i)\b([ap])\.\s?m\b\.?").unwrap());
    let t = re.replace_all(text, "${1}m");
    t.replace("noon", "12 pm")
        .replace("midnight", "12 am")
        .replace("midday", "12 pm")
}

pub(super) fn tokenize(text: &str) -> Vec<Tok> {
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

pub(super) fn number_token(s: &str) -> Tok {
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
pub(super) fn fold_number_words(raw: Vec<Tok>) -> Vec<Tok> {
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

pub(super) fn day_index(w: &str) -> Option<usize> {
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

pub(super) fn is_range_word(t: &Tok) -> bool {
    match t {
        Tok::Word(w) => matches!(w.as_str(), "to" | "through" | "thru" | "till" | "until"),
        Tok::Punct(c) => matches!(c, '-' | '\u{2013}' | '\u{2014}'),
        _ => false,
    }
}

pub(super) fn is_clause_end(t: &Tok) -> bool {
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
pub(super) type Polarity = bool;
