//! `understudy serve` with `[sync]` configured (test pack, real workers):
//! its timer pulls an HTTP source, activates each new version and swaps it
//! in for new calls; a rollback made with `understudy sync rollback` on the
//! same store reaches the running appliance too.

mod support;
mod sync_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use sync_support::*;

struct ServeProcess {
    child: Child,
    status_url: String,
    log: std::path::PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServeProcess {
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `/status` once the bot named `bot` serves, within `limit`.
    async fn wait_for_bot(&mut self, bot: &str, limit: Duration) -> serde_json::Value {
        let started = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("understudy serve exited ({exit}):\n{}", self.log_tail());
            }
            if let Ok(resp) = reqwest::get(&self.status_url).await {
                if let Ok(status) = resp
                    .text()
                    .await
                    .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap_or_default())
                {
                    if status["ready"] == true && status["bot"] == bot {
                        return status;
                    }
                }
            }
            assert!(
                started.elapsed() < limit,
                "serve did not serve {bot:?} within {limit:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn serve_pulls_activates_and_rolls_back_on_its_own() {
    let cli = Cli::with_config("");
    // Version 1 and 2 of our Dialogflow CX fixture; 2 renames the bot and changes the greeting.
    let v2_dir = cli.dir.path().join("pizza-v2");
    copy_dir(&fixture("dialogflow_cx/pizza-line"), &v2_dir);
    edit(
        &v2_dir.join("agent.json"),
        "\"displayName\": \"Pizza Line\"",
        "\"displayName\": \"Pizza Line Two\"",
    );
    edit(
        &v2_dir.join("flows/Default Start Flow/Default Start Flow.json"),
        "Pizza Line, hello!",
        "Pizza Line Two, hello!",
    );
    let server = ExportServer::start(messy_zip(&fixture("dialogflow_cx/pizza-line"))).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = cli.dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[sync]\nstore = {:?}\nsource = {:?}\ninterval_s = 1\n",
            cli.store.display().to_string(),
            server.url
        ),
    )
    .unwrap();
    let log = cli.dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(&config)
        .args(["--pack", "test", "--models-dir"])
        .arg(support::models_dir())
        .args([
            "serve",
            "--sip-listen",
            "off",
            "--audiosocket-listen",
            "off",
            "--http-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("UNDERSTUDY_WORKER_DIR", support::worker_dir())
        .env("UNDERSTUDY_LOG", "info,rsipstack=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start understudy serve");
    let mut serve = ServeProcess {
        child,
        status_url: format!("http://127.0.0.1:{port}/status"),
        log,
    };

    // Empty store: the demo bot first, then the timer pulls version 1 and swaps it in.
    let status = serve
        .wait_for_bot("Pizza Line", Duration::from_secs(300))
        .await;
    assert!(status["prompts_cached"].as_u64().unwrap() >= 8, "{status}");
    let v1 = cli.active().expect("the pull activated version 1");

    // The cloud publishes version 2.
    server.publish(messy_zip(&v2_dir), "\"v2\"");
    let published = Instant::now();
    serve
        .wait_for_bot("Pizza Line Two", Duration::from_secs(60))
        .await;
    eprintln!(
        "version 2 served {:.1} s after publishing",
        published.elapsed().as_secs_f64()
    );
    assert_ne!(cli.active().as_deref(), Some(v1.as_str()));

    // A designer rolls back from the command line.
    cli.ok(&["sync", "rollback"]);
    serve
        .wait_for_bot("Pizza Line", Duration::from_secs(60))
        .await;
    let log = std::fs::read_to_string(&serve.log).unwrap();
    assert!(
        log.contains("sync: new version live for new calls"),
        "{}",
        serve.log_tail()
    );
    assert_eq!(cli.active().as_deref(), Some(v1.as_str()));
}
