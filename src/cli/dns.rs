//! `imgate dns-records` and `imgate dns-check`: what a node's domains should
//! publish in DNS for its listeners, and whether they do.

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::anyhow;

use crate::config::Config;
use crate::dns::{Dns, DnsError, HickoryDns};
use crate::proto::api::{SRV_NOTIFY, SRV_STORE};

/// One record a domain should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// An SRV record: owner → (target, port).
    Srv {
        owner: String,
        target: String,
        port: u16,
    },
    Mx {
        owner: String,
        exchange: String,
    },
    A {
        owner: String,
        ip: IpAddr,
    },
}

/// The records `domain` needs for `config`'s listeners, and notes for what
/// cannot be said as a record.
pub fn expected(config: &Config, domain: &str) -> (Vec<Expected>, Vec<String>) {
    let host = config.hostname.clone();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    match config.im2000.public.first() {
        Some(public) => {
            for label in [SRV_STORE, SRV_NOTIFY] {
                out.push(Expected::Srv {
                    owner: format!("{label}.{domain}"),
                    target: host.clone(),
                    port: public.port(),
                });
            }
        }
        None => notes.push("no im2000.public listener: other domains cannot reach this node".into()),
    }
    if let Some(mx) = config.smtp.mx.first() {
        out.push(Expected::Mx { owner: domain.to_string(), exchange: host.clone() });
        if mx.port() != 25 {
            notes.push(format!(
                "the MX listener is on port {}; mail exchangers are reached on port 25 (forward it, or use socket activation)",
                mx.port()
            ));
        }
    }
    let mut ips: Vec<IpAddr> = config.im2000.public.iter().chain(&config.smtp.mx).map(|a| a.ip()).collect();
    ips.sort();
    ips.dedup();
    for ip in ips {
        if ip.is_unspecified() {
            notes.push(format!("{host} listens on all addresses: publish its public address as an A/AAAA record"));
        } else {
            out.push(Expected::A { owner: host.clone(), ip });
        }
    }
    if host == "localhost" {
        notes.push("hostname is \"localhost\": set `hostname` to this node's public name".into());
    }
    (out, notes)
}

/// The records in zone-file syntax.
pub fn zone_text(config: &Config, domains: &[String]) -> String {
    let mut t = String::new();
    for domain in domains {
        let (records, notes) = expected(config, domain);
        let _ = writeln!(t, "; imgate: records to publish for {domain}");
        for n in notes {
            let _ = writeln!(t, "; note: {n}");
        }
        for r in records {
            let _ = match r {
                Expected::Srv { owner, target, port } => {
                    writeln!(t, "{owner}. 3600 IN SRV 10 1 {port} {target}.")
                }
                Expected::Mx { owner, exchange } => writeln!(t, "{owner}. 3600 IN MX 10 {exchange}."),
                Expected::A { owner, ip: IpAddr::V4(v4) } => writeln!(t, "{owner}. 3600 IN A {v4}"),
                Expected::A { owner, ip: IpAddr::V6(v6) } => writeln!(t, "{owner}. 3600 IN AAAA {v6}"),
            };
        }
        t.push('\n');
    }
    t
}

/// Checks what `domain` publishes against what it should; returns one line
/// per record and whether all were right.
pub async fn check(config: &Config, dns: &dyn Dns, domain: &str) -> (Vec<String>, bool) {
    let (records, _) = expected(config, domain);
    let mut lines = Vec::new();
    let mut ok = true;
    let mut fail = |line: String, lines: &mut Vec<String>| {
        ok = false;
        lines.push(line);
    };
    for r in records {
        match r {
            Expected::Srv { owner, target, port } => match dns.srv(&owner).await {
                Ok(found) if found.iter().any(|s| s.target == target && s.port == port) => {
                    lines.push(format!("ok       {owner} SRV → {target}:{port}"))
                }
                Ok(found) if !found.is_empty() => {
                    let there: Vec<String> = found.iter().map(|s| format!("{}:{}", s.target, s.port)).collect();
                    fail(format!("elsewhere {owner} SRV → {} (expected {target}:{port})", there.join(", ")), &mut lines)
                }
                Ok(_) | Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => {
                    fail(format!("missing  {owner} SRV → {target}:{port}"), &mut lines)
                }
                Err(e) => fail(format!("error    {owner} SRV: {e}"), &mut lines),
            },
            Expected::Mx { owner, exchange } => match dns.mx(&owner).await {
                Ok(found) if found.iter().any(|(_, h)| *h == exchange) => {
                    lines.push(format!("ok       {owner} MX → {exchange}"))
                }
                Ok(found) if !found.is_empty() => {
                    let there: Vec<String> = found.into_iter().map(|(_, h)| h).collect();
                    fail(format!("elsewhere {owner} MX → {} (expected {exchange})", there.join(", ")), &mut lines)
                }
                Ok(_) | Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => {
                    fail(format!("missing  {owner} MX → {exchange}"), &mut lines)
                }
                Err(e) => fail(format!("error    {owner} MX: {e}"), &mut lines),
            },
            Expected::A { owner, ip } => match dns.ips(&owner).await {
                Ok(found) if found.contains(&ip) => lines.push(format!("ok       {owner} → {ip}")),
                Ok(found) if !found.is_empty() => {
                    let there: Vec<String> = found.iter().map(IpAddr::to_string).collect();
                    fail(format!("elsewhere {owner} → {} (expected {ip})", there.join(", ")), &mut lines)
                }
                Ok(_) | Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => {
                    fail(format!("missing  {owner} → {ip}"), &mut lines)
                }
                Err(e) => fail(format!("error    {owner}: {e}"), &mut lines),
            },
        }
    }
    (lines, ok)
}

/// `imgate dns-check`: resolves through the configuration's DNS settings.
pub async fn run_check(config: &Config, domain: &str) -> anyhow::Result<bool> {
    let dns = HickoryDns::new(&config.dns).map_err(|e| anyhow!(e))?;
    let (lines, ok) = check(config, &dns, domain).await;
    for l in lines {
        println!("{l}");
    }
    Ok(ok)
}
