//! Rasa forms: required slots as collections, each with its entity and prompts.

use super::*;

/// A form's required slots, each with the mappings the form gives it (Rasa 2;
/// none in Rasa 3, where the slot's own mappings apply).
fn required_slots(def: &Value) -> Vec<(String, Vec<Value>)> {
    match def.get("required_slots") {
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
    }
}

impl Rasa<'_> {
    /// The names of the domain's forms.
    pub(super) fn forms(&self) -> BTreeSet<String> {
        self.domain
            .get("forms")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.keys()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many questions form `form` asks (its required slots).
    pub(super) fn form_questions(&self, form: &str) -> usize {
        self.domain
            .get("forms")
            .and_then(|f| f.get(form))
            .map_or(0, |def| required_slots(def).len())
    }

    /// Whether the domain lists the (custom) action `name`.
    pub(super) fn has_action(&self, name: &str) -> bool {
        seq(&self.domain, "actions")
            .iter()
            .any(|a| a.as_str() == Some(name))
    }

    /// The form's required slots as `collect` entries.
    pub(super) fn form_slots(&mut self, form: &str, bundle: &mut Bundle) -> Vec<Collect> {
        let at = format!("domain.yml forms.{form}");
        let def = self
            .domain
            .get("forms")
            .and_then(|f| f.get(form))
            .cloned()
            .unwrap_or(Value::Null);
        let required = required_slots(&def);
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
    pub(super) fn slot_entity(
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
}
