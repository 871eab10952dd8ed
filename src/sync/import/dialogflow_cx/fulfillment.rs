//! CX fulfillments: what a page or route says (texts, SSML, conditional responses),
//! its transfers and end of session, as the bundle's `say` and actions.

use super::*;

impl Cx<'_> {
    pub(super) fn fulfillment(&mut self, f: &Value, at: &str) -> Fulfilled {
        let mut out = Fulfilled::default();
        // Messages come once per language; the n-th text of each language is one prompt.
        let mut by_lang: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in json_arr(f, "messages") {
            let lang = self
                .langs
                .code(json_str(m, "languageCode").unwrap_or(&self.langs.default));
            if let Some(text) = m.get("text") {
                let variants: Vec<&str> = json_arr(text, "text")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if variants.len() > 1 {
                    self.w.warn(
                        at,
                        format!(
                            "{} text variants: the local bot always says the first",
                            variants.len()
                        ),
                    );
                }
                if text["allowPlaybackInterruption"].as_bool() == Some(false) {
                    out.barge_in = Some(false);
                }
                if let Some(first) = variants.first() {
                    match convert_placeholders(first) {
                        Ok(t) if !t.trim().is_empty() => by_lang.entry(lang).or_default().push(t),
                        Ok(_) => {}
                        Err(why) => self
                            .w
                            .warn(at, format!("text \"{first}\" is not said: {why}")),
                    }
                }
            } else if let Some(audio) = m.get("outputAudioText") {
                let raw = json_str(audio, "ssml")
                    .or_else(|| json_str(audio, "text"))
                    .unwrap_or("");
                let plain = strip_ssml(raw).unwrap_or_else(|| raw.to_string());
                match convert_placeholders(&plain) {
                    Ok(t) if !t.trim().is_empty() => by_lang.entry(lang).or_default().push(t),
                    Ok(_) => {}
                    Err(why) => self
                        .w
                        .warn(at, format!("text \"{plain}\" is not said: {why}")),
                }
                if json_str(audio, "ssml").is_some() {
                    self.w.warn(
                        at,
                        "SSML markup removed: the local voice says the plain text",
                    );
                }
            } else if let Some(t) = m.get("telephonyTransferCall") {
                match json_str(t, "phoneNumber").or_else(|| json_str(t, "sipUri")) {
                    Some(number) => {
                        out.transfer = Some(super::super::transfer_target(
                            &mut self.targets,
                            number,
                            "telephonyTransferCall",
                        ))
                    }
                    None => self.w.warn(
                        at,
                        "telephonyTransferCall without a phone number or SIP URI: ignored",
                    ),
                }
            } else if m.get("liveAgentHandoff").is_some() {
                out.transfer = Some(self.agent_target(at));
            } else if m.get("endInteraction").is_some() {
                out.end = true;
            } else if m.get("playAudio").is_some() || m.get("mixedAudio").is_some() {
                self.w.warn(
                    at,
                    "audio files are not played by the local bot (only text is)",
                );
            } else if m.get("conversationSuccess").is_some() || m.get("knowledgeInfoCard").is_some()
            {
                // Analytics markers: nothing to say or do.
            } else if m.get("payload").is_some() {
                self.w
                    .warn(at, "custom payloads are for cloud integrations: ignored");
            }
        }
        if let Some(hook) = json_str(f, "webhook") {
            self.w.warn(at, format!("calls webhook {hook}: the local bot does not call webhooks, so what it would add is missing"));
        }
        for a in json_arr(f, "setParameterActions") {
            let Some(param) = json_str(a, "parameter") else {
                continue;
            };
            let value = match a.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(v)) if !v.contains('$') => Some(v.clone()),
                Some(v @ (Value::Bool(_) | Value::Number(_))) => Some(v.to_string()),
                Some(v) => {
                    self.w.warn(
                        at,
                        format!("parameter preset `{param}` = {v} is computed by the cloud: not applied here (the parameter keeps its value)"),
                    );
                    continue;
                }
            };
            out.set.insert(slot_ident(param), value);
        }
        if !json_arr(f, "conditionalCases").is_empty() {
            self.w.warn(at, "conditional responses are not imported");
        }
        if !json_arr(f, "generators").is_empty()
            || f["enableGenerativeFallback"].as_bool() == Some(true)
        {
            self.w.warn(
                at,
                "generative responses are not imported (the cloud LLM writes them)",
            );
        }
        let count = by_lang.values().map(Vec::len).max().unwrap_or(0);
        for i in 0..count {
            let mut texts = PerLang::default();
            for (lang, list) in &by_lang {
                if let Some(t) = list.get(i).or(list.last()) {
                    *texts.entry(lang) = t.clone();
                }
            }
            if let Some(text) = localized_text(texts, &self.langs, at, self.w) {
                out.say.0.push(text);
            }
        }
        out
    }
}
