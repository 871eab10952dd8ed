//! SIP over TLS: the listener's certificate and key, read and checked when
//! `serve` starts so a wrong file stops it with the file's name, not a log
//! line at the first caller's handshake.

use crate::config::SipConfig;
use crate::net::tls::Identity;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::Path;

/// The `[sip] tls_*` settings, checked.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    /// Where SIP over TLS is served.
    pub listen: SocketAddr,
    /// The certificate and key it presents.
    pub identity: Identity,
}

impl TlsSettings {
    /// `None` when `tls_listen` is `off`; an error naming the field or file
    /// when the address, the certificate or the key is wrong.
    pub fn from_config(c: &SipConfig) -> Result<Option<TlsSettings>> {
        if c.tls_listen.trim().eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let listen: SocketAddr = c.tls_listen.parse().with_context(|| {
            format!(
                "sip.tls_listen {:?} is not an address like 0.0.0.0:5061 (or \"off\")",
                c.tls_listen
            )
        })?;
        let identity = Identity::load(
            "sip",
            "sip.tls_listen is set",
            c.tls_certificate.as_deref().map(Path::new),
            c.tls_private_key.as_deref().map(Path::new),
        )?;
        Ok(Some(TlsSettings { listen, identity }))
    }

    /// The listener's configuration for rsipstack.
    pub fn rsip_config(&self) -> rsipstack::transport::tls::TlsConfig {
        rsipstack::transport::tls::TlsConfig {
            cert: Some(self.identity.certificate.clone()),
            key: Some(self.identity.private_key.clone()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cert: &str, key: &str) -> SipConfig {
        SipConfig {
            tls_listen: "127.0.0.1:5061".into(),
            tls_certificate: Some(cert.into()),
            tls_private_key: Some(key.into()),
            ..Default::default()
        }
    }

    #[test]
    fn off_by_default_and_wrong_files_are_named() {
        assert!(TlsSettings::from_config(&SipConfig::default())
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_str().unwrap();
        let e = TlsSettings::from_config(&config(junk, junk)).unwrap_err();
        assert!(format!("{e:#}").contains("holds no certificate"), "{e:#}");
        let e = TlsSettings::from_config(&config("/nonexistent/cert.pem", junk)).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read /nonexistent/cert.pem"),
            "{e:#}"
        );
        let e = TlsSettings::from_config(&SipConfig {
            tls_listen: "127.0.0.1:5061".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("sip.tls_certificate is not"),
            "{e:#}"
        );
        let e = TlsSettings::from_config(&SipConfig {
            tls_listen: "tls.example:5061".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("sip.tls_listen"), "{e:#}");
    }
}
