//! What every part of a running node shares: configuration, store, clock,
//! peer client, the reloadable directory of domains, routes and users, and
//! the doorbell that wakes the queue worker.

use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::config::Config;
use crate::config::Route;
use crate::directory::Directory;
use crate::peer::PeerClient;
use crate::proto::Address;
use crate::routing::{Decision, Routes};
use crate::store::records::QueuePause;
use crate::store::{Store, StoreError};

pub struct Context {
    /// The configuration the node started with (listeners, limits, …).
    pub config: Config,
    /// Domains, users and configured routes, replaced whole by a reload.
    pub directory: RwLock<Arc<Directory>>,
    /// The routing table, a copy of the store's, replaced on every change.
    pub routes: RwLock<Arc<Routes>>,
    /// What the queue worker holds back, a copy of the store's.
    pub pause: RwLock<QueuePause>,
    /// The server certificate, replaced by a reload.
    pub certs: Option<Arc<crate::certs::Certs>>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub peers: PeerClient,
    /// SPF/DKIM/DMARC checks for SMTP mail, through the node's resolver.
    pub authenticator: Option<mail_auth::MessageAuthenticator>,
    /// The DKIM keys outgoing SMTP is signed with, replaced by a reload.
    pub dkim: RwLock<Arc<crate::outbound::dkim::Signers>>,
    /// Recipient domains' MTA-STS policies, as found.
    pub mta_sts: crate::outbound::mta_sts::Policies,
    /// SMTP transports (pooled connections, per-host limits) for deliveries.
    pub transports: crate::outbound::pool::Transports,
    pub metrics: crate::metrics::Metrics,
    /// Failed authentications per client address, keyed `ip:…`; attempts
    /// are charged before they are judged (see [`crate::im2000::auth`]).
    pub auth_failures: crate::limits::Limiter,
    /// Failed authentications per user name, keyed `user:…`: they slow
    /// that user's checks down (backoff), never lock the user out.
    pub user_failures: crate::limits::Limiter,
    /// Lookups of unknown message identifiers, keyed `ip:…`.
    pub misses: crate::limits::Limiter,
    /// Notifications considered per store domain, keyed `store:…`.
    pub store_notifications: crate::limits::Limiter,
    /// Message data SMTP sessions hold in memory, in KiB permits.
    pub smtp_data: Arc<tokio::sync::Semaphore>,
    /// Rung when new work is queued, so the worker need not wait its timer.
    pub wake: Notify,
}

pub type Shared = Arc<Context>;

impl Context {
    /// The current domains, routes and users.
    pub fn dir(&self) -> Arc<Directory> {
        self.directory.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The current routing table.
    pub fn routes(&self) -> Arc<Routes> {
        self.routes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether mail for `address` (of a local domain) goes to an IM2000
    /// mailbox here or by SMTP to the domain's legacy host.
    pub fn route(&self, address: &Address) -> Route {
        self.routes().route(&self.dir(), address)
    }

    /// The route of `address` and the rule that decided it.
    pub fn explain_route(&self, address: &Address) -> Decision {
        self.routes().decide(&self.dir(), address)
    }

    /// Re-reads the routing table from the store (blocking).
    pub fn load_routes(&self) -> Result<(), StoreError> {
        let rules = self.store.routes()?;
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Routes { rules });
        Ok(())
    }

    /// Replaces domains, routes, users and the TLS certificate (blocking).
    /// Routes the file wrote are brought into the table; those an admin
    /// set stay. A certificate that does not load leaves the old one.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        // Keys first: a key that does not load leaves everything as it was.
        let dkim = crate::outbound::dkim::Signers::load(&config.outbound.dkim)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        if let (Some(certs), Some(tls)) = (&self.certs, &config.tls) {
            certs.reload(tls)?;
        }
        *self.dkim.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(dkim);
        self.store.seed_routes(&config.route_seeds(), self.clock.now()).map_err(|e| e.to_string())?;
        let dir = Arc::new(Directory::new(config));
        *self.directory.write().unwrap_or_else(|p| p.into_inner()) = dir;
        self.load_routes().map_err(|e| e.to_string())
    }

    /// The DKIM keys now (a reload may replace them).
    pub fn dkim(&self) -> Arc<crate::outbound::dkim::Signers> {
        self.dkim.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where a job for `recipient` goes, as the queue commands name it: the
    /// domain's legacy host for an SMTP delivery when it has one, else the
    /// recipient's domain.
    pub fn job_host(&self, recipient: &str, deliver: bool) -> String {
        let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d).to_lowercase();
        match self.dir().config.legacy_host(&domain) {
            Some(h) if deliver => h.to_lowercase(),
            _ => domain,
        }
    }

    /// Whether `host` (a recipient domain or a legacy host) names a job.
    pub fn job_matches(&self, recipient: &str, deliver: bool, host: &str) -> bool {
        let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
        domain.eq_ignore_ascii_case(host) || self.job_host(recipient, deliver).eq_ignore_ascii_case(host)
    }

    /// Whether the worker holds back a job for `recipient` (an address).
    pub fn is_held(&self, recipient: &str, deliver: bool) -> bool {
        let pause = self.pause.read().unwrap_or_else(|p| p.into_inner());
        pause.all || pause.hosts.iter().any(|h| self.job_matches(recipient, deliver, h))
    }

    /// Runs store work (RocksDB calls, fsync) off the async threads.
    /// A task that panicked is a store error: what it was doing is unknown.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))
    }

    /// Runs store reads where they cost least: on the calling async thread
    /// for an embedded store (point reads from memtable, block cache or page
    /// cache take microseconds, less than the hop to the blocking pool), off
    /// the async threads for a shared one (each read is a round trip to the
    /// database, and may wait for one of its connections).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.store.is_shared() {
            let store = self.store.clone();
            self.blocking(move || f(&store)).await?
        } else {
            f(&self.store)
        }
    }
}
