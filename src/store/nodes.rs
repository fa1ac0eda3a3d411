//! The nodes of a shared store: each running node beats a heartbeat under
//! its name, so that a node starting again knows whether the leases under
//! its name are a dead run's (released at once) or a live namesake's (a
//! configuration mistake, refused).

use super::backend::Batch;
use super::records::NodeRecord;
use super::schema::*;
use super::*;

impl Store {
    /// Node `name`'s last heartbeat, if it has one.
    pub fn node_beat(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.get_json(CF_META, &node_key(name))
    }

    /// Records that run `incarnation` of node `name` is alive at `now`.
    /// Returns the heartbeat found in its place when it was another run's
    /// (another process runs under the same name).
    pub fn beat(&self, name: &str, incarnation: u64, now: Millis) -> Result<Option<NodeRecord>, StoreError> {
        let _g = self.lock()?;
        let found: Option<NodeRecord> = self.get_json(CF_META, &node_key(name))?;
        let mut batch = Batch::default();
        batch.put(CF_META, node_key(name), to_json(&NodeRecord { incarnation, at: now }));
        // A lost heartbeat only makes a restart wait a moment.
        self.commit_lazy(batch)?;
        Ok(found.filter(|f| f.incarnation != incarnation))
    }

    /// Run `incarnation` of node `name` stops: its heartbeat goes, unless
    /// another run's has replaced it.
    pub fn leave(&self, name: &str, incarnation: u64) -> Result<(), StoreError> {
        let _g = self.lock()?;
        let found: Option<NodeRecord> = self.get_json(CF_META, &node_key(name))?;
        if found.is_some_and(|f| f.incarnation == incarnation) {
            let mut batch = Batch::default();
            batch.delete(CF_META, node_key(name));
            self.commit(batch)?;
        }
        Ok(())
    }
}
