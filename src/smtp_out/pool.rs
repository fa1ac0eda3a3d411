//! One lettre transport per destination (address, port, TLS name), each with
//! its own connection pool and a cap on concurrent deliveries to that host —
//! a legacy host is never sent more than `relay_concurrency` at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::sync::Semaphore;

type Key = (IpAddr, u16, String);

/// A destination's transport and its concurrency limit.
#[derive(Clone)]
pub struct Destination {
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    pub slots: Arc<Semaphore>,
}

#[derive(Default)]
pub struct Transports {
    by_host: Mutex<HashMap<Key, Destination>>,
}

impl Transports {
    /// The transport for `ip:port` speaking TLS as `host`, made on first use.
    pub fn get(
        &self,
        ip: IpAddr,
        port: u16,
        host: &str,
        hello: &str,
        timeout: Duration,
        per_host: usize,
    ) -> Result<Destination, String> {
        let key = (ip, port, host.to_string());
        let mut map = self.by_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&key) {
            return Ok(d.clone());
        }
        let tls = TlsParameters::new(host.to_string()).map_err(|e| e.to_string())?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
            .port(port)
            .hello_name(ClientId::Domain(hello.to_string()))
            .tls(Tls::Opportunistic(tls))
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(per_host as u32).idle_timeout(Duration::from_secs(60)))
            .build();
        let d = Destination { transport, slots: Arc::new(Semaphore::new(per_host)) };
        map.insert(key, d.clone());
        Ok(d)
    }
}
