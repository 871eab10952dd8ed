//! Knowledge turns: the facts relevant to what the caller asked, and the
//! answer worded from them (or said verbatim) under the guard.

use super::*;

impl Bot {
    /// Facts relevant to the utterance (none when knowledge is off).
    pub(super) fn relevant_facts(&self, text: &str, vec: Option<&[f32]>) -> Vec<Retrieved> {
        let settings = &self.bundle.settings.knowledge;
        if !settings.enabled {
            return vec![];
        }
        self.knowledge.retrieve(text, vec, settings)
    }

    /// Answer from `facts` (non-empty), then return to the pending question.
    pub(super) async fn knowledge_answer(
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
        step.outcome = TurnOutcome::Knowledge;
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
}
