//! Bot speech: pre-rendered prompt audio, and streamed TTS for everything else.
//!
//! Static prompts (greetings, questions, the apology) are synthesized once at
//! start-up, so flow turns play with no TTS wait and the safety-net apology
//! plays even when the TTS worker is the thing that died.

use crate::audio::{self, SAMPLE_RATE};
use crate::engines::{EngineError, TtsClient};
use crate::metrics;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Instant;

/// What the caller hears when an engine fails; always pre-rendered.
pub const DEFAULT_APOLOGY: &str =
    "I'm sorry, I'm having trouble right now. Let me connect you with a colleague.";
/// What the caller hears when a turn is slow to answer (the bundle's
/// `filler_prompt` replaces it); always pre-rendered.
pub const DEFAULT_FILLER: &str = "One moment, please.";
/// What the caller hears when the local bot takes a call over from a failed
/// cloud bot (in-path mode); always pre-rendered.
pub const DEFAULT_TAKEOVER: &str = "Sorry about that, I'm back with you.";

/// Rendered speech by exact text, at the canonical rate.
#[derive(Default)]
pub struct PromptCache {
    audio: RwLock<HashMap<String, std::sync::Arc<Vec<i16>>>>,
}

/// Most dynamic sentences cached at once (order confirmations, LLM answers).
const MAX_ENTRIES: usize = 2_000;

impl PromptCache {
    pub fn get(&self, text: &str) -> Option<std::sync::Arc<Vec<i16>>> {
        self.audio.read().unwrap().get(text).cloned()
    }

    pub fn insert(&self, text: &str, samples: Vec<i16>) {
        let mut map = self.audio.write().unwrap();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(text.to_string(), std::sync::Arc::new(samples));
    }

    pub fn len(&self) -> usize {
        self.audio.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Render `texts` that are not cached yet; returns how many were rendered.
    pub async fn prerender(&self, tts: &TtsClient, texts: &[String]) -> Result<usize, EngineError> {
        let started = Instant::now();
        let mut rendered = 0;
        for text in texts {
            if text.trim().is_empty() || self.get(text).is_some() {
                continue;
            }
            let speech = tts.synthesize(text).await?;
            self.insert(
                text,
                audio::resample(&speech.samples, speech.sample_rate, SAMPLE_RATE),
            );
            rendered += 1;
        }
        tracing::info!(
            rendered,
            cached = self.len(),
            ms = started.elapsed().as_millis() as u64,
            "prompt audio ready"
        );
        metrics::gauge_set("understudy_prompt_cache_entries", &[], self.len() as f64);
        Ok(rendered)
    }
}

/// Speech for one text, piece by piece, at the canonical rate.
pub enum Speech {
    Cached(Option<std::sync::Arc<Vec<i16>>>),
    Streaming {
        stream: crate::engines::SpeechStream,
        text: String,
        rendered: Vec<i16>,
    },
}

impl Speech {
    /// Start speaking `text`: from the cache when possible, else via TTS.
    pub async fn start(
        cache: &PromptCache,
        tts: Option<&TtsClient>,
        text: &str,
    ) -> Result<Speech, EngineError> {
        if let Some(audio) = cache.get(text) {
            metrics::counter_inc("understudy_prompt_cache_total", &[("result", "hit")]);
            return Ok(Speech::Cached(Some(audio)));
        }
        metrics::counter_inc("understudy_prompt_cache_total", &[("result", "miss")]);
        let tts = tts.ok_or_else(|| EngineError::Unavailable {
            engine: "tts",
            reason: "not started".into(),
        })?;
        Ok(Speech::Streaming {
            stream: tts.stream(text).await?,
            text: text.to_string(),
            rendered: vec![],
        })
    }

    /// The next piece of audio; `None` when done. Streamed speech is added
    /// to the cache once complete, so a repeated sentence costs nothing.
    pub async fn next(&mut self, cache: &PromptCache) -> Option<Result<Vec<i16>, EngineError>> {
        match self {
            Speech::Cached(audio) => audio.take().map(|a| Ok(a.as_ref().clone())),
            Speech::Streaming {
                stream,
                text,
                rendered,
            } => match stream.next().await {
                Some(Ok(chunk)) => {
                    let samples = audio::resample(&chunk.samples, chunk.sample_rate, SAMPLE_RATE);
                    rendered.extend_from_slice(&samples);
                    Some(Ok(samples))
                }
                Some(Err(e)) => Some(Err(e)),
                None => {
                    cache.insert(text, std::mem::take(rendered));
                    None
                }
            },
        }
    }
}
