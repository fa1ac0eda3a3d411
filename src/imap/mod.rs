//! IMAP for IM2000 users: their inbox (the notifications filed for them,
//! each message pulled from its sender's store when a client reads it) and
//! folders, for the mail clients they already have.
//!
//! - [`session`] — the states and commands of RFC 9051/3501;
//! - [`selected`] — the selected folder: FETCH, STORE, SEARCH, EXPUNGE,
//!   COPY/MOVE, APPEND, and changes made elsewhere;
//! - [`search`] — SEARCH criteria, sans-IO;
//! - [`message`] — ENVELOPE, BODYSTRUCTURE and sections, sans-IO;
//! - [`content`] — where an entry's octets come from (held, own store,
//!   cache, or a pull verified against the digest);
//! - [`connection`] — one connection's IO loop over imap-next's server
//!   flow (literals, AUTHENTICATE, IDLE), STARTTLS and implicit TLS.

pub mod connection;
pub mod content;
pub mod message;
pub mod search;
pub mod selected;
pub mod session;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::Shared;
use crate::limits::{ConnectionSlots, NoSlot};
use crate::listen::ListenerTls;

/// Accepts IMAP connections until `shutdown`, then waits up to `drain` for
/// open sessions (told `* BYE` at their next wait). `slots`: the IMAP
/// pool, a total and a share per client address.
pub async fn listen(
    s: Shared,
    listener: TcpListener,
    tls: ListenerTls,
    slots: ConnectionSlots,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let tracker = TaskTracker::new();
    while let Some((mut tcp, peer)) = crate::listen::next_connection(&listener, &shutdown).await {
        let permit = match slots.take(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                let (what, line) = match why {
                    NoSlot::Full => ("imap_sessions", "* BYE [UNAVAILABLE] too many connections; try again later\r\n"),
                    NoSlot::PerAddress => {
                        ("imap_sessions_per_ip", "* BYE [UNAVAILABLE] too many connections from your address\r\n")
                    }
                };
                s.metrics.inc("imgate_rate_limited_total", "what", what);
                if !matches!(tls, ListenerTls::Implicit(_)) {
                    tracker.spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let _ = tcp.write_all(line.as_bytes()).await;
                    });
                }
                continue;
            }
        };
        let (s, tls, shutdown) = (s.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            connection::serve_connection(s, tcp, peer, tls, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!("IMAP sessions still open after the drain period");
    }
}
