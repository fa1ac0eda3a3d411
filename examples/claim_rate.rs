//! The job claim rate of the store's queue: how many notification jobs a
//! number of workers take and finish per second, each worker doing what a
//! node's queue worker does per pass — lease up to BATCH due jobs
//! (`Store::lease_due`, one turn), then record every outcome of that
//! request at once (`Store::finish_notifies`, one turn, one durable
//! commit). No agent is contacted: the outcome is always "accepted", so
//! what is measured is the shared queue's bookkeeping alone. Each worker
//! leases under its own node name, as separate nodes would.
//!
//!   claim_rate STORE JOBS WORKERS [BATCH]
//!
//! STORE is a `postgres://` URL (an empty database) or a directory for a
//! fresh RocksDB store. `bench/claim_rate.sh` runs it side by side.

use std::sync::Arc;
use std::time::{Duration, Instant};

use imgate::clock::{Clock, SystemClock};
use imgate::store::backend::postgres::{Postgres, Settings};
use imgate::store::records::Attempt;
use imgate::store::{NewMessage, NotifyAttempt, Store};

/// Recipients per stored message: the queue holds one job per recipient.
const PER_MESSAGE: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, jobs, workers, rest @ ..] = args.as_slice() else {
        eprintln!("usage: claim_rate STORE JOBS WORKERS [BATCH]");
        std::process::exit(2);
    };
    let (jobs, workers): (usize, usize) = (jobs.parse().expect("JOBS"), workers.parse().expect("WORKERS"));
    let batch: usize = rest.first().map_or(100, |b| b.parse().expect("BATCH"));
    let store = if target.starts_with("postgres://") {
        let settings =
            Settings { url: target.clone(), max_connections: 2 * workers + 2, timeout: Duration::from_secs(60) };
        Store::on(Box::new(Postgres::open(&settings).expect("opening PostgreSQL"))).expect("opening the store")
    } else {
        Store::open(std::path::Path::new(target)).expect("opening RocksDB")
    };
    let clock = SystemClock;

    // The queue: JOBS notification jobs, all due now.
    for m in 0..jobs.div_ceil(PER_MESSAGE) {
        let n = PER_MESSAGE.min(jobs - m * PER_MESSAGE);
        let message = NewMessage {
            store: "bench.test".into(),
            sender: "list@bench.test".parse().unwrap(),
            account: "list@bench.test".into(),
            also_charge: vec![],
            recipients: (0..n).map(|r| format!("r{m}-{r}@far.test").parse().unwrap()).collect(),
            relay: vec![],
            lists: vec![],
            lifetime_ms: 86_400_000,
            content: format!("Subject: claim {m}\r\n\r\nbody\r\n").into_bytes(),
            origin: None,
            file_in_sent: false,
        };
        store.submit(message, clock.now(), u64::MAX).expect("queueing");
    }

    let store = Arc::new(store);
    let start = Instant::now();
    let threads: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || work(&store, &format!("worker-{w}"), batch))
        })
        .collect();
    let done: usize = threads.into_iter().map(|t| t.join().expect("worker")).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done, jobs, "every job taken exactly once");
    println!("{:.0}", done as f64 / secs);
}

/// One worker: takes and finishes jobs until none is due; returns how many.
fn work(store: &Store, owner: &str, batch: usize) -> usize {
    let clock = SystemClock;
    let never = |_: &str, _: bool| false;
    let mut done = 0;
    loop {
        let now = clock.now();
        let leased = store.lease_due(owner, now, now + 120_000, batch, &never, 0).expect("leasing");
        if leased.is_empty() {
            return done;
        }
        let resend_at = now + 86_400_000;
        let outcomes = leased
            .notify
            .iter()
            .map(|l| {
                let tried = Attempt { at: now, host: "far.test".into(), result: "accepted".into() };
                (l.selector, l.lease_until, NotifyAttempt::Accepted { resend_at }, tried)
            })
            .collect::<Vec<_>>();
        done += outcomes.len();
        let refused = store.finish_notifies(outcomes, now).expect("recording");
        assert_eq!(refused, 0, "no lease is lost in a run this short");
    }
}
