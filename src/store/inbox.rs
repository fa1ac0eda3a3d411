//! The notification agent's side: inboxes, filed once per notification.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::records::*;
use super::schema::*;
use super::*;

impl Store {
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
        let mut batch = WriteBatch::default();
        let seq = self.file_in_inbox(&mut batch, user_key, n, now)?;
        self.commit(batch)?;
        Ok(InboxAccept::Accepted(seq))
    }

    /// A queued SMTP delivery for a user who has moved to IM2000: the job
    /// ends and its notification lands in their inbox, in one batch.
    pub fn delivery_to_inbox(&self, leased: &LeasedDelivery, user_key: &str, now: Millis) -> Result<u64, StoreError> {
        let _g = self.lock();
        let n = &leased.delivery.notification;
        let mut batch = WriteBatch::default();
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        let seq = self.file_in_inbox(&mut batch, user_key, n, now)?;
        // It was counted as legacy traffic when it was queued.
        batch.merge_cf(
            self.cf(CF_TRAFFIC),
            traffic_key(domain_of(user_key), hour_of(now), SIDE_LEGACY),
            account_value(-(n.size as i64), -1),
        );
        self.commit(batch)?;
        Ok(seq)
    }

    /// Adds the inbox entry, its idempotency mark and its traffic count to
    /// `batch` (under the write lock); returns its sequence number.
    fn file_in_inbox(
        &self,
        batch: &mut WriteBatch,
        user_key: &str,
        n: &Notification,
        now: Millis,
    ) -> Result<u64, StoreError> {
        let seq = match self.db().get_pinned_cf(self.cf(CF_META), META_INBOX_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| StoreError::Corrupt("inbox_seq".into()))?),
            None => 0,
        } + 1;
        let key = inbox_key(user_key, seq);
        batch.put_cf(self.cf(CF_META), META_INBOX_SEQ, seq.to_be_bytes());
        batch.put_cf(self.cf(CF_INBOX), &key, to_json(&InboxRecord { received_at: now, notification: n.clone() }));
        batch.put_cf(self.cf(CF_INBOX_SEEN), inbox_seen_key(&n.store, &n.id, user_key), &key);
        self.count_traffic(batch, domain_of(user_key), SIDE_IM2000, n.size, now);
        Ok(seq)
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
