//! `understudy-llm`: the LLM engine worker (llama.cpp through llama-cpp-2).
//!
//! Speaks the framed protocol of `understudy-ipc` on stdin/stdout, logs to
//! stderr. Serves `generate`: a chat rendered with the GGUF's own chat
//! template, optionally constrained by a GBNF grammar, streamed token by token.
//! The KV cache of the previous request is reused for the longest common token
//! prefix, so a dialog that resends the same long system prompt every turn only
//! pays for the new part of the prompt.

mod engine;
mod output;

use clap::Parser;
use engine::LlmEngine;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatTemplate, LlamaModel};
use std::io::Read;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use understudy_ipc::worker::{self, ReadyInfo};

#[derive(Parser, Debug)]
#[command(
    name = "understudy-llm",
    version,
    about = "Understudy LLM worker: llama.cpp chat completion over the worker protocol (stdin/stdout)",
    long_about = "Understudy LLM worker: llama.cpp chat completion over the worker protocol.\n\n\
        Loads a GGUF chat model, sends `ready` on stdout, then serves `generate` requests \
        (framed JSON, see docs/ipc.md) until stdin closes. Logs go to stderr; set \
        UNDERSTUDY_LOG (e.g. `debug`, `info,llama-cpp-2=info`) to change the level."
)]
struct Args {
    /// GGUF chat model (e.g. SmolLM2-135M-Instruct.Q4_1.gguf); its own chat template is used.
    #[arg(long, value_name = "PATH")]
    model: PathBuf,

    /// Threads for generating tokens. On a shared 2-core box, 1-2 (measure: more is not always faster).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,

    /// Threads for prompt processing [default: --threads].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    batch_threads: Option<u32>,

    /// Context size in tokens (prompt + answer).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..))]
    ctx: u32,

    /// Model layers to offload to the GPU (needs a build with `--features cuda`); 0 = CPU only.
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,

    /// Prompts kept in the KV cache at once (one per distinct system prompt the
    /// dialog uses: classifier, answer writer...); they share the --ctx cells.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    cache_slots: u32,
}

fn main() {
    use_passive_openmp_waits();
    // llama.cpp logs every tensor at info level: keep its lines at warn unless asked.
    if std::env::var_os("UNDERSTUDY_LOG").is_none() {
        std::env::set_var("UNDERSTUDY_LOG", "info,llama-cpp-2=warn");
    }
    worker::init_logging("llm");
    let args = Args::parse();
    worker::serve(|| load(&args))
}

/// llama.cpp's OpenMP threads spin while they wait for each other. On a small
/// box shared with the STT and TTS workers a spinning thread takes the core its
/// partner needs: SmolLM2 with 2 threads decoded 2-4 tok/s next to other busy
/// processes, 20-54 tok/s with passive waits. libgomp reads the setting when it
/// is loaded, before `main`, so re-execute once with it set. An explicit
/// `OMP_WAIT_POLICY` (e.g. `active` on a dedicated box) is left alone.
fn use_passive_openmp_waits() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let error = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .exec();
    // exec only returns on failure: carry on with the default policy.
    eprintln!(
        "understudy-llm: cannot re-execute {} with OMP_WAIT_POLICY=PASSIVE: {error}",
        exe.display()
    );
}

fn load(args: &Args) -> Result<(LlmEngine, ReadyInfo), String> {
    check_gguf(&args.model)?;
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let backend = LlamaBackend::init().map_err(|e| format!("cannot initialise llama.cpp: {e}"))?;
    if args.gpu_layers > 0 && !backend.supports_gpu_offload() {
        tracing::warn!(
            gpu_layers = args.gpu_layers,
            "this build has no GPU backend (build with `--features cuda`); running on the CPU"
        );
    }
    // The backend and model live as long as the process; leaking them gives the
    // context the 'static borrow it needs without a self-referential struct.
    let backend: &'static LlamaBackend = Box::leak(Box::new(backend));
    let model_params = LlamaModelParams::default().with_n_gpu_layers(args.gpu_layers);
    let model = LlamaModel::load_from_file(backend, &args.model, &model_params).map_err(|e| {
        format!(
            "llama.cpp could not load {} ({e}); the file may be truncated or of an unsupported \
             architecture: re-fetch it with `understudy models fetch`",
            args.model.display()
        )
    })?;
    let model: &'static LlamaModel = Box::leak(Box::new(model));

    let (template, has_template) = match model.chat_template(None) {
        Ok(t) => (t, true),
        Err(e) => {
            tracing::warn!(error = %e, "the model has no chat template; falling back to ChatML");
            (LlamaChatTemplate::new("chatml").expect("no NUL"), false)
        }
    };

    let threads = args.threads as i32;
    let batch_threads = args.batch_threads.unwrap_or(args.threads) as i32;
    let ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(args.ctx))
        .with_n_batch(args.ctx.min(2048))
        .with_n_threads(threads)
        .with_n_threads_batch(batch_threads)
        .with_n_seq_max(args.cache_slots)
        // One pool of cells for all slots, instead of --ctx / slots each.
        .with_kv_unified(true);
    let ctx = model.new_context(backend, ctx_params).map_err(|e| {
        format!(
            "llama.cpp could not create a {}-token context for {} ({e}): try a smaller --ctx",
            args.ctx,
            args.model.display()
        )
    })?;
    let n_ctx = ctx.n_ctx();
    let mut engine = LlmEngine::new(model, ctx, template, args.cache_slots);
    engine
        .warm_up()
        .map_err(|(_, e)| format!("warm-up of {} failed: {e}", args.model.display()))?;

    let mut info = serde_json::Map::new();
    info.insert("n_ctx".into(), n_ctx.into());
    info.insert("threads".into(), threads.into());
    info.insert("batch_threads".into(), batch_threads.into());
    info.insert("chat_template".into(), has_template.into());
    info.insert("gpu_layers".into(), args.gpu_layers.into());
    info.insert("cache_slots".into(), args.cache_slots.into());
    info.insert("gpu_offload".into(), backend.supports_gpu_offload().into());
    info.insert("n_params".into(), model.n_params().into());
    info.insert("n_vocab".into(), model.n_vocab().into());
    Ok((
        engine,
        ReadyInfo {
            engine: "llama.cpp",
            model: args.model.display().to_string(),
            info,
        },
    ))
}

/// Check the file before llama.cpp sees it, so a missing or corrupt download
/// gets an error that names the file instead of a generic load failure.
fn check_gguf(path: &Path) -> Result<(), String> {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| {
            format!(
                "cannot read the LLM model {}: {e}; pass --model with a GGUF file or run `understudy models fetch`",
                path.display()
            )
        })?;
    if &magic != b"GGUF" {
        return Err(format!(
            "{} is not a GGUF model (it does not start with the GGUF magic); the file is corrupt or \
             of another format: re-fetch it with `understudy models fetch`",
            path.display()
        ));
    }
    Ok(())
}
