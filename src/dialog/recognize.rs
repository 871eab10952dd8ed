//! Intent recognition, cheapest first: rules (exact and contained training
//! phrases and keywords), then embeddings (cosine against every training
//! phrase, with an accept threshold and a margin over the runner-up), then
//! Whisper's decoder scoring the closest intents' phrases against the
//! caller's audio, then the LLM constrained by a grammar to the intent names
//! or `none`.
//!
//! Each stage only considers the intents active in the current state (its own
//! transitions plus the global ones), so "yes" in one state cannot trigger an
//! intent meant for another.

use super::bundle::{Bundle, RecognitionSettings};
use super::slots::{contains_words, gbnf_choice};
use super::text::{clauses, cosine, is_filler, is_negator, words};
use super::turn::MatchSource;
use crate::engines::{
    ChatMessage, EmbedClient, EngineError, GenerateRequest, LlmClient, SttClient,
};
use std::collections::{BTreeMap, BTreeSet};

/// A recognised intent.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Recognition {
    /// The intent's name in the bundle.
    pub intent: String,
    /// How sure the stage is, 0 to 1: 1.0 for an exact phrase, less for a contained one, the cosine
    /// for embeddings, [`LLM_CONFIDENCE`] for the LLM.
    pub confidence: f32,
    /// The stage that recognised it.
    pub source: MatchSource,
}

/// What the LLM gets to tell intents apart, and what the rules compare.
struct IntentEntry {
    name: String,
    description: String,
    phrases: Vec<Vec<String>>,
    keywords: Vec<Vec<String>>,
    examples: Vec<String>,
}

/// The embedding stage's view: every active intent by its closest training
/// phrase, best first (for the decision, the LLM's candidates and logs).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmbeddingScores {
    /// (intent, best cosine similarity of its phrases), highest first.
    pub ranked: Vec<(String, f32)>,
}

impl EmbeddingScores {
    /// The closest intent and its score, if any intent has phrases.
    pub fn best(&self) -> Option<&(String, f32)> {
        self.ranked.first()
    }
    /// The closest intent's score; 0 when there is none.
    pub fn best_score(&self) -> f32 {
        self.ranked.first().map_or(0.0, |b| b.1)
    }
}

/// Recognition for one bundle in one language; shared by all calls.
pub struct Recognizer {
    intents: Vec<IntentEntry>,
    /// (index into `intents`, unit vector) for every training phrase.
    phrase_vectors: Vec<(usize, Vec<f32>)>,
    /// The training phrases' texts, in the order of `phrase_vectors`.
    phrase_texts: Vec<String>,
    settings: RecognitionSettings,
    bot_name: String,
}

/// Confidence reported for LLM classifications: the worker returns no
/// probabilities, and a grammar-forced answer is only as good as the model.
pub const LLM_CONFIDENCE: f32 = 0.5;

impl Recognizer {
    /// Compile the intents' training phrases in `lang` (falling back to the bundle's default
    /// language); phrases are embedded separately.
    pub fn new(bundle: &Bundle, lang: &str) -> Recognizer {
        let default = bundle.language();
        let intents = bundle
            .intents
            .iter()
            .map(|(name, intent)| {
                let raw: Vec<String> = intent
                    .phrases
                    .get(lang, default)
                    .cloned()
                    .unwrap_or_default();
                let keywords = intent
                    .keywords
                    .get(lang, default)
                    .cloned()
                    .unwrap_or_default();
                IntentEntry {
                    name: name.clone(),
                    description: intent
                        .description
                        .as_ref()
                        .and_then(|d| d.get(lang, default))
                        .cloned()
                        .unwrap_or_else(|| name.replace('_', " ")),
                    phrases: raw
                        .iter()
                        .map(|p| meaningful_words(p))
                        .filter(|w| !w.is_empty())
                        .collect(),
                    keywords: keywords
                        .iter()
                        .map(|k| meaningful_words(k))
                        .filter(|w| !w.is_empty())
                        .collect(),
                    examples: raw.iter().take(3).cloned().collect(),
                }
            })
            .collect();
        Recognizer {
            intents,
            phrase_vectors: vec![],
            phrase_texts: vec![],
            settings: bundle.settings.recognition.clone(),
            bot_name: bundle.bot.name.clone(),
        }
    }

    /// Embed every training phrase once (at bot load).
    pub async fn embed_phrases(
        &mut self,
        embed: &EmbedClient,
        bundle: &Bundle,
        lang: &str,
    ) -> Result<(), EngineError> {
        let mut owners = vec![];
        let mut texts = vec![];
        for (i, entry) in self.intents.iter().enumerate() {
            let phrases = bundle.intents[&entry.name]
                .phrases
                .get(lang, bundle.language())
                .cloned()
                .unwrap_or_default();
            for p in phrases {
                owners.push(i);
                texts.push(p);
            }
        }
        let vectors = embed.embed_batched(&texts).await?;
        self.phrase_vectors = owners.into_iter().zip(vectors).collect();
        self.phrase_texts = texts;
        Ok(())
    }

    /// True once the training phrases are embedded, so the embedding stage can run.
    pub fn has_embeddings(&self) -> bool {
        !self.phrase_vectors.is_empty()
    }

    /// Stage 1: exact phrase (confidence 1.0) or a phrase/keyword contained
    /// in the utterance and not negated ("I don't want an agent"). Several
    /// intents contained is ambiguous unless one match spans all the others.
    pub fn rules(&self, utterance: &str, active: &BTreeSet<String>) -> Option<Recognition> {
        let said = meaningful_words(utterance);
        if said.is_empty() {
            return None;
        }
        let candidates = self.intents.iter().filter(|e| active.contains(&e.name));
        let exact: BTreeSet<&str> = candidates
            .clone()
            .filter(|e| e.phrases.contains(&said))
            .map(|e| e.name.as_str())
            .collect();
        if exact.len() == 1 {
            let intent = exact.into_iter().next().unwrap().to_string();
            return Some(Recognition {
                intent,
                confidence: 1.0,
                source: MatchSource::Rule,
            });
        }
        if exact.len() > 1 {
            return None;
        }
        // (intent, start, length) of every non-negated contained phrase or keyword.
        let mut spans: Vec<(&str, usize, usize)> = vec![];
        for entry in candidates {
            for needle in entry.phrases.iter().chain(&entry.keywords) {
                if let Some(start) = contains_words(&said, needle) {
                    // A negator shortly before ("I don't want to speak to an agent")
                    // leaves the decision to the later stages. "no" usually
                    // answers the bot ("no, I want an agent"), so it does not count.
                    let negated = said[start.saturating_sub(8)..start]
                        .iter()
                        .any(|w| is_negator(w) && w != "no");
                    if !negated {
                        spans.push((entry.name.as_str(), start, needle.len()));
                    }
                }
            }
        }
        let (intent, start, len) = *spans.iter().max_by_key(|s| s.2)?;
        let covers_others = spans
            .iter()
            .all(|(other, s, l)| *other == intent || (*s >= start && s + l <= start + len));
        if !covers_others {
            return None;
        }
        let coverage = len as f32 / said.len() as f32;
        Some(Recognition {
            intent: intent.to_string(),
            confidence: 0.75 + 0.2 * coverage,
            source: MatchSource::Rule,
        })
    }

    /// The texts the embedding stage embeds for an utterance: the whole of
    /// it, then each of its clauses ([`clauses`]) when it has several.
    pub fn embedding_texts(utterance: &str) -> Vec<String> {
        let mut texts = vec![utterance.to_string()];
        texts.extend(clauses(utterance));
        texts
    }

    /// Stage 2: the best intent by its closest training phrase to any of the
    /// utterance's vectors (the whole, then its clauses:
    /// [`Recognizer::embedding_texts`]), if it clears the accept threshold
    /// and leads the runner-up by the margin. `evidence` adds (intent,
    /// similarity) pairs found elsewhere: a fact that restates an intent's
    /// own answer counts for that intent.
    pub fn embedding(
        &self,
        utterance_vecs: &[Vec<f32>],
        active: &BTreeSet<String>,
        evidence: &[(&str, f32)],
    ) -> (Option<Recognition>, EmbeddingScores) {
        fn raise<'a>(best: &mut BTreeMap<&'a str, f32>, intent: &'a str, score: f32) {
            let entry = best.entry(intent).or_insert(f32::MIN);
            *entry = entry.max(score);
        }
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for (i, v) in &self.phrase_vectors {
            let name = self.intents[*i].name.as_str();
            if !active.contains(name) {
                continue;
            }
            for u in utterance_vecs {
                raise(&mut best, name, cosine(u, v));
            }
        }
        for (intent, score) in evidence {
            if let Some(name) = active.get(*intent) {
                raise(&mut best, name.as_str(), *score);
            }
        }
        let mut ranked: Vec<(String, f32)> =
            best.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let scores = EmbeddingScores { ranked };
        let accepted = scores.best().and_then(|(intent, best)| {
            let margin = best - scores.ranked.get(1).map_or(0.0, |r| r.1);
            (*best >= self.settings.embedding_accept && margin >= self.settings.embedding_margin)
                .then(|| Recognition {
                    intent: intent.clone(),
                    confidence: *best,
                    source: MatchSource::Embedding,
                })
        });
        (accepted, scores)
    }

    /// Stage 2b: Whisper's decoder scores the phrases of the closest
    /// intents (by `scores`, each by its phrases closest to `whole`, the
    /// utterance's vector) against the caller's audio, held by the STT
    /// worker as `utterance`. It takes the intent whose phrase explains the
    /// audio best when that phrase is near Whisper's own transcript and
    /// leads the other intents' by the margin. An utterance the worker no
    /// longer holds (it keeps the last few) skips the stage.
    pub async fn acoustic(
        &self,
        stt: &SttClient,
        utterance: u64,
        whole: &[f32],
        scores: &EmbeddingScores,
    ) -> Result<Option<Recognition>, EngineError> {
        let s = &self.settings;
        let shortlist: Vec<&str> = scores
            .ranked
            .iter()
            .filter(|(_, score)| *score >= s.acoustic_floor)
            .take(s.acoustic_intents)
            .map(|(name, _)| name.as_str())
            .collect();
        if shortlist.len() < 2 {
            return Ok(None);
        }
        // Each shortlisted intent's phrases, closest to the utterance first.
        let mut owners = vec![];
        let mut candidates = vec![];
        for intent in &shortlist {
            let mut phrases: Vec<(f32, &str)> = self
                .phrase_vectors
                .iter()
                .zip(&self.phrase_texts)
                .filter(|((i, _), _)| self.intents[*i].name == *intent)
                .map(|((_, v), text)| (cosine(whole, v), text.as_str()))
                .collect();
            phrases.sort_by(|a, b| b.0.total_cmp(&a.0));
            for (_, text) in phrases.into_iter().take(s.acoustic_phrases) {
                owners.push(*intent);
                candidates.push(text.to_string());
            }
        }
        let scored = match stt.score(utterance, &candidates).await {
            Ok(scored) => scored,
            // Evicted by newer utterances: decide without it.
            Err(EngineError::Engine { message, .. }) if message.contains("no longer held") => {
                tracing::debug!(utterance, "acoustic stage skipped: {message}");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut best: BTreeMap<&str, f32> = BTreeMap::new();
        for (intent, score) in owners.iter().zip(&scored.candidates) {
            let entry = best.entry(intent).or_insert(f32::MIN);
            *entry = entry.max(*score);
        }
        let mut ranked: Vec<(&str, f32)> = best.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let (intent, top) = ranked[0];
        let runner_up = ranked.get(1).map_or(f32::MIN, |r| r.1);
        let gap = scored.transcript - top;
        tracing::debug!(
            ?ranked,
            transcript = scored.transcript,
            ?candidates,
            ms = scored.ms,
            "acoustic stage"
        );
        let taken = top - runner_up >= s.acoustic_margin && gap <= s.acoustic_max_gap;
        Ok(taken.then(|| Recognition {
            intent: intent.to_string(),
            // The phrase's per-token probability relative to the transcript's.
            confidence: (-gap.max(0.0)).exp(),
            source: MatchSource::Acoustic,
        }))
    }

    /// The intents the LLM may choose from: without embeddings every active
    /// one; with them the closest few above the floor (possibly none).
    pub fn llm_candidates(
        &self,
        active: &BTreeSet<String>,
        scores: Option<&EmbeddingScores>,
    ) -> BTreeSet<String> {
        match scores {
            None => active.clone(),
            Some(s) => s
                .ranked
                .iter()
                .filter(|(_, score)| *score >= self.settings.llm_floor)
                .take(self.settings.llm_candidates)
                .map(|(name, _)| name.clone())
                .collect(),
        }
    }

    /// The classification prompt and grammar: the prompt lists every intent
    /// active in the state (the same text turn after turn, so the LLM
    /// worker's prompt cache skips its prefill: 1.5-2 s for ~150 tokens with
    /// the default pack on 2 cores), the grammar allows only the candidates
    /// and `none`.
    pub fn llm_request(
        &self,
        utterance: &str,
        active: &BTreeSet<String>,
        candidates: &BTreeSet<String>,
        bot_question: Option<&str>,
    ) -> GenerateRequest {
        let entries: Vec<&IntentEntry> = self
            .intents
            .iter()
            .filter(|e| active.contains(&e.name) || candidates.contains(&e.name))
            .collect();
        let mut listing = String::new();
        for e in &entries {
            let examples: Vec<String> = e.examples.iter().map(|x| format!("\"{x}\"")).collect();
            listing.push_str(&format!(
                "- {}: {} (e.g. {})\n",
                e.name,
                e.description,
                examples.join(", ")
            ));
        }
        listing.push_str("- none: anything else\n");
        let context = bot_question
            .map(|q| format!("The bot just said: \"{q}\"\n"))
            .unwrap_or_default();
        let system = format!(
            "You route phone calls for {}. Reply with the one intent that matches what the caller said, or none.\nIntents:\n{listing}{context}",
            self.bot_name
        );
        let grammar = gbnf_choice(
            entries
                .iter()
                .map(|e| e.name.as_str())
                .filter(|n| candidates.contains(*n))
                .chain(["none"]),
        );
        GenerateRequest {
            messages: vec![
                ChatMessage::new("system", system),
                ChatMessage::new("user", utterance),
            ],
            max_tokens: 16,
            temperature: 0.0,
            grammar: Some(grammar),
            stop: vec!["\n".into()],
        }
    }

    /// Stage 3: grammar-constrained LLM classification among `candidates`;
    /// `Ok(None)` for `none`.
    pub async fn llm(
        &self,
        llm: &LlmClient,
        utterance: &str,
        active: &BTreeSet<String>,
        candidates: &BTreeSet<String>,
        bot_question: Option<&str>,
    ) -> Result<Option<Recognition>, EngineError> {
        let generated = llm
            .generate(self.llm_request(utterance, active, candidates, bot_question))
            .await?;
        let answer = generated.text.trim();
        tracing::debug!(utterance, answer, ?candidates, "llm intent classification");
        Ok(candidates.contains(answer).then(|| Recognition {
            intent: answer.to_string(),
            confidence: LLM_CONFIDENCE,
            source: MatchSource::Llm,
        }))
    }
}

/// Words without hesitations: "um where's my order" == "where's my order".
/// The words the rules compare: `words` without hesitations.
pub fn meaningful_words(text: &str) -> Vec<String> {
    words(text).into_iter().filter(|w| !is_filler(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recognizer() -> (Recognizer, BTreeSet<String>) {
        let bundle = Bundle::demo();
        let active = bundle.intents.keys().cloned().collect();
        (Recognizer::new(&bundle, "en"), active)
    }

    #[test]
    fn exact_and_contained_phrases_match() {
        let (r, active) = recognizer();
        let exact = r.rules("Where is my order?", &active).unwrap();
        assert_eq!(
            (exact.intent.as_str(), exact.confidence),
            ("order_status", 1.0)
        );
        let contained = r
            .rules("um hi, I'd like to speak to an agent please", &active)
            .unwrap();
        assert_eq!(contained.intent, "agent");
        assert!(contained.confidence < 1.0);
    }

    #[test]
    fn negated_phrases_do_not_match() {
        let (r, active) = recognizer();
        assert_eq!(
            r.rules("I don't want to speak to an agent", &active)
                .map(|x| x.intent),
            None
        );
    }

    #[test]
    fn inactive_intents_are_not_recognised() {
        let (r, _) = recognizer();
        let only_goodbye: BTreeSet<String> = ["goodbye".to_string()].into();
        assert_eq!(r.rules("where is my order", &only_goodbye), None);
    }

    #[test]
    fn llm_grammar_allows_only_active_intents_and_none() {
        let (r, _) = recognizer();
        let active: BTreeSet<String> = ["agent".to_string(), "returns".to_string()].into();
        let mut all: BTreeSet<String> = active.clone();
        all.insert("goodbye".into());
        let req = r.llm_request("blah", &all, &active, Some("How can I help?"));
        assert_eq!(
            req.grammar.as_deref(),
            Some(r#"root ::= "agent" | "returns" | "none""#)
        );
        assert_eq!(req.temperature, 0.0);
        assert!(req.messages[0].content.contains("- agent:"));
        // Listed (the prompt stays the same whatever the candidates), not allowed.
        assert!(req.messages[0].content.contains("- goodbye:"));
        assert!(!req.messages[0].content.contains("- store_hours:"));
        let other = r.llm_request("blah", &all, &["goodbye".to_string()].into(), None);
        assert_eq!(
            req.messages[0].content.split("The bot just said").next(),
            other.messages[0].content.split("The bot just said").next()
        );
    }

    #[test]
    fn embedding_stage_needs_threshold_and_margin() {
        let bundle = Bundle::demo();
        let mut r = Recognizer::new(&bundle, "en");
        let active: BTreeSet<String> = bundle.intents.keys().cloned().collect();
        let idx = |name: &str| r.intents.iter().position(|e| e.name == name).unwrap();
        let (a, b) = (idx("returns"), idx("store_hours"));
        r.phrase_vectors = vec![(a, vec![1.0, 0.0]), (b, vec![0.0, 1.0])];
        let clear = r.embedding(&[vec![0.9, 0.436]], &active, &[]).0.unwrap();
        assert_eq!(
            (clear.intent.as_str(), clear.source),
            ("returns", MatchSource::Embedding)
        );
        // Close to both: below the margin, but both go to the LLM.
        let (accepted, scores) = r.embedding(&[vec![0.707, 0.707]], &active, &[]);
        assert_eq!(accepted, None);
        assert_eq!(r.llm_candidates(&active, Some(&scores)).len(), 2);
        // Clear winner but not similar enough; below the LLM floor too.
        let (accepted, scores) = r.embedding(&[vec![0.25, 0.1]], &active, &[]);
        assert_eq!(accepted, None);
        assert!(r.llm_candidates(&active, Some(&scores)).is_empty());
        // Without embeddings the LLM sees every active intent.
        assert_eq!(r.llm_candidates(&active, None), active);
    }
}
