//! The durable state of a node, in RocksDB: the message store (bodies once,
//! per-recipient capability records), the job queue, list indexes, quota
//! accounts and the notification agent's inboxes. Layout lives in
//! [`schema`]; this module is the only code that touches RocksDB.
//!
//! Every operation that acknowledges something to a peer or a user writes one
//! atomic batch with `sync = true` before returning. Read-modify-write
//! operations on records are serialised by one mutex: they are short, and it
//! keeps each record's transitions simple to reason about. Submission, the
//! hot path, takes no lock: it only creates records, and quota accounts are
//! summed by a merge operator, so concurrent submissions share fsyncs.

pub mod records;
pub mod schema;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::Millis;
use crate::proto::api::{Notification, Origin};
use crate::proto::digest::{header_section_len, sha256_field};
use crate::proto::{Address, MessageId, NotificationStatus, ReadStatus, RecipientId};
use records::*;
use schema::*;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("over quota: {used} of {quota} bytes in use, this message needs {size}")]
    OverQuota { used: u64, quota: u64, size: u64 },
    #[error("the store was created by a newer imgate (schema {0})")]
    NewerSchema(u32),
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
    pub recipients: Vec<Address>,
    /// Recipients to deliver by SMTP from this store (smarthost relay)
    /// rather than notify; they get capabilities like the others.
    pub relay: Vec<Address>,
    pub lists: Vec<String>,
    pub lifetime_ms: u64,
    pub content: Vec<u8>,
    pub origin: Option<Origin>,
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
    pub record: RecipientRecord,
    pub message: MessageRecord,
}

/// A delivery job taken from the queue, leased until `due`.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub id: [u8; 8],
    pub due: Millis,
    pub delivery: Delivery,
}

/// What [`Store::lease_due`] took.
#[derive(Debug, Default)]
pub struct LeasedJobs {
    pub notify: Vec<Leased>,
    pub deliver: Vec<LeasedDelivery>,
}

impl LeasedJobs {
    pub fn len(&self) -> usize {
        self.notify.len() + self.deliver.len()
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
}

/// Result of accepting a notification into an inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxAccept {
    Accepted(u64),
    Duplicate(u64),
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    /// Serialises read-modify-write operations.
    write: Mutex<()>,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

fn from_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex8(s: &str) -> Result<[u8; 8], StoreError> {
    let bad = || StoreError::Corrupt(format!("bad selector {s:?}"));
    if s.len() != 16 {
        return Err(bad());
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

impl Store {
    /// Opens (creating if needed) the store under `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            if *name == CF_ACCOUNTS {
                o.set_merge_operator_associative("imgate_account_sum", merge_accounts);
            }
            if *name == CF_BODIES {
                // Large values go to blob files, out of the compaction path.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(4096);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        let store = Store { inner: Arc::new(Inner { db, write: Mutex::new(()) }) };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.db().get_cf(self.cf(CF_META), META_SCHEMA)? {
            Some(v) => {
                let v = u32::from_be_bytes(
                    v.as_slice().try_into().map_err(|_| StoreError::Corrupt("schema version".into()))?,
                );
                if v > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema(v));
                }
            }
            None => {
                let mut b = WriteBatch::default();
                b.put_cf(self.cf(CF_META), META_SCHEMA, SCHEMA_VERSION.to_be_bytes());
                self.commit(b)?;
            }
        }
        Ok(())
    }

    fn db(&self) -> &DB {
        &self.inner.db
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db().cf_handle(name).expect("every column family is opened")
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes a job key whether or not it is marked leased.
    fn delete_job(&self, batch: &mut WriteBatch, due: Millis, job: [u8; 8], kind: u8) {
        batch.delete_cf(self.cf(CF_QUEUE), queue_key(due, job, kind));
        batch.delete_cf(self.cf(CF_QUEUE), queue_key(due, job, kind | LEASED));
    }

    /// Makes every job leased by an earlier process due now: no attempt of
    /// theirs can still be running. Returns how many were released.
    pub fn release_leases(&self, now: Millis) -> Result<usize, StoreError> {
        let _g = self.lock();
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for item in self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, v) = item?;
            let Some((_, job, kind)) = parse_queue_key(&k) else { continue };
            if kind & LEASED == 0 {
                continue;
            }
            batch.delete_cf(self.cf(CF_QUEUE), &k);
            batch.put_cf(self.cf(CF_QUEUE), queue_key(now, job, kind & !LEASED), &v);
            if kind & !LEASED == JOB_NOTIFY
                && let Some(mut r) = self.recipient_by_selector(&job)?
            {
                r.next_attempt_at = Some(now);
                batch.put_cf(self.cf(CF_RECIPIENTS), job, to_json(&r));
            }
            n += 1;
        }
        if n > 0 {
            self.commit(batch)?;
        }
        Ok(n)
    }

    /// Writes a batch durably: it is on disk when this returns.
    fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db().write_opt(batch, &wo)?;
        Ok(())
    }

    /// Writes a batch without waiting for the disk (status that may be lost
    /// in a crash without breaking a promise, such as read status).
    fn commit_lazy(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db().write(batch)?;
        Ok(())
    }

    fn get_json<T: DeserializeOwned>(&self, cf: &str, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db().get_pinned_cf(self.cf(cf), key)? {
            Some(v) => from_json(cf, &v).map(Some),
            None => Ok(None),
        }
    }

    fn message(&self, id: &MessageId) -> Result<Option<MessageRecord>, StoreError> {
        self.get_json(CF_MESSAGES, &id.0)
    }

    fn recipient_by_selector(&self, sel: &[u8; 8]) -> Result<Option<RecipientRecord>, StoreError> {
        self.get_json(CF_RECIPIENTS, sel)
    }

    fn account(&self, account: &str) -> Result<AccountRecord, StoreError> {
        let (bytes, messages) = match self.db().get_pinned_cf(self.cf(CF_ACCOUNTS), account.as_bytes())? {
            Some(v) => parse_account_value(&v),
            None => (0, 0),
        };
        Ok(AccountRecord { bytes: bytes.max(0) as u64, messages: messages.max(0) as u64 })
    }

    /// Bytes currently charged to `account`.
    pub fn account_usage(&self, account: &str) -> Result<AccountRecord, StoreError> {
        self.account(account)
    }

    // ---- originator access -------------------------------------------------

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
        let size = m.content.len() as u64;
        // No lock: nothing here reads what another writer may be changing,
        // but the quota, which is checked against a moment-old total (a few
        // concurrent submissions may pass it together; none is lost).
        let account = self.account(&m.account)?;
        if account.bytes.saturating_add(size) > quota {
            return Err(StoreError::OverQuota { used: account.bytes, quota, size });
        }
        let expires_at = now.saturating_add(m.lifetime_ms);
        let digest = sha256_field(&m.content);
        let mut batch = WriteBatch::default();

        let fresh = |this: &Self| -> Result<RecipientId, StoreError> {
            loop {
                let id = RecipientId::random();
                if this.db().get_pinned_cf(this.cf(CF_RECIPIENTS), id.selector())?.is_none() {
                    return Ok(id);
                }
            }
        };
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
            reason: None,
        };

        let mut recipients = Vec::new();
        for r in &m.recipients {
            let id = fresh(self)?;
            let rec = new_record(&id, RecipientKind::Mailbox, r.to_string(), true);
            batch.put_cf(self.cf(CF_RECIPIENTS), id.selector(), to_json(&rec));
            let job = Job::Notify { recipient: hex(&id.selector()) };
            batch.put_cf(self.cf(CF_QUEUE), queue_key(now, id.selector(), JOB_NOTIFY), to_json(&job));
            recipients.push((r.clone(), id));
        }
        for r in &m.relay {
            let id = fresh(self)?;
            let rec = new_record(&id, RecipientKind::Mailbox, r.to_string(), false);
            batch.put_cf(self.cf(CF_RECIPIENTS), id.selector(), to_json(&rec));
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
            }));
            let mut job_id = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut job_id);
            batch.put_cf(self.cf(CF_QUEUE), queue_key(now, job_id, JOB_DELIVER), to_json(&job));
            recipients.push((r.clone(), id));
        }
        let mut lists = Vec::new();
        for l in &m.lists {
            let id = fresh(self)?;
            let rec = new_record(&id, RecipientKind::List, l.clone(), false);
            batch.put_cf(self.cf(CF_RECIPIENTS), id.selector(), to_json(&rec));
            let entry = ListRecord { id: id.to_string(), sender: m.sender.to_string(), size, submitted_at: now };
            batch.put_cf(self.cf(CF_LISTS), list_key(l, now, &message), to_json(&entry));
            lists.push((l.clone(), id));
        }
        let record = MessageRecord {
            store: m.store.clone(),
            sender: m.sender.to_string(),
            account: m.account.clone(),
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
        batch.put_cf(self.cf(CF_MESSAGES), message.0, to_json(&record));
        batch.put_cf(self.cf(CF_BODIES), message.0, &m.content);
        batch.put_cf(self.cf(CF_EXPIRY), expiry_key(expires_at, &message), []);
        batch.merge_cf(self.cf(CF_ACCOUNTS), m.account.as_bytes(), account_value(size as i64, 1));
        self.commit(batch)?;
        Ok(Submitted { message, expires_at, size, digest, recipients, lists })
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
        let _g = self.lock();
        let Some(mut m) = self.message(id)? else { return Ok(None) };
        if m.state == MessageState::Stored {
            let mut batch = WriteBatch::default();
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
        batch: &mut WriteBatch,
        id: &MessageId,
        m: &mut MessageRecord,
        state: MessageState,
        changed: Option<(&[u8; 8], &RecipientRecord)>,
    ) -> Result<(), StoreError> {
        batch.delete_cf(self.cf(CF_BODIES), id.0);
        batch.delete_cf(self.cf(CF_EXPIRY), expiry_key(m.expires_at, id));
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
                batch.put_cf(self.cf(CF_RECIPIENTS), sel, to_json(&r));
            }
        }
        batch.merge_cf(self.cf(CF_ACCOUNTS), m.account.as_bytes(), account_value(-(m.size as i64), -1));
        m.state = state;
        batch.put_cf(self.cf(CF_MESSAGES), id.0, to_json(m));
        Ok(())
    }

    // ---- recipient access --------------------------------------------------

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

    /// The stored octets of a message, if still stored.
    pub fn body(&self, id: &MessageId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db().get_cf(self.cf(CF_BODIES), id.0)?)
    }

    /// Records that a recipient read `level` of the message (never lowers it).
    pub fn mark_read(&self, id: &RecipientId, level: ReadStatus, now: Millis) -> Result<(), StoreError> {
        let _g = self.lock();
        let Some(mut r) = self.recipient_by_selector(&id.selector())? else { return Ok(()) };
        if r.read >= level {
            return Ok(());
        }
        r.read = level;
        r.read_at = Some(now);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_RECIPIENTS), id.selector(), to_json(&r));
        self.commit_lazy(batch)
    }

    /// Applies a recipient's silence, un-pin or refuse. `None`: unknown id.
    pub fn recipient_action(
        &self,
        id: &RecipientId,
        action: RecipientAction,
        now: Millis,
    ) -> Result<Option<RecipientRecord>, StoreError> {
        let _g = self.lock();
        let Some(mut r) = self.recipient_by_selector(&id.selector())? else { return Ok(None) };
        if !id.verifies(&r.verifier) {
            return Ok(None);
        }
        let sel = id.selector();
        let mut batch = WriteBatch::default();
        let stop_notifying = |r: &mut RecipientRecord, batch: &mut WriteBatch| {
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
        batch.put_cf(self.cf(CF_RECIPIENTS), sel, to_json(&r));
        self.release_if_done(&mut batch, &r, &sel)?;
        self.commit(batch)?;
        Ok(Some(r))
    }

    /// Frees the body once no mailbox recipient holds a pin and the message
    /// has no list to serve. `changed` is the record just updated in `batch`.
    fn release_if_done(
        &self,
        batch: &mut WriteBatch,
        changed: &RecipientRecord,
        changed_sel: &[u8; 8],
    ) -> Result<(), StoreError> {
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
        self.free_body(batch, &id, &mut m, MessageState::Released, Some((changed_sel, changed)))
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
        let it = self.db().iterator_cf(self.cf(CF_LISTS), IteratorMode::From(&start, Direction::Forward));
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

    // ---- the queue ----------------------------------------------------------

    /// Due time of the earliest queued job.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let mut it = self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start);
        match it.next() {
            Some(item) => Ok(parse_queue_key(&item?.0).map(|(due, _, _)| due)),
            None => Ok(None),
        }
    }

    /// Takes up to `limit` jobs due at `now`, moving each to `lease_until` so
    /// that a crash mid-attempt retries it then rather than losing it.
    pub fn lease_due(&self, now: Millis, lease_until: Millis, limit: usize) -> Result<LeasedJobs, StoreError> {
        let _g = self.lock();
        let mut batch = WriteBatch::default();
        let mut out = Vec::new();
        let mut deliver = Vec::new();
        let it = self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start);
        for item in it {
            let (k, v) = item?;
            let Some((due, sel, kind)) = parse_queue_key(&k) else {
                return Err(StoreError::Corrupt("queue key".into()));
            };
            if due > now || out.len() + deliver.len() >= limit {
                break;
            }
            batch.delete_cf(self.cf(CF_QUEUE), &k);
            let job: Job = from_json(CF_QUEUE, &v)?;
            if let Job::Deliver(mut d) = job {
                if d.report.is_none() {
                    d.attempts += 1;
                    d.first_attempt_at.get_or_insert(now);
                }
                batch.put_cf(
                    self.cf(CF_QUEUE),
                    queue_key(lease_until, sel, JOB_DELIVER | LEASED),
                    to_json(&Job::Deliver(d.clone())),
                );
                deliver.push(LeasedDelivery { id: sel, due: lease_until, delivery: *d });
                continue;
            }
            let Some(mut record) = self.recipient_by_selector(&sel)? else { continue };
            let id: MessageId =
                record.message.parse().map_err(|_| StoreError::Corrupt("recipient's message id".into()))?;
            let Some(message) = self.message(&id)? else { continue };
            if record.notification.is_final() || message.state != MessageState::Stored {
                record.next_attempt_at = None;
                batch.put_cf(self.cf(CF_RECIPIENTS), sel, to_json(&record));
                continue;
            }
            batch.put_cf(self.cf(CF_QUEUE), queue_key(lease_until, sel, (kind & !LEASED) | LEASED), &v);
            record.next_attempt_at = Some(lease_until);
            if record.notification == NotificationStatus::Unprocessed {
                record.notification = NotificationStatus::Notifying;
            }
            record.attempts += 1;
            record.first_attempt_at.get_or_insert(now);
            record.last_attempt_at = Some(now);
            batch.put_cf(self.cf(CF_RECIPIENTS), sel, to_json(&record));
            out.push(Leased { job, selector: sel, record, message });
        }
        if !batch.is_empty() {
            self.commit(batch)?;
        }
        Ok(LeasedJobs { notify: out, deliver })
    }

    /// Files a verified notification for a legacy-routed recipient as a
    /// delivery job, once per (store, id, recipient).
    pub fn queue_delivery(&self, user_key: &str, n: &Notification, now: Millis) -> Result<InboxAccept, StoreError> {
        let seen = inbox_seen_key(&n.store, &n.id, user_key);
        let _g = self.lock();
        if self.db().get_pinned_cf(self.cf(CF_INBOX_SEEN), seen)?.is_some() {
            return Ok(InboxAccept::Duplicate(0));
        }
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
        let job = Job::Deliver(Box::new(Delivery {
            notification: n.clone(),
            attempts: 0,
            first_attempt_at: None,
            last_error: None,
            report: None,
            dsn_to: None,
        }));
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_QUEUE), queue_key(now, id, JOB_DELIVER), to_json(&job));
        batch.put_cf(self.cf(CF_INBOX_SEEN), seen, inbox_key(user_key, 0));
        self.commit(batch)?;
        Ok(InboxAccept::Accepted(0))
    }

    /// Records that the legacy host accepted a leased delivery: the job moves
    /// to its report phase (due `next.0`), and the return path is remembered
    /// for late bounces — in one synced batch.
    pub fn delivered(&self, leased: &LeasedDelivery, next: (Millis, Delivery), now: Millis) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let ret = ReturnRecord { notification: next.1.notification.clone(), delivered_at: now };
        batch.put_cf(self.cf(CF_RETURNS), leased.id, to_json(&ret));
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        batch.put_cf(
            self.cf(CF_QUEUE),
            queue_key(next.0, leased.id, JOB_DELIVER),
            to_json(&Job::Deliver(Box::new(next.1))),
        );
        self.commit(batch)
    }

    /// Whether `token` names a delivery whose bounces are still awaited.
    pub fn has_return(&self, token: [u8; 8]) -> Result<bool, StoreError> {
        Ok(self.db().get_pinned_cf(self.cf(CF_RETURNS), token)?.is_some())
    }

    /// A bounce came back for delivery `token`: queue the refusal report to
    /// the sender's store. `false` when the token is unknown (or used).
    pub fn bounce_received(&self, token: [u8; 8], reason: &str, now: Millis) -> Result<bool, StoreError> {
        let _g = self.lock();
        let Some(ret) = self.get_json::<ReturnRecord>(CF_RETURNS, &token)? else { return Ok(false) };
        let job = Job::Deliver(Box::new(Delivery {
            notification: ret.notification,
            attempts: 0,
            first_attempt_at: Some(now),
            last_error: None,
            report: Some(Report::Refused(reason.to_string())),
            dsn_to: None,
        }));
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_RETURNS), token);
        batch.put_cf(self.cf(CF_QUEUE), queue_key(now, token, JOB_DELIVER), to_json(&job));
        self.commit(batch)?;
        Ok(true)
    }

    /// Queued jobs counted by (kind, state): state is `due`, `scheduled`
    /// (due later) or `leased` (an attempt is running).
    pub fn queue_stats(&self, now: Millis) -> Result<BTreeMap<(&'static str, &'static str), u64>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, _) = item?;
            let Some((due, _, kind)) = parse_queue_key(&k) else { continue };
            let name = if kind & !LEASED == JOB_DELIVER { "deliver" } else { "notify" };
            let state = if kind & LEASED != 0 {
                "leased"
            } else if due <= now {
                "due"
            } else {
                "scheduled"
            };
            *out.entry((name, state)).or_default() += 1;
        }
        Ok(out)
    }

    /// Stored bytes and messages of every quota account.
    pub fn accounts(&self) -> Result<Vec<(String, AccountRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db().iterator_cf(self.cf(CF_ACCOUNTS), IteratorMode::Start) {
            let (k, v) = item?;
            let (bytes, messages) = parse_account_value(&v);
            let rec = AccountRecord { bytes: bytes.max(0) as u64, messages: messages.max(0) as u64 };
            out.push((String::from_utf8_lossy(&k).into_owned(), rec));
        }
        Ok(out)
    }

    /// Every queued job, soonest first, for the admin API.
    pub fn jobs(&self) -> Result<Vec<JobView>, StoreError> {
        let mut out = Vec::new();
        for item in self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, v) = item?;
            let Some((due, job, kind)) = parse_queue_key(&k) else { continue };
            let leased = kind & LEASED != 0;
            let view = match from_json::<Job>(CF_QUEUE, &v)? {
                Job::Notify { .. } => {
                    let r = self.recipient_by_selector(&job)?;
                    JobView {
                        id: hex(&job),
                        kind: "notify",
                        due,
                        leased,
                        recipient: r.as_ref().map(|r| r.recipient.clone()).unwrap_or_default(),
                        attempts: r.as_ref().map_or(0, |r| r.attempts),
                        last_error: r.and_then(|r| r.reason),
                    }
                }
                Job::Deliver(d) => JobView {
                    id: hex(&job),
                    kind: "deliver",
                    due,
                    leased,
                    recipient: d.notification.recipient.clone(),
                    attempts: d.attempts,
                    last_error: d.last_error.clone(),
                },
            };
            out.push(view);
        }
        Ok(out)
    }

    /// The queue entry (key, value) of job `id`.
    fn find_job(&self, id: &[u8; 8]) -> Result<Option<QueueEntry>, StoreError> {
        for item in self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, v) = item?;
            if parse_queue_key(&k).is_some_and(|(_, job, _)| &job == id) {
                return Ok(Some((k.to_vec(), v.to_vec())));
            }
        }
        Ok(None)
    }

    /// Makes a queued job due now. `false`: no such job (or it is running).
    pub fn retry_job(&self, id: [u8; 8], now: Millis) -> Result<bool, StoreError> {
        self.reschedule_job(id, Some(now))
    }

    /// Removes a queued job for good. `false`: no such job (or it is running).
    pub fn drop_job(&self, id: [u8; 8]) -> Result<bool, StoreError> {
        self.reschedule_job(id, None)
    }

    /// Moves a waiting job to `due`, or removes it (`None`), keeping a
    /// notification's recipient record in step.
    fn reschedule_job(&self, id: [u8; 8], due: Option<Millis>) -> Result<bool, StoreError> {
        let _g = self.lock();
        let Some((k, v)) = self.find_job(&id)? else { return Ok(false) };
        let (_, _, kind) = parse_queue_key(&k).expect("found by parsing");
        if kind & LEASED != 0 {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_QUEUE), &k);
        if let Some(due) = due {
            batch.put_cf(self.cf(CF_QUEUE), queue_key(due, id, kind), &v);
        }
        if kind == JOB_NOTIFY
            && let Some(mut r) = self.recipient_by_selector(&id)?
        {
            r.next_attempt_at = due;
            batch.put_cf(self.cf(CF_RECIPIENTS), id, to_json(&r));
        }
        self.commit(batch)?;
        Ok(true)
    }

    /// Every queued delivery with its due time, soonest first.
    pub fn queued_deliveries(&self) -> Result<Vec<(Millis, Delivery)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db().iterator_cf(self.cf(CF_QUEUE), IteratorMode::Start) {
            let (k, v) = item?;
            if let Some((due, _, kind)) = parse_queue_key(&k)
                && kind & !LEASED == JOB_DELIVER
                && let Job::Deliver(d) = from_json(CF_QUEUE, &v)?
            {
                out.push((due, *d));
            }
        }
        Ok(out)
    }

    /// Ends a leased delivery, or puts it back due at `next.0` as `next.1`.
    pub fn finish_delivery(&self, leased: &LeasedDelivery, next: Option<(Millis, Delivery)>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        if let Some((due, d)) = next {
            batch.put_cf(
                self.cf(CF_QUEUE),
                queue_key(due, leased.id, JOB_DELIVER),
                to_json(&Job::Deliver(Box::new(d))),
            );
        }
        self.commit(batch)
    }

    /// Records how a leased notification attempt ended.
    pub fn finish_notify(&self, sel: [u8; 8], attempt: NotifyAttempt, now: Millis) -> Result<(), StoreError> {
        let _g = self.lock();
        let Some(mut r) = self.recipient_by_selector(&sel)? else { return Ok(()) };
        let mut batch = WriteBatch::default();
        if let Some(due) = r.next_attempt_at.take() {
            self.delete_job(&mut batch, due, sel, JOB_NOTIFY);
        }
        // A silence or refusal that arrived while the attempt was in flight wins.
        if !r.notification.is_final() {
            let job = to_json(&Job::Notify { recipient: hex(&sel) });
            match attempt {
                NotifyAttempt::Accepted { resend_at } => {
                    r.accepted_at.get_or_insert(now);
                    r.reason = None;
                    r.next_attempt_at = Some(resend_at);
                    batch.put_cf(self.cf(CF_QUEUE), queue_key(resend_at, sel, JOB_NOTIFY), &job);
                }
                NotifyAttempt::Retry { retry_at, reason } => {
                    r.reason = Some(reason);
                    r.next_attempt_at = Some(retry_at);
                    batch.put_cf(self.cf(CF_QUEUE), queue_key(retry_at, sel, JOB_NOTIFY), &job);
                }
                NotifyAttempt::Final { status, reason } => {
                    r.notification = status;
                    r.reason = Some(reason);
                    r.pinned = false;
                }
            }
        }
        batch.put_cf(self.cf(CF_RECIPIENTS), sel, to_json(&r));
        self.release_if_done(&mut batch, &r, &sel)?;
        self.commit(batch)
    }

    /// Frees every message whose lifetime ended by `now`; returns how many.
    pub fn expire_due(&self, now: Millis) -> Result<usize, StoreError> {
        let _g = self.lock();
        let mut batch = WriteBatch::default();
        let mut n = 0;
        let it = self.db().iterator_cf(self.cf(CF_EXPIRY), IteratorMode::Start);
        for item in it {
            let (k, _) = item?;
            let Some((at, id)) = parse_expiry_key(&k) else {
                return Err(StoreError::Corrupt("expiry key".into()));
            };
            if at > now || n >= 1000 {
                break;
            }
            batch.delete_cf(self.cf(CF_EXPIRY), &k);
            if let Some(mut m) = self.message(&id)?
                && m.state == MessageState::Stored
            {
                self.free_body(&mut batch, &id, &mut m, MessageState::Expired, None)?;
            }
            n += 1;
        }
        if n > 0 {
            self.commit(batch)?;
        }
        Ok(n)
    }

    /// Earliest pending expiry.
    pub fn next_expiry(&self) -> Result<Option<Millis>, StoreError> {
        let mut it = self.db().iterator_cf(self.cf(CF_EXPIRY), IteratorMode::Start);
        match it.next() {
            Some(item) => Ok(parse_expiry_key(&item?.0).map(|(at, _)| at)),
            None => Ok(None),
        }
    }

    // ---- notification agent -------------------------------------------------

    /// Whether a notification was already filed for `user_key`.
    pub fn inbox_seen(&self, user_key: &str, n: &Notification) -> Result<bool, StoreError> {
        let seen = inbox_seen_key(&n.store, &n.id, user_key);
        Ok(self.db().get_pinned_cf(self.cf(CF_INBOX_SEEN), seen)?.is_some())
    }

    /// Files a verified notification in `user`'s inbox, once.
    pub fn inbox_accept(&self, user_key: &str, n: &Notification, now: Millis) -> Result<InboxAccept, StoreError> {
        let seen = inbox_seen_key(&n.store, &n.id, user_key);
        let _g = self.lock();
        if let Some(v) = self.db().get_pinned_cf(self.cf(CF_INBOX_SEEN), seen)? {
            return Ok(InboxAccept::Duplicate(inbox_key_seq(&v).unwrap_or(0)));
        }
        let seq = match self.db().get_pinned_cf(self.cf(CF_META), META_INBOX_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt("inbox_seq".into()))?),
            None => 0,
        } + 1;
        let key = inbox_key(user_key, seq);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_META), META_INBOX_SEQ, seq.to_be_bytes());
        batch.put_cf(self.cf(CF_INBOX), &key, to_json(&InboxRecord { received_at: now, notification: n.clone() }));
        batch.put_cf(self.cf(CF_INBOX_SEEN), seen, &key);
        self.commit(batch)?;
        Ok(InboxAccept::Accepted(seq))
    }

    /// Up to `limit` inbox entries after sequence `after`.
    pub fn inbox_list(&self, user_key: &str, after: u64, limit: usize) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let prefix = inbox_prefix(user_key);
        let start = inbox_key(user_key, after.saturating_add(1));
        let mut out = Vec::new();
        let it = self.db().iterator_cf(self.cf(CF_INBOX), IteratorMode::From(&start, Direction::Forward));
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let seq = inbox_key_seq(&k).ok_or_else(|| StoreError::Corrupt("inbox key".into()))?;
            out.push((seq, from_json(CF_INBOX, &v)?));
        }
        Ok(out)
    }

    /// Removes inbox entries up to and including `through`; returns how many.
    /// The idempotency marks stay, so a re-sent notification is not refiled.
    pub fn inbox_clear(&self, user_key: &str, through: u64) -> Result<u64, StoreError> {
        let _g = self.lock();
        let prefix = inbox_prefix(user_key);
        let mut batch = WriteBatch::default();
        let mut n = 0;
        let it = self.db().iterator_cf(self.cf(CF_INBOX), IteratorMode::From(&prefix, Direction::Forward));
        for item in it {
            let (k, _) = item?;
            if !k.starts_with(&prefix) || inbox_key_seq(&k).is_none_or(|s| s > through) {
                break;
            }
            batch.delete_cf(self.cf(CF_INBOX), &k);
            n += 1;
        }
        if n > 0 {
            self.commit(batch)?;
        }
        Ok(n)
    }
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
