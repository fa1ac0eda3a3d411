//! A party's network link: a TCP relay in front of its public server that
//! counts connections and bytes each way, and can be taken down (a host
//! that is off: connections are cut and new ones closed at once).
//!
//! DNS in the lab points at links, never at servers, so every byte that
//! crosses between parties is counted here, whatever protocol carries it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What crossed a link, counted at the relay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Connections relayed to the server.
    pub connections: u64,
    /// Connections closed at once because the server was down.
    pub refused: u64,
    /// Bytes from clients to the server.
    pub bytes_in: u64,
    /// Bytes from the server to clients.
    pub bytes_out: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    active: AtomicU64,
}

pub struct Link {
    /// Where clients connect (what DNS publishes).
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Relays connections on `listener` to `server`.
    pub fn start(listener: TcpListener, server: SocketAddr) -> std::io::Result<Link> {
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (up, watch_up) = watch::channel(true);
        let task = tokio::spawn(accept_loop(listener, server, counters.clone(), watch_up));
        Ok(Link { addr, counters, up, task })
    }

    /// Takes the party off the network (`false`) or back on (`true`).
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    pub fn traffic(&self) -> Traffic {
        let c = &self.counters;
        Traffic {
            connections: c.connections.load(Ordering::SeqCst),
            refused: c.refused.load(Ordering::SeqCst),
            bytes_in: c.bytes_in.load(Ordering::SeqCst),
            bytes_out: c.bytes_out.load(Ordering::SeqCst),
        }
    }

    /// Connections being relayed right now.
    pub fn active(&self) -> u64 {
        self.counters.active.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, server: SocketAddr, counters: Arc<Counters>, up: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: let connections close first.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if !*up.borrow() {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            drop(client);
            continue;
        }
        let Ok(upstream) = TcpStream::connect(server).await else {
            counters.refused.fetch_add(1, Ordering::SeqCst);
            continue;
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        counters.active.fetch_add(1, Ordering::SeqCst);
        let (counters, mut up) = (counters.clone(), up.clone());
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = upstream.into_split();
            let to_server = pump(cr, sw, &counters.bytes_in);
            let to_client = pump(sr, cw, &counters.bytes_out);
            tokio::select! {
                _ = async { tokio::join!(to_server, to_client) } => {}
                _ = up.wait_for(|up| !*up) => {}
            }
            counters.active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Copies one direction, counting, and passes the end of it on.
async fn pump(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
