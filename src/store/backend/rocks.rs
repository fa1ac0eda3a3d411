//! The embedded engine: one RocksDB per node, a column family per table.
//! Counters are summed by a merge operator, so writers add to them without
//! reading and concurrent submissions share fsyncs; read-modify-write turns
//! are one process-wide mutex. Walks from the start of the queue and the
//! expiry index seek past the deleted keys at their heads ([`Floor`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions,
};

use super::floor::{Floor, Raise, Start};
use super::{Backend, BackendError, Batch, COUNTER_TABLES, Durability, ErrorKind, Exclusive, HEAD_TABLES, Op, Scan};
use crate::store::schema::{ALL_CFS, CF_BODIES, account_value, parse_account_value};

pub struct Rocks {
    db: DB,
    turn: Mutex<()>,
    /// One per [`HEAD_TABLES`] table: this process alone writes the
    /// database, so it knows every write.
    floors: HashMap<&'static str, Floor>,
}

fn error(e: rocksdb::Error) -> BackendError {
    let text = e.to_string();
    let full = text.contains("No space left") || text.contains("NoSpace") || text.contains("Disk quota exceeded");
    BackendError::new(if full { ErrorKind::DiskFull } else { ErrorKind::Other }, text)
}

/// The counters' merge operator: values and changes add up.
fn merge_counters(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let (mut bytes, mut messages) = existing.map_or((0, 0), parse_account_value);
    for op in operands {
        let (b, m) = parse_account_value(op);
        bytes = bytes.saturating_add(b);
        messages = messages.saturating_add(m);
    }
    Some(account_value(bytes, messages).to_vec())
}

impl Rocks {
    /// Opens (creating if needed) the database under `dir`.
    pub fn open(dir: &Path) -> Result<Rocks, BackendError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            // A counter merged into thousands of times (one user's inbox,
            // one busy sender's quota) would make every read of it walk
            // all its operands in the memtable: past 16, a merge is folded
            // into one value as it is written.
            o.set_max_successive_merges(16);
            // Many point reads look for what is not there (has this
            // notification been filed already?): a bloom filter per table
            // file answers those without searching each file's blocks.
            let mut table = BlockBasedOptions::default();
            table.set_bloom_filter(10.0, false);
            table.set_whole_key_filtering(true);
            o.set_block_based_table_factory(&table);
            if COUNTER_TABLES.contains(name) {
                o.set_merge_operator_associative("imgate_counter_sum", merge_counters);
            }
            if *name == CF_BODIES {
                // Large values go to blob files, out of the compaction path.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(4096);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(error)?;
        let floors = HEAD_TABLES.iter().map(|t| (*t, Floor::default())).collect();
        Ok(Rocks { db, turn: Mutex::new(()), floors })
    }

    fn cf(&self, name: &str) -> &ColumnFamily {
        self.db.cf_handle(name).expect("every column family is opened")
    }
}

impl Backend for Rocks {
    fn get(&self, table: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError> {
        self.db.get_cf(self.cf(table), key).map_err(error)
    }

    fn get_many(&self, table: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let cf = self.cf(table);
        self.db.multi_get_cf(keys.iter().map(|k| (cf, k))).into_iter().map(|r| r.map_err(error)).collect()
    }

    fn scan(&self, table: &'static str, from: &[u8], below: Option<&[u8]>) -> Scan<'_> {
        let (seek, raise) = match self.floors.get(table).map(|f| f.start(from)) {
            None => (from.to_vec(), None),
            Some(Start::Empty) => return Box::new(std::iter::empty()),
            Some(Start::Seek { seek, raise }) => (seek, raise),
        };
        let mut read = ReadOptions::default();
        if let Some(below) = below {
            read.set_iterate_upper_bound(below);
        }
        // The iterator's snapshot is taken here, after the floor's start.
        let it = self.db.iterator_cf_opt(self.cf(table), read, IteratorMode::From(&seek, Direction::Forward));
        let it = it.map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(error));
        Box::new(Raising { it, raise, below: below.map(<[u8]>::to_vec) })
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), BackendError> {
        // Announced to the floors before the batch is applied, done when
        // this returns (applied or not).
        let _writing: Vec<_> = self
            .floors
            .iter()
            .filter_map(|(t, floor)| {
                let puts = batch.ops().iter().filter_map(|op| match op {
                    Op::Put { table, key, .. } if table == t => Some(key),
                    _ => None,
                });
                puts.min().map(|lowest| floor.writing(lowest))
            })
            .collect();
        let mut b = WriteBatch::default();
        for op in batch.ops() {
            match op {
                Op::Put { table, key, value } => b.put_cf(self.cf(table), key, value),
                Op::Delete { table, key } => b.delete_cf(self.cf(table), key),
                Op::Add { table, key, bytes, messages } => {
                    b.merge_cf(self.cf(table), key, account_value(*bytes, *messages))
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(durability == Durability::Durable);
        self.db.write_opt(b, &wo).map_err(error)
    }

    fn exclusive(&self) -> Result<Exclusive<'_>, BackendError> {
        Ok(Box::new(self.turn.lock().unwrap_or_else(|p| p.into_inner())))
    }
}

/// A walk that hands its first key to the floor's raise (or its bound, if
/// it found nothing below it: nothing live lies there).
struct Raising<'a, I> {
    it: I,
    raise: Option<Raise<'a>>,
    below: Option<Vec<u8>>,
}

impl<I: Iterator<Item = Result<super::Entry, BackendError>>> Iterator for Raising<'_, I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.it.next();
        if let Some(raise) = self.raise.take() {
            match &item {
                Some(Ok((key, _))) => raise.first(Some(key)),
                None => raise.first(self.below.as_deref()),
                Some(Err(_)) => drop(raise),
            }
        }
        item
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rocksdb_keeps_the_seam() {
        let dir = tempfile::tempdir().unwrap();
        super::super::check_engine(&super::Rocks::open(dir.path()).unwrap());
    }

    #[test]
    fn walks_from_the_head_seek_past_deleted_keys_and_see_new_ones() {
        use super::super::floor::Low;
        use super::super::{Backend, Batch, Durability};
        use crate::store::schema::CF_QUEUE;
        let dir = tempfile::tempdir().unwrap();
        let db = super::Rocks::open(dir.path()).unwrap();
        let keys = |from: &[u8]| -> Vec<Vec<u8>> { db.scan(CF_QUEUE, from, None).map(|e| e.unwrap().0).collect() };
        let write = |put: &[&[u8]], delete: &[&[u8]]| {
            let mut b = Batch::default();
            put.iter().for_each(|k| b.put(CF_QUEUE, k, b"v"));
            delete.iter().for_each(|k| b.delete(CF_QUEUE, k));
            db.write(b, Durability::Lazy).unwrap();
        };
        write(&[b"b", b"c", b"d", b"e"], &[]);
        write(&[], &[b"b", b"c"]);
        assert_eq!(keys(b""), vec![b"d".to_vec(), b"e".to_vec()]);
        assert_eq!(db.floors[CF_QUEUE].low(), Low::Key(b"d".to_vec()), "the walk raised the floor");
        write(&[b"a"], &[]);
        assert_eq!(db.floors[CF_QUEUE].low(), Low::Key(b"a".to_vec()), "a put below lowers it");
        assert_eq!(keys(b""), vec![b"a".to_vec(), b"d".to_vec(), b"e".to_vec()]);
        assert_eq!(keys(b"b"), vec![b"d".to_vec(), b"e".to_vec()]);
        write(&[], &[b"a", b"d", b"e"]);
        assert_eq!(keys(b""), Vec::<Vec<u8>>::new());
        assert_eq!(db.floors[CF_QUEUE].low(), Low::Top);
        write(&[b"z", b"y"], &[]);
        assert_eq!(keys(b""), vec![b"y".to_vec(), b"z".to_vec()]);
        // A walk that found nothing below its bound raises the floor to it.
        write(&[], &[b"y"]);
        assert_eq!(db.scan(CF_QUEUE, b"", Some(b"yy")).count(), 0);
        assert_eq!(db.floors[CF_QUEUE].low(), Low::Key(b"yy".to_vec()));
        assert_eq!(keys(b""), vec![b"z".to_vec()]);
        // Another table's floor is its own.
        assert_eq!(db.floors[crate::store::schema::CF_EXPIRY].low(), Low::Key(vec![]));
    }
}
