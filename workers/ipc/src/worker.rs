//! The worker side of the protocol: one loop that every engine worker shares.
//!
//! A reader thread owns stdin. It answers `ping` itself (so a worker busy with a
//! long request still proves it is alive), records `cancel`s, and queues every
//! other request for the engine, which runs them one at a time on the main
//! thread. Responses from either thread go through one locked stdout.

use crate::{read_frame, write_frame, Envelope, ErrorCode, Request, Response, PROTOCOL_VERSION};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::os::fd::FromRawFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

/// Milliseconds since `since`, for the timings workers report.
pub fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Where an engine writes its responses.
#[derive(Clone)]
pub struct Responder {
    out: Arc<Mutex<BufWriter<File>>>,
}

impl Responder {
    /// Take stdout for the protocol alone: the engines' C code prints to
    /// fd 1 now and then (whisper.cpp, llama.cpp), and one stray byte would
    /// break the framing. The protocol keeps a private duplicate of stdout,
    /// and fd 1 is pointed at stderr, where logs belong.
    fn new() -> Self {
        // SAFETY: plain dup/dup2 on the process's own standard descriptors,
        // before any other thread exists.
        let file = unsafe {
            let protocol_fd = libc::dup(1);
            if protocol_fd < 0 || libc::dup2(2, 1) < 0 {
                panic!(
                    "cannot set up the protocol descriptor: {}",
                    io::Error::last_os_error()
                );
            }
            File::from_raw_fd(protocol_fd)
        };
        Responder {
            out: Arc::new(Mutex::new(BufWriter::new(file))),
        }
    }

    /// Send one response. A broken pipe means the call plane is gone: exit.
    pub fn send(&self, id: u64, more: bool, body: Response, payload: &[u8]) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if write_frame(&mut *out, &Envelope { id, more, body }, payload).is_err() {
            std::process::exit(0);
        }
    }

    /// Answer request `id` with an [`Response::Error`] of `code`.
    pub fn error(&self, id: u64, code: ErrorCode, message: impl Into<String>) {
        self.send(
            id,
            false,
            Response::Error {
                code,
                message: message.into(),
            },
            &[],
        );
    }
}

/// Tells an engine whether the request it is running was cancelled.
#[derive(Clone)]
pub struct CancelToken {
    id: u64,
    cancelled: Arc<Mutex<HashSet<u64>>>,
}

impl CancelToken {
    /// True once the call plane sent [`Request::Cancel`] for this request; engines poll it between
    /// steps.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled
            .lock()
            .map(|s| s.contains(&self.id))
            .unwrap_or(false)
    }
}

/// What an engine worker implements.
pub trait Engine {
    /// Serve one request. Send any `more: true` responses through `out`, then
    /// return the final response and its payload; an `Err` becomes an `error`
    /// response with that code.
    fn handle(
        &mut self,
        request: Request,
        payload: Vec<u8>,
        id: u64,
        out: &Responder,
        cancel: &CancelToken,
    ) -> Result<(Response, Vec<u8>), (ErrorCode, String)>;
}

/// Facts a worker reports when ready.
pub struct ReadyInfo {
    /// Engine name for [`Response::Ready`], e.g. `whisper.cpp`.
    pub engine: &'static str,
    /// The loaded model, for [`Response::Ready`].
    pub model: String,
    /// Engine facts worth logging (threads, sample rate, GPU...).
    pub info: serde_json::Map<String, serde_json::Value>,
}

/// Initialise logging to stderr (the supervisor forwards these lines).
pub fn init_logging(engine: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNDERSTUDY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
    tracing::debug!(engine, "worker logging ready");
}

/// Load the engine with `load`, announce readiness, and serve until stdin
/// closes or a `shutdown` arrives. Never returns.
pub fn serve<E, F>(load: F) -> !
where
    E: Engine,
    F: FnOnce() -> Result<(E, ReadyInfo), String>,
{
    let responder = Responder::new();
    let started = Instant::now();
    let (mut engine, ready) = match load() {
        Ok(x) => x,
        Err(message) => {
            tracing::error!(%message, "model load failed");
            responder.error(0, ErrorCode::ModelLoad, message);
            std::process::exit(2);
        }
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(engine = ready.engine, model = %ready.model, load_ms, "ready");
    responder.send(
        0,
        false,
        Response::Ready {
            protocol: PROTOCOL_VERSION,
            engine: ready.engine.to_string(),
            model: ready.model,
            load_ms,
            info: ready.info,
        },
        &[],
    );

    let cancelled: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<(u64, Request, Vec<u8>)>();
    {
        let responder = responder.clone();
        let cancelled = cancelled.clone();
        std::thread::spawn(move || {
            let mut stdin = BufReader::new(io::stdin());
            loop {
                match read_frame::<_, Request>(&mut stdin) {
                    Ok(Some(frame)) => {
                        let id = frame.envelope.id;
                        match frame.envelope.body {
                            Request::Ping => responder.send(id, false, Response::Pong, &[]),
                            Request::Cancel { target } => {
                                cancelled.lock().unwrap().insert(target);
                            }
                            Request::Shutdown => std::process::exit(0),
                            other => {
                                if tx.send((id, other, frame.payload)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Ok(None) => std::process::exit(0),
                    Err(crate::FrameError::BadHeader(e)) => {
                        // The frame was complete, only its header was wrong:
                        // say so and keep serving.
                        responder.error(
                            u64::MAX,
                            ErrorCode::BadRequest,
                            format!("bad header: {e}"),
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read from the call plane; exiting");
                        std::process::exit(1);
                    }
                }
            }
        });
    }

    for (id, request, payload) in rx {
        let token = CancelToken {
            id,
            cancelled: cancelled.clone(),
        };
        if token.is_cancelled() {
            responder.error(id, ErrorCode::Cancelled, "cancelled before start");
        } else {
            match engine.handle(request, payload, id, &responder, &token) {
                Ok((body, payload)) => responder.send(id, false, body, &payload),
                Err((code, message)) => responder.error(id, code, message),
            }
        }
        cancelled.lock().unwrap().remove(&id);
    }
    std::process::exit(0)
}
