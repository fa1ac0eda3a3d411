//! The one place that knows how imgate lays data out in RocksDB: every column
//! family, every key layout, and the value type stored under it. Integers in
//! keys are big-endian so that byte order is numeric order and range scans
//! walk time forwards.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `messages`   | message id (16)                         | [`MessageRecord`] JSON |
//! | `bodies`     | message id (16)                         | the RFC 5322 octets, once per message |
//! | `recipients` | recipient selector (8)                  | [`RecipientRecord`] JSON (holds the verifier) |
//! | `queue`      | due ms (8) · job key (8: a recipient selector, or a random delivery id) · kind (1, high bit: leased) | [`Job`] JSON |
//! | `expiry`     | expires ms (8) · message id (16)        | empty |
//! | `lists`      | list name · 0x00 · submitted ms (8) · message id (16) | [`ListRecord`] JSON |
//! | `accounts`   | account (sender address key, or `smtp:` + an outside sender's); `group:` + a group account (an outside sender domain's total); `inbox:` + a user key (what the user's inbox holds) | bytes (i64 BE) · messages (i64 BE), summed by a merge operator |
//! | `inbox`      | user key · 0x00 · sequence (8)          | [`InboxRecord`] JSON |
//! | `inbox_seen` | sha-256(store · id · recipient) (32)    | user key · 0x00 · sequence (8) |
//! | `meta`       | name                                    | value (`inbox_seq`: u64 BE; `schema`: u32 BE; `node:` + a node's name: [`NodeRecord`] JSON) |
//! | `returns`    | delivery id (8), the token of a `bounce+ID@` return path | [`ReturnRecord`] JSON |
//! | `routes`     | a domain, or a user's address key         | [`RouteRecord`] JSON |
//! | `traffic`    | domain · 0x00 · hour (8) · side (1: `i` IM2000, `l` legacy) | bytes (i64 BE) · messages (i64 BE), summed by a merge operator |
//! | `folders`    | user key · 0x00 · folder name (a user's IMAP folders but INBOX) | [`FolderRecord`] JSON |
//! | `folder_mail`| user key · 0x00 · folder name · 0x00 · UID (4) | [`InboxRecord`] JSON |
//! | `held`       | held id (32 hex digits)                 | the octets of a message a user APPENDed |
//! | `pulled`     | sha-256(store · id) (32)                | order (8) · the octets pulled from that store (a bounded cache) |
//! | `pulled_order` | order (8)                             | the `pulled` key: oldest first, for eviction |
//!
//! [`MessageRecord`]: super::records::MessageRecord
//! [`RecipientRecord`]: super::records::RecipientRecord
//! [`Job`]: super::records::Job
//! [`ListRecord`]: super::records::ListRecord
//! [`InboxRecord`]: super::records::InboxRecord
//! [`ReturnRecord`]: super::records::ReturnRecord
//! [`RouteRecord`]: super::records::RouteRecord
//! [`FolderRecord`]: super::records::FolderRecord
//! [`NodeRecord`]: super::records::NodeRecord

use sha2::{Digest, Sha256};

use crate::clock::Millis;
use crate::proto::MessageId;

pub const CF_MESSAGES: &str = "messages";
pub const CF_BODIES: &str = "bodies";
pub const CF_RECIPIENTS: &str = "recipients";
pub const CF_QUEUE: &str = "queue";
pub const CF_EXPIRY: &str = "expiry";
pub const CF_LISTS: &str = "lists";
pub const CF_ACCOUNTS: &str = "accounts";
pub const CF_INBOX: &str = "inbox";
pub const CF_INBOX_SEEN: &str = "inbox_seen";
pub const CF_META: &str = "meta";
pub const CF_RETURNS: &str = "returns";
pub const CF_ROUTES: &str = "routes";
pub const CF_TRAFFIC: &str = "traffic";
pub const CF_FOLDERS: &str = "folders";
pub const CF_FOLDER_MAIL: &str = "folder_mail";
pub const CF_HELD: &str = "held";
pub const CF_PULLED: &str = "pulled";
pub const CF_PULLED_ORDER: &str = "pulled_order";

pub const ALL_CFS: &[&str] = &[
    CF_MESSAGES,
    CF_BODIES,
    CF_RECIPIENTS,
    CF_QUEUE,
    CF_EXPIRY,
    CF_LISTS,
    CF_ACCOUNTS,
    CF_INBOX,
    CF_INBOX_SEEN,
    CF_META,
    CF_RETURNS,
    CF_ROUTES,
    CF_TRAFFIC,
    CF_FOLDERS,
    CF_FOLDER_MAIL,
    CF_HELD,
    CF_PULLED,
    CF_PULLED_ORDER,
];

/// Accounts that count bytes already counted in a sender's own account.
pub const GROUP_ACCOUNT: &str = "group:";
/// The prefix of the quota accounts of SMTP senders from outside: each
/// sender address has its own, and each sender domain a group account.
pub const OUTSIDE_ACCOUNT: &str = "smtp:";
/// Per-user inbox tallies in the accounts family (bytes, notifications).
pub const INBOX_TALLY: &str = "inbox:";

pub fn inbox_tally_key(user_key: &str) -> Vec<u8> {
    format!("{INBOX_TALLY}{user_key}").into_bytes()
}

/// Version of this layout, written at creation and checked at open.
pub const SCHEMA_VERSION: u32 = 1;
pub const META_SCHEMA: &[u8] = b"schema";
/// The store-wide inbox counter of stores written before counters were per
/// user; read, never written any more (see [`inbox_seq_key`]).
pub const META_INBOX_SEQ: &[u8] = b"inbox_seq";

/// The last sequence number (IMAP UID) given out in one user's inbox.
pub fn inbox_seq_key(user_key: &str) -> Vec<u8> {
    format!("inbox_seq:{user_key}").into_bytes()
}
/// What the queue holds back ([`QueuePause`] JSON).
///
/// [`QueuePause`]: super::records::QueuePause
pub const META_QUEUE_PAUSE: &[u8] = b"queue_pause";

/// A node of a shared store, by its `[store] node` name: its last
/// heartbeat ([`NodeRecord`] JSON).
///
/// [`NodeRecord`]: super::records::NodeRecord
pub fn node_key(name: &str) -> Vec<u8> {
    format!("node:{name}").into_bytes()
}

/// Job kinds, the last byte of a queue key.
pub const JOB_NOTIFY: u8 = 1;
pub const JOB_DELIVER: u8 = 2;
/// Set on the kind of a job taken by a running worker. Leases belong to the
/// process that took them: a restarted node releases them all at once.
pub const LEASED: u8 = 0x80;

pub fn queue_key(due: Millis, job: [u8; 8], kind: u8) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&due.to_be_bytes());
    k[8..16].copy_from_slice(&job);
    k[16] = kind;
    k
}

/// (due, job key, kind) of a queue key.
pub fn parse_queue_key(k: &[u8]) -> Option<(Millis, [u8; 8], u8)> {
    if k.len() != 17 {
        return None;
    }
    Some((u64::from_be_bytes(k[..8].try_into().ok()?), k[8..16].try_into().ok()?, k[16]))
}

pub fn expiry_key(at: Millis, msg: &MessageId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&at.to_be_bytes());
    k[8..].copy_from_slice(&msg.0);
    k
}

pub fn parse_expiry_key(k: &[u8]) -> Option<(Millis, MessageId)> {
    if k.len() != 24 {
        return None;
    }
    Some((u64::from_be_bytes(k[..8].try_into().ok()?), MessageId(k[8..].try_into().ok()?)))
}

/// Prefix of every key of one list (names never contain NUL).
pub fn list_prefix(list: &str) -> Vec<u8> {
    let mut k = list.to_lowercase().into_bytes();
    k.push(0);
    k
}

pub fn list_key(list: &str, at: Millis, msg: &MessageId) -> Vec<u8> {
    let mut k = list_prefix(list);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(&msg.0);
    k
}

/// Prefix of every key of one user's inbox.
pub fn inbox_prefix(user_key: &str) -> Vec<u8> {
    let mut k = user_key.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn inbox_key(user_key: &str, seq: u64) -> Vec<u8> {
    let mut k = inbox_prefix(user_key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number at the end of an inbox key.
pub fn inbox_key_seq(k: &[u8]) -> Option<u64> {
    let tail = k.len().checked_sub(8)?;
    Some(u64::from_be_bytes(k[tail..].try_into().ok()?))
}

/// Prefix of every folder record of one user.
pub fn folder_prefix(user_key: &str) -> Vec<u8> {
    inbox_prefix(user_key)
}

/// A folder record's key (names never contain NUL).
pub fn folder_key(user_key: &str, name: &str) -> Vec<u8> {
    let mut k = folder_prefix(user_key);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of every entry of one folder.
pub fn folder_mail_prefix(user_key: &str, name: &str) -> Vec<u8> {
    let mut k = folder_key(user_key, name);
    k.push(0);
    k
}

pub fn folder_mail_key(user_key: &str, name: &str, uid: u32) -> Vec<u8> {
    let mut k = folder_mail_prefix(user_key, name);
    k.extend_from_slice(&uid.to_be_bytes());
    k
}

/// The UID at the end of a folder entry's key.
pub fn folder_mail_uid(k: &[u8]) -> Option<u32> {
    let tail = k.len().checked_sub(4)?;
    Some(u32::from_be_bytes(k[tail..].try_into().ok()?))
}

/// The cache key of what was pulled from `store` for identifier `id`.
pub fn pulled_key(store: &str, id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [store.to_lowercase().as_str(), id.to_lowercase().as_str()] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Octets the pulled-message cache holds (u64 BE), and the next order number.
pub const META_PULLED_BYTES: &[u8] = b"pulled_bytes";
pub const META_PULLED_ORDER: &[u8] = b"pulled_order";
/// The last UIDVALIDITY given out (u32 BE): each new folder, and INBOX at
/// first use, gets a later one.
pub const META_UIDVALIDITY: &[u8] = b"uidvalidity";
/// INBOX's UIDVALIDITY, the same for every user of the store (u32 BE).
pub const META_INBOX_UIDVALIDITY: &[u8] = b"inbox_uidvalidity";
/// Marks that a user's default folders were made (empty value).
pub fn folders_made_key(user_key: &str) -> Vec<u8> {
    format!("folders_made:{user_key}").into_bytes()
}

/// Octets a user holds in `held` messages, in the accounts family.
pub fn held_tally_key(user_key: &str) -> Vec<u8> {
    format!("held:{user_key}").into_bytes()
}

/// Identity of a notification for idempotency: (store, id, recipient).
pub fn inbox_seen_key(store: &str, id: &str, recipient_key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [store.to_lowercase().as_str(), id.to_lowercase().as_str(), recipient_key] {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// Hours since the epoch: the unit of the traffic counters.
pub fn hour_of(at: Millis) -> u64 {
    at / 3_600_000
}

/// Which side of a migration a message for a local user went to.
pub const SIDE_IM2000: u8 = b'i';
pub const SIDE_LEGACY: u8 = b'l';

pub fn traffic_prefix(domain: &str) -> Vec<u8> {
    let mut k = domain.to_lowercase().into_bytes();
    k.push(0);
    k
}

pub fn traffic_key(domain: &str, hour: u64, side: u8) -> Vec<u8> {
    let mut k = traffic_prefix(domain);
    k.extend_from_slice(&hour.to_be_bytes());
    k.push(side);
    k
}

/// (hour, side) of a traffic key under `prefix`.
pub fn parse_traffic_key(prefix: &[u8], k: &[u8]) -> Option<(u64, u8)> {
    let rest = k.strip_prefix(prefix)?;
    if rest.len() != 9 {
        return None;
    }
    Some((u64::from_be_bytes(rest[..8].try_into().ok()?), rest[8]))
}

/// An account value, or a change to one: (bytes, messages).
pub fn account_value(bytes: i64, messages: i64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&bytes.to_be_bytes());
    v[8..].copy_from_slice(&messages.to_be_bytes());
    v
}

/// (bytes, messages) of an account value; a malformed value reads as zero.
pub fn parse_account_value(v: &[u8]) -> (i64, i64) {
    match (v.get(..8).and_then(|b| b.try_into().ok()), v.get(8..16).and_then(|b| b.try_into().ok())) {
        (Some(b), Some(m)) => (i64::from_be_bytes(b), i64::from_be_bytes(m)),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_by_time_and_round_trip() {
        let cases = [(0u64, [0u8; 8]), (1, [9; 8]), (255, [1; 8]), (256, [0; 8]), (u64::MAX, [7; 8])];
        let keys: Vec<_> = cases.iter().map(|(t, j)| queue_key(*t, *j, JOB_NOTIFY)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for ((t, j), k) in cases.iter().zip(&keys) {
            assert_eq!(parse_queue_key(k), Some((*t, *j, JOB_NOTIFY)));
        }
        assert_eq!(parse_queue_key(&[0; 16]), None);
    }

    #[test]
    fn inbox_and_list_keys_stay_inside_their_prefix() {
        // "ann" must not see "anne"'s entries: the NUL separator sees to it.
        let a = inbox_key("ann@x.test", u64::MAX);
        let b = inbox_key("anne@x.test", 0);
        assert!(a.starts_with(&inbox_prefix("ann@x.test")));
        assert!(!b.starts_with(&inbox_prefix("ann@x.test")));
        assert_eq!(inbox_key_seq(&inbox_key("u", 42)), Some(42));
        let m = MessageId([3; 16]);
        assert!(list_key("News", 5, &m).starts_with(&list_prefix("news")));
        assert!(list_key("news", 5, &m) < list_key("news", 6, &MessageId([0; 16])));
        assert_eq!(parse_expiry_key(&expiry_key(9, &m)), Some((9, m)));
    }

    #[test]
    fn account_values_round_trip() {
        for (b, m) in [(0, 0), (1, 1), (-5, -1), (i64::MAX, 3)] {
            assert_eq!(parse_account_value(&account_value(b, m)), (b, m));
        }
        assert_eq!(parse_account_value(b"short"), (0, 0));
    }

    #[test]
    fn traffic_keys_sort_by_hour_within_their_domain() {
        let p = traffic_prefix("One.test");
        let a = traffic_key("one.test", 5, SIDE_LEGACY);
        let b = traffic_key("one.test", 6, SIDE_IM2000);
        assert!(a < b && a.starts_with(&p) && !traffic_key("one.testx", 1, SIDE_IM2000).starts_with(&p));
        assert_eq!(parse_traffic_key(&p, &a), Some((5, SIDE_LEGACY)));
        assert_eq!(parse_traffic_key(&p, &p), None);
        assert_eq!(hour_of(7_200_000 + 1), 2);
    }

    #[test]
    fn seen_keys_do_not_collide_on_concatenation() {
        assert_ne!(inbox_seen_key("ab", "c", "d"), inbox_seen_key("a", "bc", "d"));
        assert_eq!(inbox_seen_key("One.test", "AB", "d"), inbox_seen_key("one.test", "ab", "d"));
    }
}
