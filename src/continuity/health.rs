//! The cloud bot's health as a state machine with hysteresis: one lost probe
//! makes the cloud *degraded* (calls still go there, with takeover
//! protection), `down_after` failures in a row make it *down* (new calls go
//! to the local bot), and only `up_after` good probes in a row, spanning at
//! least `failback_after`, bring new calls back to the cloud. A cloud that
//! flaps never stays healthy long enough to win the traffic back, so routing
//! does not flip-flop. Pure logic: the probes and the clock come from outside.

use serde::Serialize;
use std::time::{Duration, Instant};

/// Where the cloud bot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudState {
    /// Healthy: new calls go to the cloud.
    Up,
    /// Something failed recently; new calls still go to the cloud.
    Degraded,
    /// New calls go to the local bot.
    Down,
}

impl CloudState {
    /// `up`, `degraded` or `down`, for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            CloudState::Up => "up",
            CloudState::Degraded => "degraded",
            CloudState::Down => "down",
        }
    }

    /// For the `understudy_cloud_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            CloudState::Up => 0.0,
            CloudState::Degraded => 1.0,
            CloudState::Down => 2.0,
        }
    }
}

/// How quickly the state moves.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    /// Failures in a row (probes or calls) that make the cloud down.
    pub down_after: u32,
    /// Good probes in a row that make a degraded cloud up again.
    pub up_after: u32,
    /// A down cloud must have been healthy this long (and `up_after` probes)
    /// before new calls go back to it.
    pub failback_after: Duration,
}

/// What was observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A probe (`sip_options`, `http`) answered well.
    ProbeOk,
    /// A probe failed (timeout, error status, connection refused).
    ProbeFailed(String),
    /// A live call's cloud leg failed (setup refused or timed out, RTP
    /// stopped, BYE with an error).
    CallFailed(String),
}

/// A change of state, for the log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: CloudState,
    /// The state after.
    pub to: CloudState,
    /// What caused it, e.g. "3 good probes in a row" or the failure.
    pub reason: String,
}

/// The cloud bot's health state machine (see the module comment); feed it [`Signal`]s.
#[derive(Debug, Clone)]
pub struct CloudHealth {
    policy: Hysteresis,
    state: CloudState,
    failures: u32,
    successes: u32,
    /// Start of the current run of good probes (for failback).
    healthy_since: Option<Instant>,
    since: Instant,
}

impl CloudHealth {
    /// The cloud is presumed up at start: a box that comes up during an
    /// outage finds out from its first probes (a second or two).
    pub fn new(policy: Hysteresis, now: Instant) -> Self {
        CloudHealth {
            policy,
            state: CloudState::Up,
            failures: 0,
            successes: 0,
            healthy_since: None,
            since: now,
        }
    }

    /// Where the cloud stands now.
    pub fn state(&self) -> CloudState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// New calls go to the cloud unless it is down.
    pub fn routes_to_cloud(&self) -> bool {
        self.state != CloudState::Down
    }

    /// Apply one observation at `now`; returns the transition when the state changes.
    pub fn observe(&mut self, signal: &Signal, now: Instant) -> Option<Transition> {
        let (to, reason) = match signal {
            Signal::ProbeOk => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                let since = *self.healthy_since.get_or_insert(now);
                match self.state {
                    CloudState::Degraded if self.successes >= self.policy.up_after => (
                        CloudState::Up,
                        format!("{} good probes in a row", self.successes),
                    ),
                    CloudState::Down
                        if self.successes >= self.policy.up_after
                            && now.duration_since(since) >= self.policy.failback_after =>
                    {
                        (
                            CloudState::Up,
                            format!("healthy for {} s", now.duration_since(since).as_secs()),
                        )
                    }
                    _ => return None,
                }
            }
            Signal::ProbeFailed(why) | Signal::CallFailed(why) => {
                self.successes = 0;
                self.healthy_since = None;
                self.failures = self.failures.saturating_add(1);
                let what = if matches!(signal, Signal::CallFailed(_)) {
                    "call failed"
                } else {
                    "probe failed"
                };
                match self.state {
                    CloudState::Down => return None,
                    _ if self.failures >= self.policy.down_after => (
                        CloudState::Down,
                        format!("{what} ({why}); {} failures in a row", self.failures),
                    ),
                    CloudState::Up => (CloudState::Degraded, format!("{what}: {why}")),
                    CloudState::Degraded => return None,
                }
            }
        };
        let from = self.state;
        self.state = to;
        self.since = now;
        if to == CloudState::Up {
            self.failures = 0;
        }
        Some(Transition { from, to, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Hysteresis {
        Hysteresis {
            down_after: 3,
            up_after: 3,
            failback_after: Duration::from_secs(10),
        }
    }

    fn fail() -> Signal {
        Signal::ProbeFailed("timeout".into())
    }

    #[test]
    fn one_lost_probe_only_degrades_and_good_probes_restore() {
        let t0 = Instant::now();
        let mut h = CloudHealth::new(policy(), t0);
        let t = h.observe(&fail(), t0).unwrap();
        assert_eq!((t.from, t.to), (CloudState::Up, CloudState::Degraded));
        assert!(h.routes_to_cloud());
        assert_eq!(
            h.observe(&Signal::ProbeOk, t0 + Duration::from_secs(1)),
            None
        );
        assert_eq!(
            h.observe(&Signal::ProbeOk, t0 + Duration::from_secs(2)),
            None
        );
        let t = h
            .observe(&Signal::ProbeOk, t0 + Duration::from_secs(3))
            .unwrap();
        assert_eq!(t.to, CloudState::Up);
    }

    #[test]
    fn failures_in_a_row_make_it_down_and_failback_waits() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut h = CloudHealth::new(policy(), t0);
        h.observe(&fail(), s(0));
        assert_eq!(h.observe(&fail(), s(1)), None);
        let t = h
            .observe(&Signal::CallFailed("RTP stopped".into()), s(2))
            .unwrap();
        assert_eq!(t.to, CloudState::Down);
        assert!(t.reason.contains("RTP stopped"), "{}", t.reason);
        assert!(!h.routes_to_cloud());
        // Healthy again, but not for long enough.
        for n in 3..13 {
            assert_eq!(h.observe(&Signal::ProbeOk, s(n)), None, "at {n} s");
        }
        let t = h.observe(&Signal::ProbeOk, s(13)).unwrap();
        assert_eq!((t.from, t.to), (CloudState::Down, CloudState::Up));
        assert!(h.routes_to_cloud());
    }

    #[test]
    fn a_flapping_cloud_does_not_win_the_traffic_back() {
        let t0 = Instant::now();
        let mut h = CloudHealth::new(policy(), t0);
        let mut transitions = vec![];
        // Up 4 s, down 4 s, for two minutes, one probe a second.
        for n in 0..120u64 {
            let signal = if (n / 4) % 2 == 1 {
                fail()
            } else {
                Signal::ProbeOk
            };
            if let Some(t) = h.observe(&signal, t0 + Duration::from_secs(n)) {
                transitions.push(t);
            }
        }
        assert_eq!(h.state(), CloudState::Down);
        let to: Vec<_> = transitions.iter().map(|t| t.to).collect();
        assert_eq!(
            to,
            vec![CloudState::Degraded, CloudState::Down],
            "{transitions:?}"
        );
    }

    #[test]
    fn a_single_call_failure_in_a_healthy_cloud_only_degrades() {
        let t0 = Instant::now();
        let mut h = CloudHealth::new(policy(), t0);
        let t = h
            .observe(&Signal::CallFailed("BYE 500".into()), t0)
            .unwrap();
        assert_eq!(t.to, CloudState::Degraded);
        assert!(h.routes_to_cloud());
    }
}
