//! Wake-ups for the sessions watching a user's mailbox (IMAP IDLE, and
//! the changes a selected folder reports at its next command): every
//! committed change to a user's inbox or folders bumps that user's counter.
//! A wake-up carries no data; the session reads the store again.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Default)]
pub struct Changes {
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
        self.generations.lock().unwrap_or_else(|p| p.into_inner()).get(user_key).copied().unwrap_or(0)
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
