//! `understudy sync ...`: pull the cloud bot's export, see what changed,
//! test it, activate it, roll it back (docs/sync.md).

use super::runtime;
use crate::config::Config;
use crate::dialog::Nlu;
use crate::engines::{EngineSet, Engines};
use crate::sync::{diff, store::VersionMeta, PullOptions, PullResult, SyncAgent};
use anyhow::{Context, Result};

/// `understudy sync` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SyncCommand {
    /// Fetch the export (`--from`, else `[sync] source`), import, validate, store, replay its
    /// test conversations, and activate it when they pass. A running `serve` picks the new
    /// version up for new calls within seconds.
    Pull {
        /// A path (zip, folder, bundle file) or an http(s) URL.
        #[arg(long)]
        from: Option<String>,
        /// Store and test only; activate later with `sync activate`.
        #[arg(long)]
        no_activate: bool,
        /// Download even when the server says the export is unchanged.
        #[arg(long)]
        force: bool,
        /// Which engines replay the test conversations.
        #[command(flatten)]
        engines: ParityEngines,
    },
    /// The active version, its source, the last pull and its result, and whether the
    /// cloud's latest export differs from what is active.
    Status {
        /// Do not contact the source (report only what the store knows).
        #[arg(long)]
        offline: bool,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Added, removed and changed intents, prompts and flow states between two versions
    /// (ids, prefixes, `active`, or a path/URL to an export). Default: the active version
    /// against the source's latest export.
    Diff {
        /// Old version: id, prefix, `active`, or a path/URL to an export. Given alone, the active
        /// version is compared with it.
        from: Option<String>,
        /// New version (same forms as FROM).
        to: Option<String>,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a version's test conversations (default: the active one; or `--from` an export)
    /// and show the pass rate and every failing conversation.
    Test {
        /// Version to test: id or unique prefix (default: the active one).
        version: Option<String>,
        /// Test this export instead (a path or URL; imported, not stored).
        #[arg(long)]
        from: Option<String>,
        /// Which engines replay the test conversations.
        #[command(flatten)]
        engines: ParityEngines,
    },
    /// Make a stored version active (id or unique prefix, see `sync status`).
    Activate {
        /// Version to activate: id or unique prefix (see `sync status`).
        version: String,
        /// Activate even though its parity test failed.
        #[arg(long)]
        force: bool,
    },
    /// Go back to the version that was active before.
    Rollback,
}

/// Which engines replay the test conversations.
#[derive(clap::Args, Debug, Clone)]
pub struct ParityEngines {
    /// Rules only: no embedding engine (needs no models; paraphrases will not match).
    #[arg(long)]
    no_embed: bool,
    /// No LLM stage: rules and embeddings only (faster; a live call asks the
    /// LLM when they are unsure, so the replay does by default).
    #[arg(long)]
    no_llm: bool,
}

impl ParityEngines {
    async fn start(&self, config: &Config) -> Result<Engines> {
        let set = EngineSet {
            embed: !self.no_embed,
            llm: !self.no_llm && !self.no_embed,
            ..Default::default()
        };
        if !set.embed && !set.llm {
            return Ok(Engines::default());
        }
        Ok(runtime::start_engines(config, set).await?.0)
    }
}

/// Run an `understudy sync` subcommand.
pub async fn run(cmd: SyncCommand, config: &Config) -> Result<()> {
    let agent = SyncAgent::open(config)?;
    match cmd {
        SyncCommand::Pull {
            from,
            no_activate,
            force,
            engines,
        } => {
            let running = engines.start(config).await?;
            let opts = PullOptions {
                from,
                activate: !no_activate,
                force,
                nlu: Nlu {
                    embed: running.embed.clone(),
                    llm: running.llm.clone(),
                    stt: None,
                },
            };
            let result = agent.pull(opts).await;
            running.shutdown();
            report_pull(result?)
        }
        SyncCommand::Status { offline, json } => {
            let status = agent.status(!offline).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            println!("store:      {}", status.store);
            match &status.active {
                Some(m) => {
                    println!("active:     {} {} ({})", m.id, m.bot_name, m.format.label());
                    println!("  from:     {}", m.source);
                    if let Some(at) = status.activated_at {
                        println!("  since:    {}", ago(at));
                    }
                    if let Some(p) = &m.parity {
                        println!("  parity:   {}", p.summary());
                    }
                }
                None => println!("active:     none (serving the configured bundle or the demo; run `understudy sync pull`)"),
            }
            println!("last good:  {}", status.last_good.as_deref().unwrap_or("-"));
            println!(
                "source:     {}",
                status.source.as_deref().unwrap_or("- (set [sync] source)")
            );
            match &status.last_pull {
                Some(p) => println!(
                    "last pull:  {} {}: {}",
                    ago(p.at),
                    p.result,
                    p.detail.lines().next().unwrap_or("")
                ),
                None => println!("last pull:  never"),
            }
            println!("drift:      {}", status.drift);
            println!("versions:");
            for m in status.versions.iter().rev() {
                let mark = if Some(&m.id) == status.active.as_ref().map(|a| &a.id) {
                    "*"
                } else {
                    " "
                };
                println!("  {mark} {}", version_line(m));
            }
            Ok(())
        }
        SyncCommand::Diff { from, to, json } => {
            let (from, to) = match (from, to) {
                (Some(a), Some(b)) => (a, b),
                (Some(b), None) => ("active".into(), b),
                (None, _) => {
                    let source = config.sync.source.clone().context("give two versions, or set [sync] source to compare the active version with the cloud's latest")?;
                    ("active".into(), source)
                }
            };
            let (a_name, a) = agent.bundle_for(&from).await?;
            let (b_name, b) = agent.bundle_for(&to).await?;
            let d = diff::diff(&a, &b);
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("{a_name} -> {b_name}");
                print!("{}", d.render());
            }
            Ok(())
        }
        SyncCommand::Test {
            version,
            from,
            engines,
        } => {
            let running = engines.start(config).await?;
            let nlu = Nlu {
                embed: running.embed.clone(),
                llm: running.llm.clone(),
                stt: None,
            };
            let result = async {
                match (from, version) {
                    (Some(src), _) => {
                        let (_, bundle) = agent.bundle_for(&src).await?;
                        crate::sync::parity::run(&bundle, nlu).await
                    }
                    (None, spec) => {
                        let id = match spec {
                            Some(s) => agent.store.resolve(&s)?,
                            None => agent
                                .store
                                .active()?
                                .context("no version is active: name one, or use --from")?,
                        };
                        agent.test_version(&id, nlu).await
                    }
                }
            }
            .await;
            running.shutdown();
            let report = result?;
            print!("{}", report.failures_text());
            println!("{}", report.summary());
            anyhow::ensure!(
                report.allows(config.sync.min_pass_rate),
                "below [sync] min_pass_rate {:.0}%: this version would not be activated",
                config.sync.min_pass_rate * 100.0
            );
            Ok(())
        }
        SyncCommand::Activate { version, force } => {
            let id = agent.activate(&version, force)?;
            println!("activated {id}; a running `understudy serve` switches new calls to it within seconds");
            Ok(())
        }
        SyncCommand::Rollback => {
            let id = agent.rollback()?;
            println!("rolled back to {id}; a running `understudy serve` switches new calls to it within seconds");
            Ok(())
        }
    }
}

fn report_pull(outcome: crate::sync::PullOutcome) -> Result<()> {
    match outcome.result {
        PullResult::NotModified => println!("{}: not modified since the last pull", outcome.source),
        PullResult::Unchanged { id } => {
            println!("{}: same as the active version {id}", outcome.source)
        }
        PullResult::Stored {
            id,
            new,
            imported,
            parity,
            activated,
            refused,
        } => {
            let s = &imported.stats;
            println!(
                "{}: {} export -> version {id}{} in {:.0} ms",
                outcome.source,
                imported.format.label(),
                if new { "" } else { " (already stored)" },
                imported.ms
            );
            println!(
                "  {} intents, {} phrases, {} prompts, {} states, {} entities, {} tests; languages {}",
                s.intents,
                s.phrases,
                s.prompts,
                s.states,
                s.entities,
                s.tests,
                s.languages.join(", ")
            );
            if !imported.warnings.is_empty() {
                println!(
                    "  {} warnings (not carried over, or approximated):",
                    imported.warnings.len()
                );
                for w in &imported.warnings {
                    println!("    - {w}");
                }
            }
            print!("{}", indent(&parity.failures_text()));
            println!("  parity: {}", parity.summary());
            match (activated, refused) {
                (true, _) => println!("  activated {id}"),
                (false, Some(why)) => {
                    anyhow::bail!(
                        "version {id} was stored but NOT activated: {}",
                        why.lines().next().unwrap_or("")
                    )
                }
                (false, None) => {
                    println!("  stored, not activated (`understudy sync activate {id}`)")
                }
            }
        }
    }
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn version_line(m: &VersionMeta) -> String {
    let parity = m
        .parity
        .as_ref()
        .and_then(|p| p.pass_rate())
        .map(|r| format!(", parity {:.0}%", r * 100.0))
        .unwrap_or_default();
    format!(
        "{} {} ({}, {} intents, {} warnings{parity}) {}",
        m.id,
        m.bot_name,
        m.format.label(),
        m.stats.intents,
        m.warnings.len(),
        ago(m.created)
    )
}

/// `5 min ago`, for people reading status.
fn ago(at: u64) -> String {
    let secs = crate::sync::store::now().saturating_sub(at);
    match secs {
        0..=59 => format!("{secs} s ago"),
        60..=3599 => format!("{} min ago", secs / 60),
        3600..=86399 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}
