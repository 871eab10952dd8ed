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

mod locale;
mod steps;
use steps::*;

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

/// Import a Lex V2 `LexJson` export; constructs not carried over are warned in `w`.
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
