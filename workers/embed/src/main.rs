//! `understudy-embed`: the sentence-embedding worker (all-MiniLM-L6-v2 through
//! candle), used for intent matching.
//!
//! Speaks the framed protocol of `understudy-ipc` on stdin/stdout, logs to
//! stderr. Serves `embed`: one vector per text, mean-pooled over the attention
//! mask and L2-normalised, as sentence-transformers does for this model, so a
//! dot product is the cosine similarity.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use understudy_ipc::worker::{self, CancelToken, Engine, ReadyInfo, Responder};
use understudy_ipc::{f32s_to_bytes, ErrorCode, Request, Response};

/// sentence-transformers truncates all-MiniLM-L6-v2 inputs to 256 word pieces
/// (`sentence_bert_config.json`); used when that file is absent.
const DEFAULT_MAX_TOKENS: usize = 256;
/// Texts per forward pass: bounds memory for large requests.
const BATCH: usize = 32;

#[derive(Parser, Debug)]
#[command(
    name = "understudy-embed",
    version,
    about = "Understudy embedding worker: sentence embeddings (all-MiniLM-L6-v2) over the worker protocol",
    long_about = "Understudy embedding worker: sentence embeddings over the worker protocol.\n\n\
        Loads a BERT sentence-embedding model (all-MiniLM-L6-v2 layout), sends `ready` on stdout, \
        then serves `embed` requests (framed JSON, see docs/ipc.md): the answer's payload is \
        count x dim f32le, L2-normalised. Logs go to stderr; set UNDERSTUDY_LOG to change the level."
)]
struct Args {
    /// Model directory with model.safetensors, tokenizer.json and config.json.
    #[arg(long, value_name = "DIR")]
    model_dir: PathBuf,

    /// CPU threads for one request.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    threads: u32,
}

fn main() {
    let args = Args::parse();
    // candle's CPU kernels size their thread pool from these on first use.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", args.threads.to_string());
    worker::init_logging("embed");
    worker::serve(|| load(&args))
}

struct EmbedEngine {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dim: usize,
}

type Failure = (ErrorCode, String);

fn load(args: &Args) -> Result<(EmbedEngine, ReadyInfo), String> {
    let dir = &args.model_dir;
    let file = |name: &str| -> Result<PathBuf, String> {
        let path = dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{} is missing; --model-dir must hold model.safetensors, tokenizer.json and config.json \
                 (all-MiniLM-L6-v2), run `understudy models fetch`",
                path.display()
            ))
        }
    };
    let (weights, tokenizer_path, config_path) = (
        file("model.safetensors")?,
        file("tokenizer.json")?,
        file("config.json")?,
    );

    let config: Config = read_json(&config_path)?;
    let max_tokens = read_json::<serde_json::Value>(&dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|v| v["max_seq_length"].as_u64())
        .map_or(DEFAULT_MAX_TOKENS, |n| n as usize)
        .min(config.max_position_embeddings);

    let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| {
        format!(
            "cannot load the tokenizer {}: {e}",
            tokenizer_path.display()
        )
    })?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..Default::default()
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| format!("cannot set truncation on {}: {e}", tokenizer_path.display()))?;

    let device = device();
    // SAFETY: the weights file is memory-mapped read-only and not modified while the worker runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
        .map_err(|e| format!("cannot read the weights {}: {e}", weights.display()))?;
    let model = BertModel::load(vb, &config).map_err(|e| {
        format!(
            "{} does not hold a BERT model matching {}: {e}",
            weights.display(),
            config_path.display()
        )
    })?;
    let mut engine = EmbedEngine {
        model,
        tokenizer,
        device,
        dim: config.hidden_size,
    };

    // The first forward pass allocates and spins up threads: do it now.
    let warm = Instant::now();
    engine
        .embed(&["warm up".to_string()])
        .map_err(|(_, e)| format!("test embedding failed: {e}"))?;
    tracing::info!(
        warm_up_ms = format!("{:.1}", warm.elapsed().as_secs_f64() * 1e3),
        "warmed up"
    );

    let mut info = serde_json::Map::new();
    info.insert("dim".into(), engine.dim.into());
    info.insert("max_tokens".into(), max_tokens.into());
    info.insert("threads".into(), args.threads.into());
    info.insert("device".into(), format!("{:?}", engine.device).into());
    Ok((
        engine,
        ReadyInfo {
            engine: "candle-bert",
            model: dir.display().to_string(),
            info,
        },
    ))
}

#[cfg(feature = "cuda")]
fn device() -> Device {
    Device::cuda_if_available(0).unwrap_or(Device::Cpu)
}

#[cfg(not(feature = "cuda"))]
fn device() -> Device {
    Device::Cpu
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not valid: {e}", path.display()))
}

impl EmbedEngine {
    /// L2-normalised, mean-pooled embeddings, one row per text.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<f32>, Failure> {
        let mut out = Vec::with_capacity(texts.len() * self.dim);
        for batch in texts.chunks(BATCH) {
            let rows = self
                .embed_batch(batch)
                .map_err(|e| (ErrorCode::Engine, format!("embedding failed: {e}")))?;
            out.extend(rows);
        }
        Ok(out)
    }

    fn embed_batch(&mut self, texts: &[String]) -> anyhow::Result<Vec<f32>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(anyhow::Error::msg)?;
        let n = encodings.len();
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let ids: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_ids().iter().copied())
            .collect();
        let mask: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_attention_mask().iter().copied())
            .collect();
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?; // (n, len, dim)

        // Mean over the real tokens only (padding is masked out), then unit length.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (n, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (n, dim)
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?; // (n, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        let unit = mean.broadcast_div(&norms)?;
        Ok(unit.flatten_all()?.to_vec1::<f32>()?)
    }
}

impl Engine for EmbedEngine {
    fn handle(
        &mut self,
        request: Request,
        _payload: Vec<u8>,
        _id: u64,
        _out: &Responder,
        _cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), Failure> {
        let texts = match request {
            Request::Embed { texts } => texts,
            other => {
                let kind = serde_json::to_value(&other)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_owned));
                return Err((
                    ErrorCode::BadRequest,
                    format!(
                        "the embedding worker serves `embed`, not `{}`",
                        kind.unwrap_or_default()
                    ),
                ));
            }
        };
        let started = Instant::now();
        let vectors = self.embed(&texts)?;
        let total_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::info!(
            count = texts.len(),
            total_ms = format!("{total_ms:.1}"),
            "embedded"
        );
        Ok((
            Response::Embeddings {
                count: texts.len() as u32,
                dim: self.dim as u32,
            },
            f32s_to_bytes(&vectors),
        ))
    }
}
