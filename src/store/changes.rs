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
}

impl Changes {
    /// A receiver that sees every later change to `user_key`'s mailbox.
    pub fn subscribe(&self, user_key: &str) -> watch::Receiver<u64> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user_key.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Tells `user_key`'s watchers that their mailbox changed.
    pub fn touch(&self, user_key: &str) {
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
    }
}
