//! Notification query, the agent's private service: a user lists the
//! notifications filed for them and clears those they are done with.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use super::error::{ApiError, parse_json};
use super::guard::Caller;
use crate::clock::rfc3339;
use crate::proto::api::{ClearRequest, ClearResponse, InboxEntry, InboxPage};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

fn cursor(s: &str, what: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::BadRequest(format!("{what} must be a cursor from an earlier answer")))
}

/// `GET /inbox?after=CURSOR`.
pub async fn list(
    State(s): State<Shared>,
    Query(q): Query<ListQuery>,
    Caller(user): Caller,
) -> Result<Response, ApiError> {
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(c) => cursor(c, "after")?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = s.store.clone();
    let key = user.key();
    let entries = s.blocking(move || store.inbox_list(&key, after, limit)).await??;
    let next = entries.last().map_or(after, |(seq, _)| *seq).to_string();
    let notifications = entries
        .into_iter()
        .map(|(seq, r)| InboxEntry {
            cursor: seq.to_string(),
            received_at: rfc3339(r.received_at),
            notification: r.notification,
        })
        .collect();
    Ok(axum::Json(InboxPage { notifications, next }).into_response())
}

/// `POST /inbox/clear` with `{"through": CURSOR}`.
pub async fn clear(State(s): State<Shared>, Caller(user): Caller, body: Bytes) -> Result<Response, ApiError> {
    let req: ClearRequest = parse_json(&body)?;
    let through = cursor(&req.through, "through")?;
    let store = s.store.clone();
    let key = user.key();
    let cleared = s.blocking(move || store.inbox_clear(&key, through)).await??;
    Ok(axum::Json(ClearResponse { cleared }).into_response())
}
