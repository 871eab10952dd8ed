//! Dialogflow CX JSON package -> bundle.
//!
//! | CX | here |
//! |---|---|
//! | `agent.json` `defaultLanguageCode`, `supportedLanguageCodes` | `bot.language`, `bot.languages` |
//! | `speechSettings.noSpeechTimeout`, `dtmfSettings` | `settings.no_input.timeout_ms`, `settings.dtmf` |
//! | intent + `trainingPhrases/<lang>.json` | intent + per-language phrases |
//! | entity type `KIND_MAP`/`KIND_LIST`/`KIND_REGEXP` | entity `list` (synonyms) / `list` / `regex` |
//! | page (`flows/<F>/pages/<P>.json`), flow start | state `F/P`, state `F/Start` |
//! | entry fulfillment text, `allowPlaybackInterruption` | state `say`, `barge_in` |
//! | form parameter (initial prompt, no-match reprompts) | `collect` (prompt, reprompts) |
//! | route: intent / condition; target page/flow; `END_SESSION` | transition: `intent` / `if`; `to`; `end` |
//! | flow-level intent routes, route groups | added to every page of the flow, after the page's own |
//! | `telephonyTransferCall` | `transfer_targets` + `transfer:` |
//! | Default Welcome Intent route of the start flow | the greeting (start state `say`) |
//! | `sys.no-match-default`, `sys.no-input-default` of the start flow | `settings.no_match/no_input.prompts` |
//! | `testCases/*.json` | `tests` |
//!
//! Warned, not carried: webhooks, generators and generative fallback, data
//! store (knowledge connector) answers, text variants beyond the first,
//! conditions beyond `=`/`!=`/`null` with AND/OR, parameter presets,
//! conditional responses, audio files, optional form parameters.

mod conditions;
mod flows;
mod fulfillment;
use conditions::*;

use super::{
    convert_placeholders, dedupe_entry_say, ident, json_arr, json_str, localized_text, parse_json,
    slot_ident, strip_ssml, use_system_entity, ExportFiles, ExportFormat, ImportError, Languages,
    PerLang, Warnings,
};
use crate::dialog::bundle::{
    BotInfo, Collect, Condition, Entity, EntityValue, Flow, Intent, Prompts, State,
    TestConversation, TestTurn, Text, TransferTarget, Transition, BACK_TARGET, FORMAT_V1,
    RETURN_TARGET,
};
use crate::dialog::Bundle;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const FORMAT: ExportFormat = ExportFormat::DialogflowCx;
/// The id Dialogflow gives the Default Welcome Intent in every agent.
const WELCOME_INTENT_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Import a Dialogflow CX JSON package; constructs not carried over are warned in `w`.
pub fn import(files: &ExportFiles, w: &mut Warnings) -> Result<Bundle, ImportError> {
    let agent = parse_json(files, FORMAT, "agent.json")?;
    let default_lang = json_str(&agent, "defaultLanguageCode")
        .unwrap_or("en")
        .to_string();
    let supported: Vec<String> = json_arr(&agent, "supportedLanguageCodes")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let langs = Languages::new(&default_lang, supported.iter().map(String::as_str));
    let flows = folder_names(files, "flows");
    let start_flow = json_str(&agent, "startFlow")
        .map(str::to_string)
        .unwrap_or_else(|| {
            if flows.iter().any(|f| f == "Default Start Flow") {
                "Default Start Flow".into()
            } else {
                flows.first().cloned().unwrap_or_default()
            }
        });
    let mut cx = Cx {
        files,
        w,
        langs,
        entities: BTreeMap::new(),
        targets: BTreeMap::new(),
        welcome: None,
    };

    let name = json_str(&agent, "displayName")
        .map(str::to_string)
        .unwrap_or_else(|| export_stem(files.origin()));
    let mut bundle = Bundle {
        format: FORMAT_V1.into(),
        bot: BotInfo {
            name,
            description: json_str(&agent, "description")
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            version: None,
            language: cx.langs.default.clone(),
            languages: cx.langs.others(),
            source: BTreeMap::new(),
        },
        settings: Default::default(),
        transfer_targets: BTreeMap::new(),
        entities: BTreeMap::new(),
        intents: BTreeMap::new(),
        flow: Flow {
            start: String::new(),
            global: vec![],
            states: BTreeMap::new(),
        },
        knowledge: vec![],
        data: BTreeMap::new(),
        tests: vec![],
    };
    cx.agent_settings(&agent, &mut bundle);
    cx.unsupported_folders();
    cx.entity_types()?;
    bundle.intents = cx.intents()?;

    let start_playbook = json_str(&agent, "startPlaybook").map(str::to_string);
    if flows.is_empty() && start_playbook.is_none() {
        return Err(ImportError::Missing {
            format: FORMAT.label(),
            origin: files.origin().into(),
            detail: "it has no flows/ folder: export the agent as a JSON package (Agent settings > Export, \"JSON package\")".into(),
        });
    }
    for flow in &flows {
        cx.flow(flow, flow == &start_flow, &mut bundle)?;
    }
    bundle.flow.start = format!("{start_flow}/Start");
    if let Some(playbook) = &start_playbook {
        // A generative start: the LLM follows the playbook's instructions and
        // calls its tools in the cloud. Nothing here can do that; a person can.
        cx.w.warn(
            format!("agent.json startPlaybook ({playbook})"),
            "the agent starts with a playbook (generative: the cloud LLM follows its instructions and calls its tools); the local bot has no playbook runtime and hands every call to a person (transfer target `agent`)",
        );
        let at = format!("playbooks/{playbook}");
        let agent_target = cx.agent_target(&at);
        let start = format!("Playbook/{playbook}");
        bundle.flow.states.insert(
            start.clone(),
            State {
                description: Some(format!(
                    "start playbook {playbook} (generative): handed to a person"
                )),
                transitions: vec![Transition {
                    say: bundle.settings.handoff_prompt.clone(),
                    transfer: Some(agent_target),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        bundle.flow.start = start;
    } else if let Some(state) = bundle.flow.states.get_mut(&bundle.flow.start) {
        if let Some((say, to)) = cx.welcome.take() {
            state.say = say;
            if let Some(to) = to {
                state.transitions.insert(
                    0,
                    Transition {
                        to: Some(to),
                        ..Default::default()
                    },
                );
            }
        } else {
            cx.w.warn(format!("flows/{start_flow}"), "no Default Welcome Intent route with a text response: the local bot greets with silence");
        }
    }
    bundle.entities = std::mem::take(&mut cx.entities);
    bundle.transfer_targets = std::mem::take(&mut cx.targets);
    bundle.tests = if start_playbook.is_some() && cx.files.under("testCases").next().is_some() {
        cx.w.warn(
            "testCases/",
            "test cases of a playbook agent check what the cloud LLM says: not replayed here",
        );
        vec![]
    } else {
        cx.test_cases()?
    };
    dedupe_entry_say(&mut bundle);
    Ok(bundle)
}

/// The export's file name without extension: the bot's name when agent.json has none.
pub(super) fn export_stem(origin: &str) -> String {
    let file = origin
        .trim_end_matches('/')
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(origin);
    let stem = file.strip_suffix(".zip").unwrap_or(file);
    let stem = stem.strip_prefix("exported_agent_").unwrap_or(stem);
    if stem.is_empty() {
        "Imported bot".into()
    } else {
        stem.to_string()
    }
}

/// Immediate subfolder names of `dir` (as the export names them).
fn folder_names(files: &ExportFiles, dir: &str) -> Vec<String> {
    let set: BTreeSet<String> = files
        .under(dir)
        .filter_map(|p| {
            p[dir.len() + 1..]
                .split('/')
                .next()
                .filter(|_| p[dir.len() + 1..].contains('/'))
        })
        .map(str::to_string)
        .collect();
    set.into_iter().collect()
}

struct Cx<'a> {
    files: &'a ExportFiles,
    w: &'a mut Warnings,
    langs: Languages,
    entities: BTreeMap<String, Entity>,
    targets: BTreeMap<String, TransferTarget>,
    /// The start flow's welcome route: (greeting, page it leads to).
    welcome: Option<(Prompts, Option<String>)>,
}

/// What a fulfillment does here.
#[derive(Default)]
struct Fulfilled {
    say: Prompts,
    transfer: Option<String>,
    end: bool,
    barge_in: Option<bool>,
    /// Parameter presets with literal values (`null` clears).
    set: BTreeMap<String, Option<String>>,
}

impl Cx<'_> {
    fn json(&self, path: &str) -> Result<Value, ImportError> {
        parse_json(self.files, FORMAT, path)
    }

    fn agent_settings(&mut self, agent: &Value, bundle: &mut Bundle) {
        let speech = &agent["advancedSettings"]["speechSettings"];
        if let Some(ms) = duration_ms(&speech["noSpeechTimeout"]) {
            bundle.settings.no_input.timeout_ms = ms;
        }
        if speech.get("endpointerSensitivity").is_some() {
            self.w.warn(
                "agent.json advancedSettings.speechSettings.endpointerSensitivity",
                "end-of-speech detection is the appliance's ([session] endpoint_silence_ms), not the bot's",
            );
        }
        let dtmf = &agent["advancedSettings"]["dtmfSettings"];
        if let Some(enabled) = dtmf["enabled"].as_bool() {
            bundle.settings.dtmf.enabled = enabled;
        }
        if let Some(n) = dtmf["maxDigits"].as_u64() {
            bundle.settings.dtmf.max_digits = n as u32;
        }
        if let Some(k) = dtmf["finishDigit"].as_str() {
            bundle.settings.dtmf.terminator = k.to_string();
        }
        if let Some(v) =
            agent["advancedSettings"]["playbackInterruptionSettings"]["enabled"].as_bool()
        {
            bundle.settings.barge_in = v;
        }
        for (key, what) in [
            (
                "genAppBuilderSettings",
                "generative (Vertex AI Agent Builder) settings",
            ),
            ("answerFeedbackSettings", "answer feedback"),
            ("speakerIdSettings", "speaker ID"),
        ] {
            if agent
                .get(key)
                .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            {
                self.w.warn(
                    format!("agent.json {key}"),
                    format!("{what} is a cloud feature; not used by the local bot"),
                );
            }
        }
    }

    fn unsupported_folders(&mut self) {
        for (dir, what) in [
            (
                "webhooks",
                "webhooks are not called by the local bot: responses they produce are missing",
            ),
            (
                "generators",
                "generators (LLM prompts) are not imported: the text they generate is missing",
            ),
            ("playbooks", "playbooks are not imported"),
            ("tools", "tools are not imported"),
            (
                "generativeSettings",
                "generative fallback settings are not imported",
            ),
            (
                "environments",
                "environments are not imported (the draft flows are)",
            ),
        ] {
            if self.files.under(dir).next().is_some() {
                self.w.warn(format!("{dir}/"), what);
            }
        }
    }

    fn entity_types(&mut self) -> Result<(), ImportError> {
        for name in folder_names(self.files, "entityTypes") {
            let base = format!("entityTypes/{name}");
            let meta = self.json(&format!("{base}/{name}.json"))?;
            let display = json_str(&meta, "displayName").unwrap_or(&name).to_string();
            let kind = json_str(&meta, "kind").unwrap_or("KIND_MAP");
            let mut values: PerLang<Vec<EntityValue>> = PerLang::default();
            let mut patterns = vec![];
            for path in self
                .files
                .under(&format!("{base}/entities"))
                .map(str::to_string)
                .collect::<Vec<_>>()
            {
                let doc = self.json(&path)?;
                for e in json_arr(&doc, "entities") {
                    let lang = self
                        .langs
                        .code(json_str(e, "languageCode").unwrap_or(&lang_of(&path)));
                    let value = json_str(e, "value").unwrap_or("").to_string();
                    let synonyms: Vec<String> = json_arr(e, "synonyms")
                        .iter()
                        .filter_map(Value::as_str)
                        .filter(|s| *s != value)
                        .map(str::to_string)
                        .collect();
                    match kind {
                        "KIND_REGEXP" => patterns.push(value),
                        "KIND_LIST" => values.entry(&lang).push(EntityValue {
                            value,
                            synonyms: vec![],
                        }),
                        _ => values.entry(&lang).push(EntityValue { value, synonyms }),
                    }
                }
            }
            if self
                .files
                .under(&format!("{base}/excludedPhrases"))
                .next()
                .is_some()
            {
                self.w.warn(format!("{base}/excludedPhrases"), "excluded phrases are not applied: the local matcher only knows the listed values");
            }
            if json_str(&meta, "autoExpansionMode")
                .is_some_and(|m| m != "AUTO_EXPANSION_MODE_UNSPECIFIED")
                || meta["enableFuzzyExtraction"].as_bool() == Some(true)
            {
                self.w.warn(&base, "automatic expansion / fuzzy matching are cloud features: only the listed values and synonyms match");
            }
            let entity = if kind == "KIND_REGEXP" {
                patterns.sort();
                patterns.dedup();
                Entity::Regex {
                    pattern: patterns.join("|"),
                }
            } else {
                if values.is_empty() {
                    self.w
                        .warn(&base, "has no values; the caller's words are kept as said");
                    Entity::Any
                } else {
                    Entity::List {
                        values: values.partial(&self.langs),
                    }
                }
            };
            self.entities.insert(ident(&display), entity);
        }
        Ok(())
    }

    fn intents(&mut self) -> Result<BTreeMap<String, Intent>, ImportError> {
        let mut out = BTreeMap::new();
        for name in folder_names(self.files, "intents") {
            let base = format!("intents/{name}");
            let meta = self.json(&format!("{base}/{name}.json"))?;
            let display = json_str(&meta, "displayName").unwrap_or(&name).to_string();
            let mut phrases: PerLang<Vec<String>> = PerLang::default();
            for path in self
                .files
                .under(&format!("{base}/trainingPhrases"))
                .map(str::to_string)
                .collect::<Vec<_>>()
            {
                let doc = self.json(&path)?;
                for tp in json_arr(&doc, "trainingPhrases") {
                    let lang = self
                        .langs
                        .code(json_str(tp, "languageCode").unwrap_or(&lang_of(&path)));
                    let text: String = json_arr(tp, "parts")
                        .iter()
                        .filter_map(|p| json_str(p, "text"))
                        .collect();
                    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !text.is_empty() {
                        phrases.entry(&lang).push(text);
                    }
                }
            }
            if meta["isFallback"].as_bool() == Some(true) {
                if !phrases.is_empty() {
                    self.w.warn(&base, "negative examples (the fallback intent's phrases) are not used by the local matcher");
                }
                continue;
            }
            let description = json_str(&meta, "description")
                .filter(|d| !d.is_empty())
                .map(Text::text);
            let phrases = phrases.partial(&self.langs);
            out.insert(
                ident(&display),
                Intent {
                    description,
                    phrases,
                    keywords: Default::default(),
                    ..Default::default()
                },
            );
        }
        Ok(out)
    }

    fn test_cases(&mut self) -> Result<Vec<TestConversation>, ImportError> {
        let mut out = vec![];
        let paths: Vec<String> = self
            .files
            .under("testCases")
            .filter(|p| p.ends_with(".json"))
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = self.json(&path)?;
            let name = json_str(&doc, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            let mut turns = vec![];
            for (i, t) in json_arr(&doc, "testCaseConversationTurns")
                .iter()
                .enumerate()
            {
                let input = &t["userInput"]["input"];
                let mut turn = TestTurn::default();
                if let Some(text) = input["text"]["text"].as_str() {
                    turn.user = Some(text.to_string());
                } else if let Some(keys) = input["dtmf"]["digits"].as_str() {
                    turn.dtmf = Some(keys.to_string());
                } else {
                    self.w.warn(
                        format!("{path} turn {}", i + 1),
                        "event inputs are not replayed: the test stops here",
                    );
                    break;
                }
                let out_ = &t["virtualAgentOutput"];
                if let Some(intent) = out_["triggeredIntent"]["displayName"].as_str() {
                    turn.intent = Some(ident(intent));
                }
                let said: Vec<&str> = json_arr(out_, "textResponses")
                    .iter()
                    .flat_map(|r| json_arr(r, "text").iter().filter_map(Value::as_str))
                    .collect();
                // Only what the local bot says word for word can be expected.
                turn.reply_contains = said
                    .iter()
                    .filter(|s| convert_placeholders(s).is_ok_and(|t| !t.contains('{')))
                    .map(|s| s.to_string())
                    .collect();
                turns.push(turn);
            }
            if turns.is_empty() {
                self.w.warn(&path, "test case has no replayable turns");
                continue;
            }
            out.push(TestConversation {
                name,
                greeting_contains: vec![],
                turns,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_that_can_be_checked_here() {
        assert!(parse_condition("$page.params.status = \"FINAL\"")
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_condition("$session.params.x = \"a\"").unwrap(),
            Some(Condition::Equals { .. })
        ));
        assert!(matches!(
            parse_condition("$session.params.x != null AND $session.params.y = 2").unwrap(),
            Some(Condition::All(_))
        ));
        assert!(parse_condition("$sys.func.IS_DATE($session.params.d)").is_err());
        assert!(parse_condition("$intent.params.x.resolved > 3").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration_ms(&serde_json::json!({"seconds": 5})), Some(5000));
        assert_eq!(duration_ms(&serde_json::json!("2.5s")), Some(2500));
        assert_eq!(duration_ms(&serde_json::json!({})), None);
    }
}
