//! The embedded engine: one RocksDB per node, a column family per table.
//! Counters are summed by a merge operator, so writers add to them without
//! reading and concurrent submissions share fsyncs; read-modify-write turns
//! are one process-wide mutex.

use std::path::Path;
use std::sync::Mutex;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use super::{Backend, BackendError, Batch, COUNTER_TABLES, Durability, ErrorKind, Exclusive, Op, Scan};
use crate::store::schema::{ALL_CFS, CF_BODIES, account_value, parse_account_value};

pub struct Rocks {
    db: DB,
    turn: Mutex<()>,
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
        Ok(Rocks { db, turn: Mutex::new(()) })
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

    fn scan(&self, table: &'static str, from: &[u8]) -> Scan<'_> {
        let it = self.db.iterator_cf(self.cf(table), IteratorMode::From(from, Direction::Forward));
        Box::new(it.map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(error)))
    }

    fn write(&self, batch: Batch, durability: Durability) -> Result<(), BackendError> {
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

#[cfg(test)]
mod tests {
    #[test]
    fn rocksdb_keeps_the_seam() {
        let dir = tempfile::tempdir().unwrap();
        super::super::check_engine(&super::Rocks::open(dir.path()).unwrap());
    }
}
