//! One lettre transport per destination (address, port, TLS name, how TLS
//! is required, credentials), each with its own connection pool and a cap
//! on concurrent deliveries to that host — a legacy host is never sent more
//! than `relay_concurrency` at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::sync::Semaphore;

use crate::config::Password;

/// How a connection to a host must be secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HopTls {
    /// STARTTLS when offered, any certificate (RFC 7435); else plain.
    Opportunistic,
    /// STARTTLS with a certificate valid for the host name, or nothing.
    Required,
    /// TLS from the first octet, certificate verified (RFC 8314).
    Implicit,
}

/// One host to try and how to talk to it.
#[derive(Debug, Clone)]
pub struct Hop {
    pub host: String,
    pub port: u16,
    pub tls: HopTls,
    /// AUTH for an upstream relay.
    pub credentials: Option<(String, Password)>,
    /// Why TLS is required, for the deferral's text.
    pub because: Option<String>,
}

impl Hop {
    pub fn plain(host: String, port: u16) -> Hop {
        Hop { host, port, tls: HopTls::Opportunistic, credentials: None, because: None }
    }
}

type Key = (IpAddr, u16, String, HopTls, Option<(String, Password)>);

/// A destination's transport and its concurrency limit.
#[derive(Clone)]
pub struct Destination {
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    pub slots: Arc<Semaphore>,
}

pub struct Transports {
    by_host: Mutex<HashMap<Key, Destination>>,
    /// PEM of roots trusted beside the public ones (`[tls] ca`).
    extra_roots: Option<Vec<u8>>,
}

impl Transports {
    pub fn new(extra_roots: Option<Vec<u8>>) -> Transports {
        Transports { by_host: Mutex::default(), extra_roots }
    }

    /// The transport for `hop` at `ip`, made on first use.
    pub fn get(
        &self,
        ip: IpAddr,
        hop: &Hop,
        hello: &str,
        timeout: Duration,
        per_host: usize,
    ) -> Result<Destination, String> {
        let key = (ip, hop.port, hop.host.clone(), hop.tls, hop.credentials.clone());
        let mut map = self.by_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&key) {
            return Ok(d.clone());
        }
        let mut params = TlsParameters::builder(hop.host.clone());
        if hop.tls == HopTls::Opportunistic {
            // Opportunistic TLS protects against passive reading only; a
            // certificate it cannot verify is no reason to send in clear.
            params = params.dangerous_accept_invalid_certs(true);
        } else if let Some(pem) = &self.extra_roots {
            params = params.add_root_certificate(Certificate::from_pem(pem).map_err(|e| e.to_string())?);
        }
        let params = params.build_rustls().map_err(|e| e.to_string())?;
        let tls = match hop.tls {
            HopTls::Opportunistic => Tls::Opportunistic(params),
            HopTls::Required => Tls::Required(params),
            HopTls::Implicit => Tls::Wrapper(params),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
            .port(hop.port)
            .hello_name(ClientId::Domain(hello.to_string()))
            .tls(tls)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(per_host as u32).idle_timeout(Duration::from_secs(60)));
        if let Some((user, Password(password))) = &hop.credentials {
            builder = builder
                .credentials(Credentials::new(user.clone(), password.clone()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let d = Destination { transport: builder.build(), slots: Arc::new(Semaphore::new(per_host)) };
        map.insert(key, d.clone());
        Ok(d)
    }
}
