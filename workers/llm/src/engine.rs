//! The LLM engine: one llama.cpp context whose KV cache is reused across
//! requests, chat prompts rendered with the model's own template, grammar- and
//! stop-string-constrained sampling.
//!
//! # Prompt caching
//! The KV cache holds a few sequences ("slots"), each remembering the tokens
//! of an earlier request (prompt and answer). A new request goes to the slot
//! sharing the longest token prefix with it; only the tokens after that prefix
//! are decoded. A dialog engine alternates a few prompts (an intent classifier,
//! an answer writer...), each with its own long, fixed system prompt: with one
//! slot per prompt, each keeps its system prompt cached. The slots share one
//! unified cache of `--ctx` cells; when it fills up, the least recently used
//! other slots are dropped.

use crate::output::{common_prefix, StopScanner, Utf8Stream};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;
use std::time::Instant;
use understudy_ipc::worker::{elapsed_ms, CancelToken, Engine, Responder};
use understudy_ipc::{ChatMessage, ErrorCode, Request, Response, WorkerTimings};

type Failure = (ErrorCode, String);

/// Sampling settings when `temperature > 0` (llama.cpp's usual defaults).
const TOP_K: i32 = 40;
const TOP_P: f32 = 0.95;
const MIN_P: f32 = 0.05;

/// One KV-cache sequence and the tokens it holds.
struct Slot {
    seq: i32,
    /// The tokens whose keys and values are cached in this sequence, in order:
    /// an earlier prompt plus what was generated after it.
    tokens: Vec<LlamaToken>,
    /// When it was last used (a request counter), to evict the least recent.
    last_used: u64,
}

pub struct LlmEngine {
    model: &'static LlamaModel,
    ctx: LlamaContext<'static>,
    template: LlamaChatTemplate,
    slots: Vec<Slot>,
    /// Index into `slots` of the request being served.
    current: usize,
    requests: u64,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// True when the template text already starts with the BOS token, so the
    /// tokenizer must not add a second one.
    template_has_bos: bool,
    seed: u32,
}

/// One `generate` request, unpacked.
pub struct GenerateRequest {
    pub messages: Vec<ChatMessage>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub grammar: Option<String>,
    pub stop: Vec<String>,
    pub stream: bool,
}

impl LlmEngine {
    /// `slots` must not exceed the context's `n_seq_max`.
    pub fn new(
        model: &'static LlamaModel,
        ctx: LlamaContext<'static>,
        template: LlamaChatTemplate,
        slots: u32,
    ) -> Self {
        let n_batch = ctx.n_batch().max(1) as usize;
        let bos = model
            .vocab()
            .token_to_piece(model.vocab().bos(), true, None);
        let rendered = model
            .apply_chat_template(
                &template,
                &[LlamaChatMessage::new("user".into(), "x".into()).unwrap()],
                true,
            )
            .unwrap_or_default();
        let template_has_bos = !bos.is_empty() && rendered.as_bytes().starts_with(&bos);
        LlmEngine {
            model,
            ctx,
            template,
            slots: (0..slots.max(1) as i32)
                .map(|seq| Slot {
                    seq,
                    tokens: Vec::new(),
                    last_used: 0,
                })
                .collect(),
            current: 0,
            requests: 0,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            template_has_bos,
            seed: 0x5eed,
        }
    }

    /// Render and tokenize a chat with the model's own template, ending with
    /// the opening of the assistant's turn.
    fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<LlamaToken>, Failure> {
        if messages.is_empty() {
            return Err((
                ErrorCode::BadRequest,
                "generate needs at least one message".into(),
            ));
        }
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                (
                    ErrorCode::BadRequest,
                    format!("a message contains a NUL byte: {e}"),
                )
            })?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| {
                (
                    ErrorCode::Engine,
                    format!("applying the model's chat template failed: {e}"),
                )
            })?;
        let add_bos = self.model.vocab().should_add_bos() && !self.template_has_bos;
        // parse_special: the template's markers (<|im_start|>...) are control tokens.
        Ok(self
            .model
            .vocab()
            .tokenize(prompt.as_bytes(), add_bos, true))
    }

    /// Pick the slot for `prompt`: the one sharing the longest prefix with it
    /// if that keeps a good part of what the slot holds, else an empty or the
    /// least recently used one (so one prompt does not wipe another's cache
    /// for the sake of a few shared template tokens).
    fn choose_slot(&self, prompt: &[LlamaToken]) -> usize {
        let (best, shared) = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| (i, common_prefix(&slot.tokens, prompt)))
            .min_by_key(|&(i, shared)| (std::cmp::Reverse(shared), self.slots[i].last_used))
            .expect("at least one slot");
        let held = self.slots[best].tokens.len();
        if held == 0 || shared * 2 >= held || shared >= 256 {
            return best;
        }
        (0..self.slots.len())
            .min_by_key(|&i| (!self.slots[i].tokens.is_empty(), self.slots[i].last_used))
            .expect("at least one slot")
    }

    /// Bring the current slot to `prompt`: keep the longest common prefix with
    /// what it holds, drop the rest, decode only the new suffix. Returns how
    /// many prompt tokens were served from the cache.
    fn prefill(&mut self, prompt: &[LlamaToken]) -> Result<usize, Failure> {
        if prompt.is_empty() {
            return Err((
                ErrorCode::BadRequest,
                "the prompt rendered to no tokens".into(),
            ));
        }
        let slot = &mut self.slots[self.current];
        // At least the last prompt token must be decoded again: its logits are
        // what the first sampled token comes from.
        let mut keep = common_prefix(&slot.tokens, prompt).min(prompt.len() - 1);
        if keep < slot.tokens.len() {
            if self
                .ctx
                .kv_cache_seq_rm(slot.seq, Some(keep as u32), None)
                .is_err()
            {
                // Recurrent/SWA caches cannot drop a suffix: start the slot over.
                tracing::debug!("partial KV removal refused; clearing the slot");
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                keep = 0;
            }
            slot.tokens.truncate(keep);
        }
        for chunk in prompt[keep..].chunks(self.n_batch) {
            let first_pos = self.slots[self.current].tokens.len();
            let logits_for_last = first_pos + chunk.len() == prompt.len();
            self.decode(chunk, logits_for_last).map_err(|e| {
                (
                    ErrorCode::Engine,
                    format!("llama.cpp failed to decode the prompt: {e}"),
                )
            })?;
        }
        Ok(keep)
    }

    /// Decode `tokens` after what the current slot holds (logits for the last
    /// one if asked). When the shared cache is full, drop other slots, least
    /// recently used first, and try again.
    fn decode(&mut self, tokens: &[LlamaToken], logits_for_last: bool) -> Result<(), String> {
        loop {
            let slot = &self.slots[self.current];
            let start = slot.tokens.len();
            self.batch.clear();
            for (i, &token) in tokens.iter().enumerate() {
                let logits = logits_for_last && i + 1 == tokens.len();
                self.batch
                    .add(token, (start + i) as i32, &[slot.seq], logits)
                    .map_err(|e| e.to_string())?;
            }
            match self.ctx.decode(&mut self.batch) {
                Ok(()) => {
                    self.slots[self.current].tokens.extend_from_slice(tokens);
                    return Ok(());
                }
                Err(DecodeError::NoKvCacheSlot) if self.evict_one_other() => continue,
                Err(e) => {
                    // The slot's cache state is unknown now: forget it.
                    let seq = self.slots[self.current].seq;
                    let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                    self.slots[self.current].tokens.clear();
                    return Err(e.to_string());
                }
            }
        }
    }

    /// Drop the least recently used non-empty slot other than the current one.
    fn evict_one_other(&mut self) -> bool {
        let victim = (0..self.slots.len())
            .filter(|&i| i != self.current && !self.slots[i].tokens.is_empty())
            .min_by_key(|&i| self.slots[i].last_used);
        let Some(victim) = victim else { return false };
        let seq = self.slots[victim].seq;
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.slots[victim].tokens.clear();
        tracing::debug!(seq, "KV cache full: dropped a cached prompt");
        true
    }

    /// Decode one generated token so the next one can be sampled.
    fn decode_one(&mut self, token: LlamaToken) -> Result<(), Failure> {
        self.decode(&[token], true).map_err(|e| {
            (
                ErrorCode::Engine,
                format!("llama.cpp failed to decode: {e}"),
            )
        })
    }

    fn reset_cache(&mut self) {
        self.ctx.clear_kv_cache();
        for slot in &mut self.slots {
            slot.tokens.clear();
        }
    }

    fn sampler(
        &mut self,
        temperature: f32,
        grammar: Option<&str>,
    ) -> Result<TokenSampler, Failure> {
        let grammar = grammar
            .map(|g| {
                LlamaSampler::grammar(self.model, g, "root").map_err(|e| {
                    (
                        ErrorCode::BadRequest,
                        format!("the GBNF grammar does not parse (root rule must be `root`): {e}"),
                    )
                })
            })
            .transpose()?;
        let chain = if temperature <= 0.0 {
            LlamaSampler::greedy()
        } else {
            self.seed = self.seed.wrapping_add(1);
            LlamaSampler::chain_simple([
                LlamaSampler::top_k(TOP_K),
                LlamaSampler::top_p(TOP_P, 1),
                LlamaSampler::min_p(MIN_P, 1),
                LlamaSampler::temp(temperature),
                LlamaSampler::dist(self.seed),
            ])
        };
        Ok(TokenSampler { chain, grammar })
    }

    pub fn generate(
        &mut self,
        req: GenerateRequest,
        id: u64,
        out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), Failure> {
        let started = Instant::now();
        let prompt = self.prompt_tokens(&req.messages)?;
        let n_ctx = self.ctx.n_ctx() as usize;
        if prompt.len() >= n_ctx {
            return Err((
                ErrorCode::BadRequest,
                format!(
                    "the prompt is {} tokens but the context holds {n_ctx}: shorten it or start the worker with a larger --ctx",
                    prompt.len()
                ),
            ));
        }
        let max_new = (req.max_tokens as usize).min(n_ctx - prompt.len());
        let mut sampler = self.sampler(req.temperature, req.grammar.as_deref())?;
        self.requests += 1;
        self.current = self.choose_slot(&prompt);
        self.slots[self.current].last_used = self.requests;
        let cached_tokens = self.prefill(&prompt)?;
        let prefill_ms = elapsed_ms(started);

        let vocab = self.model.vocab();
        let mut utf8 = Utf8Stream::default();
        let mut text = StopScanner::new(&req.stop);
        let mut completion_tokens = 0u32;
        let mut first_output_ms = None;
        let send_piece = |piece: &str| {
            if req.stream && !piece.is_empty() {
                out.send(
                    id,
                    true,
                    Response::Token {
                        text: piece.to_string(),
                    },
                    &[],
                );
            }
        };
        while (completion_tokens as usize) < max_new {
            if cancel.is_cancelled() {
                return Err((
                    ErrorCode::Cancelled,
                    format!("cancelled after {completion_tokens} tokens"),
                ));
            }
            let token = sampler.sample(&self.ctx);
            first_output_ms.get_or_insert_with(|| elapsed_ms(started));
            if vocab.is_eog(token) {
                break;
            }
            completion_tokens += 1;
            let piece = utf8.push(&vocab.token_to_piece(token, false, None));
            let stopped = text.push(&piece);
            send_piece(text.take_streamable());
            if stopped || completion_tokens as usize == max_new {
                break;
            }
            self.decode_one(token)?;
        }
        text.push(&utf8.finish());
        send_piece(text.take_rest());

        let total_ms = elapsed_ms(started);
        let decode_s = (total_ms - first_output_ms.unwrap_or(total_ms)) / 1e3;
        tracing::info!(
            prompt_tokens = prompt.len(),
            cached_tokens,
            slot = self.current,
            completion_tokens,
            prefill_ms = format!("{prefill_ms:.1}"),
            first_token_ms = format!("{:.1}", first_output_ms.unwrap_or(total_ms)),
            total_ms = format!("{total_ms:.1}"),
            decode_tok_per_s = format!(
                "{:.1}",
                if decode_s > 0.0 {
                    (completion_tokens.saturating_sub(1)) as f64 / decode_s
                } else {
                    0.0
                }
            ),
            "generated"
        );
        Ok((
            Response::Generated {
                text: text.into_text(),
                prompt_tokens: prompt.len() as u32,
                completion_tokens,
                cached_tokens: cached_tokens as u32,
                timings: WorkerTimings {
                    total_ms,
                    vad_ms: None,
                    first_output_ms,
                },
            },
            Vec::new(),
        ))
    }

    /// Run one tiny decode so the first real request does not pay for graph
    /// allocation and thread start-up, then leave the cache empty.
    pub fn warm_up(&mut self) -> Result<(), Failure> {
        let probe = self.model.vocab().tokenize(b"Hello", false, false);
        if !probe.is_empty() {
            self.prefill(&probe)?;
        }
        self.reset_cache();
        Ok(())
    }
}

/// Picks the next token: the model's choice under the sampling settings, kept
/// within the grammar if there is one.
///
/// Like llama.cpp's own sampler, check the grammar only on the token the model
/// prefers and constrain the whole vocabulary (151k tokens for Qwen, a few ms
/// per step on a small CPU) only when that token is not allowed.
struct TokenSampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl TokenSampler {
    fn sample(&mut self, ctx: &LlamaContext) -> LlamaToken {
        let Some(grammar) = &mut self.grammar else {
            return self.chain.sample(ctx, -1); // samples and accepts
        };
        let logits = ctx.get_logits_ith(-1);
        let all = || {
            let data = logits
                .iter()
                .enumerate()
                .map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id as i32), logit, 0.0));
            LlamaTokenDataArray::from_iter(data, false)
        };
        let preferred = all()
            .with_sampler(&mut self.chain)
            .selected_token()
            .expect("the chain selects a token");
        let mut probe =
            LlamaTokenDataArray::new(vec![LlamaTokenData::new(preferred, 1.0, 0.0)], false);
        probe.apply_sampler(grammar);
        let token = if probe.data.first().is_some_and(|d| d.logit().is_finite()) {
            preferred
        } else {
            let mut allowed = all().with_sampler(grammar);
            allowed.apply_sampler(&mut self.chain);
            allowed.selected_token().expect("the chain selects a token")
        };
        grammar.accept(token);
        self.chain.accept(token);
        token
    }
}

/// The `kind` tag of a request, for error messages.
fn kind(request: &Request) -> String {
    serde_json::to_value(request)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Engine for LlmEngine {
    fn handle(
        &mut self,
        request: Request,
        _payload: Vec<u8>,
        id: u64,
        out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), Failure> {
        match request {
            Request::Generate {
                messages,
                max_tokens,
                temperature,
                grammar,
                stop,
                stream,
            } => self.generate(
                GenerateRequest {
                    messages,
                    max_tokens,
                    temperature,
                    grammar,
                    stop,
                    stream,
                },
                id,
                out,
                cancel,
            ),
            other => Err((
                ErrorCode::BadRequest,
                format!("the LLM worker serves `generate`, not `{}`", kind(&other)),
            )),
        }
    }
}
