//! The TTS client: Piper speech, streamed sentence by sentence.

use super::*;

/// A piece of synthesized speech.
#[derive(Debug, Clone)]
pub struct SpeechChunk {
    /// Sample rate of `samples`, in Hz (the voice's own rate).
    pub sample_rate: u32,
    /// Signed 16-bit mono PCM.
    pub samples: Vec<i16>,
    /// The sentence this chunk speaks.
    pub text: String,
}

/// Text-to-speech (Piper).
#[derive(Clone)]
pub struct TtsClient {
    /// The supervised TTS worker process.
    pub worker: Worker,
}

/// Sentence-by-sentence speech for one text.
pub struct SpeechStream {
    pub(super) inner: ReplyStream,
    pub(super) deadline: Instant,
    pub(super) started: Instant,
    pub(super) finished: bool,
}

impl SpeechStream {
    /// The next sentence's audio, or `None` when the text is spoken.
    pub async fn next(&mut self) -> Option<Result<SpeechChunk, EngineError>> {
        if self.finished {
            return None;
        }
        match self.inner.next_before(self.deadline).await {
            Ok(Reply {
                body: Response::Audio { sample_rate, text },
                payload,
                ..
            }) => Some(Ok(SpeechChunk {
                sample_rate,
                samples: bytes_to_pcm16(&payload),
                text,
            })),
            Ok(Reply {
                body: Response::Synthesized { sample_rate, .. },
                payload,
                ..
            }) => {
                self.finished = true;
                observe("tts", "synthesize", self.started);
                // A non-streamed answer carries its audio in the final reply.
                if payload.is_empty() {
                    None
                } else {
                    Some(Ok(SpeechChunk {
                        sample_rate,
                        samples: bytes_to_pcm16(&payload),
                        text: String::new(),
                    }))
                }
            }
            Ok(Reply { body, .. }) => {
                self.finished = true;
                Some(Err(unexpected("tts", &body)))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

impl TtsClient {
    /// Start the TTS worker with the configured Piper voice; it loads in the background.
    pub fn start(cfg: &EngineConfig) -> Self {
        let mut args = vec![
            "--voice".into(),
            path_arg(&cfg.pack.tts_voice),
            "--ort-lib".into(),
            path_arg(&cfg.pack.onnxruntime_lib),
            "--threads".into(),
            cfg.threads.tts.to_string(),
        ];
        if let Some(dir) = &cfg.espeak_data {
            args.push("--espeak-data".into());
            args.push(path_arg(dir));
        }
        TtsClient {
            worker: Worker::start(spec(cfg, "tts", args, log_env())),
        }
    }

    /// Speak `text`, one chunk per sentence as soon as each is ready.
    pub async fn stream(&self, text: &str) -> Result<SpeechStream, EngineError> {
        let started = Instant::now();
        let inner = self
            .worker
            .stream(
                Request::Synthesize {
                    text: text.to_string(),
                    stream: true,
                },
                vec![],
            )
            .await?;
        let deadline = started + self.worker_timeout();
        Ok(SpeechStream {
            inner,
            deadline,
            started,
            finished: false,
        })
    }

    /// Speak `text` and return all of it.
    pub async fn synthesize(&self, text: &str) -> Result<SpeechChunk, EngineError> {
        let mut stream = self.stream(text).await?;
        let mut all = SpeechChunk {
            sample_rate: 0,
            samples: vec![],
            text: text.to_string(),
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            all.sample_rate = chunk.sample_rate;
            all.samples.extend_from_slice(&chunk.samples);
        }
        Ok(all)
    }

    pub(super) fn worker_timeout(&self) -> Duration {
        self.worker.request_timeout()
    }
}
