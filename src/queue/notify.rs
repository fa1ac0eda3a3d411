//! The notification job: group due recipients by domain, locate each
//! domain's notification agent, post one batch per agent, and turn each
//! answer (or failure) into the recipient's next status.

use std::collections::BTreeMap;

use crate::backoff::retry_delay;
use crate::context::Shared;
use crate::discovery::LocateError;
use crate::im2000::notifications;
use crate::peer::PeerError;
use crate::proto::api::{Notification, NotifyOutcome, NotifyResult};
use crate::proto::{NotificationStatus, RecipientId};
use crate::store::records::Attempt;
use crate::store::{FiledAsLeased, Filing, InboxAccept, Leased, NotifyAttempt};

/// Groups leased notifications by recipient domain, in batches of at most
/// `batch_size`: one request each.
pub fn group(leased: Vec<Leased>, batch_size: usize) -> Vec<(String, Vec<Leased>)> {
    let mut by_domain: BTreeMap<String, Vec<Leased>> = BTreeMap::new();
    for l in leased {
        let domain = l.record.recipient.rsplit_once('@').map(|(_, d)| d.to_lowercase()).unwrap_or_default();
        by_domain.entry(domain).or_default().push(l);
    }
    let mut out = Vec::new();
    for (domain, jobs) in by_domain {
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            out.push((domain.clone(), jobs.by_ref().take(batch_size).collect()));
        }
    }
    out
}

fn notification(l: &Leased) -> Notification {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&l.selector);
    id[8..].copy_from_slice(&l.record.verifier);
    Notification {
        store: l.message.store.clone(),
        id: RecipientId(id).to_string(),
        sender: l.message.sender.clone(),
        recipient: l.record.recipient.clone(),
        size: l.message.size,
        digest: l.message.digest.clone(),
        origin: l.message.origin.clone(),
    }
}

/// The filing for a leased notification to one of this node's own users
/// that needs nothing asked first: the queue files it as it takes the job
/// ([`crate::store::Store::lease_due_filing`]), with no attempt of its own.
pub fn filing_here(s: &Shared, l: &Leased) -> Option<Filing> {
    let domain = l.record.recipient.rsplit_once('@').map_or("", |(_, d)| d);
    if !s.dir().config.is_local_domain(domain) {
        return None;
    }
    notifications::queued_filing(s, &notification(l))
}

/// Counts and logs what the queue filed as it took the jobs, as an attempt
/// and the agent's answer to it are counted and logged.
pub fn filed_here(s: &Shared, filed: &[FiledAsLeased]) {
    let mut wake = false;
    for FiledAsLeased { leased: l, filing: f, accept } in filed {
        let (n, result) =
            (&f.notification, if matches!(accept, InboxAccept::Duplicate(_)) { "duplicate" } else { "accepted" });
        // A legacy user's delivery was queued.
        wake |= f.legacy && result == "accepted";
        s.metrics.inc("imgate_notifications_sent_total", "outcome", "accepted");
        s.metrics.inc("imgate_notifications_received_total", "result", result);
        tracing::info!(msg = %l.record.message, rid = %n.rid(), recipient = %n.recipient, agent = "this node",
            attempt = l.record.attempts, outcome = "accepted", "notification attempt");
        tracing::info!(store = ?n.store, rid = ?n.rid(), recipient = ?n.recipient, sender = ?n.sender, result,
            "notification considered");
    }
    if wake {
        s.wake.notify_one();
    }
}

/// Notifies one agent of a batch and records each recipient's outcome.
pub async fn notify_domain(s: &Shared, domain: String, jobs: Vec<Leased>) {
    let batch: Vec<Notification> = jobs.iter().map(notification).collect();
    let answer = if s.dir().config.is_local_domain(&domain) {
        // Our own agent: no need to go out and back over HTTP, nor to
        // read again what the lease just read.
        Ok(notifications::consider(s, &batch, notifications::Confirm::Queued).await)
    } else {
        s.peers
            .notify(&domain, &batch, |n| {
                s.metrics.add("imgate_peer_bytes_sent_total", "what", "notifications", n as u64)
            })
            .await
    };
    let now = s.clock.now();
    let mut finished = Vec::with_capacity(jobs.len());
    for (i, l) in jobs.iter().enumerate() {
        let attempt = match &answer {
            Ok(outcomes) => from_outcome(s, l, &outcomes[i], now),
            Err(e) => from_error(s, l, e, now),
        };
        let label = match &attempt {
            NotifyAttempt::Accepted { .. } => "accepted",
            NotifyAttempt::Retry { .. } => "retry",
            NotifyAttempt::Final { status, .. } => status.as_str(),
        };
        s.metrics.inc("imgate_notifications_sent_total", "outcome", label);
        let result = match (&answer, &attempt) {
            (Ok(outcomes), _) => match &outcomes[i].reason {
                Some(r) => format!("{label}: {r}"),
                None => label.to_string(),
            },
            (Err(e), _) => e.to_string(),
        };
        tracing::info!(msg = %l.record.message, rid = %crate::proto::hex::encode(&l.selector[..4]), recipient = %l.record.recipient, agent = %domain,
            attempt = l.record.attempts, outcome = label, reply = ?result, "notification attempt");
        finished.push((l.selector, l.lease_until, attempt, Attempt { at: now, host: domain.clone(), result }));
    }
    // One request's outcomes are recorded together: one synced batch for
    // all that stay pinned, rather than one each.
    let st = s.store.clone();
    match s.blocking(move || st.finish_notifies(finished, now)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(late)) => tracing::warn!(results = late, agent = %domain,
            "late notification results refused: their leases ended and the jobs were taken over"),
        Ok(Err(e)) => tracing::error!(error = %e, "recording notification outcomes failed"),
        Err(e) => tracing::error!(error = %e, "recording notification outcomes failed"),
    }
}

fn retry(s: &Shared, l: &Leased, now: u64, reason: String, give_up_as: NotificationStatus) -> NotifyAttempt {
    let cfg = &s.config.notify;
    let first = l.record.first_attempt_at.unwrap_or(now);
    if now.saturating_sub(first) >= cfg.max_retry_age.as_millis() as u64 {
        return NotifyAttempt::Final { status: give_up_as, reason: format!("gave up: {reason}") };
    }
    let delay = retry_delay(l.record.attempts, cfg.retry_min, cfg.retry_max, &mut rand::rng());
    NotifyAttempt::Retry { retry_at: now + delay.as_millis() as u64, reason }
}

fn from_outcome(s: &Shared, l: &Leased, o: &NotifyOutcome, now: u64) -> NotifyAttempt {
    let reason = o.reason.clone().unwrap_or_default();
    match o.result {
        NotifyResult::Accepted | NotifyResult::Duplicate => {
            NotifyAttempt::Accepted { resend_at: now + s.config.notify.resend_interval.as_millis() as u64 }
        }
        NotifyResult::Nouser => NotifyAttempt::Final { status: NotificationStatus::Nouser, reason },
        NotifyResult::Refused => NotifyAttempt::Final { status: NotificationStatus::Refused, reason },
        NotifyResult::Retry => retry(s, l, now, reason, NotificationStatus::Noserver),
    }
}

fn from_error(s: &Shared, l: &Leased, e: &PeerError, now: u64) -> NotifyAttempt {
    let reason = e.to_string();
    match e {
        PeerError::Locate(LocateError::BadDomain(..)) => {
            NotifyAttempt::Final { status: NotificationStatus::Baddomain, reason }
        }
        PeerError::Locate(LocateError::NoService(..)) => {
            NotifyAttempt::Final { status: NotificationStatus::Noservice, reason }
        }
        PeerError::Status { .. } if !e.is_temporary() => {
            NotifyAttempt::Final { status: NotificationStatus::Protocolerror, reason }
        }
        PeerError::Protocol(_) => retry(s, l, now, reason, NotificationStatus::Protocolerror),
        _ => retry(s, l, now, reason, NotificationStatus::Noserver),
    }
}
