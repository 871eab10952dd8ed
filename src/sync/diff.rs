//! What changed between two bundle versions, as a designer reads it:
//! intents (and their phrases), prompts (by where they are said), flow
//! states, entities and transfer targets.

use crate::dialog::bundle::Localized;
use crate::dialog::Bundle;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What changed in one section of a bundle, by item name.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Changes {
    /// Names only in the new version.
    pub added: Vec<String>,
    /// Names only in the old version.
    pub removed: Vec<String>,
    /// `name: what changed`.
    pub changed: Vec<String>,
}

impl Changes {
    /// True when nothing was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Everything that changed between two bundle versions, section by section.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BundleDiff {
    /// Intents (phrases, keywords, description).
    pub intents: Changes,
    /// Prompt texts, keyed by where they are said.
    pub prompts: Changes,
    /// Flow states (prompts, slots, transitions), plus `flow.start` and the global transitions.
    pub states: Changes,
    /// Entities and their values.
    pub entities: Changes,
    /// Transfer targets and their URIs.
    pub transfer_targets: Changes,
    /// The bundle-wide settings (recognition, DTMF, no-input, handoff...) differ.
    pub settings_changed: bool,
}

impl BundleDiff {
    /// True when the two versions behave the same.
    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
            && self.prompts.is_empty()
            && self.states.is_empty()
            && self.entities.is_empty()
            && self.transfer_targets.is_empty()
            && !self.settings_changed
    }

    /// `+ added`, `- removed`, `~ changed` lines per section.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "no changes\n".into();
        }
        let mut out = String::new();
        for (title, c) in [
            ("intents", &self.intents),
            ("prompts", &self.prompts),
            ("flow states", &self.states),
            ("entities", &self.entities),
            ("transfer targets", &self.transfer_targets),
        ] {
            if c.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{title}: {} added, {} removed, {} changed\n",
                c.added.len(),
                c.removed.len(),
                c.changed.len()
            ));
            for a in &c.added {
                out.push_str(&format!("  + {a}\n"));
            }
            for r in &c.removed {
                out.push_str(&format!("  - {r}\n"));
            }
            for ch in &c.changed {
                out.push_str(&format!("  ~ {ch}\n"));
            }
        }
        if self.settings_changed {
            out.push_str("settings: changed\n");
        }
        out
    }
}

/// Compare maps of named things; `describe` says how a changed one differs.
fn compare<T: Serialize>(
    old: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    describe: impl Fn(&T, &T) -> Option<String>,
) -> Changes {
    let mut c = Changes::default();
    for (name, n) in new {
        match old.get(name) {
            None => c.added.push(name.clone()),
            Some(o) => {
                if let Some(what) = describe(o, n) {
                    c.changed.push(format!("{name}: {what}"));
                }
            }
        }
    }
    c.removed = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .cloned()
        .collect();
    c
}

fn yaml<T: Serialize>(v: &T) -> String {
    serde_norway::to_string(v).unwrap_or_default()
}

fn phrases(p: &Localized<Vec<String>>) -> BTreeSet<String> {
    p.values().into_iter().flatten().cloned().collect()
}

/// Compare two bundles section by section.
pub fn diff(old: &Bundle, new: &Bundle) -> BundleDiff {
    let intents = compare(&old.intents, &new.intents, |o, n| {
        let (op, np) = (phrases(&o.phrases), phrases(&n.phrases));
        let added = np.difference(&op).count();
        let removed = op.difference(&np).count();
        if added + removed > 0 {
            Some(format!("phrases +{added} -{removed}"))
        } else if yaml(o) != yaml(n) {
            Some("keywords or description".into())
        } else {
            None
        }
    });
    // One entry per prompt and language, so a changed translation reads as one line.
    let prompt_map = |b: &Bundle| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (path, text) in b.prompts() {
            match text {
                Localized::One(s) => {
                    out.insert(path, s.clone());
                }
                Localized::ByLang(m) => out.extend(
                    m.iter()
                        .map(|(lang, s)| (format!("{path} ({lang})"), s.clone())),
                ),
            }
        }
        out
    };
    let prompts = compare(&prompt_map(old), &prompt_map(new), |o, n| {
        (o != n).then(|| format!("\"{o}\" -> \"{n}\""))
    });
    let states = compare(&old.flow.states, &new.flow.states, |o, n| {
        let mut what = vec![];
        if yaml(&o.say) != yaml(&n.say) || yaml(&o.reprompt) != yaml(&n.reprompt) {
            what.push("prompts");
        }
        if yaml(&o.collect) != yaml(&n.collect) {
            what.push("slots");
        }
        if yaml(&o.transitions) != yaml(&n.transitions) {
            what.push("transitions");
        }
        if what.is_empty() && yaml(o) != yaml(n) {
            what.push("settings");
        }
        (!what.is_empty()).then(|| what.join(", "))
    });
    let entities = compare(&old.entities, &new.entities, |o, n| {
        (yaml(o) != yaml(n)).then(|| "values".into())
    });
    let transfer_targets = compare(&old.transfer_targets, &new.transfer_targets, |o, n| {
        (o.uri != n.uri).then(|| format!("{} -> {}", o.uri, n.uri))
    });
    let mut states = states;
    if old.flow.start != new.flow.start {
        states.changed.push(format!(
            "flow.start: {} -> {}",
            old.flow.start, new.flow.start
        ));
    }
    if yaml(&old.flow.global) != yaml(&new.flow.global) {
        states.changed.push("flow.global: transitions".into());
    }
    BundleDiff {
        intents,
        prompts,
        states,
        entities,
        transfer_targets,
        settings_changed: yaml(&old.settings) != yaml(&new.settings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialog::bundle::Text;

    #[test]
    fn reports_added_removed_and_changed() {
        let old = Bundle::demo();
        let mut new = old.clone();
        new.intents.remove("goodbye");
        new.intents.insert("billing".into(), Default::default());
        if let Localized::One(p) = &mut new.intents.get_mut("returns").unwrap().phrases {
            p.push("I need to send this back".into());
        }
        let start = new.flow.start.clone();
        new.flow.states.get_mut(&start).unwrap().say.0[0] = Text::text("Hello there.");
        let d = diff(&old, &new);
        assert_eq!(d.intents.added, vec!["billing"]);
        assert_eq!(d.intents.removed, vec!["goodbye"]);
        assert!(
            d.intents
                .changed
                .iter()
                .any(|c| c.starts_with("returns: phrases +1 -0")),
            "{:?}",
            d.intents.changed
        );
        assert!(
            d.prompts.changed.iter().any(|c| c.contains("Hello there.")),
            "{:?}",
            d.prompts.changed
        );
        assert!(
            d.states
                .changed
                .iter()
                .any(|c| c.starts_with(&format!("{start}: prompts"))),
            "{:?}",
            d.states.changed
        );
        assert!(diff(&old, &old).is_empty());
    }
}
