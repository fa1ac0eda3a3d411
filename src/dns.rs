//! DNS: the [`Dns`] trait the rest of imgate resolves through, its hickory
//! implementation, and RFC 2782 SRV target selection (pure, unit-tested).
//! Tests point the hickory resolver at a real in-process DNS server.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use rand::Rng;

use crate::config::DnsConfig;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a lookup failed, in the terms delivery decisions need.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist (permanent).
    #[error("no such domain")]
    NxDomain,
    /// The name exists but has no record of that type (permanent).
    #[error("no such record")]
    NoRecords,
    /// No answer, SERVFAIL, timeout: try again later.
    #[error("DNS temporarily failed: {0}")]
    Temporary(String),
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Target host name without the trailing dot; `"."` means "no service".
    pub target: String,
}

pub trait Dns: Send + Sync + 'static {
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Srv>, DnsError>>;
    /// MX records as (preference, exchange host without the final dot).
    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>>;
    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>>;
    /// TXT records, each one string (its character-strings joined).
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, DnsError>>;
}

/// The hickory configuration for `config`: the configured nameservers, or
/// the system's. Shared by [`HickoryDns`] and the SPF/DKIM checker.
pub fn resolver_parts(config: &DnsConfig) -> Result<(ResolverConfig, ResolverOpts), String> {
    let (rc, mut opts) = if config.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf().map_err(|e| format!("system resolver configuration: {e}"))?
    } else {
        let servers = config
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        (ResolverConfig::from_name_servers(servers), ResolverOpts::default())
    };
    opts.timeout = config.timeout;
    opts.attempts = 2;
    opts.ndots = 0;
    if !config.nameservers.is_empty() {
        // Explicit nameservers are for private zones and tests, where
        // records change under us: do not cache.
        opts.cache_size = 0;
    }
    Ok((rc, opts))
}

/// [`Dns`] over hickory-resolver.
pub struct HickoryDns {
    resolver: TokioResolver,
}

impl HickoryDns {
    /// The configured nameservers, or the system's when none are configured.
    pub fn new(config: &DnsConfig) -> Result<HickoryDns, String> {
        let (rc, opts) = resolver_parts(config)?;
        let resolver = Resolver::builder_with_config(rc, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(HickoryDns { resolver })
    }
}

fn classify(e: NetError) -> DnsError {
    match &e {
        NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => {
            if nr.response_code == ResponseCode::NXDomain {
                DnsError::NxDomain
            } else {
                DnsError::NoRecords
            }
        }
        _ => DnsError::Temporary(e.to_string()),
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_string() } else { format!("{name}.") }
}

impl Dns for HickoryDns {
    fn srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Srv>, DnsError>> {
        Box::pin(async move {
            let lookup = self.resolver.srv_lookup(fqdn(name)).await.map_err(classify)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: {
                            let t = srv.target.to_ascii();
                            if t == "." { t } else { t.trim_end_matches('.').to_lowercase() }
                        },
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn mx<'a>(&'a self, domain: &'a str) -> BoxFuture<'a, Result<Vec<(u16, String)>, DnsError>> {
        Box::pin(async move {
            let lookup = self.resolver.mx_lookup(fqdn(domain)).await.map_err(classify)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => {
                        let host = mx.exchange.to_ascii();
                        let host = if host == "." { host } else { host.trim_end_matches('.').to_lowercase() };
                        Some((mx.preference, host))
                    }
                    _ => None,
                })
                .collect())
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, DnsError>> {
        Box::pin(async move {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![ip]);
            }
            let lookup = self.resolver.lookup_ip(fqdn(host)).await.map_err(classify)?;
            Ok(lookup.iter().collect())
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, DnsError>> {
        Box::pin(async move {
            let lookup = self.resolver.txt_lookup(fqdn(name)).await.map_err(classify)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
                    }
                    _ => None,
                })
                .collect())
        })
    }
}

/// Orders SRV records as RFC 2782 prescribes: ascending priority, and
/// within a priority a weighted random order (weight 0 rarely first).
pub fn order_srv(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut i = 0;
    while i < records.len() {
        let prio = records[i].priority;
        let mut group: Vec<Srv> = records[i..].iter().take_while(|r| r.priority == prio).cloned().collect();
        i += group.len();
        // RFC 2782: zero-weight records first, then pick by running sums.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 { 0 } else { rng.random_range(0..=total) };
            let mut running = 0u32;
            let idx = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(idx));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv { priority, weight, port: 1, target: target.into() }
    }

    #[test]
    fn priority_first_then_weight() {
        let recs = vec![srv(20, 0, "c"), srv(10, 1, "a"), srv(10, 99, "b"), srv(30, 5, "d")];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b_first = 0;
        for _ in 0..1000 {
            let o = order_srv(recs.clone(), &mut rng);
            let names: Vec<&str> = o.iter().map(|r| r.target.as_str()).collect();
            assert_eq!(&names[2..], &["c", "d"]);
            if names[0] == "b" {
                b_first += 1;
            }
        }
        // Weight 99 against 1: b leads about 99% of the time.
        assert!(b_first > 950, "{b_first}");
    }

    #[test]
    fn all_zero_weights_still_all_listed() {
        let recs = vec![srv(1, 0, "a"), srv(1, 0, "b"), srv(1, 0, "c")];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut o: Vec<String> = order_srv(recs, &mut rng).into_iter().map(|r| r.target).collect();
        o.sort();
        assert_eq!(o, ["a", "b", "c"]);
    }
}
