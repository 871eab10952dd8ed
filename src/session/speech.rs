//! Bot speech: pre-rendered prompt audio, and streamed TTS for everything else.
//!
//! Static prompts (greetings, questions, the apology) are synthesized once at
//! start-up, so flow turns play with no TTS wait and the safety-net apology
//! plays even when the TTS worker is the thing that died.

use crate::audio::{self, SAMPLE_RATE};
use crate::engines::{EngineError, TtsClient};
use crate::metrics;
use lru::LruCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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
///
/// Two kinds of entry: pre-rendered prompts (the bot's static prompts, the
/// apology, the filler, the takeover prompt) are pinned and never evicted,
/// since the safety net needs them exactly when the TTS is what failed;
/// streamed speech (order confirmations, LLM answers) is kept so a repeated
/// sentence costs nothing, bounded, least recently used out first.
pub struct PromptCache {
    entries: Mutex<Entries>,
}

struct Entries {
    pinned: HashMap<String, Arc<Vec<i16>>>,
    streamed: LruCache<String, Arc<Vec<i16>>>,
    /// Samples held by `streamed`.
    streamed_samples: usize,
}

/// Most streamed sentences cached at once.
const MAX_STREAMED: usize = 2_000;
/// Most streamed audio cached at once: an hour at 16 kHz (115 MB).
const MAX_STREAMED_SAMPLES: usize = 3_600 * SAMPLE_RATE as usize;

impl Default for PromptCache {
    fn default() -> Self {
        PromptCache {
            entries: Mutex::new(Entries {
                pinned: HashMap::new(),
                streamed: LruCache::unbounded(),
                streamed_samples: 0,
            }),
        }
    }
}

impl PromptCache {
    /// The audio of `text`, if cached (a streamed sentence becomes the most
    /// recently used).
    pub fn get(&self, text: &str) -> Option<Arc<Vec<i16>>> {
        let mut entries = self.entries.lock().unwrap();
        if let Some(audio) = entries.pinned.get(text) {
            return Some(audio.clone());
        }
        entries.streamed.get(text).cloned()
    }

    /// Keep a pre-rendered prompt for as long as the cache lives.
    pub fn pin(&self, text: &str, samples: Vec<i16>) {
        let mut entries = self.entries.lock().unwrap();
        if let Some(old) = entries.streamed.pop(text) {
            entries.streamed_samples -= old.len();
        }
        entries.pinned.insert(text.to_string(), Arc::new(samples));
    }

    /// Keep streamed speech; the least recently used streamed sentences
    /// make room when the cache is full. Pinned prompts are never replaced.
    pub fn insert(&self, text: &str, samples: Vec<i16>) {
        let mut entries = self.entries.lock().unwrap();
        if entries.pinned.contains_key(text) {
            return;
        }
        entries.streamed_samples += samples.len();
        if let Some((_, old)) = entries.streamed.push(text.to_string(), Arc::new(samples)) {
            // The same text again (two calls streamed it at once).
            entries.streamed_samples -= old.len();
        }
        let mut evicted = 0;
        while entries.streamed.len() > MAX_STREAMED
            || entries.streamed_samples > MAX_STREAMED_SAMPLES
        {
            let Some((_, old)) = entries.streamed.pop_lru() else {
                break;
            };
            entries.streamed_samples -= old.len();
            evicted += 1;
        }
        if evicted > 0 {
            metrics::counter_add(
                "understudy_prompt_cache_evictions_total",
                &[],
                evicted as f64,
            );
        }
    }

    /// Entries of both kinds.
    pub fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap();
        entries.pinned.len() + entries.streamed.len()
    }

    /// True when nothing is cached.
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
            self.pin(
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
    /// Audio from the cache, whole; `None` once it has been handed out.
    Cached(Option<Arc<Vec<i16>>>),
    /// Audio streamed from the TTS worker; cached once complete.
    Streaming {
        /// The TTS worker's stream of audio chunks.
        stream: crate::engines::SpeechStream,
        /// The text being spoken (the cache key).
        text: String,
        /// The audio received so far (16 kHz), cached when the stream ends.
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
