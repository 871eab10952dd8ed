//! Bundle validation: what makes a bundle unusable (errors) or suspicious
//! (warnings), each with the field path and what to do about it.

use super::bundle::{Bundle, Entity, Localized, Settings, Transition, BACK_TARGET, RETURN_TARGET};
use super::template;
use super::text::normalize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

mod flow;
use flow::*;

/// How bad an issue is: errors refuse the bundle, warnings are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The bundle is refused.
    Error,
    /// Worth a look; the bundle still loads.
    Warning,
}

/// One finding: where (a field path like `flow.states.menu.transitions[2].to`) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// The field path, e.g. `flow.states.menu.transitions[2].to`.
    pub path: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}: {}", self.path, self.message)
    }
}

struct Findings(Vec<Issue>);

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
        });
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Names listed in one error at most: a long list buries the message.
const KNOWN_SHOWN: usize = 6;

/// What to write instead of `name`: the closest known name ("did you mean"),
/// else a short list of the known ones.
pub fn known<'a>(name: &str, names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        return "none are defined".into();
    }
    if let Some(best) = closest(name, list.iter().copied()) {
        return format!("did you mean `{best}`?");
    }
    let shown = list[..list.len().min(KNOWN_SHOWN)].join(", ");
    if list.len() > KNOWN_SHOWN {
        format!("known: {shown} ... ({} in all)", list.len())
    } else {
        format!("known: {shown}")
    }
}

/// The name most like `name` (case and separators ignored), when it is close
/// enough to be a typo of it.
pub fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // Names like `Flow/Page` share their flow: only the last part tells them apart.
    let key = |s: &str| -> String {
        s.rsplit('/')
            .next()
            .unwrap_or(s)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = key(name);
    names
        .map(|n| (strsim::normalized_damerau_levenshtein(&wanted, &key(n)), n))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

impl Bundle {
    /// Problems a designer should fix (errors) or look at (warnings):
    /// dangling transitions, missing prompts, unreachable states, unknown names.
    pub fn validate(&self) -> Vec<Issue> {
        validate(self)
    }
}

/// Every problem of `b`, errors first (see [`Bundle::validate`]).
pub fn validate(b: &Bundle) -> Vec<Issue> {
    let mut f = Findings(vec![]);
    settings(b, &mut f);
    targets(b, &mut f);
    entities(b, &mut f);
    intents(b, &mut f);
    flow(b, &mut f);
    prompts(b, &mut f);
    data(b, &mut f);
    tests(b, &mut f);
    let mut issues = f.0;
    issues.sort_by_key(|i| i.severity);
    issues
}

fn settings(b: &Bundle, f: &mut Findings) {
    let s = &b.settings;
    if b.bot.language.trim().is_empty() {
        f.error("bot.language", "is empty; set a language code such as `en`");
    }
    if s.no_match.max == 0 {
        f.error(
            "settings.no_match.max",
            "must be at least 1 (the no-match that escalates)",
        );
    }
    if s.no_input.max == 0 {
        f.error(
            "settings.no_input.max",
            "must be at least 1 (the no-input that escalates)",
        );
    }
    for (path, v) in [
        (
            "settings.recognition.embedding_accept",
            s.recognition.embedding_accept,
        ),
        (
            "settings.recognition.embedding_margin",
            s.recognition.embedding_margin,
        ),
        ("settings.recognition.llm_floor", s.recognition.llm_floor),
        (
            "settings.knowledge.min_similarity",
            s.knowledge.min_similarity,
        ),
    ] {
        if !(0.0..=1.0).contains(&v) {
            f.error(
                path,
                format!("{v} is outside 0..1 (it is a cosine similarity)"),
            );
        }
    }
    if s.dtmf.terminator.chars().count() > 1 || s.dtmf.terminator.chars().any(|c| !is_dtmf_key(c)) {
        f.error(
            "settings.dtmf.terminator",
            "must be one DTMF key (`#` or `*`) or empty",
        );
    }
    match &s.handoff_target {
        Some(t) if !b.transfer_targets.contains_key(t) => f.error(
            "settings.handoff_target",
            format!("transfer target `{t}` does not exist ({}); add it under transfer_targets", known(t, b.transfer_targets.keys())),
        ),
        None if b.handoff_target().is_none() && (s.no_match.then.is_none() || s.no_input.then.is_none()) => f.warn(
            "settings.handoff_target",
            "no handoff target (set one, or define exactly one transfer target): repeated no-match or no-input and engine failures will hang up instead of reaching a human",
        ),
        _ => {}
    }
    for (path, t) in [
        ("settings.no_match.then", &s.no_match.then),
        ("settings.no_input.then", &s.no_input.then),
    ] {
        if let Some(t) = t {
            transition(b, path, t, TransitionUse::Escalation, f);
        }
    }
    // The built-in prompts are English: a bot in another language must set its own.
    let foreign: Vec<&str> = std::iter::once(b.language())
        .chain(b.bot.languages.iter().map(String::as_str))
        .filter(|l| *l != "en")
        .collect();
    if !foreign.is_empty() {
        let defaults = Settings::default();
        let builtin = [
            (
                "settings.handoff_prompt",
                s.handoff_prompt.0 == defaults.handoff_prompt.0,
            ),
            (
                "settings.apology_prompt",
                s.apology_prompt.0 == defaults.apology_prompt.0,
            ),
            (
                "settings.filler_prompt",
                s.filler_prompt.0 == defaults.filler_prompt.0,
            ),
            (
                "settings.no_input.prompts",
                s.no_input.prompts == defaults.no_input.prompts,
            ),
            (
                "settings.no_match.prompts",
                s.no_match.prompts == defaults.no_match.prompts,
            ),
            (
                "settings.knowledge.followup",
                s.knowledge.followup.0 == defaults.knowledge.followup.0,
            ),
        ];
        for (path, is_default) in builtin {
            if is_default {
                f.warn(
                    path,
                    format!(
                        "uses the built-in English text; give it in {} too",
                        foreign.join(", ")
                    ),
                );
            }
        }
    }
}

fn is_dtmf_key(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#' || ('A'..='D').contains(&c)
}

fn targets(b: &Bundle, f: &mut Findings) {
    for (name, t) in &b.transfer_targets {
        let uri = t.uri.trim();
        let phone = uri
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit() || " -().".contains(c))
            && uri.chars().any(|c| c.is_ascii_digit());
        if !(uri.starts_with("sip:")
            || uri.starts_with("sips:")
            || uri.starts_with("tel:")
            || phone)
        {
            f.error(
                format!("transfer_targets.{name}.uri"),
                format!("`{uri}` is neither a SIP URI (sip:agents@pbx.example.com), a tel: URI nor a phone number (+15551234567)"),
            );
        }
    }
}

fn entities(b: &Bundle, f: &mut Findings) {
    for (name, e) in &b.entities {
        let path = format!("entities.{name}");
        match e {
            Entity::Digits {
                min_digits,
                max_digits,
            } => {
                if *min_digits == 0 || min_digits > max_digits {
                    f.error(path, format!("min_digits {min_digits} / max_digits {max_digits}: need 1 <= min_digits <= max_digits"));
                }
            }
            Entity::List { values } => {
                if values.values().iter().all(|v| v.is_empty()) {
                    f.error(
                        format!("{path}.values"),
                        "a list entity needs at least one value",
                    );
                }
            }
            Entity::Regex { pattern } => {
                if let Err(e) = regex::Regex::new(pattern) {
                    f.error(
                        format!("{path}.pattern"),
                        format!("is not a valid regular expression: {e}"),
                    );
                }
            }
            Entity::Any => {}
        }
    }
}

fn intents(b: &Bundle, f: &mut Findings) {
    let used: BTreeSet<&str> = all_transitions(b)
        .filter_map(|(_, t)| t.intent.as_deref())
        .collect();
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for (name, intent) in &b.intents {
        let path = format!("intents.{name}");
        if name.trim().is_empty() || name.contains(char::is_whitespace) || name == "none" {
            f.error(&path, "intent names must be non-empty, without spaces, and not `none` (reserved for no intent)");
        }
        let phrases: usize = intent.phrases.values().iter().map(|p| p.len()).sum();
        let keywords: usize = intent.keywords.values().iter().map(|p| p.len()).sum();
        if phrases == 0 && keywords == 0 {
            f.warn(&path, "has no phrases and no keywords: only the LLM (from its description) can recognise it; add training phrases");
        }
        if !used.contains(name.as_str()) {
            f.warn(&path, "no transition uses this intent, so recognising it does nothing; add a transition or remove it");
        }
        for p in intent.phrases.values().into_iter().flatten() {
            let key = normalize(p);
            match owner.get(&key) {
                Some(other) if *other != name.as_str() => f.warn(
                    format!("{path}.phrases"),
                    format!("\"{p}\" is also a phrase of `{other}`: the two intents cannot be told apart by it"),
                ),
                _ => {
                    owner.insert(key, name);
                }
            }
        }
    }
}

fn prompts(b: &Bundle, f: &mut Findings) {
    let mut langs: BTreeSet<&str> = b.bot.languages.iter().map(String::as_str).collect();
    langs.insert(b.language());
    let placeholders = known_placeholders(b);
    for (path, text) in b.prompts() {
        if let Localized::ByLang(map) = text {
            for lang in &langs {
                if !map.contains_key(*lang) {
                    f.error(
                        &path,
                        format!("missing prompt text for language `{lang}`; add `{lang}: ...`"),
                    );
                }
            }
        }
        // A slot's question may be empty: the state that led here asked it.
        let may_be_empty = path.contains(".collect[") && path.ends_with("].prompt");
        for t in text.values() {
            if t.trim().is_empty() && !may_be_empty {
                f.error(&path, "missing prompt: the text is empty");
            }
            for name in template::placeholders(t) {
                if !placeholders.contains(name) {
                    f.warn(&path, format!("`{{{name}}}` names no collected or looked-up slot, so it will be spoken as nothing"));
                }
            }
        }
    }
}

fn data(b: &Bundle, f: &mut Findings) {
    for (name, table) in &b.data {
        for (i, row) in table.rows.iter().enumerate() {
            if !row.contains_key(&table.key) {
                f.error(
                    format!("data.{name}.rows[{i}]"),
                    format!("has no key column `{}`", table.key),
                );
            }
        }
    }
}

fn tests(b: &Bundle, f: &mut Findings) {
    for (ti, test) in b.tests.iter().enumerate() {
        for (i, turn) in test.turns.iter().enumerate() {
            let path = format!("tests[{ti}].turns[{i}]");
            let inputs =
                turn.user.is_some() as u8 + turn.dtmf.is_some() as u8 + turn.no_input as u8;
            if inputs != 1 {
                f.error(
                    &path,
                    "needs exactly one input: `user: text`, `dtmf: keys` or `no_input: true`",
                );
            }
            if let Some(intent) = &turn.intent {
                if intent != "none" && !b.intents.contains_key(intent) {
                    f.error(
                        format!("{path}.intent"),
                        format!(
                            "intent `{intent}` does not exist ({})",
                            known(intent, b.intents.keys())
                        ),
                    );
                }
            }
            if let Some(target) = &turn.target {
                if !b.transfer_targets.contains_key(target) {
                    f.error(
                        format!("{path}.target"),
                        format!("transfer target `{target}` does not exist"),
                    );
                }
            }
            if let Some(state) = &turn.state {
                if !b.flow.states.contains_key(state) {
                    f.error(
                        format!("{path}.state"),
                        format!("state `{state}` does not exist"),
                    );
                }
            }
        }
    }
}
