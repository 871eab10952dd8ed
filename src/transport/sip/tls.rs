//! SIP over TLS: the listener's certificate and key, read and checked when
//! `serve` starts so a wrong file stops it with the file's name, not a log
//! line at the first caller's handshake.

use crate::config::SipConfig;
use anyhow::{bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;

/// The `[sip] tls_*` settings, checked.
#[derive(Clone)]
pub struct TlsSettings {
    /// Where SIP over TLS is served.
    pub listen: SocketAddr,
    /// The certificate chain, PEM.
    pub certificate: Vec<u8>,
    /// Its private key, PEM.
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for TlsSettings {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
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
        let file = |field: &str, path: &Option<String>| -> Result<(String, Vec<u8>)> {
            let Some(path) = path.as_deref().filter(|p| !p.trim().is_empty()) else {
                bail!("sip.tls_listen is set but sip.{field} is not: name the PEM file");
            };
            let bytes =
                std::fs::read(path).with_context(|| format!("sip.{field}: cannot read {path}"))?;
            Ok((path.to_string(), bytes))
        };
        let (cert_path, certificate) = file("tls_certificate", &c.tls_certificate)?;
        let (key_path, private_key) = file("tls_private_key", &c.tls_private_key)?;
        let certs = CertificateDer::pem_slice_iter(&certificate)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!("sip.tls_certificate: {cert_path} is not a PEM certificate file")
            })?;
        if certs.is_empty() {
            bail!("sip.tls_certificate: {cert_path} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\")");
        }
        PrivateKeyDer::from_pem_slice(&private_key).with_context(|| {
            format!("sip.tls_private_key: {key_path} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1)")
        })?;
        Ok(Some(TlsSettings {
            listen,
            certificate,
            private_key,
        }))
    }

    /// The listener's configuration for rsipstack.
    pub fn rsip_config(&self) -> rsipstack::transport::tls::TlsConfig {
        rsipstack::transport::tls::TlsConfig {
            cert: Some(self.certificate.clone()),
            key: Some(self.private_key.clone()),
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
