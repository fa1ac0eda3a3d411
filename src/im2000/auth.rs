//! Authentication of a node's own users, for every service: [`authenticate`]
//! is the one door for HTTP, SMTP and IMAP alike. Credentials verified a
//! moment ago pass at once; anything else charges the client address
//! before it is verified (so concurrent guesses cannot all pass a check
//! made before any was counted), is refunded if right, and a user name
//! under attack is slowed — never locked. The passwords themselves, their
//! hashes and the argon2 pool are [`crate::directory`].

use std::net::IpAddr;
use std::time::Duration;

use crate::proto::Address;

/// Failed authentications one client address may make in ten minutes.
pub const AUTH_FAILURES_PER_IP: u32 = 10;
/// Failures of one user name (from anywhere) before its checks slow down.
const USER_FAILURES_FREE: u32 = 5;
/// The longest a check of a user name under attack is held back.
const USER_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How an authentication attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Valid(Address),
    Invalid,
    /// The client address has used up its failures for now.
    Throttled,
    /// The argon2 pool's queue is full: try again shortly.
    Busy,
}

/// Authenticates `user` from `ip` for any service of the node: the one
/// place that applies the failed-authentication limits.
pub async fn authenticate(ctx: &crate::context::Context, ip: IpAddr, user: &str, password: &str) -> AuthOutcome {
    let dir = ctx.dir();
    let ip_key = format!("ip:{ip}");
    let user_key = format!("user:{}", user.to_lowercase());
    let now = ctx.clock.now();
    // Credentials verified a moment ago pass without being charged, so a
    // client's concurrent requests are not held back — but not from an
    // address that is held back, or its guesses would have an oracle.
    if !ctx.auth_failures.exceeded(&ip_key, now)
        && let Some(address) = dir.users.cached(user, password)
    {
        return AuthOutcome::Valid(address);
    }
    if !ctx.auth_failures.charge(&ip_key, now) {
        ctx.metrics.inc("imgate_rate_limited_total", "what", "auth");
        return AuthOutcome::Throttled;
    }
    // A user name many addresses keep failing for is checked more slowly,
    // for everyone: it slows a distributed guesser without locking out the
    // user, whose right password still works.
    let failures = ctx.user_failures.count_of(&user_key, now);
    if failures > USER_FAILURES_FREE {
        let steps = (failures - USER_FAILURES_FREE).min(16);
        let wait = (Duration::from_millis(50) * 2u32.pow(steps)).min(USER_BACKOFF_MAX);
        ctx.metrics.inc("imgate_rate_limited_total", "what", "auth_user_backoff");
        tokio::time::sleep(wait).await;
    }
    match dir.users.verify(user, password).await {
        Some(Ok(address)) => {
            ctx.auth_failures.refund(&ip_key);
            AuthOutcome::Valid(address)
        }
        Some(Err(())) => {
            ctx.auth_failures.refund(&ip_key);
            ctx.metrics.inc("imgate_rate_limited_total", "what", "auth_pool");
            AuthOutcome::Busy
        }
        None => {
            ctx.user_failures.record(&user_key, now);
            AuthOutcome::Invalid
        }
    }
}
