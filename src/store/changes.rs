//! Wake-ups for whoever keeps a copy of stored state. Sessions watching a
//! user's mailbox (IMAP IDLE, and the changes a selected folder reports at
//! its next command): every committed change to a user's inbox or folders
//! bumps that user's counter. A wake-up carries no data; the session reads
//! the store again. On a shared store, other nodes' changes arrive as
//! announcements ([`Remote`]); while they cannot be heard, no copy is
//! trusted (every generation read is new).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

/// Changes other nodes made to what this node keeps copies of.
#[derive(Default)]
pub struct Remote {
    /// The routing table changed.
    pub routes: Notify,
    /// The queue's pause state changed.
    pub pause: Notify,
    /// Announcements cannot be heard now: copies must be read again often.
    pub deaf: AtomicBool,
}

#[derive(Default)]
pub struct Changes {
    /// Bumped whenever announcements may have been missed: added to every
    /// generation, it makes every copy read before stale.
    epoch: AtomicU64,
    deaf: AtomicBool,
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// How many changes each user's mailbox has seen since the node
    /// started, whether or not anyone was watching: a copy of a folder read
    /// at generation g is current while the generation is still g.
    generations: Mutex<HashMap<String, u64>>,
}

impl Changes {
    /// A receiver that sees every later change to `user_key`'s mailbox.
    pub fn subscribe(&self, user_key: &str) -> watch::Receiver<u64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user_key.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// The number of changes `user_key`'s mailbox has seen (read it before
    /// reading the mailbox).
    pub fn generation(&self, user_key: &str) -> u64 {
        let epoch = if self.deaf.load(Ordering::SeqCst) {
            self.epoch.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.epoch.load(Ordering::SeqCst)
        };
        let own = self.generations.lock().unwrap_or_else(|p| p.into_inner()).get(user_key).copied().unwrap_or(0);
        own.wrapping_add(epoch << 32)
    }

    /// Whether other nodes' changes can be heard. Either way, every copy
    /// kept so far may be stale: every watcher is woken.
    pub fn set_deaf(&self, deaf: bool) {
        self.deaf.store(deaf, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.retain(|_, tx| tx.receiver_count() > 0);
        for tx in users.values() {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Tells `user_key`'s watchers that their mailbox changed.
    pub fn touch(&self, user_key: &str) {
        *self.generations.lock().unwrap_or_else(|p| p.into_inner()).entry(user_key.to_string()).or_default() += 1;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = users.get(user_key) {
            if tx.receiver_count() == 0 {
                users.remove(user_key);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_wakes_that_users_watchers_only() {
        let c = Changes::default();
        let mut ann = c.subscribe("ann@x.test");
        let bob = c.subscribe("bob@x.test");
        c.touch("ann@x.test");
        assert!(ann.has_changed().unwrap());
        assert!(!bob.has_changed().unwrap());
        ann.mark_unchanged();
        drop(bob);
        c.touch("bob@x.test");
        assert!(c.users.lock().unwrap().get("bob@x.test").is_none(), "no watchers: forgotten");
        assert!(!ann.has_changed().unwrap());
        assert_eq!((c.generation("ann@x.test"), c.generation("bob@x.test"), c.generation("carl@x.test")), (1, 1, 0));
    }
}
