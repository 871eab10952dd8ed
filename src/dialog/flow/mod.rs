//! The flow engine: per-call conversation state and the turn logic: route
//! input to slots, transitions, knowledge or no-match handling; escalate
//! repeated no-match/no-input to a human.

mod asking;
mod facts;
mod moves;

use moves::{nth, question};

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
    /// Name of the state the conversation is in.
    pub fn state(&self) -> &str {
        &self.state
    }
    /// Slot values so far, by slot name (lookup results as `<into>.<column>`).
    pub fn slots(&self) -> &BTreeMap<String, String> {
        &self.slots
    }
    /// True once the bot has transferred the call or hung up.
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }
    /// Recent exchanges as (speaker, text), speaker `caller` or `bot`.
    pub fn history(&self) -> impl Iterator<Item = &(String, String)> {
        self.history.iter()
    }
    /// Caller inputs answered so far (the greeting not counted).
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
    outcome: TurnOutcome,
    answer: Option<super::knowledge::Answer>,
    transfer_target: Option<String>,
    timings: DialogTimings,
    hops: u32,
}

impl Step {
    fn new(outcome: TurnOutcome) -> Step {
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
    metrics::observe_ms("understudy_dialog_stage_seconds", &[("stage", name)], ms);
    ms
}

impl Bot {
    /// A new conversation and its greeting (the start state's prompts).
    pub fn start(&self) -> (Conversation, BotTurn) {
        let started = Instant::now();
        let mut conv = self.conversation_at(&self.bundle.flow.start);
        let mut step = Step::new(TurnOutcome::Greeting);
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
        let mut step = Step::new(TurnOutcome::Resumed);
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
            let mut step = Step::new(TurnOutcome::Ended);
            step.action = action;
            return Ok(self.finish(conv, step, started));
        }
        // Audio the STT worker holds is a transcript with something more.
        let (input, heard) = match input {
            UserInput::Heard { text, utterance } => (UserInput::Text(text), Some(utterance)),
            other => (other, None),
        };
        let step = match input {
            UserInput::Text(text) if !text.trim().is_empty() => {
                conv.remember("caller", text.clone());
                conv.no_input = 0;
                self.on_text(conv, text.trim(), heard).await?
            }
            UserInput::Dtmf(keys) => {
                // Keys or silence leave a confirmation question unanswered.
                conv.confirming = None;
                conv.remember("caller", format!("[keys {keys}]"));
                conv.no_input = 0;
                self.on_keys(conv, &keys)
            }
            UserInput::Text(_) | UserInput::Heard { .. } | UserInput::NoInput => {
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
        let mut step = Step::new(TurnOutcome::NoMatch);
        self.say(conv, &self.bundle.settings.apology_prompt.0, &mut step);
        self.hand_off(conv, TransferReason::EngineFailure, &mut step);
        self.finish(conv, step, started)
    }

    async fn on_text(
        &self,
        conv: &mut Conversation,
        text: &str,
        heard: Option<u64>,
    ) -> Result<Step, EngineError> {
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
        let mut step = Step::new(TurnOutcome::Intent);
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
                embedded = Some((scores, vectors));
            }
        }
        // Unsure from the words: what do the likeliest intents' phrases
        // sound like against what the caller actually said?
        if let (None, None, false, Some(utterance), Some(stt), Some((scores, vectors))) = (
            &recognized,
            collect,
            knowledge_first,
            heard,
            &self.nlu.stt,
            &embedded,
        ) {
            if self.bundle.settings.recognition.acoustic {
                let started = Instant::now();
                let whole = vectors.first().map(Vec::as_slice).unwrap_or_default();
                recognized = self
                    .recognizer
                    .acoustic(stt, utterance, whole, scores)
                    .await?;
                step.timings.acoustic_ms += stage("acoustic", started);
            }
        }
        let embedded = embedded.map(|(scores, _)| scores);
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

    fn on_keys(&self, conv: &mut Conversation, keys: &str) -> Step {
        let mut step = Step::new(TurnOutcome::Intent);
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
        let mut step = Step::new(TurnOutcome::NoInput);
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

    fn finish(&self, conv: &mut Conversation, mut step: Step, started: Instant) -> BotTurn {
        step.timings.total_ms = ms_since(started);
        let outcome = step.outcome.as_str();
        metrics::observe_ms(
            "understudy_dialog_turn_seconds",
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
