//! Where a domain's IM2000 services are: a static `[peers]` entry, else the
//! domain's SRV records (RFC 2782 order). Also decides, per endpoint, whether
//! plain HTTP is allowed (a peer marked `plain`, or loopback when
//! `plain_to_loopback`) or HTTPS is required.
//!
//! DNS is anyone's to write, so a peer found through it must be on a public
//! address: loopback, private, link-local and the other special ranges are
//! refused ([`is_public`]) unless `im2000.private_peers` allows them (labs,
//! tests) or `[peers]` names the domain (the operator's word). The check is
//! made on the addresses that are connected to: a plain endpoint is one
//! checked address, and for HTTPS the client's resolver ([`PeerDns`])
//! applies the same rule when it connects.

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
    /// The checked address to connect to (plain HTTP, which has no name to
    /// verify); `None`: the host name, resolved when connecting.
    pub addr: Option<IpAddr>,
}

impl Endpoint {
    /// `http(s)://host:port`, with the checked address for the host when
    /// there is one.
    pub fn base_url(&self) -> String {
        let scheme = if self.plain { "http" } else { "https" };
        let host = self.addr.map_or_else(|| self.host.clone(), |a| a.to_string());
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("{scheme}://[{ip}]:{}", self.port),
            _ => format!("{scheme}://{host}:{}", self.port),
        }
    }
}

/// Whether `ip` is an address on the public internet: not loopback,
/// private, shared (CGNAT), link-local, unspecified, multicast, broadcast,
/// documentation, benchmarking or reserved — nor an IPv6 form of one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
                || (seg[0] == 0x64 && seg[1] == 0xff9b)
                || seg[..6] == [0, 0, 0, 0, 0, 0])
        }
    }
}

/// The rule for addresses of peers found through DNS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `im2000.private_peers`: any address will do.
    pub allow_private: bool,
}

impl AddressPolicy {
    pub fn allows(self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
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
    policy: AddressPolicy,
}

impl Locator {
    pub fn new(config: &Config, dns: Arc<dyn Dns>) -> Locator {
        Locator {
            dns,
            peers: config.peers.clone(),
            plain_to_loopback: config.im2000.plain_to_loopback,
            policy: AddressPolicy { allow_private: config.im2000.private_peers },
        }
    }

    pub fn dns(&self) -> &Arc<dyn Dns> {
        &self.dns
    }

    /// The resolver the HTTP client connects through: the node's DNS, with
    /// the address rule applied to every host but the `[peers]` ones.
    pub fn connecting_dns(&self) -> PeerDns {
        let operator = self
            .peers
            .values()
            .flat_map(|p| [&p.store, &p.notify])
            .filter_map(|hp| hp.as_deref().and_then(split_host_port).map(|(h, _)| h))
            .collect();
        PeerDns { dns: self.dns.clone(), policy: self.policy, operator: Arc::new(operator) }
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
                return Ok(vec![Endpoint { host, port, plain, addr: None }]);
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
                    let allowed: Vec<IpAddr> = ips.into_iter().filter(|ip| self.policy.allows(*ip)).collect();
                    if allowed.is_empty() {
                        last_err = format!("{} has no public address", r.target);
                    } else if self.plain_to_loopback && allowed.iter().all(IpAddr::is_loopback) {
                        // Plain HTTP goes to the very addresses checked here.
                        for ip in allowed {
                            out.push(Endpoint { host: r.target.clone(), port: r.port, plain: true, addr: Some(ip) });
                        }
                    } else {
                        out.push(Endpoint { host: r.target, port: r.port, plain: false, addr: None });
                    }
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

/// A reqwest resolver over the node's [`Dns`] that refuses the addresses
/// [`AddressPolicy`] refuses, except for hosts the operator named in
/// `[peers]`: the address the client connects to is one that was checked.
pub struct PeerDns {
    dns: Arc<dyn Dns>,
    policy: AddressPolicy,
    operator: Arc<std::collections::BTreeSet<String>>,
}

impl reqwest::dns::Resolve for PeerDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (dns, policy) = (self.dns.clone(), self.policy);
        let host = name.as_str().to_lowercase();
        let trusted = self.operator.contains(&host);
        Box::pin(async move {
            let ips = dns.ips(&host).await.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: Vec<std::net::SocketAddr> = ips
                .into_iter()
                .filter(|ip| trusted || policy.allows(*ip))
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
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
        let e = Endpoint { host: "::1".into(), port: 5, plain: true, addr: None };
        assert_eq!(e.base_url(), "http://[::1]:5");
        let e = Endpoint { host: "a.test".into(), port: 5, plain: false, addr: None };
        assert_eq!(e.base_url(), "https://a.test:5");
        let e = Endpoint { host: "a.test".into(), port: 5, plain: true, addr: Some("127.0.0.2".parse().unwrap()) };
        assert_eq!(e.base_url(), "http://127.0.0.2:5", "plain HTTP goes to the checked address");
    }

    #[test]
    fn public_addresses() {
        let cases = [
            ("8.8.8.8", true),
            ("2a00:1450::1", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
            ("224.0.0.1", false),
            ("192.0.2.1", false),
            ("198.18.0.1", false),
            ("::1", false),
            ("::", false),
            ("fe80::1", false),
            ("fd00::1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("2001:db8::1", false),
            ("::127.0.0.1", false),
        ];
        for (ip, public) in cases {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
        assert!(AddressPolicy { allow_private: true }.allows("127.0.0.1".parse().unwrap()));
    }
}
