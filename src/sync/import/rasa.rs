//! Rasa project (`domain.yml` + `data/*.yml`, Rasa 2/3 YAML) -> bundle.
//!
//! Rasa has no states: stories and rules say which actions follow which
//! intents. They are merged into a tree keyed by the caller's intents:
//!
//! | Rasa | here |
//! |---|---|
//! | `config.yml` `language` | `bot.language` |
//! | `nlu:` intent examples (`[text](entity)` annotations stripped) | intent phrases |
//! | annotated values, `synonym:`, `lookup:`, `regex:` | entity `list` (synonyms) / `regex` |
//! | Duckling dimensions in the pipeline (`email`, `number`...) | system entities |
//! | `responses:` `utter_*` (first text) | prompts |
//! | story/rule starting with intent X (or `or:` of intents) | `flow.global` transition to state `X` saying the `utter_*` actions |
//! | a later intent Y in the same story | transition from that state to state `X > Y` |
//! | form action: `required_slots`, `utter_ask_<slot>` | `collect`; slot mappings `from_entity` / `from_text` / `from_intent` choose the entity |
//! | rule `condition: active_loop: F` ... `active_loop: null` + actions | what follows the form (automatic transition) |
//! | `nlu_fallback` -> `utter_default` | `settings.no_match.prompts` |
//! | handoff action (`action_handoff`, `action_human_handoff`, `action_transfer*`) | transfer to target `agent` (set `[sip] transfer_target`) |
//! | `tests/*.yml` test stories with `user:` texts | `tests` |
//! | `utter_greet`, if defined | the greeting (Rasa bots wait for the user; a phone bot must speak first) |
//!
//! Warned, not carried: custom actions (no action server here), response
//! variations and buttons, conditional responses, checkpoints, slot-based
//! story branches, form interruptions (the global intents answer them),
//! retrieval intents, Markdown (Rasa 1) training data.

use super::{
    ident, slot_ident, system_entity, ExportFiles, ExportFormat, ImportError, Warnings,
    PLACEHOLDER_AGENT_URI,
};
use crate::dialog::bundle::{
    BotInfo, Collect, Entity, EntityValue, Flow, Intent, Localized, Prompts, State,
    TestConversation, TestTurn, Text, TransferTarget, Transition, FORMAT_V1,
};
use crate::dialog::Bundle;
use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};

const FORMAT: ExportFormat = ExportFormat::Rasa;
const START: &str = "start";
const MAIN: &str = "main";
const AGENT: &str = "agent";

pub fn import(files: &ExportFiles, w: &mut Warnings) -> Result<Bundle, ImportError> {
    let domain = read_domain(files)?;
    let config = match files.get("config.yml") {
        Some(_) => super::parse_yaml(files, FORMAT, "config.yml")?,
        None => Value::Null,
    };
    let language = config
        .get("language")
        .and_then(Value::as_str)
        .unwrap_or("en")
        .to_string();
    let mut rasa = Rasa {
        files,
        w,
        domain,
        nlu: Nlu::default(),
        duckling: BTreeSet::new(),
        uses_handoff: false,
    };
    rasa.duckling_dimensions(&config);

    // Training data and dialogue data: every YAML under data/ (any file may hold any section).
    let mut stories = vec![];
    let data_files: Vec<String> = files
        .paths()
        .filter(|p| p.starts_with("data/"))
        .map(str::to_string)
        .collect();
    for path in &data_files {
        let doc = if path.ends_with(".md") {
            // Rasa 1 Markdown: read as the YAML it converts to.
            let text = String::from_utf8_lossy(files.get(path).unwrap_or_default());
            markdown_data(&text)
        } else if path.ends_with(".yml") || path.ends_with(".yaml") {
            super::parse_yaml(files, FORMAT, path)?
        } else {
            continue;
        };
        rasa.nlu_section(&doc, path);
        for key in ["stories", "rules"] {
            for (i, s) in seq(&doc, key).iter().enumerate() {
                stories.push((format!("{path} {key}[{i}]"), s.clone(), key == "rules"));
            }
        }
    }

    let mut bundle = Bundle {
        format: FORMAT_V1.into(),
        bot: BotInfo {
            name: super::dialogflow_cx::export_stem(files.origin()),
            description: None,
            version: None,
            language,
            languages: vec![],
            source: BTreeMap::new(),
        },
        settings: Default::default(),
        transfer_targets: BTreeMap::new(),
        entities: BTreeMap::new(),
        intents: BTreeMap::new(),
        flow: Flow {
            start: START.into(),
            global: vec![],
            states: BTreeMap::new(),
        },
        knowledge: vec![],
        data: BTreeMap::new(),
        tests: vec![],
    };
    rasa.intents(&mut bundle);
    rasa.flow(&stories, &mut bundle);
    bundle.tests = rasa.tests(&bundle)?;
    if rasa.uses_handoff {
        rasa.w.warn("handoff", format!("the handoff action transfers to target `{AGENT}` ({PLACEHOLDER_AGENT_URI}): set [sip] transfer_target to your agents"));
        bundle.transfer_targets.insert(
            AGENT.into(),
            TransferTarget {
                uri: PLACEHOLDER_AGENT_URI.into(),
                description: Some("Rasa handoff action (set [sip] transfer_target)".into()),
            },
        );
    }
    super::dedupe_entry_say(&mut bundle);
    Ok(bundle)
}

/// Rasa 1 Markdown training data as the Rasa 2 YAML it converts to:
/// `## intent:x` / `## synonym:x` / `## regex:x` / `## lookup:x` with `- example`
/// lines become `nlu:` items; `## story` blocks with `* intent{...}` and
/// `- action` lines become `stories:` (`- slot{...}` and `- form{...}` lines
/// are events of the cloud's tracker, not steps; they are left out).
pub(crate) fn markdown_data(text: &str) -> Value {
    use serde_norway::Mapping;
    let map = |pairs: Vec<(&str, Value)>| {
        let mut m = Mapping::new();
        for (k, v) in pairs {
            m.insert(Value::String(k.into()), v);
        }
        Value::Mapping(m)
    };
    let mut nlu: Vec<Value> = vec![];
    let mut stories: Vec<Value> = vec![];
    // The open section: (kind, name, lines).
    let mut section: Option<(String, String, Vec<String>)> = None;
    let close = |section: Option<(String, String, Vec<String>)>,
                 nlu: &mut Vec<Value>,
                 stories: &mut Vec<Value>| {
        let Some((kind, name, lines)) = section else {
            return;
        };
        if kind == "story" {
            let mut steps = vec![];
            for l in &lines {
                if let Some(intent) = l.strip_prefix('*') {
                    // `* greet{"name": "x"}` or `* greet OR thanks`: the first intent.
                    let intent = intent.trim();
                    // Intent names may hold spaces (Dialogflow-made data): cut at `{` and ` OR `.
                    let intent = intent.split('{').next().unwrap_or(intent);
                    let intent = intent.split(" OR ").next().unwrap_or(intent).trim();
                    if !intent.is_empty() {
                        steps.push(map(vec![("intent", Value::String(intent.into()))]));
                    }
                } else if let Some(action) = l.strip_prefix('-') {
                    let action = action.trim();
                    if !action.is_empty()
                        && !action.starts_with("slot{")
                        && !action.starts_with("form{")
                    {
                        steps.push(map(vec![("action", Value::String(action.into()))]));
                    }
                }
            }
            stories.push(map(vec![
                ("story", Value::String(name)),
                ("steps", Value::Sequence(steps)),
            ]));
        } else {
            let examples: String = lines
                .iter()
                .filter(|l| l.starts_with('-'))
                .map(|l| format!("{l}\n"))
                .collect();
            nlu.push(map(vec![
                (kind.as_str(), Value::String(name)),
                ("examples", Value::String(examples)),
            ]));
        }
    };
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(head) = line.strip_prefix("## ") {
            close(section.take(), &mut nlu, &mut stories);
            let head = head.trim();
            section = Some(match head.split_once(':') {
                Some((kind @ ("intent" | "synonym" | "regex" | "lookup"), name)) => {
                    (kind.to_string(), name.trim().to_string(), vec![])
                }
                _ => ("story".to_string(), head.to_string(), vec![]),
            });
        } else if !line.is_empty() && !line.starts_with("<!--") {
            if let Some((_, _, lines)) = section.as_mut() {
                lines.push(line.to_string());
            }
        }
    }
    close(section.take(), &mut nlu, &mut stories);
    map(vec![
        ("nlu", Value::Sequence(nlu)),
        ("stories", Value::Sequence(stories)),
    ])
}

fn seq<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `domain.yml`, or every file of a `domain/` folder merged.
fn read_domain(files: &ExportFiles) -> Result<Value, ImportError> {
    for name in ["domain.yml", "domain.yaml"] {
        if files.get(name).is_some() {
            return super::parse_yaml(files, FORMAT, name);
        }
    }
    let mut merged = serde_norway::Mapping::new();
    let parts: Vec<String> = files
        .under("domain")
        .filter(|p| p.ends_with(".yml") || p.ends_with(".yaml"))
        .map(str::to_string)
        .collect();
    for path in parts {
        if let Value::Mapping(m) = super::parse_yaml(files, FORMAT, &path)? {
            for (k, v) in m {
                match (merged.get_mut(&k), v) {
                    (Some(Value::Mapping(a)), Value::Mapping(b)) => a.extend(b),
                    (Some(Value::Sequence(a)), Value::Sequence(b)) => a.extend(b),
                    (_, v) => {
                        merged.insert(k, v);
                    }
                }
            }
        }
    }
    Ok(Value::Mapping(merged))
}

#[derive(Default)]
struct Nlu {
    /// Intent -> examples (annotations stripped).
    examples: BTreeMap<String, Vec<String>>,
    /// Entity -> value -> synonyms.
    values: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Value -> synonyms (`synonym:` sections apply to any entity's value).
    synonyms: BTreeMap<String, BTreeSet<String>>,
    /// Entity -> regex patterns.
    regexes: BTreeMap<String, Vec<String>>,
}

struct Rasa<'a> {
    files: &'a ExportFiles,
    w: &'a mut Warnings,
    domain: Value,
    nlu: Nlu,
    /// Entities Duckling extracts (the pipeline's `dimensions`).
    duckling: BTreeSet<String>,
    uses_handoff: bool,
}

/// A step of a story, reduced to what the flow needs.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// The caller: one of these intents.
    User(Vec<String>),
    /// A response (`utter_*`).
    Utter(String),
    /// A form starts (`action: <form>`).
    Form(String),
    /// The running form ends (`active_loop: null`).
    FormDone,
    Handoff,
    /// A custom action: nothing here runs it.
    Custom(String),
}

/// A node of the story tree: what the bot does after a path of caller intents.
#[derive(Debug, Default, Clone)]
struct Node {
    steps: Vec<Step>,
    children: BTreeMap<Vec<String>, Node>,
    origin: String,
}

impl Rasa<'_> {
    fn duckling_dimensions(&mut self, config: &Value) {
        for c in seq(config, "pipeline") {
            if str_of(c, "name") == Some("DucklingEntityExtractor") {
                for d in seq(c, "dimensions") {
                    if let Some(d) = d.as_str() {
                        self.duckling.insert(d.to_string());
                    }
                }
            }
        }
    }

    fn nlu_section(&mut self, doc: &Value, path: &str) {
        for (i, item) in seq(doc, "nlu").iter().enumerate() {
            let examples = examples_of(item);
            if let Some(intent) = str_of(item, "intent") {
                if intent.contains('/') {
                    self.w.warn(format!("{path} nlu[{i}]"), format!("retrieval intent `{intent}` is imported as its own intent; its response `utter_{intent}` is said when a rule maps it"));
                }
                let list = self.nlu.examples.entry(intent.to_string()).or_default();
                for e in examples {
                    let (text, annotations) = strip_annotations(&e);
                    for (entity, said, value) in annotations {
                        let syns = self
                            .nlu
                            .values
                            .entry(entity)
                            .or_default()
                            .entry(value.clone())
                            .or_default();
                        if said.to_lowercase() != value.to_lowercase() {
                            syns.insert(said);
                        }
                    }
                    if !text.is_empty() {
                        list.push(text);
                    }
                }
            } else if let Some(value) = str_of(item, "synonym") {
                self.nlu
                    .synonyms
                    .entry(value.to_string())
                    .or_default()
                    .extend(examples);
            } else if let Some(name) = str_of(item, "lookup") {
                let values = self.nlu.values.entry(name.to_string()).or_default();
                for e in examples {
                    values.entry(e).or_default();
                }
            } else if let Some(name) = str_of(item, "regex") {
                self.nlu
                    .regexes
                    .entry(name.to_string())
                    .or_default()
                    .extend(examples);
            }
        }
    }

    fn response(&self, name: &str) -> Option<&Value> {
        // Rasa 1 domains call them `templates`.
        self.domain
            .get("responses")
            .or_else(|| self.domain.get("templates"))
            .and_then(|r| r.get(name))
    }

    /// The text of response `name` (its first variation), warning about what a voice bot cannot show.
    fn utter(&mut self, name: &str) -> Option<String> {
        let variations = self.response(name)?.as_sequence()?.clone();
        let at = format!("domain.yml responses.{name}");
        let voice: Vec<&Value> = variations
            .iter()
            .filter(|v| str_of(v, "channel").is_none())
            .collect();
        if variations.len() > 1 {
            self.w.warn(
                &at,
                format!(
                    "{} variations: the local bot always says the first",
                    variations.len()
                ),
            );
        }
        let first = voice.first().copied().or(variations.first())?;
        if first.get("buttons").is_some() {
            self.w.warn(
                &at,
                "buttons are not offered by voice: callers say the option instead",
            );
        }
        if first.get("condition").is_some() {
            self.w.warn(
                &at,
                "conditional response variations are not supported: the first is said",
            );
        }
        if first.get("image").is_some()
            || first.get("custom").is_some()
            || first.get("attachment").is_some()
        {
            self.w.warn(
                &at,
                "images, attachments and custom payloads have no voice equivalent",
            );
        }
        str_of(first, "text")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    fn intents(&mut self, bundle: &mut Bundle) {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for i in seq(&self.domain, "intents") {
            match i {
                Value::String(s) => {
                    names.insert(s.clone());
                }
                Value::Mapping(m) => {
                    names.extend(m.keys().filter_map(Value::as_str).map(str::to_string))
                }
                _ => {}
            }
        }
        names.extend(self.nlu.examples.keys().cloned());
        for name in names {
            let phrases = self.nlu.examples.get(&name).cloned().unwrap_or_default();
            bundle.intents.insert(
                ident(&name),
                Intent {
                    description: None,
                    phrases: Localized::One(phrases),
                    keywords: Default::default(),
                    ..Default::default()
                },
            );
        }
    }

    fn steps_of(&mut self, story: &Value, at: &str) -> Vec<Step> {
        let forms: BTreeSet<String> = self
            .domain
            .get("forms")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut out = vec![];
        for step in seq(story, "steps") {
            if let Some(intent) = str_of(step, "intent") {
                out.push(Step::User(vec![intent.to_string()]));
            } else if let Some(alts) = step.get("or").and_then(Value::as_sequence) {
                let intents: Vec<String> = alts
                    .iter()
                    .filter_map(|a| str_of(a, "intent"))
                    .map(str::to_string)
                    .collect();
                if intents.is_empty() {
                    self.w
                        .warn(at, "an `or:` of slots or actions is not supported");
                } else {
                    out.push(Step::User(intents));
                }
            } else if let Some(action) = str_of(step, "action") {
                out.push(if action.starts_with("utter_") {
                    Step::Utter(action.to_string())
                } else if forms.contains(action) {
                    Step::Form(action.to_string())
                } else if is_handoff(action) {
                    Step::Handoff
                } else if action == "action_listen" {
                    continue;
                } else {
                    Step::Custom(action.to_string())
                });
            } else if let Some(loop_) = step.get("active_loop") {
                if loop_.is_null() {
                    out.push(Step::FormDone);
                }
            } else if step.get("checkpoint").is_some() {
                self.w.warn(
                    at,
                    "checkpoints are not supported: the story is read up to here",
                );
                break;
            } else if step.get("slot_was_set").is_some() {
                self.w.warn(at, "branches on slot values (slot_was_set) are not supported: read as if always true");
            }
        }
        out
    }

    fn flow(&mut self, stories: &[(String, Value, bool)], bundle: &mut Bundle) {
        let mut root = Node::default();
        // Rules with `condition: active_loop: F` describe what follows form F.
        let mut after_form: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        let mut interruptions = 0;
        for (at, story, is_rule) in stories {
            let steps = self.steps_of(story, at);
            let loop_condition = seq(story, "condition")
                .iter()
                .find_map(|c| str_of(c, "active_loop").map(str::to_string));
            if let (true, Some(form)) = (*is_rule, loop_condition) {
                let rest: Vec<Step> = steps
                    .iter()
                    .skip_while(|s| **s != Step::FormDone)
                    .skip(1)
                    .cloned()
                    .collect();
                after_form.entry(form).or_insert(rest);
                continue;
            }
            if !matches!(steps.first(), Some(Step::User(_))) {
                self.w
                    .warn(at, "does not start with the caller's intent: not imported");
                continue;
            }
            // Split into (intents, bot steps) segments.
            let mut segments: Vec<(Vec<String>, Vec<Step>)> = vec![];
            for s in steps {
                match s {
                    Step::User(i) => segments.push((i, vec![])),
                    other => segments.last_mut().unwrap().1.push(other),
                }
            }
            // A caller turn while a form runs (the form did not finish before it) is an interruption.
            let mut form_open = false;
            let mut kept = vec![];
            for seg in segments {
                if form_open {
                    interruptions += 1;
                    break;
                }
                for s in &seg.1 {
                    match s {
                        Step::Form(_) => form_open = true,
                        Step::FormDone => form_open = false,
                        _ => {}
                    }
                }
                kept.push(seg);
            }
            let mut node = &mut root;
            for (intents, bot) in kept {
                let child = node
                    .children
                    .entry(intents.clone())
                    .or_insert_with(|| Node {
                        origin: at.clone(),
                        ..Default::default()
                    });
                if child.steps.is_empty() {
                    child.steps = bot;
                } else if !bot.is_empty() && child.steps != bot {
                    self.w.warn(
                        at,
                        format!(
                            "after {:?} the bot does something else than in {}: that one is kept",
                            intents, child.origin
                        ),
                    );
                }
                node = child;
            }
        }
        if interruptions > 0 {
            self.w.warn("data/", format!("{interruptions} story part(s) where the caller interrupts a form are not imported: the global intents answer them and the form is asked again"));
        }

        // nlu_fallback -> no-match prompts.
        if let Some(fallback) = root.children.remove(&vec!["nlu_fallback".to_string()]) {
            let texts: Vec<Text> = fallback
                .steps
                .iter()
                .filter_map(|s| {
                    if let Step::Utter(u) = s {
                        self.utter(u)
                    } else {
                        None
                    }
                })
                .map(Text::text)
                .collect();
            if !texts.is_empty() {
                bundle.settings.no_match.prompts = texts;
            }
        }
        if let Some(greet) = self.utter("utter_greet") {
            self.w.warn("domain.yml responses.utter_greet", "a Rasa bot waits for the user; on the phone the local bot speaks first, with utter_greet");
            bundle.flow.states.insert(
                START.into(),
                State {
                    say: Prompts(vec![Text::text(greet)]),
                    transitions: vec![Transition {
                        to: Some(MAIN.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        } else {
            self.w.warn(
                "domain.yml",
                "no utter_greet: the local bot starts listening in silence",
            );
            bundle.flow.states.insert(
                START.into(),
                State {
                    transitions: vec![Transition {
                        to: Some(MAIN.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        }
        bundle.flow.states.insert(
            MAIN.into(),
            State {
                description: Some("listening for any intent".into()),
                ..Default::default()
            },
        );

        let children: Vec<(Vec<String>, Node)> = root.children.into_iter().collect();
        for (intents, node) in children {
            let name = ident(&intents[0]);
            self.node_states(&name, &node, &after_form, bundle);
            for i in intents {
                bundle.flow.global.push(Transition {
                    intent: Some(ident(&i)),
                    to: Some(name.clone()),
                    ..Default::default()
                });
            }
        }
    }

    /// The state for one node of the story tree (and its descendants).
    fn node_states(
        &mut self,
        name: &str,
        node: &Node,
        after_form: &BTreeMap<String, Vec<Step>>,
        bundle: &mut Bundle,
    ) {
        let mut state = State::default();
        let mut handoff = false;
        let mut form = None;
        let mut after: Vec<Step> = vec![];
        for s in &node.steps {
            match s {
                Step::Form(f) if form.is_none() => {
                    form = Some(f.clone());
                    after.extend(after_form.get(f).cloned().unwrap_or_default());
                }
                Step::FormDone | Step::User(_) => {}
                other if form.is_some() => after.push(other.clone()),
                other => handoff |= self.bot_step(other, &mut state.say, &node.origin),
            }
        }
        if handoff {
            state.transitions.push(Transition {
                transfer: Some(AGENT.into()),
                ..Default::default()
            });
        } else if let Some(f) = &form {
            // Once the form's slots are filled: what follows it, then back to listening.
            state.collect = self.form_slots(f, bundle);
            let mut say = Prompts::default();
            let mut handoff_after = false;
            for s in &after {
                handoff_after |= self.bot_step(s, &mut say, &node.origin);
            }
            state.transitions.push(match handoff_after {
                true => Transition {
                    say,
                    transfer: Some(AGENT.into()),
                    ..Default::default()
                },
                false => Transition {
                    say,
                    to: Some(MAIN.into()),
                    ..Default::default()
                },
            });
        }
        for (intents, child) in &node.children {
            let child_name = format!("{name} > {}", ident(&intents[0]));
            self.node_states(&child_name, child, after_form, bundle);
            for i in intents {
                state.transitions.push(Transition {
                    intent: Some(ident(i)),
                    to: Some(child_name.clone()),
                    ..Default::default()
                });
            }
        }
        bundle.flow.states.insert(name.to_string(), state);
    }

    /// Add what a bot step says to `say`; true when it hands the caller off.
    fn bot_step(&mut self, s: &Step, say: &mut Prompts, at: &str) -> bool {
        match s {
            Step::Utter(u) => match self.utter(u) {
                Some(t) => say.0.push(Text::text(t)),
                None => self.w.warn(at, format!("response `{u}` has no text in domain.yml: not said")),
            },
            Step::Handoff => {
                self.uses_handoff = true;
                return true;
            }
            Step::Custom(a) => self.w.warn(at, format!("custom action `{a}` is not run (no action server here): what it says or does is missing")),
            _ => {}
        }
        false
    }

    /// The form's required slots as `collect` entries.
    fn form_slots(&mut self, form: &str, bundle: &mut Bundle) -> Vec<Collect> {
        let at = format!("domain.yml forms.{form}");
        let def = self
            .domain
            .get("forms")
            .and_then(|f| f.get(form))
            .cloned()
            .unwrap_or(Value::Null);
        let required: Vec<(String, Vec<Value>)> = match def.get("required_slots") {
            Some(Value::Sequence(s)) => s
                .iter()
                .filter_map(Value::as_str)
                .map(|s| (s.to_string(), vec![]))
                .collect(),
            // Rasa 2: slot -> mappings.
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str()?.to_string(),
                        v.as_sequence().cloned().unwrap_or_default(),
                    ))
                })
                .collect(),
            _ => vec![],
        };
        let mut out = vec![];
        for (slot, form_mappings) in required {
            let prompt = [
                format!("utter_ask_{form}_{slot}"),
                format!("utter_ask_{slot}"),
            ]
            .iter()
            .find_map(|r| self.utter(r));
            let Some(prompt) = prompt else {
                self.w.warn(&at, format!("slot `{slot}` has no utter_ask_{slot} response (asked by a custom action?): not asked"));
                continue;
            };
            let slot_def = self
                .domain
                .get("slots")
                .and_then(|s| s.get(slot.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            let mappings = if form_mappings.is_empty() {
                seq(&slot_def, "mappings").to_vec()
            } else {
                form_mappings
            };
            let Some(entity) = self.slot_entity(&slot, &slot_def, &mappings, bundle) else {
                self.w.warn(
                    &at,
                    format!("slot `{slot}` is filled by a custom mapping: not asked"),
                );
                continue;
            };
            out.push(Collect {
                slot: slot_ident(&slot),
                entity,
                prompt: Text::text(prompt),
                reprompts: vec![],
                max_attempts: None,
                on_fail: None,
            });
        }
        out
    }

    /// The entity that fills a slot, from its mappings; registered in the bundle.
    fn slot_entity(
        &mut self,
        slot: &str,
        def: &Value,
        mappings: &[Value],
        bundle: &mut Bundle,
    ) -> Option<String> {
        let at = format!("domain.yml slots.{slot}");
        let kinds: Vec<&str> = mappings.iter().filter_map(|m| str_of(m, "type")).collect();
        if let Some(entity) = mappings
            .iter()
            .find(|m| str_of(m, "type") == Some("from_entity"))
            .and_then(|m| str_of(m, "entity"))
        {
            let name = ident(entity);
            if let Some(values) = self.nlu.values.get(entity).filter(|v| !v.is_empty()) {
                let values = values
                    .iter()
                    .map(|(v, syns)| {
                        let mut synonyms: BTreeSet<String> = syns.clone();
                        synonyms.extend(self.nlu.synonyms.get(v).cloned().unwrap_or_default());
                        EntityValue {
                            value: v.clone(),
                            synonyms: synonyms.into_iter().collect(),
                        }
                    })
                    .collect();
                bundle.entities.insert(
                    name.clone(),
                    Entity::List {
                        values: Localized::One(values),
                    },
                );
                return Some(name);
            }
            if let Some(patterns) = self.nlu.regexes.get(entity) {
                bundle.entities.insert(
                    name.clone(),
                    Entity::Regex {
                        pattern: patterns.join("|"),
                    },
                );
                return Some(name);
            }
            if self.duckling.contains(entity) {
                if let Some((sys, e, note)) = system_entity(entity) {
                    if let Some(note) = note {
                        self.w
                            .warn(&at, format!("Duckling {entity} approximated: {note}"));
                    }
                    bundle.entities.entry(sys.clone()).or_insert(e);
                    return Some(sys);
                }
            }
            self.w.warn(&at, format!("entity `{entity}` has no example values, lookup table or regex: the caller's words are kept as said"));
            bundle.entities.entry("any".into()).or_insert(Entity::Any);
            return Some("any".into());
        }
        let from_intent: Vec<&Value> = mappings
            .iter()
            .filter(|m| str_of(m, "type") == Some("from_intent"))
            .collect();
        if !from_intent.is_empty() {
            // yes/no style slots: each value is recognised by its intent's examples.
            let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for m in from_intent {
                let value = m.get("value").map(yaml_scalar).unwrap_or_default();
                let intent = str_of(m, "intent").unwrap_or("");
                values
                    .entry(value)
                    .or_default()
                    .extend(self.nlu.examples.get(intent).cloned().unwrap_or_default());
            }
            let name = format!("{}_answer", slot_ident(slot));
            let values = values
                .into_iter()
                .map(|(value, synonyms)| EntityValue {
                    value,
                    synonyms: synonyms.into_iter().collect(),
                })
                .collect();
            bundle.entities.insert(
                name.clone(),
                Entity::List {
                    values: Localized::One(values),
                },
            );
            return Some(name);
        }
        if kinds.contains(&"from_text") || (kinds.is_empty() && str_of(def, "type") == Some("text"))
        {
            bundle.entities.entry("any".into()).or_insert(Entity::Any);
            return Some("any".into());
        }
        if let Some(values) = def.get("values").and_then(Value::as_sequence) {
            let values = values
                .iter()
                .map(|v| EntityValue {
                    value: yaml_scalar(v),
                    synonyms: vec![],
                })
                .collect();
            let name = format!("{}_values", slot_ident(slot));
            bundle.entities.insert(
                name.clone(),
                Entity::List {
                    values: Localized::One(values),
                },
            );
            return Some(name);
        }
        None
    }

    fn tests(&mut self, bundle: &Bundle) -> Result<Vec<TestConversation>, ImportError> {
        let mut out = vec![];
        let paths: Vec<String> = self
            .files
            .under("tests")
            .filter(|p| p.ends_with(".yml") || p.ends_with(".yaml"))
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = super::parse_yaml(self.files, FORMAT, &path)?;
            'story: for (i, story) in seq(&doc, "stories").iter().enumerate() {
                let at = format!("{path} stories[{i}]");
                let name = str_of(story, "story")
                    .unwrap_or("test story")
                    .trim()
                    .to_string();
                let mut turns: Vec<TestTurn> = vec![];
                for step in seq(story, "steps") {
                    if let Some(intent) = str_of(step, "intent") {
                        let user = str_of(step, "user")
                            .map(|u| strip_annotations(u.trim()).0)
                            .or_else(|| {
                                // Story tests may skip the text: an example of the intent stands in.
                                self.nlu
                                    .examples
                                    .get(intent)
                                    .and_then(|e| e.first().cloned())
                            });
                        let Some(user) = user else {
                            self.w.warn(&at, format!("turn with intent `{intent}` has no user text and the intent no examples: test not imported"));
                            continue 'story;
                        };
                        let expected = if intent == "nlu_fallback" {
                            "none".to_string()
                        } else {
                            ident(intent)
                        };
                        let intent = bundle
                            .intents
                            .contains_key(&expected)
                            .then_some(expected.clone())
                            .or((expected == "none").then_some(expected));
                        turns.push(TestTurn {
                            user: Some(user),
                            intent,
                            ..Default::default()
                        });
                    } else if let Some(action) = str_of(step, "action") {
                        let Some(turn) = turns.last_mut() else {
                            continue;
                        };
                        if action.starts_with("utter_") {
                            if let Some(text) = self
                                .utter(action)
                                .filter(|t| !crate::dialog::template::has_placeholders(t))
                            {
                                turn.reply_contains.push(text);
                            }
                        } else if is_handoff(action) {
                            turn.action = Some(crate::dialog::bundle::ActionKind::Transfer);
                        }
                    }
                }
                if turns.is_empty() {
                    continue;
                }
                out.push(TestConversation {
                    name,
                    greeting_contains: vec![],
                    turns,
                });
            }
        }
        Ok(out)
    }
}

fn is_handoff(action: &str) -> bool {
    matches!(action, "action_handoff" | "action_human_handoff")
        || action.starts_with("action_transfer")
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Examples of an NLU item: a `- ` list in a block string, or a YAML list.
fn examples_of(item: &Value) -> Vec<String> {
    match item.get("examples") {
        Some(Value::String(block)) => block
            .lines()
            .filter_map(|l| {
                l.trim_start()
                    .strip_prefix("- ")
                    .or_else(|| l.trim_start().strip_prefix('-'))
            })
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .or_else(|| str_of(i, "text").map(str::to_string))
            })
            .collect(),
        _ => vec![],
    }
}

/// `the priority is [high](priority)` -> ("the priority is high", [(priority, high, high)]);
/// also `[escalated]{"entity": "priority", "value": "high"}` and `[x](entity:value)`.
fn strip_annotations(example: &str) -> (String, Vec<(String, String, String)>) {
    let re = regex::Regex::new(r#"\[([^\]]+)\](?:\(([^)]+)\)|(\{[^}]*\}))"#).unwrap();
    let mut found = vec![];
    let text = re.replace_all(example, |c: &regex::Captures| {
        let said = c[1].to_string();
        if let Some(paren) = c.get(2) {
            let (entity, value) = paren
                .as_str()
                .split_once(':')
                .unwrap_or((paren.as_str(), &said));
            found.push((
                entity.trim().to_string(),
                said.clone(),
                value.trim().to_string(),
            ));
        } else if let Some(json) = c.get(3) {
            let v: serde_json::Value = serde_json::from_str(json.as_str()).unwrap_or_default();
            if let Some(entity) = v["entity"].as_str() {
                let value = v["value"].as_str().unwrap_or(&said).to_string();
                found.push((entity.to_string(), said.clone(), value));
            }
        }
        said
    });
    (text.split_whitespace().collect::<Vec<_>>().join(" "), found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_become_text_and_entity_values() {
        let (t, a) = strip_annotations("it should be a [low](priority) priority");
        assert_eq!(t, "it should be a low priority");
        assert_eq!(a, vec![("priority".into(), "low".into(), "low".into())]);
        let (t, a) = strip_annotations(r#"[escalated]{"entity": "priority", "value": "high"}"#);
        assert_eq!(t, "escalated");
        assert_eq!(
            a,
            vec![("priority".into(), "escalated".into(), "high".into())]
        );
    }
}
