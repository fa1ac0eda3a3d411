//! What the IMAP sessions of one node share, so that a big folder is not
//! read and parsed again for every SELECT and listing:
//!
//! - envelopes already parsed, keyed by the message's digest. A digest
//!   names the octets, so an entry can never be stale, whoever's mailbox it
//!   is read for; only envelopes of octets that matched their digest are
//!   kept;
//! - folders as last read, each with the mailbox generation it was read at
//!   (`Store::mailbox_generation`, read before the folder): current while
//!   the generation is unchanged. Folders whose entries carry tracking
//!   keywords (Sent) are not kept: those change without the mailbox.
//!
//! Both are bounded; the oldest go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use imap_codec::imap_types::envelope::Envelope;

use crate::store::records::InboxRecord;

/// A folder's entries, shared by the sessions that read them.
pub type Entries = Arc<Vec<(u32, Arc<InboxRecord>)>>;

/// Folder entries kept at most, all folders together.
pub const MAX_FOLDER_ENTRIES: usize = 200_000;

/// Envelopes kept at most (a 10,000-message folder listed by several
/// clients stays in memory; about 1 KiB each).
pub const MAX_ENVELOPES: usize = 100_000;

#[derive(Default)]
pub struct Shared {
    envelopes: Mutex<Bounded>,
    folders: Mutex<Folders>,
}

#[derive(Default)]
struct Folders {
    map: HashMap<(String, String), (u64, Entries)>,
    order: VecDeque<(String, String)>,
    held: usize,
}

#[derive(Default)]
struct Bounded {
    map: HashMap<String, Envelope<'static>>,
    order: VecDeque<String>,
}

impl Shared {
    pub fn envelope(&self, digest: &str) -> Option<Envelope<'static>> {
        self.envelopes.lock().unwrap_or_else(|p| p.into_inner()).map.get(digest).cloned()
    }

    pub fn keep_envelope(&self, digest: &str, e: &Envelope<'static>) {
        let mut b = self.envelopes.lock().unwrap_or_else(|p| p.into_inner());
        if b.map.contains_key(digest) {
            return;
        }
        while b.map.len() >= MAX_ENVELOPES {
            let Some(old) = b.order.pop_front() else { break };
            b.map.remove(&old);
        }
        b.map.insert(digest.to_string(), e.clone());
        b.order.push_back(digest.to_string());
    }
}

impl Shared {
    /// The folder as read at `generation`, if it was.
    pub fn folder(&self, user_key: &str, name: &str, generation: u64) -> Option<Entries> {
        let f = self.folders.lock().unwrap_or_else(|p| p.into_inner());
        match f.map.get(&(user_key.to_string(), name.to_string())) {
            Some((g, e)) if *g == generation => Some(e.clone()),
            _ => None,
        }
    }

    pub fn keep_folder(&self, user_key: &str, name: &str, generation: u64, entries: &Entries) {
        if entries.iter().any(|(_, r)| r.sent.is_some()) || entries.len() > MAX_FOLDER_ENTRIES {
            return;
        }
        let mut f = self.folders.lock().unwrap_or_else(|p| p.into_inner());
        let key = (user_key.to_string(), name.to_string());
        if let Some((_, old)) = f.map.remove(&key) {
            f.held -= old.len();
            f.order.retain(|k| k != &key);
        }
        while f.held + entries.len() > MAX_FOLDER_ENTRIES {
            let Some(old) = f.order.pop_front() else { break };
            if let Some((_, e)) = f.map.remove(&old) {
                f.held -= e.len();
            }
        }
        f.held += entries.len();
        f.map.insert(key.clone(), (generation, entries.clone()));
        f.order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::NString;

    fn env(subject: &str) -> Envelope<'static> {
        let mut e = crate::imap::message::Parsed::new(b"").envelope();
        e.subject = NString::try_from(subject.to_string()).unwrap();
        e
    }

    #[test]
    fn bounded_oldest_first() {
        let s = Shared::default();
        for i in 0..MAX_ENVELOPES + 2 {
            s.keep_envelope(&format!("d{i}"), &env("x"));
        }
        assert!(s.envelope("d0").is_none() && s.envelope("d1").is_none());
        assert!(s.envelope("d2").is_some() && s.envelope(&format!("d{}", MAX_ENVELOPES + 1)).is_some());
        s.keep_envelope("d2", &env("other"));
        assert_eq!(s.envelope("d2"), Some(env("x")), "a digest's envelope is never replaced");
    }

    #[test]
    fn a_folder_is_current_only_at_its_generation() {
        let s = Shared::default();
        let entries: Entries = Arc::new(vec![]);
        s.keep_folder("ann@x.test", "INBOX", 3, &entries);
        assert!(s.folder("ann@x.test", "INBOX", 3).is_some());
        assert!(s.folder("ann@x.test", "INBOX", 4).is_none(), "changed since");
        assert!(s.folder("ann@x.test", "Work", 3).is_none());
    }
}
