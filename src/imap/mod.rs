//! IMAP for IM2000 users: their inbox (the notifications filed for them,
//! each message pulled from its sender's store when a client reads it) and
//! folders, for the mail clients they already have.
//!
//! - [`session`] — the states and commands of RFC 9051/3501;
//! - `session::selected` (private) — the selected folder: FETCH, STORE, SEARCH, EXPUNGE,
//!   COPY/MOVE, APPEND, and changes made elsewhere;
//! - [`search`] — SEARCH criteria, sans-IO;
//! - [`extended`] — the IMAP4rev2 syntax the codec lacks (ESEARCH,
//!   SEARCHRES's `$`, LIST-EXTENDED), rewritten before parsing, sans-IO;
//! - [`utf7`] — folder names in modified UTF-7 and UTF-8, sans-IO;
//! - [`message`] — ENVELOPE, BODYSTRUCTURE and sections, sans-IO;
//! - [`cache`] — what a node's sessions share (parsed envelopes);
//! - [`content`] — where an entry's octets come from (held, own store,
//!   cache, or a pull verified against the digest);
//! - [`connection`] — one connection's IO loop over imap-next's server
//!   flow (literals, AUTHENTICATE, IDLE), STARTTLS and implicit TLS.

pub mod cache;
pub mod connection;
pub mod content;
pub mod extended;
pub mod message;
pub mod search;
pub mod sequence;
pub mod session;
pub mod utf7;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::limits::ConnectionSlots;
use crate::listen::{ListenerTls, Pool};

/// Accepts IMAP connections until `shutdown`, then waits up to `drain` for
/// open sessions (told `* BYE` at their next wait). `slots`: the IMAP
/// pool, a total and a share per client address.
pub async fn listen(
    s: Shared,
    listener: TcpListener,
    tls: ListenerTls,
    slots: ConnectionSlots,
    cache: std::sync::Arc<cache::Shared>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let pool = Pool {
        slots,
        drain,
        full: ("imap_sessions", b"* BYE [UNAVAILABLE] too many connections; try again later\r\n"),
        per_address: ("imap_sessions_per_ip", b"* BYE [UNAVAILABLE] too many connections from your address\r\n"),
    };
    let (ctx, t, stop) = (s.clone(), tls.clone(), shutdown.clone());
    let serve =
        move |tcp, peer| connection::serve_connection(ctx.clone(), cache.clone(), tcp, peer, t.clone(), stop.clone());
    crate::listen::serve_mail(s, listener, tls, pool, shutdown, serve).await;
}
