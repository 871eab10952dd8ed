//! Where exports come from: a local path (zip, folder or bundle file) or
//! an HTTP(S) URL the cloud side publishes exports at. URLs are polled
//! with conditional requests (ETag / If-Modified-Since), so an unchanged
//! export costs one 304. A download that is cut short, an error status
//! or an unreachable host is an error for this pull only: nothing in the
//! store changes.

use super::store::SourceState;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// Most bytes a download may have (an export is a few MB).
const MAX_DOWNLOAD: usize = 256 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an export is pulled from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local zip, folder or bundle file.
    Path(PathBuf),
    /// An `http://` or `https://` URL, polled with conditional requests.
    Http(String),
}

/// What a fetch found.
pub enum Fetched {
    /// The server says the export did not change since the last pull (304).
    NotModified,
    /// A local export, to import from disk.
    Path(PathBuf),
    /// A downloaded export, with the validators to send next time.
    Download {
        /// The export as downloaded.
        bytes: Vec<u8>,
        /// The response's `ETag`, for `If-None-Match` next time.
        etag: Option<String>,
        /// The response's `Last-Modified`, for `If-Modified-Since` next time.
        last_modified: Option<String>,
    },
}

impl Source {
    /// An `http(s)://` URL or a path (a `file://` prefix is dropped); never fails, the fetch
    /// checks.
    pub fn parse(spec: &str) -> Source {
        let spec = spec.trim();
        if spec.starts_with("http://") || spec.starts_with("https://") {
            Source::Http(spec.to_string())
        } else {
            Source::Path(PathBuf::from(spec.strip_prefix("file://").unwrap_or(spec)))
        }
    }

    /// How the source is named in the store and in status.
    pub fn key(&self) -> String {
        match self {
            Source::Path(p) => std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string(),
            Source::Http(u) => u.clone(),
        }
    }

    /// Fetch the export; `state` holds the validators of the last pull.
    /// `conditional: false` downloads even when unchanged (`--force`).
    pub async fn fetch(&self, state: &SourceState, conditional: bool) -> Result<Fetched> {
        match self {
            Source::Path(p) => {
                if !p.exists() {
                    bail!(
                        "{} does not exist (check --from or [sync] source)",
                        p.display()
                    );
                }
                Ok(Fetched::Path(p.clone()))
            }
            Source::Http(url) => fetch_http(url, state, conditional).await,
        }
    }
}

fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("understudy-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

async fn fetch_http(url: &str, state: &SourceState, conditional: bool) -> Result<Fetched> {
    let mut req = client()?.get(url);
    if conditional {
        if let Some(etag) = &state.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &state.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
        }
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {}", error_chain(&e)))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        bail!("{url} answered {status}; the active bundle keeps serving (check the URL and the publishing side)");
    }
    let header = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let expected = resp.content_length();
    let mut bytes = Vec::with_capacity(expected.unwrap_or(0).min(MAX_DOWNLOAD as u64) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_DOWNLOAD {
                    bail!("{url} sent more than {} MiB: that is not a bot export", MAX_DOWNLOAD >> 20);
                }
            }
            Ok(None) => break,
            Err(e) => bail!(
                "the download of {url} broke off after {} bytes{}: {} (truncated download; the next pull tries again)",
                bytes.len(),
                expected.map(|n| format!(" of {n}")).unwrap_or_default(),
                error_chain(&e)
            ),
        }
    }
    if let Some(n) = expected {
        if bytes.len() as u64 != n {
            bail!("truncated download: {url} announced {n} bytes and sent {}; the next pull tries again", bytes.len());
        }
    }
    Ok(Fetched::Download {
        bytes,
        etag,
        last_modified,
    })
}

/// An error and its causes on one line (reqwest's top error alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
