//! Finding the place in the flow from what another bot said: the cloud bot
//! that the bundle was synced from speaks the bundle's own prompts, so its
//! last words, transcribed, tell which state the conversation was in and
//! which question is pending (in-path takeover, docs/continuity.md).
//!
//! Every prompt that leaves the call in a known place is a candidate: each
//! state's `say` (together), its `reprompt`, each `collect` prompt and its
//! reprompts (with the slot being asked), and the `say` of transitions that
//! lead to a state. `{slot}` placeholders are left out of the comparison.
//! Matching is word by word and tolerates STT errors: two words are the same
//! when their normalized edit similarity is high, and the score is the
//! longest common subsequence over the candidate's words. The candidate must
//! explain the end of what the cloud said (its last prompt, not an earlier
//! one); when the cloud died mid-prompt, only the part up to where it was
//! cut must match.

use super::bot::Bot;
use super::bundle::Text;
use super::text;

/// The score a prompt must reach to place the call (0 to 1).
pub const MIN_SCORE: f32 = 0.6;
/// Words that must match: a short prompt ("Goodbye!") proves little.
pub const MIN_WORDS: usize = 3;
/// Words of the cloud's last utterance allowed after the matched prompt
/// (a word or two of STT noise at the end).
const MAX_TAIL: usize = 2;
/// Two words are the same when their normalized Levenshtein similarity
/// reaches this ("order" / "odor", "outfitters" / "outfitter").
const SAME_WORD: f64 = 0.7;

/// Where in the flow a prompt leaves the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Name of the state.
    pub state: String,
    /// The `collect` entry whose question is pending.
    pub collecting: Option<usize>,
}

/// The bundle prompt that matched the cloud's last words.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Where the matched prompt leaves the call.
    pub place: Place,
    /// Which kind of prompt matched (`say`, `reprompt`, `collect`, `collect_reprompt`, `transition`).
    pub kind: &'static str,
    /// How well it matched, 0 to 1 (matched words over the prompt's words).
    pub score: f32,
    /// The prompt's text, as the bundle has it.
    pub prompt: String,
}

/// What matching found.
#[derive(Debug, Clone)]
pub enum Located {
    /// A prompt matched well enough to place the call.
    Found(Placement),
    /// No prompt matched well enough; `why` says what was missing.
    Unknown {
        /// What fell short, for the log.
        why: String,
        /// The closest prompt, when one came near but fell short.
        best: Option<Placement>,
    },
}

struct Candidate {
    place: Place,
    kind: &'static str,
    prompt: String,
    words: Vec<String>,
}

/// The words of a prompt without its `{slot}` placeholders.
fn prompt_words(prompt: &str) -> Vec<String> {
    let mut plain = String::with_capacity(prompt.len());
    let mut depth = 0usize;
    for ch in prompt.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(ch),
            _ => plain.push(' '),
        }
    }
    transcript_words(&plain)
}

/// Words as compared: normalized, hesitations dropped.
fn transcript_words(said: &str) -> Vec<String> {
    text::words(said)
        .into_iter()
        .filter(|w| !text::is_filler(w))
        .collect()
}

fn same(a: &str, b: &str) -> bool {
    a == b || strsim::normalized_levenshtein(a, b) >= SAME_WORD
}

/// The fuzzy longest common subsequence of `said` and `prompt`: its length,
/// the index in `said` of its last word, and that of its last prompt word.
fn align(said: &[String], prompt: &[String]) -> (usize, usize, usize) {
    let (n, m) = (said.len(), prompt.len());
    // lcs[i][j] over said[..i], prompt[..j]
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in 1..=n {
        for j in 1..=m {
            lcs[i][j] = if same(&said[i - 1], &prompt[j - 1]) {
                lcs[i - 1][j - 1] + 1
            } else {
                lcs[i - 1][j].max(lcs[i][j - 1])
            };
        }
    }
    let best = lcs[n][m];
    if best == 0 {
        return (0, 0, 0);
    }
    // The longest alignment that ends latest in `said` (the cloud's last
    // prompt, not an earlier one), and of those the one that needs the
    // fewest prompt words (a prompt cut short).
    for e in (0..n).rev() {
        if let Some(j) = (0..m).find(|&j| lcs[e][j] + 1 == best && same(&said[e], &prompt[j])) {
            return (best, e, j);
        }
    }
    (best, n - 1, m - 1)
}

impl Bot {
    fn text_of(&self, texts: &[Text]) -> String {
        texts
            .iter()
            .map(|t| self.t(t))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Every prompt that leaves the call in a known place.
    fn candidates(&self) -> Vec<Candidate> {
        let mut out = vec![];
        let mut add = |place: Place, kind: &'static str, prompt: String| {
            let words = prompt_words(&prompt);
            if !words.is_empty() {
                out.push(Candidate {
                    place,
                    kind,
                    prompt,
                    words,
                });
            }
        };
        let at = |state: &str, collecting: Option<usize>| Place {
            state: state.to_string(),
            collecting,
        };
        for (name, state) in &self.bundle.flow.states {
            add(at(name, None), "say", self.text_of(&state.say.0));
            if let Some(r) = &state.reprompt {
                add(at(name, None), "reprompt", self.t(r).to_string());
            }
            for (i, c) in state.collect.iter().enumerate() {
                add(at(name, Some(i)), "collect", self.t(&c.prompt).to_string());
                for r in &c.reprompts {
                    add(at(name, Some(i)), "collect_reprompt", self.t(r).to_string());
                }
            }
        }
        let transitions = self
            .bundle
            .flow
            .states
            .values()
            .flat_map(|s| &s.transitions)
            .chain(&self.bundle.flow.global);
        for t in transitions {
            if let (Some(to), false) = (&t.to, t.say.0.is_empty()) {
                add(at(to, None), "transition", self.text_of(&t.say.0));
            }
        }
        out
    }

    /// Which state the cloud bot's last words (`said`, transcribed) leave
    /// the call in. `cut`: the cloud died while speaking, so its last prompt
    /// may be incomplete.
    pub fn locate(&self, said: &str, cut: bool) -> Located {
        let said_words = transcript_words(said);
        if said_words.is_empty() {
            return Located::Unknown {
                why: "the cloud bot's last words were empty in the transcript".into(),
                best: None,
            };
        }
        let mut best: Option<(Placement, usize, usize)> = None;
        for c in self.candidates() {
            let (matched, said_last, prompt_last) = align(&said_words, &c.words);
            // Too few words prove nothing, whatever their share.
            if matched < MIN_WORDS.min(c.words.len()).max(1) {
                continue;
            }
            let tail = said_words.len() - 1 - said_last;
            if tail > MAX_TAIL {
                // An earlier prompt: the cloud said more after it.
                continue;
            }
            // Cut mid-prompt: only the prompt's words up to the cut count.
            let expected = if cut { prompt_last + 1 } else { c.words.len() };
            let score = matched as f32 / expected.max(matched) as f32;
            let placement = Placement {
                place: c.place,
                kind: c.kind,
                score,
                prompt: c.prompt,
            };
            // Among prompts that place the call, the one that explains the
            // most words: cut short, the beginning of a short prompt ("You can
            // say ...") scores as well as most of the right one. Then the
            // higher score, then the tighter end.
            let rank = |score: f32, matched: usize, tail: usize| {
                let places = score >= MIN_SCORE && matched >= MIN_WORDS;
                let evidence = if places { matched } else { 0 };
                (places, evidence, score, matched, std::cmp::Reverse(tail))
            };
            let better = best
                .as_ref()
                .is_none_or(|(b, m, t)| rank(score, matched, tail) > rank(b.score, *m, *t));
            if better {
                best = Some((placement, matched, tail));
            }
        }
        match best {
            Some((p, matched, _)) if p.score >= MIN_SCORE && matched >= MIN_WORDS => {
                Located::Found(p)
            }
            Some((p, matched, _)) => Located::Unknown {
                why: format!(
                    "the closest prompt ({} of state {}) matched {matched} words, score {:.2}; needs {MIN_WORDS} words and {MIN_SCORE}",
                    p.kind, p.place.state, p.score
                ),
                best: Some(p),
            },
            None => Located::Unknown {
                why: "no prompt of the bundle ends the cloud bot's last words".into(),
                best: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::{Bundle, Nlu};

    async fn demo() -> Bot {
        Bot::load(Bundle::demo(), Nlu::default()).await.unwrap()
    }

    fn found(bot: &Bot, said: &str, cut: bool) -> Place {
        match bot.locate(said, cut) {
            Located::Found(p) => p.place,
            Located::Unknown { why, .. } => panic!("{said:?} not placed: {why}"),
        }
    }

    fn at(state: &str, collecting: Option<usize>) -> Place {
        Place {
            state: state.into(),
            collecting,
        }
    }

    #[tokio::test]
    async fn every_demo_prompt_places_the_call_even_with_stt_errors() {
        let bot = demo().await;
        // Transcripts as whisper tiny writes them, errors included.
        let cases = [
            ("Thanks for calling Understudy Outfitters. I can check on an order, help with returns or tell you our store hours. How can I help you today?", at("welcome", None)),
            ("Thanks for calling under study outfitters. I can check on an order, help with return, or tell you our store hours. How can I help you today?", at("welcome", None)),
            ("Sure, what's your order number? You can say it or key it in.", at("order_status", Some(0))),
            ("Sure. What's your order number? You can say it or kiss it in.", at("order_status", Some(0))),
            ("Sorry, I didn't get that. Your order number has five to eight digits and is in your confirmation email. Please say it or key it in.", at("order_status", Some(0))),
            ("Order 4-8-2-1-3 shipped on Monday and should arrive by Thursday. Is there anything else I can help you with?", at("anything_else", None)),
            ("You can ask about another order, returns or store hours or say goodbye.", at("anything_else", None)),
            ("You can say order status, returns or store hours, or press one, two or three. Press zero for an agent.", at("welcome", None)),
            ("Our stores are open Monday to Friday, 9 AM to 6 PM, and closed on Saturdays and Sundays.", at("store_hours", None)),
        ];
        for (said, place) in cases {
            assert_eq!(found(&bot, said, false), place, "{said:?}");
        }
    }

    #[tokio::test]
    async fn a_prompt_cut_short_is_placed_by_its_beginning() {
        let bot = demo().await;
        assert_eq!(
            found(&bot, "Sure. What's your order number? You can", true),
            at("order_status", Some(0))
        );
        // Misheard and cut: "you can say" is also how the welcome reprompt
        // begins (all of its words up to the cut match), but the order
        // question explains seven of the words, not three.
        assert_eq!(
            found(&bot, "So, what's your order? You can say it.", true),
            at("order_status", Some(0))
        );
        // Not cut: the same words are too little of the prompt.
        assert!(matches!(
            bot.locate("Sure. What's your", false),
            Located::Unknown { .. }
        ));
    }

    #[tokio::test]
    async fn the_last_prompt_counts_not_an_earlier_one() {
        let bot = demo().await;
        // The welcome, then the order question: the order question is pending.
        assert_eq!(
            found(
                &bot,
                "How can I help you today? Sure. What's your order number? You can say it or key it in.",
                false
            ),
            at("order_status", Some(0))
        );
    }

    #[tokio::test]
    async fn a_resumed_conversation_re_asks_in_one_sentence_and_takes_the_answer() {
        use crate::dialog::{Action, UserInput};
        let bot = demo().await;
        let (mut conv, turn) = bot.resume(&at("order_status", Some(0)));
        assert_eq!(turn.say, vec!["What's your order number?".to_string()]);
        assert_eq!(turn.listen.expecting_slot.as_deref(), Some("order_number"));
        let answer = bot
            .respond(&mut conv, UserInput::Text("It's 4 8 2 1 3.".into()))
            .await
            .unwrap();
        assert!(
            answer.text().contains("shipped on Monday"),
            "{}",
            answer.text()
        );
        assert_eq!(answer.state, "anything_else");

        let (_, turn) = bot.resume(&at("welcome", None));
        assert_eq!(turn.say, vec!["How can I help you today?".to_string()]);
        // A state that moves on by itself: its next question.
        let (conv, turn) = bot.resume(&at("store_hours", None));
        assert_eq!(conv.state(), "anything_else");
        assert_eq!(
            turn.say,
            vec!["Is there anything else I can help you with?".to_string()]
        );
        assert_eq!(turn.action, Action::Listen);
    }

    #[tokio::test]
    async fn words_the_bundle_never_says_are_not_placed() {
        let bot = demo().await;
        for said in [
            "Hello from the cloud. How can I help?",
            "Welcome to the weather line. Which city would you like?",
            "",
            "Goodbye!",
        ] {
            match bot.locate(said, false) {
                Located::Unknown { why, .. } => assert!(!why.is_empty()),
                Located::Found(p) => panic!("{said:?} placed at {p:?}"),
            }
        }
    }
}
