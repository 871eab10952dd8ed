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
//! | handoff action (`action_handoff`, `action_human_handoff`, `action_transfer_to_agent`...: a name that says a person; not `action_transfer_money`) | transfer to target `agent` (set `[sip] transfer_target`) |
//! | `tests/*.yml` test stories with `user:` texts | `tests` |
//! | `utter_greet`, if defined | the greeting (Rasa bots wait for the user; a phone bot must speak first) |
//!
//! Warned, not carried: custom actions (no action server here), response
//! variations and buttons, conditional responses, checkpoints, slot-based
//! story branches, form interruptions (the global intents answer them),
//! retrieval intents, Markdown (Rasa 1) training data.

mod examples;
mod forms;
mod nlu;
mod stories;
mod test_stories;
use examples::*;

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

/// Import a Rasa project; constructs not carried over are warned in `w`.
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

/// A form, or an action Rasa itself runs (listen, restart, ...): not code
/// the export leaves out.
fn is_form_or_builtin(action: &str, forms: &BTreeSet<String>) -> bool {
    forms.contains(action)
        || matches!(
            action,
            "action_listen"
                | "action_restart"
                | "action_session_start"
                | "action_default_fallback"
                | "action_deactivate_loop"
                | "action_revert_fallback_events"
                | "action_back"
                | "action_two_stage_fallback"
                | "action_unlikely_intent"
                | "action_extract_slots"
        )
}

/// A custom action that hands the conversation to a person. Only names that
/// say so: `action_transfer_money` is a bank transfer, not a call transfer,
/// and `action_handoff_options` offers a handoff without making it.
fn is_handoff(action: &str) -> bool {
    let Some(rest) = action.strip_prefix("action_") else {
        return false;
    };
    let person = ["agent", "human", "person", "operator", "representative"];
    matches!(rest, "handoff" | "hand_off")
        || rest
            .strip_suffix("_handoff")
            .or_else(|| rest.strip_suffix("_hand_off"))
            .is_some_and(|who| person.contains(&who))
        || ["handoff_to_", "hand_off_to_", "transfer_to_", "talk_to_"]
            .iter()
            .filter_map(|p| rest.strip_prefix(p))
            .any(|who| {
                person.iter().any(|p| {
                    who.trim_start_matches("a_")
                        .trim_start_matches("live_")
                        .starts_with(p)
                })
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_actions_that_name_a_person_are_handoffs() {
        for a in [
            "action_handoff",
            "action_human_handoff",
            "action_agent_hand_off",
            "action_handoff_to_human",
            "action_transfer_to_agent",
            "action_transfer_to_live_agent",
            "action_talk_to_a_person",
        ] {
            assert!(is_handoff(a), "{a}");
        }
        for a in [
            "action_transfer_money",
            "action_show_transfer_charge",
            "action_handoff_options",
            "utter_handoff",
            "action_transfer_to_savings",
        ] {
            assert!(!is_handoff(a), "{a}");
        }
    }

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
