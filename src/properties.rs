//! Property tests of the codecs (wire vocabulary, SMTP DATA framing, the
//! store's key layouts): round trips, ordering, and no panics on arbitrary
//! input.

use proptest::prelude::*;

use crate::proto::address::Address;
use crate::proto::range::{RangeAnswer, resolve};
use crate::smtp_in::data::{DataReader, DataStatus};
use crate::store::schema::{parse_queue_key, queue_key};

proptest! {
    #[test]
    fn addresses_round_trip(local in "[a-zA-Z0-9][a-zA-Z0-9+_-]{0,20}", domain in "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){1,3}") {
        let a: Address = format!("{local}@{domain}").parse().unwrap();
        let b: Address = a.to_string().parse().unwrap();
        prop_assert_eq!(a.key(), b.key());
        prop_assert_eq!(a.domain(), domain.as_str());
    }

    #[test]
    fn address_parsing_never_panics(s in "\\PC{0,80}") {
        let _ = s.parse::<Address>();
    }

    #[test]
    fn queue_keys_round_trip_and_sort_by_time(a in any::<u64>(), b in any::<u64>(), ja in any::<[u8; 8]>(), jb in any::<[u8; 8]>(), kind in any::<u8>()) {
        let (ka, kb) = (queue_key(a, ja, kind), queue_key(b, jb, kind));
        prop_assert_eq!(parse_queue_key(&ka), Some((a, ja, kind)));
        if a < b {
            prop_assert!(ka < kb);
        }
    }

    #[test]
    fn ranges_stay_inside_the_content(h in "\\PC{0,30}", len in 0u64..10_000) {
        if let RangeAnswer::Partial { start, end } = resolve(Some(&h), len) {
            prop_assert!(start < end && end <= len);
        }
    }

    #[test]
    fn data_never_stores_a_bare_newline_and_splits_do_not_matter(body in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'a')], 0..200), cut in 0usize..200) {
        let mut input = body.clone();
        input.extend_from_slice(b"\r\n.\r\n");
        let whole = {
            let mut r = DataReader::new(1 << 20);
            let done = r.feed(&input);
            (done, r.finish())
        };
        let cut = cut.min(input.len());
        let split = {
            let mut r = DataReader::new(1 << 20);
            let first = r.feed(&input[..cut]);
            let done = match first {
                DataStatus::Done { consumed } => DataStatus::Done { consumed },
                DataStatus::More => match r.feed(&input[cut..]) {
                    DataStatus::Done { consumed } => DataStatus::Done { consumed: consumed + cut },
                    more => more,
                },
            };
            (done, r.finish())
        };
        prop_assert_eq!(&whole, &split);
        if let (DataStatus::Done { .. }, Ok(message)) = &whole {
            prop_assert!(message.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'));
            prop_assert!(!message.iter().enumerate().any(|(i, &c)| c == b'\r' && message.get(i + 1) != Some(&b'\n')));
        }
    }
}

proptest! {
    #[test]
    fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = crate::proto::hex::encode(&bytes);
        prop_assert_eq!(crate::proto::hex::decode(&text), Some(bytes));
        prop_assert_eq!(crate::proto::hex::decode(&text.to_uppercase()).map(|b| crate::proto::hex::encode(&b)), Some(text));
    }

    #[test]
    fn traffic_keys_round_trip_and_sort_by_hour(domain in "[a-z]{1,12}\\.test", a in any::<u64>(), b in any::<u64>(), side in any::<u8>()) {
        use crate::store::schema::{parse_traffic_key, traffic_key, traffic_prefix};
        let (ka, kb) = (traffic_key(&domain, a, side), traffic_key(&domain, b, side));
        prop_assert_eq!(parse_traffic_key(&traffic_prefix(&domain), &ka), Some((a, side)));
        if a < b {
            prop_assert!(ka < kb);
        }
    }

    #[test]
    fn inbox_keys_round_trip(user in "[a-z]{1,10}@[a-z]{1,10}\\.test", seq in any::<u64>()) {
        use crate::store::schema::{inbox_key, inbox_key_seq, inbox_prefix};
        let k = inbox_key(&user, seq);
        prop_assert!(k.starts_with(&inbox_prefix(&user)));
        prop_assert_eq!(inbox_key_seq(&k), Some(seq));
    }
}
