//! Asking when unsure: the confirmation question when recognition is close
//! but not sure ("is that about a return?"), reading the caller's answer to
//! it, and picking an option by position ("the second one").

use super::*;

impl Bot {
    /// Read the caller's answer to a confirmation question: the chosen
    /// intent is taken, a plain no is a no-match (it counts towards the
    /// handoff) with the `denied` prompt; anything else (`None`) is a new
    /// request.
    pub(super) fn confirmation_answer(
        &self,
        conv: &mut Conversation,
        pending: Pending,
        text: &str,
    ) -> Option<Step> {
        let topics: Vec<String> = pending.intents.iter().map(|i| self.topic(i)).collect();
        let answer = confirm::answer(text, &topics);
        tracing::debug!(asked = ?pending.intents, ?answer, "confirmation answered");
        let mut step = Step::new(TurnOutcome::Intent);
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
                step.outcome = TurnOutcome::NoMatch;
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
    pub(super) fn ask_to_confirm(
        &self,
        conv: &mut Conversation,
        text: &str,
        scores: &super::super::recognize::EmbeddingScores,
        step: &mut Step,
    ) -> bool {
        let settings = &self.bundle.settings.confirm;
        let intents = &self.bundle.intents;
        let Some((best, score)) = scores.best() else {
            return false;
        };
        let askable = intents[best].topic.is_some() || intents[best].confirm.is_some();
        // A bare "yes" or "no" answers nothing the bot asked; it is not a request.
        let bare_answer = super::super::text::yes_or_no(text).is_some()
            && super::super::text::words(text).len() <= 2;
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
        step.outcome = TurnOutcome::Confirm;
        step.say.push(question);
        true
    }

    /// What an intent is about, for confirmation questions: its `topic`, else its name in words.
    pub(super) fn topic(&self, intent: &str) -> String {
        self.bundle
            .intents
            .get(intent)
            .and_then(|i| i.topic.as_ref())
            .map(|t| self.t(t).to_string())
            .unwrap_or_else(|| intent.replace('_', " "))
    }

    /// The option a short ordinal answer ("the second one") picks from the
    /// options the bot's last prompt listed.
    pub(super) fn picked_option(&self, conv: &Conversation, text: &str) -> Option<String> {
        let position = confirm::ordinal(text)?;
        let options = confirm::options(conv.last_question.as_deref()?);
        confirm::pick(&options, position).cloned()
    }
}
