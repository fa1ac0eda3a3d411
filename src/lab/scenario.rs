//! Scenarios as data: the traffic the lab runs through both mail models,
//! read from TOML (`fixtures/scenarios/*.toml`). A malformed file is refused
//! with its name, the key at fault and what was expected there.
//!
//! ```toml
//! description = "A list of 200 on 10 domains; a third of them read it."
//! run_for = "2d"                 # how long the lab watches (virtual time)
//!
//! [[traffic]]
//! from = "owner@list.test"       # the sender; its domain joins the world
//! # forged_from = "x@victim.test" # the sender claims another's address
//! recipients = 200               # mailboxes u1.. spread over r1.test..
//! domains = 10
//! unknown = 0                    # extra recipients that do not exist
//! messages = 1                   # more than one: a burst, `spacing` apart
//! size = "8KiB"
//! read = 0.33                    # the fraction of recipients who read
//! read_after = "3h"
//! # recall = "30m"               # the sender takes it back at this time
//!
//! [[outage]]                     # a party off the network for a while
//! domain = "r1.test"
//! from = "0s"
//! until = "6h"
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::proto::Address;
use crate::proto::units::{parse_duration, parse_size};

/// A scenario that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}{message}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct ScenarioError {
    pub file: String,
    /// The key at fault, as a path (`traffic[0].read`); empty for the file
    /// as a whole.
    pub key: String,
    /// What was wrong, and what was expected.
    pub message: String,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub run_for: Duration,
    pub traffic: Vec<Traffic>,
    pub outages: Vec<Outage>,
}

/// Messages from one sender to a set of recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub from: Address,
    /// The address the sender puts in the envelope and `From:` instead of
    /// its own: where SMTP's bounces go (backscatter).
    pub forged_from: Option<Address>,
    pub recipients: u32,
    pub domains: u32,
    pub unknown: u32,
    pub messages: u32,
    pub size: u64,
    pub at: Duration,
    pub spacing: Duration,
    pub read: f64,
    pub read_after: Duration,
    pub recall: Option<Duration>,
}

/// A party off the network from `from` until `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    pub domain: String,
    pub from: Duration,
    pub until: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: String,
    run_for: Option<String>,
    traffic: Vec<RawTraffic>,
    #[serde(default)]
    outage: Vec<RawOutage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    from: String,
    forged_from: Option<String>,
    recipients: Option<u32>,
    domains: Option<u32>,
    unknown: Option<u32>,
    messages: Option<u32>,
    size: Option<String>,
    at: Option<String>,
    spacing: Option<String>,
    read: Option<f64>,
    read_after: Option<String>,
    recall: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutage {
    domain: String,
    from: String,
    until: String,
}

/// The scenarios that ship with imgate, by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("one-to-one", include_str!("../../fixtures/scenarios/one-to-one.toml")),
    ("mailing-list", include_str!("../../fixtures/scenarios/mailing-list.toml")),
    ("unknown-recipient", include_str!("../../fixtures/scenarios/unknown-recipient.toml")),
    ("server-down", include_str!("../../fixtures/scenarios/server-down.toml")),
    ("recall", include_str!("../../fixtures/scenarios/recall.toml")),
    ("unsolicited-burst", include_str!("../../fixtures/scenarios/unsolicited-burst.toml")),
];

/// Largest world a scenario may ask for, to keep the lab on one machine.
const MAX_RECIPIENTS: u32 = 5_000;
const MAX_DOMAINS: u32 = 200;
const MAX_MESSAGES: u32 = 5_000;
const MAX_SIZE: u64 = 1 << 20;
const MAX_DELIVERIES: u64 = 100_000;

impl Scenario {
    /// A built-in scenario by name, or a file by path.
    pub fn find(name_or_path: &str) -> Result<Scenario, ScenarioError> {
        match BUILT_IN.iter().find(|(n, _)| *n == name_or_path) {
            Some((name, text)) => Scenario::parse(text, &format!("{name} (built in)"), name),
            None => Scenario::load(Path::new(name_or_path)).map_err(|mut e| {
                if e.key.is_empty() && !Path::new(name_or_path).exists() {
                    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
                    e.message = format!("{} (and no built-in scenario has that name: {})", e.message, names.join(", "));
                }
                e
            }),
        }
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: file.clone(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("scenario");
        Scenario::parse(&text, &file, stem)
    }

    /// Parses TOML; `file` names it in errors, `default_name` is the name
    /// when the file gives none.
    pub fn parse(text: &str, file: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
        let fail = |key: String, message: String| ScenarioError { file: file.to_string(), key, message };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail(String::new(), format!("TOML parse error: {}", one_line(&e.to_string()))))?;
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            fail(key, one_line(&e.inner().to_string()))
        })?;
        let check = |key: &str, r: Result<Duration, String>| r.map_err(|e| fail(key.to_string(), e));
        let duration = |key: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => check(key, parse_duration(s).map_err(|e| format!("{e} (expected a duration such as \"30m\")"))),
        };
        let run_for = duration("run_for", &raw.run_for, Duration::from_secs(86_400))?;
        if raw.traffic.is_empty() {
            return Err(fail("traffic".into(), "expected at least one [[traffic]] table".into()));
        }
        let mut traffic = Vec::new();
        for (i, t) in raw.traffic.iter().enumerate() {
            let key = |k: &str| format!("traffic[{i}].{k}");
            let from = t
                .from
                .parse::<Address>()
                .map_err(|e| fail(key("from"), format!("{e} (expected an address such as \"alice@one.test\")")))?;
            if !from.domain().ends_with(".test") {
                return Err(fail(key("from"), "expected an address in a .test domain (the lab's DNS zone)".into()));
            }
            let forged_from = match &t.forged_from {
                None => None,
                Some(f) => {
                    let a = f.parse::<Address>().map_err(|e| {
                        fail(key("forged_from"), format!("{e} (expected an address such as \"x@victim.test\")"))
                    })?;
                    if !a.domain().ends_with(".test") || a.domain().eq_ignore_ascii_case(from.domain()) {
                        let why = "expected an address in another .test domain than `from`'s";
                        return Err(fail(key("forged_from"), why.into()));
                    }
                    Some(a)
                }
            };
            let count = |k: &str, v: Option<u32>, default: u32, min: u32, max: u32| {
                let n = v.unwrap_or(default);
                if n < min || n > max {
                    return Err(fail(key(k), format!("expected a whole number from {min} to {max}, found {n}")));
                }
                Ok(n)
            };
            let recipients = count("recipients", t.recipients, 1, 0, MAX_RECIPIENTS)?;
            let domains = count("domains", t.domains, 1, 1, MAX_DOMAINS)?;
            let unknown = count("unknown", t.unknown, 0, 0, MAX_RECIPIENTS)?;
            let messages = count("messages", t.messages, 1, 1, MAX_MESSAGES)?;
            let deliveries = u64::from(recipients + unknown) * u64::from(messages);
            if deliveries > MAX_DELIVERIES {
                let why = format!(
                    "expected at most {MAX_DELIVERIES} deliveries per traffic (recipients and unknown, times messages), found {deliveries}"
                );
                return Err(fail(key("messages"), why));
            }
            if recipients + unknown == 0 {
                return Err(fail(key("recipients"), "expected at least one recipient (or unknown one)".into()));
            }
            let size = match &t.size {
                None => 4096,
                Some(s) => {
                    parse_size(s).map_err(|e| fail(key("size"), format!("{e} (expected a size such as \"4KiB\")")))?
                }
            };
            if !(256..=MAX_SIZE).contains(&size) {
                return Err(fail(key("size"), format!("expected a size from 256B to 1MiB, found {size} bytes")));
            }
            let read = t.read.unwrap_or(1.0);
            if !(0.0..=1.0).contains(&read) {
                return Err(fail(key("read"), format!("expected a fraction from 0.0 to 1.0, found {read}")));
            }
            let recall = match &t.recall {
                None => None,
                some => Some(duration(&key("recall"), some, Duration::ZERO)?),
            };
            traffic.push(Traffic {
                from,
                forged_from,
                recipients,
                domains,
                unknown,
                messages,
                size,
                at: duration(&key("at"), &t.at, Duration::ZERO)?,
                spacing: duration(&key("spacing"), &t.spacing, Duration::from_secs(1))?,
                read,
                read_after: duration(&key("read_after"), &t.read_after, Duration::from_secs(3600))?,
                recall,
            });
        }
        let mut outages = Vec::new();
        for (i, o) in raw.outage.iter().enumerate() {
            let key = |k: &str| format!("outage[{i}].{k}");
            let domain = o.domain.to_ascii_lowercase();
            if !crate::proto::address::valid_domain(&domain) || !domain.ends_with(".test") {
                return Err(fail(key("domain"), format!("expected a .test domain name, found {:?}", o.domain)));
            }
            let from = duration(&key("from"), &Some(o.from.clone()), Duration::ZERO)?;
            let until = duration(&key("until"), &Some(o.until.clone()), Duration::ZERO)?;
            if until <= from {
                return Err(fail(key("until"), "expected a time after `from`".into()));
            }
            outages.push(Outage { domain, from, until });
        }
        let scenario = Scenario {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            description: raw.description,
            run_for,
            traffic,
            outages,
        };
        for (i, o) in scenario.outages.iter().enumerate() {
            if !scenario.domains().contains(&o.domain) {
                let known = scenario.domains().join(", ");
                return Err(fail(
                    format!("outage[{i}].domain"),
                    format!("expected one of the scenario's domains ({known})"),
                ));
            }
        }
        Ok(scenario)
    }

    /// Every domain in the world: the senders' and the recipients'.
    pub fn domains(&self) -> Vec<String> {
        let mut all: Vec<String> =
            self.traffic.iter().flat_map(Traffic::own_addresses).map(|a| a.domain().to_ascii_lowercase()).collect();
        let most = self.traffic.iter().map(|t| t.domains).max().unwrap_or(0);
        all.extend((1..=most).map(recipient_domain));
        all.sort();
        all.dedup();
        all
    }

    /// Whether users of `domain` send, or may get bounces (their address
    /// is forged): their server must be able to take `MAIL FROM:<>`.
    pub fn sends(&self, domain: &str) -> bool {
        self.traffic.iter().flat_map(Traffic::own_addresses).any(|a| a.domain().eq_ignore_ascii_case(domain))
    }

    /// The existing mailboxes (local parts) of `domain`.
    pub fn users(&self, domain: &str) -> Vec<String> {
        let mut users: Vec<String> = Vec::new();
        for t in &self.traffic {
            for a in t.own_addresses().filter(|a| a.domain().eq_ignore_ascii_case(domain)) {
                users.push(a.local().to_ascii_lowercase());
            }
            users.extend(t.recipient_list().into_iter().filter(|(_, known)| *known).filter_map(|(a, _)| {
                let (local, d) = a.split_once('@')?;
                (d == domain).then(|| local.to_string())
            }));
        }
        users.sort();
        users.dedup();
        users
    }

    /// The last moment anything is scheduled.
    pub fn last_event(&self) -> Duration {
        let traffic = self.traffic.iter().map(|t| {
            let sent = t.at + t.spacing * t.messages.saturating_sub(1);
            (sent + t.read_after).max(t.recall.unwrap_or_default())
        });
        traffic.chain(self.outages.iter().map(|o| o.until)).max().unwrap_or_default()
    }
}

impl Traffic {
    /// The sender's address and the one it forges, if any.
    pub fn own_addresses(&self) -> impl Iterator<Item = &Address> {
        std::iter::once(&self.from).chain(&self.forged_from)
    }

    /// The address the message claims to be from.
    pub fn claimed_from(&self) -> &Address {
        self.forged_from.as_ref().unwrap_or(&self.from)
    }

    /// The recipients of each message, with whether each exists: `u1`…
    /// spread round-robin over `r1.test`…, then the unknown ones.
    pub fn recipient_list(&self) -> Vec<(String, bool)> {
        let known =
            (0..self.recipients).map(|i| (format!("u{}@{}", i + 1, recipient_domain(i % self.domains + 1)), true));
        let unknown =
            (0..self.unknown).map(|i| (format!("nobody{}@{}", i + 1, recipient_domain(i % self.domains + 1)), false));
        known.chain(unknown).collect()
    }

    /// Whether recipient number `i` (of the known ones) reads: the first
    /// `read` fraction of them, rounded to the nearest.
    pub fn reads(&self, i: usize) -> bool {
        (i as f64) < (self.read * self.recipients as f64).round()
    }
}

/// The name of recipient domain number `n` (from 1).
pub fn recipient_domain(n: u32) -> String {
    format!("r{n}.test")
}

/// toml's multi-line message as one line: what is wrong, then where.
fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => only.to_string(),
        [first, .., last] => format!("{last} ({})", first.trim_start_matches("TOML parse error ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_scenarios_parse() {
        for (name, _) in BUILT_IN {
            let s = Scenario::find(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.name, *name);
            assert!(!s.description.is_empty());
        }
    }

    #[test]
    fn malformed_files_name_the_key_and_the_expectation() {
        let base = "description = \"d\"\n[[traffic]]\nfrom = \"a@s.test\"\n";
        let cases: &[(&str, &str, &str)] = &[
            ("description = \"d\"\n", "", "missing field `traffic`"),
            ("description = \"d\"\ntraffic = []\n", "traffic", "at least one"),
            (&format!("{base}recipients = \"many\"\n"), "traffic[0].recipients", "expected u32"),
            (&format!("{base}colour = 3\n"), "traffic[0].colour", "unknown field `colour`, expected one of"),
            (&format!("{base}read = 1.5\n"), "traffic[0].read", "fraction from 0.0 to 1.0"),
            (&format!("{base}size = \"big\"\n"), "traffic[0].size", "expected a size"),
            (&format!("{base}read_after = \"soon\"\n"), "traffic[0].read_after", "expected a duration"),
            (&format!("{base}domains = 0\n"), "traffic[0].domains", "from 1 to 200"),
            (
                &format!("{base}recipients = 5000\nmessages = 5000\n"),
                "traffic[0].messages",
                "at most 100000 deliveries",
            ),
            ("description = \"d\"\n[[traffic]]\nfrom = \"nobody\"\n", "traffic[0].from", "expected an address"),
            (&format!("{base}forged_from = \"b@s.test\"\n"), "traffic[0].forged_from", "another .test domain"),
            (
                &format!("{base}[[outage]]\ndomain = \"x.test\"\nfrom = \"0s\"\nuntil = \"1h\"\n"),
                "outage[0].domain",
                "expected one of",
            ),
            (
                &format!("{base}[[outage]]\ndomain = \"r1.test\"\nfrom = \"2h\"\nuntil = \"1h\"\n"),
                "outage[0].until",
                "after",
            ),
            ("description = \"d\"\n[[traffic]\n", "", "TOML parse error"),
        ];
        for (text, key, want) in cases {
            let e = Scenario::parse(text, "bad.toml", "bad").expect_err(text);
            assert_eq!(e.file, "bad.toml");
            assert_eq!(&e.key, key, "{text}: {e}");
            assert!(e.message.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn recipients_spread_over_domains_and_readers_are_a_fraction() {
        let s = Scenario::parse(
            "description = \"d\"\n[[traffic]]\nfrom = \"o@l.test\"\nrecipients = 5\ndomains = 2\nunknown = 1\nread = 0.4\n",
            "f",
            "f",
        )
        .unwrap();
        let t = &s.traffic[0];
        let list = t.recipient_list();
        assert_eq!(list[0], ("u1@r1.test".to_string(), true));
        assert_eq!(list[1], ("u2@r2.test".to_string(), true));
        assert_eq!(list[5], ("nobody1@r1.test".to_string(), false));
        assert_eq!((0..5).filter(|i| t.reads(*i)).count(), 2);
        assert_eq!(s.domains(), ["l.test", "r1.test", "r2.test"]);
        assert_eq!(s.users("r1.test"), ["u1", "u3", "u5"]);
    }
}
