//! What mail leaving by SMTP needs beyond one delivery, kept by the node
//! and shared by every delivery: the DKIM keys it signs with ([`dkim`]),
//! the MTA-STS policies of recipient domains ([`mta_sts`]), and pooled
//! connections to legacy hosts and relays ([`pool`]). None of them knows
//! the node's context; `smtp_out` decides what to send where with them.

pub mod dkim;
pub mod mta_sts;
pub mod pool;
