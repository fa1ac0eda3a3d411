//! Notification submission, the agent's public service. Each notification is
//! checked before it is filed: its fields are of sane length, its store has
//! not used up its rate, the recipient is a user here with room in their
//! inbox, the store is the sender's domain (or a gateway this agent trusts,
//! for mail it took in by SMTP — never for a sender of a domain served
//! here), and the message is really at that store — probed with HEAD at the
//! store this agent locates itself, never at an address the notification
//! names. Filing is idempotent per (store, id, recipient).
//!
//! Answers to the store say what was wrong with the notification, never what
//! this agent met on the way (hosts, ports, other servers' replies): those
//! go to the log.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::Shared;
use super::error::{ApiError, parse_json};
use crate::config::Route;
use crate::peer::{PeerError, Probe};
use crate::proto::address::valid_domain;
use crate::proto::api::{MAX_PROBE_BATCH, Notification, NotifyOutcome, NotifyResponse, NotifyResult, Origin};
use crate::proto::{Address, RecipientId};
use crate::smtp_out::probe::Verdict;
use crate::store::{Filing, InboxAccept, Unavailable};

/// Most notifications accepted in one request.
pub const MAX_BATCH: usize = 1000;
/// What a store is told when the recipient's inbox is full.
const INBOX_FULL: &str = "the recipient's inbox is full; try later";
/// Notifications of one request verified concurrently.
const PROBES_AT_ONCE: usize = 32;

fn outcome(result: NotifyResult, reason: impl Into<String>) -> NotifyOutcome {
    let reason = reason.into();
    NotifyOutcome { result, reason: (!reason.is_empty()).then_some(reason) }
}

/// `POST /notifications`.
pub async fn submit(State(s): State<Shared>, body: Bytes) -> Result<Response, ApiError> {
    let batch: Vec<Notification> = parse_json(&body)?;
    if batch.is_empty() || batch.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!("send between 1 and {MAX_BATCH} notifications")));
    }
    let results = consider(&s, &batch, Confirm::AtStores).await;
    Ok(axum::Json(NotifyResponse { results }).into_response())
}

/// How notifications are confirmed before they are filed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Each at its store: probed there (or read here, for this node's own).
    AtStores,
    /// Already: this node's queue sends them, for messages in its own store
    /// whose records it read under each job's lease a moment ago (stored,
    /// the recipient not final). Reading them again would confirm what was
    /// just read; what changed since (a lifetime ended) a pull answers, as
    /// for any notification filed a moment before.
    Queued,
}

/// Decides notifications for recipients here, answering in order: each is
/// checked on its own (field lengths, rates, recipient, trust, inbox), then
/// the survivors are verified at their stores — one batch probe per store,
/// not one request per recipient — unless `confirm` says they are, then
/// legacy users are checked at their host, and every verified one is filed
/// in one synced batch. The queue calls this directly for recipients of
/// this node's own domains.
pub async fn consider(s: &Shared, batch: &[Notification], confirm: Confirm) -> Vec<NotifyOutcome> {
    let checks = batch.iter().cloned().map(|n| {
        let s = s.clone();
        async move { precheck(&s, &n, confirm).await }
    });
    // Ok: checked so far; Err: answered without filing.
    let mut checked: Vec<Result<Pending, NotifyOutcome>> =
        futures::stream::iter(checks).buffered(PROBES_AT_ONCE).collect().await;
    if confirm == Confirm::AtStores {
        verify_at_stores(s, batch, &mut checked).await;
    }
    let legacy_checks = checked.into_iter().zip(batch.iter().cloned()).map(|(c, n)| {
        let s = s.clone();
        async move {
            let pending = c?;
            if pending.ask_legacy_host {
                ask_legacy_host(&s, &n, &pending.filing.user_key).await?;
            }
            Ok(pending.filing)
        }
    });
    let checked: Vec<Result<Filing, NotifyOutcome>> =
        futures::stream::iter(legacy_checks).buffered(PROBES_AT_ONCE).collect().await;
    let filings: Vec<Filing> = checked.iter().filter_map(|c| c.as_ref().ok().cloned()).collect();
    let filed = if filings.is_empty() {
        Ok(Vec::new())
    } else {
        let (st, now, f, max) = (s.store.clone(), s.clock.now(), filings.clone(), s.config.im2000.max_inbox);
        match s.blocking(move || st.file_notifications(&f, now, max)).await {
            Ok(Ok(results)) => Ok(results),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    if let Err(e) = &filed {
        tracing::error!(error = %e, "filing notifications failed");
    }
    let mut filed = filed.unwrap_or_default().into_iter();
    let mut wake = false;
    let outcomes: Vec<NotifyOutcome> = checked
        .into_iter()
        .map(|c| match c {
            Err(o) => o,
            Ok(f) => match filed.next() {
                Some(InboxAccept::Accepted(_)) => {
                    wake |= f.legacy;
                    outcome(NotifyResult::Accepted, "")
                }
                Some(InboxAccept::Duplicate(_)) => outcome(NotifyResult::Duplicate, ""),
                Some(InboxAccept::Full) => {
                    s.metrics.inc("imgate_rate_limited_total", "what", "inbox_full");
                    outcome(NotifyResult::Retry, INBOX_FULL)
                }
                None => outcome(NotifyResult::Retry, "storage temporarily unavailable"),
            },
        })
        .collect();
    if wake {
        s.wake.notify_one();
    }
    for (n, o) in batch.iter().zip(&outcomes) {
        let label = match o.result {
            NotifyResult::Accepted => "accepted",
            NotifyResult::Duplicate => "duplicate",
            NotifyResult::Nouser => "nouser",
            NotifyResult::Refused => "refused",
            NotifyResult::Retry => "retry",
        };
        s.metrics.inc("imgate_notifications_received_total", "result", label);
        // Every field came from a stranger: logged escaped (`?`), so CR/LF
        // in them cannot forge a log line.
        tracing::info!(store = ?n.store, rid = ?n.rid(), recipient = ?n.recipient, sender = ?n.sender,
            result = label, reason = ?o.reason.as_deref().unwrap_or(""), "notification considered");
    }
    outcomes
}

/// A notification that passed the checks made on its own, waiting for its
/// store to confirm it.
struct Pending {
    /// The filing to make once verified.
    filing: Filing,
    store: String,
    /// A legacy user whose host is asked about them once verified.
    ask_legacy_host: bool,
}

/// Checks one notification on its own: what to file once its store
/// confirms it, or the answer.
async fn precheck(s: &Shared, n: &Notification, confirm: Confirm) -> Result<Pending, NotifyOutcome> {
    if let Some((field, max)) = n.oversized_field() {
        s.metrics.inc("imgate_rate_limited_total", "what", "notification_field");
        return Err(outcome(NotifyResult::Refused, format!("{field} is longer than {max} octets")));
    }
    let pending = check_alone(s, n)?;
    // Re-sent notifications and full inboxes are answered before anyone
    // is asked anything (the store, the legacy host). With no one to ask,
    // the filing's own checks (under the write lock) answer them.
    if confirm == Confirm::Queued && !pending.ask_legacy_host {
        return Ok(pending);
    }
    let (key, legacy) = (pending.filing.user_key.clone(), pending.filing.legacy);
    let (seen_key, n2) = (key.clone(), n.clone());
    if let Ok(true) = s.read(move |st| st.inbox_seen(&seen_key, &n2)).await {
        return Err(outcome(NotifyResult::Duplicate, ""));
    }
    if !legacy
        && let Ok(held) = s.read(move |st| st.inbox_count(&key)).await
        && held >= s.config.im2000.max_inbox
    {
        s.metrics.inc("imgate_rate_limited_total", "what", "inbox_full");
        return Err(outcome(NotifyResult::Retry, INBOX_FULL));
    }
    Ok(pending)
}

/// The filing for a notification of this node's own queue, from its own
/// store, that needs nothing asked or read first (see [`Confirm::Queued`]):
/// the queue files it as it takes the job, in the same store write. `None`
/// for anything else — a legacy user whose host is asked, a notification
/// the checks refuse — which goes the ordinary way, through [`consider`],
/// where it is answered (and counted) once.
pub fn queued_filing(s: &Shared, n: &Notification) -> Option<Filing> {
    if n.oversized_field().is_some() || !s.dir().config.is_local_domain(&n.store.to_lowercase()) {
        return None;
    }
    check_alone(s, n).ok().filter(|p| !p.ask_legacy_host).map(|p| p.filing)
}

/// The checks of one notification that read nothing stored: its fields'
/// syntax, the store's rate, the recipient, the trust rule. Counts nothing
/// for this node's own store.
fn check_alone(s: &Shared, n: &Notification) -> Result<Pending, NotifyOutcome> {
    let recipient: Address = match n.recipient.parse() {
        Ok(a) => a,
        Err(e) => return Err(outcome(NotifyResult::Refused, format!("bad recipient address: {e}"))),
    };
    let sender: Address = match n.sender.parse() {
        Ok(a) => a,
        Err(e) => return Err(outcome(NotifyResult::Refused, format!("bad sender address: {e}"))),
    };
    if n.id.parse::<RecipientId>().is_err() {
        return Err(outcome(NotifyResult::Refused, "bad message identifier"));
    }
    let store = n.store.to_lowercase();
    if !valid_domain(&store) {
        return Err(outcome(NotifyResult::Refused, "bad store domain"));
    }
    let dir = s.dir();
    let own_store = dir.config.is_local_domain(&store);
    if !own_store && !s.store_notifications.charge(&format!("store:{store}"), s.clock.now()) {
        s.metrics.inc("imgate_rate_limited_total", "what", "store_notifications");
        return Err(outcome(NotifyResult::Retry, "too many notifications from this store; slow down"));
    }
    if !dir.config.is_local_domain(recipient.domain()) {
        return Err(outcome(NotifyResult::Refused, format!("{} is not a domain served here", recipient.domain())));
    }
    // A recipient still on SMTP: this node is their agent, and delivers.
    let legacy = s.route(&recipient) == Route::Legacy;
    if !legacy && !dir.users.contains(&recipient) {
        return Err(outcome(NotifyResult::Nouser, format!("no user {recipient} here")));
    }
    let origin = trusted_origin(s, n, &store, &sender)?;
    let ask_legacy_host = legacy && dir.config.verify_legacy_users(recipient.domain());
    let filing = Filing { user_key: recipient.key(), notification: Notification { origin, ..n.clone() }, legacy };
    Ok(Pending { filing, store, ask_legacy_host })
}

/// Only a notification verified at its store may make this node talk to
/// the legacy host: asks it whether the user exists.
async fn ask_legacy_host(s: &Shared, n: &Notification, user_key: &str) -> Result<(), NotifyOutcome> {
    let recipient: Address = user_key.parse().map_err(|_| outcome(NotifyResult::Refused, "bad recipient address"))?;
    match crate::smtp_out::probe::recipient(s, &recipient).await {
        Verdict::Exists => Ok(()),
        Verdict::NoUser(reply) => {
            tracing::info!(rid = %n.rid(), %recipient, reply = ?reply, "legacy host refused the user");
            Err(outcome(NotifyResult::Nouser, format!("no user {recipient} here")))
        }
        Verdict::Unknown(why) => {
            tracing::info!(rid = %n.rid(), %recipient, why = ?why, "cannot check the legacy user now");
            Err(outcome(NotifyResult::Retry, "cannot check the recipient now; try later"))
        }
    }
}

/// The trust rule (docs/protocol.md, "Who may notify"): a store speaks for
/// its own domain's senders; mail a gateway took in by SMTP may name a
/// sender of another domain only if this agent trusts that gateway — its
/// own node, or one `im2000.trusted_gateways` lists — and never a sender of
/// a domain served here unless it comes from this node's own store. The
/// verdicts such a notification carries are recorded as that store's
/// assertion. Returns the origin to file.
fn trusted_origin(
    s: &Shared,
    n: &Notification,
    store: &str,
    sender: &Address,
) -> Result<Option<Origin>, NotifyOutcome> {
    let config = &s.dir().config;
    let own_store = config.is_local_domain(store);
    let origin = match &n.origin {
        None => None,
        Some(o) if o.protocol == "im2000" || o.protocol == "smtp" => {
            Some(Origin { asserted_by: Some(store.to_string()), ..o.clone() })
        }
        Some(_) => return Err(outcome(NotifyResult::Refused, "origin.protocol must be im2000 or smtp")),
    };
    if store == sender.domain() {
        return Ok(origin);
    }
    let via_gateway = n.origin.as_ref().is_some_and(|o| o.protocol == "smtp");
    if !via_gateway {
        return Err(outcome(
            NotifyResult::Refused,
            format!("store {store} is not the sender's domain {}", sender.domain()),
        ));
    }
    if config.is_local_domain(sender.domain()) && !own_store {
        s.metrics.inc("imgate_rate_limited_total", "what", "untrusted_gateway");
        return Err(outcome(
            NotifyResult::Refused,
            format!("mail from {} comes only from that domain's own store", sender.domain()),
        ));
    }
    if !own_store && !config.im2000.trusts_gateway(store) {
        s.metrics.inc("imgate_rate_limited_total", "what", "untrusted_gateway");
        return Err(outcome(
            NotifyResult::Refused,
            format!("{store} is not a gateway this agent trusts for mail from other domains"),
        ));
    }
    Ok(origin)
}

/// Verifies every pending notification at its store, one batch probe per
/// store: each must be there, from that sender, of that size and digest.
async fn verify_at_stores(s: &Shared, batch: &[Notification], checked: &mut [Result<Pending, NotifyOutcome>]) {
    let mut by_store: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, c) in checked.iter().enumerate() {
        if let Ok(p) = c {
            by_store.entry(p.store.clone()).or_default().push(i);
        }
    }
    for (store, indexes) in by_store {
        let ids: Vec<String> = indexes.iter().map(|&i| batch[i].id.clone()).collect();
        let probes = probe_all(s, &store, ids).await;
        for (i, probe) in indexes.into_iter().zip(probes) {
            if let Err(answer) = judge(&batch[i], &store, probe) {
                checked[i] = Err(answer);
            }
        }
    }
}

/// Whether `probe` of the message at `store` confirms notification `n`.
fn judge(n: &Notification, store: &str, probe: Result<Probe, PeerError>) -> Result<(), NotifyOutcome> {
    let refused = |why: &str| Err(outcome(NotifyResult::Refused, why.to_string()));
    match probe {
        Ok(p) => {
            if !p.sender.as_deref().is_some_and(|ps| ps.eq_ignore_ascii_case(&n.sender)) {
                return refused("the store names another sender for this message");
            }
            if p.size.is_some_and(|size| size != n.size) {
                return refused("the stored message's size differs from the notification's");
            }
            if p.digest.as_deref().is_some_and(|d| d != n.digest) {
                return refused("the stored message's digest differs from the notification's");
            }
            Ok(())
        }
        Err(PeerError::Status { status: 404 | 410, .. }) => refused(&format!("no such message at {store}'s store")),
        Err(e) => {
            tracing::info!(store = ?store, rid = ?n.rid(), error = ?e.to_string(), "cannot verify a notification");
            if e.is_temporary() {
                Err(outcome(NotifyResult::Retry, "cannot verify the message at its store now; try later"))
            } else {
                refused("the message could not be verified at its store")
            }
        }
    }
}

/// What `store` says of each of `ids`: this node's own store answers
/// directly; any other is asked with batch probes, or with `HEAD` one by
/// one if it has no batch probe.
async fn probe_all(s: &Shared, store: &str, ids: Vec<String>) -> Vec<Result<Probe, PeerError>> {
    let status = |status| PeerError::Status { status, code: "probe".into(), message: "not in this store".into() };
    if s.dir().config.is_local_domain(store) {
        let asked = ids.clone();
        let found = match s.read(move |st| st.probe(&asked)).await {
            Ok(found) => found,
            Err(e) => return ids.iter().map(|_| Err(PeerError::Unreachable(e.to_string()))).collect(),
        };
        return found
            .into_iter()
            .map(|f| match f {
                Ok(p) => Ok(Probe { sender: Some(p.sender), size: Some(p.size), digest: Some(p.digest) }),
                Err(Unavailable::Unknown) => Err(status(404)),
                Err(Unavailable::Gone) => Err(status(410)),
            })
            .collect();
    }
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_PROBE_BATCH) {
        match s.peers.probe_many(store, chunk).await {
            Ok(answers) => out.extend(answers.into_iter().map(|a| a.map_err(status))),
            // A store without batch probes: HEAD each, as before.
            Err(PeerError::Status { status: 404 | 405, .. }) => {
                let heads = chunk.iter().cloned().map(|id| {
                    let (peers, store) = (s.peers.clone(), store.to_string());
                    async move { peers.probe(&store, &id).await }
                });
                let heads: Vec<_> = futures::stream::iter(heads).buffered(PROBES_AT_ONCE).collect().await;
                out.extend(heads);
            }
            Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
        }
    }
    out
}
