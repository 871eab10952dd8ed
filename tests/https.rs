//! HTTPS: with `[http] tls_certificate` and `tls_private_key`, `serve`
//! answers health, metrics, the admin API and media streams (WSS) over TLS
//! only, with the configured certificate (made here with openssl); a client that does not
//! trust it is refused, plain HTTP gets nothing, and a key that does not go
//! with the certificate stops `serve` before it starts, naming the files.

mod sip_support;
mod stream_support;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use sip_support::*;
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "7c1e0b9a4f2d4c6e8a0b2d4f6a8c0e2f";

#[test]
fn the_http_api_is_served_over_tls_with_the_configured_certificate() {
    let work = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(work.path());
    let token_file = work.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut serve = Serve::spawn(
        "test",
        &format!(
            "[http]\ntls_certificate = \"{cert}\"\ntls_private_key = \"{key}\"\n\
             admin_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    let base = format!("https://{}", serve.http);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // reqwest's clients are made inside the runtime that drives them.
    let _inside = rt.enter();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: &str| {
        rt.block_on(async {
            let response = trusting.get(format!("{base}{path}")).send().await?;
            let code = response.status().as_u16();
            Ok::<_, reqwest::Error>((code, response.text().await?))
        })
    };
    serve.wait_ready_by(Duration::from_secs(600), || {
        get("/readyz").is_ok_and(|(code, _)| code == 200)
    });

    // The admin API over HTTPS, with the token.
    let drain = |method: reqwest::Method| {
        rt.block_on(async {
            let r = trusting
                .request(method, format!("{base}/admin/drain"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (code, body) = drain(reqwest::Method::POST);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");
    let (code, body) = drain(reqwest::Method::DELETE);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"draining\":false"), "{body}");

    // A platform's media stream over WSS: it connects, starts a call, and
    // the bot's greeting comes back as media.
    let greeting = rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&cert).unwrap();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(serve.http).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from(LOOPBACK).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let url = format!("wss://{}/media-stream", serve.http);
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        let connected =
            serde_json::json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        let start = stream_support::twilio_start("MZwss", "CAwss", "audio/x-mulaw", 8000);
        for message in [connected, start] {
            ws.send(Message::Text(message.to_string().into()))
                .await
                .unwrap();
        }
        let media = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Text(text) = message {
                    if text.contains("\"media\"") {
                        return Some(text.to_string());
                    }
                }
            }
            None
        })
        .await;
        let _ = ws.close(None).await;
        media
    });
    assert!(
        matches!(&greeting, Ok(Some(_))),
        "no greeting audio over WSS: {greeting:?}"
    );

    // A client with only the system's roots does not trust a self-signed
    // certificate: the handshake fails and nothing is served.
    let stranger = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let refused = rt.block_on(stranger.get(format!("{base}/status")).send());
    assert!(refused.is_err(), "{refused:?}");

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let plain = http_get(serve.http, "/readyz");
    assert!(
        plain.as_ref().map_or(true, |(code, _)| *code == 0),
        "{plain:?}"
    );

    let (_, metrics) = get("/metrics").unwrap();
    for result in ["ok", "failed"] {
        assert!(
            metrics.contains(&format!(
                "understudy_http_tls_handshakes_total{{result=\"{result}\"}}"
            )),
            "{result} handshakes not counted:\n{metrics}"
        );
    }
}

#[test]
fn a_key_that_does_not_go_with_the_certificate_stops_serve() {
    let work = tempfile::tempdir().unwrap();
    let one = work.path().join("one");
    let two = work.path().join("two");
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(&two).unwrap();
    let (cert, _) = certificate(&one);
    let (_, other_key) = certificate(&two);
    let config = work.path().join("understudy.toml");
    std::fs::write(
        &config,
        format!("[http]\ntls_certificate = \"{cert}\"\ntls_private_key = \"{other_key}\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(&config)
        .args(["--pack", "test", "serve"])
        .args(["--http-listen", &format!("{LOOPBACK}:{}", free_port())])
        .args(["--sip-listen", &format!("{LOOPBACK}:{}", free_port())])
        .env("UNDERSTUDY_DATA_DIR", work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("http.tls_private_key") && stderr.contains("does not go with"),
        "{stderr}"
    );

    // Only one of the two files named: the other is asked for.
    std::fs::write(&config, format!("[http]\ntls_certificate = \"{cert}\"\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_understudy"))
        .arg("--config")
        .arg(&config)
        .args(["--pack", "test", "serve"])
        .args(["--http-listen", &format!("{LOOPBACK}:{}", free_port())])
        .env("UNDERSTUDY_DATA_DIR", work.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("http.tls_private_key is not"),
        "{stderr}"
    );
}
