//! The A/B install slots: `a/` and `b/` under the slots folder, each one
//! version's files, and two links: `active` (what the appliance runs) and
//! `previous` (what it ran before, for a rollback). Without an `active`
//! link the packaged install runs. Links are replaced atomically (a new link
//! renamed over the old one), so a power cut leaves one version or the other.
//!
//! A switch puts the new slot on trial (`trial.json`) until it has been
//! ready once. `understudy update apply` watches it and switches back when it
//! is not ready in time; should that process die with the box (a power cut
//! between the switch and the ready check), the trial still ends: every
//! start of `serve` counts against it, a version on trial that is not ready
//! within `[update] ready_timeout_s` exits so the supervisor starts it again,
//! and past `[update] trial_starts` starts the previous version runs again.

use super::bundle::{Manifest, MAIN_BINARY, MANIFEST};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Set in the environment of an `understudy` started from a slot: that
/// slot's folder (so the launch does not repeat, and `/status` can say it).
pub const SLOT_ENV: &str = "UNDERSTUDY_SLOT";

/// The file that puts the active slot on trial, in the slots folder.
const TRIAL: &str = "trial.json";

/// A switch not yet confirmed by the new version being ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Trial {
    /// The folder switched to.
    pub slot: PathBuf,
    /// The folder that ran before, to go back to.
    pub previous: PathBuf,
    /// Starts of `serve` since the switch.
    pub starts: u32,
}

/// What counting a start of `serve` did ([`Slots::count_start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialStart {
    /// No switch is on trial.
    NoTrial,
    /// The slot on trial starts again (this many starts so far).
    Counted(u32),
    /// Too many starts without being ready: this folder is active again.
    FellBack(PathBuf),
}

/// The file where a running `serve` says where its HTTP listener is, in
/// the slots folder (a fixed place, whoever's environment reads it).
const LISTENER: &str = "listener.json";

/// Where a running `serve` listens for HTTP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Listener {
    /// The process.
    pid: u32,
    /// Its HTTP listener, `address:port` as bound.
    http: String,
}

/// The two slots' names.
pub const SLOT_NAMES: [&str; 2] = ["a", "b"];

/// The slots folder.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
}

impl Slots {
    /// The slots under `dir` (`[update] slots_dir`).
    pub fn new(dir: PathBuf) -> Slots {
        Slots { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A slot's folder.
    pub fn slot(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn link(&self, name: &str) -> Option<PathBuf> {
        std::fs::read_link(self.dir.join(name)).ok()
    }

    /// The folder the appliance runs from, when not the packaged install.
    pub fn active(&self) -> Option<PathBuf> {
        self.link("active")
    }

    /// The folder it ran from before the last switch.
    pub fn previous(&self) -> Option<PathBuf> {
        self.link("previous")
    }

    /// The slot an update goes into: the one not active.
    pub fn inactive(&self) -> &'static str {
        match self.active() {
            Some(active) if active == self.slot("a") => "b",
            _ => "a",
        }
    }

    /// The manifest of the version installed in `folder`, if it was installed by an update.
    pub fn manifest(folder: &Path) -> Option<Manifest> {
        let text = std::fs::read(folder.join(MANIFEST)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn point(&self, name: &str, target: &Path) -> Result<()> {
        let tmp = self.dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, self.dir.join(name))
            .with_context(|| format!("cannot switch {}", self.dir.join(name).display()))?;
        sync_dir(&self.dir)
    }

    /// Make `target` active; what was active (else `packaged`, the packaged
    /// install's folder) becomes `previous`.
    pub fn switch(&self, target: &Path, packaged: &Path) -> Result<()> {
        let was = self.active().unwrap_or_else(|| packaged.to_path_buf());
        self.point("previous", &was)?;
        self.point("active", target)
    }

    /// Put the active slot on trial: `previous` runs again should it not
    /// get ready (see the module comment).
    pub fn begin_trial(&self) -> Result<()> {
        let (Some(slot), Some(previous)) = (self.active(), self.previous()) else {
            anyhow::bail!("no switch to put on trial in {}", self.dir.display());
        };
        self.write_trial(&Trial {
            slot,
            previous,
            starts: 0,
        })
    }

    fn write_trial(&self, trial: &Trial) -> Result<()> {
        let path = self.dir.join(TRIAL);
        let tmp = self.dir.join(format!(".{TRIAL}.new"));
        std::fs::write(&tmp, serde_json::to_vec(trial)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        sync_dir(&self.dir)
    }

    /// The switch on trial, if any.
    pub fn trial(&self) -> Option<Trial> {
        let text = std::fs::read(self.dir.join(TRIAL)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The switch is confirmed (or undone): no trial any more.
    pub fn end_trial(&self) {
        let _ = std::fs::remove_file(self.dir.join(TRIAL));
    }

    /// Count a start of `serve` against the switch on trial; past
    /// `max_starts` starts, make the folder that ran before active again
    /// (the one on trial becomes `previous`) and end the trial.
    pub fn count_start(&self, max_starts: u32) -> Result<TrialStart> {
        let Some(mut trial) = self.trial() else {
            return Ok(TrialStart::NoTrial);
        };
        if self.active().as_deref() != Some(trial.slot.as_path()) {
            // Switched since by other means: that switch decides.
            self.end_trial();
            return Ok(TrialStart::NoTrial);
        }
        trial.starts += 1;
        if trial.starts > max_starts {
            self.point("previous", &trial.slot)?;
            self.point("active", &trial.previous)?;
            self.end_trial();
            return Ok(TrialStart::FellBack(trial.previous));
        }
        self.write_trial(&trial)?;
        Ok(TrialStart::Counted(trial.starts))
    }

    /// Say where this process's HTTP listener is, so that `understudy
    /// update` finds it whatever `--http-listen` moved it to.
    /// The slots folder is made when missing, but not its parent: a box
    /// without the appliance's state folder (a developer's) gets nothing.
    pub fn record_listener(&self, http: std::net::SocketAddr) -> Result<()> {
        match std::fs::create_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("cannot create {}", self.dir.display()))
            }
            _ => {}
        }
        let record = Listener {
            pid: std::process::id(),
            http: http.to_string(),
        };
        let path = self.dir.join(LISTENER);
        std::fs::write(&path, serde_json::to_vec(&record)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// This process no longer listens (it is stopping).
    pub fn forget_listener(&self) {
        let path = self.dir.join(LISTENER);
        let ours = std::fs::read(&path)
            .ok()
            .and_then(|t| serde_json::from_slice::<Listener>(&t).ok())
            .is_some_and(|l| l.pid == std::process::id());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The HTTP address of the `serve` that runs now, when one recorded it
    /// and its process is still there.
    pub fn listener(&self) -> Option<String> {
        let text = std::fs::read(self.dir.join(LISTENER)).ok()?;
        let record: Listener = serde_json::from_slice(&text).ok()?;
        Path::new(&format!("/proc/{}", record.pid))
            .exists()
            .then_some(record.http)
    }

    /// Put both links back as they were before a switch that failed.
    pub fn restore(&self, active: &Path, previous: Option<&Path>) -> Result<()> {
        match previous {
            Some(previous) => self.point("previous", previous)?,
            None => {
                let _ = std::fs::remove_file(self.dir.join("previous"));
            }
        }
        self.point("active", active)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// The folder of the running `understudy`.
pub fn own_folder() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/")))
}

/// How `/status` and `understudy update` name the install in `folder`:
/// its slot (`a`, `b`), else `packaged`.
pub fn label(folder: &Path) -> String {
    match folder.file_name().and_then(|n| n.to_str()) {
        Some(name) if SLOT_NAMES.contains(&name) => name.to_string(),
        _ => "packaged".into(),
    }
}

/// The install this process was started from (see [`label`]).
pub fn running_slot() -> String {
    std::env::var_os(SLOT_ENV)
        .map(|p| label(Path::new(&p)))
        .unwrap_or_else(|| "packaged".into())
}

/// When the active slot is not this binary's folder, replace this process
/// with the active slot's `understudy`, same arguments (the PID stays, so
/// systemd keeps following it). Returns when there is nothing to switch to;
/// an active slot without its binary is logged and the packaged one runs.
pub fn run_active(slots: &Slots) -> Result<()> {
    if std::env::var_os(SLOT_ENV).is_some() {
        return Ok(());
    }
    let Some(active) = slots.active() else {
        return Ok(());
    };
    let (Ok(target), Ok(own)) = (active.canonicalize(), own_folder()?.canonicalize()) else {
        tracing::error!(slot = %active.display(), "the active update slot is missing: running the packaged version");
        return Ok(());
    };
    if target == own {
        return Ok(());
    }
    let binary = target.join(MAIN_BINARY);
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new(&binary)
        .args(std::env::args_os().skip(1))
        .env(SLOT_ENV, &active)
        .exec();
    tracing::error!(binary = %binary.display(), error = %err, "cannot start the active update slot: running the packaged version");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_keeps_what_ran_before_for_a_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().to_path_buf());
        let packaged = Path::new("/usr/lib/understudy");
        assert_eq!(slots.inactive(), "a");
        slots.switch(&slots.slot("a"), packaged).unwrap();
        assert_eq!(slots.active(), Some(slots.slot("a")));
        assert_eq!(slots.previous().as_deref(), Some(packaged));
        assert_eq!(slots.inactive(), "b");
        slots.switch(&slots.slot("b"), packaged).unwrap();
        assert_eq!(slots.previous(), Some(slots.slot("a")));
        assert_eq!(slots.inactive(), "a");
        slots.restore(&slots.slot("a"), Some(packaged)).unwrap();
        assert_eq!(slots.active(), Some(slots.slot("a")));
        assert_eq!(slots.previous().as_deref(), Some(packaged));
    }

    #[test]
    fn the_listener_of_a_live_process_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().join("slots"));
        assert_eq!(slots.listener(), None);
        slots
            .record_listener("127.0.0.1:18080".parse().unwrap())
            .unwrap();
        assert_eq!(slots.listener().as_deref(), Some("127.0.0.1:18080"));
        slots.forget_listener();
        assert_eq!(slots.listener(), None);
        // A record left by a process that is gone is ignored.
        let gone = Listener {
            pid: u32::MAX - 1,
            http: "127.0.0.1:1".into(),
        };
        std::fs::write(
            slots.dir().join(LISTENER),
            serde_json::to_vec(&gone).unwrap(),
        )
        .unwrap();
        assert_eq!(slots.listener(), None);
    }

    #[test]
    fn a_switch_never_confirmed_falls_back_after_its_starts() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().to_path_buf());
        let packaged = Path::new("/usr/lib/understudy");
        assert_eq!(slots.count_start(2).unwrap(), TrialStart::NoTrial);
        slots.switch(&slots.slot("a"), packaged).unwrap();
        slots.begin_trial().unwrap();
        assert_eq!(slots.count_start(2).unwrap(), TrialStart::Counted(1));
        assert_eq!(slots.count_start(2).unwrap(), TrialStart::Counted(2));
        assert_eq!(
            slots.count_start(2).unwrap(),
            TrialStart::FellBack(packaged.to_path_buf())
        );
        assert_eq!(slots.active().as_deref(), Some(packaged));
        assert_eq!(slots.previous(), Some(slots.slot("a")));
        assert_eq!(slots.trial(), None);
        assert_eq!(slots.count_start(2).unwrap(), TrialStart::NoTrial);
    }

    #[test]
    fn a_confirmed_or_superseded_switch_is_no_longer_on_trial() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path().to_path_buf());
        let packaged = Path::new("/usr/lib/understudy");
        slots.switch(&slots.slot("a"), packaged).unwrap();
        slots.begin_trial().unwrap();
        assert_eq!(slots.count_start(3).unwrap(), TrialStart::Counted(1));
        slots.end_trial();
        assert_eq!(slots.count_start(3).unwrap(), TrialStart::NoTrial);
        assert_eq!(slots.active(), Some(slots.slot("a")));
        // Switched again by hand while a trial was pending: that one decides.
        slots.begin_trial().unwrap();
        slots.switch(&slots.slot("b"), packaged).unwrap();
        assert_eq!(slots.count_start(3).unwrap(), TrialStart::NoTrial);
        assert_eq!(slots.active(), Some(slots.slot("b")));
    }
}
