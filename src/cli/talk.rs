//! `understudy talk`: talk to the bot through this machine's microphone and
//! speaker (`transport::sound_card`): a demo for bot designers and IT staff,
//! and a bench tool (each turn prints its voice-to-voice).

use crate::config::Config;
use crate::session::admission::{Admission, Ingress};
use crate::transport::sound_card;
use anyhow::{anyhow, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `understudy talk` options.
#[derive(clap::Args, Debug)]
pub struct TalkArgs {
    /// List the sound devices (input and output) and exit.
    #[arg(long)]
    pub list_devices: bool,
    /// The microphone, by name from --list-devices (default: the system's default input).
    #[arg(long)]
    pub input: Option<String>,
    /// The speaker, by name from --list-devices (default: the system's default output).
    #[arg(long)]
    pub output: Option<String>,
    /// Hang up after this many seconds (default: when the bot ends the call, or Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Print one JSON object per turn (transcript, intent, reply, timings_ms...).
    #[arg(long)]
    pub json: bool,
    /// What to talk to: a bundle file, a cloud bot export or a stored sync version (id,
    /// prefix, `active`). Default: the active synced version, else `[bot] bundle`, else the
    /// built-in demo bot.
    #[arg(long, value_name = "PATH|VERSION")]
    pub bundle: Option<String>,
}

/// Run `understudy talk`: one call between the sound card and the bot.
pub async fn run(args: TalkArgs, config: &Config) -> Result<()> {
    if args.list_devices {
        let devices = sound_card::devices()?;
        if devices.is_empty() {
            println!("no sound devices on this machine");
        }
        for line in devices {
            println!("{line}");
        }
        return Ok(());
    }
    // The devices first: a machine without sound says so before any model loads.
    let (card, io) = sound_card::open(args.input.as_deref(), args.output.as_deref())?;
    eprintln!(
        "microphone: {}; speaker: {} (use a headset: a speaker the microphone hears talks over the bot)",
        card.names.0, card.names.1
    );
    let setup =
        super::runtime::session_setup(config, args.bundle.as_deref().map(Path::new)).await?;
    let admission = Admission::new(1, {
        let setup = setup.clone();
        Arc::new(move || Some(setup.clone()))
    });
    let admitted = admission
        .admit(Ingress::SoundCard)
        .map_err(|r| anyhow!("the bot cannot take the call: {}", r.explain()))?;
    eprintln!("connected: speak after the greeting; Ctrl-C hangs up");
    let seconds = args.seconds;
    let stop = async move {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let json = args.json;
    let ended = sound_card::run_call(io, admitted, "talk", stop, |report| {
        if json {
            println!("{}", serde_json::to_value(report).unwrap_or_default());
        } else {
            super::converse::print_report(report, report.turn > 0);
        }
    })
    .await;
    eprintln!("call ended: {ended}");
    drop(card);
    setup.engines.shutdown();
    Ok(())
}
