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
use super::client::{PeerError, Probe};
use super::error::{ApiError, parse_json};
use crate::config::Route;
use crate::proto::address::valid_domain;
use crate::proto::api::{Notification, NotifyOutcome, NotifyResponse, NotifyResult, Origin};
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
    let results = consider(&s, &batch).await;
    Ok(axum::Json(NotifyResponse { results }).into_response())
}

/// Decides notifications for recipients here, answering in order: each is
/// checked (several at once: each may probe a store), then every verified
/// one is filed in one synced batch. The queue calls this directly for
/// recipients of this node's own domains.
pub async fn consider(s: &Shared, batch: &[Notification]) -> Vec<NotifyOutcome> {
    let checks = batch.iter().cloned().map(|n| {
        let s = s.clone();
        async move { decide(&s, &n).await }
    });
    // Ok: verified, to be filed; Err: answered without filing.
    let checked: Vec<Result<Filing, NotifyOutcome>> =
        futures::stream::iter(checks).buffered(PROBES_AT_ONCE).collect().await;
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
        tracing::info!(store = ?n.store, rid = ?rid(&n.id), recipient = ?n.recipient, sender = ?n.sender,
            result = label, reason = ?o.reason.as_deref().unwrap_or(""), "notification considered");
    }
    outcomes
}

/// Checks one notification: the filing to make, or the answer.
async fn decide(s: &Shared, n: &Notification) -> Result<Filing, NotifyOutcome> {
    if let Some((field, max)) = n.oversized_field() {
        s.metrics.inc("imgate_rate_limited_total", "what", "notification_field");
        return Err(outcome(NotifyResult::Refused, format!("{field} is longer than {max} octets")));
    }
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
    // Re-sent notifications are answered without probing again.
    let key = recipient.key();
    let (st, seen_key, n2) = (s.store.clone(), key.clone(), n.clone());
    if let Ok(Ok(true)) = s.blocking(move || st.inbox_seen(&seen_key, &n2)).await {
        return Err(outcome(NotifyResult::Duplicate, ""));
    }
    if !legacy {
        let (st, count_key) = (s.store.clone(), key.clone());
        if let Ok(Ok(held)) = s.blocking(move || st.inbox_count(&count_key)).await
            && held >= s.config.im2000.max_inbox
        {
            s.metrics.inc("imgate_rate_limited_total", "what", "inbox_full");
            return Err(outcome(NotifyResult::Retry, INBOX_FULL));
        }
    }
    verify_at_store(s, n, &store).await?;
    // Only a notification verified at its store may make this node talk to
    // the legacy host.
    if legacy && dir.config.verify_legacy_users(recipient.domain()) {
        match crate::smtp_out::probe::recipient(s, &recipient).await {
            Verdict::Exists => {}
            Verdict::NoUser(reply) => {
                tracing::info!(rid = %rid(&n.id), %recipient, reply = ?reply, "legacy host refused the user");
                return Err(outcome(NotifyResult::Nouser, format!("no user {recipient} here")));
            }
            Verdict::Unknown(why) => {
                tracing::info!(rid = %rid(&n.id), %recipient, why = ?why, "cannot check the legacy user now");
                return Err(outcome(NotifyResult::Retry, "cannot check the recipient now; try later"));
            }
        }
    }
    Ok(Filing { user_key: key, notification: Notification { origin, ..n.clone() }, legacy })
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

/// Probes the message at its store: it must be there, from that sender,
/// of that size and digest.
async fn verify_at_store(s: &Shared, n: &Notification, store: &str) -> Result<(), NotifyOutcome> {
    let refused = |why: &str| Err(outcome(NotifyResult::Refused, why.to_string()));
    match probe(s, store, &n.id).await {
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
            tracing::info!(store = ?store, rid = ?rid(&n.id), error = ?e.to_string(), "cannot verify a notification");
            if e.is_temporary() {
                Err(outcome(NotifyResult::Retry, "cannot verify the message at its store now; try later"))
            } else {
                refused("the message could not be verified at its store")
            }
        }
    }
}

/// How a recipient identifier is named in logs: its first 8 hex digits, of
/// the public selector half (never the verifier).
pub fn rid(id: &str) -> &str {
    id.get(..8).unwrap_or("")
}

/// `HEAD` of the message at `store`: this node's own store answers directly,
/// any other is located and asked over HTTP.
async fn probe(s: &Shared, store: &str, id: &str) -> Result<Probe, PeerError> {
    if !s.dir().config.is_local_domain(store) {
        return s.peers.probe(store, id).await;
    }
    let missing = |status| PeerError::Status { status, code: "local".into(), message: "not in this store".into() };
    let id: RecipientId = id.parse().map_err(|_| missing(404))?;
    let st = s.store.clone();
    match s.blocking(move || st.find(&id)).await {
        Ok(Ok(Ok(f))) => {
            Ok(Probe { sender: Some(f.message.sender), size: Some(f.message.size), digest: Some(f.message.digest) })
        }
        Ok(Ok(Err(Unavailable::Unknown))) => Err(missing(404)),
        Ok(Ok(Err(Unavailable::Gone))) => Err(missing(410)),
        Ok(Err(e)) => Err(PeerError::Unreachable(e.to_string())),
        Err(e) => Err(PeerError::Unreachable(e.to_string())),
    }
}
