//! The bot bundle, format `understudy-bundle/1`: everything a bot is, in one
//! YAML (or JSON) file. `docs/bundle-format.md` is the reference; importers
//! (Dialogflow CX/ES, Lex V2, Rasa) write this shape, the dialog engine reads it.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

mod queries;

/// The `format` value this build reads and writes.
pub const FORMAT_V1: &str = "understudy-bundle/1";

/// The built-in demo bot (the default when no bundle is configured).
pub const DEMO_BUNDLE_YAML: &str = include_str!("demo_bundle.yaml");

/// A bot bundle. Field order follows the file: see docs/bundle-format.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always `understudy-bundle/1` for this version.
    pub format: String,
    /// The bot's name, languages and provenance (`bot:`).
    pub bot: BotInfo,
    /// Bot-wide behaviour; every field has a default.
    #[serde(default)]
    pub settings: Settings,
    /// Humans to hand callers to, by name (`agents: {uri: sip:...}`).
    #[serde(default)]
    pub transfer_targets: BTreeMap<String, TransferTarget>,
    /// Slot value types, by name.
    #[serde(default)]
    pub entities: BTreeMap<String, Entity>,
    /// What callers may want, by name.
    pub intents: BTreeMap<String, Intent>,
    /// The conversation graph: start state, global transitions, states.
    pub flow: Flow,
    /// Facts the bot may state in free-form answers, and nothing beyond them.
    #[serde(default)]
    pub knowledge: Vec<Text>,
    /// Small lookup tables (`lookup:` in a state reads them).
    #[serde(default)]
    pub data: BTreeMap<String, Table>,
    /// Conversations that must keep working (the parity tester replays them).
    #[serde(default)]
    pub tests: Vec<TestConversation>,
}

/// Who the bot is (`bot:`): name, version, languages, where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BotInfo {
    /// The bot's name (given to the LLM, the STT hint and logs).
    pub name: String,
    /// What the bot is for, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The bundle's own version (free text: a date, a git hash, a CX version id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Language of unmarked texts and the default conversation language.
    #[serde(default = "default_language")]
    pub language: String,
    /// Further languages the per-language texts (`{en: .., de: ..}`) provide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Where the bundle came from (importer, source agent id, export time...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source: BTreeMap<String, String>,
}

fn default_language() -> String {
    "en".into()
}

// ---------------------------------------------------------------- texts

/// A value given once (in the bot's language) or per language:
/// `"Hello"` or `{en: "Hello", de: "Hallo"}`. No `T` used here is itself a
/// map, so a map always means "per language".
#[derive(Debug, Clone, PartialEq)]
pub enum Localized<T> {
    /// One value for every language.
    One(T),
    /// A value per language code (`en`, `de`...).
    ByLang(BTreeMap<String, T>),
}

impl<T> Localized<T> {
    /// The value for `lang`, else for `fallback` (the bundle's language).
    pub fn get(&self, lang: &str, fallback: &str) -> Option<&T> {
        match self {
            Localized::One(v) => Some(v),
            Localized::ByLang(m) => m.get(lang).or_else(|| m.get(fallback)),
        }
    }

    /// Languages given explicitly (`None`: one value for all).
    pub fn languages(&self) -> Option<Vec<&str>> {
        match self {
            Localized::One(_) => None,
            Localized::ByLang(m) => Some(m.keys().map(String::as_str).collect()),
        }
    }

    /// Every value given: the one, or each language's.
    pub fn values(&self) -> Vec<&T> {
        match self {
            Localized::One(v) => vec![v],
            Localized::ByLang(m) => m.values().collect(),
        }
    }
}

impl<T: Default> Default for Localized<T> {
    fn default() -> Self {
        Localized::One(T::default())
    }
}

impl<T: Serialize> Serialize for Localized<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Localized::One(v) => v.serialize(s),
            Localized::ByLang(m) => m.serialize(s),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Localized<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Mapping(map) => {
                let mut out = BTreeMap::new();
                for (k, v) in map {
                    let lang = k.as_str().ok_or_else(|| {
                        D::Error::custom("a language code (like `en`) must be a string")
                    })?;
                    let value = serde_norway::from_value(v)
                        .map_err(|e| D::Error::custom(format!("language `{lang}`: {e}")))?;
                    out.insert(lang.to_string(), value);
                }
                Ok(Localized::ByLang(out))
            }
            other => serde_norway::from_value(other)
                .map(Localized::One)
                .map_err(D::Error::custom),
        }
    }
}

/// A prompt or fact: one text, or one per language.
pub type Text = Localized<String>;

impl Text {
    /// One text for every language.
    pub fn text(s: impl Into<String>) -> Text {
        Localized::One(s.into())
    }
}

/// What to say, in order: one text or a list (`say: "Hi"` or `say: ["Hi.", "How can I help?"]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts(pub Vec<Text>);

impl Prompts {
    /// True when there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Prompts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            all => all.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Prompts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Sequence(items) => items
                .into_iter()
                .map(serde_norway::from_value::<Text>)
                .collect::<Result<Vec<_>, _>>()
                .map(Prompts)
                .map_err(D::Error::custom),
            Value::Null => Ok(Prompts::default()),
            one => serde_norway::from_value::<Text>(one)
                .map(|t| Prompts(vec![t]))
                .map_err(D::Error::custom),
        }
    }
}

/// Numbers and booleans written where a string is meant (`dtmf: 0`, `order_number: 48213`).
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => scalar_string(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom("expected a string or a number")),
    }
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| match scalar_string(&v) {
            Some(s) => Ok((k, s)),
            None => Err(D::Error::custom(format!(
                "`{k}`: expected a string or a number"
            ))),
        })
        .collect()
}

fn scalar_rows<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BTreeMap<String, String>>, D::Error> {
    let rows = Vec::<BTreeMap<String, Value>>::deserialize(d)?;
    rows.into_iter()
        .enumerate()
        .map(|(i, row)| {
            row.into_iter()
                .map(|(k, v)| match scalar_string(&v) {
                    Some(s) => Ok((k, s)),
                    None => Err(D::Error::custom(format!(
                        "rows[{i}].{k}: expected a string or a number"
                    ))),
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------- settings

/// Bot-wide behaviour. Every field has a default (shown in docs/bundle-format.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Transfer target for handoffs the flow does not name (repeated
    /// no-match/no-input, engine failure). Default: the only target, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_target: Option<String>,
    /// Said before a handoff on repeated no-match/no-input.
    pub handoff_prompt: Prompts,
    /// Said when an engine fails mid-call, before the safety-net transfer.
    pub apology_prompt: Prompts,
    /// Said when a turn is slow to answer (session.filler_after_ms), so the
    /// caller does not hear dead air; once per turn.
    pub filler_prompt: Prompts,
    /// When the caller says nothing: timeout, prompts, escalation.
    pub no_input: NoInputSettings,
    /// When the bot cannot tell what the caller wants: prompts, escalation.
    pub no_match: NoMatchSettings,
    /// Whether callers may interrupt prompts (a state may override it).
    pub barge_in: bool,
    /// Keypad entry: on/off, terminator key, when an entry ends.
    pub dtmf: DtmfSettings,
    /// Intent recognition thresholds and when to ask the LLM.
    pub recognition: RecognitionSettings,
    /// Free-form answers from the `knowledge` facts.
    pub knowledge: KnowledgeSettings,
    /// Confirmation questions when recognition is unsure.
    pub confirm: ConfirmSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            handoff_target: None,
            handoff_prompt: Prompts(vec![Text::text(
                "Let me connect you with someone who can help.",
            )]),
            apology_prompt: Prompts(vec![Text::text(
                "I'm sorry, I'm having trouble right now. Let me connect you with a colleague.",
            )]),
            filler_prompt: Prompts(vec![Text::text("One moment, please.")]),
            no_input: NoInputSettings::default(),
            no_match: NoMatchSettings::default(),
            barge_in: true,
            dtmf: DtmfSettings::default(),
            recognition: RecognitionSettings::default(),
            knowledge: KnowledgeSettings::default(),
            confirm: ConfirmSettings::default(),
        }
    }
}

/// Confirm when in doubt: when no stage is sure of an intent but one (with a
/// `topic` or `confirm` question) is close, ask instead of saying "sorry, I
/// didn't catch that"; two close intents with topics get a choice question.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfirmSettings {
    /// Ask when unsure (off: no match, as without confirmations).
    pub enabled: bool,
    /// The closest intent's embedding similarity needed to ask about it
    /// (below it the utterance is about something else).
    pub floor: f32,
    /// A runner-up this close to the best gets a choice question.
    pub choice_margin: f32,
    /// The yes/no question; `{first}` is the intent's topic.
    pub question: Text,
    /// The choice question; `{first}` and `{second}` are the two topics.
    pub choice: Text,
    /// Said when the caller answers no; the state then listens again.
    pub denied: Prompts,
}

impl Default for ConfirmSettings {
    fn default() -> Self {
        ConfirmSettings {
            enabled: true,
            floor: 0.35,
            choice_margin: 0.05,
            question: Text::text("Just to check: is that about {first}?"),
            choice: Text::text("Just to check: is that about {first}, or {second}?"),
            denied: Prompts(vec![Text::text(
                "Sorry about that. What can I help you with?",
            )]),
        }
    }
}

/// When the caller says nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoInputSettings {
    /// Silence after a prompt that counts as no input.
    pub timeout_ms: u32,
    /// The `max`-th consecutive no-input escalates (`then`).
    pub max: u32,
    /// Said on the 1st, 2nd... no-input (the last one repeats), before the pending question.
    pub prompts: Vec<Text>,
    /// What escalation does; default: `handoff_prompt` and transfer to `handoff_target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<Transition>,
}

impl Default for NoInputSettings {
    fn default() -> Self {
        NoInputSettings {
            timeout_ms: 6000,
            max: 3,
            prompts: vec![
                Text::text("Sorry, I didn't hear anything."),
                Text::text("Are you still there?"),
            ],
            then: None,
        }
    }
}

/// When the bot cannot tell what the caller wants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoMatchSettings {
    /// The `max`-th consecutive no-match escalates (`then`): handoff after repeated no-match.
    pub max: u32,
    /// Said on the 1st, 2nd... no-match (the last one repeats), before the pending question.
    pub prompts: Vec<Text>,
    /// What escalation does; default: `handoff_prompt` and transfer to `handoff_target`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<Transition>,
}

impl Default for NoMatchSettings {
    fn default() -> Self {
        NoMatchSettings {
            max: 3,
            prompts: vec![
                Text::text("Sorry, I didn't understand that."),
                Text::text("Sorry, I still didn't get that."),
            ],
            then: None,
        }
    }
}

/// Keypad (DTMF) input: whether keys count, and what ends a keyed entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DtmfSettings {
    /// Act on keyed input (off: keys fill no slot and take no transition).
    pub enabled: bool,
    /// Ends a keyed entry early (stripped before matching).
    pub terminator: String,
    /// Pause that ends a keyed entry (the session's business; carried for it).
    pub inter_digit_timeout_ms: u32,
    /// An entry this many keys long ends at once (the session's business; carried for it).
    pub max_digits: u32,
}

impl Default for DtmfSettings {
    fn default() -> Self {
        DtmfSettings {
            enabled: true,
            terminator: "#".into(),
            inter_digit_timeout_ms: 3000,
            max_digits: 16,
        }
    }
}

/// Recognition cascade knobs (rules -> embeddings -> LLM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecognitionSettings {
    /// Cosine similarity to the closest training phrase needed to accept an intent.
    pub embedding_accept: f32,
    /// How far the best intent must lead the runner-up.
    pub embedding_margin: f32,
    /// Ask the LLM (grammar-constrained) when rules and embeddings are unsure.
    pub llm_classify: bool,
    /// With embeddings, the LLM chooses among at most this many intents...
    pub llm_candidates: usize,
    /// ...each at least this similar to the utterance; none that close: no LLM
    /// (it would pick *something* for "what's the weather like?").
    pub llm_floor: f32,
    /// Ask the LLM to fill a slot the deterministic extractors missed.
    pub llm_slots: bool,
    /// When rules and embeddings are unsure about a caller's audio, score
    /// the likeliest intents' phrases with Whisper's decoder against it.
    /// Off by default: on the held-out set through mu-law it ranked the
    /// right intent first for 5 of 16 such turns (docs/benchmarks.md).
    pub acoustic: bool,
    /// How many of the closest intents (by embeddings) are scored...
    pub acoustic_intents: usize,
    /// ...each by this many of its phrases, the closest first...
    pub acoustic_phrases: usize,
    /// ...each intent at least this similar to the utterance.
    pub acoustic_floor: f32,
    /// How far (mean log-probability per token) the best intent's phrase
    /// must lead the runner-up's to be taken.
    pub acoustic_margin: f32,
    /// How far the best phrase may fall below Whisper's own transcript: a
    /// phrase much less likely than what Whisper heard explains it badly.
    pub acoustic_max_gap: f32,
}

impl Default for RecognitionSettings {
    fn default() -> Self {
        // Tuned on tests/fixtures/bundles/demo_tuning.yaml with all-MiniLM-L6-v2.
        RecognitionSettings {
            embedding_accept: 0.42,
            embedding_margin: 0.05,
            llm_classify: true,
            llm_candidates: 3,
            llm_floor: 0.35,
            llm_slots: true,
            acoustic: false,
            acoustic_intents: 3,
            acoustic_phrases: 2,
            acoustic_floor: 0.2,
            acoustic_margin: 0.25,
            acoustic_max_gap: 1.0,
        }
    }
}

/// Free-form answers from `knowledge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnowledgeSettings {
    /// Answer from the `knowledge` facts when no intent matches (off: never).
    pub enabled: bool,
    /// Let the LLM word the answer (checked by the guard); off: speak the best fact.
    pub llm_answers: bool,
    /// Similarity a fact needs to count as relevant (embeddings; lexical overlap without them).
    pub min_similarity: f32,
    /// Facts given to the LLM.
    pub top_k: usize,
    /// How long the LLM may take to word an answer; past it the best fact is
    /// said verbatim (after three overruns in a row the LLM is only tried on
    /// every tenth answer, until it is fast enough again).
    pub llm_budget_ms: u32,
    /// When the guard rejects the LLM's answer.
    pub on_guard_reject: GuardFallback,
    /// Said after an answer when no slot is pending.
    pub followup: Prompts,
}

impl Default for KnowledgeSettings {
    fn default() -> Self {
        KnowledgeSettings {
            enabled: true,
            llm_answers: true,
            min_similarity: 0.45,
            top_k: 3,
            llm_budget_ms: 1500,
            on_guard_reject: GuardFallback::BestFact,
            followup: Prompts(vec![Text::text(
                "Is there anything else I can help you with?",
            )]),
        }
    }
}

/// What to do when the guard rejects the LLM's answer (`on_guard_reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardFallback {
    /// Speak the most relevant fact verbatim.
    BestFact,
    /// Say the handoff prompt and transfer to the handoff target.
    Handoff,
}

// ---------------------------------------------------------------- targets, entities, intents

/// A human destination. `uri` is a SIP URI (`sip:agents@pbx.example.com`),
/// a `tel:` URI or a phone number (`+15551234567`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferTarget {
    /// A SIP URI, a `tel:` URI or a phone number (see [`TransferTarget::destination`]).
    pub uri: String,
    /// Who the target is, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl TransferTarget {
    /// The URI a SIP REFER would carry: phone numbers become `tel:` URIs.
    pub fn destination(&self) -> String {
        let uri = self.uri.trim();
        if uri.starts_with('+') || uri.starts_with(|c: char| c.is_ascii_digit()) {
            format!("tel:{}", uri.replace([' ', '-', '(', ')', '.'], ""))
        } else {
            uri.to_string()
        }
    }
}

/// The type of a slot's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Entity {
    /// A digit string (order, account, PIN...), spoken in any form or keyed in;
    /// spoken back digit by digit.
    Digits {
        /// Fewest digits a value may have (default 1).
        #[serde(default = "one")]
        min_digits: usize,
        /// Most digits a value may have (default 20).
        #[serde(default = "twenty")]
        max_digits: usize,
    },
    /// One of a closed set of values, each with synonyms.
    List {
        /// The allowed values with their synonyms (one list, or one per language).
        values: Localized<Vec<EntityValue>>,
    },
    /// A regular expression over the transcript (group 1 if it has one).
    Regex {
        /// The regular expression (Rust `regex` syntax).
        pattern: String,
    },
    /// Whatever the caller says.
    Any,
}

fn one() -> usize {
    1
}
fn twenty() -> usize {
    20
}

/// `small` or `{value: large, synonyms: [big, XL]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityValue {
    /// The canonical value: what the slot is filled with.
    pub value: String,
    /// Other words for the value, matched as whole words like it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
}

impl<'de> Deserialize<'de> for EntityValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(deserialize_with = "required_scalar")]
            value: String,
            #[serde(default)]
            synonyms: Vec<String>,
        }
        match Value::deserialize(d)? {
            v @ Value::Mapping(_) => serde_norway::from_value::<Full>(v)
                .map(|f| EntityValue {
                    value: f.value,
                    synonyms: f.synonyms,
                })
                .map_err(D::Error::custom),
            v => scalar_string(&v)
                .map(|value| EntityValue {
                    value,
                    synonyms: vec![],
                })
                .ok_or_else(|| {
                    D::Error::custom("an entity value is a string or {value, synonyms}")
                }),
        }
    }
}

fn required_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    opt_scalar(d)?.ok_or_else(|| D::Error::custom("expected a string or a number"))
}

/// What a caller may want. Training phrases feed the embedding matcher and the
/// exact/contains rules; keywords only the contains rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// One line for the LLM classifier (and for humans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Text>,
    /// Training phrases (one list, or one per language).
    #[serde(default)]
    pub phrases: Localized<Vec<String>>,
    /// Words or short phrases that alone identify the intent ("agent", "opening hours").
    #[serde(default)]
    pub keywords: Localized<Vec<String>>,
    /// What the intent is about, as a short noun phrase ("an order", "a
    /// return"): used to confirm when recognition is unsure ("Just to check:
    /// is that about a return?", or a choice between two; `settings.confirm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<Text>,
    /// The yes/no question that confirms this intent, when the generated one
    /// ("Just to check: is that about {topic}?") does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm: Option<Text>,
}

// ---------------------------------------------------------------- flow

/// The conversation graph: states, and transitions that apply everywhere.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// The state a call begins in.
    pub start: String,
    /// Transitions active in every state (checked after the state's own).
    #[serde(default)]
    pub global: Vec<Transition>,
    /// The states, by name.
    pub states: BTreeMap<String, State>,
}

impl Flow {
    /// The intents each state listens for: its own transitions' and the
    /// global ones. The recognizer only chooses among these, so "yes" after
    /// one question and "yes" after another are different intents.
    pub fn listening(&self) -> BTreeMap<String, BTreeSet<String>> {
        let global: BTreeSet<String> = self
            .global
            .iter()
            .filter_map(|t| t.intent.clone())
            .collect();
        self.states
            .iter()
            .map(|(name, s)| {
                let mut set = global.clone();
                set.extend(s.transitions.iter().filter_map(|t| t.intent.clone()));
                (name.clone(), set)
            })
            .collect()
    }
}

/// A step of the conversation. On entry it says `say`, clears and collects
/// its slots (asking for each missing one), runs `lookup`, then takes the
/// first transition without an intent/DTMF trigger whose `if` holds; if none
/// holds it listens and routes the caller's answer by intent or key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// What the state is for, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Said on entry.
    #[serde(default, skip_serializing_if = "Prompts::is_empty")]
    pub say: Prompts,
    /// Repeated after a no-match/no-input prompt while this state listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprompt: Option<Text>,
    /// Slots to fill, in order, before `lookup` and the automatic transitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collect: Vec<Collect>,
    /// A table lookup run once every slot is filled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<Lookup>,
    /// Moves out of the state; the first that applies wins (before `flow.global`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
    /// Overrides `settings.barge_in` while this state listens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in: Option<bool>,
    /// Overrides `settings.no_input.timeout_ms` for this state, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_input_timeout_ms: Option<u32>,
}

/// Ask for a slot until it is filled (or `max_attempts` runs out).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collect {
    /// Name of the slot the answer fills.
    pub slot: String,
    /// Name of an entry in `entities`.
    pub entity: String,
    /// The question for the slot; may be empty when the state that led here asked it.
    pub prompt: Text,
    /// Said after an answer that did not fill the slot (1st, 2nd...; the last repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reprompts: Vec<Text>,
    /// Answers allowed before `on_fail` (default: `settings.no_match.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Default: the no-match escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<Transition>,
}

/// Look `key`'s slot value up in table `table`; on a hit every column of the
/// row becomes slot `<into>.<column>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lookup {
    /// Name of a table in `data`.
    pub table: String,
    /// The slot whose value is looked up in the table's key column.
    pub key: String,
    /// Prefix of the slots the found row fills (`<into>.<column>`).
    pub into: String,
}

/// A move: triggered by an intent, a DTMF key string, a condition, or
/// nothing (always); it may say something, then goes `to` a state,
/// transfers, or ends the call (exactly one of the three).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    /// Taken when this intent is recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Taken when these keys are pressed (`"0"`, `"*9"`).
    #[serde(
        default,
        deserialize_with = "opt_scalar",
        skip_serializing_if = "Option::is_none"
    )]
    pub dtmf: Option<String>,
    /// `if`: a test on slots; an automatic transition is taken only when it holds.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// Said before moving.
    #[serde(default, skip_serializing_if = "Prompts::is_empty")]
    pub say: Prompts,
    /// The state to go to, or `@return` / `@back`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Name of a transfer target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
    /// Hang up (after `say`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
    /// Enter `to` as a sub-flow: a later `to: "@return"` comes back to the
    /// state this transition was taken in (Dialogflow CX flow-to-flow moves).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub call: bool,
    /// Slots set (a value) or cleared (`null`) when the transition is taken,
    /// before it moves (Dialogflow CX parameter presets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, Option<String>>,
}

/// `to` target: back to the state that called the current sub-flow (a
/// transition with `call: true`); with no caller left, the call ends.
pub const RETURN_TARGET: &str = "@return";
/// `to` target: back to the state the conversation was in before this one.
pub const BACK_TARGET: &str = "@back";

impl Transition {
    /// Taken on entry/after slot filling rather than on caller input.
    pub fn is_automatic(&self) -> bool {
        self.intent.is_none() && self.dtmf.is_none()
    }
}

/// A test on slots: `{filled: order.status}`, `{equals: {slot: x, value: y}}`, `{not: ...}`...
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ConditionRepr", into = "ConditionRepr")]
pub enum Condition {
    /// The slot has a non-empty value.
    Filled(String),
    /// The slot is unset or empty.
    Empty(String),
    /// The slot's value equals `value` (trimmed, ASCII case ignored).
    Equals {
        /// The slot compared.
        slot: String,
        /// The value it must equal.
        value: String,
    },
    /// Every condition holds.
    All(Vec<Condition>),
    /// At least one condition holds.
    Any(Vec<Condition>),
    /// The condition does not hold.
    Not(Box<Condition>),
}

/// The file shape of a condition: a map with exactly one key (serde_norway
/// reads enums only from `!tags`, which designers should not need).
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConditionRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    empty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<EqualsRepr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<Condition>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EqualsRepr {
    slot: String,
    #[serde(deserialize_with = "required_scalar")]
    value: String,
}

impl TryFrom<ConditionRepr> for Condition {
    type Error = String;
    fn try_from(r: ConditionRepr) -> Result<Self, String> {
        let mut found = vec![];
        if let Some(s) = r.filled {
            found.push(Condition::Filled(s));
        }
        if let Some(s) = r.empty {
            found.push(Condition::Empty(s));
        }
        if let Some(e) = r.equals {
            found.push(Condition::Equals {
                slot: e.slot,
                value: e.value,
            });
        }
        if let Some(c) = r.all {
            found.push(Condition::All(c));
        }
        if let Some(c) = r.any {
            found.push(Condition::Any(c));
        }
        if let Some(c) = r.not {
            found.push(Condition::Not(c));
        }
        match found.len() {
            1 => Ok(found.pop().unwrap()),
            _ => Err("a condition has exactly one of filled, empty, equals, all, any, not".into()),
        }
    }
}

impl From<Condition> for ConditionRepr {
    fn from(c: Condition) -> Self {
        let mut r = ConditionRepr::default();
        match c {
            Condition::Filled(s) => r.filled = Some(s),
            Condition::Empty(s) => r.empty = Some(s),
            Condition::Equals { slot, value } => r.equals = Some(EqualsRepr { slot, value }),
            Condition::All(c) => r.all = Some(c),
            Condition::Any(c) => r.any = Some(c),
            Condition::Not(c) => r.not = Some(c),
        }
        r
    }
}

impl Condition {
    /// Whether the condition holds for these slot values.
    pub fn holds(&self, slots: &BTreeMap<String, String>) -> bool {
        let filled = |s: &str| slots.get(s).is_some_and(|v| !v.is_empty());
        match self {
            Condition::Filled(s) => filled(s),
            Condition::Empty(s) => !filled(s),
            Condition::Equals { slot, value } => slots
                .get(slot)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case(value.trim())),
            Condition::All(cs) => cs.iter().all(|c| c.holds(slots)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(slots)),
            Condition::Not(c) => !c.holds(slots),
        }
    }

    /// Every slot name the condition reads.
    pub fn slots(&self) -> Vec<&str> {
        match self {
            Condition::Filled(s) | Condition::Empty(s) | Condition::Equals { slot: s, .. } => {
                vec![s.as_str()]
            }
            Condition::All(cs) | Condition::Any(cs) => {
                cs.iter().flat_map(Condition::slots).collect()
            }
            Condition::Not(c) => c.slots(),
        }
    }
}

/// A lookup table: rows of columns, one of them the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The key column: `lookup` finds the row whose value here matches its slot.
    pub key: String,
    /// The rows, column name to value (numbers read as strings).
    #[serde(deserialize_with = "scalar_rows")]
    pub rows: Vec<BTreeMap<String, String>>,
}

// ---------------------------------------------------------------- tests

/// A scripted conversation and what the bot must do at each turn.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConversation {
    /// Names the test in reports.
    pub name: String,
    /// Case-insensitive fragments the greeting must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub greeting_contains: Vec<String>,
    /// The caller's inputs in order, each with what the bot must do.
    pub turns: Vec<TestTurn>,
}

/// One caller input (`user`, `dtmf` or `no_input`) and the expectations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestTurn {
    /// What the caller says (as transcribed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Keys the caller presses.
    #[serde(
        default,
        deserialize_with = "opt_scalar",
        skip_serializing_if = "Option::is_none"
    )]
    pub dtmf: Option<String>,
    /// The caller says nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_input: bool,
    /// Expected intent; `none` means no intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// Case-insensitive fragments the reply must contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_contains: Vec<String>,
    /// Expected action after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionKind>,
    /// Expected transfer target name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Slots that must hold these values after the turn.
    #[serde(
        default,
        deserialize_with = "scalar_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub slots: BTreeMap<String, String>,
    /// The state the conversation must be in after the turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// What the bot does after a turn, as a test expects it (`action:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Waits for the caller's next input.
    Listen,
    /// Hands the call to a transfer target.
    Transfer,
    /// Ends the call.
    Hangup,
}
