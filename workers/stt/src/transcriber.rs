//! Whisper (whisper.cpp through whisper-rs) with the settings measured for
//! short caller turns in BUILD-NOTES.md ("Whisper settings").

use std::collections::VecDeque;
use std::ffi::c_void;
use std::path::Path;
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
    WhisperTokenId,
};

use crate::speech_gate::SAMPLE_RATE;

pub struct Settings<'a> {
    pub threads: u16,
    /// How many transcribed utterances to hold for scoring (0: none).
    pub keep: usize,
    pub language: &'a str,
    /// Used when a request brings no prompt of its own.
    pub initial_prompt: Option<&'a str>,
    pub use_gpu: bool,
}

pub struct Transcriber {
    ctx: WhisperContext,
    /// The state the next request uses. States are reused: `no_context(true)`
    /// clears the text history one keeps, and a fresh one costs buffer
    /// allocations (25-60 ms).
    spare: Option<WhisperState>,
    /// The last transcribed utterances, oldest first, with their encoded
    /// audio, for [`Transcriber::score`]; at most `keep` of them.
    kept: VecDeque<Kept>,
    keep: usize,
    next_handle: u64,
    threads: u16,
    language: String,
    default_prompt: Vec<WhisperTokenId>,
}

/// A transcribed utterance whose state (the encoder's output) is held.
struct Kept {
    handle: u64,
    state: WhisperState,
    text: String,
}

/// A transcription and, when the utterance is kept, its handle.
pub struct Transcribed {
    /// The text, non-speech annotations dropped.
    pub text: String,
    /// The handle for [`Transcriber::score`].
    pub utterance: Option<u64>,
}

/// Candidate scores for a kept utterance (mean log-probability per token).
pub struct Scores {
    /// The utterance's own transcript.
    pub transcript: f32,
    /// Each candidate, in order.
    pub candidates: Vec<f32>,
}

impl Transcriber {
    pub fn load(model: &Path, settings: &Settings) -> Result<Self, String> {
        crate::whisper_log::clear();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(settings.use_gpu);
        let ctx = WhisperContext::new_with_params(model, params)
            .map_err(|e| crate::load_error("Whisper model", model, e))?;
        let spare = ctx
            .create_state()
            .map_err(|e| crate::load_error("Whisper model", model, e))?;
        if whisper_rs::get_lang_id(settings.language).is_none() {
            return Err(format!(
                "--language {}: not a language Whisper knows",
                settings.language
            ));
        }
        if !ctx.is_multilingual() && settings.language != "en" {
            return Err(format!(
                "--language {}: {} is an English-only model",
                settings.language,
                model.display()
            ));
        }
        let mut transcriber = Transcriber {
            ctx,
            spare: Some(spare),
            kept: VecDeque::new(),
            keep: settings.keep,
            next_handle: 1,
            threads: settings.threads,
            language: settings.language.to_string(),
            default_prompt: Vec::new(),
        };
        if let Some(prompt) = settings.initial_prompt {
            transcriber.default_prompt = transcriber.tokenize(prompt)?;
        }
        Ok(transcriber)
    }

    /// "tiny", "base"... as whisper.cpp reads it from the file.
    pub fn model_type(&self) -> String {
        self.ctx
            .model_type_readable_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_default()
    }

    pub fn is_multilingual(&self) -> bool {
        self.ctx.is_multilingual()
    }

    /// Transcribe 16 kHz `samples` (one utterance). `prompt` replaces the
    /// default initial prompt. Returns `None` when `cancelled()` turned true.
    pub fn transcribe<F: Fn() -> bool>(
        &mut self,
        samples: &[f32],
        prompt: Option<&str>,
        cancelled: &F,
    ) -> Result<Option<Transcribed>, String> {
        let mut state = self.take_state()?;
        let result = self.transcribe_with(&mut state, samples, prompt, cancelled);
        match result {
            Ok(Some(text)) if self.keep > 0 => {
                let handle = self.next_handle;
                self.next_handle += 1;
                self.kept.push_back(Kept {
                    handle,
                    state,
                    text: text.clone(),
                });
                Ok(Some(Transcribed {
                    text,
                    utterance: Some(handle),
                }))
            }
            other => {
                self.spare = Some(state);
                other.map(|t| {
                    t.map(|text| Transcribed {
                        text,
                        utterance: None,
                    })
                })
            }
        }
    }

    /// The state for the next request: the spare one, a new one while fewer
    /// than `keep` utterances are held, else the oldest held one's.
    fn take_state(&mut self) -> Result<WhisperState, String> {
        if let Some(state) = self.spare.take() {
            return Ok(state);
        }
        if self.kept.len() >= self.keep {
            if let Some(oldest) = self.kept.pop_front() {
                return Ok(oldest.state);
            }
        }
        self.ctx
            .create_state()
            .map_err(|e| format!("Whisper cannot make a state: {e}"))
    }

    /// Score `candidates` against the held utterance `handle`: the mean
    /// log-probability per token (end of text included) that Whisper's
    /// decoder gives each text, without the domain prompt. `None` when the
    /// utterance is no longer held.
    pub fn score(&mut self, handle: u64, candidates: &[String]) -> Result<Option<Scores>, String> {
        let Some(index) = self.kept.iter().position(|k| k.handle == handle) else {
            return Ok(None);
        };
        let mut prefix = vec![self.ctx.token_sot()];
        if self.ctx.is_multilingual() {
            let lang = whisper_rs::get_lang_id(&self.language).unwrap_or(0);
            prefix.push(self.ctx.token_lang(lang));
            prefix.push(self.ctx.token_transcribe());
        }
        prefix.push(self.ctx.token_not());
        let eot = self.ctx.token_eot();
        let texts: Vec<Vec<WhisperTokenId>> = std::iter::once(self.kept[index].text.clone())
            .chain(candidates.iter().cloned())
            .map(|t| self.text_tokens(&t))
            .collect::<Result<_, _>>()?;
        let threads = usize::from(self.threads);
        let state = &mut self.kept[index].state;
        let fail = |e: whisper_rs::WhisperError| format!("Whisper could not score: {e}");
        state.decode(&prefix, 0, threads).map_err(fail)?;
        let first = state.get_logits().map_err(fail)?.to_vec();
        let mut scores = Vec::with_capacity(texts.len());
        for tokens in &texts {
            let mut total = 0.0f32;
            let mut logits = first.clone();
            for (i, &token) in tokens.iter().enumerate() {
                total += log_probability(&logits, token);
                state
                    .decode(&[token], prefix.len() + i, threads)
                    .map_err(fail)?;
                logits.copy_from_slice(state.get_logits().map_err(fail)?);
            }
            total += log_probability(&logits, eot);
            scores.push(total / (tokens.len() + 1) as f32);
        }
        Ok(Some(Scores {
            transcript: scores[0],
            candidates: scores[1..].to_vec(),
        }))
    }

    /// A text as Whisper writes it after the prompt: with a leading space.
    fn text_tokens(&self, text: &str) -> Result<Vec<WhisperTokenId>, String> {
        let spaced = format!(" {}", text.trim());
        let mut tokens = self
            .ctx
            .tokenize(&spaced, spaced.len() + 1)
            .map_err(|e| format!("cannot tokenize a candidate: {e}"))?;
        // The decoder's text context holds 448 tokens, the prefix included.
        tokens.truncate(self.ctx.n_text_ctx() as usize / 2);
        Ok(tokens)
    }

    fn transcribe_with<F: Fn() -> bool>(
        &self,
        state: &mut WhisperState,
        samples: &[f32],
        prompt: Option<&str>,
        cancelled: &F,
    ) -> Result<Option<String>, String> {
        let request_prompt;
        let prompt_tokens: &[WhisperTokenId] = match prompt {
            Some(p) => {
                request_prompt = self.tokenize(p)?;
                &request_prompt
            }
            None => &self.default_prompt,
        };

        // Greedy, temperature 0 (whisper.cpp's 0.2 fallback step kept), one
        // segment without timestamps, no text carried between callers.
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads.into());
        params.set_language(Some(&self.language));
        params.set_temperature(0.0);
        params.set_no_timestamps(true);
        params.set_single_segment(true);
        params.set_no_context(true);
        // A 30 s window costs the same for a 1 s turn as for a 30 s one:
        // shrink the encoder to the audio and cap the tokens to match.
        params.set_audio_ctx(audio_ctx_for(samples.len()));
        params.set_max_tokens(max_tokens_for(samples.len()));
        if !prompt_tokens.is_empty() {
            params.set_tokens(prompt_tokens);
        }
        // print_realtime would printf to stdout, which carries the protocol.
        params.set_print_realtime(false);
        params.set_print_progress(false);
        params.set_print_timestamps(false);
        params.set_print_special(false);
        // SAFETY: `cancelled` outlives `full()` below, which is the only place
        // whisper.cpp calls the callback (after each encoder/decoder pass).
        unsafe {
            params.set_abort_callback(Some(abort_trampoline::<F>));
            params.set_abort_callback_user_data(cancelled as *const F as *mut c_void);
        }

        crate::whisper_log::clear();
        let result = state.full(params, samples);
        if cancelled() {
            return Ok(None);
        }
        result.map_err(|e| format!("Whisper failed: {}", crate::whisper_log::reason(e)))?;
        let mut text = String::new();
        for segment in state.as_iter() {
            let piece = segment
                .to_str_lossy()
                .map_err(|e| format!("Whisper output: {e}"))?;
            text.push_str(&piece);
        }
        Ok(Some(collapse_loops(&strip_non_speech(&text))))
    }

    fn tokenize(&self, prompt: &str) -> Result<Vec<WhisperTokenId>, String> {
        // whisper-rs 0.16 mishandles a too-small buffer (whisper.cpp answers
        // with minus the size needed): every token covers at least one byte,
        // so one slot per byte always suffices.
        let mut tokens = self
            .ctx
            .tokenize(prompt, prompt.len() + 1)
            .map_err(|e| format!("cannot tokenize the prompt: {e}"))?;
        // Whisper reads at most half its text context of prompt; keep the end.
        let keep = (self.ctx.n_text_ctx() / 2).max(1) as usize - 1;
        if tokens.len() > keep {
            tokens.drain(..tokens.len() - keep);
        }
        Ok(tokens)
    }
}

/// `ln p(token)` under the softmax of `logits`.
fn log_probability(logits: &[f32], token: WhisperTokenId) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits[token as usize] - max - sum.ln()
}

unsafe extern "C" fn abort_trampoline<F: Fn() -> bool>(data: *mut c_void) -> bool {
    // SAFETY: `data` is the `&F` set in `transcribe`, alive during `full()`.
    let cancelled = unsafe { &*(data as *const F) };
    let stop = cancelled();
    if stop {
        crate::whisper_log::aborted();
    }
    stop
}

/// Encoder frames (50 per second) for `samples`, rounded up to 64, plus a
/// 256-frame margin: smaller margins made Whisper loop (BUILD-NOTES.md).
pub fn audio_ctx_for(samples: usize) -> i32 {
    let frames = (samples * 50).div_ceil(SAMPLE_RATE);
    (frames.div_ceil(64) * 64 + 256).min(1500) as i32
}

/// Token budget: 10 plus 6 per second of audio (fast talkers say ~4).
pub fn max_tokens_for(samples: usize) -> i32 {
    (10 + (6 * samples).div_ceil(SAMPLE_RATE)).min(i32::MAX as usize) as i32
}

/// Drop Whisper's non-speech annotations ("[BLANK_AUDIO]", "(wind blowing)")
/// and normalise the spaces they leave.
pub fn strip_non_speech(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The fewest words a repeated phrase must have to count as a decoder loop:
/// callers say "no, no" and "agent, agent", but not the same three words twice.
const LOOP_MIN_WORDS: usize = 3;

/// Drop Whisper's decoder loops: a phrase of [`LOOP_MIN_WORDS`] or more words
/// said again straight after itself ("What time do you open tomorrow? What
/// time do you open tomorrow?", as the shrunken audio window makes tiny and
/// base do on short turns), and the start of a sentence said again at the very
/// end (a loop the token limit cut off). Words compare without case or
/// punctuation; the first saying is kept as transcribed.
pub fn collapse_loops(text: &str) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let key = |w: &str| -> String {
        w.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    // Kept in step with `words`.
    let mut keys: Vec<String> = words.iter().map(|w| key(w)).collect();
    let mut i = 0;
    while i < words.len() {
        let here = &keys[i..];
        // The longest phrase that repeats here, so a loop of a loop goes at once.
        let repeated = (LOOP_MIN_WORDS..=here.len() / 2)
            .rev()
            .find(|&n| here[..n] == here[n..2 * n]);
        match repeated {
            Some(n) => {
                words.drain(i + n..i + 2 * n);
                keys.drain(i + n..i + 2 * n);
            }
            None => i += 1,
        }
    }
    // A loop cut off by the token limit: after a sentence, the transcript
    // starts an earlier sentence again ("... customer support. Transfer me to").
    let cut = (LOOP_MIN_WORDS..=words.len() / 2).rev().find(|&m| {
        let tail = words.len() - m;
        ends_sentence(words[tail - 1])
            // A sentence longer than the tail (a whole one again is a loop above).
            && (0..tail - m)
                .filter(|&p| p == 0 || ends_sentence(words[p - 1]))
                .any(|p| keys[p..p + m] == keys[tail..])
    });
    if let Some(m) = cut {
        words.truncate(words.len() - m);
    }
    words.join(" ")
}

/// The word closes a sentence (Whisper punctuates its transcripts).
fn ends_sentence(word: &str) -> bool {
    word.ends_with(['.', '?', '!'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_loops_are_collapsed() {
        assert_eq!(
            collapse_loops("What time do you open tomorrow? What time do you open tomorrow?"),
            "What time do you open tomorrow?"
        );
        assert_eq!(
            collapse_loops("So you can tell you can tell you can tell"),
            "So you can tell"
        );
        assert_eq!(
            collapse_loops("I want to return I want to return these boots."),
            "I want to return these boots."
        );
        assert_eq!(
            collapse_loops("Transfer me to somebody in customer support. Transfer me to"),
            "Transfer me to somebody in customer support."
        );
        assert_eq!(
            collapse_loops("Where is my order? Where is my"),
            "Where is my order?"
        );
        // Only a restart of a whole sentence counts as a cut-off loop.
        assert_eq!(
            collapse_loops("I need help with my order. I need help"),
            "I need help with my order."
        );
        assert_eq!(
            collapse_loops("Can you check where my order is, check where my"),
            "Can you check where my order is, check where my"
        );
        // A caller's own short repeats, and a transcript without loops, stay.
        assert_eq!(
            collapse_loops("No, no, agent agent."),
            "No, no, agent agent."
        );
        assert_eq!(
            collapse_loops("I'd like to check on my order please"),
            "I'd like to check on my order please"
        );
        assert_eq!(collapse_loops(""), "");
    }

    #[test]
    fn window_follows_the_build_notes_formula() {
        // 1 s: ceil(50) = 50 -> 64 + 256.
        assert_eq!(audio_ctx_for(16_000), 320);
        // 2.5 s: 125 -> 128 + 256.
        assert_eq!(audio_ctx_for(40_000), 384);
        // 11 s (jfk.wav): 550 -> 576 + 256.
        assert_eq!(audio_ctx_for(176_000), 832);
        // Long audio keeps the full 30 s window.
        assert_eq!(audio_ctx_for(30 * 16_000), 1500);
        assert_eq!(max_tokens_for(16_000), 16);
        assert_eq!(max_tokens_for(16_001), 17);
        assert_eq!(max_tokens_for(176_000), 76);
    }

    #[test]
    fn non_speech_annotations_are_dropped() {
        assert_eq!(strip_non_speech(" [BLANK_AUDIO]"), "");
        assert_eq!(strip_non_speech(" (wind blowing)"), "");
        assert_eq!(
            strip_non_speech(" Hello. [MUSIC] Bye (laughs) now."),
            "Hello. Bye now."
        );
        assert_eq!(
            strip_non_speech(" ask not what your country can do for you"),
            "ask not what your country can do for you"
        );
        assert_eq!(strip_non_speech("[a [b] c] kept"), "kept");
    }
}
