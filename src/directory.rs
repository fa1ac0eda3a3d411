//! The directory: the node's domains and users as the configuration names
//! them — what a reload replaces — with the users' passwords kept only as
//! argon2 hashes: plain passwords from the configuration are hashed at
//! start-up and dropped.
//!
//! argon2 is slow on purpose (tens of milliseconds), and HTTP Basic sends
//! the password with every request: a client polling its inbox would pay
//! that each time. So a successful verification is remembered for a few
//! minutes as a keyed SHA-256 of (user, password) — never the password —
//! and failures are never cached. A reload builds new `Users`, which forgets
//! them all.
//!
//! argon2 runs on a pool of its own ([`verify_on_pool`]): a few threads and
//! a bounded queue, so guesses cannot take the blocking threads that store
//! writes need, nor queue without end. Who may try, and how often, is
//! decided above this, in `im2000::auth::authenticate`.

use std::collections::HashMap;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::config::{Config, Secret};
use crate::proto::Address;

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

impl Directory {
    /// Whether `user` may submit `content`: every address its `From:`
    /// names must be the user's own or one of their aliases (Stalwart's
    /// `must-match-sender`). The answer says what is wrong.
    pub fn check_from(&self, user: &Address, content: &[u8]) -> Result<(), String> {
        let from = crate::proto::from::from_addresses(content);
        if from.is_empty() {
            return Err("the message has no From: address".into());
        }
        let allowed =
            |a: &String| a.parse::<Address>().is_ok_and(|a| self.config.user(user).is_some_and(|u| u.may_send_as(&a)));
        match from.iter().find(|a| !allowed(a)) {
            None => Ok(()),
            Some(other) => Err(format!("From: {other} is not an address {user} may send as")),
        }
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

#[derive(Clone)]
struct Entry {
    address: Address,
    hash: String,
    quota: Option<u64>,
    admin: bool,
}

/// The node's users, keyed by lower-cased address.
#[derive(Clone, Default)]
pub struct Users {
    by_key: Arc<HashMap<String, Entry>>,
    /// A hash nobody's password matches, verified for unknown users so that
    /// timing does not tell which users exist.
    decoy: Arc<String>,
    /// Recently verified credentials: keyed digest → (user key, when).
    verified: Arc<Mutex<VerifiedCache>>,
    /// The key of those digests, random per process.
    cache_key: [u8; 32],
}

/// Keyed digest of (user, password) → (user key, when verified).
type VerifiedCache = HashMap<[u8; 32], (String, Instant)>;

/// How long a verified password is taken on trust.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Most credentials remembered; the cache is emptied when it fills.
const VERIFIED_MAX: usize = 10_000;

/// Verifications waiting for the argon2 pool before more are refused.
const POOL_QUEUE: usize = 64;

struct PoolJob {
    hash: String,
    password: String,
    answer: tokio::sync::oneshot::Sender<bool>,
}

fn pool() -> &'static SyncSender<PoolJob> {
    static POOL: OnceLock<SyncSender<PoolJob>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = sync_channel::<PoolJob>(POOL_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("imgate-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        let ok = PasswordHash::new(&job.hash)
                            .map(|h| Argon2::default().verify_password(job.password.as_bytes(), &h).is_ok())
                            .unwrap_or(false);
                        let _ = job.answer.send(ok);
                    }
                })
                .expect("spawning an argon2 thread");
        }
        tx
    })
}

/// Verifies `password` against an argon2 `hash` on the pool; `None` when
/// the pool's queue is full.
pub async fn verify_on_pool(hash: String, password: String) -> Option<bool> {
    let (answer, rx) = tokio::sync::oneshot::channel();
    match pool().try_send(PoolJob { hash, password, answer }) {
        Ok(()) => rx.await.ok(),
        Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => None,
    }
}

/// Hashes a password into an argon2id PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 hashes any password").to_string()
}

impl Users {
    /// The users with an IM2000 mailbox (those with a password).
    pub fn from_config(config: &Config) -> Users {
        let by_key = config
            .users
            .iter()
            .filter_map(|u| {
                let hash = match u.secret.as_ref()? {
                    Secret::Plain(p) => hash_password(p),
                    Secret::Hash(h) => h.clone(),
                };
                Some((u.address.key(), Entry { address: u.address.clone(), hash, quota: u.quota, admin: u.admin }))
            })
            .collect();
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut cache_key);
        Users {
            by_key: Arc::new(by_key),
            decoy: Arc::new(hash_password("\u{0}decoy")),
            verified: Default::default(),
            cache_key,
        }
    }

    /// Whether `address` has a mailbox here.
    pub fn contains(&self, address: &Address) -> bool {
        self.by_key.contains_key(&address.key())
    }

    /// The user named in an `Authorization: Basic` header and the password
    /// given, if the header is one.
    pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
        let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let (user, password) = String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.into(), p.into()))?;
        Some((user, password))
    }

    /// Whether `address` may use the admin API.
    pub fn is_admin(&self, address: &Address) -> bool {
        self.by_key.get(&address.key()).is_some_and(|e| e.admin)
    }

    /// The user's own quota, if it has one.
    pub fn quota(&self, address: &Address) -> Option<u64> {
        self.by_key.get(&address.key()).and_then(|e| e.quota)
    }

    /// The user's address if these credentials were verified recently.
    pub fn cached(&self, user: &str, password: &str) -> Option<Address> {
        let entry = user.parse::<Address>().ok().and_then(|a| self.by_key.get(&a.key()).cloned())?;
        self.recently_verified(&self.credential_digest(user, password), &entry.address.key()).then_some(entry.address)
    }

    /// The user's address if `password` is theirs (`Some(Ok)`), `None` if
    /// not, `Some(Err)` if the argon2 pool is too busy to say. Unknown
    /// users cost the same time as known ones.
    pub async fn verify(&self, user: &str, password: &str) -> Option<Result<Address, ()>> {
        let entry = user.parse::<Address>().ok().and_then(|a| self.by_key.get(&a.key()).cloned());
        let digest = self.credential_digest(user, password);
        if let Some(e) = &entry
            && self.recently_verified(&digest, &e.address.key())
        {
            return Some(Ok(e.address.clone()));
        }
        let hash = entry.as_ref().map_or_else(|| self.decoy.as_str().to_string(), |e| e.hash.clone());
        let Some(ok) = verify_on_pool(hash, password.to_string()).await else {
            return Some(Err(()));
        };
        let address = entry.filter(|_| ok).map(|e| e.address)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        cache.insert(digest, (address.key(), Instant::now()));
        Some(Ok(address))
    }

    fn credential_digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update(user.to_lowercase().as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn recently_verified(&self, digest: &[u8; 32], key: &str) -> bool {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).is_some_and(|(k, at)| k == key && at.elapsed() < VERIFIED_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verified_passwords_are_remembered_and_wrong_ones_never() {
        let text = "[im2000]\npublic = [\"127.0.0.1:0\"]\n[[domain]]\nname = \"a.test\"\n\
                    [[user]]\naddress = \"ann@a.test\"\npassword = \"right\"\n";
        let users = Users::from_config(&Config::parse(text, "t").unwrap());
        let cases = [
            ("ann@a.test", "wrong", false),
            ("ann@a.test", "right", true),
            ("ann@a.test", "right", true), // from the cache
            ("ANN@a.test", "right", true),
            ("ann@a.test", "wrong", false),
            ("ann@a.test", "righ", false),
            ("bob@a.test", "right", false),
        ];
        for (user, password, ok) in cases {
            assert_eq!(users.verify(user, password).await.is_some(), ok, "{user} {password}");
            assert!(!matches!(users.verify(user, password).await, Some(Err(()))), "the pool is not busy");
        }
        assert_eq!(users.verified.lock().unwrap().len(), 1, "only successes are remembered");
    }
}
