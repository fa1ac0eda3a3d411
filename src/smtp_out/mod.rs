//! SMTP out: IM2000 mail for recipients still on SMTP. The gateway is such a
//! recipient's notification agent; for each accepted notification it pulls
//! the message from the sender's store, adds one Received header, delivers it
//! to the domain's legacy host, and reports the outcome to the store —
//! silence and un-pin after `250`, refuse with the reply after a `5xx` —
//! never a bounce message. Late bounces come back to a per-delivery return
//! path on the gateway's MX ([`dsn`]) and become the same refusal.

pub mod deliver;
pub mod dsn;
pub mod hosts;
pub mod probe;
pub mod render;
