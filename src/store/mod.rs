//! The durable state of a node: the message store (bodies once,
//! per-recipient capability records), the job queue, list indexes, quota
//! accounts and the notification agent's inboxes. Layout lives in
//! [`schema`]; the engine behind it (RocksDB embedded, or PostgreSQL shared
//! by several nodes) is behind the seam in [`backend`], and only there.
//! Here: the message store itself; `queue.rs`: jobs and expiry;
//! `deliveries.rs`: SMTP delivery jobs and return paths; `inbox.rs`: the
//! agent's inboxes; `folders.rs`: IMAP folders; `routes.rs`: routes and traffic.
//!
//! Every operation that acknowledges something to a peer or a user writes one
//! atomic batch, durably, before returning. Read-modify-write operations on
//! records are serialised by the engine's turns (`Store::lock`: one mutex
//! on RocksDB, one advisory lock across every node on PostgreSQL): they are
//! short, and it keeps each record's transitions simple to reason about.
//! Submission, the hot path, takes no turn: it only creates records, and
//! quota accounts are counters that writers add to without reading, so
//! concurrent submissions share fsyncs.

pub mod backend;
pub mod changes;
mod committer;
mod deliveries;
pub mod folders;
mod inbox;
mod nodes;
mod queue;
pub mod records;
mod routes;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use backend::{Backend, BackendError, Batch, Durability, ErrorKind, Exclusive};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Millis;
use crate::proto::api::{Notification, Origin};
use crate::proto::digest::{header_section_len, sha256_field};
use crate::proto::hex::encode as hex;
use crate::proto::{Address, MessageId, NotificationStatus, ReadStatus, RecipientId};
use records::*;
pub use routes::Traffic;
use schema::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Backend(#[from] BackendError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("over quota: {used} of {quota} bytes in use, this message needs {size}")]
    OverQuota { used: u64, quota: u64, size: u64 },
    #[error("the store was created by a newer imgate (schema {0})")]
    NewerSchema(u32),
    /// A job's lease ended and another worker (on a shared store, perhaps
    /// another node) took the job over: this attempt's late result is not
    /// recorded; the newer attempt's will be.
    #[error("the job's lease ended and it was taken over; this late result is not recorded")]
    LeaseLost,
}

impl StoreError {
    /// Whether the disk (or the file system's quota) is full: a condition
    /// for the operator, which clients should meet by trying later.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Backend(e) if e.kind == ErrorKind::DiskFull)
    }

    /// Whether the engine cannot be reached for now (a database that went
    /// away): clients should try later, and the node recovers by itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Backend(e) if e.kind == ErrorKind::Unavailable)
    }
}

/// Why a recipient identifier does not lead to content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No such identifier.
    Unknown,
    /// It existed, but the content is gone (recalled, expired, released).
    Gone,
}

/// A message to store.
pub struct NewMessage {
    /// The domain whose store this is, as named in notifications.
    pub store: String,
    pub sender: Address,
    pub account: String,
    /// Further accounts charged the same bytes, each with its quota (the
    /// sender's domain, for mail from outside): one sender cannot fill the
    /// space of all senders of a domain, nor one domain that of all others.
    pub also_charge: Vec<(String, u64)>,
    pub recipients: Vec<Address>,
    /// Recipients to deliver by SMTP from this store (smarthost relay)
    /// rather than notify; they get capabilities like the others.
    pub relay: Vec<Address>,
    pub lists: Vec<String>,
    pub lifetime_ms: u64,
    pub content: Vec<u8>,
    pub origin: Option<Origin>,
    /// The sender is a local user writing their own mail: it also shows in
    /// their Sent folder (the store is their Out box; nothing is copied).
    pub file_in_sent: bool,
}

/// What [`Store::submit`] created.
#[derive(Debug)]
pub struct Submitted {
    pub message: MessageId,
    pub expires_at: Millis,
    pub size: u64,
    pub digest: String,
    pub recipients: Vec<(Address, RecipientId)>,
    pub lists: Vec<(String, RecipientId)>,
}

/// What a probe says of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub sender: String,
    pub size: u64,
    pub digest: String,
}

/// A recipient record found by its capability, with its message.
#[derive(Debug, Clone)]
pub struct Found {
    pub message_id: MessageId,
    pub message: MessageRecord,
    pub recipient: RecipientRecord,
}

/// How a queued notification attempt ended.
#[derive(Debug, Clone)]
pub enum NotifyAttempt {
    /// Accepted (or a duplicate): keep pinned, re-send after `resend_at`.
    Accepted { resend_at: Millis },
    /// A final answer: the status, and why.
    Final { status: NotificationStatus, reason: String },
    /// Try again at `retry_at`.
    Retry { retry_at: Millis, reason: String },
}

/// A job taken from the queue, leased until `lease_until`.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job: Job,
    pub selector: [u8; 8],
    /// When the lease ends: the job's fencing token. A result is recorded
    /// only while the record is still due at this time (no newer lease).
    pub lease_until: Millis,
    pub record: RecipientRecord,
    /// Shared by the jobs of one message taken in the same pass (a message
    /// to thousands of recipients is read and parsed once, not per job).
    pub message: Arc<MessageRecord>,
}

/// Which notifications [`Store::lease_due_filing`] files as it takes them.
pub struct FileAsLeased<'a> {
    /// The filing for a job this node is the agent for and files without
    /// asking anyone; `None`: the job is leased as usual.
    pub filing: &'a dyn Fn(&Leased) -> Option<Filing>,
    /// When a notification accepted now is sent again.
    pub resend_at: Millis,
    /// Most notifications an inbox holds.
    pub max_inbox: u64,
}

/// A notification filed as its job was taken: its attempt is recorded,
/// accepted (`Accepted`, or `Duplicate` if it was filed before).
#[derive(Debug)]
pub struct FiledAsLeased {
    pub leased: Leased,
    pub filing: Filing,
    pub accept: InboxAccept,
}

/// A delivery job taken from the queue, leased until `due`.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub id: [u8; 8],
    /// When the lease ends, which is also its fencing token: the leased key
    /// is gone once another worker has taken the job over.
    pub due: Millis,
    pub delivery: Delivery,
}

/// What [`Store::lease_due`] took.
#[derive(Debug, Default)]
pub struct LeasedJobs {
    pub notify: Vec<Leased>,
    pub deliver: Vec<LeasedDelivery>,
    /// Notifications filed as they were taken ([`Store::lease_due_filing`]).
    pub filed: Vec<FiledAsLeased>,
}

impl LeasedJobs {
    pub fn len(&self) -> usize {
        self.notify.len() + self.deliver.len() + self.filed.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A raw queue entry: key and value.
type QueueEntry = (Vec<u8>, Vec<u8>);

/// A queued job as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobView {
    /// 16 hex digits naming the job for retry and drop.
    pub id: String,
    pub kind: &'static str,
    pub due: Millis,
    /// An attempt is running.
    pub leased: bool,
    pub recipient: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub sender: String,
    /// The store the message is at.
    pub store: String,
    pub size: u64,
    pub first_attempt_at: Option<Millis>,
    /// The attempts remembered (the first and the latest ones).
    pub history: Vec<Attempt>,
}

/// A verified notification to file for a user of this node.
#[derive(Debug, Clone)]
pub struct Filing {
    pub user_key: String,
    pub notification: Notification,
    /// The user is on SMTP: queue a delivery rather than an inbox entry.
    pub legacy: bool,
}

/// Result of accepting a notification into an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxAccept {
    Accepted(u64),
    Duplicate(u64),
    /// The user's inbox holds its most already.
    Full,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Box<dyn Backend>,
    /// Account totals read a moment ago, for quota checks (see
    /// [`Store::recent_account`]).
    recent: Mutex<std::collections::HashMap<String, (std::time::Instant, AccountRecord)>>,
    /// Who is watching which mailbox.
    changes: Arc<changes::Changes>,
    /// Other nodes' changes to what this node keeps copies of.
    remote: Arc<changes::Remote>,
    /// Synced writes for async callers, on an engine no other node shares.
    committer: Option<committer::Committer>,
}

/// A submission's batch, prepared: what is left to do once it is written.
struct Prepared {
    submitted: Submitted,
    /// The accounts it charged.
    charged: Vec<String>,
    /// The sender whose Sent folder it was filed in.
    sent_of: Option<String>,
}

/// How long a quota check may use a total it read before. Summed accounts
/// are merge-operator keys: reading one walks every operand not yet
/// compacted, which on the ingest path cost more than the rest of a store
/// write. A check already works on a moment-old total (concurrent
/// submissions may pass it together); this makes the moment a quarter
/// second.
const RECENT_TOTAL: std::time::Duration = std::time::Duration::from_millis(250);

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// The domain of an address key.
fn domain_of(key: &str) -> &str {
    key.rsplit_once('@').map_or(key, |(_, d)| d)
}

fn unhex8(s: &str) -> Result<[u8; 8], StoreError> {
    crate::proto::hex::decode_array(s).ok_or_else(|| StoreError::Corrupt(format!("bad selector {s:?}")))
}

impl Store {
    /// Opens (creating if needed) the embedded store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::on(Box::new(backend::rocks::Rocks::open(dir)?))
    }

    /// Opens the store on an engine, checking the version of what it holds.
    pub fn on(engine: Box<dyn Backend>) -> Result<Store, StoreError> {
        let shared = engine.shared();
        let store = Store {
            inner: Arc::new_cyclic(|inner| Inner {
                engine,
                recent: Default::default(),
                changes: Default::default(),
                remote: Default::default(),
                committer: (!shared).then(|| committer::Committer::start(inner.clone())),
            }),
        };
        store.check_schema()?;
        if store.inner.engine.shared() {
            store.listen();
        }
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.get(CF_META, META_SCHEMA)? {
            Some(v) => {
                let v = u32::from_be_bytes(
                    v.as_slice().try_into().map_err(|_| StoreError::Corrupt("schema version".into()))?,
                );
                if v > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema(v));
                }
            }
            None => {
                let mut b = Batch::default();
                b.put(CF_META, META_SCHEMA, SCHEMA_VERSION.to_be_bytes());
                self.commit(b)?;
            }
        }
        Ok(())
    }

    /// Wake-ups for changes to `user_key`'s mailbox.
    pub fn watch_mailbox(&self, user_key: &str) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe(user_key)
    }

    /// How many changes `user_key`'s mailbox has seen since the node
    /// started (see [`changes::Changes::generation`]).
    pub fn mailbox_generation(&self, user_key: &str) -> u64 {
        self.inner.changes.generation(user_key)
    }

    fn touched(&self, user_key: &str) {
        self.inner.changes.touch(user_key);
        if self.is_shared() {
            self.announce(&format!("mailbox:{user_key}"));
        }
    }

    /// Whether other nodes share this store.
    pub fn is_shared(&self) -> bool {
        self.inner.engine.shared()
    }

    /// What other nodes changed (on a shared store; never fires otherwise).
    pub fn remote(&self) -> Arc<changes::Remote> {
        self.inner.remote.clone()
    }

    /// Tells other nodes that `topic` changed; the change is committed
    /// already, so a failure to tell is logged, not returned (while nodes
    /// cannot hear each other they read the store again often instead).
    fn announce(&self, topic: &str) {
        if let Err(e) = self.inner.engine.announce(topic) {
            tracing::warn!(error = %e, topic, "telling the other nodes of a change failed");
        }
    }

    /// Hears the other nodes' announcements. Until the first is heard
    /// (and whenever hearing stops) nothing kept is trusted.
    fn listen(&self) {
        use backend::Heard;
        let (changes, remote) = (self.inner.changes.clone(), self.inner.remote.clone());
        changes.set_deaf(true);
        remote.deaf.store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.engine.listen(Arc::new(move |heard| match heard {
            Heard::Topic("routes") => remote.routes.notify_one(),
            Heard::Topic("pause") => remote.pause.notify_one(),
            Heard::Topic(t) => {
                if let Some(user_key) = t.strip_prefix("mailbox:") {
                    changes.touch(user_key);
                }
            }
            Heard::Deaf | Heard::Hearing => {
                let deaf = heard == Heard::Deaf;
                changes.set_deaf(deaf);
                remote.deaf.store(deaf, std::sync::atomic::Ordering::SeqCst);
                remote.routes.notify_one();
                remote.pause.notify_one();
            }
        }));
    }

    fn get(&self, table: &'static str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.engine.get(table, key.as_ref())?)
    }

    /// Entries of `table` from `from` on, in key order.
    fn scan(
        &self,
        table: &'static str,
        from: impl AsRef<[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner.engine.scan(table, from.as_ref(), None).map(|e| e.map_err(StoreError::from))
    }

    /// [`Store::scan`] of the keys before `below`.
    fn scan_below(
        &self,
        table: &'static str,
        from: impl AsRef<[u8]>,
        below: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner.engine.scan(table, from.as_ref(), Some(below)).map(|e| e.map_err(StoreError::from))
    }

    /// A read-modify-write turn: until the guard is dropped (or the turn's
    /// one commit), no other turn runs, on this node or any other.
    fn lock(&self) -> Result<Exclusive<'_>, StoreError> {
        Ok(self.inner.engine.exclusive()?)
    }

    /// Deletes a job key whether or not it is marked leased.
    fn delete_job(&self, batch: &mut Batch, due: Millis, job: [u8; 8], kind: u8) {
        batch.delete(CF_QUEUE, queue_key(due, job, kind));
        batch.delete(CF_QUEUE, queue_key(due, job, kind | LEASED));
    }

    /// Writes a batch durably: it is on disk when this returns. On an
    /// embedded store it goes through the commit thread, so that it shares
    /// its sync with the submissions (and other writes) waiting there.
    fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        match &self.inner.committer {
            Some(c) => Ok(c.commit_blocking(batch)?),
            None => Ok(self.inner.engine.write(batch, Durability::Durable)?),
        }
    }

    /// Writes a batch without waiting for the disk: what a power failure
    /// may take without breaking a promise (see [`Durability::Lazy`]).
    fn commit_lazy(&self, batch: Batch) -> Result<(), StoreError> {
        Ok(self.inner.engine.write(batch, Durability::Lazy)?)
    }

    fn get_json<T: DeserializeOwned>(&self, cf: &'static str, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.get(cf, key)? {
            Some(v) => from_json(cf, &v).map(Some),
            None => Ok(None),
        }
    }

    fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.get_json(CF_MESSAGES, &id.0)
    }

    /// `n` new recipient identifiers: random, distinct, and with no
    /// selector already in the store (all looked up together).
    fn fresh_ids(&self, n: usize) -> Result<Vec<RecipientId>, StoreError> {
        let mut ids: Vec<RecipientId> = (0..n).map(|_| RecipientId::random()).collect();
        loop {
            let keys: Vec<Vec<u8>> = ids.iter().map(|id| id.selector().to_vec()).collect();
            let taken = self.inner.engine.get_many(CF_RECIPIENTS, &keys)?;
            let mut seen = std::collections::HashSet::with_capacity(n);
            let mut clash = false;
            for (id, taken) in ids.iter_mut().zip(taken) {
                if taken.is_some() || !seen.insert(id.selector()) {
                    *id = RecipientId::random();
                    clash = true;
                }
            }
            if !clash {
                return Ok(ids);
            }
        }
    }

    fn recipient_by_selector(&self, sel: &[u8; 8]) -> Result<Option<RecipientRecord>, StoreError> {
        self.get_json(CF_RECIPIENTS, sel)
    }

    /// The records of `sels`, in order, read together (one round trip on
    /// a shared engine, where reading a list's recipients one by one is
    /// what makes fan-out slow).
    fn recipients_by_selector(&self, sels: &[[u8; 8]]) -> Result<Vec<Option<RecipientRecord>>, StoreError> {
        let keys: Vec<Vec<u8>> = sels.iter().map(|s| s.to_vec()).collect();
        self.inner
            .engine
            .get_many(CF_RECIPIENTS, &keys)?
            .into_iter()
            .map(|v| v.map(|v| from_json(CF_RECIPIENTS, &v)).transpose())
            .collect()
    }

    fn account(&self, account: &str) -> Result<AccountRecord, StoreError> {
        let (bytes, messages) = match self.get(CF_ACCOUNTS, account.as_bytes())? {
            Some(v) => parse_account_value(&v),
            None => (0, 0),
        };
        Ok(AccountRecord { bytes: bytes.max(0) as u64, messages: messages.max(0) as u64 })
    }

    /// `account`'s total as of at most [`RECENT_TOTAL`] ago.
    fn recent_account(&self, account: &str) -> Result<AccountRecord, StoreError> {
        let now = std::time::Instant::now();
        if let Some((at, a)) = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner()).get(account)
            && now.duration_since(*at) < RECENT_TOTAL
        {
            return Ok(a.clone());
        }
        let a = self.account(account)?;
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= 100_000 {
            recent.clear();
        }
        recent.insert(account.to_string(), (now, a.clone()));
        Ok(a)
    }

    /// Adds a committed charge to the totals read a moment ago.
    fn recent_charged<'a>(&self, accounts: impl Iterator<Item = &'a String>, size: u64) {
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        for account in accounts {
            if let Some((_, a)) = recent.get_mut(account) {
                a.bytes += size;
                a.messages += 1;
            }
        }
    }

    /// Bytes currently charged to `account`.
    pub fn account_usage(&self, account: &str) -> Result<AccountRecord, StoreError> {
        self.account(account)
    }

    /// Stores a message once, with a capability record and a queued
    /// notification for each recipient and an identifier for each list.
    pub fn submit(&self, m: NewMessage, now: Millis, quota: u64) -> Result<Submitted, StoreError> {
        self.submit_with_id(MessageId::random(), m, now, quota)
    }

    /// As [`Store::submit`], under an identifier chosen by the caller (the
    /// SMTP listener names it in the Received header before storing).
    pub fn submit_with_id(
        &self,
        message: MessageId,
        m: NewMessage,
        now: Millis,
        quota: u64,
    ) -> Result<Submitted, StoreError> {
        // Filing in Sent gives out a UID: that takes the write lock.
        let _sent = if m.file_in_sent { Some(self.lock()?) } else { None };
        let (batch, prepared) = self.prepare_submit(message, m, now, quota)?;
        self.commit(batch)?;
        Ok(self.submitted(prepared))
    }

    /// As [`Store::submit_with_id`], from async code: on an embedded store
    /// the reads run here (microseconds) and the synced write is shared
    /// with other submissions waiting (the store's commit thread). Where
    /// that does not apply (a shared store, or a message filed in Sent,
    /// which takes a turn) the message is handed back, for the blocking
    /// form.
    pub async fn submit_here(
        &self,
        message: MessageId,
        m: NewMessage,
        now: Millis,
        quota: u64,
    ) -> Result<Result<Submitted, StoreError>, NewMessage> {
        let Some(committer) = self.inner.committer.as_ref().filter(|_| !m.file_in_sent) else { return Err(m) };
        let (batch, prepared) = match self.prepare_submit(message, m, now, quota) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        Ok(match committer.commit(batch).await {
            Ok(()) => Ok(self.submitted(prepared)),
            Err(e) => Err(e.into()),
        })
    }

    /// What a submission writes, and what to do once it is written.
    fn prepare_submit(
        &self,
        message: MessageId,
        m: NewMessage,
        now: Millis,
        quota: u64,
    ) -> Result<(Batch, Prepared), StoreError> {
        let size = m.content.len() as u64;
        // No lock: nothing here reads what another writer may be changing,
        // but the quota, which is checked against a moment-old total (a few
        // concurrent submissions may pass it together; none is lost).
        let charges = std::iter::once((&m.account, quota)).chain(m.also_charge.iter().map(|(a, q)| (a, *q)));
        for (name, quota) in charges {
            let account = self.recent_account(name)?;
            if account.bytes.saturating_add(size) > quota {
                return Err(StoreError::OverQuota { used: account.bytes, quota, size });
            }
        }
        let expires_at = now.saturating_add(m.lifetime_ms);
        let digest = sha256_field(&m.content);
        let mut batch = Batch::default();

        let mut fresh = self.fresh_ids(m.recipients.len() + m.relay.len() + m.lists.len())?.into_iter();
        let mut fresh = move || fresh.next().expect("one identifier for each recipient, relay and list");
        let new_record = |id: &RecipientId, kind, recipient: String, queued: bool| RecipientRecord {
            message: message.to_string(),
            verifier: id.verifier(),
            kind,
            recipient,
            notification: if kind == RecipientKind::List {
                NotificationStatus::Silenced
            } else {
                NotificationStatus::Unprocessed
            },
            read: ReadStatus::Unread,
            pinned: kind == RecipientKind::Mailbox,
            attempts: 0,
            first_attempt_at: None,
            last_attempt_at: None,
            next_attempt_at: queued.then_some(now),
            accepted_at: None,
            read_at: None,
            silenced_at: None,
            history: Vec::new(),
            reason: None,
        };

        let mut recipients = Vec::new();
        for r in &m.recipients {
            let id = fresh();
            let rec = new_record(&id, RecipientKind::Mailbox, r.to_string(), true);
            batch.put(CF_RECIPIENTS, id.selector(), to_json(&rec));
            let job = Job::Notify { recipient: hex(&id.selector()), by: None };
            batch.put(CF_QUEUE, queue_key(now, id.selector(), JOB_NOTIFY), to_json(&job));
            recipients.push((r.clone(), id));
        }
        for r in &m.relay {
            let id = fresh();
            let rec = new_record(&id, RecipientKind::Mailbox, r.to_string(), false);
            batch.put(CF_RECIPIENTS, id.selector(), to_json(&rec));
            let job = Job::Deliver(Box::new(Delivery {
                notification: Notification {
                    store: m.store.clone(),
                    id: id.to_string(),
                    sender: m.sender.to_string(),
                    recipient: r.to_string(),
                    size,
                    digest: digest.clone(),
                    origin: m.origin.clone(),
                },
                attempts: 0,
                first_attempt_at: None,
                last_error: None,
                report: None,
                dsn_to: Some(m.sender.to_string()),
                history: Vec::new(),
                leased_by: None,
            }));
            let mut job_id = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut job_id);
            batch.put(CF_QUEUE, queue_key(now, job_id, JOB_DELIVER), to_json(&job));
            recipients.push((r.clone(), id));
        }
        let mut lists = Vec::new();
        for l in &m.lists {
            let id = fresh();
            let rec = new_record(&id, RecipientKind::List, l.clone(), false);
            batch.put(CF_RECIPIENTS, id.selector(), to_json(&rec));
            let entry = ListRecord { id: id.to_string(), sender: m.sender.to_string(), size, submitted_at: now };
            batch.put(CF_LISTS, list_key(l, now, &message), to_json(&entry));
            lists.push((l.clone(), id));
        }
        let record = MessageRecord {
            store: m.store.clone(),
            sender: m.sender.to_string(),
            account: m.account.clone(),
            also_charged: m.also_charge.iter().map(|(a, _)| a.clone()).collect(),
            submitted_at: now,
            expires_at,
            size,
            header_len: header_section_len(&m.content) as u64,
            digest: digest.clone(),
            state: MessageState::Stored,
            recipients: recipients.iter().map(|(_, id)| hex(&id.selector())).collect(),
            lists: lists.iter().map(|(l, id)| (l.clone(), hex(&id.selector()))).collect(),
            origin: m.origin,
        };
        batch.put(CF_MESSAGES, message.0, to_json(&record));
        batch.put(CF_BODIES, message.0, &m.content);
        batch.put(CF_EXPIRY, expiry_key(expires_at, &message), []);
        for account in std::iter::once(&m.account).chain(m.also_charge.iter().map(|(a, _)| a)) {
            batch.add(CF_ACCOUNTS, account.as_bytes(), size as i64, 1);
        }
        let first = recipients.first().map(|(a, _)| a.to_string()).or_else(|| m.lists.first().cloned());
        if m.file_in_sent {
            let filed = Notification {
                store: m.store.clone(),
                id: message.to_string(),
                sender: m.sender.to_string(),
                recipient: first.unwrap_or_default(),
                size,
                digest: digest.clone(),
                origin: None,
            };
            let message_id = crate::proto::header::message_id(&m.content);
            self.file_sent(&mut batch, &m.sender.key(), filed, message_id, now)?;
        }
        let charged = std::iter::once(m.account).chain(m.also_charge.into_iter().map(|(a, _)| a)).collect();
        let prepared = Prepared {
            submitted: Submitted { message, expires_at, size, digest, recipients, lists },
            charged,
            sent_of: m.file_in_sent.then(|| m.sender.key()),
        };
        Ok((batch, prepared))
    }

    /// After a submission's batch is committed.
    fn submitted(&self, p: Prepared) -> Submitted {
        if let Some(sender) = &p.sent_of {
            self.touched(sender);
        }
        self.recent_charged(p.charged.iter(), p.submitted.size);
        p.submitted
    }

    /// A message and its recipient records, for tracking.
    pub fn track(&self, id: &MessageId) -> Result<Option<(MessageRecord, Vec<RecipientRecord>)>, StoreError> {
        let Some(m) = self.message(id)? else { return Ok(None) };
        let mut rs = Vec::with_capacity(m.recipients.len());
        for sel in &m.recipients {
            let rec = self
                .recipient_by_selector(&unhex8(sel)?)?
                .ok_or_else(|| StoreError::Corrupt(format!("message {} lacks recipient {sel}", id.short())))?;
            rs.push(rec);
        }
        Ok(Some((m, rs)))
    }

    /// Recalls a message: its body is freed, later retrievals are told it is
    /// gone and no more notifications are sent. Returns the record, or `None`
    /// for an unknown id.
    pub fn cancel(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        let _g = self.lock()?;
        let Some(mut m) = self.message(id)? else { return Ok(None) };
        if m.state == MessageState::Stored {
            let mut batch = Batch::default();
            self.free_body(&mut batch, id, &mut m, MessageState::Cancelled, None)?;
            self.commit(batch)?;
        }
        Ok(Some(m))
    }

    /// Frees a message's body, ends its queued jobs and releases its quota.
    /// `changed` is a recipient record already updated in `batch`, which
    /// stands in for its stored (older) version.
    fn free_body(
        &self,
        batch: &mut Batch,
        id: &MessageId,
        m: &mut MessageRecord,
        state: MessageState,
        changed: Option<(&[u8; 8], &RecipientRecord)>,
    ) -> Result<(), StoreError> {
        batch.delete(CF_BODIES, id.0);
        batch.delete(CF_EXPIRY, expiry_key(m.expires_at, id));
        for sel in &m.recipients {
            let sel = unhex8(sel)?;
            let record = match changed {
                Some((s, r)) if *s == sel => Some(r.clone()),
                _ => self.recipient_by_selector(&sel)?,
            };
            if let Some(mut r) = record
                && let Some(due) = r.next_attempt_at.take()
            {
                self.delete_job(batch, due, sel, JOB_NOTIFY);
                batch.put(CF_RECIPIENTS, sel, to_json(&r));
            }
        }
        for account in std::iter::once(&m.account).chain(&m.also_charged) {
            batch.add(CF_ACCOUNTS, account.as_bytes(), -(m.size as i64), -1);
        }
        // Forget the totals read before: the next check reads the store.
        let mut recent = self.inner.recent.lock().unwrap_or_else(|p| p.into_inner());
        for account in std::iter::once(&m.account).chain(&m.also_charged) {
            recent.remove(account);
        }
        drop(recent);
        m.state = state;
        batch.put(CF_MESSAGES, id.0, to_json(m));
        Ok(())
    }

    /// Finds a capability's record; the verifier is checked in constant time.
    pub fn find(&self, id: &RecipientId) -> Result<Result<Found, Unavailable>, StoreError> {
        let Some(rec) = self.recipient_by_selector(&id.selector())? else {
            return Ok(Err(Unavailable::Unknown));
        };
        if !id.verifies(&rec.verifier) {
            return Ok(Err(Unavailable::Unknown));
        }
        let message_id: MessageId =
            rec.message.parse().map_err(|_| StoreError::Corrupt("recipient's message id".into()))?;
        let message = self
            .message(&message_id)?
            .ok_or_else(|| StoreError::Corrupt(format!("recipient {} lacks its message", id.short())))?;
        if message.state != MessageState::Stored || (rec.kind == RecipientKind::Mailbox && !rec.pinned) {
            return Ok(Err(Unavailable::Gone));
        }
        Ok(Ok(Found { message_id, message, recipient: rec }))
    }

    /// What a probe tells of each capability — the message's sender, size
    /// and digest — reading each message record once however many of its
    /// recipients are asked about (a list's record names them all).
    /// Identifiers as they arrived: one that does not parse is unknown.
    pub fn probe(&self, ids: &[String]) -> Result<Vec<Result<Probed, Unavailable>>, StoreError> {
        let mut messages: std::collections::HashMap<String, Option<Probed>> = std::collections::HashMap::new();
        let mut out = Vec::with_capacity(ids.len());
        let parsed: Vec<Option<RecipientId>> = ids.iter().map(|id| id.parse().ok()).collect();
        let sels: Vec<[u8; 8]> = parsed.iter().flatten().map(|id| id.selector()).collect();
        let mut records = self.recipients_by_selector(&sels)?.into_iter();
        for id in parsed {
            let Some(id) = id else {
                out.push(Err(Unavailable::Unknown));
                continue;
            };
            let rec = match records.next().flatten() {
                Some(rec) if id.verifies(&rec.verifier) => rec,
                _ => {
                    out.push(Err(Unavailable::Unknown));
                    continue;
                }
            };
            if !messages.contains_key(&rec.message) {
                let message_id: MessageId =
                    rec.message.parse().map_err(|_| StoreError::Corrupt("recipient's message id".into()))?;
                let m = self
                    .message(&message_id)?
                    .ok_or_else(|| StoreError::Corrupt(format!("recipient {} lacks its message", id.short())))?;
                let probed = (m.state == MessageState::Stored).then_some(Probed {
                    sender: m.sender,
                    size: m.size,
                    digest: m.digest,
                });
                messages.insert(rec.message.clone(), probed);
            }
            let unpinned = rec.kind == RecipientKind::Mailbox && !rec.pinned;
            out.push(match &messages[&rec.message] {
                Some(p) if !unpinned => Ok(p.clone()),
                _ => Err(Unavailable::Gone),
            });
        }
        Ok(out)
    }

    /// The stored octets of a message, if still stored.
    pub fn body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_BODIES, id.0)
    }

    /// Records that a recipient read `level` of the message (never lowers it).
    pub fn mark_read(&self, id: &RecipientId, level: ReadStatus, now: Millis) -> Result<(), StoreError> {
        let _g = self.lock()?;
        let Some(mut r) = self.recipient_by_selector(&id.selector())? else { return Ok(()) };
        if r.read >= level {
            return Ok(());
        }
        r.read = level;
        r.read_at = Some(now);
        let mut batch = Batch::default();
        batch.put(CF_RECIPIENTS, id.selector(), to_json(&r));
        self.commit_lazy(batch)
    }

    /// Applies a recipient's silence, un-pin or refuse. `None`: unknown id.
    pub fn recipient_action(
        &self,
        id: &RecipientId,
        action: RecipientAction,
        now: Millis,
    ) -> Result<Option<RecipientRecord>, StoreError> {
        let _g = self.lock()?;
        let Some(mut r) = self.recipient_by_selector(&id.selector())? else { return Ok(None) };
        if !id.verifies(&r.verifier) {
            return Ok(None);
        }
        let sel = id.selector();
        let mut batch = Batch::default();
        let stop_notifying = |r: &mut RecipientRecord, batch: &mut Batch| {
            if let Some(due) = r.next_attempt_at.take() {
                self.delete_job(batch, due, sel, JOB_NOTIFY);
            }
        };
        match action {
            RecipientAction::Silence => {
                stop_notifying(&mut r, &mut batch);
                if !r.notification.is_final() {
                    r.notification = NotificationStatus::Silenced;
                    r.silenced_at = Some(now);
                }
            }
            RecipientAction::Unpin => {
                // Needing no more copies implies needing no more notifications.
                stop_notifying(&mut r, &mut batch);
                if !r.notification.is_final() {
                    r.notification = NotificationStatus::Silenced;
                    r.silenced_at = Some(now);
                }
                r.pinned = false;
            }
            RecipientAction::Refuse(reason) => {
                stop_notifying(&mut r, &mut batch);
                r.notification = NotificationStatus::Refused;
                r.reason = Some(reason);
                r.pinned = false;
            }
        }
        batch.put(CF_RECIPIENTS, sel, to_json(&r));
        self.release_if_done(&mut batch, &r, &sel, now)?;
        self.commit(batch)?;
        Ok(Some(r))
    }

    /// Frees the body once no mailbox recipient holds a pin and the message
    /// has no list to serve. `changed` is the record just updated in `batch`.
    /// A body freed at or after its lifetime's end is recorded as expired,
    /// whichever of the expiry sweep and the last recipient came first.
    fn release_if_done(
        &self,
        batch: &mut Batch,
        changed: &RecipientRecord,
        changed_sel: &[u8; 8],
        now: Millis,
    ) -> Result<(), StoreError> {
        if changed.pinned {
            // Still held by this recipient: nothing to look up (a list's
            // message record names all its recipients; reading it for
            // every accepted notification is what made fan-out slow).
            return Ok(());
        }
        let id: MessageId =
            changed.message.parse().map_err(|_| StoreError::Corrupt("recipient's message id".into()))?;
        let Some(mut m) = self.message(&id)? else { return Ok(()) };
        if m.state != MessageState::Stored || !m.lists.is_empty() {
            return Ok(());
        }
        for sel in &m.recipients {
            let sel = unhex8(sel)?;
            let pinned = if &sel == changed_sel {
                changed.pinned
            } else {
                self.recipient_by_selector(&sel)?.is_some_and(|r| r.pinned)
            };
            if pinned {
                return Ok(());
            }
        }
        let state = if now >= m.expires_at { MessageState::Expired } else { MessageState::Released };
        self.free_body(batch, &id, &mut m, state, Some((changed_sel, changed)))
    }

    /// Identifiers published to a list after the cursor `after` (a list key
    /// suffix, hex), oldest first, at most `limit`; and the next cursor.
    pub fn scan_list(
        &self,
        list: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<ListRecord>, Vec<u8>), StoreError> {
        let prefix = list_prefix(list);
        let mut start = prefix.clone();
        if let Some(a) = after {
            start.extend_from_slice(a);
            start.push(0); // strictly after
        }
        let mut out = Vec::new();
        let mut last = after.map(<[u8]>::to_vec).unwrap_or_default();
        let it = self.scan(CF_LISTS, &start);
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(from_json::<ListRecord>(CF_LISTS, &v)?);
            last = k[prefix.len()..].to_vec();
        }
        Ok((out, last))
    }

    /// What the store holds, counted record by record: message bodies and
    /// inbox notifications (the lab's measure of a party's storage).
    pub fn footprint(&self) -> Result<Footprint, StoreError> {
        let count = |cf: &'static str| -> Result<(u64, u64), StoreError> {
            let mut n = (0, 0);
            for item in self.scan(cf, &[]) {
                let (k, v) = item?;
                n = (n.0 + 1, n.1 + (k.len() + v.len()) as u64);
            }
            Ok(n)
        };
        let (bodies, body_bytes) = count(CF_BODIES)?;
        let (notifications, notification_bytes) = count(CF_INBOX)?;
        Ok(Footprint { bodies, body_bytes, notifications, notification_bytes })
    }

    /// Stored bytes and messages of every sender's quota account (group
    /// accounts, which count the same bytes again, and inbox tallies left out).
    pub fn accounts(&self) -> Result<Vec<(String, AccountRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan(CF_ACCOUNTS, &[]) {
            let (k, v) = item?;
            if k.starts_with(GROUP_ACCOUNT.as_bytes()) || k.starts_with(INBOX_TALLY.as_bytes()) {
                continue;
            }
            let (bytes, messages) = parse_account_value(&v);
            let rec = AccountRecord { bytes: bytes.max(0) as u64, messages: messages.max(0) as u64 };
            out.push((String::from_utf8_lossy(&k).into_owned(), rec));
        }
        Ok(out)
    }
}

/// Records a store holds, with their bytes (keys and values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    pub bodies: u64,
    pub body_bytes: u64,
    pub notifications: u64,
    pub notification_bytes: u64,
}

/// What a recipient can ask of the store about its copy.
#[derive(Debug, Clone)]
pub enum RecipientAction {
    Silence,
    Unpin,
    Refuse(String),
}

#[cfg(test)]
mod tests;
