//! The node's TLS certificate and key (`[tls]`), served by every listener
//! that speaks TLS, and replaceable while the node runs (SIGHUP).

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The server's certificate and key, replaceable while the node runs: a
/// reload swaps them for new handshakes; sessions already up keep theirs.
#[derive(Debug)]
pub struct Certs {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl Certs {
    /// Loads `[tls]`'s files again; on any problem the old pair stays.
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), String> {
        let key = load_certified_key(tls)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        tracing::info!(cert = %tls.cert.display(), "TLS certificate loaded");
        Ok(())
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn load_certified_key(tls: &TlsConfig) -> Result<CertifiedKey, String> {
    let certs = std::fs::read(&tls.cert).map_err(|e| format!("{}: {e}", tls.cert.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut certs.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", tls.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", tls.cert.display()));
    }
    let key = std::fs::read(&tls.key).map_err(|e| format!("{}: {e}", tls.key.display()))?;
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| format!("{}: {e}", tls.key.display()))?
        .ok_or_else(|| format!("{}: no private key in it", tls.key.display()))?;
    let signer =
        rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| format!("{}: {e}", tls.key.display()))?;
    let pair = CertifiedKey::new(certs, signer);
    pair.keys_match().map_err(|e| format!("TLS certificate and key: {e}"))?;
    Ok(pair)
}

/// A TLS acceptor for `[tls]`, and the handle that reloads its certificate.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<(TlsAcceptor, Arc<Certs>), String> {
    let certs = Arc::new(Certs { current: std::sync::RwLock::new(Arc::new(load_certified_key(tls)?)) });
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_cert_resolver(certs.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), certs))
}
