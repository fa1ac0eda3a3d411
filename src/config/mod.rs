//! Configuration in two phases: `raw` is the TOML as written; [`Config`] is
//! the validated form the rest of the program uses. Loading reports every
//! problem at once — unknown keys included — each with the file and the key.

mod outbound;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proto::Address;
use crate::proto::address::valid_domain;
use crate::proto::units::{parse_duration, parse_size};
pub use outbound::{DkimKeyConfig, OutboundConfig, Password, RelayHost, RelayTls, TlsPolicy};
use raw::{RawConfig, RawSize};

/// The configuration `imgate serve` runs with when given no `--config`.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../config/imgate.toml");
/// How the embedded defaults are named in messages.
pub const EMBEDDED_NAME: &str = "<embedded config/imgate.toml>";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages.
    pub source: String,
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Started as root: become this user once the listeners are bound.
    pub run_as: Option<String>,
    pub im2000: Im2000Config,
    pub smtp: SmtpConfig,
    pub imap: ImapConfig,
    pub store: StoreConfig,
    pub notify: NotifyConfig,
    pub dns: DnsConfig,
    pub peers: BTreeMap<String, Peer>,
    pub domains: Vec<String>,
    /// How each domain's mail is delivered (domains not listed: IM2000).
    pub routes: BTreeMap<String, DomainRoute>,
    pub users: Vec<UserConfig>,
    pub tls: Option<TlsConfig>,
    /// DKIM keys, upstream relays, TLS policy of outgoing SMTP.
    pub outbound: OutboundConfig,
    pub log_level: String,
}

/// The IMAP service over the users' inboxes.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Listeners offering STARTTLS when the node has `[tls]`.
    pub listen: Vec<SocketAddr>,
    /// Listeners speaking TLS from the first octet (port 993, RFC 8314).
    pub implicit_tls: Vec<SocketAddr>,
    /// Allow LOGIN and AUTHENTICATE before TLS (loopback demos).
    pub plaintext: bool,
    pub max_sessions: usize,
    pub max_sessions_per_ip: usize,
    /// A session without a command for this long is closed (IDLE included:
    /// RFC 9051 asks for at least 30 minutes).
    pub idle_timeout: Duration,
    /// Octets of messages pulled from other stores kept on this node.
    pub cache_size: u64,
    /// Largest message a client may APPEND.
    pub max_append: u64,
    /// Octets of APPENDed messages (drafts, saved copies) one user may
    /// keep on this node.
    pub held_quota: u64,
    /// Folders one user may create.
    pub max_folders: usize,
}

#[derive(Debug, Clone)]
pub struct Im2000Config {
    pub public: Vec<SocketAddr>,
    pub private: Vec<SocketAddr>,
    /// Listeners for operators alone: `/metrics` and the admin API. Without
    /// any, those are served on the private listeners.
    pub admin: Vec<SocketAddr>,
    /// Whether plain HTTP may be used toward peers on loopback addresses.
    pub plain_to_loopback: bool,
    pub max_message_size: u64,
    /// Whether peers found through DNS may be at loopback, private or
    /// link-local addresses (labs and tests; `[peers]` entries always may).
    pub private_peers: bool,
    /// Store domains whose SMTP-origin notifications (mail a gateway took in
    /// by SMTP) this agent accepts, besides its own.
    pub trusted_gateways: Vec<String>,
    /// Notifications one user's inbox holds at most.
    pub max_inbox: u64,
    /// Notifications one store domain may send this agent per minute.
    pub store_rate: u32,
    /// Open HTTP connections per listener, and per client address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
}

impl Im2000Config {
    /// Whether SMTP-origin notifications from `store` are taken: the node's
    /// own domains are checked by the caller; these are the listed ones.
    pub fn trusts_gateway(&self, store: &str) -> bool {
        self.trusted_gateways.iter().any(|g| g.eq_ignore_ascii_case(store))
    }
}

/// The SMTP listeners.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Mail exchanger listeners: mail for local domains, from anyone.
    pub mx: Vec<SocketAddr>,
    /// Submission listeners: AUTH required, any recipient.
    pub submission: Vec<SocketAddr>,
    /// Submission listeners speaking TLS from the first octet (port 465,
    /// RFC 8314); they need `[tls]`.
    pub submissions: Vec<SocketAddr>,
    /// Allow AUTH on submission listeners without STARTTLS.
    pub submission_plaintext: bool,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_sessions: usize,
    pub idle_timeout: Duration,
    pub session_timeout: Duration,
    /// Octets per second message data must at least arrive at (0: no floor).
    pub min_data_rate: u64,
    /// The store domain that SMTP-origin mail from outside is kept under.
    pub store_domain: String,
    /// Check SPF, DKIM and DMARC of MX mail (the verdicts travel with the
    /// notification).
    pub verify_sender: bool,
    /// The port of MX hosts when delivering by SMTP (25; others for labs).
    pub relay_port: u16,
    /// Deliveries in flight to one SMTP host at most.
    pub relay_concurrency: usize,
    /// Sessions open at once on the submission listeners (`max_sessions`
    /// is the MX listeners' own pool).
    pub max_submission_sessions: usize,
    /// Sessions one client address may hold open, per pool.
    pub max_sessions_per_ip: usize,
    /// Refused recipients in one session before it is closed (harvesting).
    pub max_refused_recipients: u32,
    /// Message data all sessions together may hold in memory.
    pub max_inflight_data: u64,
    /// Bytes stored at once for one outside sender address, and for all
    /// outside senders of one domain.
    pub sender_quota: u64,
    pub sender_domain_quota: u64,
    /// Refuse (`550 5.7.1`) MX mail that fails DMARC where the `From:`
    /// domain's policy says reject; `false` only marks it.
    pub dmarc_enforce: bool,
}

impl SmtpConfig {
    /// Whether `ip:port` reaches one of this node's own SMTP listeners.
    pub fn is_own_listener(&self, ip: std::net::IpAddr, port: u16) -> bool {
        self.mx.iter().chain(&self.submission).chain(&self.submissions).any(|a| {
            a.port() == port && (a.ip() == ip || (a.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified())))
        })
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Where the node's state lives.
    pub engine: Engine,
    /// This node's name among the nodes sharing the store (`[store] node`,
    /// by default the host name): the owner of the leases it takes.
    pub node: String,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// Bytes each sender may keep stored at once.
    pub quota: u64,
}

/// The storage engine: `[store] backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// RocksDB under the data directory, this node's own.
    RocksDb,
    /// A PostgreSQL database, shared by every node given the same URL.
    Postgres {
        url: String,
        max_connections: usize,
        /// The longest a connection, statement or commit may take.
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// After this long without acceptance a notification is given up.
    pub max_retry_age: Duration,
    /// Accepted but unsilenced notifications are sent again this often.
    pub resend_interval: Duration,
    pub batch_size: usize,
    /// Per HTTP exchange with a peer.
    pub timeout: Duration,
}

impl NotifyConfig {
    /// How long a taken job stays invisible to every worker. It outlives
    /// the slowest attempt (every attempt is bounded by four timeouts), so
    /// a job is only taken again after a crash or a stall past the lease,
    /// never while an attempt is still running; the lease's end is its
    /// fencing token (docs/cluster.md).
    pub fn lease(&self) -> Duration {
        self.timeout * 4 + Duration::from_secs(60)
    }
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Empty: the system resolver configuration.
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
}

/// A static location for a domain's services, overriding SRV discovery.
#[derive(Debug, Clone)]
pub struct Peer {
    pub store: Option<String>,
    pub notify: Option<String>,
    /// Speak plain HTTP to this peer.
    pub plain: bool,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub address: Address,
    /// Users still on SMTP (route = legacy) need none.
    pub secret: Option<Secret>,
    pub quota: Option<u64>,
    pub route: Option<Route>,
    /// May use the admin API (queue control).
    pub admin: bool,
    /// Other addresses the user may put in `From:` when submitting.
    pub aliases: Vec<Address>,
}

impl UserConfig {
    /// Whether the user may send as `address` (their own or an alias).
    pub fn may_send_as(&self, address: &Address) -> bool {
        let key = address.key();
        self.address.key() == key || self.aliases.iter().any(|a| a.key() == key)
    }
}

/// Where a recipient's mail goes: an IM2000 mailbox here, or by SMTP to the
/// domain's legacy host (the gateway is then the recipient's agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Im2000,
    Legacy,
    /// IM2000 for configured users with a mailbox, legacy for the rest.
    Auto,
}

impl Route {
    pub fn parse(s: &str) -> Option<Route> {
        match s {
            "im2000" => Some(Route::Im2000),
            "legacy" => Some(Route::Legacy),
            "auto" => Some(Route::Auto),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Im2000 => "im2000",
            Route::Legacy => "legacy",
            Route::Auto => "auto",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct DomainRoute {
    pub route: Route,
    /// HOST:PORT of the SMTP host legacy-routed mail is delivered to
    /// (else the domain's MX hosts).
    pub legacy_host: Option<String>,
    /// Ask the legacy host (RCPT) whether a user exists before accepting a
    /// notification for them.
    pub verify_users: bool,
}

#[derive(Clone)]
pub enum Secret {
    Plain(String),
    /// An argon2 PHC string.
    Hash(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Plain(_) => f.write_str("Plain(…)"),
            Secret::Hash(_) => f.write_str("Hash(…)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Extra roots the client side trusts (a private CA, a test CA).
    pub ca: Option<PathBuf>,
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(f, "{}: {n} problem{}", self.source_name, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            if p.key.is_empty() {
                writeln!(f, "  {}: {}", self.source_name, p.message)?;
            } else {
                writeln!(f, "  {}: {}: {}", self.source_name, p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem { key: String::new(), message: format!("cannot read: {e}") }],
        })?;
        Self::parse(&text, &name)
    }

    /// The embedded defaults.
    pub fn embedded() -> Config {
        Self::parse(EMBEDDED_DEFAULTS, EMBEDDED_NAME).expect("embedded defaults are valid")
    }

    /// Parses and validates TOML text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError { source_name: name.to_string(), problems };
        let mut problems = Vec::new();
        let de = toml::Deserializer::parse(text)
            .map_err(|e| fail(vec![Problem { key: String::new(), message: e.to_string().trim().to_string() }]))?;
        let raw: RawConfig = serde_ignored::deserialize(de, |path| {
            problems.push(Problem { key: path.to_string(), message: "unknown key".into() });
        })
        .map_err(|e| fail(vec![Problem { key: String::new(), message: e.to_string().trim().to_string() }]))?;
        let config = validate(raw, name, &mut problems);
        if problems.is_empty() { Ok(config) } else { Err(fail(problems)) }
    }

    /// Whether `domain` is one this node serves.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    pub fn user(&self, address: &Address) -> Option<&UserConfig> {
        let key = address.key();
        self.users.iter().find(|u| u.address.key() == key)
    }

    /// The routes the configuration writes down, which seed the store's
    /// routing table: every domain's, and each user's that has one.
    pub fn route_seeds(&self) -> Vec<(String, Route)> {
        let domains = self.routes.iter().map(|(d, r)| (d.clone(), r.route));
        let users = self.users.iter().filter_map(|u| Some((u.address.key(), u.route?)));
        domains.chain(users).collect()
    }

    /// Whether `domain`'s legacy users are checked at the legacy host first.
    pub fn verify_legacy_users(&self, domain: &str) -> bool {
        self.routes.get(domain).is_some_and(|r| r.verify_users)
    }

    /// The SMTP host for `domain`'s legacy-routed users.
    pub fn legacy_host(&self, domain: &str) -> Option<&str> {
        self.routes.get(domain).and_then(|r| r.legacy_host.as_deref())
    }
}

struct Check<'a> {
    problems: &'a mut Vec<Problem>,
}

impl Check<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { key: key.into(), message: message.into() });
    }
    fn duration(&mut self, key: &str, v: Option<String>, default: u64) -> Duration {
        match v.map(|s| parse_duration(&s)) {
            None => Duration::from_secs(default),
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.problem(key, e);
                Duration::from_secs(default)
            }
        }
    }
    fn size(&mut self, key: &str, v: Option<RawSize>, default: u64) -> u64 {
        let parsed = v.map(|v| match v {
            RawSize::Octets(n) => Ok(n),
            RawSize::Text(s) => parse_size(&s),
        });
        match parsed {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.problem(key, e);
                default
            }
        }
    }
    fn listeners(&mut self, key: &str, v: Vec<String>) -> Vec<SocketAddr> {
        v.iter()
            .enumerate()
            .filter_map(|(i, s)| match s.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.problem(format!("{key}[{i}]"), format!("{s:?} is not ADDR:PORT (e.g. 127.0.0.1:2580)"));
                    None
                }
            })
            .collect()
    }
}

/// Whether `s` is HOST:PORT or ADDR:PORT.
fn valid_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => port.parse::<u16>().is_ok() && valid_domain(&host.to_lowercase()),
        None => false,
    }
}

fn validate(raw: RawConfig, name: &str, problems: &mut Vec<Problem>) -> Config {
    let mut c = Check { problems };

    let hostname = raw.hostname.unwrap_or_else(|| "localhost".into());
    if !valid_domain(&hostname.to_lowercase()) {
        c.problem("hostname", format!("{hostname:?} is not a host name"));
    }
    let data_dir = PathBuf::from(raw.data_dir.unwrap_or_else(|| "./data".into()));

    let public = c.listeners("im2000.public", raw.im2000.public);
    let private = c.listeners("im2000.private", raw.im2000.private);
    if public.is_empty()
        && private.is_empty()
        && raw.smtp.mx.is_empty()
        && raw.smtp.submission.is_empty()
        && raw.smtp.submissions.is_empty()
        && raw.imap.listen.is_empty()
        && raw.imap.implicit_tls.is_empty()
    {
        c.problem("im2000", "no listeners: set im2000.public and/or im2000.private");
    }
    let im2000 = Im2000Config {
        public,
        private,
        admin: c.listeners("im2000.admin", raw.im2000.admin),
        plain_to_loopback: raw.im2000.plain_to_loopback.unwrap_or(true),
        max_message_size: c.size("im2000.max_message_size", raw.im2000.max_message_size, 25 << 20),
        private_peers: raw.im2000.private_peers.unwrap_or(false),
        trusted_gateways: raw.im2000.trusted_gateways.iter().map(|g| g.to_lowercase()).collect(),
        max_inbox: raw.im2000.max_inbox.unwrap_or(10_000),
        store_rate: raw.im2000.store_rate.unwrap_or(30_000),
        max_connections: raw.im2000.max_connections.unwrap_or(1024),
        max_connections_per_ip: raw.im2000.max_connections_per_ip.unwrap_or(64),
        body_timeout: c.duration("im2000.body_timeout", raw.im2000.body_timeout, 120),
    };
    for (i, g) in im2000.trusted_gateways.iter().enumerate() {
        if !valid_domain(g) {
            c.problem(format!("im2000.trusted_gateways[{i}]"), format!("{g:?} is not a domain name"));
        }
    }
    for (key, v) in [
        ("im2000.max_inbox", im2000.max_inbox as usize),
        ("im2000.store_rate", im2000.store_rate as usize),
        ("im2000.max_connections", im2000.max_connections),
        ("im2000.max_connections_per_ip", im2000.max_connections_per_ip),
    ] {
        if v == 0 {
            c.problem(key, "must be at least 1");
        }
    }

    let smtp_raw = raw.smtp;
    let store_domain = smtp_raw.store_domain.map(|d| d.to_lowercase());
    let smtp = SmtpConfig {
        mx: c.listeners("smtp.mx", smtp_raw.mx),
        submission: c.listeners("smtp.submission", smtp_raw.submission),
        submissions: c.listeners("smtp.submissions", smtp_raw.submissions),
        submission_plaintext: smtp_raw.submission_plaintext.unwrap_or(false),
        max_message_size: c.size("smtp.max_message_size", smtp_raw.max_message_size, im2000.max_message_size),
        max_recipients: smtp_raw.max_recipients.unwrap_or(100),
        max_sessions: smtp_raw.max_sessions.unwrap_or(500),
        idle_timeout: c.duration("smtp.idle_timeout", smtp_raw.idle_timeout, 300),
        session_timeout: c.duration("smtp.session_timeout", smtp_raw.session_timeout, 1800),
        min_data_rate: c.size("smtp.min_data_rate", smtp_raw.min_data_rate, 256),
        store_domain: store_domain.clone().unwrap_or_default(),
        verify_sender: smtp_raw.verify_sender.unwrap_or(true),
        relay_port: smtp_raw.relay_port.unwrap_or(25),
        relay_concurrency: smtp_raw.relay_concurrency.unwrap_or(10),
        max_submission_sessions: smtp_raw.max_submission_sessions.unwrap_or(100),
        max_sessions_per_ip: smtp_raw.max_sessions_per_ip.unwrap_or(50),
        max_refused_recipients: smtp_raw.max_refused_recipients.unwrap_or(20),
        max_inflight_data: c.size("smtp.max_inflight_data", smtp_raw.max_inflight_data, 512 << 20),
        sender_quota: c.size("smtp.sender_quota", smtp_raw.sender_quota, 100 << 20),
        sender_domain_quota: c.size("smtp.sender_domain_quota", smtp_raw.sender_domain_quota, 1 << 30),
        dmarc_enforce: smtp_raw.dmarc_enforce.unwrap_or(true),
    };
    let mut outbound = OutboundConfig {
        dkim: BTreeMap::new(),
        relayhost: smtp_raw.relayhost.and_then(|r| outbound::relayhost(&mut c, "smtp.relayhost", r)),
        domain_relayhosts: BTreeMap::new(),
        destinations: outbound::destinations(&mut c, smtp_raw.destinations),
        mta_sts: smtp_raw.mta_sts.unwrap_or(true),
    };
    for (key, v) in [
        ("smtp.max_submission_sessions", smtp.max_submission_sessions),
        ("smtp.max_sessions_per_ip", smtp.max_sessions_per_ip),
        ("smtp.max_refused_recipients", smtp.max_refused_recipients as usize),
    ] {
        if v == 0 {
            c.problem(key, "must be at least 1");
        }
    }
    if smtp.max_inflight_data < smtp.max_message_size {
        c.problem("smtp.max_inflight_data", "must be at least smtp.max_message_size");
    }
    if smtp.relay_concurrency == 0 {
        c.problem("smtp.relay_concurrency", "must be at least 1");
    }
    if smtp.max_recipients == 0 {
        c.problem("smtp.max_recipients", "must be at least 1");
    }
    if smtp.max_sessions == 0 {
        c.problem("smtp.max_sessions", "must be at least 1");
    }

    let engine = match raw.store.backend.as_deref() {
        None | Some("rocksdb") => {
            if raw.store.url.is_some() {
                c.problem("store.url", "is only read with backend = \"postgres\"");
            }
            Engine::RocksDb
        }
        Some("postgres") => {
            let url = raw.store.url.clone().unwrap_or_default();
            if url.is_empty() {
                c.problem("store.url", "is needed with backend = \"postgres\" (postgres://user@host/database)");
            } else if let Err(e) = url.parse::<tokio_postgres::Config>() {
                c.problem("store.url", format!("is not a PostgreSQL URL: {e}"));
            }
            let max_connections = raw.store.max_connections.unwrap_or(16);
            if max_connections < 2 {
                c.problem("store.max_connections", "must be at least 2");
            }
            let timeout = c.duration("store.timeout", raw.store.timeout.clone(), 10);
            if timeout.is_zero() {
                c.problem("store.timeout", "must be longer than zero");
            }
            Engine::Postgres { url, max_connections, timeout }
        }
        Some(other) => {
            c.problem("store.backend", format!("is {other:?}: it must be \"rocksdb\" or \"postgres\""));
            Engine::RocksDb
        }
    };
    if engine == Engine::RocksDb {
        for (key, set) in [
            ("store.max_connections", raw.store.max_connections.is_some()),
            ("store.timeout", raw.store.timeout.is_some()),
            ("store.node", raw.store.node.is_some()),
        ] {
            if set {
                c.problem(key, "is only read with backend = \"postgres\"");
            }
        }
    }
    let node = raw.store.node.clone().unwrap_or_else(|| hostname.to_lowercase());
    let node_name_ok = (1..=64).contains(&node.len())
        && node.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if raw.store.node.is_some() && !node_name_ok {
        c.problem("store.node", format!("{node:?} is not a node name (1–64 letters, digits, '.', '-', '_')"));
    }
    let store = StoreConfig {
        engine,
        node,
        default_lifetime: c.duration("store.default_lifetime", raw.store.default_lifetime, 30 * 86_400),
        max_lifetime: c.duration("store.max_lifetime", raw.store.max_lifetime, 365 * 86_400),
        quota: c.size("store.quota", raw.store.quota, 1 << 30),
    };
    if store.default_lifetime > store.max_lifetime {
        c.problem("store.default_lifetime", "is longer than store.max_lifetime");
    }
    if store.default_lifetime.is_zero() {
        c.problem("store.default_lifetime", "must be longer than zero");
    }

    let notify = NotifyConfig {
        retry_min: c.duration("notify.retry_min", raw.notify.retry_min, 30),
        retry_max: c.duration("notify.retry_max", raw.notify.retry_max, 3600),
        max_retry_age: c.duration("notify.max_retry_age", raw.notify.max_retry_age, 5 * 86_400),
        resend_interval: c.duration("notify.resend_interval", raw.notify.resend_interval, 86_400),
        batch_size: raw.notify.batch_size.unwrap_or(100),
        timeout: c.duration("notify.timeout", raw.notify.timeout, 30),
    };
    if notify.retry_min.is_zero() || notify.retry_min > notify.retry_max {
        c.problem("notify.retry_min", "must be above zero and at most notify.retry_max");
    }
    if notify.batch_size == 0 || notify.batch_size > 1000 {
        c.problem("notify.batch_size", "must be between 1 and 1000");
    }
    if notify.resend_interval.is_zero() {
        c.problem("notify.resend_interval", "must be longer than zero");
    }

    let dns = DnsConfig {
        nameservers: c.listeners("dns.nameservers", raw.dns.nameservers),
        timeout: c.duration("dns.timeout", raw.dns.timeout, 5),
    };

    let mut peers = BTreeMap::new();
    for (domain, p) in raw.peers {
        let key = format!("peers.{domain:?}");
        if !valid_domain(&domain.to_lowercase()) {
            c.problem(&key, "is not a domain name");
        }
        for (field, v) in [("store", &p.store), ("notify", &p.notify)] {
            if let Some(v) = v
                && !valid_host_port(v)
            {
                c.problem(format!("{key}.{field}"), format!("{v:?} is not HOST:PORT"));
            }
        }
        if p.store.is_none() && p.notify.is_none() {
            c.problem(&key, "names neither store nor notify");
        }
        peers.insert(domain.to_lowercase(), Peer { store: p.store, notify: p.notify, plain: p.plain });
    }

    let mut domains: Vec<String> = Vec::new();
    let mut routes = BTreeMap::new();
    for (i, d) in raw.domain.into_iter().enumerate() {
        let key = format!("domain[{i}].name");
        let name = match d.name {
            None => {
                c.problem(key, "missing");
                continue;
            }
            Some(n) if !valid_domain(&n.to_lowercase()) => {
                c.problem(key, format!("{n:?} is not a domain name"));
                continue;
            }
            Some(n) if domains.contains(&n.to_lowercase()) => {
                c.problem(key, format!("{n:?} is listed twice"));
                continue;
            }
            Some(n) => n.to_lowercase(),
        };
        domains.push(name.clone());
        let keys = outbound::dkim_keys(&mut c, &format!("domain[{i}]"), d.dkim);
        if !keys.is_empty() {
            outbound.dkim.insert(name.clone(), keys);
        }
        if let Some(r) = d.relayhost.and_then(|r| outbound::relayhost(&mut c, &format!("domain[{i}].relayhost"), r)) {
            outbound.domain_relayhosts.insert(name.clone(), r);
        }
        let route = match d.route.as_deref().map(|r| (r, Route::parse(r))) {
            None => Route::Im2000,
            Some((_, Some(r))) => r,
            Some((r, None)) => {
                c.problem(format!("domain[{i}].route"), format!("{r:?} is not a route (im2000, legacy or auto)"));
                Route::Im2000
            }
        };
        if let Some(h) = &d.legacy_host
            && !valid_host_port(h)
        {
            c.problem(format!("domain[{i}].legacy_host"), format!("{h:?} is not HOST:PORT"));
        }
        routes.insert(
            name,
            DomainRoute { route, legacy_host: d.legacy_host, verify_users: d.verify_users.unwrap_or(false) },
        );
    }

    let mut users: Vec<UserConfig> = Vec::new();
    // Keys seen so far: a list of 10,000 users is checked in one pass.
    let mut seen = std::collections::HashSet::new();
    for (i, u) in raw.user.into_iter().enumerate() {
        let key = format!("user[{i}]");
        let address = match u.address.as_deref().map(str::parse::<Address>) {
            None => {
                c.problem(format!("{key}.address"), "missing");
                None
            }
            Some(Err(e)) => {
                c.problem(format!("{key}.address"), e.to_string());
                None
            }
            Some(Ok(a)) => {
                if !domains.iter().any(|d| d == a.domain()) {
                    c.problem(format!("{key}.address"), format!("{a} is in no configured [[domain]]"));
                }
                if !seen.insert(a.key()) {
                    c.problem(format!("{key}.address"), format!("{a} is listed twice"));
                }
                Some(a)
            }
        };
        let route = match u.route.as_deref().map(|r| (r, Route::parse(r))) {
            None => None,
            Some((_, Some(r))) => Some(r),
            Some((r, None)) => {
                c.problem(format!("{key}.route"), format!("{r:?} is not a route (im2000, legacy or auto)"));
                None
            }
        };
        let needs_secret = route != Some(Route::Legacy);
        let secret = match (u.password, u.password_hash) {
            (None, None) if !needs_secret => None,
            (Some(p), None) if !p.is_empty() => Some(Secret::Plain(p)),
            (None, Some(h)) => match argon2::PasswordHash::new(&h) {
                Ok(_) => Some(Secret::Hash(h)),
                Err(e) => {
                    c.problem(format!("{key}.password_hash"), format!("not an argon2 PHC string: {e}"));
                    None
                }
            },
            (Some(_), Some(_)) => {
                c.problem(&key, "set password or password_hash, not both");
                None
            }
            _ => {
                c.problem(&key, "needs a (non-empty) password or password_hash");
                None
            }
        };
        let quota = u.quota.map(|q| c.size(&format!("{key}.quota"), Some(q), 0));
        let aliases: Vec<Address> = u
            .aliases
            .iter()
            .enumerate()
            .filter_map(|(j, a)| match a.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => {
                    c.problem(format!("{key}.aliases[{j}]"), e.to_string());
                    None
                }
            })
            .collect();
        if let Some(address) = address
            && (secret.is_some() || !needs_secret)
        {
            users.push(UserConfig { address, secret, quota, route, admin: u.admin.unwrap_or(false), aliases });
        }
    }

    let smtp = SmtpConfig {
        store_domain: match store_domain {
            Some(d) if !domains.contains(&d) => {
                c.problem("smtp.store_domain", format!("{d:?} is not one of the [[domain]]s"));
                d
            }
            Some(d) => d,
            None => domains.first().cloned().unwrap_or_default(),
        },
        ..smtp
    };
    if (!smtp.mx.is_empty() || !smtp.submission.is_empty() || !smtp.submissions.is_empty()) && domains.is_empty() {
        c.problem("smtp", "SMTP listeners need at least one [[domain]]");
    }
    for (i, domain) in domains.iter().enumerate() {
        if let Some(a) = routes[domain].legacy_host.as_deref().and_then(|h| h.parse::<SocketAddr>().ok())
            && smtp.is_own_listener(a.ip(), a.port())
        {
            c.problem(
                format!("domain[{i}].legacy_host"),
                format!("{a} is this gateway's own SMTP listener (a route loop)"),
            );
        }
    }

    let tls = raw.tls.map(|t| {
        let mut path = |field: &str, v: Option<String>, required: bool| -> Option<PathBuf> {
            match v {
                None if required => {
                    c.problem(format!("tls.{field}"), "missing");
                    None
                }
                None => None,
                Some(p) if !Path::new(&p).is_file() => {
                    c.problem(format!("tls.{field}"), format!("{p:?} is not a readable file"));
                    None
                }
                Some(p) => Some(PathBuf::from(p)),
            }
        };
        let cert = path("cert", t.cert, true);
        let key = path("key", t.key, true);
        let ca = path("ca", t.ca, false);
        TlsConfig { cert: cert.unwrap_or_default(), key: key.unwrap_or_default(), ca }
    });

    if !smtp.submissions.is_empty() && tls.is_none() {
        c.problem("smtp.submissions", "implicit-TLS listeners need [tls] (cert and key)");
    }
    let imap_raw = raw.imap;
    let imap = ImapConfig {
        listen: c.listeners("imap.listen", imap_raw.listen),
        implicit_tls: c.listeners("imap.implicit_tls", imap_raw.implicit_tls),
        plaintext: imap_raw.plaintext.unwrap_or(false),
        max_sessions: imap_raw.max_sessions.unwrap_or(2000),
        max_sessions_per_ip: imap_raw.max_sessions_per_ip.unwrap_or(50),
        idle_timeout: c.duration("imap.idle_timeout", imap_raw.idle_timeout, 1800),
        cache_size: c.size("imap.cache_size", imap_raw.cache_size, 256 << 20),
        max_append: c.size("imap.max_append", imap_raw.max_append, im2000.max_message_size),
        held_quota: c.size("imap.held_quota", imap_raw.held_quota, 1 << 30),
        max_folders: imap_raw.max_folders.unwrap_or(200),
    };
    if !imap.implicit_tls.is_empty() && tls.is_none() {
        c.problem("imap.implicit_tls", "implicit-TLS listeners need [tls] (cert and key)");
    }
    if (!imap.listen.is_empty() || !imap.implicit_tls.is_empty()) && domains.is_empty() {
        c.problem("imap", "IMAP listeners need at least one [[domain]]");
    }
    for (key, v) in [("imap.max_sessions", imap.max_sessions), ("imap.max_sessions_per_ip", imap.max_sessions_per_ip)] {
        if v == 0 {
            c.problem(key, "must be at least 1");
        }
    }
    if imap.idle_timeout < Duration::from_secs(60) {
        c.problem("imap.idle_timeout", "must be at least 60s (clients re-issue IDLE every 29 minutes)");
    }

    let log_level = raw.log.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        c.problem("log.level", format!("{log_level:?} is not a log filter (e.g. info, debug, imgate=debug)"));
    }

    Config {
        source: name.to_string(),
        hostname: hostname.to_lowercase(),
        data_dir,
        run_as: raw.run_as,
        im2000,
        smtp,
        imap,
        store,
        notify,
        dns,
        peers,
        domains,
        routes,
        users,
        tls,
        outbound,
        log_level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_host_that_is_our_own_listener_is_a_route_loop() {
        let text = |host: &str| {
            format!(
                "[im2000]\npublic = [\"127.0.0.1:0\"]\n[smtp]\nmx = [\"0.0.0.0:2525\"]\n\
                 [[domain]]\nname = \"a.test\"\nroute = \"legacy\"\nlegacy_host = \"{host}\"\n"
            )
        };
        for (host, looped) in [("127.0.0.1:2525", true), ("127.0.0.1:25", false), ("mail.a.test:2525", false)] {
            let problems = Config::parse(&text(host), "t").err().map(|e| e.problems).unwrap_or_default();
            let found = problems.iter().any(|p| p.key == "domain[0].legacy_host" && p.message.contains("route loop"));
            assert_eq!(found, looped, "{host}: {problems:?}");
        }
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::embedded();
        assert_eq!(c.domains, vec!["example.test"]);
        assert!(c.im2000.public[0].ip().is_loopback());
        assert!(c.im2000.private[0].ip().is_loopback());
        assert!(c.imap.listen[0].ip().is_loopback() && c.imap.plaintext, "IMAP for demo@, on loopback");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let text = r#"
            hostname = "bad host"
            colour = "blue"
            [im2000]
            public = ["nowhere"]
            privat = ["127.0.0.1:1"]
            [imap]
            implicit_tls = ["127.0.0.1:993"]
            idle_timeout = "10s"
            max_sessions = 0
            [store]
            default_lifetime = "3 fortnights"
            [peers."two.test"]
            store = "not a host:port"
            [[domain]]
            name = "one.test"
            [[user]]
            address = "bob@elsewhere.test"
            password = "x"
            [[user]]
            address = "carol@one.test"
        "#;
        let err = Config::parse(text, "t.toml").unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for want in [
            "colour",
            "im2000.privat",
            "hostname",
            "im2000.public[0]",
            "store.default_lifetime",
            "peers.\"two.test\".store",
            "user[0].address",
            "user[1]",
            "imap.implicit_tls",
            "imap.idle_timeout",
            "imap.max_sessions",
        ] {
            assert!(keys.contains(&want), "missing {want} in {keys:?}");
        }
        let shown = err.to_string();
        assert!(shown.starts_with("t.toml: "), "{shown}");
        assert!(shown.contains("t.toml: colour: unknown key"), "{shown}");
    }

    #[test]
    fn sizes_are_text_with_a_unit_or_plain_octets() {
        let base = "[im2000]\npublic = [\"127.0.0.1:0\"]\n";
        let cases = [
            ("max_message_size = 10485760", Some(10_485_760)),
            ("max_message_size = \"10485760\"", Some(10_485_760)),
            ("max_message_size = \"10MiB\"", Some(10 << 20)),
            ("max_message_size = \"ten\"", None),
            ("max_message_size = -1", None),
        ];
        for (line, want) in cases {
            let got = Config::parse(&format!("{base}{line}\n"), "t").ok().map(|c| c.im2000.max_message_size);
            assert_eq!(got, want, "{line}");
        }
    }

    #[test]
    fn syntax_error_names_the_file() {
        let err = Config::parse("hostname = ", "x.toml").unwrap_err();
        assert!(err.to_string().starts_with("x.toml: 1 problem"));
    }
}
