//! The embedding client: MiniLM sentence vectors, batched and deduplicated.

use super::*;

/// Sentence embeddings (all-MiniLM-L6-v2).
#[derive(Clone)]
pub struct EmbedClient {
    /// The supervised embedding worker process.
    pub worker: Worker,
}

impl EmbedClient {
    /// Start the embedding worker with the configured model directory; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let args = vec![
            "--model-dir".into(),
            path_arg(&cfg.pack.embed_dir),
            "--threads".into(),
            cfg.threads.embed.to_string(),
        ];
        EmbedClient {
            worker: Worker::start(spec(cfg, "embed", args, log_env())),
        }
    }

    /// One unit-length vector per text, asked for in batches of 32 so that
    /// each request stays well inside the worker's deadline (bot load, sync).
    pub async fn embed_batched(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            vectors.extend(self.embed(chunk).await?);
        }
        Ok(vectors)
    }

    /// One unit-length vector per text.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EngineError> {
        if texts.is_empty() {
            return Ok(vec![]);
        }
        let started = Instant::now();
        let reply = self
            .worker
            .request(
                Request::Embed {
                    texts: texts.to_vec(),
                },
                vec![],
            )
            .await?;
        observe("embed", "embed", started);
        match reply.body {
            Response::Embeddings { count, dim } => {
                let flat = bytes_to_f32s(&reply.payload);
                if count as usize != texts.len() || flat.len() != (count * dim) as usize {
                    return Err(EngineError::Protocol {
                        engine: "embed",
                        detail: format!(
                            "{count}x{dim} embeddings in {} floats for {} texts",
                            flat.len(),
                            texts.len()
                        ),
                    });
                }
                Ok(flat.chunks(dim as usize).map(<[f32]>::to_vec).collect())
            }
            other => Err(unexpected("embed", &other)),
        }
    }
}
