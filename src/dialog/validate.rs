//! Bundle validation: what makes a bundle unusable (errors) or suspicious
//! (warnings), each with the field path and what to do about it.

use super::bundle::{Bundle, Entity, Localized, Settings, Transition, BACK_TARGET, RETURN_TARGET};
use super::template;
use super::text::normalize;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding: where (a field path like `flow.states.menu.transitions[2].to`) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    pub severity: Severity,
    pub path: String,
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

/// Where a transition appears decides which fields it may use.
#[derive(PartialEq, Clone, Copy)]
enum TransitionUse {
    Global,
    State,
    /// `on_fail`, `no_match.then`, `no_input.then`: no trigger of their own.
    Escalation,
}

fn transition(b: &Bundle, path: &str, t: &Transition, usage: TransitionUse, f: &mut Findings) {
    let exits = t.to.is_some() as u8 + t.transfer.is_some() as u8 + t.end as u8;
    if exits != 1 {
        f.error(
            path,
            "needs exactly one of `to: <state>`, `transfer: <target>` or `end: true`",
        );
    }
    if let Some(to) = &t.to {
        let special = to == RETURN_TARGET || to == BACK_TARGET;
        if t.call && special {
            f.error(
                format!("{path}.call"),
                format!("`call: true` needs a state to call, not `{to}`"),
            );
        }
        if !special && !b.flow.states.contains_key(to) {
            f.error(
                format!("{path}.to"),
                format!(
                    "state `{to}` does not exist ({}); fix the name or add the state",
                    known(to, b.flow.states.keys())
                ),
            );
        }
    }
    if let Some(target) = &t.transfer {
        if !b.transfer_targets.contains_key(target) {
            f.error(
                format!("{path}.transfer"),
                format!(
                    "transfer target `{target}` does not exist ({}); add it under transfer_targets",
                    known(target, b.transfer_targets.keys())
                ),
            );
        }
    }
    if let Some(intent) = &t.intent {
        if !b.intents.contains_key(intent) {
            f.error(
                format!("{path}.intent"),
                format!(
                    "intent `{intent}` does not exist ({}); fix the name or add the intent",
                    known(intent, b.intents.keys())
                ),
            );
        }
    }
    if let Some(keys) = &t.dtmf {
        if keys.is_empty() || !keys.chars().all(is_dtmf_key) {
            f.error(
                format!("{path}.dtmf"),
                format!("`{keys}` is not a DTMF key string (0-9, *, #, A-D)"),
            );
        }
    }
    match usage {
        TransitionUse::Escalation if t.intent.is_some() || t.dtmf.is_some() || t.condition.is_some() => {
            f.error(path, "an escalation (on_fail/then) happens by itself: remove intent/dtmf/if")
        }
        TransitionUse::Global if t.is_automatic() => f.error(
            path,
            "a global transition needs an `intent` or `dtmf` trigger (an automatic one would fire in every state)",
        ),
        _ => {}
    }
}

/// Every transition with its path (settings escalations included).
fn all_transitions(b: &Bundle) -> impl Iterator<Item = (String, &Transition)> {
    let global = b
        .flow
        .global
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("flow.global[{i}]"), t));
    let states = b.flow.states.iter().flat_map(|(name, s)| {
        let own = s
            .transitions
            .iter()
            .enumerate()
            .map(move |(i, t)| (format!("flow.states.{name}.transitions[{i}]"), t));
        let fails = s.collect.iter().enumerate().filter_map(move |(i, c)| {
            c.on_fail
                .as_ref()
                .map(|t| (format!("flow.states.{name}.collect[{i}].on_fail"), t))
        });
        own.chain(fails)
    });
    let settings = [
        ("settings.no_match.then", &b.settings.no_match.then),
        ("settings.no_input.then", &b.settings.no_input.then),
    ]
    .into_iter()
    .filter_map(|(p, t)| t.as_ref().map(|t| (p.to_string(), t)));
    global.chain(states).chain(settings)
}

fn flow(b: &Bundle, f: &mut Findings) {
    let states = &b.flow.states;
    match states.get(&b.flow.start) {
        None => f.error(
            "flow.start",
            format!(
                "state `{}` does not exist ({}); name the state calls begin in",
                b.flow.start,
                known(&b.flow.start, states.keys())
            ),
        ),
        Some(s) if s.say.is_empty() && s.collect.is_empty() => f.warn(
            format!("flow.states.{}.say", b.flow.start),
            "the start state says nothing: callers hear silence on answer",
        ),
        _ => {}
    }
    for (i, t) in b.flow.global.iter().enumerate() {
        transition(b, &format!("flow.global[{i}]"), t, TransitionUse::Global, f);
    }
    let collected = collected_slots(b);
    let slot_names = known_placeholders(b);
    for (name, s) in states {
        let base = format!("flow.states.{name}");
        for (i, c) in s.collect.iter().enumerate() {
            let path = format!("{base}.collect[{i}]");
            if !b.entities.contains_key(&c.entity) {
                f.error(
                    format!("{path}.entity"),
                    format!(
                        "entity `{}` does not exist ({}); add it under entities",
                        c.entity,
                        known(&c.entity, b.entities.keys())
                    ),
                );
            }
            if c.slot.trim().is_empty() || c.slot.contains(['{', '}', ' ']) {
                f.error(
                    format!("{path}.slot"),
                    "a slot name must be non-empty, without spaces or braces",
                );
            }
            if let Some(t) = &c.on_fail {
                transition(
                    b,
                    &format!("{path}.on_fail"),
                    t,
                    TransitionUse::Escalation,
                    f,
                );
            }
        }
        for (i, t) in s.transitions.iter().enumerate() {
            let path = format!("{base}.transitions[{i}]");
            transition(b, &path, t, TransitionUse::State, f);
            if let Some(c) = &t.condition {
                for slot in c.slots() {
                    if !slot_names.contains(slot) {
                        f.warn(format!("{path}.if"), format!("slot `{slot}` is never collected or looked up, so the condition never changes"));
                    }
                }
            }
        }
        if let Some(l) = &s.lookup {
            if !b.data.contains_key(&l.table) {
                f.error(
                    format!("{base}.lookup.table"),
                    format!(
                        "table `{}` does not exist ({}); add it under data",
                        l.table,
                        known(&l.table, b.data.keys())
                    ),
                );
            }
            if !collected.contains(l.key.as_str()) {
                f.warn(
                    format!("{base}.lookup.key"),
                    format!(
                        "slot `{}` is never collected: the lookup always misses",
                        l.key
                    ),
                );
            }
        }
        let listens = s
            .transitions
            .iter()
            .all(|t| !(t.is_automatic() && t.condition.is_none()));
        if listens
            && s.collect.is_empty()
            && s.say.is_empty()
            && s.reprompt.is_none()
            && *name != b.flow.start
        {
            f.warn(&base, "listens without saying anything (no say, collect or reprompt): callers hear silence here");
        }
    }
    unreachable_states(b, f);
    automatic_loops(b, f);
}

fn collected_slots(b: &Bundle) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for s in b.flow.states.values() {
        out.extend(s.collect.iter().map(|c| c.slot.as_str()));
    }
    out
}

/// Slot names a prompt may use: collected slots, slots transitions `set`,
/// and `<into>.<column>` of lookups.
fn known_placeholders(b: &Bundle) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = collected_slots(b).into_iter().map(str::to_string).collect();
    for (_, t) in all_transitions(b) {
        out.extend(t.set.keys().cloned());
    }
    for s in b.flow.states.values() {
        if let Some(l) = &s.lookup {
            if let Some(table) = b.data.get(&l.table) {
                for row in &table.rows {
                    out.extend(row.keys().map(|col| format!("{}.{col}", l.into)));
                }
            }
        }
    }
    out
}

fn unreachable_states(b: &Bundle, f: &mut Findings) {
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::new();
    let globals = all_transitions(b)
        .filter(|(p, _)| p.starts_with("flow.global") || p.starts_with("settings."));
    for (_, t) in globals {
        if let Some(to) = &t.to {
            queue.push_back(to.as_str());
        }
    }
    queue.push_back(b.flow.start.as_str());
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(s) = b.flow.states.get(name) {
            let exits = s
                .transitions
                .iter()
                .chain(s.collect.iter().filter_map(|c| c.on_fail.as_ref()));
            queue.extend(exits.filter_map(|t| t.to.as_deref()));
        }
    }
    for name in b.flow.states.keys() {
        if !seen.contains(name.as_str()) {
            f.warn(
                format!("flow.states.{name}"),
                "is unreachable from flow.start: no transition leads here",
            );
        }
    }
}

/// States that pass control on unconditionally forever (a -> b -> a) would
/// loop without listening.
fn automatic_loops(b: &Bundle, f: &mut Findings) {
    let next = |name: &str| -> Option<&str> {
        let s = b.flow.states.get(name)?;
        if !s.collect.is_empty() {
            return None;
        }
        s.transitions
            .iter()
            .find(|t| t.is_automatic() && t.condition.is_none())
            .and_then(|t| t.to.as_deref())
    };
    let mut reported = BTreeSet::new();
    for start in b.flow.states.keys() {
        let mut path = vec![start.as_str()];
        let mut cur = start.as_str();
        while let Some(n) = next(cur) {
            if let Some(pos) = path.iter().position(|p| *p == n) {
                let cycle: BTreeSet<&str> = path[pos..].iter().copied().collect();
                if reported.insert(cycle.clone()) {
                    f.error(
                        format!("flow.states.{n}"),
                        format!(
                            "states {} hand over to each other unconditionally and never listen; give one an `if` or an intent",
                            cycle.into_iter().collect::<Vec<_>>().join(" -> ")
                        ),
                    );
                }
                break;
            }
            path.push(n);
            cur = n;
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
