//! Confirm when in doubt, and short answers to a list: what a good human
//! agent does with a request they half understood ("Just to check: is that
//! about a return?") and with "the second one" after a menu of options.
//!
//! The flow ([`super::flow`]) asks when no recognition stage accepted an
//! intent but one is close (`settings.confirm`); this module reads the
//! caller's answer to that question, and the ordinal answers to a prompt that
//! listed options.

use super::text::{content_words, normalize, words, yes_or_no};

/// A confirmation question waiting for its answer.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The intents asked about: one (yes/no) or two (a choice), best first.
    pub intents: Vec<String>,
    /// What the caller said that raised the question (its slot values are
    /// taken once the intent is confirmed: "about order 48213").
    pub utterance: String,
}

/// How the caller answered a confirmation question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// They chose this candidate (by yes, an ordinal or its topic's words).
    Chose(usize),
    /// A plain no: none of the candidates.
    No,
    /// Something else: a new request, to be recognised as usual.
    Other,
}

/// Read the answer to a question about `topics` (one: yes/no; two: a
/// choice), each topic the short noun phrase that was asked about.
pub fn answer(text: &str, topics: &[String]) -> Answer {
    let said = words(text);
    // "The second one" / "the last one" picks from a choice.
    let last = topics.len().saturating_sub(1);
    let position = ordinal(text).map(|i| if i == usize::MAX { last } else { i });
    if let Some(i) = position.filter(|&i| i < topics.len() && topics.len() > 1) {
        return Answer::Chose(i);
    }
    // The topic's own words ("the order one", "a return"), when only one matches.
    let said_content: Vec<String> = content_words(text);
    let matching: Vec<usize> = (0..topics.len())
        .filter(|&i| {
            content_words(&topics[i])
                .iter()
                .any(|w| said_content.contains(w))
        })
        .collect();
    if topics.len() > 1 && matching.len() == 1 {
        return Answer::Chose(matching[0]);
    }
    match yes_or_no(text) {
        // "Yes" settles a yes/no question, not a choice; "yes, and how late
        // are you open?" goes on to a new request.
        Some(true) if topics.len() == 1 && said.len() <= 5 => Answer::Chose(0),
        // "No" alone (or with thanks) declines; "no, I want an agent" is a new request.
        Some(false) if said.len() <= 3 => Answer::No,
        _ if topics.len() == 1 && matching.len() == 1 && said.len() <= 4 => Answer::Chose(0),
        _ => Answer::Other,
    }
}

/// The option a short answer picks by position ("the second one", "number
/// two", "the last one"): 0-based, `usize::MAX` for "the last". Only for
/// short answers: in "I bought two jackets" "two" is not a choice.
pub fn ordinal(text: &str) -> Option<usize> {
    let said = words(text);
    if said.is_empty() || said.len() > 5 {
        return None;
    }
    let mut found = None;
    for (i, w) in said.iter().enumerate() {
        let position = match w.as_str() {
            "first" | "1st" | "former" => Some(0),
            "second" | "2nd" => Some(1),
            "third" | "3rd" => Some(2),
            "fourth" | "4th" => Some(3),
            "last" | "latter" => Some(usize::MAX),
            // "number two", "option 3"
            "one" | "two" | "three" | "four" | "1" | "2" | "3" | "4"
                if i > 0 && matches!(said[i - 1].as_str(), "number" | "option") =>
            {
                Some(match w.as_str() {
                    "one" | "1" => 0,
                    "two" | "2" => 1,
                    "three" | "3" => 2,
                    _ => 3,
                })
            }
            _ => None,
        };
        if position.is_some() {
            if found.is_some() {
                // "the first or the second": not a choice.
                return None;
            }
            found = position;
        }
    }
    found
}

/// The options a prompt lists ("I can check on an order, help with returns,
/// or tell you our store hours."): the parts of its last sentence that
/// lists them with "or": three or more, or two in a question or after a
/// comma ("..., or a return?"). "You can say it or key it in." lists none.
pub fn options(prompt: &str) -> Vec<String> {
    let sentences = prompt
        .split_inclusive(['.', '?', '!'])
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let mut found = vec![];
    for sentence in sentences {
        let body = sentence.trim_end_matches(['.', '?', '!']);
        let Some((head, last)) = body.rsplit_once(" or ") else {
            continue;
        };
        // "order status, returns or store hours, or press 1": each part.
        let mut items: Vec<String> = head
            .split(',')
            .flat_map(|s| s.split(" or "))
            .map(|s| s.trim().trim_start_matches("or ").trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        items.push(last.trim().to_string());
        let listed = items.len() >= 3 || sentence.ends_with('?') || head.ends_with(',');
        if listed && items.len() >= 2 && items.iter().all(|i| !normalize(i).is_empty()) {
            found = items;
        }
    }
    found
}

/// The option `position` (from [`ordinal`]) of `options`, if there is one.
pub fn pick(options: &[String], position: usize) -> Option<&String> {
    match position {
        usize::MAX => options.last(),
        i => options.get(i),
    }
}

/// The question to ask about `first` (and `second`, a choice): `template`
/// with `{first}` and `{second}` replaced.
pub fn question(template: &str, first: &str, second: Option<&str>) -> String {
    let q = template.replace("{first}", first);
    match second {
        Some(s) => q.replace("{second}", s),
        None => q,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn yes_and_no_answer_a_yes_no_question() {
        let one = topics(&["a return"]);
        assert_eq!(answer("Yes.", &one), Answer::Chose(0));
        assert_eq!(answer("yeah that's right", &one), Answer::Chose(0));
        assert_eq!(answer("Um, yes please", &one), Answer::Chose(0));
        assert_eq!(answer("No.", &one), Answer::No);
        assert_eq!(answer("no thanks", &one), Answer::No);
        assert_eq!(
            answer("No, I want to talk to a person", &one),
            Answer::Other
        );
        assert_eq!(answer("what time do you close", &one), Answer::Other);
        assert_eq!(answer("a return", &one), Answer::Chose(0));
        assert_eq!(
            answer(
                "Yes, one more thing, how late is the shop open today?",
                &one
            ),
            Answer::Other
        );
    }

    #[test]
    fn a_choice_is_answered_by_position_or_topic() {
        let two = topics(&["an order", "a return"]);
        assert_eq!(answer("The second one.", &two), Answer::Chose(1));
        assert_eq!(answer("the first", &two), Answer::Chose(0));
        assert_eq!(answer("the last one", &two), Answer::Chose(1));
        assert_eq!(answer("the third one", &two), Answer::Other);
        assert_eq!(answer("It's about the return.", &two), Answer::Chose(1));
        assert_eq!(answer("my order", &two), Answer::Chose(0));
        // A bare yes does not say which.
        assert_eq!(answer("yes", &two), Answer::Other);
        assert_eq!(answer("neither, no", &two), Answer::No);
    }

    #[test]
    fn ordinals_only_in_short_answers() {
        assert_eq!(ordinal("The second one."), Some(1));
        assert_eq!(ordinal("number three please"), Some(2));
        assert_eq!(ordinal("the last one"), Some(usize::MAX));
        assert_eq!(
            ordinal("I bought two jackets and the second one is torn"),
            None
        );
        assert_eq!(ordinal("the first or the second"), None);
        assert_eq!(ordinal("two"), None);
    }

    #[test]
    fn prompts_list_their_options() {
        let menu = "I can check on an order, help with returns, or tell you our store hours. How can I help you today?";
        assert_eq!(
            options(menu),
            [
                "I can check on an order",
                "help with returns",
                "tell you our store hours"
            ]
        );
        assert_eq!(
            pick(&options(menu), usize::MAX).map(String::as_str),
            Some("tell you our store hours")
        );
        assert_eq!(
            options("Is that about an order, or a return?"),
            ["Is that about an order", "a return"]
        );
        assert!(options("How can I help you today?").is_empty());
        assert!(options("You can say it or key it in.").is_empty());
        assert_eq!(
            options("You can say order status, returns or store hours, or press 1, 2 or 3."),
            [
                "You can say order status",
                "returns",
                "store hours",
                "press 1",
                "2",
                "3"
            ]
        );
        assert_eq!(
            options("Do you want small or large?"),
            ["Do you want small", "large"]
        );
    }

    #[test]
    fn questions_name_the_topics() {
        assert_eq!(
            question(
                "Is that about {first}, or {second}?",
                "an order",
                Some("a return")
            ),
            "Is that about an order, or a return?"
        );
        assert_eq!(
            question("Is that about {first}?", "a return", None),
            "Is that about a return?"
        );
    }
}
