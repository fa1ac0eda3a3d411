//! SMTP out: IM2000 mail for recipients still on SMTP. The gateway is such a
//! recipient's notification agent; for each accepted notification it pulls
//! the message from the sender's store, adds one Received header, delivers it
//! to the domain's legacy host, and reports the outcome to the store —
//! silence and un-pin after `250`, refuse with the reply after a `5xx` —
//! never a bounce message.

pub mod deliver;
pub mod render;
