//! Installing an update on a running appliance: verify, unpack into the
//! inactive slot, drain the calls in progress, switch, restart, wait for
//! `/readyz` on the new version, and switch back by itself when it does not
//! come up in time.

use super::bundle::{self, Manifest, MAIN_BINARY};
use super::slots::{self, Slots};
use crate::config::{Config, HttpConfig, UpdateConfig};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The running appliance, through its HTTP listener.
pub struct Daemon {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Daemon {
    /// The appliance this configuration describes: where the running
    /// `serve` recorded its listener in the slots folder (`--http-listen`
    /// included), else `[http] listen` (a wildcard address is reached on
    /// loopback); HTTPS trusting its own certificate when it has one, and
    /// the admin token.
    pub fn new(http: &HttpConfig, slots: &Slots) -> Result<Daemon> {
        let listen = slots.listener().unwrap_or_else(|| http.listen.clone());
        let addr: std::net::SocketAddr = listen
            .parse()
            .with_context(|| format!("http.listen {listen:?} is not an address:port"))?;
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
            ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let host = std::net::SocketAddr::new(ip, addr.port());
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(5));
        let scheme = match &http.tls_certificate {
            Some(cert) => {
                let pem = std::fs::read(cert).with_context(|| {
                    format!("http.tls_certificate: cannot read {}", cert.display())
                })?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
                    client = client.add_root_certificate(cert);
                }
                "https"
            }
            None => "http",
        };
        Ok(Daemon {
            client: client.build()?,
            base: format!("{scheme}://{host}"),
            token: http.admin_token()?,
        })
    }

    /// `/status`, or why it could not be read.
    pub async fn status(&self) -> Result<Value> {
        let response = self
            .client
            .get(format!("{}/status", self.base))
            .send()
            .await?;
        let body = response.error_for_status()?.bytes().await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Refuse new calls (`on`) or take them again; returns the calls in progress.
    pub async fn drain(&self, on: bool) -> Result<u64> {
        let Some(token) = &self.token else {
            bail!("http.admin_token_file is unset, so the admin API is off");
        };
        let url = format!("{}/admin/drain", self.base);
        let request = if on {
            self.client.post(url)
        } else {
            self.client.delete(url)
        };
        let body = request
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let answer: Value = serde_json::from_slice(&body)?;
        Ok(answer["active_calls"].as_u64().unwrap_or(0))
    }
}

/// How an update or rollback ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The appliance runs the new version and is ready.
    Switched {
        /// `a`, `b` or `packaged`.
        slot: String,
        /// Its version.
        version: String,
    },
    /// The new version was not ready in time; the previous one runs again.
    RolledBack {
        /// Why the new version was given up.
        reason: String,
    },
}

/// The steps of a switch, from the configuration.
pub struct Updater {
    slots: Slots,
    settings: UpdateConfig,
    daemon: Daemon,
    packaged: PathBuf,
}

impl Updater {
    /// From the appliance's configuration.
    pub fn new(config: &Config) -> Result<Updater> {
        let slots = Slots::new(config.update.slots_dir.clone());
        // The packaged install is where `understudy` runs from when no slot
        // is active; once one is, `previous` remembers it.
        let packaged = match slots.active() {
            None => slots::own_folder()?,
            Some(_) => slots
                .previous()
                .filter(|p| slots::label(p) == "packaged")
                .map(Ok)
                .unwrap_or_else(slots::own_folder)?,
        };
        Ok(Updater {
            daemon: Daemon::new(&config.http, &slots)?,
            slots,
            settings: config.update.clone(),
            packaged,
        })
    }

    /// The slots this updater works on.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Check `bundle` and install it into the inactive slot; nothing else
    /// changes. Returns the slot's folder and the manifest.
    pub fn install(&self, bundle: &Path) -> Result<(PathBuf, Manifest)> {
        let dir = self.slots.dir();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Verify and unpack a private copy, so the file cannot change in between.
        let copy = dir.join(".incoming.update");
        let unpacked = dir.join(".incoming");
        let _ = std::fs::remove_dir_all(&unpacked);
        let result = (|| {
            std::fs::copy(bundle, &copy)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let signature = bundle::signature_path(bundle);
            std::fs::copy(&signature, bundle::signature_path(&copy)).with_context(|| {
                format!(
                    "cannot read the signature {}: an update bundle comes with its .minisig file; fetch both",
                    signature.display()
                )
            })?;
            let manifest = bundle::verify(&copy, &self.settings.keys_dir, std::env::consts::ARCH)?;
            bundle::unpack(&copy, &manifest, &unpacked)?;
            let reported = version_of(&unpacked.join(MAIN_BINARY))?;
            if reported != manifest.version {
                bail!(
                    "the bundle says version {} but its understudy reports {reported}; refused",
                    manifest.version
                );
            }
            let slot = self.slots.slot(self.slots.inactive());
            if slot.exists() {
                std::fs::remove_dir_all(&slot)
                    .with_context(|| format!("cannot clear {}", slot.display()))?;
            }
            std::fs::rename(&unpacked, &slot)?;
            Ok((slot, manifest))
        })();
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(bundle::signature_path(&copy));
        let _ = std::fs::remove_dir_all(&unpacked);
        result
    }

    /// Drain, make `target` active, restart, and wait for it; switch back
    /// and restart again when it is not ready within `[update] ready_timeout_s`.
    pub async fn switch_to(&self, target: &Path, say: &dyn Fn(&str)) -> Result<Outcome> {
        let back = self.slots.active().unwrap_or_else(|| self.packaged.clone());
        let back_previous = self.slots.previous();
        self.drain(say).await;
        self.slots.switch(target, &self.packaged)?;
        // Should this process die before the ready check, the trial still
        // ends (src/update/slots.rs).
        self.slots.begin_trial()?;
        let expected = slots::label(target);
        say(&format!(
            "switched to slot {expected}; restarting the appliance"
        ));
        let attempt = match self.restart() {
            Ok(()) => self.wait_ready(&expected, say).await,
            Err(e) => Err(e),
        };
        let why = match attempt {
            Ok(version) => {
                self.slots.end_trial();
                return Ok(Outcome::Switched {
                    slot: expected,
                    version,
                });
            }
            Err(why) => why,
        };
        say(&format!("{why:#}: rolling back to {}", slots::label(&back)));
        self.slots.restore(&back, back_previous.as_deref())?;
        self.slots.end_trial();
        let back_up = match self.restart() {
            Ok(()) => self.wait_ready(&slots::label(&back), say).await,
            Err(e) => Err(e),
        };
        if let Err(e) = back_up {
            // Whatever runs should at least take calls again.
            let _ = self.daemon.drain(false).await;
            return Err(e.context("rolled back, and the previous version is not ready either"));
        }
        Ok(Outcome::RolledBack {
            reason: format!("{why:#}"),
        })
    }

    async fn drain(&self, say: &dyn Fn(&str)) {
        let deadline = Instant::now() + Duration::from_secs(self.settings.drain_timeout_s);
        let mut active = match self.daemon.drain(true).await {
            Ok(active) => active,
            Err(e) => {
                say(&format!(
                    "cannot drain the appliance ({e:#}); calls in progress end with the restart"
                ));
                return;
            }
        };
        while active > 0 && Instant::now() < deadline {
            say(&format!(
                "new calls are refused; waiting for {active} call(s) in progress to end (up to {} s)",
                deadline.saturating_duration_since(Instant::now()).as_secs()
            ));
            tokio::time::sleep(Duration::from_secs(1)).await;
            active = match self.daemon.status().await {
                Ok(status) => status["calls"]["active"].as_u64().unwrap_or(0),
                Err(_) => 0,
            };
        }
        if active > 0 {
            say(&format!(
                "drain limit reached: {active} call(s) end with the restart"
            ));
        }
    }

    fn restart(&self) -> Result<()> {
        let Some((program, args)) = self.settings.restart_command.split_first() else {
            bail!("update.restart_command is empty: set it to the command that restarts the appliance");
        };
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .with_context(|| format!("cannot run update.restart_command {program}"))?;
        if !status.success() {
            bail!(
                "update.restart_command {:?} failed ({status})",
                self.settings.restart_command
            );
        }
        Ok(())
    }

    /// Poll `/status` until `slot` answers ready; its version.
    async fn wait_ready(&self, slot: &str, say: &dyn Fn(&str)) -> Result<String> {
        let limit = Duration::from_secs(self.settings.ready_timeout_s);
        let deadline = Instant::now() + limit;
        let mut last = String::from("no answer");
        let mut said = Instant::now();
        while Instant::now() < deadline {
            match self.daemon.status().await {
                Ok(status) if status["software"]["slot"] == slot && status["ready"] == true => {
                    let version = status["software"]["version"]
                        .as_str()
                        .unwrap_or("?")
                        .to_string();
                    say(&format!(
                        "slot {slot} (version {version}) is ready for calls"
                    ));
                    return Ok(version);
                }
                Ok(status) => last = not_ready(&status),
                Err(e) => last = format!("no answer ({e})"),
            }
            if said.elapsed() >= Duration::from_secs(10) {
                say(&format!("waiting for slot {slot} to be ready: {last}"));
                said = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!(
            "slot {slot} was not ready within {} s (last: {last})",
            limit.as_secs()
        )
    }
}

/// Why a `/status` answer is not the ready new version, in a few words.
fn not_ready(status: &Value) -> String {
    let slot = status["software"]["slot"].as_str().unwrap_or("?");
    match status["bot_error"].as_str() {
        Some(error) => format!("slot {slot} answers: {error}"),
        None => format!(
            "slot {slot} answers, ready: {}",
            status["ready"].as_bool().unwrap_or(false)
        ),
    }
}

/// What `binary --version` says (its second word).
fn version_of(binary: &Path) -> Result<String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), text.split_whitespace().nth(1)) {
        (true, Some(version)) => Ok(version.to_string()),
        _ => bail!(
            "{} --version failed ({}): the bundle does not run on this appliance; refused",
            binary.display(),
            out.status
        ),
    }
}
