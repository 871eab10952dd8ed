//! CX flows and pages: each page a state, its form parameters as
//! collections, its routes and route groups as transitions, its event handlers.

use super::*;

impl Cx<'_> {
    pub(super) fn flow(
        &mut self,
        flow: &str,
        is_start: bool,
        bundle: &mut Bundle,
    ) -> Result<(), ImportError> {
        let base = format!("flows/{flow}");
        let doc = self.json(&format!("{base}/{flow}.json"))?;
        let display = json_str(&doc, "displayName").unwrap_or(flow).to_string();
        let start = format!("{display}/Start");
        let groups = self.route_groups(&base)?;

        // Flow-level routes: every one applies on the start page; intent routes on every page.
        let mut flow_routes: Vec<Value> = json_arr(&doc, "transitionRoutes").to_vec();
        for g in json_arr(&doc, "transitionRouteGroups")
            .iter()
            .filter_map(Value::as_str)
        {
            flow_routes.extend(self.group(&groups, g, &base));
        }
        self.event_handlers(&doc, &base, is_start, bundle);
        if !json_arr(&doc["knowledgeConnectorSettings"], "dataStoreConnections").is_empty()
            || doc["knowledgeConnectorSettings"]["enabled"].as_bool() == Some(true)
        {
            self.w.warn(
                format!("{base} knowledgeConnectorSettings"),
                "data store (knowledge connector) answers come from the cloud: add the facts to the bundle's knowledge to answer locally",
            );
        }

        let page_files: Vec<String> = self
            .files
            .under(&format!("{base}/pages"))
            .map(str::to_string)
            .collect();
        let mut pages = vec![];
        for path in &page_files {
            pages.push((path.clone(), self.json(path)?));
        }
        let page_state = |name: &str| format!("{display}/{name}");

        // The start page.
        let mut start_state = State {
            description: Some(format!("start of flow {display}")),
            ..Default::default()
        };
        for (i, r) in flow_routes.iter().enumerate() {
            let at = format!("{base}/{flow}.json transitionRoutes[{i}]");
            let is_welcome = is_start && json_str(r, "intent").is_some_and(|n| self.is_welcome(n));
            if let Some(t) = self.route(r, &display, &start, &at) {
                if is_welcome && self.welcome.is_none() {
                    let to = t.to.clone().filter(|to| *to != start);
                    self.welcome = Some((t.say.clone(), to));
                }
                start_state.transitions.push(t);
            }
        }
        bundle.flow.states.insert(start.clone(), start_state);

        for (path, page) in pages {
            let name = json_str(&page, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            let state_name = page_state(&name);
            let at = path.clone();
            let entry = match page.get("entryFulfillment") {
                Some(f) => self.fulfillment(f, &format!("{at} entryFulfillment")),
                None => Fulfilled::default(),
            };
            let mut state = State {
                say: entry.say,
                barge_in: entry.barge_in,
                ..Default::default()
            };
            if entry.transfer.is_some() || entry.end {
                self.w.warn(
                    &at,
                    "a transfer or end in the entry fulfillment is taken after the page's prompts",
                );
            }
            if !entry.set.is_empty() {
                self.w.warn(
                    format!("{at} entryFulfillment"),
                    "parameter presets on entering a page are not applied (presets on routes are)",
                );
            }
            if let Some(ms) =
                duration_ms(&page["advancedSettings"]["speechSettings"]["noSpeechTimeout"])
            {
                state.no_input_timeout_ms = Some(ms);
            }
            for (i, p) in json_arr(&page["form"], "parameters").iter().enumerate() {
                if let Some(c) =
                    self.form_parameter(p, &display, &format!("{at} form.parameters[{i}]"))
                {
                    state.collect.push(c);
                }
            }
            self.page_events(&page, &at);
            let mut routes: Vec<Value> = json_arr(&page, "transitionRoutes").to_vec();
            for g in json_arr(&page, "transitionRouteGroups")
                .iter()
                .filter_map(Value::as_str)
            {
                routes.extend(self.group(&groups, g, &base));
            }
            let needs_done = !state.say.is_empty() || !state.collect.is_empty();
            let stay = if needs_done {
                format!("{state_name} (done)")
            } else {
                state_name.clone()
            };
            for (i, r) in routes.iter().enumerate() {
                if let Some(t) =
                    self.route(r, &display, &stay, &format!("{at} transitionRoutes[{i}]"))
                {
                    state.transitions.push(t);
                }
            }
            if entry.transfer.is_some() || entry.end {
                state.transitions.insert(
                    0,
                    Transition {
                        transfer: entry.transfer,
                        end: entry.end,
                        ..Default::default()
                    },
                );
            }
            let flow_intent_routes: Vec<Transition> = flow_routes
                .iter()
                .enumerate()
                .filter(|(_, r)| r.get("intent").is_some())
                .filter_map(|(i, r)| {
                    self.route(
                        r,
                        &display,
                        &stay,
                        &format!("{base}/{flow}.json transitionRoutes[{i}]"),
                    )
                })
                .collect();
            state.transitions.extend(flow_intent_routes);
            if needs_done
                && state
                    .transitions
                    .iter()
                    .any(|t| t.to.as_deref() == Some(stay.as_str()))
            {
                // Where the page listens once its prompts and form are done (CX stays on the page).
                let listening: Vec<Transition> = state
                    .transitions
                    .iter()
                    .filter(|t| !t.is_automatic())
                    .cloned()
                    .collect();
                let done = State {
                    description: Some(format!(
                        "{state_name} after its form and prompts: listening"
                    )),
                    transitions: listening,
                    barge_in: state.barge_in,
                    ..Default::default()
                };
                bundle.flow.states.insert(stay.clone(), done);
            }
            bundle.flow.states.insert(state_name, state);
        }
        Ok(())
    }

    /// The human a live-agent handoff reaches: target `agent`, whose URI the site sets.
    pub(super) fn agent_target(&mut self, at: &str) -> String {
        self.w.warn(at, format!("live agent handoff goes to transfer target `agent` ({}): set [sip] transfer_target", super::super::PLACEHOLDER_AGENT_URI));
        self.targets
            .entry("agent".into())
            .or_insert_with(|| TransferTarget {
                uri: super::super::PLACEHOLDER_AGENT_URI.into(),
                description: Some("live agent handoff (set [sip] transfer_target)".into()),
            });
        "agent".into()
    }

    pub(super) fn is_welcome(&self, intent_display: &str) -> bool {
        let path = format!("intents/{intent_display}/{intent_display}.json");
        let id = parse_json(self.files, FORMAT, &path)
            .ok()
            .and_then(|v| json_str(&v, "name").map(str::to_string));
        id.as_deref() == Some(WELCOME_INTENT_ID) || intent_display == "Default Welcome Intent"
    }

    pub(super) fn route_groups(
        &mut self,
        flow_base: &str,
    ) -> Result<BTreeMap<String, Value>, ImportError> {
        let mut out = BTreeMap::new();
        let paths: Vec<String> = self
            .files
            .under(&format!("{flow_base}/transitionRouteGroups"))
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = self.json(&path)?;
            let name = json_str(&doc, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            out.insert(name, doc);
        }
        // Agent-level route groups (newer exports).
        let paths: Vec<String> = self
            .files
            .under("transitionRouteGroups")
            .map(str::to_string)
            .collect();
        for path in paths {
            let doc = self.json(&path)?;
            let name = json_str(&doc, "displayName")
                .map(str::to_string)
                .unwrap_or_else(|| lang_of(&path));
            out.entry(name).or_insert(doc);
        }
        Ok(out)
    }

    pub(super) fn group(
        &mut self,
        groups: &BTreeMap<String, Value>,
        name: &str,
        at: &str,
    ) -> Vec<Value> {
        match groups.get(name) {
            Some(g) => json_arr(g, "transitionRoutes").to_vec(),
            None => {
                self.w.warn(at, format!("route group `{name}` is referenced but not in the export: its routes are missing"));
                vec![]
            }
        }
    }

    /// One route as a transition; `None` (with a warning) when it cannot be expressed.
    /// `stay` is where a route without a target leads.
    pub(super) fn route(
        &mut self,
        r: &Value,
        flow: &str,
        stay: &str,
        at: &str,
    ) -> Option<Transition> {
        let intent = json_str(r, "intent").map(ident);
        let condition = match json_str(r, "condition")
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(c) => {
                match parse_condition(c) {
                    Ok(cond) => cond,
                    Err(why) => {
                        if intent.is_some() {
                            self.w.warn(at, format!("condition `{c}` ignored ({why}): the route follows its intent alone"));
                            None
                        } else {
                            self.w.warn(at, format!("route skipped: condition `{c}` cannot be expressed here ({why})"));
                            return None;
                        }
                    }
                }
            }
        };
        if intent.is_some() && condition.is_some() {
            self.w.warn(at, "an intent route's condition is not checked here: the route follows its intent alone");
        }
        let f = match r.get("triggerFulfillment") {
            Some(f) => self.fulfillment(f, &format!("{at} triggerFulfillment")),
            None => Fulfilled::default(),
        };
        let mut t = Transition {
            intent,
            condition: if json_str(r, "intent").is_some() {
                None
            } else {
                condition
            },
            say: f.say,
            set: f.set,
            ..Default::default()
        };
        if f.transfer.is_some() {
            t.transfer = f.transfer;
        } else if f.end {
            t.end = true;
        } else if let Some(page) = json_str(r, "targetPage") {
            match SpecialPage::of(page) {
                Some(SpecialPage::EndSession) => t.end = true,
                Some(SpecialPage::EndFlow) => t.to = Some(RETURN_TARGET.into()),
                Some(SpecialPage::EndFlowWith(outcome)) => {
                    self.w.warn(
                        at,
                        format!("`{page}`: the flow ends as with End Flow (the {outcome} outcome is for the cloud's reporting)"),
                    );
                    t.to = Some(RETURN_TARGET.into());
                }
                Some(SpecialPage::EndFlowWithHumanEscalation) => {
                    t.transfer = Some(self.agent_target(at))
                }
                Some(SpecialPage::Current) => t.to = Some(stay.to_string()),
                Some(SpecialPage::Previous) => t.to = Some(BACK_TARGET.into()),
                Some(SpecialPage::Start) => t.to = Some(format!("{flow}/Start")),
                None => t.to = Some(format!("{flow}/{page}")),
            }
        } else if let Some(target_flow) = json_str(r, "targetFlow") {
            t.to = Some(format!("{target_flow}/Start"));
            t.call = true;
        } else if let Some(playbook) = json_str(r, "targetPlaybook") {
            self.w.warn(
                at,
                format!("hands the conversation to playbook `{playbook}` (generative): the local bot hands the call to a person instead"),
            );
            t.transfer = Some(self.agent_target(at));
        } else {
            t.to = Some(stay.to_string());
        }
        if t.is_automatic()
            && t.condition.is_none()
            && t.to.as_deref() == Some(stay)
            && t.say.is_empty()
            && stay.ends_with("/Start")
        {
            // An empty unconditional route back to the start page would loop.
            return None;
        }
        Some(t)
    }

    pub(super) fn form_parameter(&mut self, p: &Value, flow: &str, at: &str) -> Option<Collect> {
        let name = json_str(p, "displayName")?;
        if p["required"].as_bool() != Some(true) {
            self.w
                .warn(at, format!("optional parameter `{name}` is not asked for"));
            return None;
        }
        if p["isList"].as_bool() == Some(true) {
            self.w
                .warn(at, format!("list parameter `{name}` keeps one value here"));
        }
        if p.get("defaultValue").is_some() {
            self.w
                .warn(at, format!("default value of `{name}` is not applied"));
        }
        let entity_type = json_str(p, "entityType").unwrap_or("@sys.any");
        let entity = if entity_type.starts_with("@sys.") {
            use_system_entity(&mut self.entities, entity_type, at, self.w)?
        } else {
            ident(entity_type.trim_start_matches('@'))
        };
        let fill = &p["fillBehavior"];
        let prompt = self.fulfillment(
            &fill["initialPromptFulfillment"],
            &format!("{at} initialPromptFulfillment"),
        );
        // No prompt of its own: the page or the flow that led here asked already.
        let first = prompt
            .say
            .0
            .first()
            .cloned()
            .unwrap_or_else(|| Text::text(""));
        let mut reprompts = vec![];
        let mut on_fail = None;
        for (i, h) in json_arr(fill, "repromptEventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            let hat = format!("{at} repromptEventHandlers[{i}]");
            if event.starts_with("sys.no-match") {
                let target = json_str(h, "targetPage").or_else(|| json_str(h, "targetFlow"));
                if target.is_some() && on_fail.is_none() {
                    // The handler leaves the page on the first answer that does not fit.
                    on_fail = self.route(h, flow, &format!("{flow}/Start"), &hat);
                } else {
                    let f = self.fulfillment(&h["triggerFulfillment"], &hat);
                    reprompts.extend(f.say.0);
                }
            } else {
                self.w.warn(
                    hat,
                    format!("reprompt on `{event}` is not imported (only no-match reprompts are; silence gets the bot-wide no-input handling)"),
                );
            }
        }
        Some(Collect {
            slot: slot_ident(name),
            entity,
            prompt: first,
            reprompts,
            max_attempts: on_fail.is_some().then_some(1),
            on_fail,
        })
    }

    pub(super) fn event_handlers(
        &mut self,
        doc: &Value,
        at: &str,
        is_start: bool,
        bundle: &mut Bundle,
    ) {
        for (i, h) in json_arr(doc, "eventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            let hat = format!("{at} eventHandlers[{i}] ({event})");
            let f = self.fulfillment(&h["triggerFulfillment"], &hat);
            let prompts: Vec<Text> = f.say.0;
            match event {
                "sys.no-match-default" | "sys.no-input-default" if !is_start => {
                    self.w.warn(
                        hat,
                        "only the start flow's no-match/no-input prompts are used (bot-wide here)",
                    );
                }
                "sys.no-match-default" if !prompts.is_empty() => {
                    bundle.settings.no_match.prompts = prompts
                }
                "sys.no-input-default" if !prompts.is_empty() => {
                    bundle.settings.no_input.prompts = prompts
                }
                "sys.no-match-default" | "sys.no-input-default" => {}
                other => self.w.warn(
                    hat,
                    format!("event `{other}` has no equivalent here: its handler is not imported"),
                ),
            }
        }
    }

    pub(super) fn page_events(&mut self, page: &Value, at: &str) {
        for (i, h) in json_arr(page, "eventHandlers").iter().enumerate() {
            let event = json_str(h, "event").unwrap_or("");
            self.w.warn(
                format!("{at} eventHandlers[{i}]"),
                format!("page-level handler for `{event}` is not imported: the bot-wide no-match/no-input handling applies"),
            );
        }
    }
}
