//! `[http]`, `[sip]`, `[cloud]` and `[sync]`: how the appliance is
//! reached, and how it watches and follows the cloud bot.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The HTTP endpoint (`[http]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Health, readiness and metrics.
    pub listen: String,
    /// A file holding the admin API's bearer token (16+ characters). Unset:
    /// the admin API (`/admin/...`) answers 403 to everything.
    pub admin_token_file: Option<PathBuf>,
    /// With `tls_private_key`: serve HTTPS (and WSS for media streams) on
    /// `listen` with this certificate chain (PEM) instead of plain HTTP.
    pub tls_certificate: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_private_key: Option<PathBuf>,
    /// Addresses and networks that may read `/status`, `/metrics` and the
    /// reasons of `/readyz` without the admin token; from anywhere else
    /// these need it (`/healthz` and `/readyz`'s status code stay open).
    pub status_open_to: Vec<String>,
}

/// The shortest admin token accepted.
const MIN_TOKEN: usize = 16;

impl HttpConfig {
    /// The admin API's bearer token from `admin_token_file` (`None` when
    /// unset: the admin API is off); an error names the file when it cannot
    /// be read or the token is too short.
    pub fn admin_token(&self) -> Result<Option<String>> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("http.admin_token_file: cannot read {}", path.display()))?;
        let token = text.trim().to_string();
        if token.chars().count() < MIN_TOKEN || token.contains(char::is_whitespace) {
            bail!(
                "http.admin_token_file: {} must hold one token of at least {MIN_TOKEN} characters without spaces (make one: openssl rand -hex 32 > {})",
                path.display(),
                path.display()
            );
        }
        Ok(Some(token))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8080".into(),
            admin_token_file: None,
            tls_certificate: None,
            tls_private_key: None,
            status_open_to: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

/// How a caller reaches a human (see docs/sip.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Ask the caller's side to call the target (REFER); if it refuses or the
    /// transfer fails, call the target and relay the media ourselves.
    ReferThenBridge,
    /// REFER only: a refused or failed transfer ends the call.
    Refer,
    /// Always call the target and relay the media.
    Bridge,
}

/// Calls by SIP/RTP (docs/sip.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Where SIP is served, UDP and TCP on the same port (`off` disables SIP).
    pub listen: String,
    /// `udp`, `tcp`.
    pub transports: Vec<String>,
    /// The address written in Contact and SDP when the peer must use another
    /// one than the local address facing it (NAT). Default: that local address.
    pub advertised_address: Option<String>,
    /// Older name of `[calls] capacity`, still honoured: when set, it is the
    /// capacity every ingress shares.
    pub capacity: Option<usize>,
    /// Retry-After on 503, in seconds.
    pub retry_after_s: u32,
    /// RTP ports, one even port per call leg.
    pub rtp_port_min: u16,
    /// Highest RTP port (inclusive).
    pub rtp_port_max: u16,
    /// The address RTP sockets bind to (default: the SIP listen address).
    pub rtp_bind: Option<String>,
    /// No RTP for this long from a peer that should be sending ends the call.
    pub rtp_timeout_s: u64,
    /// Jitter buffer delay, and the most it may hold.
    pub jitter_target_ms: u32,
    /// Most delay the jitter buffer may build up, in ms; past it playout skips ahead (raised to at
    /// least target + 20).
    pub jitter_max_ms: u32,
    /// Send silence packets while the bot is quiet (many SBCs need continuous RTP).
    pub comfort_silence: bool,
    /// Accepted codecs, preferred first: `PCMU`, `PCMA`.
    pub codecs: Vec<String>,
    /// Where every transfer goes, overriding the bot's targets (a SIP URI).
    pub transfer_target: Option<String>,
    /// Host for targets that are numbers or names, not URIs (default: the
    /// address the call came from, i.e. the SBC).
    pub transfer_domain: Option<String>,
    /// How a transfer to a human is carried out.
    pub transfer_mode: TransferMode,
    /// How long a transfer may take (REFER until the final NOTIFY; bridge until answered).
    pub transfer_timeout_s: u64,
    /// Ring this long before answering (0: answer at once).
    pub answer_delay_ms: u64,
    /// Addresses (`192.0.2.7`) and networks (`10.1.0.0/16`) SIP may come
    /// from: the SBC, Kamailio. Empty: any. Others are refused at the socket.
    pub allow_from: Vec<String>,
    /// New requests (INVITE, OPTIONS, REGISTER... outside a dialog) allowed
    /// per second from one source, per method; past it they are dropped
    /// unanswered. 0: no limit. Requests inside a call are never limited.
    pub flood_requests_per_s: f64,
    /// How many such requests one source may send back to back.
    pub flood_burst: u32,
    /// Where SIP over TLS is served (`IP:port`, usually port 5061); `off`:
    /// no TLS. Needs `tls_certificate` and `tls_private_key`.
    pub tls_listen: String,
    /// The server certificate chain (PEM file), leaf first.
    pub tls_certificate: Option<String>,
    /// The certificate's private key (PEM file: PKCS#8, PKCS#1 or SEC1).
    pub tls_private_key: Option<String>,
    /// Digest authentication of new calls: `"user:password"` entries (the
    /// SBC's trunk credentials). Empty: no authentication.
    pub auth_users: Vec<String>,
    /// The realm of the digest challenge.
    pub auth_realm: String,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".into(),
            transports: vec!["udp".into(), "tcp".into()],
            advertised_address: None,
            capacity: None,
            retry_after_s: 10,
            rtp_port_min: 20000,
            rtp_port_max: 20999,
            rtp_bind: None,
            rtp_timeout_s: 30,
            jitter_target_ms: 40,
            jitter_max_ms: 200,
            comfort_silence: true,
            codecs: vec!["PCMU".into(), "PCMA".into()],
            transfer_target: None,
            transfer_domain: None,
            transfer_mode: TransferMode::ReferThenBridge,
            transfer_timeout_s: 30,
            answer_delay_ms: 0,
            allow_from: Vec::new(),
            flood_requests_per_s: 20.0,
            flood_burst: 40,
            tls_listen: "off".into(),
            tls_certificate: None,
            tls_private_key: None,
            auth_users: Vec::new(),
            auth_realm: "understudy".into(),
        }
    }
}

/// Who routes calls between the cloud bot and this box (docs/continuity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudMode {
    /// The SBC routes; we answer OPTIONS 200/503 and take what it sends.
    Standby,
    /// We front the cloud bot (B2BUA): calls are bridged to it while it is
    /// healthy, and the local bot takes a call over when its cloud leg fails.
    InPath,
}

/// The cloud bot, its health probes, and takeover (docs/continuity.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// Who routes calls between the cloud bot and this box.
    pub mode: CloudMode,
    /// The cloud bot's SIP URI (in-path mode), e.g. `sip:bot@10.0.0.5:5060`.
    pub uri: Option<String>,
    /// Probe the cloud bot with SIP OPTIONS to `uri`.
    pub probe_options: bool,
    /// Also probe this HTTP(S) health URL (2xx is healthy).
    pub health_url: Option<String>,
    /// Time between health probes of the cloud bot, in ms (at least 100).
    pub probe_interval_ms: u64,
    /// A probe with no answer by then has failed.
    pub probe_timeout_ms: u64,
    /// Failures in a row (probes or calls) before new calls go to the local bot.
    pub down_after: u32,
    /// Good probes in a row before a degraded cloud counts as up again.
    pub up_after: u32,
    /// A cloud that was down must be healthy this long before new calls go back to it.
    pub failback_after_s: u64,
    /// The cloud must answer a call's INVITE within this; else the local bot answers.
    pub setup_timeout_ms: u64,
    /// No RTP from the cloud leg for this long: the local bot takes the call over.
    pub rtp_timeout_ms: u64,
    /// The shortest cloud-leg RTP timeout: each call's timeout follows the
    /// cloud's packet cadence between this and `rtp_timeout_ms` (0: fixed).
    pub rtp_timeout_floor_ms: u64,
    /// Caller audio kept, so the local bot hears what the caller said since
    /// the cloud bot last spoke.
    pub recent_audio_s: u64,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            mode: CloudMode::Standby,
            uri: None,
            probe_options: true,
            health_url: None,
            probe_interval_ms: 1000,
            probe_timeout_ms: 800,
            down_after: 3,
            up_after: 3,
            failback_after_s: 30,
            setup_timeout_ms: 3000,
            rtp_timeout_ms: 500,
            rtp_timeout_floor_ms: 160,
            recent_audio_s: 8,
        }
    }
}

/// The sync agent: where bundle versions are kept and where exports come
/// from (docs/sync.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// The versioned bundle store. Default: `$UNDERSTUDY_DATA_DIR/bundles`,
    /// else `~/.local/share/understudy/bundles` (`/var/lib/understudy/bundles` on an appliance).
    pub store: Option<PathBuf>,
    /// The export to pull: a path (zip, folder, bundle file) or an http(s) URL.
    pub source: Option<String>,
    /// Seconds between pulls inside `serve` (0: pull only on demand).
    pub interval_s: u64,
    /// Share of the bundle's test conversations that must pass before a version is activated.
    pub min_pass_rate: f64,
    /// Versions kept besides the active one, the last-good one and the rollback stack.
    pub keep: usize,
    /// Activate a pulled version that validates and passes parity (false: pull only stores it).
    pub auto_activate: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            store: None,
            source: None,
            interval_s: 300,
            min_pass_rate: 0.8,
            keep: 10,
            auto_activate: true,
        }
    }
}

impl SyncConfig {
    /// The store folder, with the defaults applied.
    pub fn store_dir(&self) -> PathBuf {
        if let Some(dir) = &self.store {
            return dir.clone();
        }
        super::data_dir().join("bundles")
    }
}
