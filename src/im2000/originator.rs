//! Originator access, the store's private service for its own users: submit
//! (content as `message/rfc822`, envelope in the query string), track and
//! cancel. The authenticated user is the sender; nobody else can see or
//! recall what they sent.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::ApiError;
use super::guard::Caller;
use crate::clock::rfc3339;
use crate::proto::api::{ListEntry, SubmitRecipient, SubmitResponse, TrackRecipient, TrackResponse};
use crate::proto::units::parse_duration;
use crate::proto::{Address, MessageId};
use crate::store::records::{MessageRecord, MessageState, RecipientRecord};
use crate::store::{NewMessage, StoreError};

/// Most recipients of one submission.
pub const MAX_RECIPIENTS: usize = 10_000;

/// The envelope carried in the query string of a submission.
#[derive(Debug, Default)]
struct Envelope {
    to: Vec<String>,
    lists: Vec<String>,
    lifetime: Option<String>,
}

fn parse_envelope(query: Option<&str>) -> Result<Envelope, ApiError> {
    let mut env = Envelope::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "to" => env.to.push(v.into_owned()),
            "list" => env.lists.push(v.into_owned()),
            "lifetime" => env.lifetime = Some(v.into_owned()),
            other => return Err(ApiError::BadRequest(format!("unknown envelope parameter {other:?}"))),
        }
    }
    Ok(env)
}

/// `POST /submissions?to=A&to=B&list=L&lifetime=7d` with the message as body.
pub async fn submit(
    State(s): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Caller(sender): Caller,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ctype.trim().to_ascii_lowercase().starts_with("message/rfc822") {
        return Err(ApiError::UnsupportedMediaType("send the message as Content-Type: message/rfc822".into()));
    }
    let env = parse_envelope(query.as_deref())?;
    if body.is_empty() {
        return Err(ApiError::BadRequest("the message is empty".into()));
    }
    if body.len() as u64 > s.config.im2000.max_message_size {
        return Err(ApiError::TooLarge(format!(
            "the message is larger than {} octets",
            s.config.im2000.max_message_size
        )));
    }
    s.dir().check_from(&sender, &body).map_err(|why| ApiError::Refused("from_mismatch", why))?;
    if env.to.len() > MAX_RECIPIENTS {
        return Err(ApiError::BadRequest(format!("at most {MAX_RECIPIENTS} recipients")));
    }
    let lifetime = match env.lifetime.as_deref() {
        None => s.config.store.default_lifetime,
        Some(l) => parse_duration(l).map_err(ApiError::BadRequest)?,
    };
    if lifetime.is_zero() || lifetime > s.config.store.max_lifetime {
        return Err(ApiError::BadRequest(format!(
            "lifetime must be above zero and at most {}s",
            s.config.store.max_lifetime.as_secs()
        )));
    }
    let mut answers = Vec::new();
    let mut recipients: Vec<Address> = Vec::new();
    for to in &env.to {
        match to.parse::<Address>() {
            Ok(a) if recipients.iter().any(|r| r.key() == a.key()) => {}
            Ok(a) => recipients.push(a),
            Err(e) => {
                answers.push(SubmitRecipient { recipient: to.clone(), accepted: false, reason: Some(e.to_string()) })
            }
        }
    }
    let mut lists = Vec::new();
    for l in &env.lists {
        let a: Address = l.parse().map_err(|e| ApiError::BadAddress(format!("list {l:?}: {e}")))?;
        if a.domain() != sender.domain() {
            return Err(ApiError::BadAddress(format!("list {a} is not in your domain {}", sender.domain())));
        }
        lists.push(a.key());
    }
    if recipients.is_empty() && lists.is_empty() {
        return Err(ApiError::BadAddress(if answers.is_empty() {
            "no recipients: give at least one to= or list=".into()
        } else {
            format!("no acceptable recipient: {}", answers[0].reason.clone().unwrap_or_default())
        }));
    }
    let quota = s.dir().users.quota(&sender).unwrap_or(s.config.store.quota);
    let new = NewMessage {
        store: sender.domain().to_string(),
        account: sender.key(),
        also_charge: vec![],
        sender: sender.clone(),
        recipients,
        relay: vec![],
        lists,
        lifetime_ms: lifetime.as_millis() as u64,
        content: body.to_vec(),
        origin: None,
        file_in_sent: true,
    };
    let (store, now) = (s.store.clone(), s.clock.now());
    let sub = s.blocking(move || store.submit(new, now, quota)).await??;
    s.wake.notify_one();
    s.metrics.inc("imgate_messages_stored_total", "origin", "im2000");
    tracing::info!(msg = %sub.message, sender = %sender, recipients = sub.recipients.len(),
        size = sub.size, "message submitted");
    answers.extend(sub.recipients.iter().map(|(a, _)| SubmitRecipient {
        recipient: a.to_string(),
        accepted: true,
        reason: None,
    }));
    let resp = SubmitResponse {
        message: sub.message.to_string(),
        size: sub.size,
        expires_at: rfc3339(sub.expires_at),
        recipients: answers,
        lists: sub.lists.iter().map(|(l, id)| ListEntry { list: l.clone(), id: id.to_string() }).collect(),
    };
    Ok((StatusCode::CREATED, axum::Json(resp)).into_response())
}

/// The sender's view of a message and its recipients.
pub fn track_view(id: &MessageId, m: &MessageRecord, rs: &[RecipientRecord]) -> TrackResponse {
    let ts = |t: Option<u64>| t.map(rfc3339);
    TrackResponse {
        message: id.to_string(),
        sender: m.sender.clone(),
        submitted_at: rfc3339(m.submitted_at),
        expires_at: rfc3339(m.expires_at),
        size: m.size,
        digest: m.digest.clone(),
        state: match m.state {
            MessageState::Stored => "stored",
            MessageState::Released => "released",
            MessageState::Cancelled => "cancelled",
            MessageState::Expired => "expired",
        }
        .into(),
        recipients: rs
            .iter()
            .map(|r| TrackRecipient {
                recipient: r.recipient.clone(),
                notification: r.notification,
                read: r.read,
                pinned: r.pinned && m.state == MessageState::Stored,
                attempts: r.attempts,
                reason: r.reason.clone(),
                last_attempt_at: ts(r.last_attempt_at),
                next_attempt_at: ts(r.next_attempt_at),
                accepted_at: ts(r.accepted_at),
                read_at: ts(r.read_at),
                silenced_at: ts(r.silenced_at),
            })
            .collect(),
        lists: vec![],
    }
}

fn owned(Caller(user): Caller, id: &str) -> Result<(MessageId, Address), ApiError> {
    let id: MessageId = id.parse().map_err(|_| ApiError::NotFound("no such message".into()))?;
    Ok((id, user))
}

fn check_owner(user: &Address, m: &MessageRecord) -> Result<(), ApiError> {
    if m.sender.to_lowercase() == user.key() || m.account == user.key() {
        Ok(())
    } else {
        // Another user's message is as invisible as a missing one.
        Err(ApiError::NotFound("no such message".into()))
    }
}

/// `GET /submissions/{msg}`.
pub async fn track(State(s): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let (id, user) = owned(caller, &id)?;
    let store = s.store.clone();
    let (m, rs) =
        s.blocking(move || store.track(&id)).await??.ok_or_else(|| ApiError::NotFound("no such message".into()))?;
    check_owner(&user, &m)?;
    Ok(axum::Json(track_view(&id, &m, &rs)).into_response())
}

/// `DELETE /submissions/{msg}`: recall.
pub async fn cancel(State(s): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let (id, user) = owned(caller, &id)?;
    let store = s.store.clone();
    let m = s.blocking(move || store.track(&id)).await??.ok_or_else(|| ApiError::NotFound("no such message".into()))?.0;
    check_owner(&user, &m)?;
    let store = s.store.clone();
    let (m, rs) = s
        .blocking(move || -> Result<_, StoreError> {
            store.cancel(&id)?;
            store.track(&id)
        })
        .await??
        .ok_or_else(|| ApiError::NotFound("no such message".into()))?;
    tracing::info!(msg = %id, "message cancelled");
    Ok(axum::Json(track_view(&id, &m, &rs)).into_response())
}
