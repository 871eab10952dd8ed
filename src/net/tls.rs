//! TLS identities: the certificate chain and private key (PEM files) a
//! listener presents. They are read and checked when `serve` starts, so a
//! wrong file stops it with the setting's and the file's names instead of
//! failing at the first handshake. SIP (`[sip] tls_*`) and HTTP
//! (`[http] tls_*`) share this.

use anyhow::{bail, Context, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A certificate chain and its private key, PEM, checked.
#[derive(Clone)]
pub struct Identity {
    /// The certificate chain, PEM.
    pub certificate: Vec<u8>,
    /// Its private key, PEM.
    pub private_key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

impl Identity {
    /// Read `{section}.tls_certificate` and `{section}.tls_private_key`
    /// (`certificate`, `private_key`). `wanted_by` says what needs them ("sip.tls_listen is
    /// set") when one is missing. Errors name the setting and the file.
    pub fn load(
        section: &str,
        wanted_by: &str,
        certificate: Option<&Path>,
        private_key: Option<&Path>,
    ) -> Result<Identity> {
        let file = |field: &str, path: Option<&Path>| -> Result<(String, Vec<u8>)> {
            let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
                bail!("{wanted_by} but {section}.{field} is not: name the PEM file");
            };
            let shown = path.display().to_string();
            let bytes = std::fs::read(path)
                .with_context(|| format!("{section}.{field}: cannot read {shown}"))?;
            Ok((shown, bytes))
        };
        let (cert_path, certificate) = file("tls_certificate", certificate)?;
        let (key_path, private_key) = file("tls_private_key", private_key)?;
        let certs = CertificateDer::pem_slice_iter(&certificate)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!("{section}.tls_certificate: {cert_path} is not a PEM certificate file")
            })?;
        if certs.is_empty() {
            bail!("{section}.tls_certificate: {cert_path} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\")");
        }
        PrivateKeyDer::from_pem_slice(&private_key).with_context(|| {
            format!("{section}.tls_private_key: {key_path} holds no private key in PEM (PKCS#8, PKCS#1 or SEC1)")
        })?;
        let identity = Identity {
            certificate,
            private_key,
        };
        // A key that does not belong to the certificate fails here, not at a handshake.
        identity.server_config(&[]).with_context(|| {
            format!("{section}.tls_private_key: {key_path} does not go with {cert_path}")
        })?;
        Ok(identity)
    }

    /// A rustls server configuration presenting this identity, offering
    /// `alpn` protocols, asking clients for no certificate.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
        let chain = CertificateDer::pem_slice_iter(&self.certificate)
            .collect::<Result<Vec<_>, _>>()
            .context("the certificate is not PEM")?;
        let key = PrivateKeyDer::from_pem_slice(&self.private_key).context("the key is not PEM")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}
