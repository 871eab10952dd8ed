//! Runs one engine worker process and keeps it running.
//!
//! The supervisor task spawns the worker, waits for its `ready`, pings it,
//! and restarts it with exponential backoff when it dies. Requests go through
//! [`Worker::request`]; a request in flight when the worker dies fails at once
//! with [`EngineError::WorkerDied`] (the session then takes its safety net)
//! instead of waiting for a timeout.

use super::EngineError;
use crate::metrics;
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

async fn supervise(shared: Arc<Shared>) {
    let engine = shared.spec.engine;
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut load_failures = 0u32;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let started = Instant::now();
        let outcome = run_once(&shared, &mut shutdown).await;
        *shared.conn.lock().unwrap() = None;
        *shared.pid.lock().unwrap() = None;
        let reason = match outcome {
            RunOutcome::Shutdown => break,
            RunOutcome::LoadFailed(reason) => {
                load_failures += 1;
                if load_failures >= MAX_LOAD_FAILURES {
                    tracing::error!(engine, %reason, "worker cannot load its model; giving up");
                    shared.state.send_replace(WorkerState::Failed { reason });
                    metrics::counter_inc("understudy_worker_failed_total", &[("engine", engine)]);
                    // Wait for shutdown only: an operator has to fix the model.
                    stopped(&mut shutdown).await;
                    break;
                }
                reason
            }
            RunOutcome::Died(reason) => {
                load_failures = 0;
                reason
            }
        };
        // A worker that ran well for a while starts again quickly.
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        shared.restarts.fetch_add(1, Ordering::Relaxed);
        metrics::counter_inc("understudy_worker_restarts_total", &[("engine", engine)]);
        tracing::warn!(engine, %reason, backoff_ms = backoff.as_millis() as u64, "worker down; restarting");
        shared
            .state
            .send_replace(WorkerState::Restarting { reason });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut shutdown) => break,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    shared.state.send_replace(WorkerState::Stopped);
}

/// Resolves once shutdown was asked for (without holding the watch guard
/// across awaits, which would make the task non-`Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

enum RunOutcome {
    Shutdown,
    LoadFailed(String),
    Died(String),
}

/// Fail every request waiting on a dead connection.
fn fail_pending(pending: &Pending, engine: &'static str, detail: &str) {
    for (_, tx) in pending.lock().unwrap().drain() {
        let _ = tx.send(Err(EngineError::WorkerDied {
            engine,
            detail: detail.to_string(),
        }));
    }
}

async fn run_once(shared: &Arc<Shared>, shutdown: &mut watch::Receiver<bool>) -> RunOutcome {
    let spec = &shared.spec;
    let engine = spec.engine;
    shared.state.send_replace(WorkerState::Starting);
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child: Child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return RunOutcome::LoadFailed(format!(
            "cannot start {}: {e} (is the workspace built? `cargo build --release --workspace`)",
            spec.program.display()
        ))
        }
    };
    *shared.pid.lock().unwrap() = child.id();
    let stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");

    // Forward the worker's log lines into ours.
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::info!(target: "understudy::worker", engine, "{line}");
        }
    });

    // The first frame is `ready` (or a load error).
    let first = tokio::select! {
        f = tokio::time::timeout(spec.startup_timeout, asynch::read_frame::<_, Response>(&mut stdout)) => f,
        _ = stopped(shutdown) => return RunOutcome::Shutdown,
    };
    let (model, load_ms) = match first {
        Err(_) => {
            let _ = child.kill().await;
            return RunOutcome::LoadFailed(format!(
                "{} did not report ready within {:.0} s",
                spec.program.display(),
                spec.startup_timeout.as_secs_f64()
            ));
        }
        Ok(Ok(Some(frame))) => match frame.envelope.body {
            Response::Ready {
                model,
                load_ms,
                info,
                ..
            } => {
                tracing::info!(engine, %model, load_ms, info = %serde_json::Value::Object(info), "worker ready");
                (model, load_ms)
            }
            Response::Error { message, .. } => {
                let _ = child.wait().await;
                return RunOutcome::LoadFailed(message);
            }
            other => {
                let _ = child.kill().await;
                return RunOutcome::LoadFailed(format!("unexpected first message {other:?}"));
            }
        },
        Ok(Ok(None)) | Ok(Err(_)) => {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            return RunOutcome::LoadFailed(format!(
                "{} exited before ready ({status})",
                spec.program.display()
            ));
        }
    };
    metrics::gauge_set("understudy_worker_load_ms", &[("engine", engine)], load_ms);

    let pending: Pending = Arc::default();
    let conn = Arc::new(Connection {
        stdin: AsyncMutex::new(stdin),
        pending: pending.clone(),
    });
    *shared.conn.lock().unwrap() = Some(conn.clone());
    shared
        .state
        .send_replace(WorkerState::Ready { model, load_ms });

    // Route replies to their requests. When the output ends, everything in
    // flight fails at once: callers must not wait for a timeout.
    let reader_pending = pending.clone();
    let reader_shared = shared.clone();
    let mut reader = tokio::spawn(async move {
        let reason = loop {
            match asynch::read_frame::<_, Response>(&mut stdout).await {
                Ok(Some(frame)) => {
                    let id = frame.envelope.id;
                    let more = frame.envelope.more;
                    let reply = Reply {
                        body: frame.envelope.body,
                        payload: frame.payload,
                        more,
                    };
                    let mut map = reader_pending.lock().unwrap();
                    let delivered = match map.get(&id) {
                        Some(tx) => tx.send(Ok(reply)).is_ok(),
                        None => false,
                    };
                    if !more || !delivered {
                        map.remove(&id);
                    }
                }
                Ok(None) => break "worker closed its output".to_string(),
                Err(e) => break format!("bad frame from worker: {e}"),
            }
        };
        *reader_shared.conn.lock().unwrap() = None;
        fail_pending(&reader_pending, engine, &reason);
        reason
    });

    // Ping while alive: the worker's reader thread answers pings even while
    // its engine is busy, so a missed ping means the process is hung.
    let pinger_worker = Worker {
        shared: shared.clone(),
    };
    let pinger = tokio::spawn(async move {
        loop {
            tokio::time::sleep(PING_INTERVAL).await;
            match pinger_worker
                .request_within(Request::Ping, vec![], PING_TIMEOUT)
                .await
            {
                Ok(_) => {}
                Err(EngineError::Timeout { .. }) => {
                    tracing::error!(engine, "worker did not answer a ping; killing it");
                    pinger_worker.kill();
                    return;
                }
                Err(_) => return,
            }
        }
    });

    let reason = tokio::select! {
        r = &mut reader => {
            r.unwrap_or_else(|e| format!("reader task failed: {e}"))
        }
        status = child.wait() => {
            format!("exited: {}", status.map(|s| s.to_string()).unwrap_or_default())
        }
        _ = stopped(shutdown) => {
            pinger.abort();
            {
                let mut stdin = conn.stdin.lock().await;
                let frame = Envelope { id: 0, more: false, body: Request::Shutdown };
                let _ = asynch::write_frame(&mut *stdin, &frame, &[]).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            let _ = child.kill().await;
            fail_pending(&pending, engine, "shutting down");
            return RunOutcome::Shutdown;
        }
    };
    pinger.abort();
    *shared.conn.lock().unwrap() = None;
    let _ = child.kill().await;
    reader.abort();
    fail_pending(&pending, engine, &reason);
    metrics::counter_inc("understudy_worker_deaths_total", &[("engine", engine)]);
    RunOutcome::Died(reason)
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
