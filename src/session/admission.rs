//! Readiness and admission: the appliance takes a call only when its engines
//! are warm and it has capacity for one more; otherwise it says 503 at once,
//! so the SBC moves on to its next route instead of the caller hearing a
//! slow, degraded bot.

use super::SessionSetup;
use crate::metrics;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Gives the session setup when (and only when) calls can be served.
pub type SessionSource = Arc<dyn Fn() -> Option<Arc<SessionSetup>> + Send + Sync>;

/// Why a call or a probe is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Engines not warm or the bot not loaded.
    NotReady,
    /// Every call slot is taken.
    Full,
}

impl Refusal {
    /// `not_ready` or `full`, for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotReady => "not_ready",
            Refusal::Full => "full",
        }
    }
}

/// A call's slot; the slot frees when this is dropped.
pub struct Admitted {
    /// The bot, prompts and settings the call runs with.
    pub setup: Arc<SessionSetup>,
    /// The capacity slot, freed when this is dropped.
    pub permit: CallSlot,
}

/// Holding one of the capacity slots.
pub struct CallSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        metrics::gauge_add("understudy_sip_calls_active", &[], -1.0);
    }
}

/// The capacity semaphore and the readiness source.
pub struct Admission {
    capacity: usize,
    slots: Arc<Semaphore>,
    sessions: SessionSource,
}

impl Admission {
    /// Admission for `capacity` concurrent calls, ready when `sessions` gives a setup.
    pub fn new(capacity: usize, sessions: SessionSource) -> Self {
        metrics::gauge_set("understudy_sip_capacity", &[], capacity as f64);
        metrics::gauge_set("understudy_sip_calls_active", &[], 0.0);
        Admission {
            capacity,
            slots: Arc::new(Semaphore::new(capacity)),
            sessions,
        }
    }

    /// Concurrent calls allowed.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Calls in progress (holding a slot).
    pub fn active(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }

    /// What an OPTIONS probe should hear.
    pub fn probe(&self) -> Result<(), Refusal> {
        if (self.sessions)().is_none() {
            return Err(Refusal::NotReady);
        }
        if self.slots.available_permits() == 0 {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// The setup calls would get now, without taking a slot (for an apology
    /// when there is no room).
    pub fn current_setup(&self) -> Option<Arc<SessionSetup>> {
        (self.sessions)()
    }

    /// Take a slot for a new call.
    pub fn admit(&self) -> Result<Admitted, Refusal> {
        let setup = (self.sessions)().ok_or(Refusal::NotReady)?;
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        metrics::gauge_add("understudy_sip_calls_active", &[], 1.0);
        Ok(Admitted {
            setup,
            permit: CallSlot { _permit: permit },
        })
    }
}
