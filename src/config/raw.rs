//! Phase one of configuration: the TOML file as written, with no checks but
//! types. Every struct mirrors a table of the file; units stay text here.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A size as written: text with a unit (`25MiB`) or a plain number of
/// octets (`max_message_size = 26214400`, as Postfix users write them).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Octets(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub hostname: Option<String>,
    pub data_dir: Option<String>,
    pub run_as: Option<String>,
    #[serde(default)]
    pub im2000: RawIm2000,
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub imap: RawImap,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub dns: RawDns,
    #[serde(default)]
    pub peers: BTreeMap<String, RawPeer>,
    #[serde(default)]
    pub domain: Vec<RawDomain>,
    #[serde(default)]
    pub user: Vec<RawUser>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawIm2000 {
    #[serde(default)]
    pub public: Vec<String>,
    #[serde(default)]
    pub private: Vec<String>,
    #[serde(default)]
    pub admin: Vec<String>,
    pub plain_to_loopback: Option<bool>,
    pub max_message_size: Option<RawSize>,
    pub private_peers: Option<bool>,
    #[serde(default)]
    pub trusted_gateways: Vec<String>,
    pub max_inbox: Option<u64>,
    pub store_rate: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub body_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub backend: Option<String>,
    pub url: Option<String>,
    pub max_connections: Option<usize>,
    pub timeout: Option<String>,
    pub node: Option<String>,
    pub default_lifetime: Option<String>,
    pub max_lifetime: Option<String>,
    pub quota: Option<RawSize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNotify {
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
    pub max_retry_age: Option<String>,
    pub resend_interval: Option<String>,
    pub batch_size: Option<usize>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawPeer {
    pub store: Option<String>,
    pub notify: Option<String>,
    #[serde(default)]
    pub plain: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDomain {
    pub name: Option<String>,
    pub route: Option<String>,
    pub legacy_host: Option<String>,
    pub verify_users: Option<bool>,
    #[serde(default)]
    pub dkim: Vec<RawDkimKey>,
    pub relayhost: Option<RawRelayHost>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDkimKey {
    pub selector: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRelayHost {
    pub host: Option<String>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDestination {
    pub tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawUser {
    pub address: Option<String>,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    pub quota: Option<RawSize>,
    pub route: Option<String>,
    pub admin: Option<bool>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub ca: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLog {
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawImap {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub implicit_tls: Vec<String>,
    pub plaintext: Option<bool>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub idle_timeout: Option<String>,
    pub cache_size: Option<RawSize>,
    pub max_append: Option<RawSize>,
    pub held_quota: Option<RawSize>,
    pub max_folders: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSmtp {
    #[serde(default)]
    pub mx: Vec<String>,
    #[serde(default)]
    pub submission: Vec<String>,
    #[serde(default)]
    pub submissions: Vec<String>,
    pub submission_plaintext: Option<bool>,
    pub max_message_size: Option<RawSize>,
    pub max_recipients: Option<usize>,
    pub max_sessions: Option<usize>,
    pub idle_timeout: Option<String>,
    pub session_timeout: Option<String>,
    pub min_data_rate: Option<RawSize>,
    pub store_domain: Option<String>,
    pub verify_sender: Option<bool>,
    pub relay_port: Option<u16>,
    pub relay_concurrency: Option<usize>,
    pub max_submission_sessions: Option<usize>,
    pub max_sessions_per_ip: Option<usize>,
    pub max_refused_recipients: Option<u32>,
    pub max_inflight_data: Option<RawSize>,
    pub sender_quota: Option<RawSize>,
    pub sender_domain_quota: Option<RawSize>,
    pub dmarc_enforce: Option<bool>,
    pub mta_sts: Option<bool>,
    pub relayhost: Option<RawRelayHost>,
    #[serde(default)]
    pub destinations: BTreeMap<String, RawDestination>,
}
