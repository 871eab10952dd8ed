//! What the rest of the call plane asks of a bundle: its language, hand-off
//! target, prompts for the safety net and the filler, the longest no-input
//! timeout, the speech-recognition hint.

use super::*;

impl Bundle {
    /// The bundle's default language.
    pub fn language(&self) -> &str {
        &self.bot.language
    }

    /// The target for handoffs the flow does not name.
    pub fn handoff_target(&self) -> Option<&str> {
        match &self.settings.handoff_target {
            Some(t) => Some(t.as_str()),
            None if self.transfer_targets.len() == 1 => {
                self.transfer_targets.keys().next().map(String::as_str)
            }
            None => None,
        }
    }

    /// The bot's name.
    pub fn name(&self) -> &str {
        &self.bot.name
    }

    /// The longest silence after a prompt that any state waits for before it
    /// counts as no input (the bot-wide timeout or a state's own).
    pub fn longest_no_input_timeout(&self) -> std::time::Duration {
        let longest = self
            .flow
            .states
            .values()
            .filter_map(|state| state.no_input_timeout_ms)
            .fold(self.settings.no_input.timeout_ms, u32::max);
        std::time::Duration::from_millis(u64::from(longest))
    }

    /// The URI the safety net transfers to; empty when the bundle has no
    /// human target (validation warns about that).
    pub fn safety_net_target(&self) -> String {
        self.handoff_target()
            .and_then(|t| self.transfer_targets.get(t))
            .map(TransferTarget::destination)
            .unwrap_or_default()
    }

    /// The apology said before the safety-net transfer, in the bundle's language.
    pub fn safety_net_prompt(&self) -> Option<String> {
        let lang = self.language();
        let parts: Vec<&str> = self
            .settings
            .apology_prompt
            .0
            .iter()
            .filter_map(|t| t.get(lang, lang))
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// The filler said while a slow turn is still thinking, in the bundle's language.
    pub fn filler_prompt(&self) -> Option<String> {
        let lang = self.language();
        let parts: Vec<&str> = self
            .settings
            .filler_prompt
            .0
            .iter()
            .filter_map(|t| t.get(lang, lang))
            .map(String::as_str)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Words this bot expects, as a speech-to-text prompt (Whisper's initial
    /// prompt biases it towards the domain's vocabulary).
    pub fn stt_hint(&self) -> String {
        let lang = self.language();
        let mut words = vec![self.bot.name.clone()];
        for intent in self.intents.values() {
            if let Some(k) = intent.keywords.get(lang, lang).and_then(|k| k.first()) {
                words.push(k.clone());
            }
        }
        for entity in self.entities.values() {
            if let Entity::List { values } = entity {
                words.extend(
                    values
                        .get(lang, lang)
                        .into_iter()
                        .flatten()
                        .take(10)
                        .map(|v| v.value.clone()),
                );
            }
        }
        format!("{}.", words.join(", "))
    }

    /// Point a transfer target somewhere else (site configuration overrides the bundle).
    pub fn set_transfer_uri(&mut self, target: &str, uri: &str) {
        self.transfer_targets.insert(
            target.to_string(),
            TransferTarget {
                uri: uri.to_string(),
                description: None,
            },
        );
    }

    /// Every prompt text in the bundle with its field path, for validation
    /// and for pre-rendering audio. Knowledge facts are not prompts.
    pub fn prompts(&self) -> Vec<(String, &Text)> {
        let mut out: Vec<(String, &Text)> = vec![];
        let s = &self.settings;
        fn list<'a>(path: String, prompts: &'a [Text], out: &mut Vec<(String, &'a Text)>) {
            for (i, t) in prompts.iter().enumerate() {
                out.push((format!("{path}[{i}]"), t));
            }
        }
        fn transition<'a>(path: String, t: &'a Transition, out: &mut Vec<(String, &'a Text)>) {
            for (i, text) in t.say.0.iter().enumerate() {
                out.push((format!("{path}.say[{i}]"), text));
            }
        }
        list(
            "settings.handoff_prompt".into(),
            &s.handoff_prompt.0,
            &mut out,
        );
        list(
            "settings.apology_prompt".into(),
            &s.apology_prompt.0,
            &mut out,
        );
        list(
            "settings.filler_prompt".into(),
            &s.filler_prompt.0,
            &mut out,
        );
        list(
            "settings.no_input.prompts".into(),
            &s.no_input.prompts,
            &mut out,
        );
        list(
            "settings.no_match.prompts".into(),
            &s.no_match.prompts,
            &mut out,
        );
        list(
            "settings.knowledge.followup".into(),
            &s.knowledge.followup.0,
            &mut out,
        );
        list(
            "settings.confirm.denied".into(),
            &s.confirm.denied.0,
            &mut out,
        );
        for (name, intent) in &self.intents {
            if let Some(t) = &intent.confirm {
                out.push((format!("intents.{name}.confirm"), t));
            }
        }
        if let Some(t) = &s.no_input.then {
            transition("settings.no_input.then".into(), t, &mut out);
        }
        if let Some(t) = &s.no_match.then {
            transition("settings.no_match.then".into(), t, &mut out);
        }
        for (i, t) in self.flow.global.iter().enumerate() {
            transition(format!("flow.global[{i}]"), t, &mut out);
        }
        for (name, state) in &self.flow.states {
            let base = format!("flow.states.{name}");
            list(format!("{base}.say"), &state.say.0, &mut out);
            if let Some(r) = &state.reprompt {
                out.push((format!("{base}.reprompt"), r));
            }
            for (i, c) in state.collect.iter().enumerate() {
                out.push((format!("{base}.collect[{i}].prompt"), &c.prompt));
                list(
                    format!("{base}.collect[{i}].reprompts"),
                    &c.reprompts,
                    &mut out,
                );
                if let Some(t) = &c.on_fail {
                    transition(format!("{base}.collect[{i}].on_fail"), t, &mut out);
                }
            }
            for (i, t) in state.transitions.iter().enumerate() {
                transition(format!("{base}.transitions[{i}]"), t, &mut out);
            }
        }
        out
    }

    /// Every prompt without `{slot}` placeholders, in `lang`, deduplicated:
    /// what can be rendered to audio ahead of time. The dialog engine says
    /// these texts byte for byte, so a cache keyed by text hits.
    pub fn static_prompts(&self, lang: &str) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        self.prompts()
            .into_iter()
            .filter_map(|(_, t)| t.get(lang, self.language()))
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty() && !super::super::template::has_placeholders(t))
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }
}
