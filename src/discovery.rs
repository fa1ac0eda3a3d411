//! Where a domain's IM2000 services are: a static `[peers]` entry, else the
//! domain's SRV records (RFC 2782 order). Also decides, per endpoint, whether
//! plain HTTP is allowed (a peer marked `plain`, or loopback when
//! `plain_to_loopback`) or HTTPS is required.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{Config, Peer};
use crate::dns::{Dns, DnsError, order_srv};
use crate::proto::api::{SRV_NOTIFY, SRV_STORE};

/// Which public service to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Recipient access at a message store.
    Store,
    /// Notification submission at a notification agent.
    Notify,
}

/// A place to send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub plain: bool,
}

impl Endpoint {
    /// `http(s)://host:port`.
    pub fn base_url(&self) -> String {
        let scheme = if self.plain { "http" } else { "https" };
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}", self.port),
            _ => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }
}

/// Why a service could not be located; the notification vocabulary follows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    #[error("domain {0} does not exist")]
    BadDomain(String),
    #[error("domain {0} publishes no {1} service")]
    NoService(String, &'static str),
    #[error("no server of {0} could be resolved: {1}")]
    NoServer(String, String),
    #[error("could not locate {0}: {1}")]
    Temporary(String, String),
}

impl LocateError {
    /// Whether trying again later may help.
    pub fn is_temporary(&self) -> bool {
        matches!(self, Self::Temporary(..) | Self::NoServer(..))
    }
}

#[derive(Clone)]
pub struct Locator {
    dns: Arc<dyn Dns>,
    peers: BTreeMap<String, Peer>,
    plain_to_loopback: bool,
}

impl Locator {
    pub fn new(config: &Config, dns: Arc<dyn Dns>) -> Locator {
        Locator { dns, peers: config.peers.clone(), plain_to_loopback: config.im2000.plain_to_loopback }
    }

    pub fn dns(&self) -> &Arc<dyn Dns> {
        &self.dns
    }

    /// Endpoints for `service` of `domain`, best first.
    pub async fn locate(&self, service: Service, domain: &str) -> Result<Vec<Endpoint>, LocateError> {
        let domain = domain.to_lowercase();
        let (label, what) = match service {
            Service::Store => (SRV_STORE, "message store"),
            Service::Notify => (SRV_NOTIFY, "notification"),
        };
        if let Some(peer) = self.peers.get(&domain) {
            let fixed = match service {
                Service::Store => &peer.store,
                Service::Notify => &peer.notify,
            };
            if let Some(hp) = fixed {
                let (host, port) = split_host_port(hp)
                    .ok_or_else(|| LocateError::Temporary(domain.clone(), format!("bad peer address {hp}")))?;
                let plain = peer.plain || (self.plain_to_loopback && is_loopback_host(&host));
                return Ok(vec![Endpoint { host, port, plain }]);
            }
        }
        let name = format!("{label}.{domain}");
        let records = match self.dns.srv(&name).await {
            Ok(r) => r,
            Err(DnsError::NxDomain) => {
                // NXDOMAIN for the service name: does the domain exist at all?
                return Err(match self.dns.ips(&domain).await {
                    Err(DnsError::NxDomain) => LocateError::BadDomain(domain),
                    _ => LocateError::NoService(domain, what),
                });
            }
            Err(DnsError::NoRecords) => return Err(LocateError::NoService(domain, what)),
            Err(DnsError::Temporary(e)) => return Err(LocateError::Temporary(domain, e)),
        };
        if records.is_empty() || (records.len() == 1 && records[0].target == ".") {
            return Err(LocateError::NoService(domain, what));
        }
        let ordered = order_srv(records, &mut rand::rng());
        let mut out = Vec::new();
        let mut last_err = String::from("no targets");
        for r in ordered.into_iter().filter(|r| r.target != ".") {
            match self.dns.ips(&r.target).await {
                Ok(ips) if !ips.is_empty() => {
                    let plain = self.plain_to_loopback && ips.iter().all(IpAddr::is_loopback);
                    out.push(Endpoint { host: r.target, port: r.port, plain });
                }
                Ok(_) => last_err = format!("{} has no address", r.target),
                Err(e) => last_err = format!("{}: {e}", r.target),
            }
        }
        if out.is_empty() {
            return Err(LocateError::NoServer(domain, last_err));
        }
        Ok(out)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Splits `HOST:PORT` or `[V6]:PORT`.
pub fn split_host_port(s: &str) -> Option<(String, u16)> {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    let (h, p) = s.rsplit_once(':')?;
    Some((h.to_lowercase(), p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports() {
        assert_eq!(split_host_port("127.0.0.1:80"), Some(("127.0.0.1".into(), 80)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(split_host_port("Node.One.test:2580"), Some(("node.one.test".into(), 2580)));
        assert_eq!(split_host_port("nohost"), None);
        let e = Endpoint { host: "::1".into(), port: 5, plain: true };
        assert_eq!(e.base_url(), "http://[::1]:5");
        let e = Endpoint { host: "a.test".into(), port: 5, plain: false };
        assert_eq!(e.base_url(), "https://a.test:5");
    }
}
