//! Rate limits against guessing: failed authentications per client address
//! and per user, and unknown-identifier lookups per client address. A fixed
//! window counter per key; time comes from the node's clock.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::clock::Millis;

/// At most `max` events per key in each window of `window_ms`.
pub struct Limiter {
    max: u32,
    window_ms: u64,
    counts: RwLock<HashMap<String, (Millis, u32)>>,
}

/// Keys kept before expired windows are swept.
const SWEEP_AT: usize = 10_000;

impl Limiter {
    pub fn new(max: u32, window_ms: u64) -> Limiter {
        Limiter { max, window_ms, counts: RwLock::new(HashMap::new()) }
    }

    /// Whether `key` has used up its allowance in the current window.
    pub fn exceeded(&self, key: &str, now: Millis) -> bool {
        let counts = self.counts.read().unwrap_or_else(|p| p.into_inner());
        counts.get(key).is_some_and(|(start, n)| now < start + self.window_ms && *n >= self.max)
    }

    /// Counts one event for `key`.
    pub fn record(&self, key: &str, now: Millis) {
        let mut counts = self.counts.write().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= SWEEP_AT {
            let window = self.window_ms;
            counts.retain(|_, (start, _)| now < *start + window);
        }
        let e = counts.entry(key.to_string()).or_insert((now, 0));
        if now >= e.0 + self.window_ms {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_then_forgets() {
        let l = Limiter::new(3, 1000);
        for t in [0, 10, 20] {
            assert!(!l.exceeded("ip:1", t));
            l.record("ip:1", t);
        }
        assert!(l.exceeded("ip:1", 30));
        assert!(!l.exceeded("ip:2", 30), "keys are independent");
        assert!(!l.exceeded("ip:1", 1000), "a new window");
        l.record("ip:1", 1000);
        assert!(!l.exceeded("ip:1", 1001));
    }
}
