//! Where SMTP mail for a domain goes: the configured legacy host, else the
//! domain's MX hosts in RFC 5321 §5.1 order (lowest preference first, equal
//! preferences shuffled), else — when it has no MX — the domain itself
//! (its A/AAAA records). A "null MX" (RFC 7505) means it takes no mail.

use rand::seq::SliceRandom;

use crate::context::Shared;
use crate::discovery::split_host_port;
use crate::dns::DnsError;
use crate::routing::RouteError;

/// Why no host can be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHost {
    /// Final: the domain does not exist or takes no mail.
    Permanent(String),
    /// DNS failed for now.
    Temporary(String),
}

/// Orders MX records: by preference, equal ones in random order.
pub fn order_mx(mut records: Vec<(u16, String)>, rng: &mut impl rand::Rng) -> Vec<String> {
    records.shuffle(rng);
    records.sort_by_key(|(pref, _)| *pref);
    records.into_iter().map(|(_, h)| h).collect()
}

/// The hosts to try for `domain`, best first, with their ports.
pub async fn smtp_hosts(s: &Shared, domain: &str) -> Result<Vec<(String, u16)>, NoHost> {
    if let Some(h) = s.dir().config.legacy_host(domain) {
        let hp = split_host_port(h).ok_or_else(|| NoHost::Permanent(format!("bad legacy host {h}")))?;
        return Ok(vec![hp]);
    }
    let port = s.config.smtp.relay_port;
    let dns = s.peers.locator().dns();
    match dns.mx(domain).await {
        Ok(records) if records.iter().any(|(_, h)| h == ".") => {
            Err(NoHost::Permanent(format!("{domain} accepts no mail (null MX)")))
        }
        Ok(records) if !records.is_empty() => {
            Ok(order_mx(records, &mut rand::rng()).into_iter().map(|h| (h, port)).collect())
        }
        Ok(_) | Err(DnsError::NoRecords) => match dns.ips(domain).await {
            Ok(ips) if !ips.is_empty() => Ok(vec![(domain.to_string(), port)]),
            Ok(_) | Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => {
                Err(NoHost::Permanent(format!("{domain} has no MX and no address")))
            }
            Err(DnsError::Temporary(e)) => Err(NoHost::Temporary(e)),
        },
        Err(DnsError::NxDomain) => Err(NoHost::Permanent(format!("{domain} does not exist"))),
        Err(DnsError::Temporary(e)) => Err(NoHost::Temporary(format!("MX lookup for {domain}: {e}"))),
    }
}

/// Refuses a legacy route for `domain` whose SMTP hosts include this
/// gateway itself (mail would come straight back), or that has no SMTP host
/// at all. DNS failing for now is a refusal too: try again.
pub async fn check_loop(s: &Shared, domain: &str) -> Result<(), RouteError> {
    let hosts = smtp_hosts(s, domain).await.map_err(|e| match e {
        NoHost::Permanent(m) | NoHost::Temporary(m) => RouteError::NoHost(domain.to_string(), m),
    })?;
    let dns = s.peers.locator().dns();
    for (host, port) in hosts {
        let ips = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => dns.ips(&host).await.unwrap_or_default(),
        };
        if ips.iter().any(|ip| s.config.smtp.is_own_listener(*ip, port)) {
            return Err(RouteError::Loop(format!("{domain}'s SMTP host {host}:{port} is this gateway")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn preference_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let recs = vec![(20, "b".to_string()), (10, "a".to_string()), (30, "c".to_string()), (20, "b2".to_string())];
        for _ in 0..20 {
            let o = order_mx(recs.clone(), &mut rng);
            assert_eq!(o[0], "a");
            assert!(o[1].starts_with('b') && o[2].starts_with('b'));
            assert_eq!(o[3], "c");
        }
    }
}
