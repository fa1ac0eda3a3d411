//! The lab's legacy SMTP domain: a store-and-forward MTA in the
//! recipient-stores model, made of imgate's own SMTP parts — the sans-IO
//! [`Session`] and recipient policy on the way in, MX lookup and lettre on
//! the way out, the queue's retry schedule, and [`Bounce`] for failures.
//!
//! What a real MTA does, it does: mail for its users is stored once per
//! recipient mailbox, with a `Received:` trace header; mail its users send
//! waits in its queue (one copy per message) until every recipient domain
//! took it, is retried with backoff while a host is down, and is bounced to
//! the sender when refused or after the queue lifetime. Everything it holds
//! and does is counted, so the lab can report it.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::Address as LettreAddress;
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::mailbox::{Mailboxes, message_id_of};
use crate::clock::{Clock, Millis};
use crate::dns::{Dns, DnsError, HickoryDns};
use crate::proto::MessageId;
use crate::smtp_in::policy::{Destination, recipient_verdict};
use crate::smtp_in::reply::Reply;
use crate::smtp_in::session::{ListenerKind, Session, SessionConfig, Step};
use crate::smtp_out::dsn::Bounce;

/// Retry schedule and queue lifetime, Postfix's defaults.
const RETRY_MIN: Duration = Duration::from_secs(300);
const RETRY_MAX: Duration = Duration::from_secs(4000);
const QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 86_400);
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A message waiting in the outgoing queue: one copy, however many
/// recipients are still pending.
#[derive(Debug)]
struct Queued {
    sender: Option<String>,
    content: Arc<Vec<u8>>,
    pending: Vec<String>,
    attempts: u32,
    queued_at: Millis,
    due: Millis,
    running: bool,
    /// Bounces never bounce.
    is_bounce: bool,
}

/// What an MTA holds and has done, counted as it happens.
#[derive(Debug, Default, Clone)]
pub struct MtaCounts {
    pub mailbox_copies: u64,
    pub mailbox_bytes: u64,
    pub queued_messages: usize,
    pub queued_bytes: u64,
    /// Bounce messages this MTA generated.
    pub bounces_generated: u64,
    /// Delivery attempts that failed temporarily (host down, 4xx).
    pub deferrals: u64,
}

#[derive(Default)]
struct State {
    queue: BTreeMap<u64, Queued>,
    next_id: u64,
    bounces_generated: u64,
    deferrals: u64,
}

struct Inner {
    domain: String,
    hostname: String,
    users: HashSet<String>,
    clock: Arc<dyn Clock>,
    mailboxes: Mailboxes,
    dns: HickoryDns,
    /// The port every lab MTA's MX listens on (MX records carry no port).
    smtp_port: u16,
    state: Mutex<State>,
    wake: Notify,
    /// SMTP sessions being served and deliveries being attempted.
    busy: AtomicUsize,
}

/// A running legacy MTA for one domain.
pub struct Mta {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Mta {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Mta {
    /// Starts the MTA for `domain` with mailboxes for `users` (local parts),
    /// listening on `listen`; it finds other domains' MX hosts through
    /// `dns` and reaches them on `smtp_port`.
    pub async fn start(
        domain: &str,
        users: &[String],
        listen: SocketAddr,
        dns: SocketAddr,
        smtp_port: u16,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Mta> {
        let config = crate::config::DnsConfig { nameservers: vec![dns], timeout: Duration::from_secs(2) };
        let dns = HickoryDns::new(&config).map_err(std::io::Error::other)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            domain: domain.to_ascii_lowercase(),
            hostname: format!("mx.{domain}"),
            users: users.iter().map(|u| u.to_ascii_lowercase()).collect(),
            mailboxes: Mailboxes::new(clock.clone()),
            clock,
            dns,
            smtp_port,
            state: Mutex::default(),
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(inner.clone(), listener));
        let queue = tokio::spawn(queue_loop(inner.clone()));
        Ok(Mta { inner, addr, tasks: vec![accept, queue] })
    }

    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// A local user hands a message to the MTA (as a mail client does on
    /// submission): it is queued for its recipients.
    pub fn submit(&self, sender: &str, recipients: &[String], content: Vec<u8>) {
        self.inner.enqueue(Some(sender.to_string()), recipients.to_vec(), Arc::new(content), false);
    }

    /// The sender's operator deletes the message from the outgoing queue
    /// (the only recall SMTP has). Returns how many recipients it had still
    /// pending; copies already delivered stay where they are.
    pub fn recall(&self, message_id: &str) -> usize {
        let mut st = self.inner.lock();
        let ids: Vec<u64> = st
            .queue
            .iter()
            .filter(|(_, q)| !q.running && message_id_of(&q.content).as_deref() == Some(message_id))
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| st.queue.remove(id)).map(|q| q.pending.len()).sum()
    }

    /// The local mailboxes.
    pub fn mailboxes(&self) -> &Mailboxes {
        &self.inner.mailboxes
    }

    pub fn counts(&self) -> MtaCounts {
        let (mailbox_copies, mailbox_bytes) = self.inner.mailboxes.usage();
        let st = self.inner.lock();
        MtaCounts {
            mailbox_copies,
            mailbox_bytes,
            queued_messages: st.queue.len(),
            queued_bytes: st.queue.values().map(|q| q.content.len() as u64).sum(),
            bounces_generated: st.bounces_generated,
            deferrals: st.deferrals,
        }
    }

    /// Work to do now: a session or delivery in progress, or a queued
    /// message that is due.
    pub fn is_busy(&self) -> bool {
        let now = self.inner.clock.now();
        self.inner.busy.load(Ordering::SeqCst) > 0
            || self.inner.lock().queue.values().any(|q| q.running || q.due <= now)
    }

    /// When the queue next has something to do.
    pub fn next_due(&self) -> Option<Millis> {
        self.inner.lock().queue.values().filter(|q| !q.running).map(|q| q.due).min()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, sender: Option<String>, recipients: Vec<String>, content: Arc<Vec<u8>>, is_bounce: bool) {
        let now = self.clock.now();
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        let q = Queued {
            sender,
            content,
            pending: recipients,
            attempts: 0,
            queued_at: now,
            due: now,
            running: false,
            is_bounce,
        };
        st.queue.insert(id, q);
        drop(st);
        self.wake.notify_one();
    }

    fn is_local(&self, rcpt: &str) -> bool {
        rcpt.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain))
    }

    /// A bounce to `sender` saying `recipient` failed, queued like any mail.
    fn bounce(&self, sender: &str, recipient: &str, reason: &str, original: &[u8]) {
        let headers_end = original.windows(4).position(|w| w == b"\r\n\r\n").map_or(original.len(), |p| p + 2);
        let date = chrono::DateTime::from_timestamp_millis(self.clock.now() as i64).unwrap_or_default().to_rfc2822();
        let unique = MessageId::random().short();
        let dsn = Bounce {
            hostname: &self.hostname,
            from_domain: &self.domain,
            sender,
            recipient,
            reason,
            original_headers: Some(&original[..headers_end]),
            date: &date,
            unique: &unique,
        }
        .render();
        self.lock().bounces_generated += 1;
        self.enqueue(None, vec![sender.to_string()], Arc::new(dsn), true);
    }
}

/// Counts a unit of work for as long as it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn new(n: &'a AtomicUsize) -> Busy<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            // Out of descriptors, say: let connections close first.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _busy = Busy::new(&inner.busy);
            serve(&inner, tcp, peer).await;
        });
    }
}

/// One inbound SMTP session: the MX of a domain that stores for its users.
async fn serve(inner: &Inner, mut tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let cfg = SessionConfig {
        hostname: inner.hostname.clone(),
        kind: ListenerKind::Mx,
        max_size: 10 << 20,
        max_recipients: 1000,
        tls_available: false,
        auth_without_tls: false,
        max_refused_recipients: 1000,
    };
    let (mut session, greeting) = Session::new(cfg);
    let mut out = greeting.to_wire();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let step = match session.step() {
            Step::CheckRecipient(addr) => {
                let dest = if addr.domain().eq_ignore_ascii_case(&inner.domain) {
                    Destination::Local { user_exists: inner.users.contains(&addr.local().to_ascii_lowercase()) }
                } else {
                    Destination::Remote(None)
                };
                let verdict = recipient_verdict(ListenerKind::Mx, &addr, &dest);
                session.recipient_checked(addr, verdict, false)
            }
            Step::Authenticate { .. } => session.authenticated(None),
            Step::Message(env, data) => {
                let id = inner.mailboxes.deliver(&env, peer.ip(), &inner.hostname, &data);
                session.stored(Reply::new(250, "2.0.0", format!("Ok: stored as {}", id.short())))
            }
            other => other,
        };
        match step {
            Step::Reply(r) | Step::StartTls(r) => out.extend_from_slice(&r.to_wire()),
            Step::Close(r) => {
                out.extend_from_slice(&r.to_wire());
                let _ = tcp.write_all(&out).await;
                return;
            }
            Step::NeedInput => {
                if !out.is_empty() && tcp.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
                match tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => session.receive(&buf[..n]),
                    _ => return,
                }
            }
            Step::CheckRecipient(_) | Step::Authenticate { .. } | Step::Message(..) => unreachable!("handled above"),
        }
    }
}

async fn queue_loop(inner: Arc<Inner>) {
    loop {
        let now = inner.clock.now();
        let due: Vec<Due> = {
            let mut st = inner.lock();
            st.queue
                .iter_mut()
                .filter(|(_, q)| !q.running && q.due <= now)
                .map(|(id, q)| {
                    q.running = true;
                    Due { id: *id, sender: q.sender.clone(), content: q.content.clone(), pending: q.pending.clone() }
                })
                .collect()
        };
        for due in due {
            let inner = inner.clone();
            inner.busy.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                attempt(&inner, due).await;
                inner.busy.fetch_sub(1, Ordering::SeqCst);
                inner.wake.notify_one();
            });
        }
        let next = inner.lock().queue.values().filter(|q| !q.running).map(|q| q.due).min();
        let until = next.unwrap_or(u64::MAX).min(inner.clock.now() + 60_000);
        tokio::select! {
            _ = inner.clock.sleep_until(until) => {}
            _ = inner.wake.notified() => {}
        }
    }
}

/// How one recipient fared in an attempt.
enum Outcome {
    Delivered,
    Refused(String),
    Deferred(String),
}

/// A queued message taken for an attempt.
struct Due {
    id: u64,
    sender: Option<String>,
    content: Arc<Vec<u8>>,
    pending: Vec<String>,
}

/// One attempt for a queued message: a transaction per recipient domain.
async fn attempt(inner: &Inner, Due { id, sender, content, pending }: Due) {
    let mut by_domain: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rcpt in pending {
        let domain = rcpt.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(rcpt);
    }
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    for (domain, rcpts) in by_domain {
        if rcpts.iter().all(|r| inner.is_local(r)) {
            for r in rcpts {
                let local = r.split('@').next().unwrap_or("").to_ascii_lowercase();
                let outcome = if inner.users.contains(&local) {
                    inner.mailboxes.file(&r, content.clone(), sender.is_none());
                    Outcome::Delivered
                } else {
                    Outcome::Refused("550 5.1.1 no such user here".into())
                };
                outcomes.push((r, outcome));
            }
            continue;
        }
        outcomes.extend(send_to_domain(inner, &domain, sender.as_deref(), &content, rcpts).await);
    }

    let now = inner.clock.now();
    let mut bounces = Vec::new();
    {
        let mut st = inner.lock();
        let deferred = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Deferred(_))).count() as u64;
        st.deferrals += deferred;
        // Recalled meanwhile: nothing more to do for it.
        let Some(q) = st.queue.get_mut(&id) else { return };
        q.running = false;
        q.attempts += 1;
        let expired = now.saturating_sub(q.queued_at) >= QUEUE_LIFETIME.as_millis() as u64;
        let mut still = Vec::new();
        for (rcpt, outcome) in outcomes {
            match outcome {
                Outcome::Delivered => {}
                Outcome::Refused(reason) => bounces.push((rcpt, reason)),
                Outcome::Deferred(reason) if expired => {
                    bounces.push((rcpt, format!("4.4.7 gave up after the queue lifetime; last error: {reason}")))
                }
                Outcome::Deferred(_) => still.push(rcpt),
            }
        }
        q.pending = still;
        let (is_bounce, sender) = (q.is_bounce, q.sender.clone());
        if q.pending.is_empty() {
            st.queue.remove(&id);
        } else {
            let delay = crate::backoff::retry_delay(q.attempts, RETRY_MIN, RETRY_MAX, &mut rand::rng());
            q.due = now + delay.as_millis() as u64;
        }
        drop(st);
        if is_bounce {
            for (rcpt, reason) in &bounces {
                tracing::info!(%rcpt, %reason, "lab: a bounce could not be delivered; dropped");
            }
            return;
        }
        if let Some(sender) = sender {
            for (rcpt, reason) in bounces {
                inner.bounce(&sender, &rcpt, &reason, &content);
            }
        }
    }
}

/// Delivers to `domain`'s MX: per-recipient results from one transaction.
async fn send_to_domain(
    inner: &Inner,
    domain: &str,
    sender: Option<&str>,
    content: &[u8],
    rcpts: Vec<String>,
) -> Vec<(String, Outcome)> {
    let all = |o: &dyn Fn() -> Outcome| rcpts.iter().map(|r| (r.clone(), o())).collect::<Vec<_>>();
    let hosts = match inner.dns.mx(domain).await {
        Ok(mut mx) => {
            mx.sort();
            mx
        }
        Err(DnsError::NxDomain | DnsError::NoRecords) => {
            return all(&|| Outcome::Refused(format!("550 5.1.2 {domain}: no such domain")));
        }
        Err(e) => return all(&|| Outcome::Deferred(e.to_string())),
    };
    let mut last = String::from("no MX host answered");
    for (_, host) in hosts {
        let Ok(ips) = inner.dns.ips(&host).await else { continue };
        for ip in ips {
            match transaction(inner, (ip, inner.smtp_port).into(), sender, content, &rcpts).await {
                Ok(results) => return results,
                Err(e) => last = format!("{host}: {e}"),
            }
        }
    }
    all(&|| Outcome::Deferred(last.clone()))
}

async fn transaction(
    inner: &Inner,
    addr: SocketAddr,
    sender: Option<&str>,
    content: &[u8],
    rcpts: &[String],
) -> Result<Vec<(String, Outcome)>, String> {
    let hello = ClientId::Domain(inner.hostname.clone());
    let mut conn = AsyncSmtpConnection::connect_tokio1(addr, Some(SMTP_TIMEOUT), &hello, None, None)
        .await
        .map_err(|e| e.to_string())?;
    let from = sender.map(|s| s.parse::<LettreAddress>()).transpose().map_err(|e| e.to_string())?;
    conn.command(Mail::new(from, vec![])).await.map_err(|e| e.to_string())?;
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    for r in rcpts {
        let outcome = match r.parse::<LettreAddress>() {
            Err(e) => Outcome::Refused(format!("553 5.1.3 {e}")),
            Ok(a) => match conn.command(Rcpt::new(a, vec![])).await {
                Ok(_) => {
                    accepted.push(r.clone());
                    continue;
                }
                Err(e) if e.is_permanent() => Outcome::Refused(crate::peer::error_chain(&e)),
                Err(e) => Outcome::Deferred(crate::peer::error_chain(&e)),
            },
        };
        results.push((r.clone(), outcome));
    }
    if !accepted.is_empty() {
        conn.command(lettre::transport::smtp::commands::Data).await.map_err(|e| e.to_string())?;
        let body = content.strip_suffix(b"\r\n").unwrap_or(content);
        let sent = conn.message(body).await;
        for r in accepted {
            let outcome = match &sent {
                Ok(_) => Outcome::Delivered,
                Err(e) if e.is_permanent() => Outcome::Refused(crate::peer::error_chain(e)),
                Err(e) => Outcome::Deferred(crate::peer::error_chain(e)),
            };
            results.push((r, outcome));
        }
    }
    let _ = conn.quit().await;
    Ok(results)
}
