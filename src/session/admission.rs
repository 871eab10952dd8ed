//! Readiness and admission: the appliance takes a call only when its engines
//! are warm and it has capacity for one more; otherwise it refuses at once
//! (SIP 503, HTTP 503, a WebSocket close, an AudioSocket error), so the
//! caller's platform moves on to its next route instead of the caller
//! hearing a slow, degraded bot.
//!
//! One [`Admission`] serves every ingress: a call by SIP and a call by
//! WebSocket take slots from the same capacity (`[calls] capacity`), and
//! each slot is counted under its [`Ingress`] in `/status` and the metrics.

use super::SessionSetup;
use crate::metrics;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Gives the session setup when (and only when) calls can be served.
pub type SessionSource = Arc<dyn Fn() -> Option<Arc<SessionSetup>> + Send + Sync>;

/// How a call reached the appliance: the `ingress` label of the call metrics
/// and of `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ingress {
    /// SIP signalling with RTP media (`transport::sip`).
    Sip,
    /// A Twilio-shaped WebSocket media stream (`transport::websocket`).
    Websocket,
    /// Asterisk's AudioSocket over TCP (`transport::audiosocket`).
    Audiosocket,
    /// This machine's sound card (`understudy talk`).
    SoundCard,
    /// A WebRTC peer: the softphone page or a WHIP client (`transport::webrtc`).
    Webrtc,
}

impl Ingress {
    /// Every ingress, in the order `/status` lists them.
    pub const ALL: [Ingress; 5] = [
        Ingress::Sip,
        Ingress::Websocket,
        Ingress::Audiosocket,
        Ingress::SoundCard,
        Ingress::Webrtc,
    ];

    /// `sip`, `websocket`, `audiosocket`, `sound_card`, `webrtc`: the metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Ingress::Sip => "sip",
            Ingress::Websocket => "websocket",
            Ingress::Audiosocket => "audiosocket",
            Ingress::SoundCard => "sound_card",
            Ingress::Webrtc => "webrtc",
        }
    }

    fn index(self) -> usize {
        Ingress::ALL.iter().position(|i| *i == self).unwrap_or(0)
    }
}

/// Why a call or a probe is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Engines not warm or the bot not loaded.
    NotReady,
    /// Every call slot is taken.
    Full,
    /// Draining (the admin API): the calls in progress finish, new ones go elsewhere.
    Draining,
}

impl Refusal {
    /// `not_ready` or `full`, for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotReady => "not_ready",
            Refusal::Full => "full",
            Refusal::Draining => "draining",
        }
    }

    /// What the caller's platform is told, in a few words.
    pub fn explain(self) -> &'static str {
        match self {
            Refusal::NotReady => "not ready: the engines are warming up or the bot is not loaded",
            Refusal::Full => "at capacity: every call slot is taken",
            Refusal::Draining => {
                "draining: the calls in progress finish before an update or a restart"
            }
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
    ingress: Ingress,
    active: Arc<[AtomicUsize; Ingress::ALL.len()]>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.active[self.ingress.index()].fetch_sub(1, Ordering::Relaxed);
        metrics::gauge_add(
            "understudy_calls_admitted",
            &[("ingress", self.ingress.label())],
            -1.0,
        );
    }
}

/// Calls in progress through one ingress (`/status`).
#[derive(Debug, Clone, Serialize)]
pub struct IngressCalls {
    /// The ingress.
    pub ingress: Ingress,
    /// Calls holding a slot through it now.
    pub active: usize,
}

/// The capacity semaphore and the readiness source, shared by every ingress.
pub struct Admission {
    capacity: AtomicUsize,
    slots: Arc<Semaphore>,
    sessions: SessionSource,
    active: Arc<[AtomicUsize; Ingress::ALL.len()]>,
    draining: std::sync::atomic::AtomicBool,
}

impl Admission {
    /// Admission for `capacity` concurrent calls, ready when `sessions` gives a setup.
    pub fn new(capacity: usize, sessions: SessionSource) -> Self {
        metrics::gauge_set("understudy_call_capacity", &[], capacity as f64);
        for ingress in Ingress::ALL {
            metrics::gauge_set(
                "understudy_calls_admitted",
                &[("ingress", ingress.label())],
                0.0,
            );
        }
        Admission {
            capacity: AtomicUsize::new(capacity),
            slots: Arc::new(Semaphore::new(capacity)),
            sessions,
            active: Arc::new(Default::default()),
            draining: Default::default(),
        }
    }

    /// Concurrent calls allowed.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Allow `capacity` concurrent calls from now on (a reloaded `[calls]
    /// capacity`). Calls in progress go on; when it shrinks below them, new
    /// calls are refused until enough of them have ended.
    pub fn set_capacity(&self, capacity: usize) {
        let old = self.capacity.swap(capacity, Ordering::Relaxed);
        if capacity > old {
            self.slots.add_permits(capacity - old);
        } else if capacity < old {
            let excess = old - capacity;
            let rest = excess - self.slots.forget_permits(excess);
            if rest > 0 {
                // The slots still held by calls are retired as those calls end.
                let slots = self.slots.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = slots.acquire_many_owned(rest as u32).await {
                        permits.forget();
                    }
                });
            }
        }
        metrics::gauge_set("understudy_call_capacity", &[], capacity as f64);
        tracing::info!(
            capacity,
            was = old,
            active = self.active(),
            "admission: capacity changed"
        );
    }

    /// Calls in progress (holding a slot).
    pub fn active(&self) -> usize {
        self.active.iter().map(|a| a.load(Ordering::Relaxed)).sum()
    }

    /// Calls in progress by ingress, every ingress listed.
    pub fn active_by_ingress(&self) -> Vec<IngressCalls> {
        Ingress::ALL
            .iter()
            .map(|&ingress| IngressCalls {
                ingress,
                active: self.active[ingress.index()].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Refuse new calls (`true`) while the calls in progress finish, or take
    /// them again (`false`).
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
        metrics::gauge_set("understudy_draining", &[], f64::from(u8::from(on)));
        tracing::info!(
            draining = on,
            active = self.active(),
            "admission: draining {}",
            if on { "on" } else { "off" }
        );
    }

    /// Whether new calls are refused so the box can be updated or restarted.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// What a probe (SIP OPTIONS, a platform's health check) should hear.
    pub fn probe(&self) -> Result<(), Refusal> {
        if (self.sessions)().is_none() {
            return Err(Refusal::NotReady);
        }
        if self.draining() {
            return Err(Refusal::Draining);
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

    /// Take a slot for a new call arriving through `ingress`.
    pub fn admit(&self, ingress: Ingress) -> Result<Admitted, Refusal> {
        let refused = |refusal: Refusal| {
            metrics::counter_inc(
                "understudy_calls_refused_total",
                &[("ingress", ingress.label()), ("reason", refusal.label())],
            );
            refusal
        };
        let setup = (self.sessions)().ok_or_else(|| refused(Refusal::NotReady))?;
        if self.draining() {
            return Err(refused(Refusal::Draining));
        }
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| refused(Refusal::Full))?;
        self.active[ingress.index()].fetch_add(1, Ordering::Relaxed);
        metrics::gauge_add(
            "understudy_calls_admitted",
            &[("ingress", ingress.label())],
            1.0,
        );
        Ok(Admitted {
            setup,
            permit: CallSlot {
                _permit: permit,
                ingress,
                active: self.active.clone(),
            },
        })
    }
}
