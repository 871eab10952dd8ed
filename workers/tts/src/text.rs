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
mod markup;
mod speakable;
use markup::*;
use speakable::*;

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

#[cfg(test)]
mod tests;
