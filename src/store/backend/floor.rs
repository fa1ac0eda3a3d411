//! Where a walk from the start of a table may begin (sans-IO).
//!
//! The queue and the expiry index are read from their first key and their
//! heads are where keys are deleted: a job leased or finished, a lifetime
//! ended. RocksDB keeps a deleted key as a tombstone until compaction, and a
//! walk from the start steps over every one of them — under SMTP ingest a
//! fifth of the node's CPU time. A [`Floor`] is a key below which nothing
//! live lies, so that such walks seek to it instead.
//!
//! It holds in one process that opens the engine alone: writers lower it
//! before their batch is applied, and a walk that began at the floor raises
//! it to the first key it saw — but never above a key put by a write that
//! was in flight when the walk began or that began during the walk (the
//! walk's snapshot may not hold those). One walk raises at a time; others
//! only use the floor.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// A table's lowest possible live key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Low {
    /// No live key lies below this one.
    Key(Vec<u8>),
    /// Nothing is live in the table at all.
    Top,
}

impl Low {
    fn of(key: Option<&[u8]>) -> Low {
        key.map_or(Low::Top, |k| Low::Key(k.to_vec()))
    }
}

#[derive(Debug)]
struct State {
    floor: Low,
    /// The lowest key each write in flight puts (a count per key).
    in_flight: BTreeMap<Vec<u8>, usize>,
    /// While a walk raises: the lowest key put since it began.
    raising: Option<Low>,
}

#[derive(Debug)]
pub struct Floor {
    state: Mutex<State>,
}

impl Default for Floor {
    fn default() -> Floor {
        Floor { state: Mutex::new(State { floor: Low::Key(Vec::new()), in_flight: BTreeMap::new(), raising: None }) }
    }
}

/// How a walk from `from` should go.
#[derive(Debug)]
pub enum Start<'a> {
    /// Nothing live at or after `from`: no need to look.
    Empty,
    /// Seek to `seek`; hand the first key seen to `raise` if there is one.
    Seek { seek: Vec<u8>, raise: Option<Raise<'a>> },
}

/// A walk's right to raise the floor, given back when dropped unused.
#[derive(Debug)]
pub struct Raise<'a> {
    floor: &'a Floor,
    /// The lowest key of the writes in flight when the walk began.
    in_flight: Low,
    used: bool,
}

/// A write in flight; dropping it (after the batch is applied, or failed)
/// says so.
#[derive(Debug)]
pub struct Writing<'a> {
    floor: &'a Floor,
    key: Vec<u8>,
}

impl Floor {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current floor (for tests and diagnostics).
    pub fn low(&self) -> Low {
        self.state().floor.clone()
    }

    /// A write is about to put `lowest` (its lowest key in this table).
    pub fn writing(&self, lowest: &[u8]) -> Writing<'_> {
        let mut s = self.state();
        let key = Low::Key(lowest.to_vec());
        if key < s.floor {
            s.floor = key.clone();
        }
        if let Some(since) = &mut s.raising
            && key < *since
        {
            *since = key;
        }
        *s.in_flight.entry(lowest.to_vec()).or_default() += 1;
        Writing { floor: self, key: lowest.to_vec() }
    }

    /// Begins a walk over keys at or after `from`.
    pub fn start(&self, from: &[u8]) -> Start<'_> {
        let mut s = self.state();
        let from = Low::Key(from.to_vec());
        if from > s.floor {
            let Low::Key(seek) = from else { unreachable!("built as a key") };
            return Start::Seek { seek, raise: None };
        }
        let Low::Key(seek) = s.floor.clone() else { return Start::Empty };
        let raise = match s.raising {
            Some(_) => None,
            None => {
                s.raising = Some(Low::Top);
                let in_flight = Low::of(s.in_flight.keys().next().map(Vec::as_slice));
                Some(Raise { floor: self, in_flight, used: false })
            }
        };
        Start::Seek { seek, raise }
    }
}

impl Raise<'_> {
    /// The walk's first key (`None`: it found none), in a snapshot taken
    /// after [`Floor::start`].
    pub fn first(mut self, first: Option<&[u8]>) {
        let mut s = self.floor.state();
        let since = s.raising.take().unwrap_or(Low::Top);
        s.floor = Low::of(first).min(std::mem::replace(&mut self.in_flight, Low::Top)).min(since);
        self.used = true;
    }
}

impl Drop for Raise<'_> {
    fn drop(&mut self) {
        if !self.used {
            // Unused: the floor stays where writers have lowered it.
            self.floor.state().raising = None;
        }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        let mut s = self.floor.state();
        if let Some(n) = s.in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                s.in_flight.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seek(f: &Floor, from: &[u8]) -> (Option<Vec<u8>>, bool) {
        match f.start(from) {
            Start::Empty => (None, false),
            Start::Seek { seek, raise } => (Some(seek), raise.is_some()),
        }
    }

    #[test]
    fn a_walk_raises_the_floor_to_its_first_key_and_writes_lower_it() {
        let f = Floor::default();
        assert_eq!(seek(&f, b""), (Some(vec![]), true), "a new floor is the lowest key");
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        r.first(Some(b"m"));
        assert_eq!(f.low(), Low::Key(b"m".to_vec()));
        assert_eq!(seek(&f, b""), (Some(b"m".to_vec()), true));
        assert_eq!(seek(&f, b"x"), (Some(b"x".to_vec()), false), "a walk from above the floor cannot raise it");
        drop(f.writing(b"c"));
        assert_eq!(f.low(), Low::Key(b"c".to_vec()));
        drop(f.writing(b"z"));
        assert_eq!(f.low(), Low::Key(b"c".to_vec()), "a higher put leaves the floor");
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        r.first(None);
        assert_eq!(f.low(), Low::Top);
        assert_eq!(seek(&f, b""), (None, false), "an empty table needs no walk");
        drop(f.writing(b"q"));
        assert_eq!(seek(&f, b""), (Some(b"q".to_vec()), true));
    }

    #[test]
    fn writes_in_flight_or_begun_during_a_walk_keep_the_floor_at_their_keys() {
        // In flight when the walk began: its key may be missing from the
        // walk's snapshot.
        let f = Floor::default();
        let w = f.writing(b"d");
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        r.first(Some(b"k"));
        assert_eq!(f.low(), Low::Key(b"d".to_vec()));
        drop(w);

        // Begun (and even finished) during the walk.
        let f = Floor::default();
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        drop(f.writing(b"e"));
        r.first(Some(b"k"));
        assert_eq!(f.low(), Low::Key(b"e".to_vec()));

        // A write that finished before the walk began is in its snapshot.
        let f = Floor::default();
        drop(f.writing(b"e"));
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        r.first(Some(b"k"));
        assert_eq!(f.low(), Low::Key(b"k".to_vec()));
    }

    #[test]
    fn one_walk_raises_at_a_time_and_an_unused_right_is_given_back() {
        let f = Floor::default();
        let Start::Seek { raise: Some(r), .. } = f.start(b"") else { panic!() };
        assert_eq!(seek(&f, b""), (Some(vec![]), false), "a second walk only reads");
        drop(r);
        assert_eq!(f.low(), Low::Key(vec![]), "an unused raise leaves the floor");
        let w = f.writing(b"a");
        assert_eq!(seek(&f, b""), (Some(vec![]), true), "the right is back");
        drop(w);
    }

    #[test]
    fn a_floor_shared_by_threads_never_rises_above_a_live_key() {
        // A model: keys live in a shared set; writers insert (after
        // announcing), walkers raise from a snapshot taken after start.
        use std::collections::BTreeSet;
        let live = Mutex::new(BTreeSet::<Vec<u8>>::new());
        let f = Floor::default();
        std::thread::scope(|s| {
            for t in 0..3u8 {
                let (live, f) = (&live, &f);
                s.spawn(move || {
                    for i in 0..2000u32 {
                        let key = [&[(i % 251) as u8], &[t][..]].concat();
                        let w = f.writing(&key);
                        std::thread::yield_now(); // a walk may start before the batch is applied
                        live.lock().unwrap().insert(key.clone());
                        drop(w);
                        if i % 3 == 0 {
                            live.lock().unwrap().remove(&key);
                        }
                    }
                });
            }
            let (live, f) = (&live, &f);
            s.spawn(move || {
                for _ in 0..4000 {
                    if let Start::Seek { raise: Some(r), seek } = f.start(b"") {
                        let snapshot = live.lock().unwrap().clone();
                        let first = snapshot.range(seek..).next().cloned();
                        r.first(first.as_deref());
                    }
                    let now = live.lock().unwrap().clone();
                    let low = f.low();
                    // Keys inserted from here on lower the floor themselves;
                    // every key live at this moment must be at or above it.
                    if let Some(lowest) = now.iter().next() {
                        assert!(Low::Key(lowest.clone()) >= low, "floor {low:?} above live key {lowest:?}");
                    }
                }
            });
        });
    }
}
