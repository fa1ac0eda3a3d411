//! What the lab measured, per model and per party, and its renderings: a
//! side-by-side table for the terminal, JSON (the types serialize), and an
//! SVG chart of stored and transferred bytes.

use std::fmt::Write as _;

use serde::Serialize;

use super::Model;
use super::link::Traffic;

/// One scenario run through every model.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    /// Virtual time the lab watched.
    pub run_for_secs: u64,
    pub models: Vec<ModelReport>,
}

/// The scenario in one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub model: Model,
    /// The sending domains first, then the recipients'.
    pub parties: Vec<PartyReport>,
    pub network: Traffic,
    pub sender: SenderView,
    /// Messages generated because delivery failed (bounces, DSNs).
    pub failure_messages: u64,
    /// Of those, bounces that reached someone who never sent the message
    /// (its sender address was forged).
    pub backscatter: u64,
    /// `Received:` headers in the copies recipients can read, beyond those
    /// the message was sent with.
    pub trace_headers_added: u64,
    pub reads: Reads,
    pub recall: Option<Recall>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Sender,
    Recipient,
}

/// One domain's server.
#[derive(Debug, Clone, Serialize)]
pub struct PartyReport {
    pub domain: String,
    pub role: Role,
    /// Message copies and notifications held at the end, in bytes.
    pub stored_bytes_end: u64,
    pub stored_bytes_peak: u64,
    /// Stored bytes integrated over the run, in byte-hours.
    pub byte_hours: f64,
    /// Message copies (mailbox, queue, store) at the end and at most.
    pub copies_end: u64,
    pub copies_peak: u64,
    /// IM2000 notifications in inboxes at the end.
    pub notifications_end: u64,
    /// What crossed this party's link (in: to its server).
    pub network: Traffic,
    /// For recipient domains: how long after sending each recipient could
    /// read (copy or notification arrived).
    pub readable: Option<Latency>,
    /// Known recipients here who never could read.
    pub never_readable: u64,
    pub bounces_generated: u64,
}

/// Seconds of virtual time, over recipients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min_secs: f64,
    pub median_secs: f64,
    pub max_secs: f64,
}

impl Latency {
    pub fn of(mut secs: Vec<f64>) -> Option<Latency> {
        if secs.is_empty() {
            return None;
        }
        secs.sort_by(f64::total_cmp);
        Some(Latency {
            count: secs.len() as u64,
            min_secs: secs[0],
            median_secs: secs[secs.len() / 2],
            max_secs: secs[secs.len() - 1],
        })
    }
}

/// What the sender could find out, how, and when.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SenderView {
    /// Failed recipients the sender learnt of.
    pub failures: Vec<Observation>,
    /// Recipients the sender can see were delivered to (notified).
    pub delivered_seen: u64,
    /// Recipients the sender can see have read the message.
    pub read_seen: u64,
    /// How long after sending the sender could see each delivery and each
    /// read (virtual seconds).
    pub delivered_after: Option<Latency>,
    pub read_after: Option<Latency>,
    /// Bounce messages that reached the sender's mailbox.
    pub bounce_messages: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Observation {
    pub recipient: String,
    /// `"bounce message"` or `"tracked status"`.
    pub how: String,
    /// The status or the bounce's reason.
    pub what: String,
    /// Virtual seconds after the message was sent.
    pub after_secs: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Reads {
    pub attempted: u64,
    pub succeeded: u64,
}

/// A sender's attempt to take messages back.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Recall {
    /// Recipients the message was withdrawn from before they read it.
    pub withdrawn: u64,
    /// Reads after the recall that still found the message.
    pub read_anyway: u64,
}

impl ModelReport {
    pub fn party(&self, domain: &str) -> Option<&PartyReport> {
        self.parties.iter().find(|p| p.domain == domain)
    }

    /// Sum of `f` over the parties in `role`.
    pub fn total(&self, role: Role, f: impl Fn(&PartyReport) -> f64) -> f64 {
        self.parties.iter().filter(|p| p.role == role).map(f).sum()
    }
}

impl Report {
    pub fn model(&self, model: Model) -> Option<&ModelReport> {
        self.models.iter().find(|m| m.model == model)
    }

    /// The side-by-side table for a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario {}: {}", self.scenario, self.description);
        let _ = writeln!(out, "watched for {}\n", human_secs(self.run_for_secs as f64));
        let header: Vec<String> = self.models.iter().map(|m| m.model.to_string()).collect();
        let mut rows: Vec<(String, Vec<String>)> = Vec::new();
        let mut row = |label: &str, f: &dyn Fn(&ModelReport) -> String| {
            rows.push((label.to_string(), self.models.iter().map(f).collect()));
        };
        row("stored at the sender (end)", &|m| bytes(m.total(Role::Sender, |p| p.stored_bytes_end as f64)));
        row("stored at recipients (end)", &|m| bytes(m.total(Role::Recipient, |p| p.stored_bytes_end as f64)));
        row("byte-hours at the sender", &|m| byte_hours(m.total(Role::Sender, |p| p.byte_hours)));
        row("byte-hours at recipients", &|m| byte_hours(m.total(Role::Recipient, |p| p.byte_hours)));
        row("message copies (peak, all)", &|m| format!("{}", m.parties.iter().map(|p| p.copies_peak).sum::<u64>()));
        row("notifications held (end)", &|m| format!("{}", m.parties.iter().map(|p| p.notifications_end).sum::<u64>()));
        row("network bytes", &|m| bytes((m.network.bytes_in + m.network.bytes_out) as f64));
        row("network connections", &|m| format!("{}", m.network.connections));
        row("connections refused (down)", &|m| format!("{}", m.network.refused));
        row("readable after (median)", &|m| {
            let all: Vec<f64> = m.parties.iter().filter_map(|p| p.readable).map(|l| l.median_secs).collect();
            Latency::of(all).map_or("-".into(), |l| human_secs(l.median_secs))
        });
        row("readable after (slowest)", &|m| {
            let worst = m
                .parties
                .iter()
                .filter_map(|p| p.readable)
                .map(|l| l.max_secs)
                .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
            worst.map_or("-".into(), human_secs)
        });
        row("never readable", &|m| format!("{}", m.parties.iter().map(|p| p.never_readable).sum::<u64>()));
        row("reads that worked", &|m| format!("{} of {}", m.reads.succeeded, m.reads.attempted));
        row("sender learns of failures by", &|m| match m.sender.failures.first() {
            None => "-".into(),
            Some(o) => format!("{} ({}), after {}", o.how, m.sender.failures.len(), human_secs(o.after_secs)),
        });
        row("sender sees delivered / read", &|m| format!("{} / {}", m.sender.delivered_seen, m.sender.read_seen));
        row("  sees the first read after", &|m| m.sender.read_after.map_or("-".into(), |l| human_secs(l.min_secs)));
        row("messages made by failures", &|m| format!("{}", m.failure_messages));
        row("  of them backscatter", &|m| format!("{}", m.backscatter));
        row("trace headers added", &|m| format!("{}", m.trace_headers_added));
        if self.models.iter().any(|m| m.recall.is_some()) {
            row("recall: withdrawn before read", &|m| m.recall.map_or("-".into(), |r| r.withdrawn.to_string()));
            row("recall: read anyway", &|m| m.recall.map_or("-".into(), |r| r.read_anyway.to_string()));
        }
        let label_w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let col_w: Vec<usize> = (0..header.len())
            .map(|i| rows.iter().map(|(_, v)| v[i].len()).chain([header[i].len()]).max().unwrap_or(0))
            .collect();
        let _ = write!(out, "{:label_w$}", "");
        for (h, w) in header.iter().zip(&col_w) {
            let _ = write!(out, "  {h:>w$}");
        }
        out.push('\n');
        for (label, values) in &rows {
            let _ = write!(out, "{label:label_w$}");
            for (v, w) in values.iter().zip(&col_w) {
                let _ = write!(out, "  {v:>w$}");
            }
            out.push('\n');
        }
        out
    }
}

/// 1536 → "1.5 KiB".
pub fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} B") } else { format!("{v:.1} {}", units[u]) }
}

fn byte_hours(n: f64) -> String {
    format!("{}·h", bytes(n))
}

/// 5400 → "1h30m".
pub fn human_secs(s: f64) -> String {
    let s = s.max(0.0);
    if s < 1.0 {
        return format!("{:.0}ms", s * 1000.0);
    }
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let total = s.round() as u64;
    let (d, h, m) = (total / 86_400, total % 86_400 / 3600, total % 3600 / 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m}m{}s", total % 60),
        (0, h, m) => format!("{h}h{m:02}m"),
        (d, h, _) => format!("{d}d{h:02}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let cases: &[(f64, &str)] =
            &[(0.0, "0 B"), (1023.0, "1023 B"), (1536.0, "1.5 KiB"), (3.0 * 1048576.0, "3.0 MiB")];
        for (n, want) in cases {
            assert_eq!(bytes(*n), *want);
        }
        let cases: &[(f64, &str)] =
            &[(0.25, "250ms"), (12.0, "12.0s"), (90.0, "1m30s"), (5400.0, "1h30m"), (90_000.0, "1d01h")];
        for (s, want) in cases {
            assert_eq!(human_secs(*s), *want);
        }
    }

    #[test]
    fn latency_order_statistics() {
        assert_eq!(Latency::of(vec![]), None);
        let l = Latency::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((l.count, l.min_secs, l.median_secs, l.max_secs), (3, 1.0, 2.0, 3.0));
    }
}
