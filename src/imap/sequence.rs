//! IMAP sequence sets (RFC 9051 §9), sans-IO: which numbers a set names
//! when `*` stands for the largest.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

/// Whether `n` is in `set`, `*` being `largest` (RFC 9051 §9: a range's
/// ends may come in either order).
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    set.0.as_ref().iter().any(|s| {
        let (lo, hi) = bounds(s, largest);
        lo <= n && n <= hi
    })
}

fn value(v: &SeqOrUid, largest: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    }
}

pub fn bounds(s: &Sequence, largest: u32) -> (u32, u32) {
    match s {
        Sequence::Single(v) => (value(v, largest), value(v, largest)),
        Sequence::Range(a, b) => {
            let (a, b) = (value(a, largest), value(b, largest));
            (a.min(b), a.max(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::try_from(s).unwrap()
    }

    #[test]
    fn sets_against_numbers() {
        let cases = [
            ("1:3", 2, 10, true),
            ("5:*", 10, 10, true),
            ("*:5", 4, 10, false),
            ("7,9", 8, 10, false),
            ("12:*", 10, 10, true),
        ];
        for (s, n, largest, want) in cases {
            assert_eq!(in_set(&set(s), n, largest), want, "{s} {n} {largest}");
        }
    }
}
