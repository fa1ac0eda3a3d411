//! A running imgate node: opens the store, binds the listeners, starts the
//! queue worker, and stops them all in order. Tests and the lab start several
//! nodes in one process; `imgate serve` starts one and waits for a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::im2000::auth::AUTH_FAILURES_PER_IP;
use crate::limits::ConnectionSlots;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::context::{Context, Shared};
use crate::discovery::Locator;
use crate::dns::{Dns, HickoryDns};
use crate::im2000::{self, server};
use crate::peer::{PeerClient, tls_client_config};
use crate::smtp_in::{self, ListenerTls, session::ListenerKind};
use crate::store::Store;

/// How long open HTTP connections may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// What could stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("opening the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Setup(String),
}

/// Opens the store `[store]` names; errors say which setting led there.
fn open_store(engine: &crate::config::Engine, dir: &std::path::Path) -> Result<Store, StartError> {
    use crate::store::backend::postgres::{Postgres, Settings};
    match engine {
        crate::config::Engine::RocksDb => Ok(Store::open(dir)?),
        crate::config::Engine::Postgres { url, max_connections, timeout } => {
            let settings = Settings { url: url.clone(), max_connections: *max_connections, timeout: *timeout };
            let engine = Postgres::open(&settings).map_err(|e| StartError::Setup(format!("opening the store: {e}")))?;
            Store::on(Box::new(engine)).map_err(|e| StartError::Setup(format!("opening the store at [store] url: {e}")))
        }
    }
}

/// How long a node starting under a name that has a heartbeat watches it:
/// a live node beats every second ([`crate::follow`]), a dead run's stands
/// still. Only a node that crashed (one that stopped cleanly took its
/// heartbeat away) or a namesake makes a start wait.
const NAMESAKE_WATCH: Duration = Duration::from_secs(3);

/// Takes node `name` on a shared store for run `incarnation`, refusing to
/// start beside a live node of the same name: the two would release each
/// other's leases.
async fn claim_name(store: &Store, name: &str, incarnation: u64, clock: &dyn Clock) -> Result<(), StartError> {
    let read = |store: Store, name: String| tokio::task::spawn_blocking(move || store.node_beat(&name));
    let joined = |e: tokio::task::JoinError| StartError::Setup(e.to_string());
    if let Some(before) = read(store.clone(), name.to_string()).await.map_err(joined)?? {
        tracing::info!(node = name, "a heartbeat under this node's name: waiting to see whether it still beats");
        tokio::time::sleep(NAMESAKE_WATCH).await;
        let after = read(store.clone(), name.to_string()).await.map_err(joined)??;
        if after.is_some_and(|a| a != before) {
            return Err(StartError::Setup(format!(
                "another node named {name:?} is running on this store: give each node its own [store] node"
            )));
        }
    }
    let (store, name, now) = (store.clone(), name.to_string(), clock.now());
    tokio::task::spawn_blocking(move || store.beat(&name, incarnation, now)).await.map_err(joined)??;
    Ok(())
}

/// Replaceable parts of a node, for tests and the lab.
#[derive(Clone, Default)]
pub struct NodeParts {
    pub clock: Option<Arc<dyn Clock>>,
    pub dns: Option<Arc<dyn Dns>>,
    /// Become this user once the listeners are bound (`imgate serve` passes
    /// the configuration's `run_as`; an in-process node never drops root).
    pub run_as: Option<String>,
}

pub struct Node {
    ctx: Shared,
    public: Vec<SocketAddr>,
    private: Vec<SocketAddr>,
    admin: Vec<SocketAddr>,
    mx: Vec<SocketAddr>,
    submission: Vec<SocketAddr>,
    submissions: Vec<SocketAddr>,
    imap: Vec<SocketAddr>,
    imaps: Vec<SocketAddr>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// This run of the node, among the runs under its name (a shared
    /// store's heartbeat).
    incarnation: u64,
}

impl Node {
    pub async fn start(config: Config) -> Result<Node, StartError> {
        Self::start_with(config, NodeParts::default()).await
    }

    pub async fn start_with(config: Config, parts: NodeParts) -> Result<Node, StartError> {
        let dns: Arc<dyn Dns> = match parts.dns {
            Some(d) => d,
            None => Arc::new(HickoryDns::new(&config.dns).map_err(StartError::Setup)?),
        };
        let tls_client =
            tls_client_config(config.tls.as_ref().and_then(|t| t.ca.as_deref())).map_err(StartError::Setup)?;
        let peers = PeerClient::new(Locator::new(&config, dns), config.notify.timeout, tls_client)
            .map_err(StartError::Setup)?;
        let directory = std::sync::RwLock::new(Arc::new(crate::directory::Directory::new(config.clone())));
        let config = crate::directory::without_plain_passwords(config);
        let (acceptor, certs) = match &config.tls {
            Some(t) => {
                let (acceptor, certs) = crate::certs::tls_acceptor(t).map_err(StartError::Setup)?;
                (Some(acceptor), Some(certs))
            }
            None => (None, None),
        };
        let authenticator = if config.smtp.mx.is_empty() || !config.smtp.verify_sender {
            None
        } else {
            let (rc, mut opts) = crate::dns::resolver_parts(&config.dns).map_err(StartError::Setup)?;
            // Sender checks ask for the same few records again and again (a
            // busy sender's SPF and DMARC): answers are kept for their TTL,
            // as any resolver keeps them, even with configured nameservers.
            opts.cache_size = 4096;
            Some(mail_auth::MessageAuthenticator::new(rc, opts).map_err(|e| StartError::Setup(e.to_string()))?)
        };
        let extra_roots = match config.tls.as_ref().and_then(|t| t.ca.as_deref()) {
            Some(ca) => Some(std::fs::read(ca).map_err(|e| StartError::Setup(format!("{}: {e}", ca.display())))?),
            None => None,
        };
        // Keys are read before privileges are dropped: they may be root's.
        let dkim = crate::outbound::dkim::Signers::load(&config.outbound.dkim).map_err(|errors| {
            StartError::Setup(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        })?;
        let public_listeners = crate::listen::bind(&config.im2000.public).await.map_err(StartError::Setup)?;
        let [mx_listeners, submission_listeners, submissions_listeners, imap_listeners, imaps_listeners] =
            mail_listeners(&config).await?;
        let private_listeners = crate::listen::bind(&config.im2000.private).await.map_err(StartError::Setup)?;
        let admin_listeners = crate::listen::bind(&config.im2000.admin).await.map_err(StartError::Setup)?;
        if let Some(user) = &parts.run_as {
            crate::privileges::drop_to(user, &config.data_dir).map_err(StartError::Setup)?;
        }
        let dir = config.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
        let store_dir = dir.join("store");
        let engine = config.store.engine.clone();
        let store = tokio::task::spawn_blocking(move || open_store(&engine, &store_dir))
            .await
            .map_err(|e| StartError::Setup(e.to_string()))??;
        let clock: Arc<dyn Clock> = parts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        // Jobs this node had taken when it last stopped (or crashed) are due
        // again now: none of those attempts can still be running. On a
        // shared store only the leases under this node's name are: the
        // others are other nodes' live attempts, taken over when they end.
        let incarnation = rand::random::<u64>();
        let owner = if store.is_shared() {
            claim_name(&store, &config.store.node, incarnation, clock.as_ref()).await?;
            Some(config.store.node.as_str())
        } else {
            None
        };
        let released = store.release_leases(clock.now(), owner)?;
        if released > 0 {
            tracing::info!(jobs = released, "released jobs left in progress by the previous run");
        }
        store.seed_routes(&config.route_seeds(), clock.now())?;
        let routes = std::sync::RwLock::new(Arc::new(crate::routing::Routes { rules: store.routes()? }));
        let pause = std::sync::RwLock::new(store.queue_pause()?);
        let addrs = |ls: &[tokio::net::TcpListener]| ls.iter().filter_map(|l| l.local_addr().ok()).collect::<Vec<_>>();
        let (public, private) = (addrs(&public_listeners), addrs(&private_listeners));
        let (mx, submission) = (addrs(&mx_listeners), addrs(&submission_listeners));
        let submissions = addrs(&submissions_listeners);
        let (imap, imaps) = (addrs(&imap_listeners), addrs(&imaps_listeners));
        let admin = addrs(&admin_listeners);

        let config_store_rate = config.im2000.store_rate;
        let inflight_kib = (config.smtp.max_inflight_data / 1024).min(Semaphore::MAX_PERMITS as u64) as usize;
        let ctx: Shared = Arc::new(Context {
            config,
            directory,
            routes,
            pause,
            certs,
            store,
            clock,
            peers,
            authenticator,
            dkim: std::sync::RwLock::new(Arc::new(dkim)),
            mta_sts: Default::default(),
            transports: crate::outbound::pool::Transports::new(extra_roots),
            metrics: Default::default(),
            auth_failures: crate::limits::Limiter::new(AUTH_FAILURES_PER_IP, 10 * 60_000),
            user_failures: crate::limits::Limiter::new(u32::MAX, 10 * 60_000),
            misses: crate::limits::Limiter::new(100, 60_000),
            store_notifications: crate::limits::Limiter::new(config_store_rate, 60_000),
            smtp_data: Arc::new(Semaphore::new(inflight_kib)),
            wake: Notify::new(),
        });
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let http = |ls: Vec<tokio::net::TcpListener>, router: fn(Shared) -> axum::Router| {
            ls.into_iter()
                .map(|l| {
                    let im = &ctx.config.im2000;
                    let slots = ConnectionSlots::new(im.max_connections, im.max_connections_per_ip);
                    let serving = server::Serving { tls: acceptor.clone(), slots, ctx: ctx.clone() };
                    tokio::spawn(server::serve(l, router(ctx.clone()), serving, shutdown.clone(), DRAIN))
                })
                .collect::<Vec<_>>()
        };
        tasks.extend(http(public_listeners, im2000::public_router));
        tasks.extend(http(private_listeners, im2000::private_router));
        tasks.extend(http(admin_listeners, im2000::admin_router));
        // MX and submission have pools of their own: strangers holding every
        // MX session cannot keep the node's own users from sending.
        let smtp_cfg = &ctx.config.smtp;
        let mx_slots = ConnectionSlots::new(smtp_cfg.max_sessions, smtp_cfg.max_sessions_per_ip);
        let submission_slots = ConnectionSlots::new(smtp_cfg.max_submission_sessions, smtp_cfg.max_sessions_per_ip);
        let starttls = acceptor.clone().map_or(ListenerTls::None, ListenerTls::StartTls);
        let implicit = acceptor.clone().map_or(ListenerTls::None, ListenerTls::Implicit);
        let smtp = mx_listeners
            .into_iter()
            .map(|l| (ListenerKind::Mx, l, mx_slots.clone(), starttls.clone()))
            .chain(
                submission_listeners
                    .into_iter()
                    .map(|l| (ListenerKind::Submission, l, submission_slots.clone(), starttls.clone())),
            )
            .chain(
                submissions_listeners
                    .into_iter()
                    .map(|l| (ListenerKind::Submission, l, submission_slots.clone(), implicit.clone())),
            );
        for (kind, l, slots, tls) in smtp {
            let task = smtp_in::listen(ctx.clone(), kind, l, tls, slots, shutdown.clone(), DRAIN);
            tasks.push(tokio::spawn(task));
        }
        let imap_cfg = &ctx.config.imap;
        let imap_slots = ConnectionSlots::new(imap_cfg.max_sessions, imap_cfg.max_sessions_per_ip);
        let imap_listeners = imap_listeners
            .into_iter()
            .map(|l| (l, starttls.clone()))
            .chain(imaps_listeners.into_iter().map(|l| (l, implicit.clone())));
        let imap_cache = Arc::new(crate::imap::cache::Shared::default());
        for (l, tls) in imap_listeners {
            let (slots, cache) = (imap_slots.clone(), imap_cache.clone());
            let task = crate::imap::listen(ctx.clone(), l, tls, slots, cache, shutdown.clone(), DRAIN);
            tasks.push(tokio::spawn(task));
        }
        tasks.push(tokio::spawn(crate::queue::run(ctx.clone(), shutdown.clone())));
        if ctx.store.is_shared() {
            tasks.push(tokio::spawn(crate::follow::run(ctx.clone(), incarnation, shutdown.clone())));
        }
        tracing::info!(public = ?public, private = ?private, admin = ?admin, mx = ?mx, submission = ?submission,
            submissions = ?submissions, imap = ?imap, imaps = ?imaps, domains = ?ctx.config.domains, "imgate node started");
        Ok(Node { ctx, public, private, admin, mx, submission, submissions, imap, imaps, shutdown, tasks, incarnation })
    }

    /// Bound addresses of the public listeners (useful with port 0).
    pub fn public_addrs(&self) -> &[SocketAddr] {
        &self.public
    }

    pub fn private_addrs(&self) -> &[SocketAddr] {
        &self.private
    }

    /// Bound addresses of the admin listeners (none: the node serves no
    /// admin API and no `/metrics`).
    pub fn admin_addrs(&self) -> &[SocketAddr] {
        &self.admin
    }

    /// Bound addresses of the SMTP MX listeners.
    pub fn mx_addrs(&self) -> &[SocketAddr] {
        &self.mx
    }

    /// Bound addresses of the SMTP submission listeners.
    pub fn submission_addrs(&self) -> &[SocketAddr] {
        &self.submission
    }

    /// Bound addresses of the implicit-TLS submission listeners.
    pub fn submissions_addrs(&self) -> &[SocketAddr] {
        &self.submissions
    }

    /// Bound addresses of the IMAP listeners (STARTTLS when the node has TLS).
    pub fn imap_addrs(&self) -> &[SocketAddr] {
        &self.imap
    }

    /// Bound addresses of the implicit-TLS IMAP listeners.
    pub fn imaps_addrs(&self) -> &[SocketAddr] {
        &self.imaps
    }

    pub fn context(&self) -> &Shared {
        &self.ctx
    }

    /// Takes new domains, routes and users (as SIGHUP does); sessions and
    /// queued work go on. Listener settings keep their start-time values.
    pub async fn reload(&self, config: Config) {
        let ctx = self.ctx.clone();
        match tokio::task::spawn_blocking(move || ctx.reload(config)).await {
            Ok(Ok(())) => {
                let dir = self.ctx.dir();
                tracing::info!(
                    domains = dir.config.domains.len(),
                    users = dir.config.users.len(),
                    "configuration reloaded"
                );
            }
            Ok(Err(e)) => tracing::error!(error = %e, "reload failed; the running configuration stays"),
            Err(e) => tracing::error!(error = %e, "reload failed; the running configuration stays"),
        }
        self.wake();
    }

    /// Makes the queue worker look at the queue now.
    pub fn wake(&self) {
        self.ctx.wake.notify_one();
    }

    /// Stops accepting, drains connections, stops the worker, closes the
    /// store. On a shared store the jobs whose attempts the worker broke
    /// off are handed back at once, for the other nodes to take now rather
    /// than when the leases would have ended.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        if self.ctx.store.is_shared() {
            let (ctx, incarnation) = (self.ctx.clone(), self.incarnation);
            let handed_back = tokio::task::spawn_blocking(move || {
                let node = &ctx.config.store.node;
                let n = ctx.store.release_leases(ctx.clock.now(), Some(node))?;
                ctx.store.leave(node, incarnation)?;
                Ok::<_, crate::store::StoreError>(n)
            })
            .await;
            match handed_back {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(jobs = n, "handed back jobs whose attempts were broken off"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "handing back this node's leases failed; they end on their own")
                }
                Err(e) => tracing::warn!(error = %e, "handing back this node's leases failed; they end on their own"),
            }
        }
        tracing::info!("imgate node stopped");
    }
}

/// The mail listeners (SMTP MX, submission, submissions; IMAP, IMAP over
/// TLS): sockets passed by systemd (socket activation), so the daemon needs
/// no privilege for ports 25 or 993 — one per configured listener, in that
/// order — or else bound here.
async fn mail_listeners(config: &Config) -> Result<[Vec<tokio::net::TcpListener>; 5], StartError> {
    let (smtp, imap) = (&config.smtp, &config.imap);
    let groups: [&[SocketAddr]; 5] = [&smtp.mx, &smtp.submission, &smtp.submissions, &imap.listen, &imap.implicit_tls];
    let mut fds = listenfd::ListenFd::from_env();
    let mut out: [Vec<tokio::net::TcpListener>; 5] = Default::default();
    if fds.len() == 0 {
        for (slot, addrs) in out.iter_mut().zip(groups) {
            *slot = crate::listen::bind(addrs).await.map_err(StartError::Setup)?;
        }
        return Ok(out);
    }
    let wanted: usize = groups.iter().map(|g| g.len()).sum();
    if fds.len() != wanted {
        return Err(StartError::Setup(format!(
            "socket activation passed {} sockets, but the configuration has {wanted} mail listeners \
             (SMTP MX, then submission, then submissions, then IMAP, then IMAP over TLS)",
            fds.len()
        )));
    }
    let mut i = 0;
    for (slot, addrs) in out.iter_mut().zip(groups) {
        for _ in addrs.iter() {
            let std = fds
                .take_tcp_listener(i)
                .map_err(|e| StartError::Setup(format!("passed socket {i}: {e}")))?
                .ok_or_else(|| StartError::Setup(format!("passed socket {i} is not a TCP listener")))?;
            std.set_nonblocking(true).map_err(|e| StartError::Setup(e.to_string()))?;
            slot.push(tokio::net::TcpListener::from_std(std).map_err(|e| StartError::Setup(e.to_string()))?);
            i += 1;
        }
    }
    tracing::info!(sockets = wanted, "mail listeners from socket activation");
    Ok(out)
}

/// `imgate serve`: runs a node until SIGINT or SIGTERM; SIGHUP reloads
/// domains, routes and users from `path`.
pub async fn run(config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let parts = NodeParts { run_as: config.run_as.clone(), ..NodeParts::default() };
    let node = Node::start_with(config, parts).await?;
    for a in node.public_addrs() {
        println!("imgate: public IM2000 services on {a}");
    }
    for a in node.private_addrs() {
        println!("imgate: private IM2000 services on {a}");
    }
    for a in node.admin_addrs() {
        println!("imgate: admin API and /metrics on {a}");
    }
    for a in node.mx_addrs() {
        println!("imgate: SMTP MX on {a}");
    }
    for a in node.submission_addrs() {
        println!("imgate: SMTP submission on {a}");
    }
    for a in node.imap_addrs() {
        println!("imgate: IMAP on {a}");
    }
    for a in node.imaps_addrs() {
        println!("imgate: IMAP over TLS on {a}");
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hup.recv() => match &path {
                None => tracing::warn!("SIGHUP: running on the embedded defaults, nothing to reload"),
                Some(p) => match Config::load(p) {
                    Ok(new) => node.reload(new).await,
                    Err(e) => tracing::error!(problems = %e, "SIGHUP: the configuration has problems; keeping the old one"),
                },
            },
        }
    }
    tracing::info!("signal received; shutting down");
    node.shutdown().await;
    Ok(())
}
