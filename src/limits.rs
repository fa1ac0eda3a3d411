//! Limits that no one client can exhaust: fixed-window counters against
//! guessing (failed authentications, unknown identifiers, notifications per
//! store), with time from the node's clock; and connection slots, a total
//! and a share per client address, for the SMTP pools and HTTP listeners.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

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
        let _ = self.count(key, now, u32::MAX);
    }

    /// Counts one event for `key` if its window has room, in one step —
    /// concurrent callers cannot all pass a check made before any of them
    /// counted. An attempt is charged before it is judged: an
    /// authentication charges first and is [`refund`](Limiter::refund)ed
    /// when it succeeds, so guesses in flight count against the limit.
    pub fn charge(&self, key: &str, now: Millis) -> bool {
        self.count(key, now, self.max)
    }

    /// Takes back one event charged for `key`.
    pub fn refund(&self, key: &str) {
        let mut counts = self.counts.write().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = counts.get_mut(key) {
            e.1 = e.1.saturating_sub(1);
        }
    }

    /// Events counted for `key` in its current window.
    pub fn count_of(&self, key: &str, now: Millis) -> u32 {
        let counts = self.counts.read().unwrap_or_else(|p| p.into_inner());
        counts.get(key).filter(|(start, _)| now < start + self.window_ms).map_or(0, |(_, n)| *n)
    }

    fn count(&self, key: &str, now: Millis, cap: u32) -> bool {
        let mut counts = self.counts.write().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= SWEEP_AT {
            let window = self.window_ms;
            counts.retain(|_, (start, _)| now < *start + window);
        }
        let e = counts.entry(key.to_string()).or_insert((now, 0));
        if now >= e.0 + self.window_ms {
            *e = (now, 0);
        }
        if e.1 >= cap {
            return false;
        }
        e.1 = e.1.saturating_add(1);
        true
    }
}

/// Connection slots: at most `total` at once, and at most `per_ip` for one
/// client address (Postfix's `smtpd_client_connection_count_limit`).
#[derive(Clone)]
pub struct ConnectionSlots {
    inner: Arc<SlotsInner>,
}

struct SlotsInner {
    total: usize,
    per_ip: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why no slot was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSlot {
    /// Every slot is taken.
    Full,
    /// This address holds its share.
    PerAddress,
}

/// A slot, given back when dropped.
pub struct Slot {
    inner: Arc<SlotsInner>,
    ip: IpAddr,
}

impl ConnectionSlots {
    pub fn new(total: usize, per_ip: usize) -> ConnectionSlots {
        ConnectionSlots { inner: Arc::new(SlotsInner { total, per_ip, held: Mutex::new((0, HashMap::new())) }) }
    }

    pub fn take(&self, ip: IpAddr) -> Result<Slot, NoSlot> {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.0 >= self.inner.total {
            return Err(NoSlot::Full);
        }
        let mine = held.1.entry(ip).or_insert(0);
        if *mine >= self.inner.per_ip {
            return Err(NoSlot::PerAddress);
        }
        *mine += 1;
        held.0 += 1;
        Ok(Slot { inner: self.inner.clone(), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.inner.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 -= 1;
        if let Some(n) = held.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.1.remove(&self.ip);
            }
        }
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

    #[test]
    fn charges_are_atomic_and_refundable() {
        let l = Limiter::new(2, 1000);
        assert!(l.charge("k", 0));
        assert!(l.charge("k", 0));
        assert!(!l.charge("k", 0), "the third charge in flight is refused");
        l.refund("k");
        assert!(l.charge("k", 0), "a refunded success frees its place");
        assert_eq!(l.count_of("k", 0), 2);
        assert_eq!(l.count_of("k", 1000), 0);
    }

    #[test]
    fn slots_per_address_and_in_all() {
        let slots = ConnectionSlots::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert_eq!(slots.take(a).err(), Some(NoSlot::PerAddress));
        let _b1 = slots.take(b).unwrap();
        assert_eq!(slots.take(b).err(), Some(NoSlot::Full));
        drop(a1);
        assert!(slots.take(b).is_ok(), "a dropped slot is given back");
    }
}
