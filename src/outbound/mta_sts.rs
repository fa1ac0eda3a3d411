//! MTA-STS (RFC 8461): a recipient domain's published demand that its mail
//! arrive over TLS with a verified certificate, at MX hosts it names. The
//! policy text is parsed sans-IO here; [`Policies`] finds it (a TXT record
//! at `_mta-sts.<domain>`, then HTTPS at `mta-sts.<domain>`) and keeps it
//! for its `max_age`, fetching again when the record's `id` changes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::dns::{Dns, DnsError};
use crate::peer::PeerClient;

/// How strictly a policy is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only over verified TLS to a listed MX.
    Enforce,
    /// Deliver as usual; failures are only logged (RFC 8460 would report).
    Testing,
    /// The domain withdrew its policy.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: a host name, or `*.` and a domain (one label).
    pub mx: Vec<String>,
    pub max_age: Duration,
}

/// Longest policy document read (RFC 8461 §3.3 suggests 64 KiB).
pub const MAX_POLICY: usize = 64 << 10;
/// Longest `max_age` honoured: one year (RFC 8461 §3.2).
const MAX_AGE: u64 = 31_557_600;

impl Policy {
    /// Parses a policy document (RFC 8461 §3.2): `key: value` lines.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(format!("line {line:?} is not key: value"));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("mode {other:?} is not enforce, testing or none")),
                    })
                }
                "max_age" => {
                    let secs: u64 = value.parse().map_err(|_| format!("max_age {value:?} is not a number"))?;
                    max_age = Some(Duration::from_secs(secs.min(MAX_AGE)));
                }
                "mx" => mx.push(value.to_ascii_lowercase().trim_end_matches('.').to_string()),
                // Unknown keys are ignored (§3.2: extensions).
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("no version: STSv1".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mode != Mode::None && mx.is_empty() {
            return Err("no mx".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether MX host `host` is one the policy names.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            // A wildcard stands for exactly one leftmost label (§4.1).
            Some(suffix) => host.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => p == host,
        })
    }
}

/// The `id` of a `_mta-sts` TXT record set: exactly one record starting
/// `v=STSv1` (§3.1), else none.
pub fn record_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records.iter().filter(|r| r.trim_start().starts_with("v=STSv1")).collect();
    let [only] = sts.as_slice() else { return None };
    let mut fields = only.split(';').map(str::trim);
    if fields.next() != Some("v=STSv1") {
        return None;
    }
    fields.find_map(|f| f.strip_prefix("id=")).filter(|id| !id.is_empty() && id.len() <= 32).map(str::to_string)
}

struct Cached {
    id: String,
    policy: Policy,
    until: Instant,
}

/// Policies found so far, per domain (in memory: a restart looks again).
#[derive(Default)]
pub struct Policies {
    cache: Mutex<HashMap<String, Cached>>,
}

impl Policies {
    /// The policy `domain` publishes now, if any. A TXT record whose id
    /// is the cached one keeps the cached policy; a policy that cannot be
    /// fetched is no policy unless one is cached (§5.1).
    pub async fn lookup(&self, dns: &dyn Dns, http: &PeerClient, domain: &str) -> Option<Policy> {
        let domain = domain.to_ascii_lowercase();
        let cached = |now: Instant| {
            let map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            map.get(&domain).filter(|c| c.until > now).map(|c| (c.id.clone(), c.policy.clone()))
        };
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(records) => record_id(&records),
            Err(DnsError::NoRecords | DnsError::NxDomain) => None,
            // DNS failing now: a cached policy still holds.
            Err(DnsError::Temporary(_)) => return cached(Instant::now()).map(|(_, p)| p),
        };
        let Some(id) = id else {
            // No record: a cached policy holds until it expires (§5.1),
            // so that removing the record cannot downgrade at once.
            return cached(Instant::now()).map(|(_, p)| p);
        };
        if let Some((cached_id, policy)) = cached(Instant::now())
            && cached_id == id
        {
            return Some(policy);
        }
        let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
        match http.fetch_document(&url, MAX_POLICY).await.map_err(|e| e.to_string()).and_then(|t| Policy::parse(&t)) {
            Ok(policy) => {
                tracing::info!(%domain, %id, mode = ?policy.mode, mx = ?policy.mx, "MTA-STS policy fetched");
                let until = Instant::now() + policy.max_age;
                let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                map.insert(domain.clone(), Cached { id, policy: policy.clone(), until });
                Some(policy)
            }
            Err(e) => {
                tracing::warn!(%domain, error = %e, "MTA-STS policy not fetched");
                cached(Instant::now()).map(|(_, p)| p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_documents() {
        let ok = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
        )
        .unwrap();
        assert_eq!(ok.mode, Mode::Enforce);
        assert_eq!(ok.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(ok.max_age, Duration::from_secs(86_400));
        let cases: &[(&str, Result<Mode, &str>)] = &[
            ("version: STSv1\nmode: testing\nmx: a.test\nmax_age: 10\n", Ok(Mode::Testing)),
            ("version: STSv1\nmode: none\nmax_age: 10\n", Ok(Mode::None)),
            ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 10\nextension: x\n", Ok(Mode::Enforce)),
            ("version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 10\n", Err("version")),
            ("mode: enforce\nmx: a.test\nmax_age: 10\n", Err("version")),
            ("version: STSv1\nmode: strict\nmx: a.test\nmax_age: 10\n", Err("mode")),
            ("version: STSv1\nmode: enforce\nmax_age: 10\n", Err("no mx")),
            ("version: STSv1\nmode: enforce\nmx: a.test\n", Err("max_age")),
            ("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: soon\n", Err("max_age")),
            ("<html>not a policy</html>", Err("key: value")),
        ];
        for (text, want) in cases {
            match (Policy::parse(text), want) {
                (Ok(p), Ok(mode)) => assert_eq!(p.mode, *mode, "{text:?}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{text:?}: {e}"),
                (got, _) => panic!("{text:?}: {got:?}"),
            }
        }
        let long = Policy::parse("version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 999999999\n").unwrap();
        assert_eq!(long.max_age, Duration::from_secs(MAX_AGE));
    }

    #[test]
    fn mx_patterns() {
        let p = Policy {
            mode: Mode::Enforce,
            mx: vec!["mail.example.com".into(), "*.example.net".into()],
            max_age: Duration::ZERO,
        };
        let cases = [
            ("mail.example.com", true),
            ("MAIL.example.com.", true),
            ("other.example.com", false),
            ("mx1.example.net", true),
            ("example.net", false),
            ("a.b.example.net", false),
            ("evil-example.net", false),
        ];
        for (host, want) in cases {
            assert_eq!(p.allows(host), want, "{host}");
        }
    }

    #[test]
    fn txt_records() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["v=STSv1; id=20260101T000000;"], Some("20260101T000000")),
            (&["v=STSv1;id=abc"], Some("abc")),
            (&["v=spf1 -all", "v=STSv1; id=x1"], Some("x1")),
            (&["v=STSv1; id=a", "v=STSv1; id=b"], None),
            (&["v=STSv1;"], None),
            (&["id=a; v=STSv1"], None),
            (&[], None),
        ];
        for (records, want) in cases {
            assert_eq!(record_id(&r(records)).as_deref(), *want, "{records:?}");
        }
    }
}
