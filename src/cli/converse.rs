//! `understudy converse CALLER1.wav [CALLER2.wav ...]`: one whole call from
//! WAV files through the real pipeline (see `transport::file`).

use crate::audio::{wav, SAMPLE_RATE};
use crate::config::Config;
use crate::transport::file::{run_call, RecordedTurn};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `understudy converse` options.
#[derive(clap::Args, Debug)]
pub struct ConverseArgs {
    /// Caller turns, one WAV file each (PCM, float or G.711; any rate, 8 kHz too).
    #[arg(required = true)]
    pub wavs: Vec<PathBuf>,
    /// Where to write the bot's audio (turn-0.wav is the greeting).
    #[arg(long, default_value = "converse-out")]
    pub out_dir: PathBuf,
    /// Print one JSON object per turn (transcript, intent, reply, timings_ms...).
    #[arg(long)]
    pub json: bool,
    /// What to talk to: a bundle file, a cloud bot export or a stored sync version (id,
    /// prefix, `active`). Default: the active synced version, else `[bot] bundle`, else the
    /// built-in demo bot; the first line printed names the bot.
    #[arg(long, value_name = "PATH|VERSION")]
    pub bundle: Option<String>,
}

/// Run `understudy converse`: one call from the WAV files; the bot's audio goes to `out_dir`.
pub async fn run(args: ConverseArgs, config: &Config) -> Result<()> {
    // Read every file before loading models: a typo should fail in milliseconds.
    let mut callers = Vec::new();
    for path in &args.wavs {
        callers.push(wav::read_canonical(path)?);
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| {
        format!(
            "cannot create the output directory {}",
            args.out_dir.display()
        )
    })?;
    let setup =
        super::runtime::session_setup(config, args.bundle.as_deref().map(Path::new)).await?;
    let mut result = Ok(());
    run_call(setup.clone(), "converse", &callers, |turn, outcome| {
        if result.is_ok() {
            result = print_turn(
                &args,
                turn,
                args.wavs.get(turn.wrapping_sub(1)).map(PathBuf::as_path),
                outcome,
            );
        }
    })
    .await;
    setup.engines.shutdown();
    result
}

/// Write the turn's bot audio and print its reports.
fn print_turn(
    args: &ConverseArgs,
    turn: usize,
    caller: Option<&Path>,
    outcome: RecordedTurn,
) -> Result<()> {
    let out = args.out_dir.join(format!("turn-{turn}.wav"));
    wav::write(&out, SAMPLE_RATE, &outcome.bot_audio)
        .with_context(|| format!("cannot write {}", out.display()))?;
    for report in &outcome.reports {
        if args.json {
            let mut value = serde_json::to_value(report)?;
            value["caller_wav"] = serde_json::json!(caller);
            value["bot_wav"] = serde_json::json!(out);
            if let Some((target, _)) = &outcome.transfer {
                value["transfer_to"] = serde_json::json!(target);
            }
            println!("{value}");
        } else {
            print_report(report, turn > 0);
        }
    }
    if let Some((target, reason)) = &outcome.transfer {
        if !args.json {
            println!("-> transferred to {target} ({reason})");
        }
    }
    if outcome.timed_out {
        tracing::warn!(turn, "the bot did not answer this turn in time");
    }
    Ok(())
}

/// One turn for a person reading along: what the caller said (or pressed),
/// and the bot's reply with its intent and voice-to-voice. `caller_turn`:
/// a turn the caller took (not the greeting), so silence shows as no input.
pub(super) fn print_report(report: &crate::session::TurnReport, caller_turn: bool) {
    if !report.transcript.is_empty() {
        println!("caller: {}", report.transcript);
    } else if let Some(d) = &report.dtmf {
        println!("caller: [DTMF {d}]");
    } else if caller_turn {
        println!("caller: [no input]");
    }
    let intent = report.intent.as_deref().unwrap_or("-");
    let v2v = report
        .timings_ms
        .voice_to_voice
        .map(|ms| format!(", voice-to-voice {ms:.0} ms"))
        .unwrap_or_default();
    println!("bot [{intent}{v2v}]: {}", report.reply);
}
