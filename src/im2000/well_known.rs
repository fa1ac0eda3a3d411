//! `/.well-known/mta-sts.txt` on the public listener: the MTA-STS policy
//! (RFC 8461 §3.2) of the domains whose MX is this node, for senders to
//! fetch at `https://mta-sts.<domain>/` (the listener on port 443 with a
//! certificate for that name). Served only by a node whose MX has TLS.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::context::Shared;

/// How long senders may keep the policy: a week.
const MAX_AGE: u64 = 604_800;

/// The policy: enforce, this node's host name as the one MX.
pub fn mta_sts_policy(hostname: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {hostname}\r\nmax_age: {MAX_AGE}\r\n")
}

pub async fn mta_sts(State(s): State<Shared>) -> Response {
    if s.config.smtp.mx.is_empty() || s.config.tls.is_none() {
        return super::error::not_found().await.into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], mta_sts_policy(&s.config.hostname)).into_response()
}
