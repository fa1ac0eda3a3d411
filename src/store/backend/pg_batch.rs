//! A batch as the fewest PostgreSQL statements, sans-IO. The batch's
//! operations are folded, in order, into what the batch leaves behind under
//! each key (one [`Effect`]); the effects of one kind on one table become
//! one statement over arrays (`UNNEST`). A submission to 10,000 recipients
//! is then a handful of statements instead of tens of thousands, each a
//! round of parsing, planning and index work on the server. Keys go in
//! sorted order, so two transactions that touch the same rows lock them in
//! the same order.

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;

use super::{Op, is_counter};
use crate::store::schema::parse_account_value;

/// What a batch leaves under one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The key holds this value.
    Put(Vec<u8>),
    /// The key is gone.
    Delete,
    /// A counter's sums grow by these (from zero if it has none).
    Add(i64, i64),
    /// A counter holds exactly these sums.
    Set(i64, i64),
}

/// The batch's effect under each key it touches, applying its operations
/// in order: a later put or delete replaces what came before; an addition
/// adds to a counter's earlier sums (to zero after a delete).
pub fn fold(ops: Vec<Op>) -> BTreeMap<(&'static str, Vec<u8>), Effect> {
    let mut effects = BTreeMap::new();
    for op in ops {
        match op {
            Op::Put { table, key, value } if is_counter(table) => {
                let (bytes, messages) = parse_account_value(&value);
                effects.insert((table, key), Effect::Set(bytes, messages));
            }
            Op::Put { table, key, value } => {
                effects.insert((table, key), Effect::Put(value));
            }
            Op::Delete { table, key } => {
                effects.insert((table, key), Effect::Delete);
            }
            Op::Add { table, key, bytes, messages } => {
                let now = match effects.remove(&(table, key.clone())) {
                    None => Effect::Add(bytes, messages),
                    Some(Effect::Add(b, m)) => Effect::Add(b + bytes, m + messages),
                    Some(Effect::Set(b, m)) => Effect::Set(b + bytes, m + messages),
                    Some(Effect::Delete | Effect::Put(_)) => Effect::Set(bytes, messages),
                };
                effects.insert((table, key), now);
            }
        }
    }
    effects
}

/// One statement of a batch and its array parameters.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    bytes: Vec<i64>,
    messages: Vec<i64>,
}

impl Statement {
    fn new(sql: String) -> Statement {
        Statement { sql, keys: Vec::new(), values: Vec::new(), bytes: Vec::new(), messages: Vec::new() }
    }

    /// The parameters `sql` takes, in order.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match (self.values.is_empty(), self.bytes.is_empty()) {
            (false, _) => vec![&self.keys, &self.values],
            (true, false) => vec![&self.keys, &self.bytes, &self.messages],
            (true, true) => vec![&self.keys],
        }
    }
}

/// The kinds of statement, one per table at most for each.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Delete,
    Put,
    Set,
    Add,
}

fn sql(kind: Kind, name: &str) -> String {
    let counters = "SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::int8[]) ON CONFLICT (k) DO UPDATE SET";
    match kind {
        Kind::Delete => format!("DELETE FROM {name} WHERE k = ANY($1::bytea[])"),
        Kind::Put => format!(
            "INSERT INTO {name} (k, v) SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
             ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
        ),
        Kind::Set => format!(
            "INSERT INTO {name} (k, bytes, messages) {counters} bytes = EXCLUDED.bytes, messages = EXCLUDED.messages"
        ),
        Kind::Add => format!(
            "INSERT INTO {name} (k, bytes, messages) {counters} \
             bytes = {name}.bytes + EXCLUDED.bytes, messages = {name}.messages + EXCLUDED.messages"
        ),
    }
}

/// The statements that apply `ops` in one transaction; `table_name` names
/// a store table's SQL table. Their order does not matter: no two of them
/// touch the same key.
pub fn statements(ops: Vec<Op>, table_name: impl Fn(&str) -> String) -> Vec<Statement> {
    let mut out: BTreeMap<(&'static str, Kind), Statement> = BTreeMap::new();
    for ((table, key), effect) in fold(ops) {
        let kind = match effect {
            Effect::Delete => Kind::Delete,
            Effect::Put(_) => Kind::Put,
            Effect::Set(..) => Kind::Set,
            Effect::Add(..) => Kind::Add,
        };
        let st = out.entry((table, kind)).or_insert_with(|| Statement::new(sql(kind, &table_name(table))));
        st.keys.push(key);
        match effect {
            Effect::Delete => {}
            Effect::Put(v) => st.values.push(v),
            Effect::Set(b, m) | Effect::Add(b, m) => {
                st.bytes.push(b);
                st.messages.push(m);
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::counter_value;
    use crate::store::schema::{CF_ACCOUNTS, CF_QUEUE};

    fn put(key: &str, v: &str) -> Op {
        Op::Put { table: CF_QUEUE, key: key.into(), value: v.into() }
    }
    fn del(table: &'static str, key: &str) -> Op {
        Op::Delete { table, key: key.into() }
    }
    fn add(key: &str, bytes: i64, messages: i64) -> Op {
        Op::Add { table: CF_ACCOUNTS, key: key.into(), bytes, messages }
    }
    fn set(key: &str, bytes: i64, messages: i64) -> Op {
        Op::Put { table: CF_ACCOUNTS, key: key.into(), value: counter_value(bytes, messages) }
    }

    #[test]
    fn a_batch_folds_into_what_it_leaves_under_each_key() {
        use Effect::*;
        let cases: Vec<(&str, Vec<Op>, Effect)> = vec![
            ("one put", vec![put("k", "a")], Put(b"a".to_vec())),
            ("the later put wins", vec![put("k", "a"), put("k", "b")], Put(b"b".to_vec())),
            ("put then delete", vec![put("k", "a"), del(CF_QUEUE, "k")], Delete),
            ("delete then put", vec![del(CF_QUEUE, "k"), put("k", "a")], Put(b"a".to_vec())),
            ("additions sum", vec![add("k", 10, 1), add("k", -3, -1)], Add(7, 0)),
            ("a whole counter then an addition", vec![set("k", 5, 2), add("k", 1, 1)], Set(6, 3)),
            ("an addition then a whole counter", vec![add("k", 1, 1), set("k", 5, 2)], Set(5, 2)),
            ("an addition after a delete starts from zero", vec![del(CF_ACCOUNTS, "k"), add("k", 4, 1)], Set(4, 1)),
            ("a delete after an addition", vec![add("k", 4, 1), del(CF_ACCOUNTS, "k")], Delete),
        ];
        for (what, ops, want) in cases {
            let folded = fold(ops);
            assert_eq!(folded.len(), 1, "{what}");
            assert_eq!(folded.into_values().next(), Some(want), "{what}");
        }
    }

    #[test]
    fn one_statement_per_table_and_kind_with_keys_in_order() {
        let ops = vec![
            put("b", "2"),
            put("a", "1"),
            del(CF_QUEUE, "c"),
            add("x", 1, 1),
            add("y", 2, 1),
            set("z", 9, 9),
            put("c", "3"),
            del(CF_QUEUE, "d"),
        ];
        let st = statements(ops, |t| format!("imgate_{t}"));
        let summary: Vec<(bool, bool, usize)> =
            st.iter().map(|s| (s.sql.starts_with("DELETE"), s.sql.contains("+ EXCLUDED"), s.keys.len())).collect();
        // queue: delete {d}, put {a, b, c}; accounts: set {z}, add {x, y}.
        assert_eq!(st.len(), 4, "{st:#?}");
        assert!(summary.contains(&(true, false, 1)), "{summary:?}");
        assert!(summary.contains(&(false, true, 2)), "{summary:?}");
        let puts = st.iter().find(|s| s.sql.contains("v = EXCLUDED.v")).unwrap();
        assert_eq!(puts.keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(puts.values, vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
        assert_eq!(puts.params().len(), 2);
        let adds = st.iter().find(|s| s.sql.contains("+ EXCLUDED")).unwrap();
        assert_eq!((adds.bytes.clone(), adds.messages.clone()), (vec![1, 2], vec![1, 1]));
        assert_eq!(adds.params().len(), 3);
    }
}
