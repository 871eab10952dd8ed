//! Dialogflow ES export zip -> bundle.
//!
//! ES has no pages: an intent answers, sets output contexts, and intents
//! that require those contexts (follow-ups) become matchable. Mapped as:
//!
//! | ES | here |
//! |---|---|
//! | `agent.json` `language`, `supportedLanguages` | `bot.language`, `bot.languages` |
//! | intent + `<intent>_usersays_<lang>.json` | intent + per-language phrases |
//! | entity + `<entity>_entries_<lang>.json` (map / enumeration / regexp) | entity `list` / `list` / `regex` |
//! | intent's response | state named after the intent: `say` |
//! | required parameters with prompts | that state's `collect`; the response is said once they are filled |
//! | intent without input contexts | `flow.global` transition to its state |
//! | follow-up intent (input contexts set by intent X) | transition in X's state |
//! | intent with event `WELCOME` / `TELEPHONY_WELCOME` | the start state (greeting) |
//! | Default Fallback Intent | `settings.no_match.prompts` |
//! | telephony transfer (message type 15) | `transfer_targets` + automatic `transfer:` |
//! | telephony speech (type 14, SSML stripped) and default-platform text (type 0) | `say` |
//! | end-of-conversation intents (`endIntentIds`, `endInteraction`) | automatic `end: true` |
//!
//! Warned, not carried: webhooks, text variants beyond the first, other
//! platforms' messages (Google Assistant, Facebook...), audio (type 13),
//! custom events, optional parameters, context lifespans (a follow-up stays
//! matchable while the caller is in its parent's state).

mod intent;

use super::{
    convert_placeholders, dedupe_entry_say, ident, json_arr, json_str, localized_text, parse_json,
    slot_ident, strip_ssml, use_system_entity, ExportFiles, ExportFormat, ImportError, Languages,
    PerLang, Warnings,
};
use crate::dialog::bundle::{
    BotInfo, Collect, Entity, EntityValue, Flow, Intent, Prompts, State, TransferTarget,
    Transition, FORMAT_V1,
};
use crate::dialog::Bundle;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const FORMAT: ExportFormat = ExportFormat::DialogflowEs;
const WELCOME_EVENTS: &[&str] = &["WELCOME", "TELEPHONY_WELCOME"];

/// One ES intent, read.
struct EsIntent {
    name: String,
    file: String,
    input_contexts: BTreeSet<String>,
    output_contexts: BTreeSet<String>,
    say: Prompts,
    transfer: Option<String>,
    end: bool,
    collect: Vec<Collect>,
    welcome: bool,
    fallback: bool,
}

/// Import a Dialogflow ES export; constructs not carried over are warned in `w`.
pub fn import(files: &ExportFiles, w: &mut Warnings) -> Result<Bundle, ImportError> {
    let agent = parse_json(files, FORMAT, "agent.json")?;
    let default_lang = json_str(&agent, "language").unwrap_or("en").to_string();
    let supported: Vec<String> = json_arr(&agent, "supportedLanguages")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let langs = Languages::new(&default_lang, supported.iter().map(String::as_str));
    let end_ids: BTreeSet<String> = json_arr(&agent["googleAssistant"], "endIntentIds")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    if agent["webhook"]["available"].as_bool() == Some(true) {
        w.warn("agent.json webhook", "the fulfillment webhook is not called by the local bot: intents that use it say only their static responses");
    }

    let mut es = Es {
        files,
        w,
        langs,
        entities: BTreeMap::new(),
        targets: BTreeMap::new(),
    };
    es.entities()?;
    let mut intents = BTreeMap::new();
    let mut read = vec![];
    let intent_files: Vec<String> = files
        .under("intents")
        .filter(|p| p.ends_with(".json") && !p.contains("_usersays_"))
        .map(str::to_string)
        .collect();
    for path in intent_files {
        let doc = es.json(&path)?;
        let (intent, read_intent) = es.intent(&doc, &path, &end_ids)?;
        if let Some(i) = intent {
            intents.insert(read_intent.name.clone(), i);
        }
        read.push(read_intent);
    }

    let mut bundle = Bundle {
        format: FORMAT_V1.into(),
        bot: BotInfo {
            name: json_str(&agent, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| super::dialogflow_cx::export_stem(files.origin())),
            description: json_str(&agent, "description")
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            version: None,
            language: es.langs.default.clone(),
            languages: es.langs.others(),
            source: BTreeMap::new(),
        },
        settings: Default::default(),
        transfer_targets: BTreeMap::new(),
        entities: BTreeMap::new(),
        intents,
        flow: Flow {
            start: String::new(),
            global: vec![],
            states: BTreeMap::new(),
        },
        knowledge: vec![],
        data: BTreeMap::new(),
        tests: vec![],
    };

    for i in &read {
        if i.fallback {
            if !i.input_contexts.is_empty() {
                es.w.warn(&i.file, "a fallback intent for a context is not supported: the bot-wide no-match prompts apply");
            } else if !i.say.is_empty() {
                bundle.settings.no_match.prompts = i.say.0.clone();
            }
            continue;
        }
        // Follow-ups of this intent: their input contexts are among its output contexts.
        let followups: Vec<Transition> = read
            .iter()
            .filter(|f| {
                !f.fallback
                    && !f.input_contexts.is_empty()
                    && f.input_contexts.is_subset(&i.output_contexts)
            })
            .map(|f| Transition {
                intent: Some(f.name.clone()),
                to: Some(f.name.clone()),
                ..Default::default()
            })
            .collect();
        let exit = |to: Option<String>| Transition {
            transfer: i.transfer.clone(),
            end: i.end && i.transfer.is_none(),
            to: to.filter(|_| i.transfer.is_none() && !i.end),
            ..Default::default()
        };
        let mut state = State {
            description: Some(format!("intent {}", i.name)),
            ..Default::default()
        };
        if i.collect.is_empty() {
            state.say = i.say.clone();
            if i.transfer.is_some() || i.end {
                state.transitions.push(exit(None));
            } else {
                state.transitions = followups;
            }
        } else {
            // The response comes once the parameters are filled.
            state.collect = i.collect.clone();
            let done = format!("{} (done)", i.name);
            let mut t = exit(Some(done.clone()));
            t.say = i.say.clone();
            state.transitions.push(t);
            if i.transfer.is_none() && !i.end {
                bundle.flow.states.insert(
                    done,
                    State {
                        description: Some(format!("after intent {}: listening", i.name)),
                        transitions: followups,
                        ..Default::default()
                    },
                );
            }
        }
        if i.input_contexts.is_empty() {
            bundle.flow.global.push(Transition {
                intent: Some(i.name.clone()),
                to: Some(i.name.clone()),
                ..Default::default()
            });
        } else if !read
            .iter()
            .any(|p| i.input_contexts.is_subset(&p.output_contexts))
        {
            es.w.warn(
                &i.file,
                format!(
                    "needs contexts {:?} that no intent sets: unreachable",
                    i.input_contexts
                ),
            );
        }
        bundle.flow.states.insert(i.name.clone(), state);
    }
    match read.iter().find(|i| i.welcome) {
        Some(welcome) => bundle.flow.start = welcome.name.clone(),
        None => {
            es.w.warn(
                "intents/",
                "no intent answers the WELCOME event: the local bot greets with silence",
            );
            bundle.flow.start = "start".into();
            bundle.flow.states.insert(
                "start".into(),
                State {
                    description: Some("call start".into()),
                    ..Default::default()
                },
            );
        }
    }
    bundle.entities = std::mem::take(&mut es.entities);
    bundle.transfer_targets = std::mem::take(&mut es.targets);
    dedupe_entry_say(&mut bundle);
    Ok(bundle)
}

struct Es<'a> {
    files: &'a ExportFiles,
    w: &'a mut Warnings,
    langs: Languages,
    entities: BTreeMap<String, Entity>,
    targets: BTreeMap<String, TransferTarget>,
}

impl Es<'_> {
    fn json(&self, path: &str) -> Result<Value, ImportError> {
        parse_json(self.files, FORMAT, path)
    }

    fn entities(&mut self) -> Result<(), ImportError> {
        let metas: Vec<String> = self
            .files
            .under("entities")
            .filter(|p| p.ends_with(".json") && !p.contains("_entries_"))
            .map(str::to_string)
            .collect();
        for path in metas {
            let meta = self.json(&path)?;
            let stem = path
                .trim_start_matches("entities/")
                .trim_end_matches(".json")
                .to_string();
            let name = json_str(&meta, "name").unwrap_or(&stem).to_string();
            let mut values: PerLang<Vec<EntityValue>> = PerLang::default();
            let mut patterns = vec![];
            let prefix = format!("entities/{stem}_entries_");
            let entries: Vec<String> = self
                .files
                .under("entities")
                .filter(|p| p.starts_with(&prefix))
                .map(str::to_string)
                .collect();
            // API.AI v1 exports keep the entries inside the entity, in the agent's language.
            let mut sources: Vec<(String, Value)> = vec![];
            if let Some(embedded) = meta.get("entries").filter(|e| e.is_array()) {
                sources.push((self.langs.default.clone(), embedded.clone()));
            }
            for entry_path in entries {
                let lang = self
                    .langs
                    .code(entry_path[prefix.len()..].trim_end_matches(".json"));
                sources.push((lang, self.json(&entry_path)?));
            }
            for (lang, doc) in sources {
                for e in doc.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    let value = json_str(e, "value").unwrap_or("").to_string();
                    let synonyms: Vec<String> = json_arr(e, "synonyms")
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| *s != value)
                        .map(str::to_string)
                        .collect();
                    if meta["isRegexp"].as_bool() == Some(true) {
                        patterns.push(value);
                    } else if meta["isEnumeration"].as_bool() == Some(true) {
                        values.entry(&lang).push(EntityValue {
                            value,
                            synonyms: vec![],
                        });
                    } else {
                        values.entry(&lang).push(EntityValue { value, synonyms });
                    }
                }
            }
            if meta["automatedExpansion"].as_bool() == Some(true)
                || meta["allowFuzzyExtraction"].as_bool() == Some(true)
            {
                self.w.warn(&path, "automated expansion / fuzzy matching are cloud features: only the listed values and synonyms match");
            }
            let entity = if meta["isRegexp"].as_bool() == Some(true) {
                Entity::Regex {
                    pattern: patterns.join("|"),
                }
            } else {
                if values.is_empty() {
                    self.w
                        .warn(&path, "has no entries; the caller's words are kept as said");
                    Entity::Any
                } else {
                    Entity::List {
                        values: values.partial(&self.langs),
                    }
                }
            };
            self.entities.insert(ident(&name), entity);
        }
        Ok(())
    }
}
