//! A headless Chromium (Debian's `chromium`) driven by ChromeDriver
//! (`chromium-driver`, WebDriver over HTTP) for the tests of the pages the
//! appliance serves: the softphone and the dashboard.
#![allow(dead_code)]

use crate::sip_support::{free_port, require, LOOPBACK};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// ChromeDriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start Chromium; with `microphone`, its microphone plays that WAV file once.
    pub async fn start(microphone: Option<&Path>) -> Browser {
        require("chromium", "chromium");
        require("chromedriver", "chromium-driver");
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromedriver");
        let base = format!("http://{LOOPBACK}:{port}");
        let http = reqwest::Client::new();
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            // This machine has no network beyond loopback: no background fetches.
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", profile.path().display()),
            "--autoplay-policy=no-user-gesture-required".into(),
            "--window-size=1100,800".into(),
        ];
        if let Some(wav) = microphone {
            args.extend([
                "--use-fake-ui-for-media-stream".into(),
                "--use-fake-device-for-media-stream".into(),
                format!("--use-file-for-fake-audio-capture={}%noloop", wav.display()),
            ]);
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium", "args": args}}}});
        let started = Instant::now();
        let session = loop {
            match post(&http, &format!("{base}/session"), &capabilities).await {
                Ok(value) => break value["sessionId"].as_str().unwrap().to_string(),
                Err(e) if started.elapsed() < Duration::from_secs(30) => {
                    eprintln!("waiting for chromedriver: {e}");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("no Chromium session: {e}"),
            }
        };
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    /// A WebDriver command of this session; its `value`.
    pub async fn command(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.base, self.session);
        post(&self.http, &url, &body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// Go to `url`.
    pub async fn open(&self, url: &str) {
        self.command("url", json!({"url": url})).await;
    }

    /// Run `script` in the page; an async script that ends with `done(value)`.
    pub async fn eval(&self, script: &str) -> Value {
        let script = format!("const done = arguments[0]; (async () => {{ {script} }})().then(done, (e) => done({{error: String(e)}}));");
        self.command("execute/async", json!({"script": script, "args": []}))
            .await
    }

    /// A PNG of the window, written to `to`.
    pub async fn screenshot(&self, to: &Path) {
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let response: Value = serde_json::from_str(&text).unwrap();
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(response["value"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; killing only the driver
        // would leave Chromium running after the test.
        let driver: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("the driver's address");
        // HTTP/1.1: ChromeDriver does not answer 1.0 requests.
        if let Ok(mut stream) = std::net::TcpStream::connect(driver) {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {driver}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                self.session
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut vec![]);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// POST JSON to WebDriver; its `value`, or the error it names.
async fn post(http: &reqwest::Client, url: &str, body: &Value) -> Result<Value, String> {
    let response = http
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text:.200}"))?;
    if !status.is_success() {
        return Err(format!("{status}: {}", value["value"]["message"]));
    }
    Ok(value["value"].clone())
}
