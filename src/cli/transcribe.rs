//! `understudy transcribe FILE.wav`

use crate::audio::wav;
use crate::config::Config;
use crate::engines::EngineSet;
use anyhow::Result;
use std::path::PathBuf;

/// `understudy transcribe` options.
#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// WAV file: PCM, float or G.711, any rate and channel count.
    pub file: PathBuf,
    /// Print JSON (text, no_speech, timings) instead of the text alone.
    #[arg(long)]
    pub json: bool,
    /// Words to bias recognition towards (Whisper's initial prompt).
    #[arg(long)]
    pub prompt: Option<String>,
}

/// Run `understudy transcribe`: print the file's transcript (JSON with `--json`).
pub async fn run(args: TranscribeArgs, config: &Config) -> Result<()> {
    // Read the file first: a bad file should not cost a model load.
    let audio = wav::read(&args.file)?;
    let samples = audio.to_canonical();
    let (engines, _) = super::runtime::start_engines(
        config,
        EngineSet {
            stt: true,
            ..Default::default()
        },
    )
    .await?;
    let stt = engines.stt.as_ref().expect("started");
    let result = stt.transcribe(&samples, args.prompt.as_deref()).await;
    engines.shutdown();
    let transcript = result?;
    if args.json {
        let out = serde_json::json!({
            "file": args.file,
            "sample_rate": audio.sample_rate,
            "duration_ms": audio.duration_ms(),
            "text": transcript.text,
            "no_speech": transcript.no_speech,
            "timings_ms": { "stt": transcript.ms, "worker": transcript.worker_ms },
        });
        println!("{out}");
    } else {
        println!("{}", transcript.text);
    }
    Ok(())
}
