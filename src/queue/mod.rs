//! The durable job queue's worker. Jobs live in the store keyed by due time;
//! the worker leases what is due, runs it, and records the outcome. It sleeps
//! until the next due job, the next expiry, or a wake-up from new work.

mod notify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::store::{FileAsLeased, Leased};

/// How long a job for a paused host is put back before it is looked at
/// again (a resume makes them due at once).
const HOLD: Duration = Duration::from_secs(60);

/// How long a round that found work waits before the next.
const GATHER: Duration = Duration::from_millis(5);

/// How often busy rounds end lifetimes (each idle round does).
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Most jobs (a batch to one agent, or one SMTP delivery) running at once.
const DOMAINS_AT_ONCE: usize = 64;

/// Runs until `shutdown`. Attempts run as tasks of their own, so one slow
/// agent does not hold up the others; at shutdown they are abandoned — their
/// jobs are leased, and come due again after a restart.
pub async fn run(s: Shared, shutdown: CancellationToken) {
    let mut in_flight = JoinSet::new();
    let slots = Arc::new(Semaphore::new(DOMAINS_AT_ONCE));
    work(&s, &shutdown, &mut in_flight, &slots).await;
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
}

async fn work(s: &Shared, shutdown: &CancellationToken, in_flight: &mut JoinSet<()>, slots: &Arc<Semaphore>) {
    let lease = s.config.notify.lease();
    // When lifetimes were last ended in a stretch of busy rounds (none
    // once the queue went idle: an idle round always looks).
    let mut expired_at: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let now = s.clock.now();
        if expired_at.is_none_or(|t| t.elapsed() >= EXPIRE_EVERY) {
            let st = s.store.clone();
            let expired = s.blocking(move || st.expire_due(now)).await;
            if let Ok(Ok(n)) = expired
                && n > 0
            {
                tracing::info!(messages = n, "lifetimes ended; bodies freed");
            }
            expired_at = Some(Instant::now());
        }
        if s.pause.read().unwrap_or_else(|p| p.into_inner()).all {
            expired_at = None;
            // Paused: nothing is taken until `imgate queue resume` wakes us.
            tokio::select! {
                _ = s.clock.sleep_until(now + 60_000) => {}
                _ = s.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let (st, limit, s2) = (s.store.clone(), s.config.notify.batch_size * 10, s.clone());
        let (until, held_until) = (now + lease.as_millis() as u64, now + HOLD.as_millis() as u64);
        let owner = s.config.store.node.clone();
        let take = move || {
            let held = |recipient: &str, deliver: bool| s2.is_held(recipient, deliver);
            let filing = |l: &Leased| notify::filing_here(&s2, l);
            let file = FileAsLeased {
                filing: &filing,
                resend_at: now + s2.config.notify.resend_interval.as_millis() as u64,
                max_inbox: s2.config.im2000.max_inbox,
            };
            st.lease_due_filing(&owner, now, until, limit, &held, held_until, Some(&file))
        };
        let leased = match s.blocking(take).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the queue failed");
                Default::default()
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed");
                Default::default()
            }
        };
        while in_flight.try_join_next().is_some() {}
        if !leased.is_empty() {
            let more = leased.len() >= limit;
            notify::filed_here(s, &leased.filed);
            for job in leased.deliver {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("never closed"),
                    _ = shutdown.cancelled() => return,
                };
                let s = s.clone();
                in_flight.spawn(async move {
                    crate::smtp_out::deliver::run(&s, job).await;
                    drop(permit);
                    s.wake.notify_one();
                });
            }
            for (domain, jobs) in notify::group(leased.notify, s.config.notify.batch_size) {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("never closed"),
                    _ = shutdown.cancelled() => return,
                };
                let s = s.clone();
                in_flight.spawn(async move {
                    notify::notify_domain(&s, domain, jobs).await;
                    drop(permit);
                    // Outcomes may have queued retries earlier than the
                    // worker's current sleep.
                    s.wake.notify_one();
                });
            }
            if more {
                continue;
            }
            // Busy: let a moment's new work gather, so that a stream of
            // single messages is leased, notified and recorded in batches
            // rather than a round (and its writes) each.
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        expired_at = None;
        // Look again at least every minute: a clock step or a missed wake-up
        // must never stall the queue. Nothing past that minute is looked
        // at (the leases of running and finished attempts lie there).
        let (st, look_again) = (s.store.clone(), s.clock.now() + 60_000);
        let next = s
            .blocking(move || -> Result<Option<u64>, crate::store::StoreError> {
                let a = st.next_due_before(look_again)?;
                let b = st.next_expiry_before(look_again)?;
                Ok(a.into_iter().chain(b).min())
            })
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let until = next.unwrap_or(look_again);
        if until <= s.clock.now() {
            continue;
        }
        tokio::select! {
            _ = s.clock.sleep_until(until) => {}
            _ = s.wake.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
