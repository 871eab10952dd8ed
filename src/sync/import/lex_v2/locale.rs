//! One Lex V2 locale: its intents, slots, slot types and prompts, read into
//! the bundle's intents, collections and prompts.

use super::*;

impl Lex<'_> {
    pub(super) fn locale(
        &mut self,
        dir: &str,
        locale: &str,
        bundle: &mut Bundle,
    ) -> Result<LocaleData, ImportError> {
        let meta = parse_json(self.files, FORMAT, &format!("{dir}/BotLocale.json"))?;
        if let Some(voice) = json_str(&meta["voiceSettings"], "voiceId") {
            self.w.warn(
                format!("{dir}/BotLocale.json voiceSettings"),
                format!("the cloud voice {voice} is not available: the local voice speaks"),
            );
            bundle
                .bot
                .source
                .insert(format!("voice_{locale}"), voice.into());
        }
        // Slot types first: utterances and slots refer to them.
        let mut samples: BTreeMap<String, String> = BTreeMap::new();
        let type_files: Vec<String> = self
            .files
            .under(&format!("{dir}/SlotTypes"))
            .filter(|p| p.ends_with("/SlotType.json"))
            .map(str::to_string)
            .collect();
        for path in type_files {
            let t = parse_json(self.files, FORMAT, &path)?;
            let name = ident(json_str(&t, "name").unwrap_or("slot_type"));
            let mut values = vec![];
            for v in json_arr(&t, "slotTypeValues") {
                let value = v["sampleValue"]["value"].as_str().unwrap_or("").to_string();
                let synonyms = json_arr(v, "synonyms")
                    .iter()
                    .filter_map(|s| json_str(s, "value"))
                    .map(str::to_string)
                    .collect();
                values.push(EntityValue { value, synonyms });
            }
            if let Some(first) = values.first() {
                samples.insert(name.clone(), first.value.clone());
            }
            let selection = &t["valueSelectionSetting"];
            let entity = if let Some(pattern) = selection["regexFilter"]["pattern"].as_str() {
                Entity::Regex {
                    pattern: pattern.into(),
                }
            } else if let Some(parent) = json_str(&t, "parentSlotTypeSignature") {
                match super::super::system_entity(parent) {
                    Some((_, e, _)) => e,
                    None => Entity::Any,
                }
            } else {
                if json_str(selection, "resolutionStrategy") == Some("OriginalValue")
                    || json_str(selection, "resolutionStrategy") == Some("ORIGINAL_VALUE")
                {
                    self.w.warn(&path, "expands values (ORIGINAL_VALUE): only the listed values and synonyms match here");
                }
                Entity::List {
                    values: Localized::One(values),
                }
            };
            // Same type in several locales: values per language.
            let lang = self.langs.code(locale);
            match (self.entities.get_mut(&name), entity) {
                (
                    Some(Entity::List { values: existing }),
                    Entity::List {
                        values: Localized::One(new),
                    },
                ) => {
                    let mut map = match std::mem::take(existing) {
                        Localized::One(v) => BTreeMap::from([(self.langs.default.clone(), v)]),
                        Localized::ByLang(m) => m,
                    };
                    map.insert(lang, new);
                    *existing = Localized::ByLang(map);
                }
                (Some(_), _) => {}
                (None, e) => {
                    self.entities.insert(name, e);
                }
            }
        }

        let mut data = LocaleData::default();
        let intent_files: Vec<String> = self
            .files
            .under(&format!("{dir}/Intents"))
            .filter(|p| p.ends_with("/Intent.json"))
            .map(str::to_string)
            .collect();
        for path in intent_files {
            let doc = parse_json(self.files, FORMAT, &path)?;
            let name = ident(json_str(&doc, "name").unwrap_or("intent"));
            let signature = json_str(&doc, "parentIntentSignature");
            let mut intent = LexIntent {
                file: path.clone(),
                description: json_str(&doc, "description").map(str::to_string),
                ..Default::default()
            };
            intent.initial =
                self.messages(&doc["initialResponseSetting"]["initialResponse"], &path);
            intent.closing = self.messages(&doc["intentClosingSetting"]["closingResponse"], &path);
            for hook in [&doc["dialogCodeHook"], &doc["fulfillmentCodeHook"]] {
                if hook["enabled"].as_bool() == Some(true) {
                    self.w.warn(&path, "Lambda code hooks are not called by the local bot: what they would decide or say is missing");
                }
            }
            if !doc["initialResponseSetting"]["conditional"].is_null()
                || !doc["intentClosingSetting"]["conditional"].is_null()
            {
                self.w.warn(&path, "conditional branches are not imported");
            }
            match signature {
                Some("AMAZON.FallbackIntent") => {
                    data.fallback = intent
                        .initial
                        .iter()
                        .chain(&intent.closing)
                        .cloned()
                        .collect();
                    continue;
                }
                Some(other) => {
                    self.w.warn(
                        &path,
                        format!("built-in intent {other} has no equivalent here: skipped"),
                    );
                    continue;
                }
                None => {}
            }
            let slot_dir = format!("{}Slots", path.trim_end_matches("Intent.json"));
            let mut slots: BTreeMap<String, (String, Value)> = BTreeMap::new();
            for sp in self
                .files
                .under(&slot_dir)
                .filter(|p| p.ends_with("/Slot.json"))
                .map(str::to_string)
                .collect::<Vec<_>>()
            {
                let s = parse_json(self.files, FORMAT, &sp)?;
                slots.insert(json_str(&s, "name").unwrap_or("").to_string(), (sp, s));
            }
            let mut order: Vec<(u64, String)> = json_arr(&doc, "slotPriorities")
                .iter()
                .map(|p| {
                    (
                        p["priority"].as_u64().unwrap_or(u64::MAX),
                        json_str(p, "slotName").unwrap_or("").to_string(),
                    )
                })
                .collect();
            order.sort();
            for name in slots.keys() {
                if !order.iter().any(|(_, n)| n == name) {
                    order.push((u64::MAX, name.clone()));
                }
            }
            for (_, slot_name) in order {
                let Some((sp, s)) = slots.get(&slot_name) else {
                    self.w.warn(
                        &path,
                        format!(
                            "slotPriorities names slot `{slot_name}`, which is not in the export"
                        ),
                    );
                    continue;
                };
                let elicit = &s["valueElicitationSetting"];
                if json_str(elicit, "slotConstraint") != Some("Required") {
                    self.w
                        .warn(sp, format!("optional slot `{slot_name}` is not asked for"));
                    continue;
                }
                let type_name = json_str(s, "slotTypeName").unwrap_or("AMAZON.FreeFormInput");
                let entity = if type_name.starts_with("AMAZON.") {
                    use_system_entity(&mut self.entities, type_name, sp, self.w)
                        .unwrap_or_else(|| "sys_any".into())
                } else {
                    ident(type_name)
                };
                let spec = &elicit["promptSpecification"];
                let prompt = self.messages(spec, sp).into_iter().next();
                self.input_spec(spec, &mut intent, sp, bundle);
                intent.slots.push(LexSlot {
                    file: sp.clone(),
                    name: slot_ident(&slot_name),
                    entity,
                    prompt,
                    max_retries: spec["maxRetries"].as_u64().map(|r| r as u32),
                });
            }
            let confirm = &doc["intentConfirmationSetting"];
            if confirm["active"]
                .as_bool()
                .or(confirm["isActive"].as_bool())
                .unwrap_or(!confirm.is_null())
                && !confirm.is_null()
            {
                intent.confirmation = self.messages(&confirm["promptSpecification"], &path);
                intent.declination = self.messages(&confirm["declinationResponse"], &path);
                intent.declination_ends =
                    next_step_ends(&confirm["declinationNextStep"]).unwrap_or(true);
                if let Some(ends) = next_step_ends(&confirm["confirmationNextStep"]) {
                    intent.ends = ends;
                }
            }
            let closing_next = next_step_ends(&doc["intentClosingSetting"]["nextStep"]);
            intent.ends = closing_next.unwrap_or(
                intent.ends || intent.confirmation.is_empty() && !intent.slots.is_empty(),
            );
            let samples_for = |u: &str| fill_slot_refs(u, &slots, &samples);
            intent.phrases = json_arr(&doc, "sampleUtterances")
                .iter()
                .filter_map(|u| json_str(u, "utterance"))
                .map(samples_for)
                .filter(|s| !s.is_empty())
                .collect();
            data.intents.insert(name, intent);
        }
        Ok(data)
    }

    /// Timeouts, barge-in and DTMF settings from a prompt specification.
    pub(super) fn input_spec(
        &mut self,
        spec: &Value,
        intent: &mut LexIntent,
        at: &str,
        bundle: &mut Bundle,
    ) {
        if spec["allowInterrupt"].as_bool() == Some(false) {
            intent.barge_in = Some(false);
        }
        let initial = &spec["promptAttemptsSpecification"]["Initial"];
        let av = &initial["audioAndDTMFInputSpecification"];
        if intent.start_timeout_ms.is_none() {
            intent.start_timeout_ms = av["startTimeoutMs"].as_u64().map(|ms| ms as u32);
        }
        if let Some(end) = av["dtmfSpecification"]["endCharacter"].as_str() {
            bundle.settings.dtmf.terminator = end.to_string();
        }
        if av["dtmfSpecification"]["deletionCharacter"]
            .as_str()
            .is_some()
        {
            self.w.warn(
                at,
                "the DTMF deletion character is not supported: keyed entries cannot be corrected",
            );
        }
        if initial["allowedInputTypes"]["allowDTMFInput"].as_bool() == Some(false) {
            self.w.warn(at, "DTMF input is not disabled per slot here");
        }
    }

    /// Texts of a response / prompt specification (one per message group).
    pub(super) fn messages(&mut self, v: &Value, at: &str) -> Vec<String> {
        let mut out = vec![];
        for group in json_arr(v, "messageGroupsList")
            .iter()
            .chain(json_arr(v, "messageGroups"))
        {
            if !json_arr(group, "variations").is_empty() {
                self.w.warn(
                    at,
                    "message variations: the local bot always says the first message",
                );
            }
            let m = &group["message"];
            if let Some(t) = m["plainTextMessage"]["value"].as_str() {
                out.push(t.to_string());
            } else if let Some(t) = m["ssmlMessage"]["value"].as_str() {
                self.w.warn(
                    at,
                    "SSML markup removed: the local voice says the plain text",
                );
                out.push(strip_ssml(t).unwrap_or_else(|| t.to_string()));
            } else if !m["customPayload"].is_null() || !m["imageResponseCard"].is_null() {
                self.w.warn(
                    at,
                    "custom payloads and response cards have no voice equivalent: ignored",
                );
            }
        }
        out
    }
}
