//! Store behaviour, the same on every engine: one body per message, capability checks, release on
//! un-pin, quota, cancel, the queue's leases, expiry and inbox idempotency.

use super::*;
use crate::proto::api::Notification;

/// No host is paused.
fn never(_: &str, _: bool) -> bool {
    false
}

fn tried(result: &str) -> Attempt {
    Attempt { at: 0, host: "two.test".into(), result: result.into() }
}

/// Where a test's store lives: each test runs on both engines.
enum Fixture {
    RocksDb(tempfile::TempDir),
    Postgres(crate::testkit::postgres::Database),
}

impl Fixture {
    /// Opens the store (again: what a restart of the node does).
    fn open(&self) -> Store {
        match self {
            Fixture::RocksDb(dir) => Store::open(dir.path()).unwrap(),
            Fixture::Postgres(db) => Store::on(Box::new(db.open())).unwrap(),
        }
    }
}

/// Runs each named test against RocksDB and against PostgreSQL.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod on_rocksdb {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::RocksDb(tempfile::tempdir().unwrap()))
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(&super::Fixture::Postgres(crate::testkit::postgres::database()))
            })*
        }
    };
}

fn msg(to: &[&str], content: &[u8]) -> NewMessage {
    NewMessage {
        store: "one.test".into(),
        sender: "alice@one.test".parse().unwrap(),
        account: "alice@one.test".into(),
        also_charge: vec![],
        recipients: to.iter().map(|a| a.parse().unwrap()).collect(),
        relay: vec![],
        lists: vec![],
        lifetime_ms: 60_000,
        content: content.to_vec(),
        origin: None,
        file_in_sent: false,
    }
}

fn one_body_many_capabilities(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test", "c@two.test"], b"Subject: x\r\n\r\nhi\r\n"), 1_000, 1 << 20).unwrap();
    assert_eq!(sub.recipients.len(), 2);
    let (b, c) = (sub.recipients[0].1, sub.recipients[1].1);
    assert_ne!(b, c);
    for id in [b, c] {
        let f = s.find(&id).unwrap().unwrap();
        assert_eq!(f.message_id, sub.message);
        assert_eq!(f.message.header_len, 14);
    }
    assert_eq!(s.body(&sub.message).unwrap().unwrap(), b"Subject: x\r\n\r\nhi\r\n");
    // A wrong verifier is indistinguishable from an unknown identifier.
    let mut forged = b;
    forged.0[15] ^= 0x80;
    assert_eq!(s.find(&forged).unwrap().unwrap_err(), Unavailable::Unknown);
    assert_eq!(s.find(&RecipientId::random()).unwrap().unwrap_err(), Unavailable::Unknown);
    assert_eq!(s.account_usage("alice@one.test").unwrap().bytes, 18);
}

fn unpin_by_every_recipient_frees_the_body(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test", "c@two.test"], b"x"), 1_000, 1 << 20).unwrap();
    let (b, c) = (sub.recipients[0].1, sub.recipients[1].1);
    s.recipient_action(&b, RecipientAction::Unpin, 2_000).unwrap().unwrap();
    assert_eq!(s.find(&b).unwrap().unwrap_err(), Unavailable::Gone);
    assert!(s.find(&c).unwrap().is_ok());
    assert!(s.body(&sub.message).unwrap().is_some());
    s.recipient_action(&c, RecipientAction::Unpin, 2_000).unwrap().unwrap();
    assert!(s.body(&sub.message).unwrap().is_none());
    let (m, rs) = s.track(&sub.message).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Released);
    assert!(rs.iter().all(|r| !r.pinned && r.notification == NotificationStatus::Silenced));
    assert_eq!(s.account_usage("alice@one.test").unwrap().bytes, 0);
    assert_eq!(s.next_due().unwrap(), None, "no notification left queued");
}

fn quota_is_enforced_and_released(f: &Fixture) {
    let s = f.open();
    s.submit(msg(&["b@two.test"], &[b'x'; 600]), 1, 1000).unwrap();
    let err = s.submit(msg(&["b@two.test"], &[b'x'; 600]), 1, 1000).unwrap_err();
    assert!(matches!(err, StoreError::OverQuota { used: 600, quota: 1000, size: 600 }), "{err}");
    // The refused message left nothing behind.
    assert_eq!(s.account_usage("alice@one.test").unwrap().messages, 1);
}

fn cancel_makes_capabilities_gone_and_drops_jobs(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test"], b"x"), 1, 1000).unwrap();
    assert_eq!(s.cancel(&sub.message).unwrap().unwrap().state, MessageState::Cancelled);
    assert_eq!(s.find(&sub.recipients[0].1).unwrap().unwrap_err(), Unavailable::Gone);
    assert!(s.body(&sub.message).unwrap().is_none());
    assert!(s.lease_due("test", u64::MAX - 1, u64::MAX, 10, &never, 0).unwrap().is_empty());
    assert!(s.cancel(&MessageId::random()).unwrap().is_none());
}

fn leases_survive_until_finished(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test"], b"x"), 100, 1000).unwrap();
    assert!(s.lease_due("test", 99, 5_000, 10, &never, 0).unwrap().is_empty(), "not due yet");
    let leased = s.lease_due("test", 100, 5_000, 10, &never, 0).unwrap().notify;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].record.notification, NotificationStatus::Notifying);
    // Not finished (a crash, or a worker stopped past its lease): the job
    // comes back when the lease ends, to any worker.
    assert!(s.lease_due("test", 4_999, 9_000, 10, &never, 0).unwrap().is_empty());
    let taken_over = s.lease_due("test", 5_000, 9_000, 10, &never, 0).unwrap().notify;
    assert_eq!(taken_over.len(), 1);
    // The first worker's late result is refused by its lease's token.
    let late = s.finish_notify(&leased[0], NotifyAttempt::Accepted { resend_at: 7_000 }, tried("late"), 5_500);
    assert!(!late.unwrap(), "a result under an ended lease is not recorded");
    assert_eq!(s.track(&sub.message).unwrap().unwrap().1[0].accepted_at, None);
    let down = NotifyAttempt::Retry { retry_at: 20_000, reason: "down".into() };
    assert!(s.finish_notify(&taken_over[0], down, tried("down"), 6_000).unwrap());
    assert_eq!(s.next_due().unwrap(), Some(20_000));
    assert_eq!(s.next_due_before(20_000).unwrap(), None, "the bound is not included");
    assert_eq!(s.next_due_before(20_001).unwrap(), Some(20_000));
    let again = s.lease_due("test", 20_000, 30_000, 10, &never, 0).unwrap().notify;
    assert_eq!(again[0].record.attempts, 3);
    s.finish_notify(
        &again[0],
        NotifyAttempt::Final { status: NotificationStatus::Nouser, reason: "no such user".into() },
        tried("nouser"),
        21_000,
    )
    .unwrap();
    let (m, rs) = s.track(&sub.message).unwrap().unwrap();
    assert_eq!(rs[0].notification, NotificationStatus::Nouser);
    assert_eq!(rs[0].history.iter().map(|a| a.result.as_str()).collect::<Vec<_>>(), ["down", "nouser"]);
    assert_eq!(m.state, MessageState::Released, "the only recipient is done");
    assert_eq!(s.next_due().unwrap(), None);
}

fn a_delivery_taken_over_refuses_the_first_workers_late_result(f: &Fixture) {
    let s = f.open();
    let n = Notification {
        store: "two.test".into(),
        id: "01".into(),
        sender: "a@two.test".into(),
        recipient: "b@one.test".into(),
        size: 100,
        digest: "sha-256=:x:".into(),
        origin: None,
    };
    s.queue_delivery("b@one.test", &n, 100).unwrap();
    let first = s.lease_due("test", 100, 5_000, 10, &never, 0).unwrap().deliver;
    assert_eq!(first.len(), 1);
    // The first worker stops past its lease; another takes the job over.
    let second = s.lease_due("test", 5_000, 9_000, 10, &never, 0).unwrap().deliver;
    assert_eq!((second.len(), second[0].delivery.attempts), (1, 2));
    let later = Some((20_000, second[0].delivery.clone()));
    assert!(matches!(s.finish_delivery(&first[0], later.clone()), Err(StoreError::LeaseLost)));
    let next = (20_000, first[0].delivery.clone());
    assert!(matches!(s.delivered(&first[0], next, 5_500), Err(StoreError::LeaseLost)));
    assert_eq!(s.queued_deliveries().unwrap().len(), 1, "no job added by the late worker");
    s.finish_delivery(&second[0], None).unwrap();
    assert!(s.queued_deliveries().unwrap().is_empty());
}

fn held_jobs_wait_without_an_attempt(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test", "c@three.test"], b"x"), 100, 1000).unwrap();
    let held = |rcpt: &str, _: bool| rcpt.ends_with("@two.test");
    let leased = s.lease_due("test", 100, 5_000, 10, &held, 700).unwrap().notify;
    assert_eq!(leased.iter().map(|l| l.record.recipient.as_str()).collect::<Vec<_>>(), ["c@three.test"]);
    assert_eq!(s.next_due().unwrap(), Some(700));
    let (_, records) = s.track(&sub.message).unwrap().unwrap();
    let b = records.iter().find(|r| r.recipient == "b@two.test").unwrap();
    assert_eq!((b.attempts, b.next_attempt_at), (0, Some(700)));
    // Resumed: taken as usual.
    assert_eq!(s.lease_due("test", 700, 5_000, 10, &never, 0).unwrap().notify[0].record.attempts, 1);
}

fn routes_seeded_from_config_yield_to_admin_changes(f: &Fixture) {
    use crate::config::Route;
    let s = f.open();
    let seeds = |v: &[(&str, Route)]| v.iter().map(|(t, r)| (t.to_string(), *r)).collect::<Vec<_>>();
    assert_eq!(s.seed_routes(&seeds(&[("one.test", Route::Legacy), ("a@one.test", Route::Im2000)]), 10).unwrap(), 2);
    assert_eq!(s.seed_routes(&seeds(&[("one.test", Route::Legacy), ("a@one.test", Route::Im2000)]), 20).unwrap(), 0);
    let admin = RouteRecord { route: Route::Im2000, since: 30, source: RouteSource::Admin, by: Some("root".into()) };
    s.set_route("b@one.test", admin.clone()).unwrap();
    s.set_route("one.test", RouteRecord { route: Route::Auto, ..admin.clone() }).unwrap();
    // The file changes: its own rules follow, the admin's stay.
    assert_eq!(s.seed_routes(&seeds(&[("one.test", Route::Im2000)]), 40).unwrap(), 1);
    let routes = s.routes().unwrap();
    assert_eq!(routes.keys().collect::<Vec<_>>(), ["b@one.test", "one.test"]);
    assert_eq!((routes["one.test"].route, routes["one.test"].source), (Route::Auto, RouteSource::Admin));
    assert_eq!(routes["b@one.test"], admin);
}

fn traffic_is_counted_per_side_and_moves_with_a_rerouted_delivery(f: &Fixture) {
    let s = f.open();
    let n = |id: &str| Notification {
        store: "two.test".into(),
        id: id.into(),
        sender: "a@two.test".into(),
        recipient: "b@one.test".into(),
        size: 100,
        digest: "sha-256=:x:".into(),
        origin: None,
    };
    let hour = 3_600_000;
    s.inbox_accept("b@one.test", &n("01"), hour).unwrap();
    s.queue_delivery("b@one.test", &n("02"), 2 * hour).unwrap();
    s.queue_delivery("b@one.test", &n("03"), 30 * hour).unwrap();
    let t = s.traffic("one.test", 0).unwrap();
    assert_eq!((t.im2000_messages, t.im2000_bytes, t.legacy_messages, t.legacy_bytes), (1, 100, 2, 200));
    assert_eq!(s.traffic("one.test", 3 * hour).unwrap().legacy_messages, 1, "only the last day");
    assert_eq!(s.traffic("other.test", 0).unwrap(), Traffic::default());
    let leased = s.lease_due("test", 30 * hour, 31 * hour, 10, &never, 0).unwrap().deliver;
    let job = leased.iter().find(|l| l.delivery.notification.id == "03").unwrap();
    s.delivery_to_inbox(job, "b@one.test", 30 * hour).unwrap();
    let t = s.traffic("one.test", 0).unwrap();
    assert_eq!((t.im2000_messages, t.legacy_messages), (2, 1));
    assert_eq!(s.inbox_list("b@one.test", 0, 10).unwrap().len(), 2);
}

fn a_batch_of_notifications_is_filed_once_each_in_one_write(f: &Fixture) {
    let s = f.open();
    let n = |id: &str, rcpt: &str| Notification {
        store: "two.test".into(),
        id: id.into(),
        sender: "a@two.test".into(),
        recipient: rcpt.into(),
        size: 10,
        digest: "sha-256=:x:".into(),
        origin: None,
    };
    let filing =
        |id: &str, user: &str, legacy: bool| Filing { user_key: user.into(), notification: n(id, user), legacy };
    s.inbox_accept("b@one.test", &n("00", "b@one.test"), 1).unwrap();
    let got = s
        .file_notifications(
            &[
                filing("01", "b@one.test", false),
                filing("02", "b@one.test", false),
                filing("01", "b@one.test", false), // again, in the same batch
                filing("00", "b@one.test", false), // filed before
                filing("03", "c@one.test", true),
            ],
            5,
            u64::MAX,
        )
        .unwrap();
    assert_eq!(
        got,
        [
            InboxAccept::Accepted(2),
            InboxAccept::Accepted(3),
            InboxAccept::Duplicate(2),
            InboxAccept::Duplicate(1),
            InboxAccept::Accepted(0)
        ]
    );
    assert_eq!(s.inbox_list("b@one.test", 0, 10).unwrap().len(), 3);
    assert_eq!(s.queued_deliveries().unwrap().len(), 1);
    assert_eq!(s.inbox_accept("b@one.test", &n("04", "b@one.test"), 6).unwrap(), InboxAccept::Accepted(4));
}

fn own_notifications_are_filed_as_their_jobs_are_taken(f: &Fixture) {
    let s = f.open();
    let to_bob = s.submit(msg(&["bob@one.test"], b"x"), 100, 1000).unwrap();
    let to_ann = s.submit(msg(&["ann@one.test"], b"y"), 100, 1000).unwrap();
    // Bob's are filed here; Ann's are leased, for an attempt of their own.
    let filing = |l: &Leased| {
        let id = format!("{}{}", hex(&l.selector), crate::proto::hex::encode(&l.record.verifier));
        let n = Notification {
            store: l.message.store.clone(),
            id,
            sender: l.message.sender.clone(),
            recipient: l.record.recipient.clone(),
            size: l.message.size,
            digest: l.message.digest.clone(),
            origin: None,
        };
        (l.record.recipient == "bob@one.test").then(|| Filing {
            user_key: l.record.recipient.clone(),
            notification: n,
            legacy: false,
        })
    };
    let take = |now, max_inbox| {
        let file = FileAsLeased { filing: &filing, resend_at: now + 50_000, max_inbox };
        s.lease_due_filing("test", now, now + 5_000, 10, &never, 0, Some(&file)).unwrap()
    };
    let taken = take(100, 1);
    assert_eq!(taken.filed.len(), 1);
    assert_eq!(taken.filed[0].accept, InboxAccept::Accepted(1));
    assert_eq!(taken.notify.len(), 1);
    assert_eq!(taken.notify[0].record.recipient, "ann@one.test");
    assert_eq!(s.inbox_list("bob@one.test", 0, 10).unwrap().len(), 1);
    // Bob's attempt is recorded as accepted, his job due again to resend.
    let bob = &s.track(&to_bob.message).unwrap().unwrap().1[0];
    assert_eq!((bob.attempts, bob.accepted_at, bob.next_attempt_at), (1, Some(100), Some(50_100)));
    assert_eq!(bob.notification, NotificationStatus::Notifying);
    assert_eq!(bob.history.last().map(|a| a.result.as_str()), Some("accepted"));
    assert_eq!(s.track(&to_ann.message).unwrap().unwrap().1[0].next_attempt_at, Some(5_100), "leased");
    let later = NotifyAttempt::Retry { retry_at: 1_000_000, reason: "down".into() };
    assert!(s.finish_notify(&taken.notify[0], later, tried("down"), 200).unwrap());

    // Resent: a duplicate, filed once still. A new one finds the inbox
    // full (at most one), and is leased for its attempt to answer.
    let third = s.submit(msg(&["bob@one.test"], b"z"), 50_100, 1000).unwrap();
    let taken = take(50_100, 1);
    assert_eq!(taken.filed.len(), 1);
    assert_eq!(taken.filed[0].accept, InboxAccept::Duplicate(1));
    assert_eq!(taken.notify.len(), 1, "the third, whose inbox is full");
    assert_eq!(taken.notify[0].record.message, third.message.to_string());
    assert_eq!(s.inbox_list("bob@one.test", 0, 10).unwrap().len(), 1);
    assert_eq!(s.track(&to_bob.message).unwrap().unwrap().1[0].attempts, 2);

    // What was filed and recorded survives a reopen.
    drop(s);
    let s = f.open();
    assert_eq!(s.inbox_list("bob@one.test", 0, 10).unwrap().len(), 1);
    assert_eq!(s.track(&to_bob.message).unwrap().unwrap().1[0].next_attempt_at, Some(100_100));
}

fn expiry_frees_bodies(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test"], b"x"), 1_000, 1000).unwrap();
    assert_eq!(s.next_expiry().unwrap(), Some(61_000));
    assert_eq!(s.next_expiry_before(61_000).unwrap(), None);
    assert_eq!(s.next_expiry_before(61_001).unwrap(), Some(61_000));
    assert_eq!(s.expire_due(60_999).unwrap(), 0);
    assert_eq!(s.expire_due(61_000).unwrap(), 1);
    assert_eq!(s.find(&sub.recipients[0].1).unwrap().unwrap_err(), Unavailable::Gone);
    assert_eq!(s.track(&sub.message).unwrap().unwrap().0.state, MessageState::Expired);
    assert_eq!(s.next_due().unwrap(), None);
}

fn a_body_released_after_its_lifetime_is_expired(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test"], b"x"), 1_000, 1000).unwrap();
    let due = s.lease_due("test", 61_500, 70_000, 10, &never, 0).unwrap().notify;
    s.finish_notify(
        &due[0],
        NotifyAttempt::Final { status: NotificationStatus::Noserver, reason: "given up".into() },
        tried("down"),
        61_500,
    )
    .unwrap();
    assert_eq!(s.track(&sub.message).unwrap().unwrap().0.state, MessageState::Expired, "not released");
    assert_eq!(s.expire_due(61_500).unwrap(), 0, "freed once");
}

fn lists_scan_in_order_with_cursor(f: &Fixture) {
    let s = f.open();
    let mut m = msg(&[], b"x");
    m.lists = vec!["news@one.test".into()];
    let first = s.submit(m, 10, 1000).unwrap();
    let mut m = msg(&[], b"y");
    m.lists = vec!["News@one.test".into()];
    let second = s.submit(m, 20, 1000).unwrap();
    let (all, cursor) = s.scan_list("news@one.test", None, 10).unwrap();
    assert_eq!(
        all.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![first.lists[0].1.to_string(), second.lists[0].1.to_string()]
    );
    let (rest, _) = s.scan_list("news@one.test", Some(&cursor), 10).unwrap();
    assert!(rest.is_empty());
    assert!(s.find(&first.lists[0].1).unwrap().is_ok(), "list ids retrieve");
}

fn inbox_is_idempotent_and_clears(f: &Fixture) {
    let s = f.open();
    let n = Notification {
        store: "one.test".into(),
        id: "00".repeat(16),
        sender: "alice@one.test".into(),
        recipient: "bob@two.test".into(),
        size: 1,
        digest: "sha-256=:x:".into(),
        origin: None,
    };
    assert_eq!(s.inbox_accept("bob@two.test", &n, 5).unwrap(), InboxAccept::Accepted(1));
    assert_eq!(s.inbox_accept("bob@two.test", &n, 6).unwrap(), InboxAccept::Duplicate(1));
    let mut n2 = n.clone();
    n2.id = "11".repeat(16);
    assert_eq!(s.inbox_accept("bob@two.test", &n2, 7).unwrap(), InboxAccept::Accepted(2));
    assert_eq!(s.inbox_list("bob@two.test", 0, 10).unwrap().len(), 2);
    assert_eq!(s.inbox_list("bob@two.test", 1, 10).unwrap().len(), 1);
    assert!(s.inbox_list("bo@two.test", 0, 10).unwrap().is_empty());
    assert_eq!(s.inbox_clear("bob@two.test", 1).unwrap(), 1);
    assert_eq!(s.inbox_list("bob@two.test", 0, 10).unwrap()[0].0, 2);
    assert_eq!(s.inbox_accept("bob@two.test", &n, 8).unwrap(), InboxAccept::Duplicate(1), "cleared stays seen");
}

fn reopen_keeps_everything(f: &Fixture) {
    let sub = {
        let s = f.open();
        s.submit(msg(&["b@two.test"], b"kept"), 1, 1000).unwrap()
    };
    let s = f.open();
    assert_eq!(s.body(&sub.message).unwrap().unwrap(), b"kept");
    assert_eq!(s.next_due().unwrap(), Some(1));
}

fn a_restart_releases_leases_at_once(f: &Fixture) {
    let s = f.open();
    let sub = s.submit(msg(&["b@two.test"], b"x"), 100, 1000).unwrap();
    assert_eq!(s.lease_due("test", 100, 1_000_000, 10, &never, 0).unwrap().notify.len(), 1);
    assert!(s.lease_due("test", 200, 1_000_000, 10, &never, 0).unwrap().is_empty(), "leased");
    // The process dies; the next one releases what it had taken.
    assert_eq!(s.release_leases(300, None).unwrap(), 1);
    assert_eq!(s.next_due().unwrap(), Some(300));
    let again = s.lease_due("test", 300, 2_000, 10, &never, 0).unwrap().notify;
    assert_eq!(again.len(), 1);
    s.finish_notify(&again[0], NotifyAttempt::Accepted { resend_at: 9_000 }, tried("accepted"), 301).unwrap();
    assert_eq!(s.next_due().unwrap(), Some(9_000), "the leased key is gone, only the resend is queued");
    let (_, rs) = s.track(&sub.message).unwrap().unwrap();
    assert_eq!(rs[0].next_attempt_at, Some(9_000));
}

fn a_node_releases_only_its_own_leases(f: &Fixture) {
    let s = f.open();
    s.submit(msg(&["b@two.test"], b"a's"), 50, 1000).unwrap(); // due first
    let n = Notification {
        store: "two.test".into(),
        id: "01".into(),
        sender: "a@two.test".into(),
        recipient: "b@one.test".into(),
        size: 100,
        digest: "sha-256=:x:".into(),
        origin: None,
    };
    s.queue_delivery("b@one.test", &n, 100).unwrap();
    let a = s.lease_due("a", 100, 1_000_000, 1, &never, 0).unwrap();
    let b = s.lease_due("b", 100, 1_000_000, 1, &never, 0).unwrap();
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!(a.notify.first().map(|l| l.job.leased_by()), Some(Some("a")));
    // Node A starts again: its lease is due now, B's live attempt is not.
    assert_eq!(s.release_leases(300, Some("a")).unwrap(), 1);
    assert_eq!(s.release_leases(300, Some("a")).unwrap(), 0, "released once");
    let stats = s.queue_stats(300).unwrap();
    assert_eq!(stats.get(&("notify", "due")), Some(&1));
    assert_eq!(stats.get(&("deliver", "leased")), Some(&1));
    let again = s.lease_due("c", 300, 2_000, 10, &never, 0).unwrap();
    assert_eq!((again.notify.len(), again.deliver.len()), (1, 0), "B's delivery stays B's");
    // B finishes: its put-back job is no one's, and no owner's release moves it.
    let put_back = Some((5_000, b.deliver[0].delivery.clone()));
    s.finish_delivery(&b.deliver[0], put_back).unwrap();
    assert_eq!(s.release_leases(400, Some("b")).unwrap(), 0);
    assert_eq!(s.queued_deliveries().unwrap()[0].1.leased_by, None);
}

fn heartbeats_tell_runs_of_a_node_apart(f: &Fixture) {
    let s = f.open();
    assert_eq!(s.node_beat("a").unwrap(), None);
    assert_eq!(s.beat("a", 1, 100).unwrap(), None);
    assert_eq!(s.beat("a", 1, 200).unwrap(), None, "the same run");
    assert_eq!(s.node_beat("a").unwrap(), Some(NodeRecord { incarnation: 1, at: 200 }));
    // Another process beats under the same name: each sees the other.
    assert_eq!(s.beat("a", 2, 250).unwrap(), Some(NodeRecord { incarnation: 1, at: 200 }));
    assert_eq!(s.beat("a", 1, 300).unwrap().map(|r| r.incarnation), Some(2));
    s.leave("a", 2).unwrap();
    assert!(s.node_beat("a").unwrap().is_some(), "run 2 leaves only its own heartbeat");
    s.leave("a", 1).unwrap();
    assert_eq!(s.node_beat("a").unwrap(), None);
    assert_eq!(s.node_beat("b").unwrap(), None);
}

/// Submissions from async code: on RocksDB concurrent ones share commits
/// and each is stored whole, the quota still holds, a Sent filing is
/// handed back; on PostgreSQL every message is handed back.
fn submissions_from_async_code_are_stored_or_handed_back(f: &Fixture) {
    let s = f.open();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let results =
        runtime.block_on(futures::future::join_all((0..40u8).map(|i| {
            let s = s.clone();
            async move {
                s.submit_here(MessageId::random(), msg(&["b@two.test"], &[b'a' + i % 26; 100]), 1_000, 3_000).await
            }
        })));
    let shared = matches!(f, Fixture::Postgres(_));
    let mut stored = 0;
    for r in results {
        match r {
            Err(m) => assert!(shared, "an embedded store submits here (message for {:?} handed back)", m.recipients),
            Ok(Ok(sub)) => {
                assert!(!shared);
                stored += 1;
                let found = s.find(&sub.recipients[0].1).unwrap().unwrap();
                assert_eq!(s.body(&found.message_id).unwrap().unwrap().len(), 100);
            }
            Ok(Err(e)) => assert!(matches!(e, StoreError::OverQuota { .. }), "{e}"),
        }
    }
    if !shared {
        // 3,000 octets of quota: 100-octet messages pass until it is used,
        // give or take the moment-old total concurrent checks share.
        assert!((30..=40).contains(&stored), "{stored} stored");
        assert_eq!(s.account_usage("alice@one.test").unwrap().bytes, stored * 100);
        let over =
            runtime.block_on(s.submit_here(MessageId::random(), msg(&["b@two.test"], &[b'z'; 100]), 1_000, 3_000));
        assert!(matches!(over, Ok(Err(StoreError::OverQuota { .. }))), "the next one is refused");
        let mut sent = msg(&["b@two.test"], b"x");
        sent.file_in_sent = true;
        assert!(runtime.block_on(s.submit_here(MessageId::random(), sent, 1_000, 1 << 20)).is_err());
    }
}

conformance!(
    submissions_from_async_code_are_stored_or_handed_back,
    a_node_releases_only_its_own_leases,
    heartbeats_tell_runs_of_a_node_apart,
    one_body_many_capabilities,
    unpin_by_every_recipient_frees_the_body,
    quota_is_enforced_and_released,
    cancel_makes_capabilities_gone_and_drops_jobs,
    leases_survive_until_finished,
    a_delivery_taken_over_refuses_the_first_workers_late_result,
    held_jobs_wait_without_an_attempt,
    routes_seeded_from_config_yield_to_admin_changes,
    traffic_is_counted_per_side_and_moves_with_a_rerouted_delivery,
    a_batch_of_notifications_is_filed_once_each_in_one_write,
    own_notifications_are_filed_as_their_jobs_are_taken,
    expiry_frees_bodies,
    a_body_released_after_its_lifetime_is_expired,
    lists_scan_in_order_with_cursor,
    inbox_is_idempotent_and_clears,
    reopen_keeps_everything,
    a_restart_releases_leases_at_once,
);
