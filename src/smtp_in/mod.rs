//! SMTP in: the MX and submission listeners. Mail accepted here becomes a
//! stored IM2000 message with a notification per recipient.
//!
//! - [`session`] — the SMTP state machine, sans-IO (commands parsed by
//!   smtp-proto, framing and DATA ours);
//! - [`data`] — the DATA phase: strict `<CRLF>.<CRLF>`, limits;
//! - [`policy`] — who may send to whom, decided at RCPT;
//! - [`accept`] — end of data: sender checks, Received header, store;
//! - [`connection`] — one connection's IO loop; [`listen`] the accept loop.

pub mod accept;
pub mod connection;
pub mod data;
pub mod pace;
pub mod policy;
pub mod reply;
pub mod session;
pub mod verdicts;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::limits::ConnectionSlots;
use crate::listen::Pool;
use session::ListenerKind;

pub use crate::listen::ListenerTls;

/// Accepts connections until `shutdown`, then waits up to `drain` for open
/// sessions (which are told 421 at their next read). `slots` is this kind
/// of listener's pool: a total, and a share per client address.
pub async fn listen(
    s: Shared,
    kind: ListenerKind,
    listener: TcpListener,
    tls: ListenerTls,
    slots: ConnectionSlots,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let pool = Pool {
        slots,
        drain,
        full: ("smtp_sessions", b"421 4.3.2 Too many connections; try again later\r\n"),
        per_address: ("smtp_sessions_per_ip", b"421 4.7.0 Too many connections from your address\r\n"),
    };
    let (ctx, t, stop) = (s.clone(), tls.clone(), shutdown.clone());
    let serve = move |tcp, peer| connection::serve_connection(ctx.clone(), kind, tcp, peer, t.clone(), stop.clone());
    crate::listen::serve_mail(s, listener, tls, pool, shutdown, serve).await;
}
