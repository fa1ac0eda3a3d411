//! What a client sends an IMAP session, through the rewriter of the
//! IMAP4rev2 syntax imap-codec lacks and then the codec: never a panic,
//! and the rewriter's output does not depend on how reads split the
//! stream (the first byte picks a split point).
#![no_main]

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imgate::imap::extended::Rewriter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((split, input)) = data.split_first() else { return };
    let mut whole = Vec::new();
    Rewriter::new(1024).feed(input, &mut whole);
    let mut parts = Vec::new();
    let mut r = Rewriter::new(1024);
    let at = (*split as usize).min(input.len());
    r.feed(&input[..at], &mut parts);
    r.feed(&input[at..], &mut parts);
    assert_eq!(whole, parts, "the output depends on where the input was split");
    let codec = CommandCodec::default();
    let mut rest: &[u8] = &whole;
    while let Ok((remaining, _)) = codec.decode(rest) {
        if remaining.len() == rest.len() {
            break;
        }
        rest = remaining;
    }
});
