//! `understudy update`: signed A/B software updates (docs/operations.md).

use crate::config::Config;
use crate::update::apply::{Outcome, Updater};
use crate::update::bundle::{self, PackRequest};
use crate::update::slots::{self, Slots};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The `update` subcommands.
#[derive(Subcommand, Debug)]
pub enum UpdateCommand {
    /// Show the running version, the two slots and what is active.
    Status,
    /// Check a bundle (signature, trusted key, architecture) without installing it.
    Verify {
        /// The bundle; its signature is BUNDLE.minisig.
        bundle: PathBuf,
    },
    /// Install a signed bundle into the inactive slot, drain the calls in
    /// progress, switch, restart, and roll back by itself when the new
    /// version is not ready in time. Needs the rights to restart the service.
    Apply {
        /// The bundle; its signature is BUNDLE.minisig.
        bundle: PathBuf,
        /// How long to wait.
        #[command(flatten)]
        limits: Limits,
    },
    /// Switch back to the version that ran before the last switch (drain, restart, wait).
    Rollback(Limits),
    /// For the vendor: pack a folder of release files into a signed bundle.
    Pack(PackArgs),
    /// For the vendor: make a signing key pair (minisign format); the .pub goes
    /// into every appliance's [update] keys_dir.
    Keygen {
        /// Folder for understudy-update.key (secret) and understudy-update.pub.
        #[arg(long)]
        out: PathBuf,
        /// Leave the secret key without a password (for build machines that
        /// guard it otherwise).
        #[arg(long)]
        unencrypted: bool,
    },
}

/// How long `update apply` and `update rollback` wait.
#[derive(Args, Debug)]
pub struct Limits {
    /// Seconds the new version has to be ready (default: [update] ready_timeout_s).
    #[arg(long)]
    pub ready_timeout: Option<u64>,
    /// Seconds to wait for calls in progress (default: [update] drain_timeout_s).
    #[arg(long)]
    pub drain_timeout: Option<u64>,
}

/// `update pack`.
#[derive(Args, Debug)]
pub struct PackArgs {
    /// The folder of release files: `understudy`, the workers, espeak-ng-data.
    #[arg(long)]
    pub from: PathBuf,
    /// The minisign secret key.
    #[arg(long)]
    pub key: PathBuf,
    /// The bundle to write (its signature goes to OUT.minisig).
    #[arg(long)]
    pub out: PathBuf,
    /// The version (default: what FROM/understudy --version says).
    #[arg(long)]
    pub version: Option<String>,
    /// The architecture (default: this machine's).
    #[arg(long, default_value = std::env::consts::ARCH)]
    pub architecture: String,
}

/// Run one `update` subcommand.
pub async fn run(cmd: UpdateCommand, config: &Config) -> Result<()> {
    let say = |line: &str| eprintln!("update: {line}");
    match cmd {
        UpdateCommand::Status => status(config).await,
        UpdateCommand::Verify { bundle } => {
            let manifest =
                bundle::verify(&bundle, &config.update.keys_dir, std::env::consts::ARCH)?;
            println!(
                "{}: version {} for {}, {} files, signed by a trusted key",
                bundle.display(),
                manifest.version,
                manifest.architecture,
                manifest.files.len()
            );
            Ok(())
        }
        UpdateCommand::Apply { bundle, limits } => {
            let updater = Updater::new(&with_limits(config, &limits))?;
            say(&format!("checking {}", bundle.display()));
            let (slot, manifest) = updater.install(&bundle)?;
            say(&format!(
                "version {} installed in slot {}",
                manifest.version,
                slots::label(&slot)
            ));
            report(updater.switch_to(&slot, &say).await?)
        }
        UpdateCommand::Rollback(limits) => {
            let updater = Updater::new(&with_limits(config, &limits))?;
            let Some(previous) = updater.slots().previous() else {
                bail!("nothing to roll back to: no update has been applied here");
            };
            report(updater.switch_to(&previous, &say).await?)
        }
        UpdateCommand::Pack(args) => {
            let version = match args.version {
                Some(v) => v,
                None => reported_version(&args.from)?,
            };
            let manifest = bundle::pack(&PackRequest {
                from: &args.from,
                version: &version,
                architecture: &args.architecture,
                secret_key: &args.key,
                out: &args.out,
            })?;
            println!(
                "{} (version {}, {}, {} files) and {}",
                args.out.display(),
                manifest.version,
                manifest.architecture,
                manifest.files.len(),
                bundle::signature_path(&args.out).display()
            );
            Ok(())
        }
        UpdateCommand::Keygen { out, unencrypted } => keygen(&out, unencrypted),
    }
}

fn with_limits(config: &Config, args: &Limits) -> Config {
    let mut config = config.clone();
    if let Some(s) = args.ready_timeout {
        config.update.ready_timeout_s = s;
    }
    if let Some(s) = args.drain_timeout {
        config.update.drain_timeout_s = s;
    }
    config
}

fn report(outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Switched { slot, version } => {
            println!("updated: version {version} runs from slot {slot}");
            Ok(())
        }
        Outcome::RolledBack { reason } => {
            bail!("the update was rolled back, the previous version runs again: {reason}")
        }
    }
}

fn reported_version(folder: &std::path::Path) -> Result<String> {
    let binary = folder.join(bundle::MAIN_BINARY);
    let out = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} --version (or pass --version)",
                binary.display()
            )
        })?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
        .context("cannot read the version; pass --version")
}

async fn status(config: &Config) -> Result<()> {
    let slots = Slots::new(config.update.slots_dir.clone());
    let describe = |folder: Option<PathBuf>| match folder {
        None => "the packaged install".to_string(),
        Some(f) => match Slots::manifest(&f) {
            Some(m) => format!(
                "slot {} (version {}, {})",
                slots::label(&f),
                m.version,
                f.display()
            ),
            None => format!("{} ({})", slots::label(&f), f.display()),
        },
    };
    println!("slots:    {}", slots.dir().display());
    println!("active:   {}", describe(slots.active()));
    if let Some(previous) = slots.previous() {
        println!(
            "previous: {} (update rollback returns to it)",
            describe(Some(previous))
        );
    }
    for name in slots::SLOT_NAMES {
        let folder = slots.slot(name);
        if let Some(m) = Slots::manifest(&folder) {
            println!("slot {name}:   version {} ({})", m.version, m.architecture);
        }
    }
    match crate::update::apply::Daemon::new(&config.http, &slots)?
        .status()
        .await
    {
        Ok(status) => println!(
            "running:  version {} from {}, ready: {}",
            status["software"]["version"].as_str().unwrap_or("?"),
            status["software"]["slot"].as_str().unwrap_or("?"),
            status["ready"]
        ),
        Err(e) => println!("running:  no answer from the HTTP listener ({e})"),
    }
    Ok(())
}

fn keygen(out: &std::path::Path, unencrypted: bool) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (public, secret) = (
        out.join("understudy-update.pub"),
        out.join("understudy-update.key"),
    );
    if secret.exists() {
        bail!("{} exists: keep it, or remove it first", secret.display());
    }
    let pair = if unencrypted {
        minisign::KeyPair::generate_unencrypted_keypair()
    } else {
        minisign::KeyPair::generate_encrypted_keypair(None)
    }
    .map_err(|e| anyhow::anyhow!("cannot make a key pair: {e}"))?;
    let secret_box = pair
        .sk
        .to_box(Some("understudy update signing key"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let public_box = pair.pk.to_box().map_err(|e| anyhow::anyhow!("{e}"))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&secret)?
        .write_all(secret_box.to_string().as_bytes())?;
    std::fs::write(&public, public_box.to_string())?;
    println!(
        "{} (keep it secret) and {} (copy it into each appliance's /etc/understudy/keys/)",
        secret.display(),
        public.display()
    );
    Ok(())
}
