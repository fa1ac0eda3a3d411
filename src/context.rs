//! What every part of a running node shares: configuration, store, clock,
//! peer client, the reloadable directory of domains, routes and users, and
//! the doorbell that wakes the queue worker.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::im2000::auth::Users;
use crate::im2000::client::PeerClient;
use crate::im2000::error::ApiError;
use crate::store::{Store, StoreError};

/// What a reload (SIGHUP) may change while the node runs: its domains,
/// routes and users. Everything else in `Context::config` is fixed at start.
pub struct Directory {
    pub config: Config,
    pub users: Users,
}

impl Directory {
    /// Hashes the users' plain passwords; the directory keeps nothing else
    /// of them.
    pub fn new(config: Config) -> Directory {
        let users = Users::from_config(&config);
        Directory { config: without_plain_passwords(config), users }
    }
}

pub struct Context {
    /// The configuration the node started with (listeners, limits, …).
    pub config: Config,
    /// Domains, routes and users, replaced whole by a reload.
    pub directory: RwLock<Arc<Directory>>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub peers: PeerClient,
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
    /// The current domains, routes and users.
    pub fn dir(&self) -> Arc<Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces domains, routes and users.
    pub fn reload(&self, config: Config) {
        let dir = Arc::new(Directory::new(config));
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = dir;
    }

    /// Runs store work (RocksDB calls, fsync) off the async threads.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::Storage(StoreError::Corrupt(format!("store task failed: {e}"))))
    }
}

/// The configuration with plain passwords blanked: they live on only as hashes.
pub fn without_plain_passwords(mut config: Config) -> Config {
    for u in &mut config.users {
        if u.secret.is_some() {
            u.secret = Some(crate::config::Secret::Hash(String::new()));
        }
    }
    config
}
