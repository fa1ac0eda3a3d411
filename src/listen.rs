//! TCP listening shared by the HTTP and SMTP services: bind at start-up (so a
//! taken port is a start-up error), then accept until shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

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
