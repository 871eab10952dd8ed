//! What goes into and comes out of a dialog turn: the session's contract.

use super::knowledge::Answer;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the caller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserInput {
    /// A transcript (an empty one counts as no input).
    Text(String),
    /// A transcript of the caller's audio that the STT worker still holds
    /// under `utterance`, so recognition may score candidate phrases against
    /// the audio itself ([`crate::engines::SttClient::score`]).
    Heard {
        /// What Whisper wrote.
        text: String,
        /// The STT worker's handle for the audio.
        utterance: u64,
    },
    /// Keyed digits, e.g. "0" or "48213#" (the terminator is stripped).
    Dtmf(String),
    /// Silence past the no-input timeout.
    NoInput,
}

/// Which stage decided the turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchSource {
    /// A rule: a training phrase or keyword of the intent, exact or contained in the utterance.
    Rule,
    /// The closest training phrase by embedding similarity.
    Embedding,
    /// Whisper's decoder, scoring the likeliest intents' phrases against the caller's audio.
    Acoustic,
    /// The LLM classified the utterance or filled the slot.
    Llm,
    /// Keyed digits (DTMF) mapped by the state.
    Dtmf,
    /// A grounded answer from the bundle's knowledge.
    Knowledge,
    /// The caller confirmed the intent the bot asked about.
    Confirmed,
    /// Nothing decided the turn (greeting, no input, no match).
    None,
}

impl MatchSource {
    /// The snake_case label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchSource::Rule => "rule",
            MatchSource::Embedding => "embedding",
            MatchSource::Acoustic => "acoustic",
            MatchSource::Llm => "llm",
            MatchSource::Dtmf => "dtmf",
            MatchSource::Knowledge => "knowledge",
            MatchSource::Confirmed => "confirmed",
            MatchSource::None => "none",
        }
    }
}

/// Why a call goes to a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferReason {
    /// The caller asked (an intent or key whose transition transfers).
    Requested,
    /// The flow transfers by itself (a state's automatic transition).
    Flow,
    /// Repeated no-match.
    NoMatch,
    /// Repeated silence.
    NoInput,
    /// A slot stayed empty after its attempts.
    SlotNotFilled,
    /// The guard rejected an answer and the bundle hands off in that case.
    GuardRejected,
    /// An engine failed mid-turn (the session's safety net).
    EngineFailure,
}

impl TransferReason {
    /// The snake_case label used in logs and metrics (and in [`Action::Transfer`]).
    pub fn as_str(self) -> &'static str {
        match self {
            TransferReason::Requested => "requested",
            TransferReason::Flow => "flow",
            TransferReason::NoMatch => "no_match",
            TransferReason::NoInput => "no_input",
            TransferReason::SlotNotFilled => "slot_not_filled",
            TransferReason::GuardRejected => "guard_rejected",
            TransferReason::EngineFailure => "engine_failure",
        }
    }
}

/// What the session does after speaking `say`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Wait for the caller (see [`ListenHints`]).
    Listen,
    /// Hand the call to a human: `target` is the SIP or tel: URI to refer
    /// to, `reason` a [`TransferReason`] label (`requested`, `no_match`...).
    /// [`BotTurn::transfer_target`] names the bundle's target.
    Transfer {
        /// SIP or tel: URI to transfer to.
        target: String,
        /// A [`TransferReason`] label.
        reason: String,
    },
    /// End the call after speaking.
    Hangup,
}

impl Action {
    /// `listen`, `transfer` or `hangup`, for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Listen => "listen",
            Action::Transfer { .. } => "transfer",
            Action::Hangup => "hangup",
        }
    }

    /// True when the conversation ends with this turn (transfer or hangup).
    pub fn is_final(&self) -> bool {
        !matches!(self, Action::Listen)
    }
}

/// What happened in the turn, for metrics and designers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The bot's opening turn.
    Greeting,
    /// An intent (or a mapped key) took a transition.
    Intent,
    /// A slot was filled.
    SlotFilled,
    /// Answered from knowledge.
    Knowledge,
    /// Nothing matched what the caller said.
    NoMatch,
    /// The caller said nothing before the no-input timeout.
    NoInput,
    /// Input after the conversation ended.
    Ended,
    /// A conversation taken over from another bot, placed where it was.
    Resumed,
    /// No stage was sure; the bot asks whether it understood ("Just to check: ...").
    Confirm,
}

impl TurnOutcome {
    /// The snake_case label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TurnOutcome::Greeting => "greeting",
            TurnOutcome::Intent => "intent",
            TurnOutcome::SlotFilled => "slot_filled",
            TurnOutcome::Knowledge => "knowledge",
            TurnOutcome::NoMatch => "no_match",
            TurnOutcome::NoInput => "no_input",
            TurnOutcome::Ended => "ended",
            TurnOutcome::Resumed => "resumed",
            TurnOutcome::Confirm => "confirm",
        }
    }
}

/// Per-stage time spent in the turn, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct DialogTimings {
    /// The whole recognition cascade (rules + embedding + LLM classification/slot filling).
    pub recognize_ms: f64,
    /// Embedding the utterance.
    pub embed_ms: f64,
    /// Every LLM request of the turn (classification, slot filling, answer).
    pub llm_ms: f64,
    /// Scoring phrases against the caller's audio.
    pub acoustic_ms: f64,
    /// The whole turn, in ms.
    pub total_ms: f64,
}

/// How the session should listen after a `Listen` turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenHints {
    /// Silence after which the next turn is [`UserInput::NoInput`], in ms.
    pub no_input_timeout_ms: u32,
    /// Whether the caller may interrupt the bot while it speaks.
    pub barge_in: bool,
    /// The slot being asked for (keyed digits fill it).
    pub expecting_slot: Option<String>,
    /// Key that ends a digit entry early (usually `#`); empty for none.
    pub dtmf_terminator: String,
    /// Digits after which an entry ends by itself.
    pub dtmf_max_digits: u32,
    /// Pause between keys that ends a digit entry, in ms.
    pub dtmf_inter_digit_timeout_ms: u32,
}

/// The bot's side of one turn.
#[derive(Debug, Clone, Serialize)]
pub struct BotTurn {
    /// Sentences or prompt texts, in order. Static prompts appear exactly as
    /// in [`super::Bot::static_prompts`] (pre-rendered audio keyed by text hits).
    pub say: Vec<String>,
    /// The intent that decided the turn, if any.
    pub intent: Option<String>,
    /// How sure the deciding stage was, from 0 to 1.
    pub confidence: f32,
    /// Which stage decided the turn.
    pub matched_by: MatchSource,
    /// What the session does after speaking.
    pub action: Action,
    /// What happened, for metrics and designers.
    pub outcome: TurnOutcome,
    /// Every slot after the turn.
    pub slots: BTreeMap<String, String>,
    /// The state after the turn.
    pub state: String,
    /// How to listen for the next turn (after a `Listen` action).
    pub listen: ListenHints,
    /// On a transfer: the bundle's name for the target (`agents`).
    pub transfer_target: Option<String>,
    /// For knowledge answers: the facts, the LLM's words and the guard's verdict.
    pub answer: Option<Answer>,
    /// On a confirmation question ([`TurnOutcome::Confirm`]): the intents asked
    /// about, best first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub asked: Vec<String>,
    /// Where the turn spent its time.
    pub timings: DialogTimings,
}

impl BotTurn {
    /// Everything said, as one line.
    pub fn text(&self) -> String {
        self.say.join(" ")
    }
}
