//! Amazon Lex V2 `LexJson` export -> bundle.
//!
//! | Lex V2 | here |
//! |---|---|
//! | `BotLocales/<locale>/` (all of them) | `bot.language` (en_US if present, else the first), `bot.languages` |
//! | intent + `sampleUtterances` (`{Slot}` filled with a sample value) | intent + per-language phrases |
//! | custom slot type values + synonyms / regex filter | entity `list` / `regex` |
//! | built-in slot types (`AMAZON.Number`, `AMAZON.Date`...) | system entities (dates kept as said, warned) |
//! | intent | state named after it, reached from anywhere (`flow.global`) |
//! | initial response | the state's `say` |
//! | required slots in `slotPriorities` order, elicitation prompt, `maxRetries` | `collect` (prompt, `max_attempts`) |
//! | confirmation prompt / declination response | state `<Intent> (confirm)` with yes/no transitions |
//! | closing response; next step `EndConversation` / `ElicitIntent` | automatic transition: `say`, then `end` / back to `main` |
//! | `allowInterrupt`, `startTimeoutMs`, DTMF `endCharacter` | state `barge_in`, `no_input_timeout_ms`, `settings.dtmf.terminator` |
//! | `AMAZON.FallbackIntent` responses | `settings.no_match.prompts` |
//!
//! Warned, not carried: Lambda code hooks, message variations beyond the
//! first, built-in intents other than the fallback (repeat, help, cancel...),
//! conditional branches, session attributes, the cloud voice. A Lex bot has
//! no greeting of its own (Amazon Connect plays one before it): the start
//! state `main` says nothing unless the designer adds a greeting.

use super::{
    ident, json_arr, json_str, localized_text, parse_json, slot_ident, strip_ssml,
    use_system_entity, ExportFiles, ExportFormat, ImportError, Languages, PerLang, Warnings,
    NO_PHRASES, YES_PHRASES,
};
use crate::dialog::bundle::{
    BotInfo, Collect, Entity, EntityValue, Flow, Intent, Localized, Prompts, State, Text,
    Transition, FORMAT_V1,
};
use crate::dialog::Bundle;
use serde_json::Value;
use std::collections::BTreeMap;

const FORMAT: ExportFormat = ExportFormat::LexV2;
const MAIN: &str = "main";
const YES: &str = "confirm_yes";
const NO: &str = "confirm_no";

pub fn import(files: &ExportFiles, w: &mut Warnings) -> Result<Bundle, ImportError> {
    let missing = |detail: &str| ImportError::Missing {
        format: FORMAT.label(),
        origin: files.origin().into(),
        detail: detail.into(),
    };
    let bot_json = files
        .paths()
        .filter(|p| p.ends_with("Bot.json") && p.rsplit('/').next() == Some("Bot.json"))
        .min_by_key(|p| p.matches('/').count())
        .map(str::to_string)
        .ok_or_else(|| {
            missing("no <Bot>/Bot.json: export the bot (not a single locale) in the LexJson format")
        })?;
    let root = bot_json.trim_end_matches("Bot.json").to_string();
    let bot = parse_json(files, FORMAT, &bot_json)?;
    if let Some(m) = files.get_ci("Manifest.json") {
        let manifest: Value = serde_json::from_slice(m).unwrap_or_default();
        if let Some(ff) = manifest["metaData"]["fileFormat"]
            .as_str()
            .filter(|f| *f != "LexJson")
        {
            return Err(missing(&format!(
                "Manifest.json says fileFormat {ff}; export again choosing LexJson"
            )));
        }
    }
    let locales_dir = format!("{root}BotLocales");
    let mut locales: Vec<String> = files
        .under(&locales_dir)
        .filter(|p| p.ends_with("/BotLocale.json"))
        .map(|p| {
            p[locales_dir.len() + 1..]
                .split('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    locales.sort();
    locales.dedup();
    if locales.is_empty() {
        return Err(missing("no BotLocales/<locale>/BotLocale.json: the bot has no language; build a locale and export again"));
    }
    let default_locale = locales
        .iter()
        .find(|l| *l == "en_US")
        .unwrap_or(&locales[0])
        .clone();
    let langs = Languages::new(&default_locale, locales.iter().map(String::as_str));
    let mut lex = Lex {
        files,
        w,
        langs,
        entities: BTreeMap::new(),
    };

    let mut bundle = Bundle {
        format: FORMAT_V1.into(),
        bot: BotInfo {
            name: json_str(&bot, "name").unwrap_or("Lex bot").to_string(),
            description: json_str(&bot, "description").map(str::to_string),
            version: json_str(&bot, "version").map(str::to_string),
            language: lex.langs.default.clone(),
            languages: lex.langs.others(),
            source: BTreeMap::new(),
        },
        settings: Default::default(),
        transfer_targets: BTreeMap::new(),
        entities: BTreeMap::new(),
        intents: BTreeMap::new(),
        flow: Flow {
            start: MAIN.into(),
            global: vec![],
            states: BTreeMap::new(),
        },
        knowledge: vec![],
        data: BTreeMap::new(),
        tests: vec![],
    };
    if let Some(id) = json_str(&bot, "identifier") {
        bundle.bot.source.insert("bot_id".into(), id.into());
    }

    // Per locale: read everything, keyed by intent name; the default locale decides the flow.
    let mut per_locale: BTreeMap<String, LocaleData> = BTreeMap::new();
    for locale in &locales {
        let data = lex.locale(&format!("{locales_dir}/{locale}"), locale, &mut bundle)?;
        per_locale.insert(lex.langs.code(locale), data);
    }
    let default = per_locale
        .remove(&lex.langs.default)
        .expect("the default locale was read");
    let others: Vec<(String, LocaleData)> = per_locale.into_iter().collect();
    let text_in_all =
        |lex: &mut Lex, get: &dyn Fn(&LocaleData) -> Option<String>, at: &str| -> Option<Text> {
            let mut texts = PerLang::default();
            *texts.entry(&lex.langs.default) = get(&default)?;
            for (lang, d) in &others {
                if let Some(t) = get(d) {
                    *texts.entry(lang) = t;
                }
            }
            localized_text(texts, &lex.langs, at, lex.w)
        };

    let mut needs_yes_no = false;
    for (name, intent) in &default.intents {
        let at = intent.file.clone();
        let mut phrases: PerLang<Vec<String>> = PerLang::default();
        *phrases.entry(&lex.langs.default) = intent.phrases.clone();
        for (lang, d) in &others {
            if let Some(i) = d.intents.get(name) {
                *phrases.entry(lang) = i.phrases.clone();
            }
        }
        bundle.intents.insert(
            name.clone(),
            Intent {
                description: intent.description.clone().map(Text::text),
                phrases: phrases.partial(&lex.langs),
                keywords: Default::default(),
                ..Default::default()
            },
        );
        let say_of = |lex: &mut Lex, field: fn(&LexIntent) -> &Vec<String>, at: &str| -> Prompts {
            let n = field(intent).len();
            Prompts(
                (0..n)
                    .filter_map(|k| {
                        text_in_all(
                            lex,
                            &|d: &LocaleData| {
                                d.intents.get(name).and_then(|i| field(i).get(k).cloned())
                            },
                            at,
                        )
                    })
                    .collect(),
            )
        };
        let mut state = State {
            description: intent.description.clone(),
            say: say_of(&mut lex, |i| &i.initial, &at),
            barge_in: intent.barge_in,
            no_input_timeout_ms: intent.start_timeout_ms,
            ..Default::default()
        };
        for (k, slot) in intent.slots.iter().enumerate() {
            let prompt = text_in_all(
                &mut lex,
                &|d: &LocaleData| {
                    d.intents
                        .get(name)
                        .and_then(|i| i.slots.get(k))
                        .and_then(|s| s.prompt.clone())
                },
                &slot.file,
            );
            let Some(prompt) = prompt else {
                lex.w.warn(
                    &slot.file,
                    format!(
                        "slot `{}` has no text prompt: it is not asked for",
                        slot.name
                    ),
                );
                continue;
            };
            state.collect.push(Collect {
                slot: slot.name.clone(),
                entity: slot.entity.clone(),
                prompt,
                reprompts: vec![],
                max_attempts: slot.max_retries.map(|r| r + 1),
                on_fail: None,
            });
        }
        let closing = say_of(&mut lex, |i| &i.closing, &at);
        let finish = |say: Prompts, end: bool| Transition {
            say,
            end,
            to: (!end).then(|| MAIN.to_string()),
            ..Default::default()
        };
        if intent.confirmation.is_empty() {
            state.transitions.push(finish(closing, intent.ends));
        } else {
            needs_yes_no = true;
            let confirm_name = format!("{name} (confirm)");
            state.transitions.push(Transition {
                to: Some(confirm_name.clone()),
                ..Default::default()
            });
            let confirm = State {
                description: Some(format!("{name}: confirmation")),
                say: say_of(&mut lex, |i| &i.confirmation, &at),
                transitions: vec![
                    Transition {
                        intent: Some(YES.into()),
                        ..finish(closing, intent.ends)
                    },
                    Transition {
                        intent: Some(NO.into()),
                        ..finish(
                            say_of(&mut lex, |i| &i.declination, &at),
                            intent.declination_ends,
                        )
                    },
                ],
                ..Default::default()
            };
            bundle.flow.states.insert(confirm_name, confirm);
        }
        bundle.flow.global.push(Transition {
            intent: Some(name.clone()),
            to: Some(name.clone()),
            ..Default::default()
        });
        bundle.flow.states.insert(name.clone(), state);
    }
    if !default.fallback.is_empty() {
        bundle.settings.no_match.prompts = default
            .fallback
            .iter()
            .map(|t| Text::text(t.clone()))
            .collect();
    }
    if needs_yes_no {
        for (name, phrases, what) in [(YES, YES_PHRASES, "yes"), (NO, NO_PHRASES, "no")] {
            bundle.intents.insert(
                name.into(),
                Intent {
                    description: Some(Text::text(format!(
                        "The caller answers {what} to a confirmation question."
                    ))),
                    phrases: Localized::One(phrases.iter().map(|s| s.to_string()).collect()),
                    keywords: Default::default(),
                    ..Default::default()
                },
            );
        }
        if !lex.langs.others().is_empty() {
            lex.w.warn("confirmations", "confirmation answers are recognised from English yes/no phrases; add phrases for the other languages");
        }
    }
    bundle.flow.states.insert(
        MAIN.into(),
        State {
            description: Some("listening for any intent (Lex bots do not greet)".into()),
            ..Default::default()
        },
    );
    lex.w.warn(
        &bot_json,
        "a Lex bot has no greeting (the contact flow plays one before it): the local bot starts listening in silence; add `say` to state `main` if callers need one",
    );
    bundle.entities = std::mem::take(&mut lex.entities);
    Ok(bundle)
}

struct Lex<'a> {
    files: &'a ExportFiles,
    w: &'a mut Warnings,
    langs: Languages,
    entities: BTreeMap<String, Entity>,
}

#[derive(Default)]
struct LocaleData {
    intents: BTreeMap<String, LexIntent>,
    fallback: Vec<String>,
}

#[derive(Default)]
struct LexIntent {
    file: String,
    description: Option<String>,
    phrases: Vec<String>,
    initial: Vec<String>,
    slots: Vec<LexSlot>,
    confirmation: Vec<String>,
    declination: Vec<String>,
    closing: Vec<String>,
    ends: bool,
    declination_ends: bool,
    barge_in: Option<bool>,
    start_timeout_ms: Option<u32>,
}

struct LexSlot {
    file: String,
    name: String,
    entity: String,
    prompt: Option<String>,
    max_retries: Option<u32>,
}

impl Lex<'_> {
    fn locale(
        &mut self,
        dir: &str,
        locale: &str,
        bundle: &mut Bundle,
    ) -> Result<LocaleData, ImportError> {
        let meta = parse_json(self.files, FORMAT, &format!("{dir}/BotLocale.json"))?;
        if let Some(voice) = json_str(&meta["voiceSettings"], "voiceId") {
            self.w.warn(
                format!("{dir}/BotLocale.json voiceSettings"),
                format!("the cloud voice {voice} is not available: the local voice speaks"),
            );
            bundle
                .bot
                .source
                .insert(format!("voice_{locale}"), voice.into());
        }
        // Slot types first: utterances and slots refer to them.
        let mut samples: BTreeMap<String, String> = BTreeMap::new();
        let type_files: Vec<String> = self
            .files
            .under(&format!("{dir}/SlotTypes"))
            .filter(|p| p.ends_with("/SlotType.json"))
            .map(str::to_string)
            .collect();
        for path in type_files {
            let t = parse_json(self.files, FORMAT, &path)?;
            let name = ident(json_str(&t, "name").unwrap_or("slot_type"));
            let mut values = vec![];
            for v in json_arr(&t, "slotTypeValues") {
                let value = v["sampleValue"]["value"].as_str().unwrap_or("").to_string();
                let synonyms = json_arr(v, "synonyms")
                    .iter()
                    .filter_map(|s| json_str(s, "value"))
                    .map(str::to_string)
                    .collect();
                values.push(EntityValue { value, synonyms });
            }
            if let Some(first) = values.first() {
                samples.insert(name.clone(), first.value.clone());
            }
            let selection = &t["valueSelectionSetting"];
            let entity = if let Some(pattern) = selection["regexFilter"]["pattern"].as_str() {
                Entity::Regex {
                    pattern: pattern.into(),
                }
            } else if let Some(parent) = json_str(&t, "parentSlotTypeSignature") {
                match super::system_entity(parent) {
                    Some((_, e, _)) => e,
                    None => Entity::Any,
                }
            } else {
                if json_str(selection, "resolutionStrategy") == Some("OriginalValue")
                    || json_str(selection, "resolutionStrategy") == Some("ORIGINAL_VALUE")
                {
                    self.w.warn(&path, "expands values (ORIGINAL_VALUE): only the listed values and synonyms match here");
                }
                Entity::List {
                    values: Localized::One(values),
                }
            };
            // Same type in several locales: values per language.
            let lang = self.langs.code(locale);
            match (self.entities.get_mut(&name), entity) {
                (
                    Some(Entity::List { values: existing }),
                    Entity::List {
                        values: Localized::One(new),
                    },
                ) => {
                    let mut map = match std::mem::take(existing) {
                        Localized::One(v) => BTreeMap::from([(self.langs.default.clone(), v)]),
                        Localized::ByLang(m) => m,
                    };
                    map.insert(lang, new);
                    *existing = Localized::ByLang(map);
                }
                (Some(_), _) => {}
                (None, e) => {
                    self.entities.insert(name, e);
                }
            }
        }

        let mut data = LocaleData::default();
        let intent_files: Vec<String> = self
            .files
            .under(&format!("{dir}/Intents"))
            .filter(|p| p.ends_with("/Intent.json"))
            .map(str::to_string)
            .collect();
        for path in intent_files {
            let doc = parse_json(self.files, FORMAT, &path)?;
            let name = ident(json_str(&doc, "name").unwrap_or("intent"));
            let signature = json_str(&doc, "parentIntentSignature");
            let mut intent = LexIntent {
                file: path.clone(),
                description: json_str(&doc, "description").map(str::to_string),
                ..Default::default()
            };
            intent.initial =
                self.messages(&doc["initialResponseSetting"]["initialResponse"], &path);
            intent.closing = self.messages(&doc["intentClosingSetting"]["closingResponse"], &path);
            for hook in [&doc["dialogCodeHook"], &doc["fulfillmentCodeHook"]] {
                if hook["enabled"].as_bool() == Some(true) {
                    self.w.warn(&path, "Lambda code hooks are not called by the local bot: what they would decide or say is missing");
                }
            }
            if !doc["initialResponseSetting"]["conditional"].is_null()
                || !doc["intentClosingSetting"]["conditional"].is_null()
            {
                self.w.warn(&path, "conditional branches are not imported");
            }
            match signature {
                Some("AMAZON.FallbackIntent") => {
                    data.fallback = intent
                        .initial
                        .iter()
                        .chain(&intent.closing)
                        .cloned()
                        .collect();
                    continue;
                }
                Some(other) => {
                    self.w.warn(
                        &path,
                        format!("built-in intent {other} has no equivalent here: skipped"),
                    );
                    continue;
                }
                None => {}
            }
            let slot_dir = format!("{}Slots", path.trim_end_matches("Intent.json"));
            let mut slots: BTreeMap<String, (String, Value)> = BTreeMap::new();
            for sp in self
                .files
                .under(&slot_dir)
                .filter(|p| p.ends_with("/Slot.json"))
                .map(str::to_string)
                .collect::<Vec<_>>()
            {
                let s = parse_json(self.files, FORMAT, &sp)?;
                slots.insert(json_str(&s, "name").unwrap_or("").to_string(), (sp, s));
            }
            let mut order: Vec<(u64, String)> = json_arr(&doc, "slotPriorities")
                .iter()
                .map(|p| {
                    (
                        p["priority"].as_u64().unwrap_or(u64::MAX),
                        json_str(p, "slotName").unwrap_or("").to_string(),
                    )
                })
                .collect();
            order.sort();
            for name in slots.keys() {
                if !order.iter().any(|(_, n)| n == name) {
                    order.push((u64::MAX, name.clone()));
                }
            }
            for (_, slot_name) in order {
                let Some((sp, s)) = slots.get(&slot_name) else {
                    self.w.warn(
                        &path,
                        format!(
                            "slotPriorities names slot `{slot_name}`, which is not in the export"
                        ),
                    );
                    continue;
                };
                let elicit = &s["valueElicitationSetting"];
                if json_str(elicit, "slotConstraint") != Some("Required") {
                    self.w
                        .warn(sp, format!("optional slot `{slot_name}` is not asked for"));
                    continue;
                }
                let type_name = json_str(s, "slotTypeName").unwrap_or("AMAZON.FreeFormInput");
                let entity = if type_name.starts_with("AMAZON.") {
                    use_system_entity(&mut self.entities, type_name, sp, self.w)
                        .unwrap_or_else(|| "sys_any".into())
                } else {
                    ident(type_name)
                };
                let spec = &elicit["promptSpecification"];
                let prompt = self.messages(spec, sp).into_iter().next();
                self.input_spec(spec, &mut intent, sp, bundle);
                intent.slots.push(LexSlot {
                    file: sp.clone(),
                    name: slot_ident(&slot_name),
                    entity,
                    prompt,
                    max_retries: spec["maxRetries"].as_u64().map(|r| r as u32),
                });
            }
            let confirm = &doc["intentConfirmationSetting"];
            if confirm["active"]
                .as_bool()
                .or(confirm["isActive"].as_bool())
                .unwrap_or(!confirm.is_null())
                && !confirm.is_null()
            {
                intent.confirmation = self.messages(&confirm["promptSpecification"], &path);
                intent.declination = self.messages(&confirm["declinationResponse"], &path);
                intent.declination_ends =
                    next_step_ends(&confirm["declinationNextStep"]).unwrap_or(true);
                if let Some(ends) = next_step_ends(&confirm["confirmationNextStep"]) {
                    intent.ends = ends;
                }
            }
            let closing_next = next_step_ends(&doc["intentClosingSetting"]["nextStep"]);
            intent.ends = closing_next.unwrap_or(
                intent.ends || intent.confirmation.is_empty() && !intent.slots.is_empty(),
            );
            let samples_for = |u: &str| fill_slot_refs(u, &slots, &samples);
            intent.phrases = json_arr(&doc, "sampleUtterances")
                .iter()
                .filter_map(|u| json_str(u, "utterance"))
                .map(samples_for)
                .filter(|s| !s.is_empty())
                .collect();
            data.intents.insert(name, intent);
        }
        Ok(data)
    }

    /// Timeouts, barge-in and DTMF settings from a prompt specification.
    fn input_spec(&mut self, spec: &Value, intent: &mut LexIntent, at: &str, bundle: &mut Bundle) {
        if spec["allowInterrupt"].as_bool() == Some(false) {
            intent.barge_in = Some(false);
        }
        let initial = &spec["promptAttemptsSpecification"]["Initial"];
        let av = &initial["audioAndDTMFInputSpecification"];
        if intent.start_timeout_ms.is_none() {
            intent.start_timeout_ms = av["startTimeoutMs"].as_u64().map(|ms| ms as u32);
        }
        if let Some(end) = av["dtmfSpecification"]["endCharacter"].as_str() {
            bundle.settings.dtmf.terminator = end.to_string();
        }
        if av["dtmfSpecification"]["deletionCharacter"]
            .as_str()
            .is_some()
        {
            self.w.warn(
                at,
                "the DTMF deletion character is not supported: keyed entries cannot be corrected",
            );
        }
        if initial["allowedInputTypes"]["allowDTMFInput"].as_bool() == Some(false) {
            self.w.warn(at, "DTMF input is not disabled per slot here");
        }
    }

    /// Texts of a response / prompt specification (one per message group).
    fn messages(&mut self, v: &Value, at: &str) -> Vec<String> {
        let mut out = vec![];
        for group in json_arr(v, "messageGroupsList")
            .iter()
            .chain(json_arr(v, "messageGroups"))
        {
            if !json_arr(group, "variations").is_empty() {
                self.w.warn(
                    at,
                    "message variations: the local bot always says the first message",
                );
            }
            let m = &group["message"];
            if let Some(t) = m["plainTextMessage"]["value"].as_str() {
                out.push(t.to_string());
            } else if let Some(t) = m["ssmlMessage"]["value"].as_str() {
                self.w.warn(
                    at,
                    "SSML markup removed: the local voice says the plain text",
                );
                out.push(strip_ssml(t).unwrap_or_else(|| t.to_string()));
            } else if !m["customPayload"].is_null() || !m["imageResponseCard"].is_null() {
                self.w.warn(
                    at,
                    "custom payloads and response cards have no voice equivalent: ignored",
                );
            }
        }
        out
    }
}

/// Whether a Lex next step ends the conversation (`None`: not given).
fn next_step_ends(step: &Value) -> Option<bool> {
    match step["dialogAction"]["type"].as_str()? {
        "EndConversation" => Some(true),
        _ => Some(false),
    }
}

/// `I want {FlowerType}` -> `I want roses`: a slot reference in a training
/// phrase becomes a sample value of its type (or goes, when it has none).
fn fill_slot_refs(
    utterance: &str,
    slots: &BTreeMap<String, (String, Value)>,
    samples: &BTreeMap<String, String>,
) -> String {
    let re = regex::Regex::new(r"\{([^}]+)\}").unwrap();
    let filled = re.replace_all(utterance, |c: &regex::Captures| {
        let type_name = slots
            .get(&c[1])
            .and_then(|(_, s)| json_str(s, "slotTypeName"))
            .map(ident);
        type_name
            .and_then(|t| samples.get(&t).cloned())
            .unwrap_or_default()
    });
    filled.split_whitespace().collect::<Vec<_>>().join(" ")
}
