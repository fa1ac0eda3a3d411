//! `imgate dns-records` and `imgate dns-check`: what a node's domains should
//! publish in DNS for its listeners, and whether they do.

use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::anyhow;

use crate::config::Config;
use crate::dns::{Dns, DnsError, HickoryDns};
use crate::outbound::dkim::Signers;
use crate::peer::PeerClient;
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
    /// A TXT record; `what` says which (and how a found one is judged).
    Txt {
        owner: String,
        text: String,
        what: TxtKind,
    },
}

/// What a TXT record is for: the check is by kind, not by exact text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxtKind {
    /// One `v=spf1` record (two are a permerror, RFC 7208 §4.5).
    Spf,
    /// One `v=DMARC1` record at `_dmarc`.
    Dmarc,
    /// The public key of a configured DKIM key: `p=` must be the key's.
    Dkim,
    /// One `v=STSv1` record at `_mta-sts` (its id is the operator's).
    MtaSts,
}

impl TxtKind {
    fn prefix(self) -> &'static str {
        match self {
            TxtKind::Spf => "v=spf1",
            TxtKind::Dmarc => "v=DMARC1",
            TxtKind::Dkim => "v=DKIM1",
            TxtKind::MtaSts => "v=STSv1",
        }
    }
}

/// The records `domain` needs for `config`'s listeners and keys, and notes
/// for what cannot be said as a record.
pub fn expected(config: &Config, signers: &Signers, domain: &str) -> (Vec<Expected>, Vec<String>) {
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
    // Sender authentication for the mail this node sends by SMTP.
    let relay = config.outbound.relay_for(domain);
    out.push(Expected::Txt { owner: domain.to_string(), text: format!("v=spf1 a:{host} -all"), what: TxtKind::Spf });
    if let Some(r) = relay {
        notes.push(format!(
            "mail leaves through {}: add that relay's SPF (an include: it documents) to the record",
            r.host
        ));
    }
    for signer in signers.all().filter(|k| k.domain == domain) {
        out.push(Expected::Txt { owner: signer.record_name(), text: signer.record_text(), what: TxtKind::Dkim });
    }
    if signers.for_author(domain).is_empty() {
        notes.push(format!("no DKIM key signs {domain}'s mail: `imgate dkim-keygen` makes one"));
    }
    out.push(Expected::Txt {
        owner: format!("_dmarc.{domain}"),
        text: format!("v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"),
        what: TxtKind::Dmarc,
    });
    if config.tls.is_some() && !config.smtp.mx.is_empty() {
        let policy = crate::im2000::well_known::mta_sts_policy(&config.hostname);
        // The id changes when the policy does: senders then fetch it again.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(policy.as_bytes());
        let id = crate::proto::hex::encode(&digest[..8]);
        out.push(Expected::Txt {
            owner: format!("_mta-sts.{domain}"),
            text: format!("v=STSv1; id={id}"),
            what: TxtKind::MtaSts,
        });
        notes.push(format!(
            "MTA-STS: the public listener serves the policy ({}) at /.well-known/mta-sts.txt; \
             senders fetch https://mta-sts.{domain}/ on port 443, so point mta-sts.{domain} at this node with a certificate for that name",
            policy.trim_end().replace("\r\n", "; ")
        ));
    }
    (out, notes)
}

/// A TXT value as zone-file strings of at most 255 octets each (a 2048-bit
/// key does not fit one).
pub fn txt_strings(text: &str) -> String {
    let parts: Vec<String> =
        text.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    parts.join(" ")
}

/// The records in zone-file syntax.
pub fn zone_text(config: &Config, signers: &Signers, domains: &[String]) -> String {
    let mut t = String::new();
    for domain in domains {
        let (records, notes) = expected(config, signers, domain);
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
                Expected::Txt { owner, text, .. } => writeln!(t, "{owner}. 3600 IN TXT {}", txt_strings(&text)),
            };
        }
        t.push('\n');
    }
    t
}

/// Checks what `domain` publishes against what it should; returns one line
/// per record and whether all were right.
pub async fn check(config: &Config, signers: &Signers, dns: &dyn Dns, domain: &str) -> (Vec<String>, bool) {
    let (records, _) = expected(config, signers, domain);
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
            Expected::Txt { owner, text, what } => {
                let found: Vec<String> = match dns.txt(&owner).await {
                    Ok(found) => found.into_iter().filter(|t| t.trim_start().starts_with(what.prefix())).collect(),
                    Err(DnsError::NoRecords) | Err(DnsError::NxDomain) => vec![],
                    Err(e) => {
                        fail(format!("error    {owner} TXT: {e}"), &mut lines);
                        continue;
                    }
                };
                let signer = signers.all().find(|k| k.record_name() == owner);
                match (what, found.as_slice(), signer) {
                    (_, [], _) => fail(format!("missing  {owner} TXT {text}"), &mut lines),
                    (TxtKind::Dkim, [one], Some(k)) if !k.matches_record(one) => fail(
                        format!(
                            "wrong    {owner} TXT: the published key is not {} (the key of {domain} in {})",
                            k.selector,
                            k.path.display()
                        ),
                        &mut lines,
                    ),
                    (TxtKind::MtaSts, [one], _)
                        if crate::outbound::mta_sts::record_id(std::slice::from_ref(one)).is_none() =>
                    {
                        fail(format!("wrong    {owner} TXT {one:?}: no id"), &mut lines)
                    }
                    (_, [one], _) => lines.push(format!("ok       {owner} TXT {one}")),
                    (_, many, _) => fail(
                        format!(
                            "wrong    {owner} TXT: {} records start {} (one is allowed)",
                            many.len(),
                            what.prefix()
                        ),
                        &mut lines,
                    ),
                }
            }
        }
    }
    (lines, ok)
}

/// `imgate dns-check`: resolves through the configuration's DNS settings;
/// where the node publishes MTA-STS, fetches the policy as a sender would
/// (through `http`) and checks that it lists this node.
pub async fn run_check(config: &Config, http: &PeerClient, domain: &str) -> anyhow::Result<bool> {
    let dns = HickoryDns::new(&config.dns).map_err(|e| anyhow!(e))?;
    let signers = signers(config)?;
    let (mut lines, mut ok) = check(config, &signers, &dns, domain).await;
    if config.tls.is_some() && !config.smtp.mx.is_empty() {
        let (line, good) = check_mta_sts_policy(config, http, domain).await;
        lines.push(line);
        ok &= good;
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ok)
}

/// The policy at `https://mta-sts.<domain>/.well-known/mta-sts.txt`: there,
/// valid, and naming this node's host name as an MX.
async fn check_mta_sts_policy(config: &Config, http: &PeerClient, domain: &str) -> (String, bool) {
    let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
    let text = match http.fetch_document(&url, crate::outbound::mta_sts::MAX_POLICY).await {
        Ok(t) => t,
        Err(e) => return (format!("missing  {url}: {e}"), false),
    };
    match crate::outbound::mta_sts::Policy::parse(&text) {
        Err(e) => (format!("wrong    {url}: {e}"), false),
        Ok(p) if !p.allows(&config.hostname) => {
            (format!("wrong    {url}: lists {} but not {}", p.mx.join(", "), config.hostname), false)
        }
        Ok(p) => (format!("ok       {url} ({:?}, lists {})", p.mode, config.hostname), true),
    }
}

/// The configured DKIM keys, or every key problem (domain and file named).
pub fn signers(config: &Config) -> anyhow::Result<Signers> {
    Signers::load(&config.outbound.dkim)
        .map_err(|errors| anyhow!(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")))
}
