//! Injectable time. Everything that schedules (the job queue, expiry) reads
//! the time through [`Clock`], so tests can move time forward by hand instead
//! of sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
    fn sleep_until(&self, at: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = at.saturating_sub(self.now());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that only moves when told to: for tests and the lab.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<Millis>>,
}

impl ManualClock {
    /// Starts at the current wall-clock time.
    pub fn new() -> Self {
        Self::starting_at(SystemClock.now())
    }
    pub fn starting_at(at: Millis) -> Self {
        ManualClock { now: Arc::new(watch::channel(at).0) }
    }
    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by.as_millis() as u64);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }
    fn sleep_until(&self, at: Millis) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as self, so this cannot fail.
            let _ = rx.wait_for(|t| *t >= at).await;
        })
    }
}

/// RFC 3339 text for a timestamp, as the API shows times.
pub fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The timestamp [`rfc3339`] wrote.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(s).ok().and_then(|t| u64::try_from(t.timestamp_millis()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers() {
        let c = ManualClock::starting_at(1_000);
        let c2 = c.clone();
        let waiter = tokio::spawn(async move { c2.sleep_until(61_000).await });
        c.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.advance(Duration::from_secs(30));
        waiter.await.unwrap();
        assert_eq!(c.now(), 61_000);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339(&rfc3339(1_234_567)), Some(1_234_567));
    }
}
