//! Configuration reload (SIGHUP, or `POST /admin/config/reload`): the file
//! is read again; `[session]` and `[calls] capacity` apply to the calls that
//! start from then on, calls in progress keep what they started with, and
//! every other changed section is reported as waiting for a restart. An
//! invalid file changes nothing.

use crate::config::Config;
use crate::http::admin::ReloadReport;
use crate::session::admission::Admission;
use crate::sync::live::LiveSetup;
use anyhow::Result;
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Reads the configuration as `serve` read it at start (file, then the
/// command line's overrides).
pub type ReadConfig = Box<dyn Fn() -> Result<Config> + Send + Sync>;

/// Applies reloaded configuration to a running `serve`.
pub struct Reloader {
    read: ReadConfig,
    /// The configuration in effect: as started, with what reloads applied.
    running: Mutex<Config>,
    live: Arc<LiveSetup>,
    admission: Arc<Admission>,
}

impl Reloader {
    /// A reloader for a `serve` that started with `running`.
    pub fn new(
        read: ReadConfig,
        running: Config,
        live: Arc<LiveSetup>,
        admission: Arc<Admission>,
    ) -> Reloader {
        Reloader {
            read,
            running: Mutex::new(running),
            live,
            admission,
        }
    }

    /// Read the file again and apply what can change while calls run.
    pub fn reload(&self) -> Result<ReloadReport> {
        let new = (self.read)()?;
        let capacity = new.call_capacity()?;
        let mut running = self.running.lock().unwrap();
        let mut report = ReloadReport::default();
        let (was, now) = (sections(&running), sections(&new));
        for (name, value) in &now {
            let before = was.get(name);
            match name.as_str() {
                "session" => {
                    if before != Some(value) {
                        self.live.reload_session(new.session.clone());
                        running.session = new.session.clone();
                        report.applied.push("session".into());
                    }
                }
                // The capacity (`[calls]`, or `[sip]` by its older name) applies now.
                "calls" | "sip" => {
                    if without_capacity(before) != without_capacity(Some(value)) {
                        report.needs_restart.push(name.clone());
                    }
                }
                _ => {
                    if before != Some(value) {
                        report.needs_restart.push(name.clone());
                    }
                }
            }
        }
        if capacity != self.admission.capacity() {
            self.admission.set_capacity(capacity);
            (running.calls.capacity, running.sip.capacity) = (new.calls.capacity, new.sip.capacity);
            report.applied.push("calls.capacity".into());
        }
        tracing::info!(applied = ?report.applied, needs_restart = ?report.needs_restart, "configuration reloaded");
        Ok(report)
    }
}

/// Each `[section]` of `config` as JSON, by name.
fn sections(config: &Config) -> serde_json::Map<String, Value> {
    match serde_json::to_value(config).expect("the configuration serializes") {
        Value::Object(map) => map,
        _ => unreachable!("a configuration is a table"),
    }
}

/// A section without its `capacity` key.
fn without_capacity(section: Option<&Value>) -> Option<Value> {
    let mut section = section.cloned()?;
    if let Value::Object(map) = &mut section {
        map.remove("capacity");
    }
    Some(section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CallsConfig, SessionConfig};

    fn reloader(file: Arc<Mutex<Config>>) -> (Reloader, Arc<LiveSetup>, Arc<Admission>) {
        let live = Arc::new(LiveSetup::default());
        let admission = Arc::new(Admission::new(4, Arc::new(|| None)));
        let start = file.lock().unwrap().clone();
        let read: ReadConfig = Box::new(move || Ok(file.lock().unwrap().clone()));
        (
            Reloader::new(read, start, live.clone(), admission.clone()),
            live,
            admission,
        )
    }

    #[tokio::test]
    async fn live_sections_apply_and_the_rest_waits_for_a_restart() {
        let file = Arc::new(Mutex::new(Config::default()));
        let (reloader, _, admission) = reloader(file.clone());
        assert_eq!(reloader.reload().unwrap(), ReloadReport::default());

        {
            let mut c = file.lock().unwrap();
            c.session = SessionConfig {
                endpoint_silence_ms: 700,
                ..Default::default()
            };
            c.calls = CallsConfig {
                capacity: 6,
                ..Default::default()
            };
            c.sip.listen = "127.0.0.1:5080".into();
            c.models.pack = "test".into();
        }
        let report = reloader.reload().unwrap();
        assert_eq!(report.applied, ["session", "calls.capacity"]);
        assert_eq!(report.needs_restart, ["models", "sip"]);
        assert_eq!(admission.capacity(), 6);

        // Applied once; what waits for a restart is still reported.
        let again = reloader.reload().unwrap();
        assert!(again.applied.is_empty(), "{again:?}");
        assert_eq!(again.needs_restart, ["models", "sip"]);

        // Fewer slots: the capacity shrinks.
        file.lock().unwrap().calls.capacity = 2;
        assert_eq!(reloader.reload().unwrap().applied, ["calls.capacity"]);
        assert_eq!(admission.capacity(), 2);
    }

    #[test]
    fn an_invalid_file_changes_nothing() {
        let live = Arc::new(LiveSetup::default());
        let admission = Arc::new(Admission::new(4, Arc::new(|| None)));
        let read: ReadConfig = Box::new(|| anyhow::bail!("configuration file x is invalid"));
        let reloader = Reloader::new(read, Config::default(), live, admission.clone());
        assert!(reloader.reload().is_err());
        assert_eq!(admission.capacity(), 4);
    }
}
