//! TCP listening shared by the HTTP, SMTP and IMAP services: bind at start-up (so a
//! taken port is a start-up error), then accept until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How a mail listener (SMTP, IMAP) offers TLS.
#[derive(Clone)]
pub enum ListenerTls {
    /// No certificate: plain text only.
    None,
    /// STARTTLS (RFC 3207, RFC 9051 §6.2.1).
    StartTls(tokio_rustls::TlsAcceptor),
    /// TLS from the first octet (RFC 8314: ports 465 and 993).
    Implicit(tokio_rustls::TlsAcceptor),
}

/// The server side of a TLS handshake, within 30 seconds.
pub async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Binds every address now and returns the bound listeners.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::new();
    for a in addrs {
        out.push(TcpListener::bind(a).await.map_err(|e| format!("cannot listen on {a}: {e}"))?);
    }
    Ok(out)
}

/// The next connection, or `None` once `shutdown` is cancelled. Accept
/// errors (out of file descriptors, say) are logged and retried after a
/// pause rather than ending the listener.
pub async fn next_connection(listener: &TcpListener, shutdown: &CancellationToken) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// A mail listener's (SMTP, IMAP) pool of sessions: its slots (a total and
/// a share per client address), what it says to a connection with no room
/// — the metric name and the line, per reason — and how long open sessions
/// may take to end at shutdown.
pub struct Pool {
    pub slots: crate::limits::ConnectionSlots,
    pub full: (&'static str, &'static [u8]),
    pub per_address: (&'static str, &'static [u8]),
    pub drain: Duration,
}

/// Accepts connections until `shutdown`, each in a slot of the pool, served
/// by `serve`; one with no slot is told so (not over implicit TLS, whose
/// client could not read it) and closed. Then waits out the drain period.
pub async fn serve_mail<F, Fut>(
    ctx: crate::context::Shared,
    listener: TcpListener,
    tls: ListenerTls,
    pool: Pool,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tracker = tokio_util::task::TaskTracker::new();
    while let Some((mut tcp, peer)) = next_connection(&listener, &shutdown).await {
        let permit = match pool.slots.take(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                let (what, line) = match why {
                    crate::limits::NoSlot::Full => pool.full,
                    crate::limits::NoSlot::PerAddress => pool.per_address,
                };
                ctx.metrics.inc("imgate_rate_limited_total", "what", what);
                if !matches!(tls, ListenerTls::Implicit(_)) {
                    tracker.spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let _ = tcp.write_all(line).await;
                    });
                }
                continue;
            }
        };
        let session = serve(tcp, peer);
        tracker.spawn(async move {
            session.await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(pool.drain, tracker.wait()).await.is_err() {
        tracing::warn!(drain = ?pool.drain, "mail sessions still open after the drain period");
    }
}
