//! Replaying a bundle's test conversations against a bot (the demo's tests,
//! `understudy chat --test`, and the parity tester).

use super::bundle::{ActionKind, TestConversation, TestTurn};
use super::turn::{Action, BotTurn, TurnOutcome, UserInput};
use super::Bot;
use crate::engines::EngineError;

/// One test conversation's result: every turn, and what did not match.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TestReport {
    /// The test conversation's name from the bundle.
    pub name: String,
    /// Each expectation that did not hold, with the turn it failed on.
    pub failures: Vec<String>,
    /// (caller input as written, the bot's turn); the greeting first with input "".
    pub turns: Vec<(String, BotTurn)>,
}

impl TestReport {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn input_of(turn: &TestTurn) -> (UserInput, String) {
    match (&turn.user, &turn.dtmf) {
        (Some(text), _) => (UserInput::Text(text.clone()), text.clone()),
        (None, Some(keys)) => (UserInput::Dtmf(keys.clone()), format!("#{keys}")),
        (None, None) => (UserInput::NoInput, "(no input)".into()),
    }
}

fn squash(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// What differs between `expected` and the bot's `turn`. `words_intent` is
/// the intent of the caller's words when the turn filled a slot without
/// classifying them (an answer to the bot's question): the test's expected
/// intent is checked against it.
pub fn compare(expected: &TestTurn, turn: &BotTurn, words_intent: Option<&str>) -> Vec<String> {
    let mut out = vec![];
    if let Some(intent) = &expected.intent {
        let got = turn.intent.as_deref().or(words_intent).unwrap_or("none");
        if got != intent && turn.outcome == TurnOutcome::SlotFilled {
            out.push(format!(
                "expected intent {intent}; the answer filled a slot and its words are {got}"
            ));
        } else if got != intent {
            out.push(format!(
                "expected intent {intent}, got {got} (via {}, confidence {:.2})",
                turn.matched_by.as_str(),
                turn.confidence
            ));
        }
    }
    let said = squash(&turn.text());
    for fragment in &expected.reply_contains {
        if !said.contains(&squash(fragment)) {
            out.push(format!("expected the reply to contain \"{fragment}\""));
        }
    }
    if let Some(kind) = expected.action {
        let got = match turn.action {
            Action::Listen => ActionKind::Listen,
            Action::Transfer { .. } => ActionKind::Transfer,
            Action::Hangup => ActionKind::Hangup,
        };
        if got != kind {
            out.push(format!(
                "expected action {kind:?}, got {}",
                turn.action.label()
            ));
        }
    }
    if let Some(target) = &expected.target {
        if turn.transfer_target.as_ref() != Some(target) {
            out.push(format!(
                "expected a transfer to {target}, got {:?}",
                turn.action
            ));
        }
    }
    for (slot, value) in &expected.slots {
        let got = turn.slots.get(slot);
        if got != Some(value) {
            out.push(format!("expected slot {slot} = {value}, got {got:?}"));
        }
    }
    if let Some(state) = &expected.state {
        if &turn.state != state {
            out.push(format!("expected state {state}, got {}", turn.state));
        }
    }
    out
}

/// Play one test conversation from the greeting on.
pub async fn run_test(bot: &Bot, test: &TestConversation) -> Result<TestReport, EngineError> {
    let (mut conv, greeting) = bot.start();
    let mut failures = vec![];
    let said = squash(&greeting.text());
    for fragment in &test.greeting_contains {
        if !said.contains(&squash(fragment)) {
            failures.push(format!(
                "greeting: expected it to contain \"{fragment}\"; it said \"{}\"",
                greeting.text()
            ));
        }
    }
    let mut turns = vec![(String::new(), greeting)];
    for (i, expected) in test.turns.iter().enumerate() {
        let (input, shown) = input_of(expected);
        let turn = bot.respond(&mut conv, input).await?;
        let words_intent = match (&expected.intent, &expected.user) {
            (Some(_), Some(text)) if turn.outcome == TurnOutcome::SlotFilled => {
                bot.words_intent(text).await?
            }
            _ => None,
        };
        for problem in compare(expected, &turn, words_intent.as_deref()) {
            failures.push(format!(
                "turn {} ({shown}): {problem}; the bot said \"{}\"",
                i + 1,
                turn.text()
            ));
        }
        turns.push((shown, turn));
    }
    Ok(TestReport {
        name: test.name.clone(),
        failures,
        turns,
    })
}

/// Play every test conversation of the bot's bundle.
pub async fn run_all(bot: &Bot) -> Result<Vec<TestReport>, EngineError> {
    let mut reports = vec![];
    for test in &bot.bundle().tests {
        reports.push(run_test(bot, test).await?);
    }
    Ok(reports)
}
