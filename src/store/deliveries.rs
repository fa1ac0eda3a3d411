//! SMTP deliveries for legacy recipients: their jobs, the record of what a
//! legacy host accepted, and the return paths that late bounces come back to.

use super::backend::Batch;

use super::records::*;
use super::schema::*;
use super::*;

impl Store {
    /// Files a verified notification for a legacy-routed recipient as a
    /// delivery job, once per (store, id, recipient).
    pub fn queue_delivery(&self, user_key: &str, n: &Notification, now: Millis) -> Result<InboxAccept, StoreError> {
        let filing = Filing { user_key: user_key.to_string(), notification: n.clone(), legacy: true };
        Ok(self.file_notifications(std::slice::from_ref(&filing), now, u64::MAX)?[0])
    }

    /// Adds a delivery job for a legacy-routed user's notification, its
    /// idempotency mark and its traffic count to `batch`.
    pub(super) fn queue_delivery_in(&self, batch: &mut Batch, user_key: &str, n: &Notification, now: Millis) {
        let seen = inbox_seen_key(&n.store, &n.id, user_key);
        let mut id = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
        let job = Job::Deliver(Box::new(Delivery {
            notification: n.clone(),
            attempts: 0,
            first_attempt_at: None,
            last_error: None,
            report: None,
            dsn_to: None,
            history: Vec::new(),
            leased_by: None,
        }));
        batch.put(CF_QUEUE, queue_key(now, id, JOB_DELIVER), to_json(&job));
        batch.put(CF_INBOX_SEEN, seen, inbox_key(user_key, 0));
        self.count_traffic(batch, domain_of(user_key), SIDE_LEGACY, n.size, now);
    }

    /// Records that the legacy host accepted a leased delivery: the job moves
    /// to its report phase (due `next.0`), and the return path is remembered
    /// for late bounces — in one synced batch.
    pub fn delivered(&self, leased: &LeasedDelivery, next: (Millis, Delivery), now: Millis) -> Result<(), StoreError> {
        let _g = self.lock()?;
        self.check_lease(leased)?;
        let mut batch = Batch::default();
        let ret = ReturnRecord { notification: next.1.notification.clone(), delivered_at: now };
        batch.put(CF_RETURNS, leased.id, to_json(&ret));
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        batch.put(
            CF_QUEUE,
            queue_key(next.0, leased.id, JOB_DELIVER),
            to_json(&Job::Deliver(Box::new(next.1)).released()),
        );
        self.commit(batch)
    }

    /// Whether `token` names a delivery whose bounces are still awaited.
    pub fn has_return(&self, token: [u8; 8]) -> Result<bool, StoreError> {
        Ok(self.get(CF_RETURNS, token)?.is_some())
    }

    /// A bounce came back for delivery `token`: queue the refusal report to
    /// the sender's store. `false` when the token is unknown (or used).
    pub fn bounce_received(&self, token: [u8; 8], reason: &str, now: Millis) -> Result<bool, StoreError> {
        let _g = self.lock()?;
        let Some(ret) = self.get_json::<ReturnRecord>(CF_RETURNS, &token)? else { return Ok(false) };
        let job = Job::Deliver(Box::new(Delivery {
            notification: ret.notification,
            attempts: 0,
            first_attempt_at: Some(now),
            last_error: None,
            report: Some(Report::Refused(reason.to_string())),
            dsn_to: None,
            history: Vec::new(),
            leased_by: None,
        }));
        let mut batch = Batch::default();
        batch.delete(CF_RETURNS, token);
        batch.put(CF_QUEUE, queue_key(now, token, JOB_DELIVER), to_json(&job));
        self.commit(batch)?;
        Ok(true)
    }

    /// Every queued delivery with its due time, soonest first.
    pub fn queued_deliveries(&self) -> Result<Vec<(Millis, Delivery)>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan(CF_QUEUE, &[]) {
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

    /// [`StoreError::LeaseLost`] unless `leased` still holds its job: the
    /// key it was leased under (or, between the host's answer and the
    /// report, the one it put back for itself) is still there. A worker that
    /// took the job over moved it to a lease of its own.
    fn check_lease(&self, leased: &LeasedDelivery) -> Result<(), StoreError> {
        for kind in [JOB_DELIVER | LEASED, JOB_DELIVER] {
            if self.get(CF_QUEUE, queue_key(leased.due, leased.id, kind))?.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::LeaseLost)
    }

    /// Ends a leased delivery, or puts it back due at `next.0` as `next.1`.
    pub fn finish_delivery(&self, leased: &LeasedDelivery, next: Option<(Millis, Delivery)>) -> Result<(), StoreError> {
        let _g = self.lock()?;
        self.check_lease(leased)?;
        let mut batch = Batch::default();
        self.delete_job(&mut batch, leased.due, leased.id, JOB_DELIVER);
        if let Some((due, d)) = next {
            batch.put(CF_QUEUE, queue_key(due, leased.id, JOB_DELIVER), to_json(&Job::Deliver(Box::new(d)).released()));
        }
        self.commit(batch)
    }
}
