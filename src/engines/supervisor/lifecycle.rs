//! A worker's life: spawn the process, wait for its model to load, relay
//! requests and replies, ping it, and restart it with backoff when it dies
//! (failing the requests in flight, never the caller's call).

use super::*;

pub(super) async fn supervise(shared: Arc<Shared>) {
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
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

pub(super) enum RunOutcome {
    Shutdown,
    LoadFailed(String),
    Died(String),
}

/// Fail every request waiting on a dead connection.
pub(super) fn fail_pending(pending: &Pending, engine: &'static str, detail: &str) {
    for (_, tx) in pending.lock().unwrap().drain() {
        let _ = tx.send(Err(EngineError::WorkerDied {
            engine,
            detail: detail.to_string(),
        }));
    }
}

pub(super) async fn run_once(
    shared: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
) -> RunOutcome {
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
    metrics::gauge_set(
        "understudy_worker_load_seconds",
        &[("engine", engine)],
        load_ms / 1000.0,
    );

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
