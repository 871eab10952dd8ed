//! From the text a bot wants to say to the chunks Piper speaks.
//!
//! 1. A small SSML subset (cloud bot prompts often carry it): `<say-as
//!    interpret-as="digits|characters|spell-out|telephone">`, `<sub alias>`,
//!    `<break time>`; other tags are dropped, entities decoded.
//! 2. Sentence splitting on `.`, `?`, `!`, `;` and line breaks, keeping
//!    abbreviations ("Dr.", "e.g.", "a.m.") and numbers ("3.5") intact; over-long
//!    sentences are cut at commas so the first audio comes out sooner.
//! 3. Normalisation for speech. espeak-ng reads plain numbers and "%" well but
//!    says "nine zero zero" for 9:00, "dollar five point nine nine" for $5.99,
//!    "twelve million..." for an order number and "asterisk" for markdown, so
//!    times, money, day ranges, long digit strings, phone numbers and stray
//!    symbols are rewritten here.

use regex::{Captures, Regex};
use std::sync::LazyLock;

/// One piece of speech: synthesised on its own, streamed on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// The text as written (markup removed), for logs and captions.
    pub text: String,
    /// What is handed to the phonemizer.
    pub spoken: String,
    /// Silence to play before this chunk (from `<break>`), in milliseconds.
    pub pause_before_ms: u32,
}

/// Sentences longer than this are cut at a comma (or similar) if possible.
const MAX_CHUNK_CHARS: usize = 160;

// Private-use characters mark spans between markup parsing and normalisation.
const SPELL_OPEN: char = '\u{E000}';
const SPELL_CLOSE: char = '\u{E001}';
const BREAK_OPEN: char = '\u{E002}';
const BREAK_CLOSE: char = '\u{E003}';

/// Split `input` into speakable chunks, in order.
pub fn plan(input: &str) -> Vec<Chunk> {
    let marked = parse_markup(input);
    let mut chunks = Vec::new();
    let mut pause_ms = 0u32;
    for part in split_breaks(&marked) {
        match part {
            Part::Pause(ms) => pause_ms = pause_ms.saturating_add(ms),
            Part::Text(text) => {
                for sentence in split_sentences(text) {
                    for piece in split_long(&sentence) {
                        let spoken = normalize(&piece);
                        if !spoken.chars().any(char::is_alphanumeric) {
                            continue;
                        }
                        let text = piece.replace([SPELL_OPEN, SPELL_CLOSE], "");
                        chunks.push(Chunk {
                            text,
                            spoken,
                            pause_before_ms: std::mem::take(&mut pause_ms),
                        });
                    }
                }
            }
        }
    }
    chunks
}

// ---------------------------------------------------------------- markup

static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)<(/?)([A-Za-z][\w:-]*)([^>]*?)(/?)>").unwrap());
static ATTR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')"#).unwrap());

fn attr(attrs: &str, name: &str) -> Option<String> {
    ATTR.captures_iter(attrs)
        .find(|c| c[1].eq_ignore_ascii_case(name))
        .map(|c| {
            c.get(2)
                .or(c.get(3))
                .map_or(String::new(), |m| m.as_str().to_string())
        })
}

/// Replace the supported SSML tags by markers, drop the others, decode entities.
fn parse_markup(input: &str) -> String {
    if !input.contains('<') {
        return decode_entities(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    // A `<sub alias>` hides its content until `</sub>`.
    let mut hide_until_close: Option<String> = None;
    // Open `<say-as>` tags: true for those that spell their content.
    let mut say_as: Vec<bool> = Vec::new();
    for cap in TAG.captures_iter(input) {
        let whole = cap.get(0).unwrap();
        if hide_until_close.is_none() {
            out.push_str(&decode_entities(&input[last..whole.start()]));
        }
        last = whole.end();
        let closing = !cap[1].is_empty();
        let name = cap[2].to_ascii_lowercase();
        let attrs = &cap[3];
        if let Some(hidden) = &hide_until_close {
            if closing && *hidden == name {
                hide_until_close = None;
            }
            continue;
        }
        match (name.as_str(), closing) {
            ("say-as", false) => {
                let how = attr(attrs, "interpret-as")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let spells = matches!(
                    how.as_str(),
                    "digits" | "characters" | "spell-out" | "telephone" | "verbatim"
                );
                if spells {
                    out.push(SPELL_OPEN);
                }
                say_as.push(spells);
            }
            ("say-as", true) => {
                let was_spelling = say_as.pop() == Some(true);
                if was_spelling {
                    out.push(SPELL_CLOSE);
                }
            }
            ("sub", false) => {
                if let Some(alias) = attr(attrs, "alias") {
                    out.push_str(&decode_entities(&alias));
                    hide_until_close = Some(name);
                }
            }
            ("break", _) => {
                let ms = attr(attrs, "time")
                    .and_then(|t| parse_duration_ms(&t))
                    .unwrap_or_else(|| match attr(attrs, "strength").as_deref() {
                        Some("none") => 0,
                        Some("x-weak") | Some("weak") => 150,
                        Some("x-strong") => 1000,
                        Some("strong") => 700,
                        _ => 400,
                    });
                out.push_str(&format!("{BREAK_OPEN}{ms}{BREAK_CLOSE}"));
            }
            // Paragraphs and sentences end a sentence.
            ("p" | "s", true) => out.push('\n'),
            _ => {}
        }
    }
    if hide_until_close.is_none() {
        out.push_str(&decode_entities(&input[last..]));
    }
    out
}

fn parse_duration_ms(t: &str) -> Option<u32> {
    let t = t.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = t.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = number.trim().parse().ok()?;
    // SSML caps breaks at 10 s; so do we.
    Some((v * scale).clamp(0.0, 10_000.0) as u32)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

enum Part<'a> {
    Text(&'a str),
    Pause(u32),
}

fn split_breaks(s: &str) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find(BREAK_OPEN) {
        parts.push(Part::Text(&rest[..open]));
        let after = &rest[open + BREAK_OPEN.len_utf8()..];
        let close = after.find(BREAK_CLOSE).unwrap_or(after.len());
        parts.push(Part::Pause(after[..close].parse().unwrap_or(0)));
        rest = after.get(close + BREAK_CLOSE.len_utf8()..).unwrap_or("");
    }
    parts.push(Part::Text(rest));
    parts
}

// ---------------------------------------------------------------- sentences

/// Abbreviations after which a period does not end the sentence, even before
/// a capital letter (titles and similar come before a name).
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr", "dept", "ext", "tel", "apt", "fig",
];
/// Abbreviations after which a period ends the sentence only when a capital
/// letter follows ("open 9 a.m. Call us" vs "9 a.m. to 5 p.m.").
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "etc", "a.m", "p.m", "inc", "ltd", "co", "corp", "ave", "blvd", "rd", "jan",
    "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue",
    "tues", "wed", "thu", "thurs", "fri", "sat", "sun", "min", "hr", "hrs", "approx", "est", "u.s",
    "no", "vs",
];

/// Split into sentences at `.?!;` followed by a space (or the end) and at line
/// breaks; the punctuation stays with its sentence.
pub fn split_sentences(text: &str) -> Vec<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut spelled = false;
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        match c {
            SPELL_OPEN => spelled = true,
            SPELL_CLOSE => spelled = false,
            _ => {}
        }
        let mut end = None;
        if c == '\n' {
            end = Some(at);
        } else if !spelled && matches!(c, '.' | '?' | '!' | ';' | '…') {
            // Take the whole run of closing punctuation and quotes: "?!", '."', "...".
            let mut j = i + 1;
            while j < chars.len()
                && matches!(
                    chars[j].1,
                    '.' | '?' | '!' | '"' | '\'' | ')' | '”' | '’' | '…'
                )
            {
                j += 1;
            }
            let at_space_or_end = j == chars.len() || chars[j].1.is_whitespace();
            if at_space_or_end
                && !(c == '.' && j == i + 1 && period_is_not_an_end(text, &chars, i, j))
            {
                end = Some(chars.get(j).map_or(text.len(), |&(p, _)| p));
                i = j - 1;
            }
        }
        if let Some(end) = end {
            push_trimmed(&mut sentences, &text[start..end]);
            start = end;
        }
        i += 1;
    }
    push_trimmed(&mut sentences, &text[start..]);
    sentences
}

fn push_trimmed(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
}

/// Is the single period at `chars[i]` part of an abbreviation or an initial?
fn period_is_not_an_end(text: &str, chars: &[(usize, char)], i: usize, next: usize) -> bool {
    let word_start = text[..chars[i].0]
        .rfind(|c: char| c.is_whitespace() || c == '(')
        .map_or(0, |p| p + 1);
    let word = text[word_start..chars[i].0].to_lowercase();
    let word = word.trim_start_matches(['"', '\'']);
    let next_is_capital = chars[next..]
        .iter()
        .find(|(_, c)| !c.is_whitespace())
        .is_some_and(|(_, c)| c.is_uppercase());
    if TITLES.contains(&word) {
        return true;
    }
    // A single capital letter is an initial ("J. Smith").
    let mut letters = word.chars();
    if let (Some(l), None) = (letters.next(), letters.next()) {
        if l.is_alphabetic() && text[word_start..].starts_with(l.to_ascii_uppercase()) {
            return true;
        }
    }
    ABBREVIATIONS.contains(&word) && !next_is_capital
}

/// Cut an over-long sentence at clause punctuation so no chunk takes long to
/// synthesise (first-audio latency follows the first chunk's length).
fn split_long(sentence: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = sentence.trim();
    while rest.chars().count() > MAX_CHUNK_CHARS {
        let limit = rest
            .char_indices()
            .nth(MAX_CHUNK_CHARS)
            .map_or(rest.len(), |(p, _)| p);
        let cut = rest[..limit]
            .rmatch_indices([',', ':', '—', '–'])
            .map(|(p, m)| p + m.len())
            .find(|&p| {
                p > limit / 3
                    && rest[p..].starts_with(char::is_whitespace)
                    && !inside_spell(&rest[..p])
            })
            .or_else(|| {
                rest[..limit]
                    .rfind(' ')
                    .filter(|&p| p > limit / 2 && !inside_spell(&rest[..p]))
            });
        let Some(cut) = cut else { break };
        out.push(rest[..cut].trim().to_string());
        rest = rest[cut..].trim();
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

fn inside_spell(prefix: &str) -> bool {
    prefix
        .rfind([SPELL_OPEN, SPELL_CLOSE])
        .is_some_and(|p| prefix[p..].starts_with(SPELL_OPEN))
}

// ---------------------------------------------------------------- normalisation

static SPELL_SPAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("\u{E000}([^\u{E001}]*)\u{E001}?").unwrap());
static MARKDOWN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(?:#{1,6}|[-*•·])\s+|\*+|`+|~~|_{2,}|\|").unwrap());
static TIME_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(\d{1,2}(?::\d{2})?\s*(?:[ap]\.?\s?m\b\.?)?)\s*(?:-|–|—|to|until|till)\s*(\d{1,2}(?::\d{2})?\s*(?:[ap]\.?\s?m\b\.?)?)").unwrap()
});
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(\d{1,2}):(\d{2})\b(?:\s*([ap])\.?\s?m\b(\.)?)?").unwrap());
static HOUR_AMPM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(\d{1,2})\s*([ap])\.?\s?m\b(\.)?").unwrap());
static DAY: &str = r"(Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)";
static DAY_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"\b{DAY}\b\.?\s*(-|–|—|/|&|to|through|thru|and)\s*\b{DAY}\b"
    ))
    .unwrap()
});
static DAY_BEFORE_HOURS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\b{DAY}\b\.?(\s*[:,]?\s*\d)")).unwrap());
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\b(?:\s*(thousand|million|billion|k|m|bn)\b)?").unwrap()
});
static NUMBER_SIGN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"#\s?(\d+)\b").unwrap());
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b").unwrap()
});
/// A number as written, with a currency sign before it if any.
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([$€£]\s?)?\d+(?:[.,]\d+)*").unwrap());
static FRACTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(1/2|1/3|2/3|1/4|3/4|24/7)\b").unwrap());
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").unwrap());

/// Rewrite one chunk so espeak-ng reads it the way a person would.
pub fn normalize(sentence: &str) -> String {
    // Spans the markup asked to spell, first: nothing below may touch them.
    let mut spelled_spans = Vec::new();
    let s = SPELL_SPAN.replace_all(sentence, |c: &Captures| {
        spelled_spans.push(spell(&c[1]));
        format!("\u{E004}{}\u{E005}", spelled_spans.len() - 1)
    });
    let s = MARKDOWN.replace_all(&s, " ");
    let s = drop_symbols(&s);
    let s = PHONE.replace_all(&s, |c: &Captures| spell(&c[0]));
    let s = NUMBER_SIGN.replace_all(&s, |c: &Captures| {
        let digits = &c[1];
        format!(
            "number {}",
            if digits.len() >= 3 {
                spell(digits)
            } else {
                digits.to_string()
            }
        )
    });
    // Five or more bare digits are a code (order, account, PIN), not a quantity:
    // quantities that large are written with separators ("12,500").
    let s = NUMBER.replace_all(&s, |c: &Captures| {
        let n = &c[0];
        if c.get(1).is_none() && n.len() >= 5 && n.bytes().all(|b| b.is_ascii_digit()) {
            spell(n)
        } else {
            n.to_string()
        }
    });
    let s = MONEY.replace_all(&s, |c: &Captures| money(c));
    let s = DAY_RANGE.replace_all(&s, |c: &Captures| {
        let joiner = if matches!(&c[2], "/" | "&" | "and") {
            "and"
        } else {
            "to"
        };
        format!("{} {joiner} {}", day_name(&c[1]), day_name(&c[3]))
    });
    let s =
        DAY_BEFORE_HOURS.replace_all(&s, |c: &Captures| format!("{}{}", day_name(&c[1]), &c[2]));
    let s = TIME_RANGE.replace_all(&s, |c: &Captures| {
        let is_time = |t: &str| t.contains(':') || t.to_ascii_lowercase().contains('m');
        if is_time(&c[1]) || is_time(&c[2]) {
            format!("{} to {}", c[1].trim(), c[2].trim())
        } else {
            c[0].to_string()
        }
    });
    let end = s.len();
    let s = TIME.replace_all(&s, |c: &Captures| {
        format!("{}{}", time(c), final_period(c, 4, end))
    });
    let end = s.len();
    let s = HOUR_AMPM.replace_all(&s, |c: &Captures| {
        format!(
            "{} {}M{}",
            &c[1],
            c[2].to_ascii_uppercase(),
            final_period(c, 3, end)
        )
    });
    let s = FRACTION.replace_all(&s, |c: &Captures| {
        match &c[1] {
            "1/2" => "one half",
            "1/3" => "one third",
            "2/3" => "two thirds",
            "1/4" => "one quarter",
            "3/4" => "three quarters",
            _ => "twenty-four seven",
        }
        .to_string()
    });
    let mut s = SPACES.replace_all(&s, " ").trim().to_string();
    for (i, spelled) in spelled_spans.iter().enumerate() {
        s = s.replace(&format!("\u{E004}{i}\u{E005}"), spelled);
    }
    s
}

/// "a.m." swallows its period; give it back when it ended the sentence, so the
/// intonation still falls at the end.
fn final_period(c: &Captures, group: usize, haystack_len: usize) -> &'static str {
    match c.get(group) {
        Some(_) if c.get(0).unwrap().end() == haystack_len => ".",
        _ => "",
    }
}

/// Spell a code digit by digit and letter by letter, in groups of about three
/// with a comma between groups so a caller can write it down.
pub fn spell(code: &str) -> String {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<char> = Vec::new();
    let flush = |current: &mut Vec<char>, groups: &mut Vec<Vec<String>>| {
        if current.is_empty() {
            return;
        }
        for run in group_lengths(current.len()).into_iter().scan(0, |at, len| {
            let run = current[*at..*at + len].to_vec();
            *at += len;
            Some(run)
        }) {
            groups.push(run.iter().map(|&c| spoken_char(c)).collect());
        }
        current.clear();
    };
    for c in code.chars() {
        if c.is_alphanumeric() {
            current.push(c);
        } else {
            flush(&mut current, &mut groups);
        }
    }
    flush(&mut current, &mut groups);
    groups
        .iter()
        .map(|g| g.join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Split a run of characters into groups of 3, ending with a 4 rather than a
/// lone 1 (10 digits read 3-3-4, like a phone number).
fn group_lengths(n: usize) -> Vec<usize> {
    if n <= 4 {
        return vec![n];
    }
    let mut lengths = vec![3; n / 3];
    match n % 3 {
        0 => {}
        1 => *lengths.last_mut().unwrap() = 4,
        _ => lengths.push(2),
    }
    lengths
}

fn spoken_char(c: char) -> String {
    match c {
        // A lone "A" reads as the article; "eigh" reads as the letter name.
        'a' | 'A' => "eigh".to_string(),
        c if c.is_ascii_digit() => c.to_string(),
        c => c.to_uppercase().to_string(),
    }
}

fn day_name(abbrev: &str) -> &'static str {
    match abbrev {
        "Mon" => "Monday",
        "Tue" | "Tues" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" | "Thur" | "Thurs" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    }
}

/// "9:00" -> "9 o'clock", "9:05" -> "9 oh 5", "17:30" -> "5 30 PM", "9:00 am" -> "9 AM".
fn time(c: &Captures) -> String {
    let hour: u32 = c[1].parse().unwrap_or(0);
    let minute: u32 = c[2].parse().unwrap_or(0);
    if hour > 24 || minute > 59 {
        // Not a clock time (a score, a ratio): read the numbers.
        return format!("{} {}", &c[1], &c[2]);
    }
    let (hour, suffix) = match c.get(3).map(|m| m.as_str().to_ascii_uppercase()) {
        Some(ap) => (hour, Some(format!("{ap}M"))),
        None if hour == 0 || hour == 24 => (12, Some("AM".to_string())),
        None if hour > 12 => (hour - 12, Some("PM".to_string())),
        None => (hour, None),
    };
    let minutes = match minute {
        0 if suffix.is_none() => " o'clock".to_string(),
        0 => String::new(),
        1..=9 => format!(" oh {minute}"),
        _ => format!(" {minute}"),
    };
    match suffix {
        Some(suffix) => format!("{hour}{minutes} {suffix}"),
        None => format!("{hour}{minutes}"),
    }
}

/// "$5.99" -> "5 dollars and 99 cents", "$1" -> "1 dollar", "$0.50" -> "50 cents".
fn money(c: &Captures) -> String {
    let (unit, units, sub, subs) = match &c[1] {
        "$" => ("dollar", "dollars", "cent", "cents"),
        "€" => ("euro", "euros", "cent", "cents"),
        _ => ("pound", "pounds", "penny", "pence"),
    };
    let whole = c[2].trim_end_matches(',').replace(',', "");
    let fraction = c.get(3).map(|m| m.as_str());
    if let Some(scale) = c.get(4) {
        let scale = match scale.as_str().to_ascii_lowercase().as_str() {
            "k" => "thousand".to_string(),
            "m" => "million".to_string(),
            "bn" => "billion".to_string(),
            other => other.to_string(),
        };
        let number = fraction.map_or(whole.clone(), |f| format!("{whole}.{f}"));
        return format!("{number} {scale} {units}");
    }
    let whole_n: u64 = whole.parse().unwrap_or(0);
    let cents: u64 = fraction.map_or(0, |f| {
        if f.len() == 1 {
            f.parse::<u64>().unwrap_or(0) * 10
        } else {
            f.parse().unwrap_or(0)
        }
    });
    let whole_part = format!("{whole} {}", if whole_n == 1 { unit } else { units });
    let cents_part = format!("{cents} {}", if cents == 1 { sub } else { subs });
    match (whole_n, cents) {
        (_, 0) => whole_part,
        (0, _) => cents_part,
        _ => format!("{whole_part} and {cents_part}"),
    }
}

/// Drop what espeak-ng would read out loud but nobody wants to hear: emoji,
/// arrows, box drawing, control characters.
fn drop_symbols(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if c.is_control() && c != '\n' => ' ',
            '\u{2190}'..='\u{21FF}'   // arrows
            | '\u{2500}'..='\u{27BF}' // box drawing, shapes, dingbats
            | '\u{2B00}'..='\u{2BFF}'
            | '\u{1F000}'..='\u{1FAFF}' // emoji
            | '\u{FE0F}' | '\u{200D}' | '^' | '\\' | '{' | '}' | '[' | ']' | '<' | '>' => ' ',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spoken(s: &str) -> Vec<String> {
        plan(s).into_iter().map(|c| c.spoken).collect()
    }

    #[test]
    fn sentences_split_at_ends_but_not_at_abbreviations_or_decimals() {
        let s = split_sentences(
            "Dr. Smith is in. Rates rose 3.5 percent! Really? Yes; e.g. this one. Call J. Doe now.",
        );
        assert_eq!(
            s,
            [
                "Dr. Smith is in.",
                "Rates rose 3.5 percent!",
                "Really?",
                "Yes;",
                "e.g. this one.",
                "Call J. Doe now."
            ]
        );
        assert_eq!(
            split_sentences("We open at 9 a.m. Call us then."),
            ["We open at 9 a.m.", "Call us then."]
        );
        assert_eq!(
            split_sentences("From 9 a.m. to 5 p.m. daily."),
            ["From 9 a.m. to 5 p.m. daily."]
        );
        assert_eq!(
            split_sentences("Wait... \"Done.\" Next\nline"),
            ["Wait...", "\"Done.\"", "Next", "line"]
        );
    }

    #[test]
    fn long_sentences_are_cut_at_commas() {
        let long = "Our store on Main Street is open every weekday from nine in the morning until five in the evening, \
                    and on Saturdays we open a little later, at ten, and close at four in the afternoon for inventory.";
        let parts = split_long(long);
        assert!(parts.len() >= 2, "{parts:?}");
        assert!(
            parts.iter().all(|p| p.chars().count() <= MAX_CHUNK_CHARS),
            "{parts:?}"
        );
        assert_eq!(parts.join(" "), long);
    }

    #[test]
    fn times_days_and_ranges_read_naturally() {
        assert_eq!(
            normalize("We open Mon-Fri 9:00-17:30."),
            "We open Monday to Friday 9 o'clock to 5 30 PM."
        );
        assert_eq!(normalize("Sat 10am-2pm"), "Saturday 10 AM to 2 PM");
        assert_eq!(normalize("at 10:05 a.m. sharp"), "at 10 oh 5 AM sharp");
        assert_eq!(normalize("Sat/Sun closed"), "Saturday and Sunday closed");
        assert_eq!(normalize("The score was 3-4."), "The score was 3-4.");
    }

    #[test]
    fn money_codes_and_phone_numbers_are_spoken_not_garbled() {
        assert_eq!(
            normalize("It costs $5.99 or $1."),
            "It costs 5 dollars and 99 cents or 1 dollar."
        );
        assert_eq!(
            normalize("Only €0.50, or $1.5 million."),
            "Only 50 cents, or 1.5 million dollars."
        );
        assert_eq!(
            normalize("That is $12,500, then."),
            "That is 12500 dollars, then."
        );
        assert_eq!(
            normalize("Ticket #42 and #123."),
            "Ticket number 42 and number 1 2 3."
        );
        assert_eq!(normalize("We open at 9 a.m."), "We open at 9 AM.");
        assert_eq!(
            normalize("From 9 a.m. to 5 p.m. daily"),
            "From 9 AM to 5 PM daily"
        );
        assert_eq!(
            normalize("Order #1234567 shipped."),
            "Order number 1 2 3, 4 5 6 7 shipped."
        );
        assert_eq!(normalize("Your code is 48213."), "Your code is 4 8 2, 1 3.");
        assert_eq!(
            normalize("Call 555-123-4567."),
            "Call 5 5 5, 1 2 3, 4 5 6 7."
        );
        assert_eq!(
            normalize("In 2024 we sold 1,234,567 units."),
            "In 2024 we sold 1,234,567 units."
        );
        assert_eq!(
            normalize("We are here 24/7 at 1/2 price."),
            "We are here twenty-four seven at one half price."
        );
    }

    #[test]
    fn markdown_and_emoji_are_dropped() {
        assert_eq!(
            normalize("**Hours:** open 👍 now → `ok`"),
            "Hours: open now ok"
        );
        assert_eq!(
            spoken("- first item\n- second item"),
            ["first item", "second item"]
        );
    }

    #[test]
    fn ssml_subset_spells_substitutes_and_pauses() {
        let chunks = plan(
            r#"<speak>Your order <say-as interpret-as="digits">A1234</say-as> is ready.<break time="500ms"/>Call <sub alias="customer service">CS</sub> at <say-as interpret-as="telephone">555 0100</say-as>. Q&amp;A.</speak>"#,
        );
        let spoken: Vec<&str> = chunks.iter().map(|c| c.spoken.as_str()).collect();
        assert_eq!(
            spoken,
            [
                "Your order eigh 1 2, 3 4 is ready.",
                "Call customer service at 5 5 5, 0 1 0 0.",
                "Q&A."
            ]
        );
        assert_eq!(chunks[0].text, "Your order A1234 is ready.");
        assert_eq!(chunks[1].pause_before_ms, 500);
        assert_eq!(chunks[2].pause_before_ms, 0);
    }

    #[test]
    fn nothing_speakable_gives_no_chunks() {
        assert!(plan("").is_empty());
        assert!(plan(" ... !? 🙂 ").is_empty());
        assert_eq!(group_lengths(10), [3, 3, 4]);
        assert_eq!(group_lengths(8), [3, 3, 2]);
    }
}
