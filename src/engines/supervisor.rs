//! Runs one engine worker process and keeps it running.
//!
//! The supervisor task spawns the worker, waits for its `ready`, pings it,
//! and restarts it with exponential backoff when it dies. Requests go through
//! [`Worker::request`]; a request in flight when the worker dies fails at once
//! with [`EngineError::WorkerDied`] (the session then takes its safety net)
//! instead of waiting for a timeout.

mod lifecycle;

use super::EngineError;
use crate::metrics;
use lifecycle::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};
use understudy_ipc::{asynch, Envelope, ErrorCode, Request, Response};

/// How to start one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// Engine name: `vad`, `stt`, `llm`, `tts`, `embed`.
    pub engine: &'static str,
    /// The worker binary (`understudy-<engine>` in the worker directory).
    pub program: PathBuf,
    /// Command-line arguments (model paths, threads...).
    pub args: Vec<String>,
    /// Extra environment variables for the worker (e.g. `UNDERSTUDY_LOG`).
    pub env: Vec<(String, String)>,
    /// How long the model may take to load.
    pub startup_timeout: Duration,
    /// Default deadline for one request.
    pub request_timeout: Duration,
}

/// One response, as the call plane sees it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The worker's message.
    pub body: Response,
    /// The frame's raw payload (PCM audio, f32 vectors), empty when none.
    pub payload: Vec<u8>,
    /// More replies follow for the same request.
    pub more: bool,
}

/// Where a worker is in its life.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum WorkerState {
    /// Spawned (or respawned) and loading its model; not yet `ready`.
    Starting,
    /// Model loaded; serving requests.
    Ready {
        /// The model the worker reported loading.
        model: String,
        /// Time the worker took to load it, in ms.
        load_ms: f64,
    },
    /// Died; restarting after a backoff.
    Restarting {
        /// Why it died (exit status, failed ping...).
        reason: String,
    },
    /// Gave up: the model cannot load. Needs an operator.
    Failed {
        /// The load error the worker reported.
        reason: String,
    },
    /// Shut down on request; will not restart.
    Stopped,
}

/// A health snapshot for readiness and the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkerHealth {
    /// Engine name: `vad`, `stt`, `llm`, `tts`, `embed`.
    pub engine: &'static str,
    /// Where the worker is in its life cycle.
    #[serde(flatten)]
    pub state: WorkerState,
    /// Times the worker was restarted since the supervisor started.
    pub restarts: u64,
    /// Process id of the running worker, if one is running.
    pub pid: Option<u32>,
    /// Requests sent and not yet answered.
    pub in_flight: usize,
}

type Pending = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Result<Reply, EngineError>>>>>;

/// The live process, while it is up.
struct Connection {
    stdin: AsyncMutex<ChildStdin>,
    pending: Pending,
}

struct Shared {
    spec: WorkerSpec,
    next_id: AtomicU64,
    conn: Mutex<Option<Arc<Connection>>>,
    state: watch::Sender<WorkerState>,
    restarts: AtomicU64,
    pid: Mutex<Option<u32>>,
    shutdown: watch::Sender<bool>,
}

/// A supervised worker. Cheap to clone.
#[derive(Clone)]
pub struct Worker {
    shared: Arc<Shared>,
}

/// Model-load failures in a row after which restarting stops: a bad model
/// file does not heal by itself.
const MAX_LOAD_FAILURES: u32 = 3;
const PING_INTERVAL: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Time after which a cancelled-but-still-running request gets its worker
/// killed (an engine stuck in native code does not check cancel flags).
const CANCEL_GRACE: Duration = Duration::from_secs(2);

impl Worker {
    /// Start supervising: spawns the process in the background.
    pub fn start(spec: WorkerSpec) -> Worker {
        let (state, _) = watch::channel(WorkerState::Starting);
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            spec,
            next_id: AtomicU64::new(1),
            conn: Mutex::new(None),
            state,
            restarts: AtomicU64::new(0),
            pid: Mutex::new(None),
            shutdown,
        });
        tokio::spawn(supervise(shared.clone()));
        Worker { shared }
    }

    /// Engine name: `vad`, `stt`, `llm`, `tts`, `embed`.
    pub fn engine(&self) -> &'static str {
        self.shared.spec.engine
    }

    /// A snapshot of state, restarts, pid and in-flight requests.
    pub fn health(&self) -> WorkerHealth {
        WorkerHealth {
            engine: self.shared.spec.engine,
            state: self.shared.state.borrow().clone(),
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            pid: *self.shared.pid.lock().unwrap(),
            in_flight: self.in_flight(),
        }
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared
            .conn
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |c| c.pending.lock().unwrap().len())
    }

    /// The default deadline of one request to this worker.
    pub fn request_timeout(&self) -> Duration {
        self.shared.spec.request_timeout
    }

    /// True while the worker has its model loaded and serves requests.
    pub fn is_ready(&self) -> bool {
        matches!(*self.shared.state.borrow(), WorkerState::Ready { .. })
    }

    /// Wait until the worker is ready; fails at once when it gave up (bad
    /// model) and after `timeout` otherwise.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), EngineError> {
        let mut rx = self.shared.state.subscribe();
        let engine = self.engine();
        let wait = async {
            loop {
                match &*rx.borrow_and_update() {
                    WorkerState::Ready { .. } => return Ok(()),
                    WorkerState::Failed { reason } => {
                        return Err(EngineError::Unavailable {
                            engine,
                            reason: reason.clone(),
                        })
                    }
                    _ => {}
                }
                if rx.changed().await.is_err() {
                    return Err(EngineError::Unavailable {
                        engine,
                        reason: "supervisor stopped".into(),
                    });
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(EngineError::Unavailable {
                engine,
                reason: format!(
                    "not ready after {:.0} s ({:?})",
                    timeout.as_secs_f64(),
                    self.health().state
                ),
            }),
        }
    }

    /// Send a request and get a stream of replies (the last has `more: false`).
    pub async fn stream(
        &self,
        request: Request,
        payload: Vec<u8>,
    ) -> Result<ReplyStream, EngineError> {
        let engine = self.engine();
        let conn =
            self.shared
                .conn
                .lock()
                .unwrap()
                .clone()
                .ok_or_else(|| EngineError::Unavailable {
                    engine,
                    reason: format!("{:?}", self.shared.state.borrow().clone()),
                })?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        conn.pending.lock().unwrap().insert(id, tx);
        let frame = Envelope {
            id,
            more: false,
            body: request,
        };
        let mut stdin = conn.stdin.lock().await;
        if let Err(e) = asynch::write_frame(&mut *stdin, &frame, &payload).await {
            conn.pending.lock().unwrap().remove(&id);
            return Err(EngineError::WorkerDied {
                engine,
                detail: format!("write failed: {e}"),
            });
        }
        drop(stdin);
        Ok(ReplyStream {
            id,
            rx,
            worker: self.clone(),
            done: false,
        })
    }

    /// Send a request and wait for its final reply within the spec's timeout.
    pub async fn request(&self, request: Request, payload: Vec<u8>) -> Result<Reply, EngineError> {
        self.request_within(request, payload, self.shared.spec.request_timeout)
            .await
    }

    /// Like [`Worker::request`] with an explicit deadline.
    pub async fn request_within(
        &self,
        request: Request,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Reply, EngineError> {
        let mut stream = self.stream(request, payload).await?;
        let deadline = Instant::now() + timeout;
        loop {
            match stream.next_before(deadline).await? {
                reply if !reply.more => return Ok(reply),
                _ => {}
            }
        }
    }

    /// Ask the worker to abandon request `id`; kill it if it does not.
    fn cancel(&self, id: u64) {
        let Some(conn) = self.shared.conn.lock().unwrap().clone() else {
            return;
        };
        let worker = self.clone();
        tokio::spawn(async move {
            {
                let mut stdin = conn.stdin.lock().await;
                let frame = Envelope {
                    id: 0,
                    more: false,
                    body: Request::Cancel { target: id },
                };
                let _ = asynch::write_frame(&mut *stdin, &frame, &[]).await;
            }
            tokio::time::sleep(CANCEL_GRACE).await;
            // Still running? Then the engine is stuck in native code.
            let still_pending = conn.pending.lock().unwrap().contains_key(&id);
            if still_pending {
                tracing::warn!(
                    engine = worker.engine(),
                    id,
                    "request ignored its cancel; restarting the worker"
                );
                worker.kill();
            }
        });
    }

    /// Kill the current process (the supervisor restarts it). For the
    /// safety-net tests and for stuck engines.
    pub fn kill(&self) {
        if let Some(pid) = *self.shared.pid.lock().unwrap() {
            // SAFETY: kill(2) on the pid of our own child process.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }

    /// Stop the worker for good.
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }
}

/// Replies to one request.
pub struct ReplyStream {
    id: u64,
    rx: mpsc::UnboundedReceiver<Result<Reply, EngineError>>,
    worker: Worker,
    done: bool,
}

impl ReplyStream {
    /// The next reply; `Err(Timeout)` (and a cancel sent to the worker) when
    /// the deadline passes first.
    pub async fn next_before(&mut self, deadline: Instant) -> Result<Reply, EngineError> {
        let engine = self.worker.engine();
        let next = tokio::time::timeout_at(deadline.into(), self.rx.recv()).await;
        let reply = match next {
            Err(_) => {
                self.done = true;
                self.worker.cancel(self.id);
                metrics::counter_inc("understudy_engine_timeouts_total", &[("engine", engine)]);
                return Err(EngineError::Timeout { engine });
            }
            Ok(None) => Err(EngineError::WorkerDied {
                engine,
                detail: "reply channel closed".into(),
            }),
            Ok(Some(r)) => r,
        };
        match reply {
            Ok(Reply {
                body: Response::Error { code, message },
                ..
            }) => {
                self.done = true;
                Err(EngineError::Engine {
                    engine,
                    code,
                    message,
                })
            }
            Ok(r) => {
                self.done = !r.more;
                Ok(r)
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        if !self.done {
            // The caller lost interest (barge-in, hang-up): free the engine.
            self.worker.cancel(self.id);
        }
    }
}

/// The code of an engine error, for callers that branch on it.
pub fn is_cancelled(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Engine {
            code: ErrorCode::Cancelled,
            ..
        }
    )
}
