//! Grounded free-form answers: find the bundle facts relevant to a question,
//! let the LLM word a short answer from those facts only, and speak it only
//! if the guard finds every claim supported; otherwise speak the best fact.

use super::bundle::{Bundle, GuardFallback, KnowledgeSettings};
use super::guard::{self, Verdict};
use super::text::{content_words, cosine};
use crate::engines::{ChatMessage, EmbedClient, EngineError, GenerateRequest, LlmClient};
use crate::metrics;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// After this many LLM answers in a row ran past `knowledge.llm_budget_ms`,
/// the LLM is skipped (the best fact is said at once) except for every
/// [`RETRY_EVERY`]-th answer, which tries it again.
const OVERRUNS_TO_SKIP: u32 = 3;
/// See [`OVERRUNS_TO_SKIP`].
const RETRY_EVERY: u32 = 10;

/// The bundle's facts in one language, with their embeddings when the embed
/// engine is there (lexical overlap stands in otherwise).
pub struct Knowledge {
    facts: Vec<String>,
    words: Vec<BTreeSet<String>>,
    vectors: Vec<Vec<f32>>,
    /// For each fact, the intent whose own answer says the same (see
    /// [`Knowledge::assign_owners`]).
    owners: Vec<Option<String>>,
    /// LLM answers in a row that ran past their budget (a slow box: stop
    /// making callers wait for an answer that will not come in time).
    overruns: AtomicU32,
    /// Answers given since the LLM was last skipped for being slow.
    skipped: AtomicU32,
}

/// How similar a fact and an intent's answer must be for the fact to count as
/// that intent's: restatements score 0.8-0.99 with all-MiniLM-L6-v2, facts
/// that merely share a topic stay under 0.55 (the demo bundle's facts).
pub const FACT_OWNED: f32 = 0.8;

/// A fact and how relevant it is (cosine similarity, or word overlap 0..1).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Retrieved {
    /// The fact, as written in the bundle.
    pub fact: String,
    /// Relevance: cosine similarity with embeddings, word overlap (0 to 1) without.
    pub score: f32,
    /// The intent whose own answer restates this fact, if any: a question
    /// this close to the fact asks for that intent.
    pub owner: Option<String>,
}

/// How the answer was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerSource {
    /// Worded by the LLM and passed by the guard.
    Llm,
    /// The best fact, verbatim (no LLM, LLM unsure, or guard rejection).
    Fact,
    /// The guard rejected the LLM and the bundle asks for a handoff instead.
    Handoff,
}

/// A grounded answer, with what backs it (shown by `understudy chat --json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    /// What the bot speaks.
    pub text: String,
    /// Whether the LLM's words or a verbatim fact were used.
    pub source: AnswerSource,
    /// The facts retrieved for the question, best first.
    pub facts: Vec<Retrieved>,
    /// The LLM's words, when it was asked.
    pub llm_text: Option<String>,
    /// The guard's decision on the LLM's words, when it checked them.
    pub guard: Option<Verdict>,
    /// Time spent asking the LLM, in ms (0 when it was not asked).
    pub llm_ms: f64,
}

impl Knowledge {
    /// The bundle's facts in `lang` (falling back to its default language), not yet embedded.
    pub fn new(bundle: &Bundle, lang: &str) -> Knowledge {
        let facts: Vec<String> = bundle
            .knowledge
            .iter()
            .filter_map(|t| t.get(lang, bundle.language()))
            .map(|s| s.trim().to_string())
            .collect();
        let words = facts
            .iter()
            .map(|f| content_words(f).into_iter().collect())
            .collect();
        let owners = vec![None; facts.len()];
        Knowledge {
            facts,
            words,
            vectors: vec![],
            owners,
            overruns: AtomicU32::new(0),
            skipped: AtomicU32::new(0),
        }
    }

    /// The facts, as said verbatim when the LLM does not word the answer.
    pub fn facts(&self) -> &[String] {
        &self.facts
    }

    /// True when the bundle has no facts in this language (no knowledge answers).
    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }

    /// Embed every fact once (at bot load).
    pub async fn embed(&mut self, embed: &EmbedClient) -> Result<(), EngineError> {
        self.vectors = embed.embed(&self.facts).await?;
        Ok(())
    }

    /// Mark each embedded fact that restates an intent's answer (`replies`:
    /// (intent, embedded answer text), several per intent allowed) as that
    /// intent's: "we are open 9 to 6" in the facts and in the store-hours
    /// state's prompt are one answer, and the flow's is the one to give.
    pub fn assign_owners(&mut self, replies: &[(String, Vec<f32>)]) {
        self.owners = self
            .vectors
            .iter()
            .map(|fact| {
                replies
                    .iter()
                    .map(|(intent, reply)| (intent, cosine(fact, reply)))
                    .filter(|(_, s)| *s >= FACT_OWNED)
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(intent, _)| intent.clone())
            })
            .collect();
        self.owners.resize(self.facts.len(), None);
    }

    /// The facts relevant to `question`, best first. With a question vector
    /// (and embedded facts) relevance is cosine similarity, else the share of
    /// the question's content words a fact contains.
    pub fn retrieve(
        &self,
        question: &str,
        question_vec: Option<&[f32]>,
        settings: &KnowledgeSettings,
    ) -> Vec<Retrieved> {
        let mut scored: Vec<(usize, f32)> = match question_vec {
            Some(q) if self.vectors.len() == self.facts.len() => self
                .vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (i, cosine(q, v)))
                .collect(),
            _ => {
                let asked: BTreeSet<String> = content_words(question).into_iter().collect();
                self.words
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        let shared = asked.intersection(w).count();
                        (
                            i,
                            if asked.is_empty() {
                                0.0
                            } else {
                                shared as f32 / asked.len() as f32
                            },
                        )
                    })
                    .collect()
            }
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
            .into_iter()
            .filter(|(_, s)| *s >= settings.min_similarity)
            .take(settings.top_k.max(1))
            .map(|(i, score)| Retrieved {
                fact: self.facts[i].clone(),
                score,
                owner: self.owners.get(i).cloned().flatten(),
            })
            .collect()
    }

    /// Answer from `facts` (non-empty, best first): LLM + guard when an LLM
    /// is given and allowed, the best fact otherwise.
    pub async fn answer(
        &self,
        llm: Option<&LlmClient>,
        bot_name: &str,
        question: &str,
        facts: Vec<Retrieved>,
        settings: &KnowledgeSettings,
    ) -> Result<Answer, EngineError> {
        let best_fact = facts[0].fact.clone();
        let verbatim = |facts, llm_text, guard, llm_ms| Answer {
            text: best_fact.clone(),
            source: AnswerSource::Fact,
            facts,
            llm_text,
            guard,
            llm_ms,
        };
        let Some(llm) = llm.filter(|_| settings.llm_answers) else {
            return Ok(verbatim(facts, None, None, 0.0));
        };
        if self.overruns.load(Ordering::Relaxed) >= OVERRUNS_TO_SKIP
            && self.skipped.fetch_add(1, Ordering::Relaxed) % RETRY_EVERY != RETRY_EVERY - 1
        {
            metrics::counter_inc(
                "understudy_dialog_guard_total",
                &[("verdict", "llm_skipped")],
            );
            return Ok(verbatim(facts, None, None, 0.0));
        }
        let listed: Vec<String> = facts.iter().map(|f| format!("- {}", f.fact)).collect();
        let system = format!(
            "You answer callers on the phone for {bot_name}. Answer the caller's question in one or two short sentences, \
             using only these facts:\n{}\nIf the facts do not answer the question, reply exactly: I'm not sure.",
            listed.join("\n")
        );
        let started = Instant::now();
        let request = llm.generate(GenerateRequest {
            messages: vec![
                ChatMessage::new("system", system),
                ChatMessage::new("user", question),
            ],
            max_tokens: 60,
            temperature: 0.0,
            grammar: None,
            stop: vec!["\n".into()],
        });
        let budget = Duration::from_millis(settings.llm_budget_ms.into());
        // Past the budget the request is dropped (which cancels it) and the
        // caller hears the best fact instead of waiting for the wording.
        let Ok(generated) = tokio::time::timeout(budget, request).await else {
            let overruns = self.overruns.fetch_add(1, Ordering::Relaxed) + 1;
            let llm_ms = started.elapsed().as_secs_f64() * 1e3;
            tracing::info!(
                budget_ms = settings.llm_budget_ms,
                overruns,
                "the LLM's answer ran past its budget: saying the best fact"
            );
            metrics::counter_inc(
                "understudy_dialog_guard_total",
                &[("verdict", "llm_overrun")],
            );
            return Ok(verbatim(facts, None, None, llm_ms));
        };
        let generated = generated?;
        self.overruns.store(0, Ordering::Relaxed);
        let llm_ms = started.elapsed().as_secs_f64() * 1e3;
        let said = first_sentences(&generated.text, 2);
        if said.is_empty() || said.to_lowercase().contains("not sure") {
            metrics::counter_inc(
                "understudy_dialog_guard_total",
                &[("verdict", "llm_unsure")],
            );
            return Ok(verbatim(facts, Some(said), None, llm_ms));
        }
        let started = Instant::now();
        let fact_texts: Vec<&str> = facts.iter().map(|f| f.fact.as_str()).collect();
        let verdict = guard::check_with_vocabulary(&said, question, &fact_texts, &[bot_name]);
        metrics::observe_ms(
            "understudy_dialog_stage_seconds",
            &[("stage", "guard")],
            started.elapsed().as_secs_f64() * 1e3,
        );
        if verdict.supported {
            metrics::counter_inc("understudy_dialog_guard_total", &[("verdict", "pass")]);
            return Ok(Answer {
                text: said.clone(),
                source: AnswerSource::Llm,
                facts,
                llm_text: Some(said),
                guard: Some(verdict),
                llm_ms,
            });
        }
        metrics::counter_inc("understudy_dialog_guard_total", &[("verdict", "reject")]);
        tracing::info!(answer = %said, problems = ?verdict.problems, "guard rejected an LLM answer");
        let mut fallback = verbatim(facts, Some(said), Some(verdict), llm_ms);
        if settings.on_guard_reject == GuardFallback::Handoff {
            fallback.source = AnswerSource::Handoff;
        }
        Ok(fallback)
    }
}

/// At most `n` sentences, trimmed (a small model rambles on).
fn first_sentences(text: &str, n: usize) -> String {
    let text = text.trim().trim_matches('"').trim();
    let mut end = text.len();
    let mut count = 0;
    for (i, ch) in text.char_indices() {
        if matches!(ch, '.' | '!' | '?')
            && text[i + 1..].chars().next().is_none_or(char::is_whitespace)
        {
            count += 1;
            if count == n {
                end = i + 1;
                break;
            }
        }
    }
    text[..end].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_retrieval_finds_the_fact_without_embeddings() {
        let bundle = Bundle::demo();
        let k = Knowledge::new(&bundle, "en");
        let settings = KnowledgeSettings {
            min_similarity: 0.5,
            ..Default::default()
        };
        let found = k.retrieve("Do you sell gift cards?", None, &settings);
        assert!(
            found[0].fact.to_lowercase().contains("gift card"),
            "{found:?}"
        );
        assert!(k.retrieve("I like turtles", None, &settings).is_empty());
    }

    #[test]
    fn answers_are_cut_to_two_sentences() {
        assert_eq!(first_sentences("One. Two! Three? Four.", 2), "One. Two!");
        assert_eq!(
            first_sentences("  \"Costs $12.50 today.\" ", 2),
            "Costs $12.50 today."
        );
        assert_eq!(first_sentences("No stop", 2), "No stop");
    }
}
