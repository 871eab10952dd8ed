//! A loaded bot: the bundle compiled for one language, with its training
//! phrases and facts embedded once. Immutable after load, so one `Arc<Bot>`
//! serves every call; per-call state lives in [`super::Conversation`].

use super::bundle::{Bundle, Text};
use super::bundle_file::BundleError;
use super::knowledge::Knowledge;
use super::recognize::Recognizer;
use super::slots::Matcher;
use super::validate::Severity;
use crate::engines::{EmbedClient, EngineError, LlmClient, SttClient};
use crate::metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The understanding engines a bot may use; either may be absent (rules-only
/// or rules + embeddings work without an LLM, e.g. `understudy chat --no-llm`).
#[derive(Clone, Default)]
pub struct Nlu {
    /// Sentence embeddings for the embedding stage and knowledge retrieval.
    pub embed: Option<EmbedClient>,
    /// The LLM for classification, slot filling and worded answers.
    pub llm: Option<LlmClient>,
    /// Whisper, to score the likeliest intents' phrases against what a
    /// caller said ([`super::UserInput::Heard`]); `None` for typed input.
    pub stt: Option<SttClient>,
}

/// Why a bot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The bundle is invalid (validation errors listed).
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Embedding the phrases or facts failed.
    #[error("cannot load the bot: {0} (the embed engine must be ready before the bot loads)")]
    Engine(#[from] EngineError),
    /// The bundle has no texts in the requested language (requested, offered).
    #[error("the bundle has no texts in language `{0}` (it offers {1}); pick one of those")]
    Language(String, String),
}

/// A bundle ready to converse in one language: recognisers, entities and facts compiled (and
/// embedded) once, shared by every call.
pub struct Bot {
    pub(super) bundle: Bundle,
    pub(super) nlu: Nlu,
    pub(super) lang: String,
    pub(super) recognizer: Recognizer,
    pub(super) knowledge: Knowledge,
    /// Compiled entities, by entity name.
    pub(super) matchers: BTreeMap<String, Matcher>,
    /// Slots whose values are spoken digit by digit.
    pub(super) digit_slots: BTreeSet<String>,
    /// Intents each state listens for (its transitions + the global ones).
    pub(super) active: BTreeMap<String, BTreeSet<String>>,
}

impl Bot {
    /// The intent the caller's words carry among all the bundle's intents,
    /// by the rules and the embeddings (no LLM). The parity replay checks it
    /// on a turn whose answer filled a slot, where a call does not classify.
    pub async fn words_intent(&self, text: &str) -> Result<Option<String>, EngineError> {
        let all: BTreeSet<String> = self.bundle.intents.keys().cloned().collect();
        if let Some(r) = self.recognizer.rules(text, &all) {
            return Ok(Some(r.intent));
        }
        let Some(embed) = &self.nlu.embed else {
            return Ok(None);
        };
        let vectors = embed.embed(&Recognizer::embedding_texts(text)).await?;
        Ok(self
            .recognizer
            .embedding(&vectors, &all, &[])
            .0
            .map(|r| r.intent))
    }

    /// Load `bundle` in its default language.
    pub async fn load(bundle: Bundle, nlu: Nlu) -> Result<Bot, BotError> {
        let lang = bundle.language().to_string();
        Bot::load_language(bundle, nlu, &lang).await
    }

    /// Load `bundle` for conversations in `lang`: validates it, compiles its
    /// entities, and embeds its training phrases and facts when an embed
    /// engine is given.
    pub async fn load_language(bundle: Bundle, nlu: Nlu, lang: &str) -> Result<Bot, BotError> {
        let started = Instant::now();
        let errors: Vec<_> = bundle
            .validate()
            .into_iter()
            .filter(|i| i.severity == Severity::Error)
            .collect();
        if !errors.is_empty() {
            return Err(BundleError::Invalid {
                origin: format!("bot `{}`", bundle.bot.name),
                issues: errors,
            }
            .into());
        }
        if lang != bundle.language() && !bundle.bot.languages.iter().any(|l| l == lang) {
            let mut offered = vec![bundle.language().to_string()];
            offered.extend(bundle.bot.languages.iter().cloned());
            return Err(BotError::Language(lang.into(), offered.join(", ")));
        }
        let matchers: BTreeMap<String, Matcher> = bundle
            .entities
            .iter()
            .map(|(name, e)| (name.clone(), Matcher::new(e, lang, bundle.language())))
            .collect();
        let mut digit_slots = BTreeSet::new();
        for state in bundle.flow.states.values() {
            for c in &state.collect {
                if matchers.get(&c.entity).is_some_and(Matcher::speaks_digits) {
                    digit_slots.insert(c.slot.clone());
                }
            }
        }
        let active = bundle.flow.listening();
        let mut recognizer = Recognizer::new(&bundle, lang);
        let mut knowledge = Knowledge::new(&bundle, lang);
        if let Some(embed) = &nlu.embed {
            recognizer.embed_phrases(embed, &bundle, lang).await?;
            if bundle.settings.knowledge.enabled && !knowledge.is_empty() {
                knowledge.embed(embed).await?;
                let (intents, texts): (Vec<String>, Vec<String>) =
                    intent_replies(&bundle, lang).into_iter().unzip();
                let vectors = embed.embed_batched(&texts).await?;
                let replies: Vec<(String, Vec<f32>)> = intents.into_iter().zip(vectors).collect();
                knowledge.assign_owners(&replies);
            }
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        metrics::observe_ms(
            "understudy_dialog_stage_seconds",
            &[("stage", "bot_load")],
            ms,
        );
        tracing::info!(
            bot = %bundle.bot.name,
            lang,
            intents = bundle.intents.len(),
            states = bundle.flow.states.len(),
            embeddings = nlu.embed.is_some(),
            llm = nlu.llm.is_some(),
            ms,
            "bot loaded"
        );
        Ok(Bot {
            bundle,
            nlu,
            lang: lang.to_string(),
            recognizer,
            knowledge,
            matchers,
            digit_slots,
            active,
        })
    }

    /// The bundle the bot was loaded from.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The conversation language.
    pub fn language(&self) -> &str {
        &self.lang
    }

    /// Which recognition stages this bot runs, cheapest first.
    pub fn stages(&self) -> Vec<&'static str> {
        let mut out = vec!["rules"];
        if self.nlu.embed.is_some() {
            out.push("embeddings");
        }
        if self.nlu.llm.is_some() && self.bundle.settings.recognition.llm_classify {
            out.push("llm");
        }
        out
    }

    /// Every prompt without slot placeholders, in the bot's language: what
    /// to pre-render to audio.
    pub fn static_prompts(&self) -> Vec<String> {
        let mut prompts = self.bundle.static_prompts(&self.lang);
        // Facts said verbatim (no LLM, or the LLM too slow or refused by the guard).
        if self.bundle.settings.knowledge.enabled {
            for fact in self.knowledge.facts() {
                if !prompts.contains(fact) {
                    prompts.push(fact.clone());
                }
            }
        }
        // The yes/no confirmation questions made from the intents' topics.
        let confirm = &self.bundle.settings.confirm;
        if confirm.enabled {
            for intent in self.bundle.intents.values() {
                if let (None, Some(topic)) = (&intent.confirm, &intent.topic) {
                    let q =
                        super::confirm::question(self.t(&confirm.question), self.t(topic), None);
                    if !prompts.contains(&q) {
                        prompts.push(q);
                    }
                }
            }
        }
        prompts
    }

    /// A text in the conversation language (the bundle's default as fallback;
    /// validation guarantees one of them exists).
    pub(super) fn t<'a>(&self, text: &'a Text) -> &'a str {
        text.get(&self.lang, self.bundle.language())
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// What the bot answers when each intent is recognised, as (intent, text):
/// for every transition an intent takes, its own prompts and the prompts of
/// the state it leads to (with that state's first question). Facts that
/// restate one of these belong to the intent ([`Knowledge::assign_owners`]).
fn intent_replies(bundle: &Bundle, lang: &str) -> Vec<(String, String)> {
    let default = bundle.language();
    let text = |t: &Text| t.get(lang, default).cloned().unwrap_or_default();
    let flow = &bundle.flow;
    flow.global
        .iter()
        .chain(flow.states.values().flat_map(|s| &s.transitions))
        .filter_map(|t| {
            let intent = t.intent.clone()?;
            let mut said: Vec<String> = t.say.0.iter().map(text).collect();
            if let Some(state) = t.to.as_deref().and_then(|to| flow.states.get(to)) {
                said.extend(state.say.0.iter().map(text));
                said.extend(state.collect.first().map(|c| text(&c.prompt)));
            }
            let said = said.join(" ");
            (!said.trim().is_empty()).then_some((intent, said))
        })
        .collect()
}
