//! Prompt audio on disk, keyed by (voice, text): every static prompt of a
//! version is rendered once with the local voice at activation, and a
//! prompt that did not change between versions (most of them) is read back
//! instead of synthesized again. Calls then play flow prompts from memory
//! (the session's `PromptCache`) with no TTS wait.
//!
//! Layout: `<store>/prompt-audio/<voice id>/<sha256(text)>.pcm`, raw
//! little-endian 16-bit samples at the canonical 16 kHz. Files are written
//! to a temp name, fsynced and renamed, so a crash never leaves a short one.

use crate::audio::{self, SAMPLE_RATE};
use crate::engines::{EngineError, TtsClient};
use crate::metrics;
use crate::session::speech::PromptCache;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What one pre-render pass did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct PrerenderStats {
    /// Synthesized now.
    pub rendered: usize,
    /// Read from disk (rendered for an earlier version).
    pub reused: usize,
    /// Wall time of the pass, in ms.
    pub ms: f64,
}

/// The on-disk prompt audio of one voice (`<store>/prompt-audio/<voice id>/`).
pub struct PromptAudio {
    dir: PathBuf,
}

/// A voice's identity for the cache: its file name and a hash of its
/// config, so a different model or version of the voice never reuses audio.
pub fn voice_id(voice_model: &Path) -> String {
    let name = voice_model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "voice".into());
    let mut config = voice_model.as_os_str().to_owned();
    config.push(".json");
    let digest = Sha256::digest(std::fs::read(PathBuf::from(config)).unwrap_or_default());
    format!("{name}-{}", hex::encode(&digest[..4]))
}

impl PromptAudio {
    /// The cache of `voice` (a [`voice_id`]) under `root`; nothing is read or created yet.
    pub fn new(root: &Path, voice: &str) -> PromptAudio {
        PromptAudio {
            dir: root.join(voice),
        }
    }

    fn path(&self, text: &str) -> PathBuf {
        let digest = Sha256::digest(text.as_bytes());
        self.dir.join(format!("{}.pcm", hex::encode(&digest[..16])))
    }

    fn read(&self, text: &str) -> Option<Vec<i16>> {
        let bytes = std::fs::read(self.path(text)).ok()?;
        if bytes.is_empty() || bytes.len() % 2 != 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )
    }

    fn write(&self, text: &str, samples: &[i16]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(text);
        let tmp = path.with_extension(format!("pcm.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }

    /// Put every text's audio into `cache`: from disk when this voice
    /// already said it, else synthesized now (and kept on disk).
    pub async fn prerender(
        &self,
        tts: &TtsClient,
        texts: &[String],
        cache: &PromptCache,
    ) -> Result<PrerenderStats, EngineError> {
        let started = Instant::now();
        let mut stats = PrerenderStats::default();
        let total = texts.len();
        for (done, text) in texts
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            // A large bot takes a while on two cores: say how far it is.
            if done > 0 && done % 25 == 0 {
                tracing::info!(
                    done,
                    total,
                    rendered = stats.rendered,
                    reused = stats.reused,
                    "rendering prompt audio"
                );
            }
            if cache.get(text).is_some() {
                continue;
            }
            if let Some(samples) = self.read(text) {
                cache.pin(text, samples);
                stats.reused += 1;
                continue;
            }
            let speech = tts.synthesize(text).await?;
            let samples = audio::resample(&speech.samples, speech.sample_rate, SAMPLE_RATE);
            if let Err(e) = self.write(text, &samples) {
                // Still served from memory; only the next version pays again.
                tracing::warn!(error = %e, dir = %self.dir.display(), "cannot keep prompt audio on disk");
            }
            cache.pin(text, samples);
            stats.rendered += 1;
        }
        stats.ms = started.elapsed().as_secs_f64() * 1e3;
        metrics::observe_ms(
            "understudy_sync_stage_seconds",
            &[("stage", "prompt_audio")],
            stats.ms,
        );
        metrics::counter_add(
            "understudy_prompt_audio_total",
            &[("result", "rendered")],
            stats.rendered as f64,
        );
        metrics::counter_add(
            "understudy_prompt_audio_total",
            &[("result", "reused")],
            stats.reused as f64,
        );
        metrics::gauge_set("understudy_prompt_cache_entries", &[], cache.len() as f64);
        tracing::info!(
            rendered = stats.rendered,
            reused = stats.reused,
            ms = stats.ms,
            "prompt audio ready"
        );
        Ok(stats)
    }
}
