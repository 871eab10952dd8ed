//! Slot values: deterministic extraction per entity kind (digits in every
//! spoken form, list synonyms, regexes), keypad entry, LLM extraction under a
//! grammar as the second try, and speaking values back in prompts.

use super::bundle::Entity;
use super::text::{self, is_filler, words, NumberFolder};
use crate::engines::{ChatMessage, EngineError, GenerateRequest, LlmClient};
use regex::Regex;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// An entity compiled for one language.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// A digit string of `min` to `max` digits.
    Digits {
        /// Fewest digits.
        min: usize,
        /// Most digits.
        max: usize,
    },
    /// (synonym words, canonical value), longest synonyms first.
    List(Vec<(Vec<String>, String)>),
    /// A regular expression (group 1 if it has one).
    Regex(Regex),
    /// The whole utterance.
    Any,
}

impl Matcher {
    /// `entity` compiled for `lang`, with `default_lang`'s values where `lang` has none.
    pub fn new(entity: &Entity, lang: &str, default_lang: &str) -> Matcher {
        match entity {
            Entity::Digits {
                min_digits,
                max_digits,
            } => Matcher::Digits {
                min: *min_digits,
                max: *max_digits,
            },
            Entity::List { values } => {
                let values = values.get(lang, default_lang).cloned().unwrap_or_default();
                let mut synonyms: Vec<(Vec<String>, String)> = values
                    .iter()
                    .flat_map(|v| {
                        std::iter::once(&v.value)
                            .chain(&v.synonyms)
                            .map(|s| (words(s), v.value.clone()))
                    })
                    .filter(|(w, _)| !w.is_empty())
                    .collect();
                synonyms.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
                Matcher::List(synonyms)
            }
            // Validation rejects bad patterns; this one never matches.
            Entity::Regex { pattern } => {
                Matcher::Regex(Regex::new(pattern).unwrap_or_else(|_| Regex::new("$^").unwrap()))
            }
            Entity::Any => Matcher::Any,
        }
    }

    /// The value in a transcript, if the caller gave one.
    pub fn extract(&self, utterance: &str) -> Option<String> {
        match self {
            Matcher::Digits { min, max } => digit_runs(utterance)
                .into_iter()
                .find(|r| (*min..=*max).contains(&r.len())),
            Matcher::List(synonyms) => {
                let said = words(utterance);
                synonyms
                    .iter()
                    .find(|(syn, _)| contains_words(&said, syn).is_some())
                    .map(|(_, v)| v.clone())
            }
            Matcher::Regex(re) => re
                .captures(utterance)
                .map(|c| c.get(1).or(c.get(0)).unwrap().as_str().to_string()),
            Matcher::Any => Some(utterance.trim().to_string()).filter(|s| !s.is_empty()),
        }
    }

    /// The value in keyed digits (terminator already stripped).
    pub fn from_keys(&self, keys: &str) -> Option<String> {
        match self {
            Matcher::Digits { min, max } => (keys.chars().all(|c| c.is_ascii_digit())
                && (*min..=*max).contains(&keys.len()))
            .then(|| keys.into()),
            Matcher::List(synonyms) => synonyms
                .iter()
                .find(|(syn, _)| syn.len() == 1 && syn[0] == keys)
                .map(|(_, v)| v.clone()),
            Matcher::Regex(re) => re.is_match(keys).then(|| keys.to_string()),
            Matcher::Any => (!keys.is_empty()).then(|| keys.to_string()),
        }
    }

    /// A GBNF grammar allowing exactly the valid values or `none`; `None`
    /// where a grammar cannot express the entity (regex, free text).
    pub fn grammar(&self) -> Option<String> {
        match self {
            Matcher::Digits { min, max } => {
                Some(format!("root ::= \"none\" | [0-9]{{{min},{max}}}"))
            }
            Matcher::List(synonyms) => {
                let values: BTreeSet<&str> = synonyms.iter().map(|(_, v)| v.as_str()).collect();
                Some(gbnf_choice(values.into_iter().chain(["none"])))
            }
            Matcher::Regex(_) | Matcher::Any => None,
        }
    }

    /// Whether an LLM answer is worth asking for: a digits slot needs at
    /// least `min` digit-like words in the utterance, or the model would be
    /// invited to invent a number.
    fn worth_asking_llm(&self, utterance: &str) -> bool {
        match self {
            Matcher::Digits { min, .. } => numberish_count(utterance) >= *min,
            Matcher::List(_) => true,
            Matcher::Regex(_) | Matcher::Any => false,
        }
    }

    /// Check (and canonicalise) what the LLM returned.
    fn accept(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("none") || raw.is_empty() {
            return None;
        }
        match self {
            Matcher::Digits { .. } => self.from_keys(raw),
            Matcher::List(synonyms) => synonyms
                .iter()
                .find(|(_, v)| v == raw)
                .map(|(_, v)| v.clone()),
            Matcher::Regex(_) | Matcher::Any => None,
        }
    }

    /// Values of this kind are spoken digit by digit.
    pub fn speaks_digits(&self) -> bool {
        matches!(self, Matcher::Digits { .. })
    }
}

/// `root ::= "a" | "b"` with GBNF string escaping.
pub fn gbnf_choice<'a>(options: impl Iterator<Item = &'a str>) -> String {
    let alts: Vec<String> = options
        .map(|o| {
            format!(
                "\"{}\"",
                o.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', " ")
            )
        })
        .collect();
    format!("root ::= {}", alts.join(" | "))
}

/// Where `needle` occurs in `haystack` as consecutive words.
pub fn contains_words(haystack: &[String], needle: &[String]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split_sentences(text: &str) -> impl Iterator<Item = &str> {
    // A full stop inside "12.5" is not a sentence end; one before a space is.
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"[.!?;](\s|$)").unwrap())
        .split(text)
}

/// Every digit string a transcript holds, in order: "4 8 2 1 3", "48213",
/// "four eight two one three", "forty eight two thirteen", "four-eight-two",
/// "double five" ("55"), "oh" as zero inside a number. Digits separated only
/// by spaces, commas or dashes form one string; other words and sentence
/// ends separate strings.
pub fn digit_runs(text: &str) -> Vec<String> {
    let mut runs = vec![];
    for sentence in split_sentences(text) {
        let ws = words(sentence);
        let mut run = String::new();
        let mut folder = NumberFolder::default();
        let mut repeat = 1usize;
        let drain = |folder: &mut NumberFolder, run: &mut String| {
            for v in folder.drain() {
                run.push_str(&v.to_string());
            }
        };
        for (i, w) in ws.iter().enumerate() {
            let next_is_digit = ws.get(i + 1).is_some_and(|n| single_digit(n).is_some());
            if matches!(w.as_str(), "double" | "triple") && next_is_digit {
                drain(&mut folder, &mut run);
                repeat = if w == "double" { 2 } else { 3 };
            } else if let Some(d) = single_digit(w).filter(|_| repeat > 1) {
                run.push_str(&d.to_string().repeat(repeat));
                repeat = 1;
            } else if w.chars().all(|c| c.is_ascii_digit()) {
                drain(&mut folder, &mut run);
                run.push_str(w);
            } else if matches!(w.as_str(), "oh" | "o") && (!run.is_empty() || folder.is_open()) {
                drain(&mut folder, &mut run);
                run.push('0');
            } else if folder.push(w) || is_filler(w) {
            } else {
                drain(&mut folder, &mut run);
                if !run.is_empty() {
                    runs.push(std::mem::take(&mut run));
                }
            }
        }
        drain(&mut folder, &mut run);
        if !run.is_empty() {
            runs.push(run);
        }
    }
    runs
}

fn single_digit(w: &str) -> Option<u64> {
    match text::number_word(w) {
        Some(text::NumberWord::Unit(d)) => Some(d),
        _ if w.len() == 1 => w.parse().ok(),
        _ => None,
    }
}

/// Digits and number words in a transcript (how many digits it might carry).
fn numberish_count(text: &str) -> usize {
    words(text)
        .iter()
        .map(|w| {
            if w.chars().all(|c| c.is_ascii_digit()) {
                w.len()
            } else {
                usize::from(
                    text::number_word(w).is_some() || w == "oh" || w == "double" || w == "triple",
                )
            }
        })
        .sum()
}

/// Second try at a slot: ask the LLM, constrained to valid values or `none`.
/// `Ok(None)` when the caller did not give a value (or the entity kind cannot
/// be asked); `Err` when the engine failed.
pub async fn llm_extract(
    llm: &LlmClient,
    matcher: &Matcher,
    slot: &str,
    question: &str,
    utterance: &str,
) -> Result<Option<String>, EngineError> {
    let Some(grammar) = matcher.grammar() else {
        return Ok(None);
    };
    if !matcher.worth_asking_llm(utterance) {
        return Ok(None);
    }
    let choices = match matcher {
        Matcher::List(syn) => {
            let values: BTreeSet<&str> = syn.iter().map(|(_, v)| v.as_str()).collect();
            format!(
                " Possible values: {}.",
                values.into_iter().collect::<Vec<_>>().join(", ")
            )
        }
        _ => " Write digits only.".into(),
    };
    let system = format!(
        "A phone bot asked the caller: \"{question}\"\nExtract the {slot} from the caller's reply.{choices} If the reply does not contain it, answer none."
    );
    let generated = llm
        .generate(GenerateRequest {
            messages: vec![
                ChatMessage::new("system", system),
                ChatMessage::new("user", utterance),
            ],
            max_tokens: 24,
            temperature: 0.0,
            grammar: Some(grammar),
            stop: vec!["\n".into()],
        })
        .await?;
    let value = matcher.accept(&generated.text);
    tracing::debug!(slot, raw = %generated.text, ?value, "llm slot extraction");
    Ok(value)
}

/// The canonical lookup key for a value (digits keep digits, text is normalised).
pub fn lookup_key(value: &str) -> String {
    text::normalize(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(text: &str) -> Option<String> {
        Matcher::Digits { min: 5, max: 8 }.extract(text)
    }

    #[test]
    fn order_numbers_in_every_spoken_form() {
        assert_eq!(digits("48213").as_deref(), Some("48213"));
        assert_eq!(digits("It's 4 8 2 1 3.").as_deref(), Some("48213"));
        assert_eq!(digits("four eight two one three").as_deref(), Some("48213"));
        assert_eq!(digits("Four-eight-two-one-three").as_deref(), Some("48213"));
        assert_eq!(digits("4-8-2-1-3").as_deref(), Some("48213"));
        assert_eq!(digits("4, 8, 2, 1, 3").as_deref(), Some("48213"));
        assert_eq!(digits("forty eight two thirteen").as_deref(), Some("48213"));
        assert_eq!(
            digits("forty eight thousand two hundred thirteen").as_deref(),
            Some("48213")
        );
        assert_eq!(
            digits("um it's four eight uh two one three").as_deref(),
            Some("48213")
        );
        assert_eq!(
            digits("five double five seven one").as_deref(),
            Some("55571")
        );
        assert_eq!(digits("seven oh oh three one").as_deref(), Some("70031"));
        assert_eq!(
            digits("my order is 4821 3 thanks").as_deref(),
            Some("48213")
        );
    }

    #[test]
    fn digits_need_the_right_length_and_stay_apart_across_words() {
        assert_eq!(digits("I have one order"), None);
        assert_eq!(digits("1 2 3"), None);
        assert_eq!(digits("123456789"), None);
        // "oh" leading a sentence is an interjection, not a zero.
        assert_eq!(digits("Oh, it's 48213").as_deref(), Some("48213"));
        // The first run that fits wins; a sentence end separates runs.
        assert_eq!(
            digits("My order is 48213. My zip is 90210.").as_deref(),
            Some("48213")
        );
        assert_eq!(
            digits("I bought two things, order 1234567").as_deref(),
            Some("1234567")
        );
        assert_eq!(digit_runs("I bought two things"), ["2"]);
    }

    #[test]
    fn keypad_entry_fills_digit_slots_of_the_right_length() {
        let m = Matcher::Digits { min: 5, max: 8 };
        assert_eq!(m.from_keys("48213").as_deref(), Some("48213"));
        assert_eq!(m.from_keys("0"), None);
        assert_eq!(m.from_keys("48*13"), None);
    }

    #[test]
    fn list_values_match_synonyms_longest_first() {
        let entity: Entity = serde_norway::from_str(
            "kind: list\nvalues: [small, {value: large, synonyms: [big, extra large]}, {value: xl, synonyms: [extra extra large]}]",
        )
        .unwrap();
        let m = Matcher::new(&entity, "en", "en");
        assert_eq!(m.extract("the big one please").as_deref(), Some("large"));
        assert_eq!(m.extract("Extra extra large!").as_deref(), Some("xl"));
        assert_eq!(m.extract("small").as_deref(), Some("small"));
        assert_eq!(m.extract("medium"), None);
        assert_eq!(
            m.grammar().unwrap(),
            r#"root ::= "large" | "small" | "xl" | "none""#
        );
    }

    #[test]
    fn regex_entities_take_group_one() {
        let m = Matcher::Regex(Regex::new(r"(?i)\b([A-Z]{2}\d{4})\b").unwrap());
        assert_eq!(m.extract("it's ab1234 I think").as_deref(), Some("ab1234"));
    }

    #[test]
    fn llm_answers_are_checked() {
        let m = Matcher::Digits { min: 5, max: 8 };
        assert_eq!(m.accept("none"), None);
        assert_eq!(m.accept("123"), None);
        assert_eq!(m.accept(" 48213 ").as_deref(), Some("48213"));
        assert!(!m.worth_asking_llm("I don't know my order number"));
        assert!(m.worth_asking_llm("it's four eight two one three I think"));
        assert_eq!(m.grammar().unwrap(), r#"root ::= "none" | [0-9]{5,8}"#);
    }
}
