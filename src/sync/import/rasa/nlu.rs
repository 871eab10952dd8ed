//! Rasa NLU data: intents and their examples (entity annotations stripped to
//! text plus values), responses, Duckling dimensions.

use super::*;

impl Rasa<'_> {
    pub(super) fn duckling_dimensions(&mut self, config: &Value) {
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

    pub(super) fn nlu_section(&mut self, doc: &Value, path: &str) {
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

    pub(super) fn response(&self, name: &str) -> Option<&Value> {
        // Rasa 1 domains call them `templates`.
        self.domain
            .get("responses")
            .or_else(|| self.domain.get("templates"))
            .and_then(|r| r.get(name))
    }

    /// The text of response `name` (its first variation), warning about what a voice bot cannot show.
    pub(super) fn utter(&mut self, name: &str) -> Option<String> {
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

    pub(super) fn intents(&mut self, bundle: &mut Bundle) {
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
}
