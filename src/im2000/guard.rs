//! What stands in front of the HTTP services, before any handler runs:
//! - on the public listener, a client that keeps asking for message
//!   identifiers that do not exist is answered `429` for a while;
//! - on the private and admin listeners, credentials are checked before a
//!   byte of the body is read ([`auth::authenticate`]: the failed-attempt
//!   limits), a state-changing request must say its body is JSON (or, for a
//!   submission, `message/rfc822`) — no cross-site form can — and the body
//!   must arrive within `im2000.body_timeout`.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::auth::{self, AuthOutcome};
use super::error::ApiError;
use crate::directory::Users;
use crate::proto::Address;

/// The peer of the connection a request came on (set by the server).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The authenticated user making a request on the private or admin
/// listener, set by [`authenticated`].
#[derive(Debug, Clone)]
pub struct Caller(pub Address);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or(ApiError::Unauthorized)
    }
}

/// Unknown-identifier lookups per client address (public listener).
pub async fn lookups(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/im2000/v1/messages/") {
        return next.run(req).await;
    }
    let Some(ip) = req.extensions().get::<ClientAddr>().map(|c| format!("ip:{}", c.0.ip())) else {
        return next.run(req).await;
    };
    let now = s.clock.now();
    if s.misses.exceeded(&ip, now) {
        s.metrics.inc("imgate_rate_limited_total", "what", "lookup");
        return ApiError::RateLimited("too many unknown identifiers; try again later".into()).into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::NOT_FOUND {
        s.misses.record(&ip, now);
    }
    resp
}

/// Whether a state-changing request's body type is one no cross-site form
/// can send.
fn acceptable_body_type(req: &Request) -> bool {
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let wanted = if req.uri().path() == "/im2000/v1/submissions" { "message/rfc822" } else { "application/json" };
    essence == wanted
}

/// Authenticates, checks the body's type, then reads the body within the
/// body timeout — in that order, so a stranger cannot make the node read
/// (or wait for) a body it would refuse. `/metrics` (admin listener only)
/// needs no credentials.
pub async fn authenticated(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/metrics" {
        return next.run(req).await;
    }
    let ip = req.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let Some((user, password)) = Users::basic_credentials(req.headers()) else {
        return ApiError::Unauthorized.into_response();
    };
    let ip = ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let caller = match auth::authenticate(&s, ip, &user, &password).await {
        AuthOutcome::Valid(a) => a,
        AuthOutcome::Invalid => {
            tracing::info!(%ip, user = ?user.chars().take(64).collect::<String>(), "HTTP authentication failed");
            return ApiError::Unauthorized.into_response();
        }
        AuthOutcome::Throttled => {
            return ApiError::RateLimited("too many failed authentications from your address; try again later".into())
                .into_response();
        }
        AuthOutcome::Busy => return ApiError::Busy("authentication is busy; try again shortly".into()).into_response(),
    };
    let changes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    if changes && !acceptable_body_type(&req) {
        let want = if req.uri().path() == "/im2000/v1/submissions" { "message/rfc822" } else { "application/json" };
        return ApiError::UnsupportedMediaType(format!("send this request with Content-Type: {want}")).into_response();
    }
    let mut req = req;
    req.extensions_mut().insert(Caller(caller));
    if !changes {
        return next.run(req).await;
    }
    let limit = s.config.im2000.max_message_size as usize + 64 * 1024;
    match read_body(&s, req, limit).await {
        Ok(req) => next.run(req).await,
        Err(resp) => resp,
    }
}

/// Public listener: bodies (notifications, refusals) within the timeout.
/// Retrievals have none to wait for.
pub async fn timed_body(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    match read_body(&s, req, super::MAX_NOTIFY_BODY).await {
        Ok(req) => next.run(req).await,
        Err(resp) => resp,
    }
}

/// Reads the whole body, at most `limit` octets, within `im2000.body_timeout`.
async fn read_body(s: &Shared, req: Request, limit: usize) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(s.config.im2000.body_timeout, axum::body::to_bytes(body, limit)).await;
    match read {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
        Ok(Err(_)) => {
            Err(ApiError::TooLarge(format!("the request body is over {limit} octets or broke off")).into_response())
        }
        Err(_) => {
            s.metrics.inc("imgate_rate_limited_total", "what", "http_body_timeout");
            Err(ApiError::Timeout("the request body did not arrive in time".into()).into_response())
        }
    }
}
