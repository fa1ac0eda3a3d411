//! The durable job queue's worker. Jobs live in the store keyed by due time;
//! the worker leases what is due, runs it, and records the outcome. It sleeps
//! until the next due job, the next expiry, or a wake-up from new work.

pub mod backoff;
mod notify;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Shared;

/// Runs until `shutdown`.
pub async fn run(s: Shared, shutdown: CancellationToken) {
    // A lease outlives the slowest attempt, so a job is only retried after a
    // crash, never while its first attempt is still running.
    let lease = s.config.notify.timeout * 4 + Duration::from_secs(60);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let now = s.clock.now();
        let st = s.store.clone();
        let expired = s.blocking(move || st.expire_due(now)).await;
        if let Ok(Ok(n)) = expired
            && n > 0
        {
            tracing::info!(messages = n, "lifetimes ended; bodies freed");
        }
        let (st, limit) = (s.store.clone(), s.config.notify.batch_size * 10);
        let leased = match s.blocking(move || st.lease_due(now, now + lease.as_millis() as u64, limit)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the queue failed");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed");
                Vec::new()
            }
        };
        if !leased.is_empty() {
            let more = leased.len() >= limit;
            tokio::select! {
                _ = notify::run_batch(&s, leased) => {}
                _ = shutdown.cancelled() => return,
            }
            if more {
                continue;
            }
        }
        let st = s.store.clone();
        let next = s
            .blocking(move || -> Result<Option<u64>, crate::store::StoreError> {
                let a = st.next_due()?;
                let b = st.next_expiry()?;
                Ok(a.into_iter().chain(b).min())
            })
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        // Look again at least every minute: a clock step or a missed wake-up
        // must never stall the queue.
        let until = next.unwrap_or(u64::MAX).min(s.clock.now() + 60_000);
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
