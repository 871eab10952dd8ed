//! HTTPS: the HTTP listener behind TLS when `[http] tls_certificate` and
//! `tls_private_key` are set. Handshakes run in their own tasks, so a slow
//! or silent client never holds up the next one; a failed handshake is
//! counted and logged, never served.

use crate::config::HttpConfig;
use crate::metrics;
use crate::net::tls::Identity;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The server configuration for HTTPS when `[http]` names a certificate or a
/// key (then both must be good), else `None`.
pub fn server_config(config: &HttpConfig) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    if config.tls_certificate.is_none() && config.tls_private_key.is_none() {
        return Ok(None);
    }
    let identity = Identity::load(
        "http",
        "HTTPS is asked for (http.tls_certificate or http.tls_private_key is set)",
        config.tls_certificate.as_deref(),
        config.tls_private_key.as_deref(),
    )?;
    identity.server_config(&[b"http/1.1"]).map(Some)
}

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted connections with their handshake done, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Take TLS connections on `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!(error = %e, "HTTPS: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let result =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    let outcome = match result {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                            "ok"
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "HTTPS: handshake failed");
                            "failed"
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "HTTPS: handshake timed out");
                            "timeout"
                        }
                    };
                    metrics::counter_inc(
                        "understudy_http_tls_handshakes_total",
                        &[("result", outcome)],
                    );
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
