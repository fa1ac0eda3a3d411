//! What HTTP handlers take from a request before any store lookup: the
//! Range header, message and recipient identifiers in the path, addresses
//! in queries, hex cursors.
#![no_main]

use imgate::proto::range::{RangeAnswer, resolve};
use imgate::proto::{Address, MessageId, RecipientId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let len = data.len() as u64 * 7;
    match resolve(Some(text), len) {
        RangeAnswer::Partial { start, end } => assert!(start < end && end <= len, "{text:?}: {start}..{end} of {len}"),
        RangeAnswer::Full | RangeAnswer::Unsatisfiable => {}
    }
    if let Ok(a) = text.parse::<Address>() {
        assert_eq!(a.to_string().parse::<Address>().map(|b| b.key()).ok(), Some(a.key()));
    }
    let _ = text.parse::<RecipientId>();
    let _ = text.parse::<MessageId>();
    if let Some(bytes) = imgate::proto::hex::decode(text) {
        assert_eq!(imgate::proto::hex::encode(&bytes), text.to_lowercase());
    }
});
