//! The comparison lab: the same traffic through the SMTP model (recipient
//! stores, store and forward) and the IM2000 model (sender stores, notify
//! and pull), in one process on loopback, with a real DNS server, real
//! sockets and virtual time — and a typed [`Report`] of what each party
//! stored, what crossed the network, when recipients could read and what
//! the sender could see.
//!
//! Every figure is counted in the lab's real components: bytes and
//! connections at the [`link::Link`] in front of each party, stored copies
//! in each MTA's mailboxes and queue and in each imgate node's RocksDB,
//! arrival times where the copy or notification was filed.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")] async fn main() {
//! use imgate::lab::{self, Model, Scenario};
//!
//! let scenario = Scenario::find("one-to-one").unwrap();
//! let report = lab::compare(&scenario, &|_| {}).await.unwrap();
//! let (smtp, im2000) = (report.model(Model::Smtp).unwrap(), report.model(Model::Im2000).unwrap());
//! // SMTP adds a trace header on the way; IM2000 has no path to trace.
//! assert_eq!(smtp.trace_headers_added, 1);
//! assert_eq!(im2000.trace_headers_added, 0);
//! println!("{}", report.to_table());
//! # }
//! ```
//!
//! Codemap: [`scenario`] (TOML → [`Scenario`]), [`world`] (the parties of
//! one model), [`mta`] (the legacy MTA), [`link`] (counting relays),
//! [`dns`] (the DNS server), [`report`] (results and their table),
//! [`chart`] (the SVG).

pub mod chart;
pub mod dns;
pub mod link;
pub mod mailbox;
pub mod mta;
pub mod receiver;
pub mod report;
pub mod scenario;
pub mod world;

use std::collections::BTreeMap;
use std::time::Duration;

pub use dns::Dns;
pub use report::{ModelReport, Report};
pub use scenario::{Scenario, ScenarioError};

use crate::clock::{Clock, Millis};
use report::{Latency, Observation, PartyReport, Reads, Recall, Role, SenderView};
pub use world::World;
use world::{Sent, domain_of};

/// A mail model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    /// Recipient stores: every recipient's server keeps a copy.
    Smtp,
    /// Sender stores: one copy at the sender's store, notifications out.
    Im2000,
    /// Senders on SMTP; recipients' domains moved to IM2000 behind an
    /// imgate MX: one copy per domain at its gateway, notifications in.
    Gateway,
}

impl Model {
    pub const ALL: [Model; 3] = [Model::Smtp, Model::Im2000, Model::Gateway];
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Model::Smtp => "SMTP",
            Model::Im2000 => "IM2000",
            Model::Gateway => "GATEWAY",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("cannot set up the lab: {0}")]
    Setup(String),
    #[error("a party failed: {0}")]
    Party(String),
    #[error("the world did not settle at {at}: {what}")]
    Stuck { at: String, what: String },
}

/// How far a run is, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub model: Model,
    /// Virtual time reached, and the end.
    pub at: Duration,
    pub end: Duration,
}

/// Runs `scenario` through every model.
pub async fn compare(scenario: &Scenario, progress: &(dyn Fn(Progress) + Sync)) -> Result<Report, LabError> {
    let mut models = Vec::new();
    for model in Model::ALL {
        models.push(run(scenario, model, progress).await?);
    }
    Ok(Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        run_for_secs: end_of(scenario).as_secs(),
        models,
    })
}

/// How long a run watches: the scenario's `run_for`, and at least an hour
/// past its last event.
pub fn end_of(scenario: &Scenario) -> Duration {
    scenario.run_for.max(scenario.last_event() + Duration::from_secs(3600))
}

#[derive(Debug, Clone)]
enum Action {
    Down(String),
    Up(String),
    Send { traffic: usize, message: u32 },
    Read { traffic: usize, message: u32, reader: String },
    Recall { traffic: usize },
}

/// The scenario as a timetable.
fn timetable(scenario: &Scenario) -> Vec<(Duration, Action)> {
    let mut events = Vec::new();
    for o in &scenario.outages {
        events.push((o.from, Action::Down(o.domain.clone())));
        events.push((o.until, Action::Up(o.domain.clone())));
    }
    for (ti, t) in scenario.traffic.iter().enumerate() {
        let known: Vec<String> = t.recipient_list().into_iter().filter(|(_, k)| *k).map(|(a, _)| a).collect();
        for m in 0..t.messages {
            let sent = t.at + t.spacing * m;
            events.push((sent, Action::Send { traffic: ti, message: m }));
            for reader in known.iter().enumerate().filter(|(i, _)| t.reads(*i)).map(|(_, r)| r) {
                events.push((sent + t.read_after, Action::Read { traffic: ti, message: m, reader: reader.clone() }));
            }
        }
        if let Some(at) = t.recall {
            events.push((at, Action::Recall { traffic: ti }));
        }
    }
    // A stable sort: at one moment, outages come first, then each
    // traffic's sends and reads, then its recall.
    events.sort_by_key(|(at, _)| *at);
    events
}

/// The content of message `m` of traffic `t`: headers (its Message-ID made
/// of `marker`, by which copies are found), and text up to the scenario's
/// size.
fn content(scenario: &Scenario, t: usize, m: u32, marker: &str) -> Vec<u8> {
    let tr = &scenario.traffic[t];
    let to = match tr.recipient_list().as_slice() {
        [(one, _)] => one.clone(),
        _ => "undisclosed-recipients:;".to_string(),
    };
    let mut c = format!(
        "From: {}\r\nTo: {to}\r\nSubject: {} message {}\r\nMessage-ID: <{marker}@{}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
        tr.claimed_from(),
        scenario.name,
        m + 1,
        tr.from.domain()
    )
    .into_bytes();
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while c.len() + line.len() <= tr.size as usize {
        c.extend_from_slice(line);
    }
    c
}

/// Stored bytes over time for one party.
#[derive(Default)]
struct Storage {
    last_bytes: u64,
    last_at: Millis,
    byte_ms: f64,
    peak_bytes: u64,
    peak_copies: u64,
}

/// Runs `scenario` through one model.
pub async fn run(
    scenario: &Scenario,
    model: Model,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ModelReport, LabError> {
    let world = World::start(model, scenario).await?;
    let result = run_in(&world, scenario, progress).await;
    world.shutdown().await;
    result
}

/// Runs `scenario` in a world made for it by [`World::start`], which stays
/// up afterwards for a caller to count in its parties' stores.
pub async fn run_in(
    world: &World,
    scenario: &Scenario,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ModelReport, LabError> {
    let start = world.clock.now();
    let end = end_of(scenario);
    let events = timetable(scenario);
    let mut storage: BTreeMap<String, Storage> = world.domains().map(|d| (d.to_string(), Storage::default())).collect();
    let mut sent: BTreeMap<(usize, u32), Sent> = BTreeMap::new();
    let mut reads = Reads::default();
    let mut recall: Option<Recall> = None;
    let mut recalled = vec![false; scenario.traffic.len()];
    let mut next = 0;
    loop {
        settle(world, start).await?;
        let now = world.clock.now();
        for (domain, s) in storage.iter_mut() {
            let h = world.holding(domain)?;
            s.byte_ms += s.last_bytes as f64 * (now - s.last_at.max(start)) as f64;
            s.last_at = now;
            s.last_bytes = h.bytes();
            s.peak_bytes = s.peak_bytes.max(h.bytes());
            s.peak_copies = s.peak_copies.max(h.copies);
        }
        let elapsed = Duration::from_millis(now - start);
        progress(Progress { model: world.model, at: elapsed.min(end), end });
        let mut fired = false;
        while let Some((_, action)) = events.get(next).filter(|(at, _)| *at <= elapsed) {
            next += 1;
            fired = true;
            match action {
                Action::Down(d) => world.set_up(d, false)?,
                Action::Up(d) => world.set_up(d, true)?,
                Action::Send { traffic, message } => {
                    let t = &scenario.traffic[*traffic];
                    let marker = format!("lab-{}-{}-{}", world.model, traffic + 1, message + 1).to_lowercase();
                    let recipients: Vec<String> = t.recipient_list().into_iter().map(|(a, _)| a).collect();
                    let body = content(scenario, *traffic, *message, &marker);
                    let envelope_from = t.claimed_from().to_string();
                    let s = world.send(&t.from.to_string(), &envelope_from, &recipients, body).await?;
                    sent.insert((*traffic, *message), s);
                }
                Action::Read { traffic, message, reader } => {
                    let Some(s) = sent.get(&(*traffic, *message)) else { continue };
                    reads.attempted += 1;
                    let ok = world.read(reader, s).await?;
                    reads.succeeded += u64::from(ok);
                    if recalled[*traffic] && ok {
                        recall.get_or_insert_default().read_anyway += 1;
                    }
                }
                Action::Recall { traffic } => {
                    recalled[*traffic] = true;
                    let r = recall.get_or_insert_default();
                    for (_, s) in sent.iter().filter(|((t, _), _)| t == traffic) {
                        r.withdrawn += world.recall(s).await?;
                    }
                }
            }
        }
        if fired {
            continue;
        }
        if elapsed >= end {
            break;
        }
        let next_event = events.get(next).map_or(end, |(at, _)| (*at).min(end));
        let next_due = world.next_due()?.map(|d| Duration::from_millis(d.saturating_sub(start)));
        let to = next_due.map_or(next_event, |d| d.min(next_event)).max(elapsed + Duration::from_millis(1));
        world.clock.advance(to - elapsed);
    }
    measure(world, scenario, &sent, storage, reads, recall).await
}

/// Waits until no party has anything to do now and the network is quiet.
async fn settle(world: &World, start: Millis) -> Result<(), LabError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (mut quiet, mut last) = (0, world.total_bytes());
    loop {
        tokio::time::sleep(Duration::from_millis(4)).await;
        let bytes = world.total_bytes();
        if !world.is_busy()? && bytes == last {
            quiet += 1;
            if quiet >= 3 {
                return Ok(());
            }
        } else {
            quiet = 0;
        }
        last = bytes;
        if tokio::time::Instant::now() > deadline {
            let at = report::human_secs((world.clock.now() - start) as f64 / 1000.0);
            return Err(LabError::Stuck { at, what: format!("{} model: work still due after 60 s", world.model) });
        }
    }
}

/// Builds the model's report from the world's counts.
async fn measure(
    world: &World,
    scenario: &Scenario,
    sent: &BTreeMap<(usize, u32), Sent>,
    storage: BTreeMap<String, Storage>,
    reads: Reads,
    recall: Option<Recall>,
) -> Result<ModelReport, LabError> {
    let senders: Vec<String> = scenario.traffic.iter().map(|t| t.from.domain().to_ascii_lowercase()).collect();
    // Time to readable, per recipient domain, over every known recipient.
    let mut latency: BTreeMap<String, (Vec<f64>, u64)> = BTreeMap::new();
    let mut trace_headers_added = 0;
    let mut sender = SenderView::default();
    let (mut delivered_after, mut read_after) = (Vec::new(), Vec::new());
    for ((ti, _), s) in sent {
        let t = &scenario.traffic[*ti];
        for (rcpt, known) in t.recipient_list() {
            if !known {
                continue;
            }
            let entry = latency.entry(domain_of(&rcpt).to_string()).or_default();
            match world.readable_at(&rcpt, s)? {
                Some(at) => entry.0.push(at.saturating_sub(s.at) as f64 / 1000.0),
                None => entry.1 += 1,
            }
        }
        let mut copies = Vec::new();
        for d in world.domains() {
            copies.extend(world.copies_of(d, s)?);
        }
        trace_headers_added += copies.iter().map(|c| received_headers(c)).sum::<u64>();
        if let Some((message, _)) = &s.im2000 {
            let track = world.track(&s.sender, message).await?;
            for r in &track.recipients {
                use crate::proto::NotificationStatus as N;
                let ms = |t: &Option<String>| t.as_deref().and_then(crate::clock::parse_rfc3339);
                let after = |t: &Option<String>| ms(t).map(|at| at.saturating_sub(s.at) as f64 / 1000.0);
                delivered_after.extend(after(&r.accepted_at));
                read_after.extend(after(&r.read_at));
                if matches!(
                    r.notification,
                    N::Nouser | N::Baddomain | N::Noservice | N::Noserver | N::Refused | N::Protocolerror
                ) {
                    let at = ms(&r.last_attempt_at).unwrap_or(s.at);
                    sender.failures.push(Observation {
                        recipient: r.recipient.clone(),
                        how: "tracked status".into(),
                        what: format!("{:?}", r.notification).to_lowercase(),
                        after_secs: at.saturating_sub(s.at) as f64 / 1000.0,
                    });
                }
            }
        }
    }
    let mut backscatter = 0;
    if world.model != Model::Im2000 {
        // The sender learns only from bounce messages in their mailbox; a
        // forged address's owner gets them instead.
        let mut senders: Vec<String> = scenario.traffic.iter().map(|t| t.from.to_string()).collect();
        let mut forged: Vec<String> =
            scenario.traffic.iter().filter_map(|t| Some(t.forged_from.as_ref()?.to_string())).collect();
        for list in [&mut senders, &mut forged] {
            list.sort();
            list.dedup();
        }
        for from in &senders {
            let first_sent = sent.values().filter(|s| &s.sender == from).map(|s| s.at).min();
            for (at, recipient, reason) in bounces(world, from)? {
                sender.bounce_messages += 1;
                sender.failures.push(Observation {
                    recipient,
                    how: "bounce message".into(),
                    what: reason,
                    after_secs: at.saturating_sub(first_sent.unwrap_or(at)) as f64 / 1000.0,
                });
            }
        }
        for address in &forged {
            backscatter += bounces(world, address)?.len() as u64;
        }
    }
    sender.failures.sort_by(|a, b| a.after_secs.total_cmp(&b.after_secs));
    sender.delivered_seen = delivered_after.len() as u64;
    sender.read_seen = read_after.len() as u64;
    sender.delivered_after = Latency::of(delivered_after);
    sender.read_after = Latency::of(read_after);
    let mut parties = Vec::new();
    let mut network = link::Traffic::default();
    let mut failure_messages = 0;
    for (domain, s) in storage {
        let h = world.holding(&domain)?;
        let traffic = world.traffic(&domain)?;
        network.connections += traffic.connections;
        network.refused += traffic.refused;
        network.bytes_in += traffic.bytes_in;
        network.bytes_out += traffic.bytes_out;
        let bounces_generated = world.bounces_generated(&domain)?;
        failure_messages += bounces_generated;
        let (lat, never) = latency.remove(&domain).unwrap_or_default();
        let role = if senders.contains(&domain) { Role::Sender } else { Role::Recipient };
        parties.push(PartyReport {
            domain,
            role,
            stored_bytes_end: h.bytes(),
            stored_bytes_peak: s.peak_bytes,
            byte_hours: s.byte_ms / 3_600_000.0,
            copies_end: h.copies,
            copies_peak: s.peak_copies,
            notifications_end: h.notifications,
            network: traffic,
            readable: Latency::of(lat),
            never_readable: never,
            bounces_generated,
        });
    }
    parties.sort_by_key(|p| (p.role != Role::Sender, natural(&p.domain)));
    Ok(ModelReport {
        model: world.model,
        parties,
        network,
        sender,
        failure_messages,
        backscatter,
        trace_headers_added,
        reads,
        recall,
    })
}

/// Bounces in `mailbox`: (arrived, failed recipient, reason).
fn bounces(world: &World, mailbox: &str) -> Result<Vec<(Millis, String, String)>, LabError> {
    let field = |c: &str, name: &str| {
        c.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().trim_start_matches("rfc822;").trim().to_string())
    };
    Ok(world
        .bounce_copies(mailbox)?
        .into_iter()
        .map(|(at, content)| {
            let text = String::from_utf8_lossy(&content).into_owned();
            let rcpt = field(&text, "Final-Recipient:").unwrap_or_default();
            let status = field(&text, "Status:").unwrap_or_default();
            (at, rcpt, format!("bounce, status {status}"))
        })
        .collect())
}

/// `Received:` fields in a message's header section.
pub fn received_headers(content: &[u8]) -> u64 {
    let header = &content[..crate::proto::digest::header_section_len(content)];
    String::from_utf8_lossy(header).lines().filter(|l| l.to_ascii_lowercase().starts_with("received:")).count() as u64
}

/// "r10.test" after "r9.test".
fn natural(domain: &str) -> (String, u64, String) {
    let digits: String = domain.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    let prefix: String = domain.chars().take_while(|c| !c.is_ascii_digit()).collect();
    (prefix, digits.parse().unwrap_or(0), domain.to_string())
}
