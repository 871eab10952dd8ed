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

    fn fulfillment(&mut self, f: &Value, at: &str) -> Fulfilled {
        let mut out = Fulfilled::default();
        // Messages come once per language; the n-th text of each language is one prompt.
        let mut by_lang: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in json_arr(f, "messages") {
            let lang = self
                .langs
                .code(json_str(m, "languageCode").unwrap_or(&self.langs.default));
            if let Some(text) = m.get("text") {
                let variants: Vec<&str> = json_arr(text, "text")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if variants.len() > 1 {
                    self.w.warn(
                        at,
                        format!(
                            "{} text variants: the local bot always says the first",
                            variants.len()
                        ),
                    );
                }
                if text["allowPlaybackInterruption"].as_bool() == Some(false) {
                    out.barge_in = Some(false);
                }
                if let Some(first) = variants.first() {
                    match convert_placeholders(first) {
                        Ok(t) if !t.trim().is_empty() => by_lang.entry(lang).or_default().push(t),
                        Ok(_) => {}
                        Err(why) => self
                            .w
                            .warn(at, format!("text \"{first}\" is not said: {why}")),
                    }
                }
            } else if let Some(audio) = m.get("outputAudioText") {
                let raw = json_str(audio, "ssml")
                    .or_else(|| json_str(audio, "text"))
                    .unwrap_or("");
                let plain = strip_ssml(raw).unwrap_or_else(|| raw.to_string());
                match convert_placeholders(&plain) {
                    Ok(t) if !t.trim().is_empty() => by_lang.entry(lang).or_default().push(t),
                    Ok(_) => {}
                    Err(why) => self
                        .w
                        .warn(at, format!("text \"{plain}\" is not said: {why}")),
                }
                if json_str(audio, "ssml").is_some() {
                    self.w.warn(
                        at,
                        "SSML markup removed: the local voice says the plain text",
                    );
                }
            } else if let Some(t) = m.get("telephonyTransferCall") {
                match json_str(t, "phoneNumber").or_else(|| json_str(t, "sipUri")) {
                    Some(number) => {
                        out.transfer = Some(super::transfer_target(
                            &mut self.targets,
                            number,
                            "telephonyTransferCall",
                        ))
                    }
                    None => self.w.warn(
                        at,
                        "telephonyTransferCall without a phone number or SIP URI: ignored",
                    ),
                }
            } else if m.get("liveAgentHandoff").is_some() {
                out.transfer = Some(self.agent_target(at));
            } else if m.get("endInteraction").is_some() {
                out.end = true;
            } else if m.get("playAudio").is_some() || m.get("mixedAudio").is_some() {
                self.w.warn(
                    at,
                    "audio files are not played by the local bot (only text is)",
                );
            } else if m.get("conversationSuccess").is_some() || m.get("knowledgeInfoCard").is_some()
            {
                // Analytics markers: nothing to say or do.
            } else if m.get("payload").is_some() {
                self.w
                    .warn(at, "custom payloads are for cloud integrations: ignored");
            }
        }
        if let Some(hook) = json_str(f, "webhook") {
            self.w.warn(at, format!("calls webhook {hook}: the local bot does not call webhooks, so what it would add is missing"));
        }
        for a in json_arr(f, "setParameterActions") {
            let Some(param) = json_str(a, "parameter") else {
                continue;
            };
            let value = match a.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(v)) if !v.contains('$') => Some(v.clone()),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => Some(v.to_string()),
                Some(v) => {
                    self.w.warn(
                        at,
                        format!("parameter preset `{param}` = {v} is computed by the cloud: not applied here (the parameter keeps its value)"),
                    );
                    continue;
                }
            };
            out.set.insert(slot_ident(param), value);
        }
        if !json_arr(f, "conditionalCases").is_empty() {
            self.w.warn(at, "conditional responses are not imported");
        }
        if !json_arr(f, "generators").is_empty()
            || f["enableGenerativeFallback"].as_bool() == Some(true)
        {
            self.w.warn(
                at,
                "generative responses are not imported (the cloud LLM writes them)",
            );
        }
        let count = by_lang.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..count {
            let mut texts = PerLang::default();
            for (lang, list) in &by_lang {
                if let Some(t) = list.get(i).or(list.last()) {
                    *texts.entry(lang) = t.clone();
                }
            }
            if let Some(text) = localized_text(texts, &self.langs, at, self.w) {
                out.say.0.push(text);
            }
        }
        out
    }

    fn flow(&mut self, flow: &str, is_start: bool, bundle: &mut Bundle) -> Result<(), ImportError> {
        let base = format!("flows/{flow}");
        let doc = self.json(&format!("{base}/{flow}.json"))?;
        let display = json_str(&doc, "displayName").unwrap_or(flow).to_string();
        let start = format!("{display}/Start");
        let groups = self.route_groups(&base)?;

        // Flow-level routes: every one applies on the start page; intent routes on every page.
        let mut flow_routes: Vec<Value> = json_arr(&doc, "transitionRoutes").to_vec();
        for g in json_arr(&doc, "transitionRouteGroups")
            .iter()
            .filter_map(Value::as_str)
        {
            flow_routes.extend(self.group(&groups, g, &base));
        }
        self.event_handlers(&doc, &base, is_start, bundle);
        if !json_arr(&doc["knowledgeConnectorSettings"], "dataStoreConnections").is_empty()
            || doc["knowledgeConnectorSettings"]["enabled"].as_bool() == Some(true)
        {
            self.w.warn(
                format!("{base} knowledgeConnectorSettings"),
                "data store (knowledge connector) answers come from the cloud: add the facts to the bundle's knowledge to answer locally",
            );
        }

        let page_files: Vec<String> = self
            .files
            .under(&format!("{base}/pages"))
            .map(str::to_string)
            .collect();
        let mut pages = vec![];
        for path in &page_files {
            pages.push((path.clone(), self.json(path)?));
        }
        let page_state = |name: &str| format!("{display}/{name}");

        // The start page.
        let mut start_state = State {
            description: Some(format!("start of flow {display}")),
            ..Default::default()
        };
        for (i, r) in flow_routes.iter().enumerate() {
            let at = format!("{base}/{flow}.json transitionRoutes[{i}]");
            let is_welcome = is_start && json_str(r, "intent").is_some_and(|n| self.is_welcome(n));
            if let Some(t) = self.route(r, &display, &start, &at) {
                if is_welcome && self.welcome.is_none() {
                    let to = t.to.clone().filter(|to| *to != start);
                    self.welcome = Some((t.say.clone(), to));
                }
                start_state.transitions.push(t);
            }
        }
        bundle.flow.states.insert(start.clone(), start_state);

        for (path, page) in pages {
            let name = json_str(&page, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            let state_name = page_state(&name);
            let at = path.clone();
            let entry = match page.get("entryFulfillment") {
                Some(f) => self.fulfillment(f, &format!("{at} entryFulfillment")),
                None => Fulfilled::default(),
            };
            let mut state = State {
                say: entry.say,
                barge_in: entry.barge_in,
                ..Default::default()
            };
            if entry.transfer.is_some() || entry.end {
                self.w.warn(
                    &at,
                    "a transfer or end in the entry fulfillment is taken after the page's prompts",
                );
            }
            if !entry.set.is_empty() {
                self.w.warn(
                    format!("{at} entryFulfillment"),
                    "parameter presets on entering a page are not applied (presets on routes are)",
                );
            }
            if let Some(ms) =
                duration_ms(&page["advancedSettings"]["speechSettings"]["noSpeechTimeout"])
            {
                state.no_input_timeout_ms = Some(ms);
            }
            for (i, p) in json_arr(&page["form"], "parameters").iter().enumerate() {
                if let Some(c) =
                    self.form_parameter(p, &display, &format!("{at} form.parameters[{i}]"))
                {
                    state.collect.push(c);
                }
            }
            self.page_events(&page, &at);
            let mut routes: Vec<Value> = json_arr(&page, "transitionRoutes").to_vec();
            for g in json_arr(&page, "transitionRouteGroups")
                .iter()
                .filter_map(Value::as_str)
            {
                routes.extend(self.group(&groups, g, &base));
            }
            let needs_done = !state.say.is_empty() || !state.collect.is_empty();
            let stay = if needs_done {
                format!("{state_name} (done)")
            } else {
                state_name.clone()
            };
            for (i, r) in routes.iter().enumerate() {
                if let Some(t) =
                    self.route(r, &display, &stay, &format!("{at} transitionRoutes[{i}]"))
                {
                    state.transitions.push(t);
                }
            }
            if entry.transfer.is_some() || entry.end {
                state.transitions.insert(
                    0,
                    Transition {
                        transfer: entry.transfer,
                        end: entry.end,
                        ..Default::default()
                    },
                );
            }
            let flow_intent_routes: Vec<Transition> = flow_routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.get("intent").is_some())
                .filter_map(|(i, r)| {
                    self.route(
                        r,
                        &display,
                        &stay,
                        &format!("{base}/{flow}.json transitionRoutes[{i}]"),
                    )
                })
                .collect();
            state.transitions.extend(flow_intent_routes);
            if needs_done
                && state
                    .transitions
                    .iter()
                    .any(|t| t.to.as_deref() == Some(stay.as_str()))
            {
                // Where the page listens once its prompts and form are done (CX stays on the page).
                let listening: Vec<Transition> = state
                    .transitions
                    .iter()
                    .filter(|t| !t.is_automatic())
                    .cloned()
                    .collect();
                let done = State {
                    description: Some(format!(
                        "{state_name} after its form and prompts: listening"
                    )),
                    transitions: listening,
                    barge_in: state.barge_in,
                    ..Default::default()
                };
                bundle.flow.states.insert(stay.clone(), done);
            }
            bundle.flow.states.insert(state_name, state);
        }
        Ok(())
    }

    /// The human a live-agent handoff reaches: target `agent`, whose URI the site sets.
    fn agent_target(&mut self, at: &str) -> String {
        self.w.warn(at, format!("live agent handoff goes to transfer target `agent` ({}): set [sip] transfer_target", super::PLACEHOLDER_AGENT_URI));
        self.targets
            .entry("agent".into())
            .or_insert_with(|| TransferTarget {
                uri: super::PLACEHOLDER_AGENT_URI.into(),
                description: Some("live agent handoff (set [sip] transfer_target)".into()),
            });
        "agent".into()
    }

    fn is_welcome(&self, intent_display: &str) -> bool {
        let path = format!("intents/{intent_display}/{intent_display}.json");
        let id = parse_json(self.files, FORMAT, &path)
            .ok()
            .and_then(|v| json_str(&v, "name").map(str::to_string));
        id.as_deref() == Some(WELCOME_INTENT_ID) || intent_display == "Default Welcome Intent"
    }

    fn route_groups(&mut self, flow_base: &str) -> Result<BTreeMap<String, Value>, ImportError> {
        let mut out = BTreeMap::new();
        let paths: Vec<String> = self
            .files
            .under(&format!("{flow_base}/transitionRouteGroups"))
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = self.json(&path)?;
            let name = json_str(&doc, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            out.insert(name, doc);
        }
        // Agent-level route groups (newer exports).
        let paths: Vec<String> = self
            .files
            .under("transitionRouteGroups")
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = self.json(&path)?;
            let name = json_str(&doc, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            out.entry(name).or_insert(doc);
        }
        Ok(out)
    }

    fn group(&mut self, groups: &BTreeMap<String, Value>, name: &str, at: &str) -> Vec<Value> {
        match groups.get(name) {
            Some(g) => json_arr(g, "transitionRoutes").to_vec(),
            None => {
                self.w.warn(at, format!("route group `{name}` is referenced but not in the export: its routes are missing"));
                vec![]
            }
        }
    }

    /// One route as a transition; `None` (with a warning) when it cannot be expressed.
    /// `stay` is where a route without a target leads.
    fn route(&mut self, r: &Value, flow: &str, stay: &str, at: &str) -> Option<Transition> {
        let intent = json_str(r, "intent").map(ident);
        let condition = match json_str(r, "condition")
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(c) => {
                match parse_condition(c) {
                    Ok(cond) => cond,
                    Err(why) => {
                        if intent.is_some() {
                            self.w.warn(at, format!("condition `{c}` ignored ({why}): the route follows its intent alone"));
                            None
                        } else {
                            self.w.warn(at, format!("route skipped: condition `{c}` cannot be expressed here ({why})"));
                            return None;
                        }
                    }
                }
            }
        };
        if intent.is_some() && condition.is_some() {
            self.w.warn(at, "an intent route's condition is not checked here: the route follows its intent alone");
        }
        let f = match r.get("triggerFulfillment") {
            Some(f) => self.fulfillment(f, &format!("{at} triggerFulfillment")),
            None => Fulfilled::default(),
        };
        let mut t = Transition {
            intent,
            condition: if json_str(r, "intent").is_some() {
                None
            } else {
                condition
            },
            say: f.say,
            set: f.set,
            ..Default::default()
        };
        if f.transfer.is_some() {
            t.transfer = f.transfer;
        } else if f.end {
            t.end = true;
        } else if let Some(page) = json_str(r, "targetPage") {
            match SpecialPage::of(page) {
                Some(SpecialPage::EndSession) => t.end = true,
                Some(SpecialPage::EndFlow) => t.to = Some(RETURN_TARGET.into()),
                Some(SpecialPage::EndFlowWith(outcome)) => {
                    self.w.warn(
                        at,
                        format!("`{page}`: the flow ends as with End Flow (the {outcome} outcome is for the cloud's reporting)"),
                    );
                    t.to = Some(RETURN_TARGET.into());
                }
                Some(SpecialPage::EndFlowWithHumanEscalation) => {
                    t.transfer = Some(self.agent_target(at))
                }
                Some(SpecialPage::Current) => t.to = Some(stay.to_string()),
                Some(SpecialPage::Previous) => t.to = Some(BACK_TARGET.into()),
                Some(SpecialPage::Start) => t.to = Some(format!("{flow}/Start")),
                None => t.to = Some(format!("{flow}/{page}")),
            }
        } else if let Some(target_flow) = json_str(r, "targetFlow") {
            t.to = Some(format!("{target_flow}/Start"));
            t.call = true;
        } else if let Some(playbook) = json_str(r, "targetPlaybook") {
            self.w.warn(
                at,
                format!("hands the conversation to playbook `{playbook}` (generative): the local bot hands the call to a person instead"),
            );
            t.transfer = Some(self.agent_target(at));
        } else {
            t.to = Some(stay.to_string());
        }
        if t.is_automatic()
            && t.condition.is_none()
            && t.to.as_deref() == Some(stay)
            && t.say.is_empty()
            && stay.ends_with("/Start")
        {
            // An empty unconditional route back to the start page would loop.
            return None;
        }
        Some(t)
    }

    fn form_parameter(&mut self, p: &Value, flow: &str, at: &str) -> Option<Collect> {
        let name = json_str(p, "displayName")?;
        if p["required"].as_bool() != Some(true) {
            self.w
                .warn(at, format!("optional parameter `{name}` is not asked for"));
            return None;
        }
        if p["isList"].as_bool() == Some(true) {
            self.w
                .warn(at, format!("list parameter `{name}` keeps one value here"));
        }
        if p.get("defaultValue").is_some() {
            self.w
                .warn(at, format!("default value of `{name}` is not applied"));
        }
        let entity_type = json_str(p, "entityType").unwrap_or("@sys.any");
        let entity = if entity_type.starts_with("@sys.") {
            use_system_entity(&mut self.entities, entity_type, at, self.w)?
        } else {
            ident(entity_type.trim_start_matches('@'))
        };
        let fill = &p["fillBehavior"];
        let prompt = self.fulfillment(
            &fill["initialPromptFulfillment"],
            &format!("{at} initialPromptFulfillment"),
        );
        // No prompt of its own: the page or the flow that led here asked already.
        let first = prompt
            .say
            .0
            .first()
            .cloned()
            .unwrap_or_else(|| Text::text(""));
        let mut reprompts = vec![];
        let mut on_fail = None;
        for (i, h) in json_arr(fill, "repromptEventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            let hat = format!("{at} repromptEventHandlers[{i}]");
            if event.starts_with("sys.no-match") {
                let target = json_str(h, "targetPage").or_else(|| json_str(h, "targetFlow"));
                if target.is_some() && on_fail.is_none() {
                    // The handler leaves the page on the first answer that does not fit.
                    on_fail = self.route(h, flow, &format!("{flow}/Start"), &hat);
                } else {
                    let f = self.fulfillment(&h["triggerFulfillment"], &hat);
                    reprompts.extend(f.say.0);
                }
            } else {
                self.w.warn(
                    hat,
                    format!("reprompt on `{event}` is not imported (only no-match reprompts are; silence gets the bot-wide no-input handling)"),
                );
            }
        }
        Some(Collect {
            slot: slot_ident(name),
            entity,
            prompt: first,
            reprompts,
            max_attempts: on_fail.is_some().then_some(1),
            on_fail,
        })
    }

    fn event_handlers(&mut self, doc: &Value, at: &str, is_start: bool, bundle: &mut Bundle) {
        for (i, h) in json_arr(doc, "eventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            let hat = format!("{at} eventHandlers[{i}] ({event})");
            let f = self.fulfillment(&h["triggerFulfillment"], &hat);
            let prompts: Vec<Text> = f.say.0;
            match event {
                "sys.no-match-default" | "sys.no-input-default" if !is_start => {
                    self.w.warn(
                        hat,
                        "only the start flow's no-match/no-input prompts are used (bot-wide here)",
                    );
                }
                "sys.no-match-default" if !prompts.is_empty() => {
                    bundle.settings.no_match.prompts = prompts
                }
                "sys.no-input-default" if !prompts.is_empty() => {
                    bundle.settings.no_input.prompts = prompts
                }
                "sys.no-match-default" | "sys.no-input-default" => {}
                other => self.w.warn(
                    hat,
                    format!("event `{other}` has no equivalent here: its handler is not imported"),
                ),
            }
        }
    }

    fn page_events(&mut self, page: &Value, at: &str) {
        for (i, h) in json_arr(page, "eventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            self.w.warn(
                format!("{at} eventHandlers[{i}]"),
                format!("page-level handler for `{event}` is not imported: the bot-wide no-match/no-input handling applies"),
            );
        }
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

/// CX's built-in page targets, as exports name them: `END_FLOW` (older
/// exports) or `End Flow` (the console's display names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpecialPage {
    EndSession,
    EndFlow,
    /// End Flow With Failure / Cancellation: the outcome named.
    EndFlowWith(&'static str),
    EndFlowWithHumanEscalation,
    Current,
    Previous,
    Start,
}

impl SpecialPage {
    fn of(target: &str) -> Option<SpecialPage> {
        let key: String = target
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .collect();
        Some(match key.as_str() {
            "ENDSESSION" => SpecialPage::EndSession,
            "ENDFLOW" => SpecialPage::EndFlow,
            "ENDFLOWWITHFAILURE" => SpecialPage::EndFlowWith("failure"),
            "ENDFLOWWITHCANCELLATION" => SpecialPage::EndFlowWith("cancellation"),
            "ENDFLOWWITHHUMANESCALATION" => SpecialPage::EndFlowWithHumanEscalation,
            "CURRENTPAGE" => SpecialPage::Current,
            "PREVIOUSPAGE" => SpecialPage::Previous,
            "STARTPAGE" => SpecialPage::Start,
            _ => return None,
        })
    }
}

/// `{seconds: 5, nanos: 500000000}` or `"5s"` in milliseconds.
fn duration_ms(v: &Value) -> Option<u32> {
    if let Some(s) = v.as_str() {
        return s
            .trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .map(|s| (s * 1000.0) as u32);
    }
    let secs = v.get("seconds").and_then(|s| {
        s.as_u64()
            .or_else(|| s.as_str().and_then(|s| s.parse().ok()))
    });
    let nanos = v.get("nanos").and_then(Value::as_u64);
    if secs.is_none() && nanos.is_none() {
        return None;
    }
    Some((secs.unwrap_or(0) * 1000 + nanos.unwrap_or(0) / 1_000_000) as u32)
}

/// The file stem: `trainingPhrases/de.json` -> `de`, `pages/Collect Info.json` -> `Collect Info`.
fn lang_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".json").unwrap_or(file).to_string()
}

/// CX conditions this engine can check: `$page.params.status = "FINAL"`
/// and `true` (always), `$session.params.x = "v"` / `!= "v"` / `= null` /
/// `!= null`, joined by AND or OR (not both, no parentheses).
/// `Ok(None)`: unconditional.
fn parse_condition(c: &str) -> Result<Option<Condition>, String> {
    if c.contains('(') {
        return Err("parentheses and functions are not supported".into());
    }
    let (parts, any) = if c.contains(" OR ") && c.contains(" AND ") {
        return Err("AND and OR together are not supported".into());
    } else if c.contains(" OR ") {
        (c.split(" OR ").collect::<Vec<_>>(), true)
    } else {
        (c.split(" AND ").collect::<Vec<_>>(), false)
    };
    let mut conds = vec![];
    for part in parts {
        if let Some(cond) = parse_comparison(part.trim())? {
            conds.push(cond);
        }
    }
    Ok(match conds.len() {
        0 => None,
        1 => conds.pop(),
        _ if any => Some(Condition::Any(conds)),
        _ => Some(Condition::All(conds)),
    })
}

fn parse_comparison(c: &str) -> Result<Option<Condition>, String> {
    if c.eq_ignore_ascii_case("true") {
        return Ok(None);
    }
    let (lhs, rhs, negated) = if let Some((l, r)) = c.split_once("!=") {
        (l.trim(), r.trim(), true)
    } else if let Some((l, r)) = c.split_once('=') {
        (l.trim(), r.trim(), false)
    } else {
        return Err(format!("`{c}` is not a comparison"));
    };
    let rhs = rhs.trim_matches('"');
    if lhs == "$page.params.status" && rhs == "FINAL" && !negated {
        // Form complete: automatic transitions here run only once every slot is filled.
        return Ok(None);
    }
    let slot = lhs
        .strip_prefix("$session.params.")
        .or_else(|| lhs.strip_prefix("$page.params."))
        .ok_or_else(|| format!("`{lhs}` is not a session or page parameter"))?;
    let slot = slot_ident(slot);
    let cond = if rhs == "null" {
        if negated {
            Condition::Filled(slot)
        } else {
            Condition::Empty(slot)
        }
    } else {
        let eq = Condition::Equals {
            slot,
            value: rhs.to_string(),
        };
        if negated {
            Condition::Not(Box::new(eq))
        } else {
            eq
        }
    };
    Ok(Some(cond))
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
