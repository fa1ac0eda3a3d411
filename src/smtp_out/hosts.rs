//! Where SMTP mail for a domain goes: the configured legacy host, else the
//! sender domain's upstream relay, else the domain's MX hosts in RFC 5321
//! §5.1 order (lowest preference first, equal preferences shuffled), else —
//! when it has no MX — the domain itself (its A/AAAA records). A "null MX"
//! (RFC 7505) means it takes no mail. With each host goes how TLS is
//! required of it: by the relay's settings, the destination's configured
//! policy, or the domain's MTA-STS policy.

use rand::seq::SliceRandom;

use crate::config::{RelayTls, TlsPolicy};
use crate::context::Shared;
use crate::discovery::split_host_port;
use crate::dns::DnsError;
use crate::outbound::mta_sts::Mode;
use crate::outbound::pool::{Hop, HopTls};
use crate::routing::RouteError;

/// Why no host can be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoHost {
    /// Final: the domain does not exist or takes no mail.
    Permanent(String),
    /// DNS failed for now.
    Temporary(String),
}

/// The hosts to try for mail from `sender_domain` (the store it is kept
/// in) to `domain`, best first.
pub async fn plan(s: &Shared, sender_domain: &str, domain: &str) -> Result<Vec<Hop>, NoHost> {
    let dir = s.dir();
    let config = &dir.config;
    let local_recipient = config.is_local_domain(domain);
    // The outbound settings a reload may have changed.
    let outbound = &config.outbound;
    if !local_recipient && let Some(r) = outbound.relay_for(sender_domain) {
        let tls = match r.tls {
            RelayTls::StartTls => HopTls::Required,
            RelayTls::Implicit => HopTls::Implicit,
        };
        let because = Some(format!("the upstream relay {}:{}", r.host, r.port));
        return Ok(vec![Hop { host: r.host.clone(), port: r.port, tls, credentials: r.credentials.clone(), because }]);
    }
    let mx_route = config.legacy_host(domain).is_none();
    let mut hops: Vec<Hop> = smtp_hosts(s, domain).await?.into_iter().map(|(h, p)| Hop::plain(h, p)).collect();
    if outbound.tls_policy(domain) == TlsPolicy::Required {
        for h in &mut hops {
            h.tls = HopTls::Required;
            h.because = Some(format!("smtp.destinations.{domain:?} (tls = required)"));
        }
    }
    if !mx_route || !outbound.mta_sts {
        return Ok(hops);
    }
    let policy = s.mta_sts.lookup(s.peers.locator().dns().as_ref(), &s.peers, domain).await;
    match policy {
        Some(p) if p.mode == Mode::Enforce => {
            let listed: Vec<Hop> = hops
                .into_iter()
                .filter(|h| p.allows(&h.host))
                .map(|h| Hop {
                    tls: HopTls::Required,
                    because: Some(format!("the MTA-STS policy of {domain} (enforce)")),
                    ..h
                })
                .collect();
            if listed.is_empty() {
                return Err(NoHost::Temporary(format!(
                    "the MTA-STS policy of {domain} (enforce) lists none of its MX hosts (it lists {})",
                    p.mx.join(", ")
                )));
            }
            Ok(listed)
        }
        Some(p) if p.mode == Mode::Testing => {
            if let Some(h) = hops.iter().find(|h| !p.allows(&h.host)) {
                tracing::warn!(%domain, host = %h.host, "MTA-STS (testing): an MX host the policy does not list");
            }
            Ok(hops)
        }
        _ => Ok(hops),
    }
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
