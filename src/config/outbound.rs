//! The outgoing-SMTP part of the configuration: DKIM keys per domain, an
//! upstream relay (the node's, or one sender domain's), and TLS policy per
//! destination. Keys are only checked to be files here; `outbound::dkim`
//! parses them (at start-up and in `check-config`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Check;
use super::raw::{RawDestination, RawDkimKey, RawRelayHost};
use crate::proto::address::valid_domain;

/// One DKIM key of a domain: `selector._domainkey.<domain>` publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeyConfig {
    pub selector: String,
    pub key: PathBuf,
}

/// How the connection to an upstream relay is secured: always TLS with a
/// verified certificate, since credentials cross it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelayTls {
    /// STARTTLS required (port 587).
    StartTls,
    /// TLS from the first octet (port 465, RFC 8314).
    Implicit,
}

/// A password read from a file or the environment; never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(…)")
    }
}

/// An upstream relay all of some outgoing SMTP goes through (Postfix's
/// `relayhost`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayHost {
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    pub credentials: Option<(String, Password)>,
}

/// What a destination domain's MX deliveries require of TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsPolicy {
    /// STARTTLS when offered, any certificate; plain otherwise.
    Opportunistic,
    /// STARTTLS with a certificate valid for the MX host name, or no
    /// delivery (a deferral saying why).
    Required,
}

/// The validated `[smtp]` outbound keys and the domains' DKIM keys.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// Signing domain → its keys (a message is signed with every key).
    pub dkim: BTreeMap<String, Vec<DkimKeyConfig>>,
    /// The whole node's upstream relay.
    pub relayhost: Option<RelayHost>,
    /// Sender domain → its own upstream relay, before the node's.
    pub domain_relayhosts: BTreeMap<String, RelayHost>,
    /// Destination domain → its TLS policy (else opportunistic).
    pub destinations: BTreeMap<String, TlsPolicy>,
    /// Look up and apply recipients' MTA-STS policies (RFC 8461).
    pub mta_sts: bool,
}

impl OutboundConfig {
    /// The relay mail from `sender_domain` goes through, if any.
    pub fn relay_for(&self, sender_domain: &str) -> Option<&RelayHost> {
        self.domain_relayhosts.get(&sender_domain.to_ascii_lowercase()).or(self.relayhost.as_ref())
    }

    /// The configured TLS policy of `domain`.
    pub fn tls_policy(&self, domain: &str) -> TlsPolicy {
        self.destinations.get(&domain.to_ascii_lowercase()).copied().unwrap_or(TlsPolicy::Opportunistic)
    }
}

pub(super) fn dkim_keys(c: &mut Check, key: &str, raw: Vec<RawDkimKey>) -> Vec<DkimKeyConfig> {
    let mut out: Vec<DkimKeyConfig> = Vec::new();
    for (j, k) in raw.into_iter().enumerate() {
        let key = format!("{key}.dkim[{j}]");
        let selector = match k.selector {
            Some(s) if valid_domain(&s.to_ascii_lowercase()) => s,
            Some(s) => {
                c.problem(format!("{key}.selector"), format!("{s:?} is not a DNS label"));
                continue;
            }
            None => {
                c.problem(format!("{key}.selector"), "missing");
                continue;
            }
        };
        if out.iter().any(|o| o.selector == selector) {
            c.problem(format!("{key}.selector"), format!("{selector:?} is listed twice"));
            continue;
        }
        match k.key {
            None => c.problem(format!("{key}.key"), "missing"),
            Some(p) if !Path::new(&p).is_file() => {
                c.problem(format!("{key}.key"), format!("{p:?} is not a readable file"))
            }
            Some(p) => out.push(DkimKeyConfig { selector, key: PathBuf::from(p) }),
        }
    }
    out
}

pub(super) fn relayhost(c: &mut Check, key: &str, raw: RawRelayHost) -> Option<RelayHost> {
    let tls = match raw.tls.as_deref() {
        None | Some("starttls") => RelayTls::StartTls,
        Some("implicit") => RelayTls::Implicit,
        Some(t) => {
            c.problem(format!("{key}.tls"), format!("{t:?} is not starttls or implicit"));
            RelayTls::StartTls
        }
    };
    let split = |h: &str| {
        let (host, port) = h.rsplit_once(':')?;
        Some((host.to_ascii_lowercase(), port.parse::<u16>().ok()?)).filter(|(h, _)| valid_domain(h))
    };
    let (host, port) = match raw.host.as_deref().map(|h| (h, split(h))) {
        None => {
            c.problem(format!("{key}.host"), "missing");
            return None;
        }
        Some((_, Some(hp))) => hp,
        Some((h, None)) => match valid_domain(&h.to_ascii_lowercase()) {
            // A bare name: the submission port of its TLS mode.
            true => (h.to_ascii_lowercase(), if tls == RelayTls::Implicit { 465 } else { 587 }),
            false => {
                c.problem(format!("{key}.host"), format!("{h:?} is not HOST or HOST:PORT"));
                return None;
            }
        },
    };
    let password = match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(_)) => {
            c.problem(key, "password_file and password_env are both set; keep one");
            None
        }
        (Some(f), None) => match std::fs::read_to_string(f) {
            Ok(p) => Some(Password(p.trim_end_matches(['\r', '\n']).to_string())),
            Err(e) => {
                c.problem(format!("{key}.password_file"), format!("cannot read {f:?}: {e}"));
                None
            }
        },
        (None, Some(var)) => match std::env::var(var) {
            Ok(p) => Some(Password(p)),
            Err(_) => {
                c.problem(format!("{key}.password_env"), format!("the environment has no {var}"));
                None
            }
        },
        (None, None) => None,
    };
    let credentials = match (raw.username, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        (Some(_), None) if raw.password_file.is_none() && raw.password_env.is_none() => {
            c.problem(key, "username is set but neither password_file nor password_env");
            None
        }
        (None, Some(_)) => {
            c.problem(format!("{key}.username"), "missing (a password is set)");
            None
        }
        (Some(_), None) => None,
    };
    Some(RelayHost { host, port, tls, credentials })
}

pub(super) fn destinations(c: &mut Check, raw: BTreeMap<String, RawDestination>) -> BTreeMap<String, TlsPolicy> {
    let mut out = BTreeMap::new();
    for (domain, d) in raw {
        let key = format!("smtp.destinations.{domain:?}");
        if !valid_domain(&domain.to_ascii_lowercase()) {
            c.problem(&key, "is not a domain name");
            continue;
        }
        let policy = match d.tls.as_deref() {
            None | Some("opportunistic") => TlsPolicy::Opportunistic,
            Some("required") => TlsPolicy::Required,
            Some(t) => {
                c.problem(format!("{key}.tls"), format!("{t:?} is not opportunistic or required"));
                continue;
            }
        };
        out.insert(domain.to_ascii_lowercase(), policy);
    }
    out
}
