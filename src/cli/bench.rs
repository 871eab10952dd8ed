//! `understudy bench`: latency and accuracy of the voice pipeline (see `crate::bench`).

use crate::config::Config;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// `understudy bench` options: what to run, and where the report goes.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Write the full report (every utterance, every stage) as JSON here.
    /// Default: bench/results/<pack>.json
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which callers, voices and line conditions to run.
    #[command(flatten)]
    pub select: crate::bench::Selection,
}

/// Run `understudy bench`: measure the demo bot, print the table, write the JSON report.
pub async fn run(args: BenchArgs, config: &Config) -> Result<()> {
    // Check the selection before starting the engines.
    let options = args.select.options()?;
    // The bot every command uses by default (src/sync/choice.rs); its first line names it.
    // The held-out set's expected intents are the demo bot's.
    let setup = super::runtime::session_setup(config, None).await?;
    let demo = crate::dialog::Bundle::demo();
    if setup.bot.bundle().bot.name != demo.bot.name {
        setup.engines.shutdown();
        anyhow::bail!(
            "understudy bench measures the built-in demo bot with callers written for it, but the bot in \
             use here is {:?} (a synced version or [bot] bundle); run it with an empty data directory \
             (UNDERSTUDY_DATA_DIR=$(mktemp -d)) and no [bot] bundle",
            setup.bot.bundle().bot.name
        );
    }
    let pack = config.models.pack.clone();
    eprintln!(
        "bench: {} first turns, {} tasks, {} clips x {} conditions, fed in real time (pack {pack})",
        options.set.turns.len(),
        options.set.tasks.len(),
        options.set.clips.len(),
        options.conditions.len()
    );
    let result = crate::bench::run(
        setup.clone(),
        &pack,
        config.engines.threads.clone(),
        &options,
    )
    .await;
    setup.engines.shutdown();
    let report = result?;
    print!("{}", crate::bench::render(&report));
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("bench/results/{pack}.json")));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!("bench: report written to {}", out.display());
    Ok(())
}
