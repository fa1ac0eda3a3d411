//! Rate limits in front of the HTTP services: a client that keeps failing
//! authentication (per address and per user), or keeps asking for message
//! identifiers that do not exist (per address), is answered `429` for a while
//! — whether or not its next guess would be right.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::Shared;
use super::error::ApiError;

/// The peer of the connection a request came on (set by the server).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The user named in a Basic `Authorization` header, if any.
fn basic_user(req: &Request) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(text.split_once(':')?.0.to_lowercase())
}

fn limited(s: &Shared, what: &str) -> Response {
    s.metrics.inc("imgate_rate_limited_total", "what", what);
    ApiError::RateLimited("too many failed attempts; try again later".into()).into_response()
}

pub async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<ClientAddr>().map(|c| format!("ip:{}", c.0.ip()));
    let user = basic_user(&req).map(|u| format!("user:{u}"));
    let lookup = req.uri().path().starts_with("/im2000/v1/messages/");
    let now = s.clock.now();
    // Authentication attempts are limited per address and per user name.
    let keys: Vec<&String> = if user.is_some() { ip.iter().chain(user.iter()).collect() } else { Vec::new() };
    if keys.iter().any(|k| s.auth_failures.exceeded(k, now)) {
        return limited(&s, "auth");
    }
    if lookup && ip.as_ref().is_some_and(|k| s.misses.exceeded(k, now)) {
        return limited(&s, "lookup");
    }
    let resp = next.run(req).await;
    match resp.status() {
        StatusCode::UNAUTHORIZED => keys.iter().for_each(|k| s.auth_failures.record(k, now)),
        StatusCode::NOT_FOUND if lookup => {
            if let Some(k) = &ip {
                s.misses.record(k, now);
            }
        }
        _ => {}
    }
    resp
}
