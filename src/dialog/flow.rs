//! The flow engine: per-call conversation state and the turn logic: route
//! input to slots, transitions, knowledge or no-match handling; escalate
//! repeated no-match/no-input to a human.

use super::bot::Bot;
use super::bundle::{Collect, State, Text, Transition, BACK_TARGET, RETURN_TARGET};
use super::confirm::{self, Pending};
use super::knowledge::{AnswerSource, Retrieved};
use super::recognize::{Recognition, Recognizer};
use super::slots::{self, Matcher};
use super::template;
use super::turn::*;
use crate::engines::EngineError;
use crate::metrics;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Automatic state changes allowed in one turn before the flow counts as
/// looping (validation rejects unconditional loops; conditional ones can
/// still cycle at run time).
const MAX_HOPS: u32 = 16;
const HISTORY: usize = 12;

/// One call's dialog state. Independent per call; `Bot` is shared.
#[derive(Debug, Clone)]
pub struct Conversation {
    state: String,
    slots: BTreeMap<String, String>,
    /// Index into the current state's `collect` being asked for.
    collecting: Option<usize>,
    slot_attempts: u32,
    no_match: u32,
    no_input: u32,
    /// The intent that led into the current state (its own words may repeat it).
    entered_by: Option<String>,
    /// The last thing the bot asked, for LLM context.
    last_question: Option<String>,
    history: VecDeque<(String, String)>,
    ended: Option<Action>,
    turns: u32,
    /// States that called a sub-flow (`call: true`), innermost last: `@return` goes back there.
    callers: Vec<String>,
    /// The state before the current one, for `@back`.
    previous: Option<String>,
    /// The confirmation question the bot asked, awaiting its answer.
    confirming: Option<Pending>,
}

impl Conversation {
    pub fn state(&self) -> &str {
        &self.state
    }
    pub fn slots(&self) -> &BTreeMap<String, String> {
        &self.slots
    }
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }
    /// Recent exchanges as (speaker, text), speaker `caller` or `bot`.
    pub fn history(&self) -> impl Iterator<Item = &(String, String)> {
        self.history.iter()
    }
    pub fn turns(&self) -> u32 {
        self.turns
    }

    fn remember(&mut self, speaker: &str, text: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((speaker.to_string(), text));
    }
}

/// A turn being built.
struct Step {
    say: Vec<String>,
    intent: Option<String>,
    confidence: f32,
    matched_by: MatchSource,
    action: Action,
    outcome: Outcome,
    answer: Option<super::knowledge::Answer>,
    transfer_target: Option<String>,
    timings: DialogTimings,
    hops: u32,
}

impl Step {
    fn new(outcome: Outcome) -> Step {
        Step {
            say: vec![],
            intent: None,
            confidence: 0.0,
            matched_by: MatchSource::None,
            action: Action::Listen,
            outcome,
            answer: None,
            transfer_target: None,
            timings: DialogTimings::default(),
            hops: 0,
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn stage(name: &str, started: Instant) -> f64 {
    let ms = ms_since(started);
    metrics::observe_ms("understudy_dialog_stage_ms", &[("stage", name)], ms);
    ms
}

impl Bot {
    /// A new conversation and its greeting (the start state's prompts).
    pub fn start(&self) -> (Conversation, BotTurn) {
        let started = Instant::now();
        let mut conv = self.conversation_at(&self.bundle.flow.start);
        let mut step = Step::new(Outcome::Greeting);
        let start = self.bundle.flow.start.clone();
        self.enter(&mut conv, &start, None, &mut step);
        let turn = self.finish(&mut conv, step, started);
        (conv, turn)
    }

    /// Continue a conversation another bot was having (in-path takeover):
    /// a conversation at `place`, and the turn that re-asks its pending
    /// question in one short sentence (the collect question, else what the
    /// state asks; a state that moves on by itself first does so). The
    /// state's own prompts are not repeated.
    pub fn resume(&self, place: &super::Place) -> (Conversation, BotTurn) {
        let started = Instant::now();
        let mut conv = self.conversation_at(&place.state);
        // The intent that leads here, so an answer that repeats it is not "something else".
        conv.entered_by = self
            .bundle
            .flow
            .states
            .values()
            .flat_map(|s| &s.transitions)
            .chain(&self.bundle.flow.global)
            .find(|t| t.to.as_deref() == Some(place.state.as_str()))
            .and_then(|t| t.intent.clone());
        let mut step = Step::new(Outcome::Resumed);
        let state = self.state(&conv);
        match place.collecting.filter(|&i| i < state.collect.len()) {
            Some(i) => {
                conv.collecting = Some(i);
                self.say(
                    &conv,
                    std::slice::from_ref(&state.collect[i].prompt),
                    &mut step,
                );
            }
            None => {
                step.hops = 1;
                self.settle(&mut conv, &mut step);
                if step.say.is_empty() && step.action == Action::Listen {
                    let state = self.state(&conv);
                    match &state.reprompt {
                        Some(r) if !state.say.0.iter().any(|t| question(self.t(t)).is_some()) => {
                            self.say(&conv, std::slice::from_ref(r), &mut step)
                        }
                        _ => self.say(&conv, &state.say.0, &mut step),
                    }
                }
            }
        }
        // One short sentence: the question in what would be said.
        if let Some(q) = step.say.iter().rev().find_map(|s| question(s)) {
            step.say = vec![q];
        }
        let turn = self.finish(&mut conv, step, started);
        (conv, turn)
    }

    fn conversation_at(&self, state: &str) -> Conversation {
        Conversation {
            state: state.to_string(),
            slots: BTreeMap::new(),
            collecting: None,
            slot_attempts: 0,
            no_match: 0,
            no_input: 0,
            entered_by: None,
            last_question: None,
            history: VecDeque::new(),
            ended: None,
            turns: 0,
            callers: vec![],
            previous: None,
            confirming: None,
        }
    }

    /// The bot's answer to one caller input. `Err` when an engine failed:
    /// the session then plays [`Bot::safety_net`]; failures are never
    /// turned into a no-match.
    pub async fn respond(
        &self,
        conv: &mut Conversation,
        input: UserInput,
    ) -> Result<BotTurn, EngineError> {
        let started = Instant::now();
        conv.turns += 1;
        if let Some(action) = conv.ended.clone() {
            let mut step = Step::new(Outcome::Ended);
            step.action = action;
            return Ok(self.finish(conv, step, started));
        }
        let step = match input {
            UserInput::Text(text) if !text.trim().is_empty() => {
                conv.remember("caller", text.clone());
                conv.no_input = 0;
                self.on_text(conv, text.trim()).await?
            }
            UserInput::Dtmf(keys) => {
                // Keys or silence leave a confirmation question unanswered.
                conv.confirming = None;
                conv.remember("caller", format!("[keys {keys}]"));
                conv.no_input = 0;
                self.on_keys(conv, &keys)
            }
            UserInput::Text(_) | UserInput::NoInput => {
                conv.confirming = None;
                conv.remember("caller", "[no input]".into());
                self.on_no_input(conv)
            }
        };
        Ok(self.finish(conv, step, started))
    }

    /// The safety net after an engine failure: apologise and hand the call
    /// to the handoff target (or hang up when the bundle has none).
    pub fn safety_net(&self, conv: &mut Conversation) -> BotTurn {
        let started = Instant::now();
        let mut step = Step::new(Outcome::NoMatch);
        self.say(conv, &self.bundle.settings.apology_prompt.0, &mut step);
        self.hand_off(conv, TransferReason::EngineFailure, &mut step);
        self.finish(conv, step, started)
    }

    async fn on_text(&self, conv: &mut Conversation, text: &str) -> Result<Step, EngineError> {
        // The answer to "Just to check: is that about ...?"
        if let Some(pending) = conv.confirming.take() {
            if let Some(step) = self.confirmation_answer(conv, pending, text) {
                return Ok(step);
            }
        }
        // "The second one" after a prompt that listed options: that option.
        let picked = self.picked_option(conv, text);
        if let Some(option) = &picked {
            tracing::debug!(answer = text, option, "an option picked by position");
        }
        let text = picked.as_deref().unwrap_or(text);
        let mut step = Step::new(Outcome::Intent);
        let recognize_started = Instant::now();
        let state = self.state(conv);
        let active = &self.active[&conv.state];
        let collect = conv.collecting.map(|i| &state.collect[i]);

        let started = Instant::now();
        let rule = self.recognizer.rules(text, active);
        stage("rules", started);

        // Context first: an answer to the bot's question fills the slot
        // ("it's 48213"), unless the caller clearly asks for something else.
        if let Some(c) = collect {
            if let Some(value) = self.matcher(c).extract(text) {
                let elsewhere = rule
                    .as_ref()
                    .is_some_and(|r| Some(&r.intent) != conv.entered_by.as_ref());
                if !elsewhere {
                    step.timings.recognize_ms = ms_since(recognize_started);
                    self.fill(conv, c, value, MatchSource::Rule, 1.0, &mut step);
                    return Ok(step);
                }
            }
        }

        // Embeddings: an intent, or knowledge when a fact is closer to the
        // question than any training phrase ("how long does shipping take?").
        let mut recognized = rule;
        let mut embedded = None;
        let mut facts = None;
        let mut knowledge_first = false;
        if recognized.is_none() {
            if let Some(embed) = &self.nlu.embed {
                let started = Instant::now();
                let vectors = embed.embed(&Recognizer::embedding_texts(text)).await?;
                step.timings.embed_ms += stage("embed", started);
                let whole = vectors.first().map(Vec::as_slice);
                let found = self.relevant_facts(text, whole);
                // A fact that restates an active intent's answer is that intent's.
                let owned_by_active =
                    |f: &&Retrieved| f.owner.as_ref().is_some_and(|o| active.contains(o));
                let evidence: Vec<(&str, f32)> = found
                    .iter()
                    .filter(owned_by_active)
                    .filter_map(|f| Some((f.owner.as_deref()?, f.score)))
                    .collect();
                let (accepted, scores) = self.recognizer.embedding(&vectors, active, &evidence);
                knowledge_first = found
                    .iter()
                    .find(|f| !owned_by_active(f))
                    .is_some_and(|f| f.score > scores.best_score());
                tracing::debug!(ranked = ?scores.ranked, best_fact = ?found.first().map(|f| f.score), knowledge_first, "embedding stage");
                if !knowledge_first {
                    recognized = accepted;
                }
                facts = Some(found);
                embedded = Some(scores);
            }
        }
        if let (None, Some(c), Some(llm)) = (&recognized, collect, &self.nlu.llm) {
            if self.bundle.settings.recognition.llm_slots {
                let started = Instant::now();
                let question = self.t(&c.prompt).to_string();
                let value =
                    slots::llm_extract(llm, self.matcher(c), &c.slot, &question, text).await?;
                step.timings.llm_ms += stage("llm_slot", started);
                if let Some(value) = value {
                    step.timings.recognize_ms = ms_since(recognize_started);
                    self.fill(
                        conv,
                        c,
                        value,
                        MatchSource::Llm,
                        super::recognize::LLM_CONFIDENCE,
                        &mut step,
                    );
                    return Ok(step);
                }
            }
        }
        if let (None, false, Some(llm)) = (&recognized, knowledge_first, &self.nlu.llm) {
            let candidates = self.recognizer.llm_candidates(active, embedded.as_ref());
            if self.bundle.settings.recognition.llm_classify && !candidates.is_empty() {
                let started = Instant::now();
                recognized = self
                    .recognizer
                    .llm(
                        llm,
                        text,
                        active,
                        &candidates,
                        conv.last_question.as_deref(),
                    )
                    .await?;
                step.timings.llm_ms += stage("llm_classify", started);
            }
        }
        step.timings.recognize_ms = ms_since(recognize_started);

        if let Some(r) = recognized {
            let t = self.transition_for(state, |t| t.intent.as_deref() == Some(r.intent.as_str()));
            // `active` only holds intents some transition here handles.
            let t = t.expect("an active intent has a transition");
            self.take_on_input(conv, t, &r, Some(text), &mut step);
            return Ok(step);
        }

        if let (None, false, Some(scores)) = (collect, knowledge_first, &embedded) {
            if self.ask_to_confirm(conv, text, scores, &mut step) {
                return Ok(step);
            }
        }

        let facts = facts.unwrap_or_else(|| self.relevant_facts(text, None));
        if !facts.is_empty() {
            self.knowledge_answer(conv, text, facts, &mut step).await?;
            return Ok(step);
        }
        match collect {
            Some(c) => self.slot_missed(conv, c, &mut step),
            None => self.no_match(conv, &mut step),
        }
        Ok(step)
    }

    /// Read the caller's answer to a confirmation question: the chosen
    /// intent is taken, a plain no is a no-match (it counts towards the
    /// handoff) with the `denied` prompt; anything else (`None`) is a new
    /// request.
    fn confirmation_answer(
        &self,
        conv: &mut Conversation,
        pending: Pending,
        text: &str,
    ) -> Option<Step> {
        let topics: Vec<String> = pending.intents.iter().map(|i| self.topic(i)).collect();
        let answer = confirm::answer(text, &topics);
        tracing::debug!(asked = ?pending.intents, ?answer, "confirmation answered");
        let mut step = Step::new(Outcome::Intent);
        match answer {
            confirm::Answer::Chose(i) => {
                let intent = pending.intents.get(i)?;
                let state = self.state(conv);
                let t = self.transition_for(state, |t| t.intent.as_deref() == Some(intent))?;
                let r = Recognition {
                    intent: intent.clone(),
                    confidence: 1.0,
                    source: MatchSource::Confirmed,
                };
                self.take_on_input(conv, t, &r, Some(&pending.utterance), &mut step);
            }
            confirm::Answer::No => {
                step.outcome = Outcome::NoMatch;
                let settings = &self.bundle.settings;
                conv.no_match += 1;
                if conv.no_match >= settings.no_match.max {
                    let then = settings.no_match.then.as_ref();
                    self.escalate(conv, then, TransferReason::NoMatch, &mut step);
                } else {
                    self.say(conv, &settings.confirm.denied.0, &mut step);
                }
            }
            confirm::Answer::Other => return None,
        }
        Some(step)
    }

    /// When no stage was sure but an intent is close, ask about it (or
    /// about the two closest, as a choice) instead of a no-match; `false`
    /// when there is nothing worth asking about.
    fn ask_to_confirm(
        &self,
        conv: &mut Conversation,
        text: &str,
        scores: &super::recognize::EmbeddingScores,
        step: &mut Step,
    ) -> bool {
        let settings = &self.bundle.settings.confirm;
        let intents = &self.bundle.intents;
        let Some((best, score)) = scores.best() else {
            return false;
        };
        let askable = intents[best].topic.is_some() || intents[best].confirm.is_some();
        // A bare "yes" or "no" answers nothing the bot asked; it is not a request.
        let bare_answer =
            super::text::yes_or_no(text).is_some() && super::text::words(text).len() <= 2;
        if !settings.enabled || *score < settings.floor || !askable || bare_answer {
            return false;
        }
        let second = scores
            .ranked
            .get(1)
            .filter(|(name, s)| {
                *s >= settings.floor
                    && score - s <= settings.choice_margin
                    && intents[best].topic.is_some()
                    && intents[name].topic.is_some()
            })
            .map(|(name, _)| name);
        let question = match (second, &intents[best].confirm) {
            (Some(second), _) => confirm::question(
                self.t(&settings.choice),
                &self.topic(best),
                Some(&self.topic(second)),
            ),
            (None, Some(own)) => self.t(own).to_string(),
            (None, None) => confirm::question(self.t(&settings.question), &self.topic(best), None),
        };
        let mut asked = vec![best.clone()];
        asked.extend(second.cloned());
        tracing::debug!(?asked, score, "unsure: asking to confirm");
        metrics::counter_inc("understudy_dialog_confirmations_total", &[]);
        conv.confirming = Some(Pending {
            intents: asked,
            utterance: text.to_string(),
        });
        step.outcome = Outcome::Confirm;
        step.say.push(question);
        true
    }

    /// What an intent is about, for confirmation questions: its `topic`, else its name in words.
    fn topic(&self, intent: &str) -> String {
        self.bundle
            .intents
            .get(intent)
            .and_then(|i| i.topic.as_ref())
            .map(|t| self.t(t).to_string())
            .unwrap_or_else(|| intent.replace('_', " "))
    }

    /// The option a short ordinal answer ("the second one") picks from the
    /// options the bot's last prompt listed.
    fn picked_option(&self, conv: &Conversation, text: &str) -> Option<String> {
        let position = confirm::ordinal(text)?;
        let options = confirm::options(conv.last_question.as_deref()?);
        confirm::pick(&options, position).cloned()
    }

    fn on_keys(&self, conv: &mut Conversation, keys: &str) -> Step {
        let mut step = Step::new(Outcome::Intent);
        let dtmf = &self.bundle.settings.dtmf;
        let keys = keys.trim();
        let keys = keys
            .strip_suffix(dtmf.terminator.as_str())
            .filter(|_| !dtmf.terminator.is_empty())
            .unwrap_or(keys);
        let state = self.state(conv);
        let collect = conv.collecting.map(|i| &state.collect[i]);
        if dtmf.enabled {
            if let Some(c) = collect {
                if let Some(value) = self.matcher(c).from_keys(keys) {
                    self.fill(conv, c, value, MatchSource::Dtmf, 1.0, &mut step);
                    return step;
                }
            }
            if let Some(t) = self.transition_for(state, |t| t.dtmf.as_deref() == Some(keys)) {
                let r = Recognition {
                    intent: t.intent.clone().unwrap_or_default(),
                    confidence: 1.0,
                    source: MatchSource::Dtmf,
                };
                self.take_on_input(conv, t, &r, None, &mut step);
                return step;
            }
        }
        match collect {
            Some(c) => self.slot_missed(conv, c, &mut step),
            None => self.no_match(conv, &mut step),
        }
        step
    }

    fn on_no_input(&self, conv: &mut Conversation) -> Step {
        let mut step = Step::new(Outcome::NoInput);
        let settings = &self.bundle.settings.no_input;
        conv.no_input += 1;
        if conv.no_input >= settings.max {
            self.escalate(
                conv,
                settings.then.as_ref(),
                TransferReason::NoInput,
                &mut step,
            );
        } else {
            self.say(conv, nth(&settings.prompts, conv.no_input), &mut step);
            self.repeat_question(conv, &mut step);
        }
        step
    }

    /// Facts relevant to the utterance (none when knowledge is off).
    fn relevant_facts(&self, text: &str, vec: Option<&[f32]>) -> Vec<Retrieved> {
        let settings = &self.bundle.settings.knowledge;
        if !settings.enabled {
            return vec![];
        }
        self.knowledge.retrieve(text, vec, settings)
    }

    /// Answer from `facts` (non-empty), then return to the pending question.
    async fn knowledge_answer(
        &self,
        conv: &mut Conversation,
        question: &str,
        facts: Vec<Retrieved>,
        step: &mut Step,
    ) -> Result<(), EngineError> {
        let settings = &self.bundle.settings.knowledge;
        let started = Instant::now();
        let answer = self
            .knowledge
            .answer(
                self.nlu.llm.as_ref(),
                &self.bundle.bot.name,
                question,
                facts,
                settings,
            )
            .await?;
        stage("knowledge", started);
        step.timings.llm_ms += answer.llm_ms;
        step.outcome = Outcome::Knowledge;
        step.matched_by = MatchSource::Knowledge;
        step.confidence = answer.facts[0].score;
        conv.no_match = 0;
        if answer.source == AnswerSource::Handoff {
            step.answer = Some(answer);
            self.escalate(conv, None, TransferReason::GuardRejected, step);
            return Ok(());
        }
        step.say.push(answer.text.clone());
        step.answer = Some(answer);
        match conv.collecting {
            // Back to the question the caller interrupted.
            Some(_) => self.repeat_question(conv, step),
            None => self.say(conv, &settings.followup.0, step),
        }
        Ok(())
    }

    // ------------------------------------------------------------ flow moves

    fn state(&self, conv: &Conversation) -> &State {
        &self.bundle.flow.states[&conv.state]
    }

    fn matcher(&self, c: &Collect) -> &Matcher {
        // Validation guarantees every collected entity exists.
        &self.matchers[&c.entity]
    }

    /// The state's own transitions first, then the global ones.
    fn transition_for<'a>(
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

    fn render(&self, conv: &Conversation, text: &Text) -> String {
        template::render(self.t(text), &conv.slots, &self.digit_slots)
    }

    fn say(&self, conv: &Conversation, texts: &[Text], step: &mut Step) {
        step.say.extend(
            texts
                .iter()
                .map(|t| self.render(conv, t))
                .filter(|s| !s.is_empty()),
        );
    }

    /// After a no-match/no-input prompt: the slot question, else the state's reprompt.
    fn repeat_question(&self, conv: &Conversation, step: &mut Step) {
        let state = self.state(conv);
        match conv.collecting.map(|i| &state.collect[i]) {
            Some(c) => self.say(conv, std::slice::from_ref(&c.prompt), step),
            None => self.say(conv, state.reprompt.as_slice(), step),
        }
    }

    fn take_on_input(
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
        step.outcome = Outcome::Intent;
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

    fn take(
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
    fn return_to(&self, conv: &mut Conversation, name: &str, step: &mut Step) {
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
    fn count_hop(&self, conv: &mut Conversation, name: &str, step: &mut Step) -> bool {
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
    fn enter(&self, conv: &mut Conversation, name: &str, carry: Option<&str>, step: &mut Step) {
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
    fn settle(&self, conv: &mut Conversation, step: &mut Step) {
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

    fn lookup(&self, conv: &mut Conversation, l: &super::bundle::Lookup) {
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

    fn fill(
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
        step.outcome = Outcome::SlotFilled;
        step.matched_by = source;
        step.confidence = confidence;
        self.settle(conv, step);
    }

    /// An answer that did not fill the slot: reprompt, or `on_fail` after `max_attempts`.
    fn slot_missed(&self, conv: &mut Conversation, c: &Collect, step: &mut Step) {
        step.outcome = Outcome::NoMatch;
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

    fn no_match(&self, conv: &mut Conversation, step: &mut Step) {
        step.outcome = Outcome::NoMatch;
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
    fn escalate(
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
    fn hand_off(&self, conv: &mut Conversation, reason: TransferReason, step: &mut Step) {
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

    fn transfer(
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

    fn end(&self, conv: &mut Conversation, action: Action, step: &mut Step) {
        conv.ended = Some(action.clone());
        conv.collecting = None;
        step.action = action;
    }

    fn finish(&self, conv: &mut Conversation, mut step: Step, started: Instant) -> BotTurn {
        step.timings.total_ms = ms_since(started);
        let outcome = step.outcome.as_str();
        metrics::observe_ms(
            "understudy_dialog_turn_ms",
            &[("matched_by", step.matched_by.as_str())],
            step.timings.total_ms,
        );
        metrics::counter_inc("understudy_dialog_turns_total", &[("outcome", outcome)]);
        let state = self.state(conv);
        let settings = &self.bundle.settings;
        let listen = ListenHints {
            no_input_timeout_ms: state
                .no_input_timeout_ms
                .unwrap_or(settings.no_input.timeout_ms),
            barge_in: state.barge_in.unwrap_or(settings.barge_in),
            expecting_slot: conv.collecting.map(|i| state.collect[i].slot.clone()),
            dtmf_terminator: settings.dtmf.terminator.clone(),
            dtmf_max_digits: settings.dtmf.max_digits,
            dtmf_inter_digit_timeout_ms: settings.dtmf.inter_digit_timeout_ms,
        };
        if !step.say.is_empty() {
            conv.remember("bot", step.say.join(" "));
            if step.action == Action::Listen {
                conv.last_question = step.say.last().cloned();
            }
        }
        tracing::debug!(
            state = %conv.state,
            intent = step.intent.as_deref().unwrap_or("-"),
            matched_by = step.matched_by.as_str(),
            outcome,
            action = step.action.label(),
            ms = step.timings.total_ms,
            "dialog turn"
        );
        BotTurn {
            say: step.say,
            intent: step.intent,
            confidence: step.confidence,
            matched_by: step.matched_by,
            action: step.action,
            outcome: step.outcome,
            slots: conv.slots.clone(),
            state: conv.state.clone(),
            listen,
            transfer_target: step.transfer_target,
            answer: step.answer,
            asked: conv
                .confirming
                .as_ref()
                .map(|p| p.intents.clone())
                .unwrap_or_default(),
            timings: step.timings,
        }
    }
}

/// The last question (a sentence ending in `?`) of a prompt.
fn question(text: &str) -> Option<String> {
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
fn nth(texts: &[Text], n: u32) -> &[Text] {
    if texts.is_empty() {
        return &[];
    }
    let i = (n.max(1) as usize - 1).min(texts.len() - 1);
    std::slice::from_ref(&texts[i])
}
