//! What every part of a running node shares: configuration, store, clock,
//! peer client, users, and the doorbell that wakes the queue worker.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::im2000::auth::Users;
use crate::im2000::client::PeerClient;
use crate::im2000::error::ApiError;
use crate::store::{Store, StoreError};

pub struct Context {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub peers: PeerClient,
    pub users: Users,
    /// SPF/DKIM/DMARC checks for SMTP mail, through the node's resolver.
    pub authenticator: Option<mail_auth::MessageAuthenticator>,
    /// SMTP transports (pooled connections, per-host limits) for deliveries.
    pub transports: crate::smtp_out::pool::Transports,
    pub metrics: crate::metrics::Metrics,
    /// Failed authentications, keyed `ip:…` and `user:…`.
    pub auth_failures: crate::limits::Limiter,
    /// Lookups of unknown message identifiers, keyed `ip:…`.
    pub misses: crate::limits::Limiter,
    /// Rung when new work is queued, so the worker need not wait its timer.
    pub wake: Notify,
}

pub type Shared = Arc<Context>;

impl Context {
    /// Runs store work (RocksDB calls, fsync) off the async threads.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::Storage(StoreError::Corrupt(format!("store task failed: {e}"))))
    }
}
