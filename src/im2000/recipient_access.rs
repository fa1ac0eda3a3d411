//! Recipient access, the store's public service: retrieve (GET with Range and
//! `?part=headers`, HEAD), silence, un-pin, refuse, and scan a list. Holding
//! a recipient identifier is the only authorisation.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Shared;
use super::error::{ApiError, parse_json};
use crate::clock::rfc3339;
use crate::proto::api::{
    ListMessage, ListScan, MAX_PROBE_BATCH, ProbeAnswer, ProbeRequest, ProbeResponse, RecipientState, RefuseRequest,
    SENDER_HEADER,
};
use crate::proto::digest::sha256_field;
use crate::proto::range::{RangeAnswer, resolve};
use crate::proto::{ReadStatus, RecipientId};
use crate::store::{RecipientAction, Unavailable};

#[derive(Debug, Deserialize)]
pub struct RetrieveQuery {
    part: Option<String>,
}

fn parse_id(id: &str) -> Result<RecipientId, ApiError> {
    id.parse().map_err(|_| ApiError::NotFound("unknown message identifier".into()))
}

fn unavailable(u: Unavailable) -> ApiError {
    match u {
        Unavailable::Unknown => ApiError::NotFound("unknown message identifier".into()),
        Unavailable::Gone => ApiError::Gone("the message was recalled, expired or released".into()),
    }
}

/// `POST /probe` with `{"ids": [...]}`: for each identifier what `HEAD`
/// would say, in one request — an agent verifying a batch of notifications
/// asks once, not once per recipient. Like HEAD it is not a read; unknown
/// identifiers count against the client's lookup limit as HEAD's 404s do.
pub async fn probe_many(
    State(s): State<Shared>,
    axum::Extension(client): axum::Extension<super::guard::ClientAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ProbeRequest = parse_json(&body)?;
    if req.ids.is_empty() || req.ids.len() > MAX_PROBE_BATCH {
        return Err(ApiError::BadRequest(format!("probe between 1 and {MAX_PROBE_BATCH} identifiers")));
    }
    let (ip, now) = (format!("ip:{}", client.0.ip()), s.clock.now());
    if s.misses.exceeded(&ip, now) {
        s.metrics.inc("imgate_rate_limited_total", "what", "lookup");
        return Err(ApiError::RateLimited("too many unknown identifiers; try again later".into()));
    }
    let (ids, found) = s
        .read(move |st| {
            let found = st.probe(&req.ids)?;
            Ok((req.ids, found))
        })
        .await?;
    let mut messages = Vec::with_capacity(ids.len());
    for (id, found) in ids.into_iter().zip(found) {
        let answer = match found {
            Ok(p) => {
                ProbeAnswer { id, status: 200, sender: Some(p.sender), size: Some(p.size), digest: Some(p.digest) }
            }
            Err(u) => {
                if u == Unavailable::Unknown {
                    s.misses.record(&ip, now);
                }
                let status = if u == Unavailable::Unknown { 404 } else { 410 };
                ProbeAnswer { id, status, sender: None, size: None, digest: None }
            }
        };
        messages.push(answer);
    }
    s.metrics.add("imgate_retrievals_total", "part", "probe", messages.len() as u64);
    Ok(axum::Json(ProbeResponse { messages }).into_response())
}

/// `GET`/`HEAD /messages/{id}`.
pub async fn retrieve(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(q): Query<RetrieveQuery>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let headers_only = match q.part.as_deref() {
        None => false,
        Some("headers") => true,
        Some(other) => return Err(ApiError::BadRequest(format!("unknown part {other:?} (only \"headers\")"))),
    };
    let (found, body) = s
        .read(move |st| match st.find(&id)? {
            Ok(found) => Ok(st.body(&found.message_id)?.map(|body| (found, body)).ok_or(Unavailable::Gone)),
            Err(u) => Ok(Err(u)),
        })
        .await?
        .map_err(unavailable)?;
    let body = Bytes::from(body);
    let repr = if headers_only { body.slice(..found.message.header_len as usize) } else { body };
    let len = repr.len() as u64;
    let range = resolve(headers.get(header::RANGE).and_then(|v| v.to_str().ok()), len);
    let (status, start, end) = match range {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end),
        RangeAnswer::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable(len)),
    };
    let part = match (&method, headers_only) {
        (&Method::HEAD, _) => "head",
        (_, true) => "headers",
        _ => "all",
    };
    s.metrics.inc("imgate_retrievals_total", "part", part);
    if method == Method::GET {
        let level = if headers_only || end < len { ReadStatus::Headers } else { ReadStatus::All };
        // Read again: nothing to record (and no store write per request).
        if found.recipient.read < level {
            let (store, now) = (s.store.clone(), s.clock.now());
            s.blocking(move || store.mark_read(&id, level, now)).await??;
        }
        tracing::info!(msg = %found.message_id, rid = %id.short(), read = level.as_str(), "message retrieved");
    }
    let digest = if headers_only { sha256_field(&repr) } else { found.message.digest.clone() };
    let mut resp = Response::new(if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(repr.slice(start as usize..end as usize))
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&found.message.sender) {
        h.insert(SENDER_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&digest) {
        h.insert("repr-digest", v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

async fn act(s: Shared, id: String, action: RecipientAction) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let (store, now) = (s.store.clone(), s.clock.now());
    let what = format!("{action:?}").to_lowercase();
    let r = s
        .blocking(move || store.recipient_action(&id, action, now))
        .await??
        .ok_or_else(|| ApiError::NotFound("unknown message identifier".into()))?;
    tracing::info!(msg = %r.message, rid = %id.short(), action = %what.split('(').next().unwrap_or(""),
        notification = r.notification.as_str(), "recipient action");
    Ok(axum::Json(RecipientState { notification: r.notification, read: r.read, pinned: r.pinned }).into_response())
}

/// `POST /messages/{id}/silence`.
pub async fn silence(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    act(s, id, RecipientAction::Silence).await
}

/// `POST /messages/{id}/unpin`.
pub async fn unpin(State(s): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    act(s, id, RecipientAction::Unpin).await
}

/// `POST /messages/{id}/refuse` with `{"reason": "…"}`.
pub async fn refuse(State(s): State<Shared>, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let req: RefuseRequest = parse_json(&body)?;
    let reason: String = req.reason.chars().filter(|c| !c.is_control()).take(1000).collect();
    if reason.trim().is_empty() {
        return Err(ApiError::BadRequest("reason must not be empty".into()));
    }
    act(s, id, RecipientAction::Refuse(reason)).await
}

#[derive(Debug, Deserialize)]
pub struct ScanQuery {
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /lists/{list}?since=CURSOR`.
pub async fn scan_list(
    State(s): State<Shared>,
    Path(list): Path<String>,
    Query(q): Query<ScanQuery>,
) -> Result<Response, ApiError> {
    let after =
        match q.since.as_deref() {
            None | Some("") => None,
            Some(c) => Some(crate::proto::hex::decode(c).filter(|b| b.len() == 24).ok_or_else(|| {
                ApiError::BadRequest("since must be a cursor from an earlier answer's \"next\"".into())
            })?),
        };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = s.store.clone();
    let name = list.clone();
    let (records, next) = s.blocking(move || store.scan_list(&name, after.as_deref(), limit)).await??;
    let messages = records
        .into_iter()
        .map(|r| ListMessage { id: r.id, sender: r.sender, size: r.size, submitted_at: rfc3339(r.submitted_at) })
        .collect();
    let next = crate::proto::hex::encode(&next);
    Ok(axum::Json(ListScan { list, messages, next }).into_response())
}
