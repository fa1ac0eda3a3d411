//! The storage seam: the few things the store asks of a durable engine —
//! read a key, walk keys in order from a point, apply a batch atomically,
//! and serialise read-modify-write operations — with two engines behind it,
//! RocksDB ([`rocks`], embedded, the default) and PostgreSQL ([`postgres`],
//! shared by several nodes). Everything the store means by its records (a
//! final status is final, read status never goes down, un-pin frees the body
//! once) lives above this seam, in code both engines share.
//!
//! Keys are bytes compared byte-wise in both engines; a table (RocksDB: a
//! column family) is named by one of [`super::schema::ALL_CFS`]. Tables in
//! [`COUNTER_TABLES`] hold two summed integers per key, changed by
//! [`Batch::add`] without reading them first.

pub mod floor;
pub mod pg_batch;
pub mod postgres;
pub mod rocks;

use super::schema::{CF_ACCOUNTS, CF_EXPIRY, CF_QUEUE, CF_TRAFFIC, account_value};

/// Tables whose values are (bytes, messages) sums, written by [`Batch::add`].
pub const COUNTER_TABLES: &[&str] = &[CF_ACCOUNTS, CF_TRAFFIC];

/// Tables read from their first key whose heads are where keys are deleted
/// (due jobs leased, lifetimes ended): an engine that keeps deleted keys
/// for a while may remember where the live ones begin ([`floor`]).
pub const HEAD_TABLES: &[&str] = &[CF_QUEUE, CF_EXPIRY];

/// Whether `table` is one of the [`COUNTER_TABLES`].
pub fn is_counter(table: &str) -> bool {
    COUNTER_TABLES.contains(&table)
}

/// Why an engine failed. The message names what failed, not the engine.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The engine cannot be reached or refused the work for now (the
    /// database went away, a standby to confirm commits is missing): try later.
    Unavailable,
    /// The disk (or the file system's quota) is full.
    DiskFull,
    /// Anything else: a bug, corruption, a refused statement.
    Other,
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> BackendError {
        BackendError { kind, message: message.into() }
    }
}

/// One change in a [`Batch`].
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        table: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: &'static str,
        key: Vec<u8>,
    },
    /// Adds to the two sums under `key` of a counter table.
    Add {
        table: &'static str,
        key: Vec<u8>,
        bytes: i64,
        messages: i64,
    },
}

/// Changes applied together or not at all, in order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, table: &'static str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.ops.push(Op::Put { table, key: key.as_ref().to_vec(), value: value.as_ref().to_vec() });
    }

    pub fn delete(&mut self, table: &'static str, key: impl AsRef<[u8]>) {
        self.ops.push(Op::Delete { table, key: key.as_ref().to_vec() });
    }

    /// Adds `bytes` and `messages` to a counter (see [`COUNTER_TABLES`]).
    pub fn add(&mut self, table: &'static str, key: impl AsRef<[u8]>, bytes: i64, messages: i64) {
        debug_assert!(COUNTER_TABLES.contains(&table), "{table} is not a counter table");
        self.ops.push(Op::Add { table, key: key.as_ref().to_vec(), bytes, messages });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Adds `other`'s changes after this batch's own.
    pub fn append(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// Whether a commit must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (PostgreSQL: and on the synchronous standby) when it returns:
    /// what acknowledges something to a peer or a user.
    Durable,
    /// May be lost in a power failure without breaking a promise: read
    /// status, a job's lease, a notification attempt's outcome (lost, the
    /// job is due again and the agent answers the repeat as a duplicate).
    /// Both engines replay their log in order, so what a power failure
    /// takes is the latest writes, never one from the middle, and a
    /// durable write makes every write before it durable too. A process
    /// that dies loses none of them: its writes are in the kernel's hands.
    Lazy,
}

/// A key and its value, as a scan yields them.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Keys in order from a point; stops at the first error.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<Entry, BackendError>> + 'a>;

/// Held while a read-modify-write runs; see [`Backend::exclusive`].
pub type Exclusive<'a> = Box<dyn Held + 'a>;

/// Anything an engine holds for a turn (a mutex guard, a transaction).
pub trait Held {}
impl<T> Held for T {}

/// A durable ordered key-value engine.
pub trait Backend: Send + Sync {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// The values of `keys` (in their order, a key asked twice answered
    /// twice), read together: one round trip on a shared engine.
    fn get_many(&self, table: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError>;

    /// Entries of `table` with keys at or after `from` (and before `below`,
    /// if given), in byte order. A bound lets an engine stop without
    /// looking at what lies past it (RocksDB: deleted keys).
    fn scan(&self, table: &'static str, from: &[u8], below: Option<&[u8]>) -> Scan<'_>;

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), BackendError>;

    /// Serialises read-modify-write operations: while the returned guard
    /// lives, no other holder (in this process, or on PostgreSQL in any
    /// node) runs, and the reads on this thread see every write committed
    /// by holders before. A turn may commit several batches.
    fn exclusive(&self) -> Result<Exclusive<'_>, BackendError>;

    /// Whether other nodes share this engine's data (and so change it
    /// behind this node's back).
    fn shared(&self) -> bool {
        false
    }

    /// Tells the other nodes on this engine that `topic` changed (after
    /// the change is committed). An engine no one shares has no one to tell.
    fn announce(&self, _topic: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// Has `on` hear what other nodes announce, from now until the engine
    /// is dropped, and when hearing stops and resumes (what was announced
    /// in between is lost: the listener must assume anything changed).
    fn listen(&self, _on: Listener) {}
}

/// What a [`Backend::listen`] listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// A topic another node (or this one) announced.
    Topic(&'a str),
    /// Announcements can no longer be heard, until [`Heard::Hearing`].
    Deaf,
    /// Announcements are heard again.
    Hearing,
}

pub type Listener = std::sync::Arc<dyn Fn(Heard<'_>) + Send + Sync>;

/// The value a counter's sums read as (what [`super::schema::parse_account_value`] reads).
pub fn counter_value(bytes: i64, messages: i64) -> Vec<u8> {
    account_value(bytes, messages).to_vec()
}

/// Conformance of one engine to the seam: run against each engine by its
/// own tests.
#[cfg(test)]
pub(crate) fn check_engine(b: &dyn Backend) {
    use super::schema::{CF_META, CF_QUEUE, parse_account_value};
    assert_eq!(b.get(CF_META, b"absent").unwrap(), None);
    let mut batch = Batch::default();
    batch.put(CF_QUEUE, [2u8], b"two");
    batch.put(CF_QUEUE, [1u8, 0xff], b"one-ff");
    batch.put(CF_QUEUE, [1u8], b"one");
    batch.put(CF_QUEUE, [3u8], b"three");
    batch.delete(CF_QUEUE, [3u8]);
    batch.put(CF_QUEUE, [0xffu8, 0], b"high");
    batch.add(CF_ACCOUNTS, b"a", 10, 1);
    batch.add(CF_ACCOUNTS, b"a", 5, 1);
    batch.add(CF_ACCOUNTS, b"b", -3, -1);
    b.write(batch, Durability::Durable).unwrap();
    let keys: Vec<Vec<u8>> = b.scan(CF_QUEUE, &[], None).map(|e| e.unwrap().0).collect();
    assert_eq!(keys, vec![vec![1], vec![1, 0xff], vec![2], vec![0xff, 0]], "byte order, the deleted key gone");
    let from: Vec<Vec<u8>> = b.scan(CF_QUEUE, &[1, 0x80], None).map(|e| e.unwrap().0).collect();
    assert_eq!(from, vec![vec![1, 0xff], vec![2], vec![0xff, 0]]);
    let below: Vec<Vec<u8>> = b.scan(CF_QUEUE, &[1, 0x80], Some(&[0xff])).map(|e| e.unwrap().0).collect();
    assert_eq!(below, vec![vec![1, 0xff], vec![2]], "the bound itself and what follows are left out");
    let below: Vec<Vec<u8>> = b.scan(CF_QUEUE, &[], Some(&[1, 0xff])).map(|e| e.unwrap().0).collect();
    assert_eq!(below, vec![vec![1]]);
    assert_eq!(b.scan(CF_QUEUE, &[], Some(&[0])).count(), 0);
    assert_eq!(b.get(CF_QUEUE, &[2]).unwrap().as_deref(), Some(&b"two"[..]));
    let many = b.get_many(CF_QUEUE, &[vec![2], vec![3], vec![1], vec![2]]).unwrap();
    assert_eq!(many, vec![Some(b"two".to_vec()), None, Some(b"one".to_vec()), Some(b"two".to_vec())]);
    assert_eq!(b.get_many(CF_QUEUE, &[]).unwrap(), Vec::<Option<Vec<u8>>>::new());
    let counted = b.get_many(CF_ACCOUNTS, &[b"b".to_vec(), b"none".to_vec()]).unwrap();
    assert_eq!(counted.len(), 2);
    assert_eq!(parse_account_value(counted[0].as_deref().unwrap()), (-3, -1));
    assert_eq!(counted[1], None);
    assert_eq!(parse_account_value(&b.get(CF_ACCOUNTS, b"a").unwrap().unwrap()), (15, 2));
    assert_eq!(parse_account_value(&b.get(CF_ACCOUNTS, b"b").unwrap().unwrap()), (-3, -1));
    let counters: Vec<Vec<u8>> = b.scan(CF_ACCOUNTS, &[], None).map(|e| e.unwrap().0).collect();
    assert_eq!(counters, vec![b"a".to_vec(), b"b".to_vec()]);

    // A long scan crosses any paging the engine does.
    let mut batch = Batch::default();
    for i in 0u32..1500 {
        batch.put(CF_META, [b"n".as_slice(), &i.to_be_bytes()].concat(), i.to_be_bytes());
    }
    b.write(batch, Durability::Lazy).unwrap();
    let n = b.scan(CF_META, b"n", None).take_while(|e| e.as_ref().is_ok_and(|(k, _)| k.starts_with(b"n"))).count();
    assert_eq!(n, 1500);

    // A turn sees what the turns before it committed, and its own commits.
    {
        let _turn = b.exclusive().unwrap();
        for v in [b"1", b"2"] {
            let mut batch = Batch::default();
            batch.put(CF_META, b"turn", v);
            b.write(batch, Durability::Durable).unwrap();
            assert_eq!(b.get(CF_META, b"turn").unwrap().as_deref(), Some(&v[..]));
        }
    }
    {
        let _turn = b.exclusive().unwrap();
        assert_eq!(b.get(CF_META, b"turn").unwrap().as_deref(), Some(&b"2"[..]));
    }
    drop(b.exclusive().unwrap());
    // Turns on two threads never overlap.
    let inside = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    let _turn = b.exclusive().unwrap();
                    assert!(!inside.swap(true, std::sync::atomic::Ordering::SeqCst), "two turns at once");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    inside.store(false, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
}
