//! Counters and gauges in the Prometheus text format. Counters are atomics
//! keyed by (name, labels), created on first use: an increment takes a
//! shared read lock and an atomic add (the write lock only the first time a
//! label value is seen), so request paths on several threads do not queue
//! for it. Gauges are computed from the store when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Help text of every counter, which also fixes the set of names.
const COUNTERS: &[(&str, &str)] = &[
    ("imgate_smtp_sessions_total", "SMTP sessions accepted, by listener."),
    ("imgate_smtp_replies_total", "SMTP replies sent, by code."),
    ("imgate_messages_stored_total", "Messages stored, by how they arrived."),
    ("imgate_notifications_sent_total", "Notification attempts by this store, by outcome."),
    ("imgate_notifications_received_total", "Notifications answered by this agent, by result."),
    ("imgate_retrievals_total", "Messages served to recipients, by part."),
    ("imgate_smtp_deliveries_total", "SMTP deliveries to legacy hosts, by outcome."),
    ("imgate_rate_limited_total", "Limits hit (a request refused, slowed or closed), by which limit."),
    ("imgate_peer_bytes_sent_total", "Octets of request bodies sent to other domains' services, by what."),
    ("imgate_dsns_sent_total", "Delivery status notifications (bounces) generated, by kind."),
    ("imgate_dmarc_total", "MX messages judged by DMARC, by what was done (accepted, marked, refused)."),
    ("imgate_dkim_signed_total", "SMTP delivery attempts DKIM-signed, by signing domain."),
    ("imgate_imap_sessions_total", "IMAP connections accepted, by TLS (plain: STARTTLS offered when configured)."),
    ("imgate_imap_logins_total", "IMAP logins, by outcome."),
    ("imgate_imap_pulls_total", "Messages pulled from other stores for IMAP clients, by outcome."),
    ("imgate_imap_release_failures_total", "Expunged messages whose store could not be told, by action."),
    ("imgate_imap_bad_total", "IMAP commands answered BAD by the framing, by why."),
];

/// A gauge computed at scrape time: name, help, and (labels, value) pairs.
pub struct Gauge<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub values: Vec<(String, u64)>,
}

/// One counter's label name and its count per label value.
type Counter = (&'static str, BTreeMap<String, AtomicU64>);

#[derive(Default)]
pub struct Metrics {
    /// name → label value → count (each metric has one label name).
    counters: RwLock<BTreeMap<&'static str, Counter>>,
}

impl Metrics {
    /// Adds one to `name{label="value"}`.
    pub fn inc(&self, name: &'static str, label: &'static str, value: &str) {
        self.add(name, label, value, 1);
    }

    /// Adds `n` to `name{label="value"}`.
    pub fn add(&self, name: &'static str, label: &'static str, value: &str, n: u64) {
        debug_assert!(COUNTERS.iter().any(|(n, _)| *n == name), "unknown metric {name}");
        {
            let map = self.counters.read().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get(name).and_then(|(_, values)| values.get(value)) {
                c.fetch_add(n, Ordering::Relaxed);
                return;
            }
        }
        let mut map = self.counters.write().unwrap_or_else(|p| p.into_inner());
        let (_, values) = map.entry(name).or_insert_with(|| (label, BTreeMap::new()));
        values.entry(value.to_string()).or_default().fetch_add(n, Ordering::Relaxed);
    }

    /// The sum of `name` over its label values.
    pub fn total(&self, name: &str) -> u64 {
        let map = self.counters.read().unwrap_or_else(|p| p.into_inner());
        map.get(name).map_or(0, |(_, values)| values.values().map(|v| v.load(Ordering::Relaxed)).sum())
    }

    /// The exposition text: every counter, then the given gauges
    /// (name, help, [(labels, value)]).
    pub fn render(&self, gauges: &[Gauge<'_>]) -> String {
        let map = self.counters.read().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Some((label, values)) = map.get(name) {
                for (value, v) in values {
                    let value = value.replace(['"', '\\', '\n'], "_");
                    let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", v.load(Ordering::Relaxed));
                }
            }
        }
        for Gauge { name, help, values } in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (labels, v) in values {
                let _ = writeln!(out, "{name}{{{labels}}} {v}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.inc("imgate_smtp_replies_total", "code", "250");
        m.inc("imgate_smtp_replies_total", "code", "250");
        m.inc("imgate_smtp_replies_total", "code", "550");
        let text = m.render(&[Gauge {
            name: "imgate_queue_jobs",
            help: "Jobs.",
            values: vec![("kind=\"notify\"".into(), 3)],
        }]);
        assert!(text.contains("imgate_smtp_replies_total{code=\"250\"} 2\n"), "{text}");
        assert!(text.contains("imgate_smtp_replies_total{code=\"550\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE imgate_queue_jobs gauge\nimgate_queue_jobs{kind=\"notify\"} 3\n"), "{text}");
    }
}
