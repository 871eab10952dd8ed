//! Test support shared by the worker crates' integration tests (llm, tts,
//! embed include this file with `#[path]`): find the installed model pack and
//! drive a worker binary over the real protocol.
#![allow(dead_code)] // each test crate uses a different part

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use understudy_ipc::{encode_frame, read_frame, Envelope, Frame, Request, Response};

/// The models directory: `$UNDERSTUDY_MODELS_DIR`, else the installed default.
pub fn models_dir() -> PathBuf {
    match std::env::var_os("UNDERSTUDY_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
            .join(".local/share/understudy/models"),
    }
}

/// A model artefact at `relative` (the path models/manifest.toml gives it).
/// Fails the test, never skips it, when the pack is not installed.
pub fn model(relative: &str) -> PathBuf {
    let path = models_dir().join(relative);
    assert!(
        path.exists(),
        "model file {} is missing: run `understudy models fetch --pack test` \
         (or point UNDERSTUDY_MODELS_DIR at an installed pack)",
        path.display()
    );
    path
}

/// The first file in the models directory's `dir` whose name starts with `prefix`.
pub fn model_matching(dir: &str, prefix: &str) -> PathBuf {
    let parent = models_dir().join(dir);
    let found = std::fs::read_dir(&parent).ok().and_then(|entries| {
        let mut names: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        names.sort();
        names.pop()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no {prefix}* in {}: run `understudy models fetch --pack test` \
             (or point UNDERSTUDY_MODELS_DIR at an installed pack)",
            parent.display()
        )
    })
}

/// A worker process spoken to over its stdin/stdout.
pub struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<Frame<Response>>,
    stderr: Arc<Mutex<String>>,
    /// The first frame the worker sent (`ready`, or the load `error`).
    pub first: Frame<Response>,
}

impl Worker {
    /// Start `exe` and wait for its first frame.
    pub fn spawn(exe: &str, args: &[&str], load_timeout: Duration) -> Worker {
        Worker::spawn_with_env(exe, args, &[], load_timeout)
    }

    /// Like [`Worker::spawn`], with environment changes: `(name, None)` removes `name`.
    pub fn spawn_with_env(
        exe: &str,
        args: &[&str],
        env: &[(&str, Option<&str>)],
        load_timeout: Duration,
    ) -> Worker {
        let mut command = Command::new(exe);
        command.args(args).env(
            "UNDERSTUDY_LOG",
            std::env::var("UNDERSTUDY_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (name, value) in env {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            while let Ok(Some(frame)) = read_frame::<_, Response>(&mut stdout) {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if std::env::var_os("UNDERSTUDY_TEST_ECHO").is_some() {
                    eprintln!("[worker] {line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdin = child.stdin.take();
        let mut worker = Worker {
            child,
            stdin,
            frames,
            stderr,
            first: placeholder(),
        };
        worker.first = worker.recv(load_timeout);
        worker
    }

    /// Start `exe` and insist that it becomes ready.
    pub fn start(exe: &str, args: &[&str]) -> Worker {
        Worker::start_with_env(exe, args, &[])
    }

    pub fn start_with_env(exe: &str, args: &[&str], env: &[(&str, Option<&str>)]) -> Worker {
        let worker = Worker::spawn_with_env(exe, args, env, Duration::from_secs(120));
        assert!(
            matches!(worker.first.envelope.body, Response::Ready { .. }),
            "worker did not become ready: {:?}\nstderr:\n{}",
            worker.first.envelope,
            worker.stderr()
        );
        worker
    }

    pub fn ready_info(&self) -> &serde_json::Map<String, serde_json::Value> {
        match &self.first.envelope.body {
            Response::Ready { info, .. } => info,
            other => panic!("not ready: {other:?}"),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn send(&mut self, id: u64, request: Request, payload: &[u8]) {
        let frame = encode_frame(
            &Envelope {
                id,
                more: false,
                body: request,
            },
            payload,
        );
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(&frame)
            .and_then(|()| stdin.flush())
            .expect("worker stdin");
    }

    /// The next frame; fails the test if none comes within `timeout` (a hang).
    pub fn recv(&mut self, timeout: Duration) -> Frame<Response> {
        match self.frames.recv_timeout(timeout) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no frame from the worker within {timeout:?} (hung?)\nstderr:\n{}",
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                panic!(
                    "the worker closed stdout (exit {status:?})\nstderr:\n{}",
                    self.stderr()
                )
            }
        }
    }

    /// Send a request and collect every response to it, the final one last.
    pub fn request(
        &mut self,
        id: u64,
        request: Request,
        payload: &[u8],
        timeout: Duration,
    ) -> Vec<Frame<Response>> {
        self.send(id, request, payload);
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.recv(left.max(Duration::from_millis(1)));
            assert_eq!(
                frame.envelope.id, id,
                "answer to another request: {:?}",
                frame.envelope
            );
            let done = !frame.envelope.more;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Wait for the process to exit; fails the test if it does not in time.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker still running after {timeout:?}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn placeholder() -> Frame<Response> {
    Frame {
        envelope: Envelope {
            id: u64::MAX,
            more: false,
            body: Response::Pong,
        },
        payload: Vec::new(),
    }
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("understudy-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}
