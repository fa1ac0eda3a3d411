//! A notification request body as the public listener receives it: JSON
//! into the wire types, then the field checks the agent makes before it
//! goes near the network or the store.
#![no_main]

use imgate::proto::api::Notification;
use imgate::proto::{Address, RecipientId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<Vec<Notification>>(data) else { return };
    for n in &batch {
        let _ = n.recipient.parse::<Address>();
        let _ = n.sender.parse::<Address>();
        if let Ok(id) = n.id.parse::<RecipientId>() {
            assert_eq!(id.to_string().parse::<RecipientId>().ok(), Some(id));
        }
        let _ = imgate::proto::address::valid_domain(&n.store.to_lowercase());
        // What the agent would file must serialise again.
        serde_json::to_vec(n).unwrap();
    }
});
