//! Written forms a voice would misread, spelled out: times and day ranges,
//! money, phone and order numbers, codes read character by character.

use super::*;

pub(super) static SPELL_SPAN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("\u{E000}([^\u{E001}]*)\u{E001}?").unwrap());
pub(super) static MARKDOWN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*(?:#{1,6}|[-*•·])\s+|\*+|`+|~~|_{2,}|\|").unwrap());
pub(super) static TIME_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(\d{1,2}(?::\d{2})?\s*(?:[ap]\.?\s?m\b\.?)?)\s*(?:-|–|—|to|until|till)\s*(\d{1,2}(?::\d{2})?\s*(?:[ap]\.?\s?m\b\.?)?)").unwrap()
});
pub(super) static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(\d{1,2}):(\d{2})\b(?:\s*([ap])\.?\s?m\b(\.)?)?").unwrap());
pub(super) static HOUR_AMPM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(\d{1,2})\s*([ap])\.?\s?m\b(\.)?").unwrap());
pub(super) static DAY: &str = r"(Mon|Tue|Tues|Wed|Thu|Thur|Thurs|Fri|Sat|Sun)";
pub(super) static DAY_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"\b{DAY}\b\.?\s*(-|–|—|/|&|to|through|thru|and)\s*\b{DAY}\b"
    ))
    .unwrap()
});
pub(super) static DAY_BEFORE_HOURS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"\b{DAY}\b\.?(\s*[:,]?\s*\d)")).unwrap());
pub(super) static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\b(?:\s*(thousand|million|billion|k|m|bn)\b)?").unwrap()
});
pub(super) static NUMBER_SIGN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#\s?(\d+)\b").unwrap());
pub(super) static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{3}\)\s?|\b\d{3}[\s.-])\d{3}[\s.-]\d{4}\b").unwrap()
});
/// A number as written, with a currency sign before it if any.
pub(super) static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([$€£]\s?)?\d+(?:[.,]\d+)*").unwrap());
pub(super) static FRACTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(1/2|1/3|2/3|1/4|3/4|24/7)\b").unwrap());
pub(super) static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").unwrap());

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
pub(super) fn final_period(c: &Captures, group: usize, haystack_len: usize) -> &'static str {
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
pub(super) fn group_lengths(n: usize) -> Vec<usize> {
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

pub(super) fn spoken_char(c: char) -> String {
    match c {
        // A lone "A" reads as the article; "eigh" reads as the letter name.
        'a' | 'A' => "eigh".to_string(),
        c if c.is_ascii_digit() => c.to_string(),
        c => c.to_uppercase().to_string(),
    }
}

pub(super) fn day_name(abbrev: &str) -> &'static str {
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
pub(super) fn time(c: &Captures) -> String {
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
pub(super) fn money(c: &Captures) -> String {
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
pub(super) fn drop_symbols(s: &str) -> String {
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
