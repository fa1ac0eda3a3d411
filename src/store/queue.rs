//! The durable job queue: leasing due jobs, recording outcomes, lifetime
//! expiry, releasing a dead process's leases, and the admin view.

use std::collections::HashMap;

use super::backend::Batch;
use super::inbox::FilingState;

use super::records::*;
use super::schema::*;
use super::*;

impl Store {
    /// Makes jobs leased by an earlier run due now: no attempt of theirs can
    /// still be running. With `owner`, only the leases that node holds (a
    /// shared store's other leases are other nodes' live attempts); without,
    /// every lease (a store this process alone opens). Returns how many
    /// were released.
    pub fn release_leases(&self, now: Millis, owner: Option<&str>) -> Result<usize, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut n = 0;
        for item in self.scan(CF_QUEUE, &[]) {
            let (k, v) = item?;
            let Some((_, job, kind)) = parse_queue_key(&k) else { continue };
            if kind & LEASED == 0 {
                continue;
            }
            let leased: Job = from_json(CF_QUEUE, &v)?;
            if owner.is_some_and(|o| leased.leased_by() != Some(o)) {
                continue;
            }
            batch.delete(CF_QUEUE, &k);
            batch.put(CF_QUEUE, queue_key(now, job, kind & !LEASED), to_json(&leased.released()));
            if kind & !LEASED == JOB_NOTIFY
                && let Some(mut r) = self.recipient_by_selector(&job)?
            {
                r.next_attempt_at = Some(now);
                batch.put(CF_RECIPIENTS, job, to_json(&r));
            }
            n += 1;
        }
        if n > 0 {
            self.commit(batch)?;
        }
        Ok(n)
    }

    /// Due time of the earliest queued job.
    pub fn next_due(&self) -> Result<Option<Millis>, StoreError> {
        let mut it = self.scan(CF_QUEUE, &[]);
        match it.next() {
            Some(item) => Ok(parse_queue_key(&item?.0).map(|(due, _, _)| due)),
            None => Ok(None),
        }
    }

    /// Due time of the earliest job due before `before`. Cheaper than
    /// [`Store::next_due`] when the queue's near future is full of deleted
    /// leases (the attempts of the last minutes, finished).
    pub fn next_due_before(&self, before: Millis) -> Result<Option<Millis>, StoreError> {
        match self.scan_below(CF_QUEUE, [], &before.to_be_bytes()).next() {
            Some(item) => Ok(parse_queue_key(&item?.0).map(|(due, _, _)| due)),
            None => Ok(None),
        }
    }

    /// When the soonest job not being attempted is due (leased jobs are
    /// keyed by their lease's end, so [`Store::next_due`] counts them).
    pub fn next_unleased_due(&self) -> Result<Option<Millis>, StoreError> {
        for item in self.scan(CF_QUEUE, &[]) {
            match parse_queue_key(&item?.0) {
                Some((due, _, kind)) if kind & LEASED == 0 => return Ok(Some(due)),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Takes the jobs due at `now` (up to `limit` of them are looked at,
    /// the held and the finished included) for node `owner`, moving each to
    /// `lease_until` so that a crash mid-attempt retries it then rather than
    /// losing it. A job `held(recipient, is_delivery)` names (a paused
    /// host's) is put back until `held_until`, no attempt counted.
    pub fn lease_due(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
        held: &dyn Fn(&str, bool) -> bool,
        held_until: Millis,
    ) -> Result<LeasedJobs, StoreError> {
        self.lease_due_filing(owner, now, lease_until, limit, held, held_until, None)
    }

    /// As [`Store::lease_due`], and the notifications `file` picks (this
    /// node's own users', needing nothing asked) are not leased but filed
    /// in their inboxes there and then, their attempts recorded as
    /// accepted: job, filing and outcome in one write, synced if it filed
    /// anything. A crash loses all three or none, where leasing, filing
    /// and recording apart would take three writes (and two of the lock's
    /// turns). One whose inbox is full is leased as usual: its attempt
    /// answers it.
    #[allow(clippy::too_many_arguments)]
    pub fn lease_due_filing(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        limit: usize,
        held: &dyn Fn(&str, bool) -> bool,
        held_until: Millis,
        file: Option<&FileAsLeased>,
    ) -> Result<LeasedJobs, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut out = Vec::new();
        let mut deliver = Vec::new();
        let mut filed = Vec::new();
        let mut filings = FilingState::default();
        let mut messages: HashMap<MessageId, Option<Arc<MessageRecord>>> = HashMap::new();
        // The due jobs first (at most `limit`, whether or not each is then
        // taken), so that their recipients are read together.
        let mut due_jobs = Vec::new();
        // Bounded: past `now` lie the leases of the last minute, most of
        // them finished and deleted.
        for item in self.scan_below(CF_QUEUE, [], &now.saturating_add(1).to_be_bytes()) {
            let (k, v) = item?;
            let Some((due, sel, kind)) = parse_queue_key(&k) else {
                return Err(StoreError::Corrupt("queue key".into()));
            };
            if due > now || due_jobs.len() >= limit {
                break;
            }
            due_jobs.push((k, sel, kind, from_json::<Job>(CF_QUEUE, &v)?.released()));
        }
        let notified: Vec<[u8; 8]> =
            due_jobs.iter().filter(|(.., job)| matches!(job, Job::Notify { .. })).map(|(_, sel, ..)| *sel).collect();
        let mut records = self.recipients_by_selector(&notified)?.into_iter();
        for (k, sel, kind, job) in due_jobs {
            batch.delete(CF_QUEUE, &k);
            if let Job::Deliver(d) = &job
                && held(&d.notification.recipient, true)
            {
                batch.put(CF_QUEUE, queue_key(held_until, sel, kind & !LEASED), to_json(&job));
                continue;
            }
            let job = job.leased_to(owner);
            if let Job::Deliver(mut d) = job {
                if d.report.is_none() {
                    d.attempts += 1;
                    d.first_attempt_at.get_or_insert(now);
                }
                batch.put(
                    CF_QUEUE,
                    queue_key(lease_until, sel, JOB_DELIVER | LEASED),
                    to_json(&Job::Deliver(d.clone())),
                );
                deliver.push(LeasedDelivery { id: sel, due: lease_until, delivery: *d });
                continue;
            }
            let Some(mut record) = records.next().flatten() else { continue };
            let id: MessageId =
                record.message.parse().map_err(|_| StoreError::Corrupt("recipient's message id".into()))?;
            let message = match messages.get(&id) {
                Some(m) => m.clone(),
                None => {
                    let m = self.message(&id)?.map(Arc::new);
                    messages.insert(id, m.clone());
                    m
                }
            };
            let Some(message) = message else { continue };
            if record.notification.is_final() || message.state != MessageState::Stored {
                record.next_attempt_at = None;
                batch.put(CF_RECIPIENTS, sel, to_json(&record));
                continue;
            }
            if held(&record.recipient, false) {
                batch.put(CF_QUEUE, queue_key(held_until, sel, kind & !LEASED), to_json(&job.released()));
                record.next_attempt_at = Some(held_until);
                batch.put(CF_RECIPIENTS, sel, to_json(&record));
                continue;
            }
            record.next_attempt_at = Some(lease_until);
            if record.notification == NotificationStatus::Unprocessed {
                record.notification = NotificationStatus::Notifying;
            }
            record.attempts += 1;
            record.first_attempt_at.get_or_insert(now);
            record.last_attempt_at = Some(now);
            let leased = Leased { job, selector: sel, lease_until, record, message };
            if let Some(file) = file
                && let Some(filing) = (file.filing)(&leased)
            {
                let accept = self.file_one(&mut batch, &filing, now, file.max_inbox, &mut filings)?;
                if accept != InboxAccept::Full {
                    let mut r = leased.record.clone();
                    r.accepted_at.get_or_insert(now);
                    r.reason = None;
                    r.next_attempt_at = Some(file.resend_at);
                    let host = domain_of(&filing.user_key).to_string();
                    remember_attempt(&mut r.history, Attempt { at: now, host, result: "accepted".into() });
                    let job = to_json(&Job::Notify { recipient: hex(&sel), by: None });
                    batch.put(CF_QUEUE, queue_key(file.resend_at, sel, JOB_NOTIFY), &job);
                    batch.put(CF_RECIPIENTS, sel, to_json(&r));
                    filed.push(FiledAsLeased { leased, filing, accept });
                    continue;
                }
            }
            batch.put(CF_QUEUE, queue_key(lease_until, sel, (kind & !LEASED) | LEASED), to_json(&leased.job));
            batch.put(CF_RECIPIENTS, sel, to_json(&leased.record));
            out.push(leased);
        }
        if filed.iter().any(|f| matches!(f.accept, InboxAccept::Accepted(_))) {
            // What is filed is promised to its user: on disk before anyone
            // may read it.
            self.commit(batch)?;
            self.touched_inboxes(filed.iter().map(|f| (&f.filing, &f.accept)));
        } else if !batch.is_empty() {
            // Not synced: a lease lost in a power failure leaves its job
            // due where it was, tried again as after a crash mid-attempt.
            self.commit_lazy(batch)?;
        }
        Ok(LeasedJobs { notify: out, deliver, filed })
    }

    /// Queued jobs counted by (kind, state): state is `due`, `scheduled`
    /// (due later) or `leased` (an attempt is running).
    pub fn queue_stats(&self, now: Millis) -> Result<BTreeMap<(&'static str, &'static str), u64>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.scan(CF_QUEUE, &[]) {
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

    /// Every queued job, soonest first, for the admin API.
    pub fn jobs(&self) -> Result<Vec<JobView>, StoreError> {
        let mut out = Vec::new();
        for item in self.scan(CF_QUEUE, &[]) {
            let (k, v) = item?;
            if let Some(view) = self.job_view(&k, &v)? {
                out.push(view);
            }
        }
        Ok(out)
    }

    /// One queued job, for `imgate queue show`.
    pub fn job(&self, id: [u8; 8]) -> Result<Option<JobView>, StoreError> {
        match self.find_job(&id)? {
            Some((k, v)) => self.job_view(&k, &v),
            None => Ok(None),
        }
    }

    fn job_view(&self, k: &[u8], v: &[u8]) -> Result<Option<JobView>, StoreError> {
        let Some((due, job, kind)) = parse_queue_key(k) else { return Ok(None) };
        let leased = kind & LEASED != 0;
        Ok(Some(match from_json::<Job>(CF_QUEUE, v)? {
            Job::Notify { .. } => {
                let Some(r) = self.recipient_by_selector(&job)? else { return Ok(None) };
                let m = match r.message.parse::<MessageId>() {
                    Ok(id) => self.message(&id)?,
                    Err(_) => None,
                };
                JobView {
                    id: hex(&job),
                    kind: "notify",
                    due,
                    leased,
                    recipient: r.recipient,
                    attempts: r.attempts,
                    last_error: r.reason,
                    sender: m.as_ref().map(|m| m.sender.clone()).unwrap_or_default(),
                    store: m.as_ref().map(|m| m.store.clone()).unwrap_or_default(),
                    size: m.map_or(0, |m| m.size),
                    first_attempt_at: r.first_attempt_at,
                    history: r.history,
                }
            }
            Job::Deliver(d) => JobView {
                id: hex(&job),
                kind: "deliver",
                due,
                leased,
                recipient: d.notification.recipient,
                attempts: d.attempts,
                last_error: d.last_error,
                sender: d.notification.sender,
                store: d.notification.store,
                size: d.notification.size,
                first_attempt_at: d.first_attempt_at,
                history: d.history,
            },
        }))
    }

    /// Makes every waiting job `pick(recipient, is_delivery)` chooses due
    /// now; returns how many.
    pub fn retry_jobs(&self, now: Millis, pick: &dyn Fn(&str, bool) -> bool) -> Result<usize, StoreError> {
        let ids: Vec<[u8; 8]> = self
            .jobs()?
            .into_iter()
            .filter(|j| !j.leased && j.due > now && pick(&j.recipient, j.kind == "deliver"))
            .filter_map(|j| crate::proto::hex::decode_array(&j.id))
            .collect();
        let mut n = 0;
        for id in ids {
            n += usize::from(self.retry_job(id, now)?);
        }
        Ok(n)
    }

    /// The queue entry (key, value) of job `id`.
    fn find_job(&self, id: &[u8; 8]) -> Result<Option<QueueEntry>, StoreError> {
        for item in self.scan(CF_QUEUE, &[]) {
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
        let _g = self.lock()?;
        let Some((k, v)) = self.find_job(&id)? else { return Ok(false) };
        let (_, _, kind) = parse_queue_key(&k).expect("found by parsing");
        if kind & LEASED != 0 {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(CF_QUEUE, &k);
        if let Some(due) = due {
            batch.put(CF_QUEUE, queue_key(due, id, kind), &v);
        }
        if kind == JOB_NOTIFY
            && let Some(mut r) = self.recipient_by_selector(&id)?
        {
            r.next_attempt_at = due;
            batch.put(CF_RECIPIENTS, id, to_json(&r));
        }
        self.commit(batch)?;
        Ok(true)
    }

    /// Records how a leased notification attempt ended; `false` if its
    /// lease was lost (see [`Store::finish_notifies`]).
    pub fn finish_notify(
        &self,
        leased: &Leased,
        attempt: NotifyAttempt,
        tried: Attempt,
        now: Millis,
    ) -> Result<bool, StoreError> {
        Ok(self.finish_notifies(vec![(leased.selector, leased.lease_until, attempt, tried)], now)? == 0)
    }

    /// Records how leased notification attempts ended — those of one request
    /// to an agent — in as few batches as is safe: outcomes that leave
    /// their recipient pinned share one batch; one that un-pins (and may
    /// free the body) is committed on its own, so that the check for the
    /// last pin always reads committed records. Not synced: an outcome
    /// promises no one anything, and one lost in a power failure leaves its
    /// job leased, so the notification is sent again after the restart and
    /// answered as a duplicate (or decided again).
    ///
    /// Each outcome names the lease it was attempted under (`lease_until`,
    /// the fencing token): one whose job has been leased again since — its
    /// lease ended while it ran, and another worker took the job — is
    /// refused, not recorded. Returns how many were refused.
    pub fn finish_notifies(
        &self,
        outcomes: Vec<([u8; 8], Millis, NotifyAttempt, Attempt)>,
        now: Millis,
    ) -> Result<usize, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut refused = 0;
        let sels: Vec<[u8; 8]> = outcomes.iter().map(|(sel, ..)| *sel).collect();
        let mut records: HashMap<[u8; 8], Option<RecipientRecord>> =
            sels.iter().copied().zip(self.recipients_by_selector(&sels)?).collect();
        for (sel, lease_until, attempt, tried) in outcomes {
            // Read together above; a selector named twice is read from
            // the store again the second time.
            let r = match records.remove(&sel) {
                Some(r) => r,
                None => self.recipient_by_selector(&sel)?,
            };
            let Some(mut r) = r else { continue };
            if r.next_attempt_at.is_some_and(|due| due != lease_until) {
                refused += 1;
                continue;
            }
            remember_attempt(&mut r.history, tried);
            let old_due = r.next_attempt_at.take();
            // A silence or refusal that arrived while the attempt was in flight wins.
            if !r.notification.is_final() {
                match attempt {
                    NotifyAttempt::Accepted { resend_at } => {
                        r.accepted_at.get_or_insert(now);
                        r.reason = None;
                        r.next_attempt_at = Some(resend_at);
                    }
                    NotifyAttempt::Retry { retry_at, reason } => {
                        r.reason = Some(reason);
                        r.next_attempt_at = Some(retry_at);
                    }
                    NotifyAttempt::Final { status, reason } => {
                        r.notification = status;
                        r.reason = Some(reason);
                        r.pinned = false;
                    }
                }
            }
            let mut own = Batch::default();
            let target = if r.pinned { &mut batch } else { &mut own };
            if let Some(due) = old_due {
                self.delete_job(target, due, sel, JOB_NOTIFY);
            }
            if let Some(due) = r.next_attempt_at {
                let job = to_json(&Job::Notify { recipient: hex(&sel), by: None });
                target.put(CF_QUEUE, queue_key(due, sel, JOB_NOTIFY), &job);
            }
            target.put(CF_RECIPIENTS, sel, to_json(&r));
            if !r.pinned {
                if !batch.is_empty() {
                    self.commit_lazy(std::mem::take(&mut batch))?;
                }
                self.release_if_done(&mut own, &r, &sel, now)?;
                self.commit_lazy(own)?;
            }
        }
        if !batch.is_empty() {
            self.commit_lazy(batch)?;
        }
        Ok(refused)
    }

    /// Frees every message whose lifetime ended by `now`; returns how many.
    pub fn expire_due(&self, now: Millis) -> Result<usize, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut n = 0;
        for item in self.scan_below(CF_EXPIRY, [], &now.saturating_add(1).to_be_bytes()) {
            let (k, _) = item?;
            let Some((at, id)) = parse_expiry_key(&k) else {
                return Err(StoreError::Corrupt("expiry key".into()));
            };
            if at > now || n >= 1000 {
                break;
            }
            batch.delete(CF_EXPIRY, &k);
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
        self.next_expiry_before(Millis::MAX)
    }

    /// When the soonest lifetime ending before `before` ends.
    pub fn next_expiry_before(&self, before: Millis) -> Result<Option<Millis>, StoreError> {
        match self.scan_below(CF_EXPIRY, [], &before.to_be_bytes()).next() {
            Some(item) => Ok(parse_expiry_key(&item?.0).map(|(at, _)| at)),
            None => Ok(None),
        }
    }
}
