//! IM2000 wire vocabulary: identifiers, addresses, statuses, JSON shapes,
//! HTTP ranges and digests. Pure data and parsing — no IO, no tokio.

pub mod address;
pub mod api;
pub mod digest;
pub mod from;
pub mod header;
pub mod hex;
pub mod id;
pub mod range;
pub mod status;
pub mod units;

pub use address::Address;
pub use id::{MessageId, RecipientId};
pub use status::{NotificationStatus, ReadStatus};
