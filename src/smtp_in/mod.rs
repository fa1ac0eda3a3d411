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

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::Shared;
use reply::Reply;
use session::ListenerKind;

/// Accepts connections until `shutdown`, then waits up to `drain` for open
/// sessions (which are told 421 at their next read).
pub async fn listen(
    s: Shared,
    kind: ListenerKind,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    sessions: Arc<Semaphore>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let tracker = TaskTracker::new();
    while let Some((mut tcp, peer)) = crate::listen::next_connection(&listener, &shutdown).await {
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracker.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let busy = Reply::new(421, "4.3.2", "Too many connections; try again later");
                let _ = tcp.write_all(&busy.to_wire()).await;
            });
            continue;
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
