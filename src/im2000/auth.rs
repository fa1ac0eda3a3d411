//! HTTP Basic authentication of a node's own users against argon2 hashes.
//! Plain passwords from the configuration are hashed at start-up and
//! dropped: the server keeps only hashes in memory.
//!
//! argon2 is slow on purpose (tens of milliseconds), and HTTP Basic sends
//! the password with every request: a client polling its inbox would pay
//! that each time. So a successful verification is remembered for a few
//! minutes as a keyed SHA-256 of (user, password) — never the password —
//! and failures are never cached. A reload builds new `Users`, which forgets
//! them all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use axum::http::HeaderMap;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use crate::config::{Config, Secret};
use crate::proto::Address;

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

    /// Whether `address` may use the admin API.
    pub fn is_admin(&self, address: &Address) -> bool {
        self.by_key.get(&address.key()).is_some_and(|e| e.admin)
    }

    /// The user's own quota, if it has one.
    pub fn quota(&self, address: &Address) -> Option<u64> {
        self.by_key.get(&address.key()).and_then(|e| e.quota)
    }

    /// The user named by a valid `Authorization: Basic` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Address, ApiError> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let encoded =
            value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")).ok_or(ApiError::Unauthorized)?;
        let decoded =
            base64::engine::general_purpose::STANDARD.decode(encoded.trim()).map_err(|_| ApiError::Unauthorized)?;
        let decoded = String::from_utf8(decoded).map_err(|_| ApiError::Unauthorized)?;
        let (user, password) = decoded.split_once(':').ok_or(ApiError::Unauthorized)?;
        self.verify(user, password).await.ok_or(ApiError::Unauthorized)
    }

    /// The user's address if `password` is theirs. Unknown users cost the
    /// same time as known ones.
    pub async fn verify(&self, user: &str, password: &str) -> Option<Address> {
        let entry = user.parse::<Address>().ok().and_then(|a| self.by_key.get(&a.key()).cloned());
        let digest = self.credential_digest(user, password);
        if let Some(e) = &entry
            && self.recently_verified(&digest, &e.address.key())
        {
            return Some(e.address.clone());
        }
        let hash = entry.as_ref().map_or_else(|| self.decoy.as_str().to_string(), |e| e.hash.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let address = entry.filter(|_| ok).map(|e| e.address)?;
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        cache.insert(digest, (address.key(), Instant::now()));
        Some(address)
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
        }
        assert_eq!(users.verified.lock().unwrap().len(), 1, "only successes are remembered");
    }
}
