//! Test support shared by the VAD and STT worker tests (the STT crate includes
//! this file by path): the installed test model pack, test audio, and a worker
//! process driven over the real protocol.
#![allow(dead_code)] // each test crate uses a different part

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use understudy_ipc::{read_frame, write_frame, Envelope, Frame, Request, Response};

pub const FETCH_HINT: &str = "run `understudy models fetch --pack test` \
    (or set UNDERSTUDY_MODELS_DIR to a directory holding an installed test pack)";

/// `$UNDERSTUDY_MODELS_DIR`, else `$HOME/.local/share/understudy/models`
/// (the models crate's `default_models_dir`).
pub fn models_dir() -> PathBuf {
    match std::env::var_os("UNDERSTUDY_MODELS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".local/share/understudy/models")
        }
    }
}

/// A file of the test pack, by its path inside the models directory (the
/// layout of models/manifest.toml). Fails the test when it is missing.
pub fn pack_file(relative: &str) -> PathBuf {
    let path = models_dir().join(relative);
    assert!(
        path.is_file(),
        "test model {} is missing: {FETCH_HINT}",
        path.display()
    );
    path
}

/// The pack's ONNX Runtime library, whatever its version (`lib/libonnxruntime.so.*`).
pub fn onnxruntime_lib() -> PathBuf {
    let lib_dir = models_dir().join("lib");
    std::fs::read_dir(&lib_dir)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .unwrap_or_else(|| {
            panic!(
                "no libonnxruntime.so.* in {}: {FETCH_HINT}",
                lib_dir.display()
            )
        })
}

/// jfk.wav: "And so my fellow Americans, ask not what your country can do for
/// you, ask what you can do for your country." (11 s, speech from ~0.3 s).
pub fn jfk() -> Vec<i16> {
    read_wav_16k(&pack_file("test-audio/jfk.wav"))
}

pub fn read_wav_16k(path: &Path) -> Vec<i16> {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (16_000, 1, 16),
        "{} is not 16 kHz mono 16-bit",
        path.display()
    );
    reader.into_samples::<i16>().map(|s| s.unwrap()).collect()
}

pub fn silence(seconds: f32) -> Vec<i16> {
    vec![0; (seconds * 16_000.0) as usize]
}

/// Uniform white noise of peak `amplitude` (deterministic).
pub fn white_noise(seconds: f32, amplitude: i16, seed: u64) -> Vec<i16> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..(seconds * 16_000.0) as usize)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = (x >> 33) as f64 / (1u64 << 31) as f64; // [0, 1)
            ((unit * 2.0 - 1.0) * amplitude as f64) as i16
        })
        .collect()
}

/// `text` spoken by espeak-ng, resampled by sox to 16 kHz mono s16, without
/// dither (sox's random dither would make every run's audio differ a little).
pub fn espeak(text: &str) -> Vec<i16> {
    let dir = tempfile::tempdir().unwrap();
    let (raw, wav) = (dir.path().join("raw.wav"), dir.path().join("16k.wav"));
    let run = |cmd: &mut Command| {
        let status = cmd.status().unwrap_or_else(|e| {
            panic!("cannot run {cmd:?} ({e}): install espeak-ng and sox (apt-get install espeak-ng sox)")
        });
        assert!(status.success(), "{cmd:?} failed: {status}");
    };
    run(Command::new("espeak-ng").arg("-w").arg(&raw).arg(text));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-D", "-r", "16000", "-c", "1", "-b", "16"])
        .arg(&wav));
    read_wav_16k(&wav)
}

/// Lower-case words only, one space apart: for comparing transcripts.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c.to_ascii_lowercase()
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A worker process spoken to over its stdin/stdout.
pub struct Worker {
    child: Child,
    stdin: ChildStdin,
    responses: Receiver<Frame<Response>>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
}

impl Worker {
    pub fn spawn(exe: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Worker {
        let mut child = Command::new(exe)
            .args(args.iter().map(|a| a.as_ref()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, responses) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(Some(frame)) = read_frame::<_, Response>(&mut stdout) {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Worker {
            child,
            stdin,
            responses,
            stderr,
            next_id: 1,
        }
    }

    /// The worker's log so far (for failure messages).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next frame from the worker; fails the test after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Frame<Response> {
        match self.responses.recv_timeout(timeout) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "no answer from the worker within {timeout:?}; its log:\n{}",
                    self.stderr()
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(200)); // let stderr drain
                panic!("the worker closed its stdout; its log:\n{}", self.stderr())
            }
        }
    }

    /// Wait for the `ready` message (id 0) and return its `info`.
    pub fn ready(&self) -> serde_json::Map<String, serde_json::Value> {
        let frame = self.recv(Duration::from_secs(60));
        assert_eq!(frame.envelope.id, 0);
        match frame.envelope.body {
            Response::Ready { info, .. } => info,
            other => panic!("expected ready, got {other:?}; log:\n{}", self.stderr()),
        }
    }

    pub fn send(&mut self, id: u64, request: Request, payload: &[u8]) {
        write_frame(
            &mut self.stdin,
            &Envelope {
                id,
                more: false,
                body: request,
            },
            payload,
        )
        .unwrap_or_else(|e| panic!("cannot write to the worker ({e}); log:\n{}", self.stderr()));
        self.stdin.flush().unwrap();
    }

    /// Send `request` with s16le `audio` and return its final response.
    pub fn request(&mut self, request: Request, audio: &[i16]) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.send(id, request, &understudy_ipc::pcm16_to_bytes(audio));
        loop {
            let frame = self.recv(Duration::from_secs(180));
            assert_eq!(
                frame.envelope.id, id,
                "answer to another request: {:?}",
                frame.envelope
            );
            if !frame.envelope.more {
                return frame.envelope.body;
            }
        }
    }

    /// Wait for the process to exit; fails the test after `timeout` (a hang).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker still running after {timeout:?}; log:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// For a worker that must refuse to start: its `model_load` error message,
    /// after checking that it sent it as id 0 and exited with status 2.
    pub fn expect_model_load_error(mut self) -> String {
        let frame = self.recv(Duration::from_secs(30));
        let message = match frame.envelope.body {
            Response::Error {
                code: understudy_ipc::ErrorCode::ModelLoad,
                message,
            } => message,
            other => panic!("expected a model_load error, got {other:?}"),
        };
        assert_eq!(frame.envelope.id, 0);
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(2),
            "exit status {status}; log:\n{}",
            self.stderr()
        );
        message
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file of `len` random-looking bytes (a damaged download).
pub fn junk_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = white_noise(len as f32 / 16_000.0, i16::MAX, 7)
        .into_iter()
        .flat_map(|s| s.to_le_bytes())
        .take(len)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    path
}
