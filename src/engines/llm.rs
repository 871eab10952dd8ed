//! The LLM client: grammar-constrained generation (classification, slot filling, worded answers), streamed or whole.

use super::*;

/// What to ask the LLM.
#[derive(Debug, Clone, Default)]
pub struct GenerateRequest {
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature; 0 means greedy (deterministic) decoding.
    pub temperature: f32,
    /// GBNF grammar for constrained output.
    pub grammar: Option<String>,
    /// Stop as soon as the output contains one of these strings.
    pub stop: Vec<String>,
}

/// What the LLM said.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    /// The generated text.
    pub text: String,
    /// Tokens in the rendered prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens served from the worker's KV cache of an earlier request.
    pub cached_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Round trip as the call plane saw it, in ms.
    pub ms: f64,
    /// Time to the first token inside the worker, in ms.
    pub first_token_ms: Option<f64>,
}

/// The local LLM (llama.cpp).
#[derive(Clone)]
pub struct LlmClient {
    /// The supervised LLM worker process.
    pub worker: Worker,
}

impl LlmClient {
    /// Start the LLM worker with the configured model, threads and context size; it loads in the
    /// background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let args = vec![
            "--model".into(),
            path_arg(&cfg.pack.llm_model),
            "--threads".into(),
            cfg.threads.llm.to_string(),
            "--ctx".into(),
            cfg.llm_ctx.to_string(),
            "--gpu-layers".into(),
            if cfg.gpu { "999".into() } else { "0".into() },
        ];
        LlmClient {
            worker: Worker::start(spec(cfg, "llm", args, log_env())),
        }
    }

    /// Complete a chat in one piece (no streaming); timed into the `llm` metrics.
    pub async fn generate(&self, req: GenerateRequest) -> Result<Generated, EngineError> {
        let started = Instant::now();
        let request = Request::Generate {
            messages: req.messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            grammar: req.grammar,
            stop: req.stop,
            stream: false,
        };
        let reply = self.worker.request(request, vec![]).await?;
        let ms = observe("llm", "generate", started);
        match reply.body {
            Response::Generated {
                text,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
                timings,
            } => Ok(Generated {
                text,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
                ms,
                first_token_ms: timings.first_output_ms,
            }),
            other => Err(unexpected("llm", &other)),
        }
    }
}
