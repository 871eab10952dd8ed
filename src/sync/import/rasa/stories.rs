//! Rasa stories and rules as one flow: their steps merged into a tree of
//! states, bot utterances as prompts, intents as transitions.

use super::*;

/// A caller turn (one of these intents) and the bot's steps after it.
type Segment = (Vec<String>, Vec<Step>);

impl Rasa<'_> {
    pub(super) fn steps_of(&mut self, story: &Value, at: &str) -> Vec<Step> {
        let forms = self.forms();
        let mut out = vec![];
        for step in seq(story, "steps") {
            if let Some(intent) = str_of(step, "intent") {
                out.push(Step::User(vec![intent.to_string()]));
            } else if let Some(alts) = step.get("or").and_then(Value::as_sequence) {
                let intents: Vec<String> = alts
                    .iter()
                    .filter_map(|a| str_of(a, "intent"))
                    .map(str::to_string)
                    .collect();
                if intents.is_empty() {
                    self.w
                        .warn(at, "an `or:` of slots or actions is not supported");
                } else {
                    out.push(Step::User(intents));
                }
            } else if let Some(action) = str_of(step, "action") {
                out.push(if action.starts_with("utter_") {
                    Step::Utter(action.to_string())
                } else if forms.contains(action) {
                    Step::Form(action.to_string())
                } else if is_handoff(action) {
                    Step::Handoff
                } else if action == "action_listen" {
                    continue;
                } else {
                    Step::Custom(action.to_string())
                });
            } else if let Some(loop_) = step.get("active_loop") {
                if loop_.is_null() {
                    out.push(Step::FormDone);
                }
            } else if step.get("checkpoint").is_some() {
                self.w.warn(
                    at,
                    "checkpoints are not supported: the story is read up to here",
                );
                break;
            } else if step.get("slot_was_set").is_some() {
                self.w.warn(at, "branches on slot values (slot_was_set) are not supported: read as if always true");
            }
        }
        out
    }

    pub(super) fn flow(&mut self, stories: &[(String, Value, bool)], bundle: &mut Bundle) {
        let mut root = Node::default();
        // Rules with `condition: active_loop: F` describe what follows form F.
        let mut after_form: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        let mut interruptions = 0;
        // (the action a story starts after, its caller turns and what follows, where)
        let mut after_action: Vec<(Step, Vec<Segment>, String)> = vec![];
        for (at, story, is_rule) in stories {
            let steps = self.steps_of(story, at);
            let loop_condition = seq(story, "condition")
                .iter()
                .find_map(|c| str_of(c, "active_loop").map(str::to_string));
            if let (true, Some(form)) = (*is_rule, loop_condition) {
                let rest: Vec<Step> = steps
                    .iter()
                    .skip_while(|s| **s != Step::FormDone)
                    .skip(1)
                    .cloned()
                    .collect();
                after_form.entry(form).or_insert(rest);
                continue;
            }
            // A story may start after a bot action ("after action_show_balance,
            // affirm -> utter_ok"): it continues wherever the tree does that action.
            let lead: Vec<Step> = steps
                .iter()
                .take_while(|s| !matches!(s, Step::User(_)))
                .cloned()
                .collect();
            if steps.len() == lead.len() {
                self.w.warn(at, "has no caller turn: not imported");
                continue;
            }
            let segments = self.segments(&steps[lead.len()..], &mut interruptions);
            match lead.last() {
                None => self.insert_path(&mut root, segments, at),
                Some(action) => after_action.push((action.clone(), segments, at.clone())),
            }
        }
        // Stories that start after a bot action, once the tree they continue
        // exists (a second round for those that continue each other).
        for _ in 0..2 {
            let mut waiting = vec![];
            for (action, segments, at) in std::mem::take(&mut after_action) {
                if self.attach_after(&mut root, &action, &segments, &at) == 0 {
                    waiting.push((action, segments, at));
                }
            }
            after_action = waiting;
        }
        for (action, _, at) in &after_action {
            self.w.warn(
                at,
                format!("starts after {action:?}, which no imported story does: not imported"),
            );
        }
        if interruptions > 0 {
            self.w.warn("data/", format!("{interruptions} story part(s) where the caller interrupts a form are not imported: the global intents answer them and the form is asked again"));
        }

        // nlu_fallback -> no-match prompts.
        if let Some(fallback) = root.children.remove(&vec!["nlu_fallback".to_string()]) {
            let texts: Vec<Text> = fallback
                .steps
                .iter()
                .filter_map(|s| {
                    if let Step::Utter(u) = s {
                        self.utter(u)
                    } else {
                        None
                    }
                })
                .map(Text::text)
                .collect();
            if !texts.is_empty() {
                bundle.settings.no_match.prompts = texts;
            }
        }
        if let Some(greet) = self.utter("utter_greet") {
            self.w.warn("domain.yml responses.utter_greet", "a Rasa bot waits for the user; on the phone the local bot speaks first, with utter_greet");
            bundle.flow.states.insert(
                START.into(),
                State {
                    say: Prompts(vec![Text::text(greet)]),
                    transitions: vec![Transition {
                        to: Some(MAIN.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        } else {
            self.w.warn(
                "domain.yml",
                "no utter_greet: the local bot starts listening in silence",
            );
            bundle.flow.states.insert(
                START.into(),
                State {
                    transitions: vec![Transition {
                        to: Some(MAIN.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            );
        }
        bundle.flow.states.insert(
            MAIN.into(),
            State {
                description: Some("listening for any intent".into()),
                ..Default::default()
            },
        );

        let children: Vec<(Vec<String>, Node)> = root.children.into_iter().collect();
        for (intents, node) in children {
            let name = ident(&intents[0]);
            self.node_states(&name, &node, &after_form, bundle);
            for i in intents {
                bundle.flow.global.push(Transition {
                    intent: Some(ident(&i)),
                    to: Some(name.clone()),
                    ..Default::default()
                });
            }
        }
    }

    /// A story's steps from its first caller turn, as (intents, bot steps)
    /// segments, up to the first caller turn while a form runs (an
    /// interruption, counted in `interruptions`).
    fn segments(&self, steps: &[Step], interruptions: &mut usize) -> Vec<Segment> {
        let mut segments: Vec<Segment> = vec![];
        for s in steps {
            match s {
                Step::User(i) => segments.push((i.clone(), vec![])),
                other => segments
                    .last_mut()
                    .expect("starts with a caller turn")
                    .1
                    .push(other.clone()),
            }
        }
        let mut form_open = false;
        let mut kept = vec![];
        for seg in segments {
            if form_open {
                *interruptions += 1;
                break;
            }
            for s in &seg.1 {
                match s {
                    Step::Form(_) => form_open = true,
                    Step::FormDone => form_open = false,
                    _ => {}
                }
            }
            kept.push(seg);
        }
        kept
    }

    /// Merge a path of segments below `node`; a node reached before keeps
    /// its bot steps (a different continuation is warned).
    fn insert_path(&mut self, mut node: &mut Node, path: Vec<Segment>, at: &str) {
        for (intents, bot) in path {
            let child = node
                .children
                .entry(intents.clone())
                .or_insert_with(|| Node {
                    origin: at.to_string(),
                    ..Default::default()
                });
            if child.steps.is_empty() {
                child.steps = bot;
            } else if !bot.is_empty() && child.steps != bot {
                self.w.warn(
                    at,
                    format!(
                        "after {:?} the bot does something else than in {}: that one is kept",
                        intents, child.origin
                    ),
                );
            }
            node = child;
        }
    }

    /// Continue the story `path` below every node (the root excluded) whose
    /// bot steps end with `action`; how many nodes it continued.
    fn attach_after(
        &mut self,
        node: &mut Node,
        action: &Step,
        path: &[Segment],
        at: &str,
    ) -> usize {
        let mut n = 0;
        for child in node.children.values_mut() {
            n += self.attach_after(child, action, path, at);
            if child.steps.last() == Some(action) {
                self.insert_path(child, path.to_vec(), at);
                n += 1;
            }
        }
        n
    }

    /// The state for one node of the story tree (and its descendants).
    pub(super) fn node_states(
        &mut self,
        name: &str,
        node: &Node,
        after_form: &BTreeMap<String, Vec<Step>>,
        bundle: &mut Bundle,
    ) {
        let mut state = State::default();
        let mut handoff = false;
        let mut form = None;
        let mut after: Vec<Step> = vec![];
        for s in &node.steps {
            match s {
                Step::Form(f) if form.is_none() => {
                    form = Some(f.clone());
                    after.extend(after_form.get(f).cloned().unwrap_or_default());
                }
                Step::FormDone | Step::User(_) => {}
                other if form.is_some() => after.push(other.clone()),
                other => handoff |= self.bot_step(other, &mut state.say, &node.origin),
            }
        }
        if handoff {
            state.transitions.push(Transition {
                transfer: Some(AGENT.into()),
                ..Default::default()
            });
        } else if let Some(f) = &form {
            // Once the form's slots are filled: what follows it, then back to listening.
            state.collect = self.form_slots(f, bundle);
            let mut say = Prompts::default();
            let mut handoff_after = false;
            for s in &after {
                handoff_after |= self.bot_step(s, &mut say, &node.origin);
            }
            state.transitions.push(match handoff_after {
                true => Transition {
                    say,
                    transfer: Some(AGENT.into()),
                    ..Default::default()
                },
                false => Transition {
                    say,
                    to: Some(MAIN.into()),
                    ..Default::default()
                },
            });
        }
        for (intents, child) in &node.children {
            let child_name = format!("{name} > {}", ident(&intents[0]));
            self.node_states(&child_name, child, after_form, bundle);
            for i in intents {
                state.transitions.push(Transition {
                    intent: Some(ident(i)),
                    to: Some(child_name.clone()),
                    ..Default::default()
                });
            }
        }
        bundle.flow.states.insert(name.to_string(), state);
    }

    /// Add what a bot step says to `say`; true when it hands the caller off.
    pub(super) fn bot_step(&mut self, s: &Step, say: &mut Prompts, at: &str) -> bool {
        match s {
            Step::Utter(u) => match self.utter(u) {
                Some(t) => say.0.push(Text::text(t)),
                None => self.w.warn(at, format!("response `{u}` has no text in domain.yml: not said")),
            },
            Step::Handoff => {
                self.uses_handoff = true;
                return true;
            }
            Step::Custom(a) => self.w.warn(at, format!("custom action `{a}` is not run (no action server here): what it says or does is missing")),
            _ => {}
        }
        false
    }
}
