//! The flow's moves: entering a state (its prompts, lookups, automatic
//! transitions), taking a transition, filling and missing slots, no-match
//! and escalation, hand-off and transfer, the end of the call.

use super::*;

impl Bot {
    pub(super) fn state(&self, conv: &Conversation) -> &State {
        &self.bundle.flow.states[&conv.state]
    }

    pub(super) fn matcher(&self, c: &Collect) -> &Matcher {
        // Validation guarantees every collected entity exists.
        &self.matchers[&c.entity]
    }

    /// The state's own transitions first, then the global ones.
    pub(super) fn transition_for<'a>(
        &'a self,
        state: &'a State,
        pred: impl Fn(&Transition) -> bool,
    ) -> Option<&'a Transition> {
        state
            .transitions
            .iter()
            .chain(&self.bundle.flow.global)
            .find(|t| pred(t))
    }

    pub(super) fn render(&self, conv: &Conversation, text: &Text) -> String {
        template::render(self.t(text), &conv.slots, &self.digit_slots)
    }

    pub(super) fn say(&self, conv: &Conversation, texts: &[Text], step: &mut Step) {
        step.say.extend(
            texts
                .iter()
                .map(|t| self.render(conv, t))
                .filter(|s| !s.is_empty()),
        );
    }

    /// After a no-match/no-input prompt: the slot question, else the state's reprompt.
    pub(super) fn repeat_question(&self, conv: &Conversation, step: &mut Step) {
        let state = self.state(conv);
        match conv.collecting.map(|i| &state.collect[i]) {
            Some(c) => self.say(conv, std::slice::from_ref(&c.prompt), step),
            None => self.say(conv, state.reprompt.as_slice(), step),
        }
    }

    pub(super) fn take_on_input(
        &self,
        conv: &mut Conversation,
        t: &Transition,
        r: &Recognition,
        carry: Option<&str>,
        step: &mut Step,
    ) {
        step.intent = t
            .intent
            .clone()
            .or_else(|| (!r.intent.is_empty()).then(|| r.intent.clone()));
        step.confidence = r.confidence;
        step.matched_by = r.source;
        step.outcome = TurnOutcome::Intent;
        conv.no_match = 0;
        if t.to.is_some() {
            conv.entered_by = step.intent.clone();
        }
        let reason = if t.transfer.is_some() {
            TransferReason::Requested
        } else {
            TransferReason::Flow
        };
        self.take(conv, t, reason, carry, step);
    }

    pub(super) fn take(
        &self,
        conv: &mut Conversation,
        t: &Transition,
        reason: TransferReason,
        carry: Option<&str>,
        step: &mut Step,
    ) {
        self.say(conv, &t.say.0, step);
        for (slot, value) in &t.set {
            match value {
                Some(v) => conv.slots.insert(slot.clone(), v.clone()),
                None => conv.slots.remove(slot),
            };
        }
        if let Some(target) = &t.transfer {
            self.transfer(conv, target, reason, step);
        } else if t.end {
            self.end(conv, Action::Hangup, step);
        } else if let Some(to) = &t.to {
            match to.as_str() {
                RETURN_TARGET => match conv.callers.pop() {
                    Some(caller) => self.return_to(conv, &caller, step),
                    // The outermost flow ended: so does the call.
                    None => self.end(conv, Action::Hangup, step),
                },
                BACK_TARGET => match conv.previous.clone() {
                    Some(previous) => self.enter(conv, &previous, carry, step),
                    None => self.return_to(conv, &conv.state.clone(), step),
                },
                _ => {
                    if t.call {
                        conv.callers.push(conv.state.clone());
                    }
                    self.enter(conv, to, carry, step)
                }
            }
        }
    }

    /// Back in a state that called a sub-flow: its prompts are not said
    /// again and its slots are kept; its automatic transitions are checked
    /// anew (the sub-flow may have set what they test).
    pub(super) fn return_to(&self, conv: &mut Conversation, name: &str, step: &mut Step) {
        if !self.count_hop(conv, name, step) {
            return;
        }
        conv.state = name.to_string();
        conv.collecting = None;
        conv.slot_attempts = 0;
        conv.no_match = 0;
        conv.no_input = 0;
        self.settle(conv, step);
    }

    /// Count one state change in this turn; past [`MAX_HOPS`] the flow is
    /// looping and the call is handed off (`false`).
    pub(super) fn count_hop(&self, conv: &mut Conversation, name: &str, step: &mut Step) -> bool {
        step.hops += 1;
        if step.hops > MAX_HOPS {
            tracing::error!(
                state = name,
                "the flow changed state {MAX_HOPS} times in one turn: handing off"
            );
            self.hand_off(conv, TransferReason::Flow, step);
            return false;
        }
        true
    }

    /// Enter a state: say its prompts, clear what it collects, take slot
    /// values the caller already gave (`carry`: "where's order 48213"), settle.
    pub(super) fn enter(
        &self,
        conv: &mut Conversation,
        name: &str,
        carry: Option<&str>,
        step: &mut Step,
    ) {
        if !self.count_hop(conv, name, step) {
            return;
        }
        if conv.state != name {
            conv.previous = Some(std::mem::replace(&mut conv.state, name.to_string()));
        }
        conv.collecting = None;
        conv.slot_attempts = 0;
        conv.no_match = 0;
        conv.no_input = 0;
        let state = self.state(conv);
        for c in &state.collect {
            conv.slots.remove(&c.slot);
        }
        if let Some(l) = &state.lookup {
            let prefix = format!("{}.", l.into);
            conv.slots.retain(|k, _| !k.starts_with(&prefix));
        }
        self.say(conv, &state.say.0, step);
        if let Some(utterance) = carry {
            for c in &state.collect {
                let m = self.matcher(c);
                // Free-text slots would swallow the request itself.
                if matches!(m, Matcher::Any) {
                    continue;
                }
                if let Some(v) = m.extract(utterance) {
                    conv.slots.insert(c.slot.clone(), v);
                }
            }
        }
        self.settle(conv, step);
    }

    /// Ask for the next missing slot; when none is missing, look up and take
    /// the first automatic transition that holds; otherwise listen.
    pub(super) fn settle(&self, conv: &mut Conversation, step: &mut Step) {
        let state = self.state(conv);
        if let Some((i, c)) = state
            .collect
            .iter()
            .enumerate()
            .find(|(_, c)| !conv.slots.contains_key(&c.slot))
        {
            conv.collecting = Some(i);
            self.say(conv, std::slice::from_ref(&c.prompt), step);
            return;
        }
        conv.collecting = None;
        if let Some(l) = &state.lookup {
            self.lookup(conv, l);
        }
        let next = state.transitions.iter().find(|t| {
            t.is_automatic() && t.condition.as_ref().is_none_or(|c| c.holds(&conv.slots))
        });
        if let Some(t) = next {
            self.take(conv, t, TransferReason::Flow, None, step);
        }
    }

    pub(super) fn lookup(&self, conv: &mut Conversation, l: &super::super::bundle::Lookup) {
        let Some(table) = self.bundle.data.get(&l.table) else {
            return;
        };
        let Some(key) = conv.slots.get(&l.key).map(|v| slots::lookup_key(v)) else {
            return;
        };
        let row = table.rows.iter().find(|r| {
            r.get(&table.key)
                .is_some_and(|v| slots::lookup_key(v) == key)
        });
        tracing::debug!(table = %l.table, key, found = row.is_some(), "lookup");
        if let Some(row) = row {
            for (col, v) in row {
                conv.slots.insert(format!("{}.{col}", l.into), v.clone());
            }
        }
    }

    pub(super) fn fill(
        &self,
        conv: &mut Conversation,
        c: &Collect,
        value: String,
        source: MatchSource,
        confidence: f32,
        step: &mut Step,
    ) {
        tracing::debug!(slot = %c.slot, %value, source = source.as_str(), "slot filled");
        conv.slots.insert(c.slot.clone(), value);
        conv.slot_attempts = 0;
        conv.no_match = 0;
        step.outcome = TurnOutcome::SlotFilled;
        step.matched_by = source;
        step.confidence = confidence;
        self.settle(conv, step);
    }

    /// An answer that did not fill the slot: reprompt, or `on_fail` after `max_attempts`.
    pub(super) fn slot_missed(&self, conv: &mut Conversation, c: &Collect, step: &mut Step) {
        step.outcome = TurnOutcome::NoMatch;
        conv.slot_attempts += 1;
        let max = c.max_attempts.unwrap_or(self.bundle.settings.no_match.max);
        if conv.slot_attempts >= max {
            match &c.on_fail {
                Some(t) => self.take(conv, t, TransferReason::SlotNotFilled, None, step),
                None => self.escalate(conv, None, TransferReason::SlotNotFilled, step),
            }
        } else if c.reprompts.is_empty() {
            self.say(
                conv,
                nth(&self.bundle.settings.no_match.prompts, conv.slot_attempts),
                step,
            );
            self.say(conv, std::slice::from_ref(&c.prompt), step);
        } else {
            self.say(conv, nth(&c.reprompts, conv.slot_attempts), step);
        }
    }

    pub(super) fn no_match(&self, conv: &mut Conversation, step: &mut Step) {
        step.outcome = TurnOutcome::NoMatch;
        let settings = &self.bundle.settings.no_match;
        conv.no_match += 1;
        if conv.no_match >= settings.max {
            self.escalate(conv, settings.then.as_ref(), TransferReason::NoMatch, step);
        } else {
            self.say(conv, nth(&settings.prompts, conv.no_match), step);
            self.repeat_question(conv, step);
        }
    }

    /// The bundle's escalation if it has one, else the handoff.
    pub(super) fn escalate(
        &self,
        conv: &mut Conversation,
        then: Option<&Transition>,
        reason: TransferReason,
        step: &mut Step,
    ) {
        match then {
            Some(t) => self.take(conv, t, reason, None, step),
            None => {
                self.say(conv, &self.bundle.settings.handoff_prompt.0, step);
                self.hand_off(conv, reason, step);
            }
        }
    }

    /// Transfer to the handoff target, or hang up when the bundle has none.
    pub(super) fn hand_off(
        &self,
        conv: &mut Conversation,
        reason: TransferReason,
        step: &mut Step,
    ) {
        match self.bundle.handoff_target() {
            Some(target) => self.transfer(conv, target, reason, step),
            None => {
                tracing::warn!(
                    reason = reason.as_str(),
                    "no handoff target in the bundle: hanging up"
                );
                self.end(conv, Action::Hangup, step);
            }
        }
    }

    pub(super) fn transfer(
        &self,
        conv: &mut Conversation,
        target: &str,
        reason: TransferReason,
        step: &mut Step,
    ) {
        let destination = self
            .bundle
            .transfer_targets
            .get(target)
            .map(|t| t.destination())
            .unwrap_or_default();
        metrics::counter_inc(
            "understudy_dialog_transfers_total",
            &[("reason", reason.as_str())],
        );
        step.transfer_target = Some(target.to_string());
        self.end(
            conv,
            Action::Transfer {
                target: destination,
                reason: reason.as_str().to_string(),
            },
            step,
        );
    }

    pub(super) fn end(&self, conv: &mut Conversation, action: Action, step: &mut Step) {
        conv.ended = Some(action.clone());
        conv.collecting = None;
        step.action = action;
    }
}

/// The last question (a sentence ending in `?`) of a prompt.
pub(super) fn question(text: &str) -> Option<String> {
    let mut sentences = vec![];
    let mut cur = String::new();
    for ch in text.chars() {
        cur.push(ch);
        if matches!(ch, '.' | '?' | '!') {
            sentences.push(std::mem::take(&mut cur));
        }
    }
    sentences
        .into_iter()
        .rev()
        .map(|s| s.trim().to_string())
        .find(|s| s.ends_with('?'))
}

/// The `n`-th (1-based) text of an escalating list; the last one repeats.
pub(super) fn nth(texts: &[Text], n: u32) -> &[Text] {
    if texts.is_empty() {
        return &[];
    }
    let i = (n.max(1) as usize - 1).min(texts.len() - 1);
    std::slice::from_ref(&texts[i])
}
