//! Rasa test stories (`tests/*.yml`) as test conversations: each is
//! replayed up to where code the export does not contain (an action server)
//! decides what follows, and each cut is warned under the kind `test`.

use super::*;

impl Rasa<'_> {
    /// Every test story of the export that keeps at least one turn.
    pub(super) fn tests(&mut self, bundle: &Bundle) -> Result<Vec<TestConversation>, ImportError> {
        let mut out = vec![];
        let paths: Vec<String> = self
            .files
            .under("tests")
            .filter(|p| p.ends_with(".yml") || p.ends_with(".yaml"))
            .map(str::to_string)
            .collect();
        let forms = self.forms();
        for path in paths {
            let doc = super::super::parse_yaml(self.files, FORMAT, &path)?;
            for (i, story) in seq(&doc, "stories").iter().enumerate() {
                let at = format!("{path} stories[{i}]");
                out.extend(self.test_story(bundle, story, &at, &forms));
            }
        }
        Ok(out)
    }

    /// One test story (`at` names it in warnings), or `None` when nothing
    /// of it can be replayed.
    fn test_story(
        &mut self,
        bundle: &Bundle,
        story: &Value,
        at: &str,
        forms: &BTreeSet<String>,
    ) -> Option<TestConversation> {
        let name = str_of(story, "story")
            .unwrap_or("test story")
            .trim()
            .to_string();
        let mut turns: Vec<TestTurn> = vec![];
        // A story is replayed up to where code the export does not
        // contain decides what follows: (why, turns kept).
        let mut cut: Option<(String, usize)> = None;
        // The running form: (name, turns before it, caller turns inside it).
        let mut form: Option<(String, usize, usize)> = None;
        // The custom action the bot ran last in this turn.
        let mut custom: Option<String> = None;
        let mut read = 0;
        let steps = seq(story, "steps");
        for (n, step) in steps.iter().enumerate() {
            if cut.is_some() {
                break;
            }
            read = n + 1;
            if let Some(loop_) = step.get("active_loop") {
                match (loop_.as_str(), form.take()) {
                    (Some(f), _) => form = Some((f.to_string(), turns.len(), 0)),
                    (None, Some((f, _, 0))) => {
                        cut = Some((format!("it skips the questions of form `{f}`"), turns.len()))
                    }
                    (None, Some((f, before, asked))) => {
                        let required = self.form_questions(&f);
                        if asked < required && self.has_action(&format!("validate_{f}")) {
                            cut = Some((format!("form `{f}` ends after {asked} of its {required} questions, as its custom action `validate_{f}` decides (no action server here)"), before));
                        }
                    }
                    (None, None) => {}
                }
                continue;
            }
            if let Some(intent) = str_of(step, "intent") {
                custom = None;
                if let Some(f) = form.as_mut() {
                    f.2 += 1;
                }
                let user = str_of(step, "user")
                    .map(|u| strip_annotations(u.trim()).0)
                    .or_else(|| {
                        // Story tests may skip the text: an example of the intent stands in.
                        self.nlu
                            .examples
                            .get(intent)
                            .and_then(|e| e.first().cloned())
                    });
                let Some(user) = user else {
                    self.w.warn(at, format!("turn with intent `{intent}` has no user text and the intent no examples: test not imported"));
                    return None;
                };
                let expected = if intent == "nlu_fallback" {
                    "none".to_string()
                } else {
                    ident(intent)
                };
                let intent = bundle
                    .intents
                    .contains_key(&expected)
                    .then_some(expected.clone())
                    .or((expected == "none").then_some(expected));
                turns.push(TestTurn {
                    user: Some(user),
                    intent,
                    ..Default::default()
                });
            } else if let Some(action) = str_of(step, "action") {
                let Some(turn) = turns.last_mut() else {
                    continue;
                };
                if action.starts_with("utter_") {
                    if let Some(text) = self
                        .utter(action)
                        .filter(|t| !crate::dialog::template::has_placeholders(t))
                    {
                        turn.reply_contains.push(text);
                    }
                } else if is_handoff(action) {
                    turn.action = Some(crate::dialog::bundle::ActionKind::Transfer);
                } else if !is_form_or_builtin(action, forms) {
                    custom = Some(action.to_string());
                }
            } else if let (Some(action), Some(_)) = (&custom, step.get("slot_was_set")) {
                // What a custom action set is how the story goes on.
                cut.get_or_insert((
                    format!("custom action `{action}` sets what follows (no action server here)"),
                    turns.len(),
                ));
            }
        }
        if let Some((why, keep)) = &cut {
            // Warned when something the replay would check is left out.
            let checked_later = steps[read..].iter().any(|s| {
                str_of(s, "intent").is_some()
                    || str_of(s, "action").is_some_and(|a| a.starts_with("utter_") || is_handoff(a))
            });
            if checked_later || *keep < turns.len() {
                turns.truncate(*keep);
                self.w.warn(
                    at,
                    format!("test story `{name}` is replayed up to turn {keep}: {why}"),
                );
            }
        }
        (!turns.is_empty()).then(|| TestConversation {
            name,
            greeting_contains: vec![],
            turns,
        })
    }
}
