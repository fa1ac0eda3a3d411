//! What IMAP shows of a message a store sent: any octets are parsed once,
//! and ENVELOPE, BODYSTRUCTURE and every section a client may ask for are
//! built and encoded as a FETCH response without panicking.
#![no_main]

use std::num::NonZeroU32;

use imap_codec::ResponseCodec;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::{MessageDataItem, Part, Section};
use imap_codec::imap_types::response::{Data, Response};
use imgate::imap::message::Parsed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = Parsed::new(data);
    let part = |n: &[u32]| Part(Vec1::try_from(n.iter().filter_map(|x| NonZeroU32::new(*x)).collect::<Vec<_>>()).unwrap());
    let sections = [
        None,
        Some(Section::Header(None)),
        Some(Section::Text(None)),
        Some(Section::Part(part(&[1]))),
        Some(Section::Part(part(&[2, 1]))),
        Some(Section::Mime(part(&[1]))),
        Some(Section::Header(Some(part(&[1])))),
        Some(Section::Text(Some(part(&[2])))),
    ];
    let mut items = vec![
        MessageDataItem::Envelope(p.envelope()),
        MessageDataItem::BodyStructure(p.body_structure(true)),
        MessageDataItem::Body(p.body_structure(false)),
    ];
    for s in &sections {
        if let Some(octets) = p.section(s.as_ref()) {
            let clean: Vec<u8> = octets.iter().map(|b| if *b == 0 { b' ' } else { *b }).collect();
            items.push(MessageDataItem::BodyExt {
                section: s.clone(),
                origin: None,
                data: imap_codec::imap_types::core::NString::try_from(clean).unwrap_or_default(),
            });
        }
    }
    let fetch = Data::Fetch { seq: NonZeroU32::MIN, items: Vec1::try_from(items).unwrap() };
    let _ = ResponseCodec::default().encode(&Response::Data(fetch)).dump();
});
