//! The flow's checks: every transition's target and condition, states no
//! path reaches, automatic transitions that loop without listening.

use super::*;

/// Where a transition appears decides which fields it may use.
#[derive(PartialEq, Clone, Copy)]
pub(super) enum TransitionUse {
    Global,
    State,
    /// `on_fail`, `no_match.then`, `no_input.then`: no trigger of their own.
    Escalation,
}

pub(super) fn transition(
    b: &Bundle,
    path: &str,
    t: &Transition,
    usage: TransitionUse,
    f: &mut Findings,
) {
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
pub(super) fn all_transitions(b: &Bundle) -> impl Iterator<Item = (String, &Transition)> {
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

pub(super) fn flow(b: &Bundle, f: &mut Findings) {
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

pub(super) fn collected_slots(b: &Bundle) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for s in b.flow.states.values() {
        out.extend(s.collect.iter().map(|c| c.slot.as_str()));
    }
    out
}

/// Slot names a prompt may use: collected slots, slots transitions `set`,
/// and `<into>.<column>` of lookups.
pub(super) fn known_placeholders(b: &Bundle) -> BTreeSet<String> {
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

pub(super) fn unreachable_states(b: &Bundle, f: &mut Findings) {
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
pub(super) fn automatic_loops(b: &Bundle, f: &mut Findings) {
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
