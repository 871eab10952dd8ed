//! `understudy say "TEXT" --out FILE.wav`

use crate::audio::{self, g711::Law, wav};
use crate::config::Config;
use crate::engines::EngineSet;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// `understudy say` options.
#[derive(clap::Args, Debug)]
pub struct SayArgs {
    /// What to say.
    pub text: String,
    /// Where to write the WAV file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Sample rate of the file (default: the voice's own, 22050 Hz for the bundled voice).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Write G.711 (as a phone line carries it) instead of 16-bit PCM; implies 8 kHz unless --rate.
    #[arg(long, value_enum)]
    pub g711: Option<G711>,
}

/// The G.711 law that `--g711` writes.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum G711 {
    /// G.711 mu-law (North America, Japan).
    Mulaw,
    /// G.711 A-law (Europe and most other countries).
    Alaw,
}

/// Run `understudy say`: synthesize the text with the local voice and write the WAV file.
pub async fn run(args: SayArgs, config: &Config) -> Result<()> {
    let (engines, _) = super::runtime::start_engines(
        config,
        EngineSet {
            tts: true,
            ..Default::default()
        },
    )
    .await?;
    let tts = engines.tts.as_ref().expect("started");
    let result = tts.synthesize(&args.text).await;
    engines.shutdown();
    let speech = result?;
    let rate = args.rate.unwrap_or(if args.g711.is_some() {
        8000
    } else {
        speech.sample_rate
    });
    let samples = audio::resample(&speech.samples, speech.sample_rate, rate);
    let written = match args.g711 {
        None => wav::write(&args.out, rate, &samples),
        Some(G711::Mulaw) => wav::write_g711(&args.out, Law::Mu, rate, &samples),
        Some(G711::Alaw) => wav::write_g711(&args.out, Law::A, rate, &samples),
    };
    written.with_context(|| format!("cannot write {}", args.out.display()))?;
    tracing::info!(
        out = %args.out.display(),
        rate,
        ms = audio::samples_to_ms(samples.len(), rate) as u64,
        "speech written"
    );
    Ok(())
}
