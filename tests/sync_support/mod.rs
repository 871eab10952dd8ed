//! Support for the sync tests: the project's own export fixtures, the real
//! exports in ../shared/testdata, messy zips made from folders, and the
//! `understudy` binary with a private bundle store.
#![allow(dead_code)] // each test crate uses a different part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Our own fixtures (tests/fixtures/exports/<format>/<bot>).
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exports")
        .join(rel)
}

/// The real exports written by others: `testdata/bot-exports` under
/// `$UNDERSTUDY_SHARED_DIR`, else under `../shared` beside the repository
/// (where CI has it). Missing: the test fails and says where it looked.
pub fn bot_exports_dir() -> PathBuf {
    let shared = std::env::var_os("UNDERSTUDY_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let root = shared.join("testdata/bot-exports");
    assert!(
        root.is_dir(),
        "{} is missing: the real bot exports live in shared/testdata beside the repository (CI has it); elsewhere set UNDERSTUDY_SHARED_DIR to the folder holding testdata/",
        root.display()
    );
    root
}

/// One real export by its path under `bot-exports/`.
pub fn shared_export(rel: &str) -> PathBuf {
    let path = bot_exports_dir().join(rel);
    assert!(
        path.exists(),
        "{} is missing from the shared test data",
        path.display()
    );
    path
}

/// A zip of `dir` as real exports come: inside a top folder, with URL-encoded
/// names, macOS junk and a `.DS_Store`.
pub fn messy_zip(dir: &Path) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("__MACOSX/export/._agent.json", opts).unwrap();
        z.write_all(b"\0\x05\x16\x07junk").unwrap();
        z.add_directory("My Export/", opts).unwrap();
        z.start_file("My Export/.DS_Store", opts).unwrap();
        z.write_all(b"junk").unwrap();
        for path in walk(dir) {
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let encoded: Vec<String> = rel
                .split('/')
                .map(|p| {
                    percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                })
                .collect();
            z.start_file(format!("My%20Export/{}", encoded.join("/")), opts)
                .unwrap();
            z.write_all(&std::fs::read(&path).unwrap()).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Copy a folder (to change a fixture for one test).
pub fn copy_dir(from: &Path, to: &Path) {
    for path in walk(from) {
        let dest = to.join(path.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&path, &dest).unwrap();
    }
}

/// Replace `old` (which must be there) with `new` in a file.
pub fn edit(path: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.contains(old),
        "{} does not contain {old:?}",
        path.display()
    );
    std::fs::write(path, text.replacen(old, new, 1)).unwrap();
}

/// `understudy` with a configuration whose bundle store is `store`.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    config: PathBuf,
}

impl Cli {
    pub fn new() -> Cli {
        Cli::with_config("")
    }

    /// Extra TOML for the `[sync]` table (e.g. `min_pass_rate = 0.9`).
    pub fn with_config(sync_extra: &str) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("bundles");
        let config = dir.path().join("understudy.toml");
        std::fs::write(
            &config,
            format!(
                "[sync]\nstore = {:?}\n{sync_extra}\n",
                store.display().to_string()
            ),
        )
        .unwrap();
        Cli { dir, store, config }
    }

    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_understudy"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("UNDERSTUDY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run understudy");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(
            out.status.success(),
            "understudy {args:?} failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Run and require failure; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args, "");
        assert!(
            !out.status.success(),
            "understudy {args:?} should have failed:\n{}",
            text(&out.stdout)
        );
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    /// Rules-only chat (no models): the bot's lines for these caller lines.
    pub fn chat(&self, bundle: &str, lines: &[&str]) -> Vec<String> {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let out = self.run(
            &["chat", "--no-llm", "--no-embed", "--bundle", bundle],
            &input,
        );
        assert!(
            out.status.success(),
            "chat with {bundle} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("bot: "))
            .map(str::to_string)
            .collect()
    }

    /// `sync status --offline --json`.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["sync", "status", "--offline", "--json"])).unwrap()
    }

    pub fn active(&self) -> Option<String> {
        self.status()["active"]["id"].as_str().map(str::to_string)
    }

    /// Pull one of our fixtures (rules only) and make it active; its id.
    pub fn pull_fixture(&self, export: &str) -> String {
        self.ok(&[
            "sync",
            "pull",
            "--from",
            fixture(export).to_str().unwrap(),
            "--no-embed",
        ]);
        self.active().unwrap()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How the test server answers.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Normal,
    /// Announce the full length, send half, close.
    Truncate,
    Fail500,
}

pub struct Published {
    body: Vec<u8>,
    etag: String,
    mode: Mode,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 serving one export at /export.zip.
pub struct ExportServer {
    pub url: String,
    published: Arc<Mutex<Published>>,
    pub requests: Arc<AtomicUsize>,
    pub not_modified: Arc<AtomicUsize>,
}

impl ExportServer {
    pub async fn start(body: Vec<u8>) -> ExportServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/export.zip", listener.local_addr().unwrap());
        let published = Arc::new(Mutex::new(Published {
            body,
            etag: "\"v1\"".into(),
            mode: Mode::Normal,
        }));
        let requests = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let (p, r, n) = (published.clone(), requests.clone(), not_modified.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (p, r, n) = (p.clone(), r.clone(), n.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => req.extend_from_slice(&buf[..k]),
                        }
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    let head = String::from_utf8_lossy(&req).to_lowercase();
                    let (body, etag, mode) = {
                        let p = p.lock().unwrap();
                        (p.body.clone(), p.etag.clone(), p.mode)
                    };
                    let last_modified = "Wed, 25 Nov 2026 10:00:00 GMT";
                    let response = if mode == Mode::Fail500 {
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                    } else if head.contains(&format!("if-none-match: {}", etag.to_lowercase())) {
                        n.fetch_add(1, Ordering::SeqCst);
                        format!("HTTP/1.1 304 Not Modified\r\netag: {etag}\r\nconnection: close\r\n\r\n").into_bytes()
                    } else {
                        let sent = if mode == Mode::Truncate {
                            &body[..body.len() / 2]
                        } else {
                            &body[..]
                        };
                        let mut out = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {}\r\netag: {etag}\r\nlast-modified: {last_modified}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(sent);
                        out
                    };
                    let _ = sock.write_all(&response).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        ExportServer {
            url,
            published,
            requests,
            not_modified,
        }
    }

    pub fn publish(&self, body: Vec<u8>, etag: &str) {
        let mut p = self.published.lock().unwrap();
        p.body = body;
        p.etag = etag.into();
        p.mode = Mode::Normal;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.published.lock().unwrap().mode = mode;
    }
}
