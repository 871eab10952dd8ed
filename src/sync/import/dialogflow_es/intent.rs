//! One Dialogflow ES intent: training phrases, parameters as collections,
//! responses as prompts, contexts and events as transitions.

use super::*;

impl Es<'_> {
    pub(super) fn intent(
        &mut self,
        doc: &Value,
        path: &str,
        end_ids: &BTreeSet<String>,
    ) -> Result<(Option<Intent>, EsIntent), ImportError> {
        let stem = path
            .trim_start_matches("intents/")
            .trim_end_matches(".json")
            .to_string();
        let name = ident(json_str(doc, "name").unwrap_or(&stem));
        let response = json_arr(doc, "responses")
            .first()
            .cloned()
            .unwrap_or_default();
        let input_contexts: BTreeSet<String> = json_arr(doc, "contexts")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_lowercase)
            .collect();
        let output_contexts: BTreeSet<String> = json_arr(&response, "affectedContexts")
            .iter()
            .filter(|c| c["lifespan"].as_u64().unwrap_or(1) > 0)
            .filter_map(|c| json_str(c, "name"))
            .map(str::to_lowercase)
            .collect();
        let events: Vec<&str> = json_arr(doc, "events")
            .iter()
            .filter_map(|e| json_str(e, "name"))
            .collect();
        let welcome = events.iter().any(|e| WELCOME_EVENTS.contains(e));
        for e in events.iter().filter(|e| !WELCOME_EVENTS.contains(e)) {
            self.w.warn(path, format!("event `{e}` is never raised here (only the welcome event is): the intent is reached by its phrases"));
        }
        if doc["webhookUsed"].as_bool() == Some(true) {
            self.w.warn(
                path,
                "uses the webhook: the local bot says the static response only",
            );
        }
        let (say, transfer) = self.messages(&response, path);
        let id = json_str(doc, "id").unwrap_or("");
        let end = end_ids.contains(id)
            || response["endInteraction"].as_bool() == Some(true)
            || doc["endInteraction"].as_bool() == Some(true);

        let mut collect = vec![];
        for (i, p) in json_arr(&response, "parameters").iter().enumerate() {
            let at = format!("{path} parameters[{i}]");
            let pname = json_str(p, "name").unwrap_or("");
            if p["required"].as_bool() != Some(true) {
                self.w.warn(&at, format!("optional parameter `{pname}` is not asked for (it is not filled from the request either)"));
                continue;
            }
            let data_type = json_str(p, "dataType").unwrap_or("@sys.any");
            let entity = if data_type.starts_with("@sys.") {
                match use_system_entity(&mut self.entities, data_type, &at, self.w) {
                    Some(e) => e,
                    None => continue,
                }
            } else {
                ident(data_type.trim_start_matches('@'))
            };
            let mut prompts: PerLang<Vec<String>> = PerLang::default();
            for pr in json_arr(p, "prompts") {
                let lang = self
                    .langs
                    .code(json_str(pr, "lang").unwrap_or(&self.langs.default));
                // API.AI v1: plain strings.
                if let Some(v) = json_str(pr, "value").or_else(|| pr.as_str()) {
                    prompts.entry(&lang).push(v.to_string());
                }
            }
            let mut first = PerLang::default();
            for (lang, list) in &prompts.0 {
                if list.len() > 1 {
                    self.w.warn(&at, format!("{} prompt variants for `{pname}`: the first is the prompt, the others its reprompts", list.len()));
                }
                *first.entry(lang) = list[0].clone();
            }
            let Some(prompt) = localized_text(first, &self.langs, &at, self.w) else {
                self.w.warn(
                    &at,
                    format!("required parameter `{pname}` has no prompt: it is not asked for"),
                );
                continue;
            };
            let reprompts = prompts
                .0
                .get(&self.langs.default)
                .map(|l| {
                    l[1..]
                        .iter()
                        .map(|s| crate::dialog::bundle::Text::text(s.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if p["isList"].as_bool() == Some(true) {
                self.w.warn(
                    &at,
                    format!("list parameter `{pname}` keeps one value here"),
                );
            }
            collect.push(Collect {
                slot: slot_ident(pname),
                entity,
                prompt,
                reprompts,
                max_attempts: None,
                on_fail: None,
            });
        }

        let mut phrases: PerLang<Vec<String>> = PerLang::default();
        let prefix = format!("intents/{stem}_usersays_");
        let usersays: Vec<String> = self
            .files
            .under("intents")
            .filter(|p| p.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        // API.AI v1 exports (2017) keep the examples inside the intent, in the agent's language.
        let mut sources: Vec<(String, Value)> = vec![];
        if let Some(embedded) = doc.get("userSays").filter(|u| u.is_array()) {
            sources.push((self.langs.default.clone(), embedded.clone()));
        }
        for p in usersays {
            let lang = self.langs.code(p[prefix.len()..].trim_end_matches(".json"));
            sources.push((lang, self.json(&p)?));
        }
        for (lang, doc) in sources {
            for example in doc.as_array().map(Vec::as_slice).unwrap_or(&[]) {
                let text: String = json_arr(example, "data")
                    .iter()
                    .filter_map(|d| json_str(d, "text"))
                    .collect();
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() {
                    phrases.entry(&lang).push(text);
                }
            }
        }
        let fallback = doc["fallbackIntent"].as_bool() == Some(true);
        let intent = (!fallback).then(|| Intent {
            description: None,
            phrases: phrases.partial(&self.langs),
            keywords: Default::default(),
            ..Default::default()
        });
        let read = EsIntent {
            name,
            file: path.into(),
            input_contexts,
            output_contexts,
            say,
            transfer,
            end,
            collect,
            welcome,
            fallback,
        };
        Ok((intent, read))
    }

    /// What a phone caller hears and where the call goes: telephony
    /// messages, plus default-platform text when the telephony platform
    /// uses it (or has nothing of its own).
    pub(super) fn messages(&mut self, response: &Value, at: &str) -> (Prompts, Option<String>) {
        let msgs = json_arr(response, "messages");
        let has_telephony = msgs
            .iter()
            .any(|m| json_str(m, "platform") == Some("telephony"));
        let use_default = !has_telephony
            || response["defaultResponsePlatforms"]["telephony"].as_bool() == Some(true);
        let mut by_lang: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut transfer = None;
        let mut other_platforms = BTreeSet::new();
        for m in msgs {
            let platform = json_str(m, "platform").unwrap_or("");
            let lang = self
                .langs
                .code(json_str(m, "lang").unwrap_or(&self.langs.default));
            let kind = m["type"]
                .as_u64()
                .or_else(|| m["type"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
            let text = match (platform, kind) {
                ("telephony", 14) => json_str(m, "ssml")
                    .or_else(|| json_str(m, "textToSpeech"))
                    .or_else(|| json_str(m, "text"))
                    .map(str::to_string),
                ("telephony", 15) => {
                    match json_str(m, "phoneNumber") {
                        Some(n) => {
                            transfer = Some(super::super::transfer_target(
                                &mut self.targets,
                                n,
                                "telephony transfer",
                            ))
                        }
                        None => self
                            .w
                            .warn(at, "telephony transfer without a phone number: ignored"),
                    }
                    None
                }
                ("telephony", 13) => {
                    self.w.warn(
                        at,
                        "telephony audio (play audio) is not played by the local bot",
                    );
                    None
                }
                ("", 0) if use_default => match &m["speech"] {
                    Value::String(s) => Some(s.clone()),
                    Value::Array(v) => {
                        if v.len() > 1 {
                            self.w.warn(
                                at,
                                format!(
                                    "{} text variants: the local bot always says the first",
                                    v.len()
                                ),
                            );
                        }
                        v.first().and_then(Value::as_str).map(str::to_string)
                    }
                    _ => None,
                },
                ("", 0) => None,
                ("", other) => {
                    self.w.warn(at, format!("message type {other} (cards, images, payloads) has no voice equivalent: ignored"));
                    None
                }
                (p, _) => {
                    other_platforms.insert(p.to_string());
                    None
                }
            };
            let Some(raw) = text.filter(|t| !t.trim().is_empty()) else {
                continue;
            };
            let plain = match strip_ssml(&raw) {
                Some(p) => {
                    self.w.warn(
                        at,
                        "SSML markup removed: the local voice says the plain text",
                    );
                    p
                }
                None => raw,
            };
            match convert_placeholders(&plain) {
                Ok(t) => by_lang.entry(lang).or_default().push(t),
                Err(why) => self
                    .w
                    .warn(at, format!("text \"{plain}\" is not said: {why}")),
            }
        }
        for p in other_platforms {
            self.w.warn(
                at,
                format!("{p} messages are for that platform, not the phone: ignored"),
            );
        }
        let mut say = Prompts::default();
        let count = by_lang.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..count {
            let mut texts = PerLang::default();
            for (lang, list) in &by_lang {
                if let Some(t) = list.get(i).or(list.last()) {
                    *texts.entry(lang) = t.clone();
                }
            }
            if let Some(t) = localized_text(texts, &self.langs, at, self.w) {
                say.0.push(t);
            }
        }
        (say, transfer)
    }
}
