//! Continuity: knowing whether the cloud bot is alive, and routing around it.
//!
//! ```text
//!  probes (SIP OPTIONS, HTTP health) ──┐
//!  live calls (setup failed, RTP       ├─> CloudHealth: up / degraded / down
//!   stopped, BYE with an error) ───────┘     (hysteresis, failback delay)
//!                                              │
//!  new INVITE (in-path mode) ─── routes_to_cloud? ──> bridge to the cloud bot
//!                                              └─no─> local bot
//! ```
//!
//! In standby mode the SBC routes and this module stays idle (readiness is
//! `crate::session::admission`). In in-path mode `crate::transport::sip` bridges each call
//! to the cloud bot and, when the cloud leg fails, the local bot takes the
//! call over: [`inpath`] hears the relay and decides the takeover,
//! `crate::transport::sip::call` carries it out. docs/continuity.md has the whole story.

pub mod health;
pub mod inpath;
pub mod probe;

use crate::config::{CloudConfig, CloudMode};
use crate::metrics;
use anyhow::{bail, Context, Result};
use health::{CloudHealth, CloudState, Hysteresis, Signal, Transition};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Changes of the cloud bot's state kept for `/status` (the newest).
const TIMELINE_KEPT: usize = 50;

/// The `[cloud]` configuration, checked.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    /// Who routes calls: the SBC (standby) or this box (in-path).
    pub mode: CloudMode,
    /// The cloud bot's SIP URI (`cloud.uri`); required in in-path mode.
    pub uri: Option<String>,
    /// Probe the cloud bot with SIP OPTIONS to `uri`.
    pub probe_options: bool,
    /// An HTTP(S) health URL to probe as well (2xx is healthy).
    pub health_url: Option<String>,
    /// Time between probe rounds.
    pub probe_interval: Duration,
    /// A probe with no answer by then has failed.
    pub probe_timeout: Duration,
    /// Failures and good rounds in a row that change the state, and the failback delay.
    pub hysteresis: Hysteresis,
    /// The cloud must answer a call's INVITE within this; else the local bot answers.
    pub setup_timeout: Duration,
    /// No RTP from the cloud leg for this long: the local bot takes the call over.
    pub rtp_timeout: Duration,
    /// Some: the cloud leg's timeout follows its packet cadence, from this
    /// floor up to `rtp_timeout` (`crate::transport::rtp::cadence`).
    pub rtp_timeout_floor: Option<Duration>,
    /// Caller audio the in-path watch keeps (1 to 60 s).
    pub recent_audio: Duration,
}

impl CloudSettings {
    /// Check the `[cloud]` configuration; the error names the value that is wrong.
    pub fn from_config(c: &CloudConfig) -> Result<CloudSettings> {
        let uri = c
            .uri
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if let Some(uri) = &uri {
            // rsipstack's parser is lenient (it takes "bot.example"): want the scheme.
            let lower = uri.to_ascii_lowercase();
            if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
                bail!("cloud.uri {uri:?} is not a SIP URI like sip:bot@10.0.0.5:5060");
            }
            rsipstack::sip::Uri::try_from(uri.as_str())
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!("cloud.uri {uri:?} is not a SIP URI like sip:bot@10.0.0.5:5060")
                })?;
        }
        if c.mode == CloudMode::InPath && uri.is_none() {
            bail!("cloud.mode = \"in_path\" needs cloud.uri, the cloud bot's SIP URI (e.g. sip:bot@10.0.0.5:5060)");
        }
        let health_url = c
            .health_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string);
        if let Some(url) = &health_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("cloud.health_url {url:?} must be an http:// or https:// URL");
            }
        }
        // Without a probe nothing could ever bring a down cloud back.
        if c.mode == CloudMode::InPath && !c.probe_options && health_url.is_none() {
            bail!("cloud.mode = \"in_path\" needs a probe: keep cloud.probe_options = true or set cloud.health_url");
        }
        if c.down_after == 0 || c.up_after == 0 {
            bail!("cloud.down_after and cloud.up_after must be at least 1");
        }
        if c.probe_interval_ms < 100 || c.probe_timeout_ms == 0 {
            bail!(
                "cloud.probe_interval_ms must be at least 100 and cloud.probe_timeout_ms above 0"
            );
        }
        if c.rtp_timeout_ms < 100 {
            bail!(
                "cloud.rtp_timeout_ms below 100 would take calls over on ordinary network jitter"
            );
        }
        if c.rtp_timeout_floor_ms != 0
            && !(100..=c.rtp_timeout_ms).contains(&c.rtp_timeout_floor_ms)
        {
            bail!(
                "cloud.rtp_timeout_floor_ms = {} is out of range: give 100 to cloud.rtp_timeout_ms ({}), or 0 for the fixed cloud.rtp_timeout_ms",
                c.rtp_timeout_floor_ms,
                c.rtp_timeout_ms
            );
        }
        Ok(CloudSettings {
            mode: c.mode,
            uri,
            probe_options: c.probe_options,
            health_url,
            probe_interval: Duration::from_millis(c.probe_interval_ms),
            probe_timeout: Duration::from_millis(c.probe_timeout_ms),
            hysteresis: Hysteresis {
                down_after: c.down_after,
                up_after: c.up_after,
                failback_after: Duration::from_secs(c.failback_after_s),
            },
            setup_timeout: Duration::from_millis(c.setup_timeout_ms.max(100)),
            rtp_timeout: Duration::from_millis(c.rtp_timeout_ms),
            rtp_timeout_floor: (c.rtp_timeout_floor_ms > 0)
                .then(|| Duration::from_millis(c.rtp_timeout_floor_ms)),
            recent_audio: Duration::from_secs(c.recent_audio_s.clamp(1, 60)),
        })
    }
}

/// What `/status` shows about the cloud.
#[derive(Debug, Clone, Serialize)]
pub struct CloudStatus {
    /// Who routes calls: standby or in-path.
    pub mode: CloudMode,
    /// The cloud bot's SIP URI, if set.
    pub uri: Option<String>,
    /// The cloud bot's health: up, degraded or down.
    pub state: CloudState,
    /// Seconds in this state.
    pub for_s: u64,
    /// New calls go to the cloud bot.
    pub routes_to_cloud: bool,
    /// The last changes of state since the process started, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One change of the cloud bot's state.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    /// When, in Unix milliseconds.
    pub at_ms: u64,
    /// The state before.
    pub from: CloudState,
    /// The state after.
    pub to: CloudState,
    /// What caused it.
    pub reason: String,
}

/// The cloud's health, shared by the probes, the calls and `/status`.
pub struct Continuity {
    /// The checked `[cloud]` configuration.
    pub settings: CloudSettings,
    health: Mutex<CloudHealth>,
    timeline: Mutex<VecDeque<TimelineEntry>>,
    probe_now: Notify,
}

impl Continuity {
    /// The shared health state; the cloud is presumed up until the probes say otherwise.
    pub fn new(settings: CloudSettings) -> Arc<Continuity> {
        let health = CloudHealth::new(settings.hysteresis.clone(), Instant::now());
        metrics::gauge_set("understudy_cloud_state", &[], health.state().gauge());
        Arc::new(Continuity {
            settings,
            health: Mutex::new(health),
            timeline: Default::default(),
            probe_now: Notify::new(),
        })
    }

    /// True in in-path mode (this box fronts the cloud bot).
    pub fn in_path(&self) -> bool {
        self.settings.mode == CloudMode::InPath
    }

    /// Where a new call goes (in-path mode).
    pub fn routes_to_cloud(&self) -> bool {
        self.health.lock().unwrap().routes_to_cloud()
    }

    /// The cloud bot's health now.
    pub fn state(&self) -> CloudState {
        self.health.lock().unwrap().state()
    }

    /// What `/status` shows about the cloud now.
    pub fn status(&self) -> CloudStatus {
        let health = self.health.lock().unwrap();
        CloudStatus {
            mode: self.settings.mode,
            uri: self.settings.uri.clone(),
            state: health.state(),
            for_s: health.since().elapsed().as_secs(),
            routes_to_cloud: health.routes_to_cloud(),
            timeline: self.timeline.lock().unwrap().iter().cloned().collect(),
        }
    }

    /// Feed one observation to the state machine; transitions are logged and counted.
    pub fn observe(&self, signal: Signal) -> Option<Transition> {
        let transition = self.health.lock().unwrap().observe(&signal, Instant::now());
        if let Some(t) = &transition {
            tracing::warn!(from = t.from.label(), to = t.to.label(), reason = %t.reason, "cloud bot state changed");
            metrics::counter_inc(
                "understudy_cloud_transitions_total",
                &[("from", t.from.label()), ("to", t.to.label())],
            );
            metrics::gauge_set("understudy_cloud_state", &[], t.to.gauge());
            let mut timeline = self.timeline.lock().unwrap();
            if timeline.len() == TIMELINE_KEPT {
                timeline.pop_front();
            }
            timeline.push_back(TimelineEntry {
                at_ms: metrics::recent::now_ms(),
                from: t.from,
                to: t.to,
                reason: t.reason.clone(),
            });
        }
        transition
    }

    /// A live call's cloud leg failed: count it, and probe at once rather
    /// than at the next tick, so a real outage is confirmed in a second.
    pub fn call_failed(&self, why: &str) {
        metrics::counter_inc("understudy_cloud_call_failures_total", &[]);
        self.observe(Signal::CallFailed(why.to_string()));
        self.probe_now.notify_one();
    }

    /// Probe the cloud bot until the process ends (in-path mode, or in
    /// standby when a health URL is set, for `/status` and the metrics).
    pub fn spawn_probes(self: &Arc<Self>) {
        let probes = probe::Probes::new(&self.settings);
        if probes.is_empty() {
            tracing::info!("cloud: no probe configured (set cloud.uri or cloud.health_url)");
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                // One round, one observation: all probes good, or what failed.
                let mut failed = vec![];
                for (kind, result) in probes.run_all().await {
                    let label = if result.is_ok() { "ok" } else { "failed" };
                    metrics::counter_inc(
                        "understudy_cloud_probes_total",
                        &[("probe", kind), ("result", label)],
                    );
                    if let Err(why) = result {
                        tracing::debug!(probe = kind, %why, "cloud probe failed");
                        failed.push(format!("{kind}: {why}"));
                    }
                }
                this.observe(if failed.is_empty() {
                    Signal::ProbeOk
                } else {
                    Signal::ProbeFailed(failed.join("; "))
                });
                tokio::select! {
                    _ = tokio::time::sleep(this.settings.probe_interval) => {}
                    _ = this.probe_now.notified() => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_path() -> CloudConfig {
        CloudConfig {
            mode: CloudMode::InPath,
            uri: Some("sip:bot@127.0.0.1:5090".into()),
            ..Default::default()
        }
    }

    #[test]
    fn status_keeps_the_timeline_of_state_changes() {
        let cloud = Continuity::new(CloudSettings::from_config(&in_path()).unwrap());
        assert!(cloud.status().timeline.is_empty());
        // Enough failures to go down, whatever the hysteresis.
        for _ in 0..20 {
            cloud.observe(Signal::ProbeFailed("timeout".into()));
        }
        let timeline = cloud.status().timeline;
        assert!(!timeline.is_empty());
        assert_eq!(timeline[0].from, CloudState::Up, "{timeline:?}");
        assert_eq!(
            timeline.last().unwrap().to,
            CloudState::Down,
            "{timeline:?}"
        );
        assert!(
            timeline.last().unwrap().reason.contains("timeout"),
            "{timeline:?}"
        );
        assert!(timeline.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn in_path_settings_are_checked() {
        assert!(CloudSettings::from_config(&in_path()).is_ok());
        assert!(
            CloudSettings::from_config(&CloudConfig::default()).is_ok(),
            "standby needs nothing"
        );
        for (config, says) in [
            (
                CloudConfig {
                    uri: None,
                    ..in_path()
                },
                "needs cloud.uri",
            ),
            (
                CloudConfig {
                    uri: Some("bot.example".into()),
                    ..in_path()
                },
                "not a SIP URI",
            ),
            (
                CloudConfig {
                    probe_options: false,
                    ..in_path()
                },
                "needs a probe",
            ),
            (
                CloudConfig {
                    health_url: Some("ftp://x".into()),
                    ..in_path()
                },
                "http",
            ),
            (
                CloudConfig {
                    rtp_timeout_ms: 20,
                    ..in_path()
                },
                "rtp_timeout_ms",
            ),
            (
                CloudConfig {
                    down_after: 0,
                    ..in_path()
                },
                "down_after",
            ),
        ] {
            let e = format!("{:#}", CloudSettings::from_config(&config).unwrap_err());
            assert!(e.contains(says), "{e}");
        }
        let with_http = CloudConfig {
            probe_options: false,
            health_url: Some("https://bot/health".into()),
            ..in_path()
        };
        assert!(CloudSettings::from_config(&with_http).is_ok());
    }
}
