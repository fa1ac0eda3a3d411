//! The notification agent's side: inboxes, filed once per notification.

use std::collections::HashMap;

use super::backend::Batch;

use super::records::*;
use super::schema::*;
use super::*;

/// What the filings of one batch have done so far, for those after them.
#[derive(Default)]
pub(super) struct FilingState {
    /// Each user's last sequence number given out.
    last_seq: HashMap<String, u64>,
    /// Idempotency marks written, with their sequence numbers.
    filed: HashMap<[u8; 32], u64>,
    /// Each inbox's count, this batch's filings included.
    held: HashMap<String, u64>,
}

impl Store {
    /// Whether a notification was already filed for `user_key`.
    pub fn inbox_seen(&self, user_key: &str, n: &Notification) -> Result<bool, StoreError> {
        let seen = inbox_seen_key(&n.store, &n.id, user_key);
        Ok(self.get(CF_INBOX_SEEN, seen)?.is_some())
    }

    /// Files a verified notification in `user`'s inbox, once.
    pub fn inbox_accept(&self, user_key: &str, n: &Notification, now: Millis) -> Result<InboxAccept, StoreError> {
        let filing = Filing { user_key: user_key.to_string(), notification: n.clone(), legacy: false };
        Ok(self.file_notifications(std::slice::from_ref(&filing), now, u64::MAX)?[0])
    }

    /// Files verified notifications — each in its user's inbox, or as an
    /// SMTP delivery job for a legacy-routed user — once per (store, id,
    /// recipient), all in one synced batch: a request of many notifications
    /// costs one fsync, not one each. An inbox holds at most `max_inbox`
    /// notifications; those past it are answered [`InboxAccept::Full`].
    pub fn file_notifications(
        &self,
        filings: &[Filing],
        now: Millis,
        max_inbox: u64,
    ) -> Result<Vec<InboxAccept>, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut state = FilingState::default();
        let out = filings
            .iter()
            .map(|f| self.file_one(&mut batch, f, now, max_inbox, &mut state))
            .collect::<Result<Vec<_>, _>>()?;
        if !batch.is_empty() {
            self.commit(batch)?;
            self.touched_inboxes(filings.iter().zip(&out));
        }
        Ok(out)
    }

    /// Adds one filing to `batch` (under the write lock), unless it was
    /// filed before (in the store, or earlier in this batch: `state`) or
    /// its inbox is full. Writes nothing unless it answers `Accepted`.
    pub(super) fn file_one(
        &self,
        batch: &mut Batch,
        f: &Filing,
        now: Millis,
        max_inbox: u64,
        state: &mut FilingState,
    ) -> Result<InboxAccept, StoreError> {
        let seen = inbox_seen_key(&f.notification.store, &f.notification.id, &f.user_key);
        if let Some(earlier) = state.filed.get(&seen) {
            return Ok(InboxAccept::Duplicate(*earlier));
        }
        if let Some(v) = self.get(CF_INBOX_SEEN, seen)? {
            return Ok(InboxAccept::Duplicate(inbox_key_seq(&v).unwrap_or(0)));
        }
        if !f.legacy {
            let count = match state.held.get(&f.user_key) {
                Some(n) => *n,
                None => self.inbox_count(&f.user_key)?,
            };
            if count >= max_inbox {
                return Ok(InboxAccept::Full);
            }
            state.held.insert(f.user_key.clone(), count + 1);
        }
        let s = if f.legacy {
            self.queue_delivery_in(batch, &f.user_key, &f.notification, now);
            0
        } else {
            self.file_in_inbox(batch, &f.user_key, &f.notification, now, &mut state.last_seq)?
        };
        state.filed.insert(seen, s);
        Ok(InboxAccept::Accepted(s))
    }

    /// Tells the watchers of each inbox a committed batch filed in.
    pub(super) fn touched_inboxes<'a>(&self, filed: impl Iterator<Item = (&'a Filing, &'a InboxAccept)>) {
        for (f, a) in filed {
            if !f.legacy && matches!(a, InboxAccept::Accepted(_)) {
                self.touched(&f.user_key);
            }
        }
    }

    /// A queued SMTP delivery for a user who has moved to IM2000: the job
    /// ends and its notification lands in their inbox, in one batch.
    pub fn delivery_to_inbox(&self, leased: &LeasedDelivery, user_key: &str, now: Millis) -> Result<u64, StoreError> {
        let _g = self.lock()?;
        let n = &leased.delivery.notification;
        let mut batch = Batch::default();
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        let seq = self.file_in_inbox(&mut batch, user_key, n, now, &mut HashMap::new())?;
        // It was counted as legacy traffic when it was queued.
        batch.add(CF_TRAFFIC, traffic_key(domain_of(user_key), hour_of(now), SIDE_LEGACY), -(n.size as i64), -1);
        self.commit(batch)?;
        self.touched(user_key);
        Ok(seq)
    }

    /// Adds the inbox entry, its idempotency mark and its traffic count to
    /// `batch` (under the write lock); returns its sequence number, the
    /// entry's IMAP UID. `last` carries each user's sequence between
    /// entries of one batch.
    fn file_in_inbox(
        &self,
        batch: &mut Batch,
        user_key: &str,
        n: &Notification,
        now: Millis,
        last: &mut HashMap<String, u64>,
    ) -> Result<u64, StoreError> {
        let previous = match last.get(user_key) {
            Some(s) => *s,
            None => self.inbox_last_seq(user_key)?,
        };
        let seq = previous + 1;
        if seq > u32::MAX as u64 {
            return Err(StoreError::Corrupt(format!("{user_key}'s inbox has used every sequence number")));
        }
        last.insert(user_key.to_string(), seq);
        let key = inbox_key(user_key, seq);
        batch.put(CF_META, inbox_seq_key(user_key), seq.to_be_bytes());
        let record =
            InboxRecord { received_at: now, notification: n.clone(), flags: Vec::new(), held: false, sent: None };
        batch.put(CF_INBOX, &key, to_json(&record));
        batch.put(CF_INBOX_SEEN, inbox_seen_key(&n.store, &n.id, user_key), &key);
        self.count_traffic(batch, domain_of(user_key), SIDE_IM2000, n.size, now);
        batch.add(CF_ACCOUNTS, inbox_tally_key(user_key), n.size as i64, 1);
        Ok(seq)
    }

    /// The last sequence number given out in `user_key`'s inbox. A user
    /// with no counter of their own yet (stores written before counters
    /// were per user) starts from the old store-wide counter, which is past
    /// every sequence they ever had: a UID is never given out twice.
    pub fn inbox_last_seq(&self, user_key: &str) -> Result<u64, StoreError> {
        let v = match self.get(CF_META, inbox_seq_key(user_key))? {
            Some(v) => Some(v.to_vec()),
            None => self.get(CF_META, META_INBOX_SEQ)?.map(|v| v.to_vec()),
        };
        match v {
            Some(v) => {
                Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(|_| StoreError::Corrupt("inbox_seq".into()))?))
            }
            None => Ok(0),
        }
    }

    /// Notifications `user_key`'s inbox holds now.
    pub fn inbox_count(&self, user_key: &str) -> Result<u64, StoreError> {
        let v = self.get(CF_ACCOUNTS, inbox_tally_key(user_key))?;
        Ok(v.map_or(0, |v| parse_account_value(&v).1.max(0) as u64))
    }

    /// Up to `limit` inbox entries after sequence `after`.
    pub fn inbox_list(&self, user_key: &str, after: u64, limit: usize) -> Result<Vec<(u64, InboxRecord)>, StoreError> {
        let prefix = inbox_prefix(user_key);
        let start = inbox_key(user_key, after.saturating_add(1));
        let mut out = Vec::new();
        let it = self.scan(CF_INBOX, &start);
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
        let _g = self.lock()?;
        let prefix = inbox_prefix(user_key);
        let mut batch = Batch::default();
        let mut n = 0;
        let it = self.scan(CF_INBOX, &prefix);
        let mut bytes = 0i64;
        for item in it {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || inbox_key_seq(&k).is_none_or(|s| s > through) {
                break;
            }
            batch.delete(CF_INBOX, &k);
            bytes += from_json::<InboxRecord>(CF_INBOX, &v).map_or(0, |r| r.notification.size as i64);
            n += 1;
        }
        if n > 0 {
            batch.add(CF_ACCOUNTS, inbox_tally_key(user_key), -bytes, -(n as i64));
            self.commit(batch)?;
            self.touched(user_key);
        }
        Ok(n)
    }
}
