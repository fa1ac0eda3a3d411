//! The routing table (which users and domains are on IM2000, which still on
//! SMTP), the queue's pause switch, and the per-domain traffic counters that
//! show how far a migration has come.

use super::backend::Batch;

use super::records::*;
use super::schema::*;
use super::*;
use crate::config::Route;

/// Messages and bytes filed for a domain's users on each side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub im2000_messages: u64,
    pub im2000_bytes: u64,
    pub legacy_messages: u64,
    pub legacy_bytes: u64,
}

impl Store {
    /// Every rule of the routing table, by target (domain or address key).
    pub fn routes(&self) -> Result<BTreeMap<String, RouteRecord>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.scan(CF_ROUTES, &[]) {
            let (k, v) = item?;
            let target = String::from_utf8(k.to_vec()).map_err(|_| StoreError::Corrupt("route target".into()))?;
            out.insert(target, from_json(CF_ROUTES, &v)?);
        }
        Ok(out)
    }

    /// Sets one rule; returns the one it replaced.
    pub fn set_route(&self, target: &str, record: RouteRecord) -> Result<Option<RouteRecord>, StoreError> {
        let _g = self.lock()?;
        let old = self.get_json(CF_ROUTES, target.as_bytes())?;
        let mut batch = Batch::default();
        batch.put(CF_ROUTES, target.as_bytes(), to_json(&record));
        self.commit(batch)?;
        self.announce("routes");
        Ok(old)
    }

    /// Brings the table in line with the configuration's routes: a rule the
    /// configuration wrote is added, updated when the file changes, and
    /// removed when the file drops it; a rule an admin set stays until an
    /// admin changes it. Returns how many rules changed.
    pub fn seed_routes(&self, seeds: &[(String, Route)], now: Millis) -> Result<usize, StoreError> {
        let _g = self.lock()?;
        let current = self.routes()?;
        let wanted: BTreeMap<&str, Route> = seeds.iter().map(|(t, r)| (t.as_str(), *r)).collect();
        let mut batch = Batch::default();
        let mut changed = 0;
        for (target, route) in &wanted {
            let keep = current.get(*target).is_some_and(|r| r.source == RouteSource::Admin || r.route == *route);
            if !keep {
                let rec = RouteRecord { route: *route, since: now, source: RouteSource::Config, by: None };
                batch.put(CF_ROUTES, target.as_bytes(), to_json(&rec));
                changed += 1;
            }
        }
        for (target, rec) in &current {
            if rec.source == RouteSource::Config && !wanted.contains_key(target.as_str()) {
                batch.delete(CF_ROUTES, target.as_bytes());
                changed += 1;
            }
        }
        if changed > 0 {
            self.commit(batch)?;
            self.announce("routes");
        }
        Ok(changed)
    }

    /// What the queue holds back.
    pub fn queue_pause(&self) -> Result<QueuePause, StoreError> {
        Ok(self.get_json(CF_META, META_QUEUE_PAUSE)?.unwrap_or_default())
    }

    pub fn set_queue_pause(&self, pause: &QueuePause) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put(CF_META, META_QUEUE_PAUSE, to_json(pause));
        self.commit(batch)?;
        self.announce("pause");
        Ok(())
    }

    /// Counts a message filed for a user of `domain` on one side, in the
    /// batch that files it.
    pub(super) fn count_traffic(&self, batch: &mut Batch, domain: &str, side: u8, size: u64, now: Millis) {
        batch.add(CF_TRAFFIC, traffic_key(domain, hour_of(now), side), size as i64, 1);
    }

    /// What `domain`'s users were sent since `since`, by side (to the hour).
    pub fn traffic(&self, domain: &str, since: Millis) -> Result<Traffic, StoreError> {
        let prefix = traffic_prefix(domain);
        let start = traffic_key(domain, hour_of(since), 0);
        let mut t = Traffic::default();
        let it = self.scan(CF_TRAFFIC, &start);
        for item in it {
            let (k, v) = item?;
            let Some((_, side)) = parse_traffic_key(&prefix, &k) else { break };
            let (bytes, messages) = parse_account_value(&v);
            let (b, m) = (bytes.max(0) as u64, messages.max(0) as u64);
            match side {
                SIDE_IM2000 => (t.im2000_bytes, t.im2000_messages) = (t.im2000_bytes + b, t.im2000_messages + m),
                _ => (t.legacy_bytes, t.legacy_messages) = (t.legacy_bytes + b, t.legacy_messages + m),
            }
        }
        Ok(t)
    }
}
