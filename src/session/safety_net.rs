//! The safety net: when an engine fails or a turn runs past its deadline,
//! the caller hears the apology and goes to a human (the bot's safety-net
//! target) instead of silence or a dropped call.

use super::{CallState, Session, SessionAction, TurnReport};
use crate::engines::EngineError;
use crate::metrics;

impl Session {
    /// An engine failed: apologise (pre-rendered audio) and transfer to a human.
    pub(super) async fn safety_net(&mut self, error: EngineError, report: Option<TurnReport>) {
        // While thinking, only a prompt (the filler, a takeover prompt) can be
        // queued: let it finish, the apology follows at once. A half-spoken
        // answer is cut.
        let cut = self.state != CallState::Thinking;
        self.apologize(error, report, cut).await;
    }

    /// The safety net; `cut`: what is queued for the caller is dropped first.
    pub(super) async fn apologize(
        &mut self,
        error: EngineError,
        report: Option<TurnReport>,
        cut: bool,
    ) {
        tracing::error!(call = %self.call_id, %error, "engine failure: safety net");
        metrics::counter_inc("understudy_safety_net_total", &[]);
        if cut {
            self.emit(SessionAction::ClearPlayout).await;
        }
        self.stop_work();
        self.filler_due = None;
        let setup = self.setup.clone();
        let settings = &setup.settings;
        let mut report = report.unwrap_or_else(|| TurnReport {
            turn: self.turn,
            ..Default::default()
        });
        report.safety_net = true;
        report.filler |= std::mem::take(&mut self.filler_played);
        report.error = Some(error.to_string());
        report.reply = settings.apology.clone();
        report.action = "transfer".into();
        if let Some(audio) = self.setup.prompts.get(&settings.apology) {
            let mark = self.next_mark;
            self.next_mark += 1;
            self.emit(SessionAction::Play {
                samples: audio,
                mark,
            })
            .await;
        }
        self.emit(SessionAction::Report(Box::new(report))).await;
        self.set_state(CallState::Transferring).await;
        metrics::counter_inc("understudy_transfers_total", &[("reason", "safety_net")]);
        let target = settings.safety_target.clone();
        self.emit(SessionAction::Transfer {
            target,
            reason: format!("safety net: {error}"),
        })
        .await;
    }
}
