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
use tokio_util::task::TaskTracker;

use crate::context::Shared;
use crate::limits::{ConnectionSlots, NoSlot};
use reply::Reply;
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
    let tracker = TaskTracker::new();
    while let Some((mut tcp, peer)) = crate::listen::next_connection(&listener, &shutdown).await {
        let permit = match slots.take(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                let (what, busy) = match why {
                    NoSlot::Full => {
                        ("smtp_sessions", Reply::new(421, "4.3.2", "Too many connections; try again later"))
                    }
                    NoSlot::PerAddress => {
                        ("smtp_sessions_per_ip", Reply::new(421, "4.7.0", "Too many connections from your address"))
                    }
                };
                s.metrics.inc("imgate_rate_limited_total", "what", what);
                if matches!(tls, ListenerTls::Implicit(_)) {
                    // A TLS client could not read a plain-text reply.
                    continue;
                }
                tracker.spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let _ = tcp.write_all(&busy.to_wire()).await;
                });
                continue;
            }
        };
        let (s, tls, shutdown) = (s.clone(), tls.clone(), shutdown.clone());
        tracker.spawn(async move {
            connection::serve_connection(s, kind, tcp, peer, tls, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
        tracing::warn!("SMTP sessions still open after the drain period");
    }
}
