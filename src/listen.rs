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
