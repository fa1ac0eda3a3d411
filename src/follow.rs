//! On a shared store, keeps this node's in-memory copies in step with what
//! other nodes change: the routing table and the queue's pause state are
//! read again when another node announces a change (PostgreSQL
//! LISTEN/NOTIFY), and every second while announcements cannot be heard.
//! The worker is woken each second, so a job another node queued (or whose
//! lease ended there) is taken within a second without any announcement.
//! Each second the node also beats its heartbeat under its `[store] node`
//! name, by which a later run of it knows this one is alive.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Shared;

/// How often copies are refreshed without being told, at most.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(s: Shared, incarnation: u64, shutdown: CancellationToken) {
    let remote = s.store.remote();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (routes, pause) = tokio::select! {
            _ = remote.routes.notified() => (true, false),
            _ = remote.pause.notified() => (false, true),
            _ = tick.tick() => {
                s.wake.notify_one();
                beat(&s, incarnation).await;
                let deaf = remote.deaf.load(Ordering::SeqCst);
                (deaf, deaf)
            }
            _ = shutdown.cancelled() => return,
        };
        if routes {
            let ctx = s.clone();
            match s.blocking(move || ctx.load_routes()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the routes other nodes changed failed"),
                Err(e) => tracing::warn!(error = %e, "reading the routes other nodes changed failed"),
            }
        }
        if pause {
            let store = s.store.clone();
            match s.blocking(move || store.queue_pause()).await {
                Ok(Ok(p)) => {
                    *s.pause.write().unwrap_or_else(|p| p.into_inner()) = p;
                    s.wake.notify_one();
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the queue pause other nodes changed failed"),
                Err(e) => tracing::warn!(error = %e, "reading the queue pause other nodes changed failed"),
            }
        }
    }
}

/// Beats run `incarnation`'s heartbeat, and says so loudly when another
/// process beats under the same name.
async fn beat(s: &Shared, incarnation: u64) {
    let (ctx, now) = (s.clone(), s.clock.now());
    match s.blocking(move || ctx.store.beat(&ctx.config.store.node, incarnation, now)).await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(_))) => tracing::error!(
            node = %s.config.store.node,
            "another node runs under this node's name on this store: give each node its own [store] node"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "beating this node's heartbeat failed"),
        Err(e) => tracing::warn!(error = %e, "beating this node's heartbeat failed"),
    }
}
