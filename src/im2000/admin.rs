//! The admin API on the private listener, for users with `admin = true`:
//! list the queue, make a job due now, drop a job.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Shared;
use super::error::ApiError;
use crate::clock::rfc3339;

async fn admin(s: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let user = s.dir().users.authenticate(headers).await?;
    if s.dir().users.is_admin(&user) { Ok(()) } else { Err(ApiError::Forbidden(format!("{user} is not an admin"))) }
}

fn job_id(id: &str) -> Result<[u8; 8], ApiError> {
    crate::proto::hex::decode_array(id).ok_or_else(|| ApiError::NotFound("no such job".into()))
}

#[derive(Serialize)]
pub struct QueueJob {
    pub id: String,
    pub kind: &'static str,
    /// `running`, `due` or `scheduled`.
    pub state: &'static str,
    pub due: String,
    pub recipient: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /admin/queue`.
pub async fn queue(State(s): State<Shared>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &headers).await?;
    let (store, now) = (s.store.clone(), s.clock.now());
    let jobs = s.blocking(move || store.jobs()).await??;
    let jobs: Vec<QueueJob> = jobs
        .into_iter()
        .map(|j| QueueJob {
            state: if j.leased {
                "running"
            } else if j.due <= now {
                "due"
            } else {
                "scheduled"
            },
            due: rfc3339(j.due),
            id: j.id,
            kind: j.kind,
            recipient: j.recipient,
            attempts: j.attempts,
            last_error: j.last_error,
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "jobs": jobs })).into_response())
}

/// `POST /admin/queue/{id}/retry`.
pub async fn retry(State(s): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    admin(&s, &headers).await?;
    let job = job_id(&id)?;
    let (store, now) = (s.store.clone(), s.clock.now());
    if !s.blocking(move || store.retry_job(job, now)).await?? {
        return Err(ApiError::NotFound("no such waiting job".into()));
    }
    s.wake.notify_one();
    tracing::info!(job = %id, "job retried by an admin");
    Ok(axum::Json(serde_json::json!({ "id": id, "retried": true })).into_response())
}

/// `DELETE /admin/queue/{id}`.
pub async fn drop_job(
    State(s): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&s, &headers).await?;
    let job = job_id(&id)?;
    let store = s.store.clone();
    if !s.blocking(move || store.drop_job(job)).await?? {
        return Err(ApiError::NotFound("no such waiting job".into()));
    }
    tracing::info!(job = %id, "job dropped by an admin");
    Ok(axum::Json(serde_json::json!({ "id": id, "dropped": true })).into_response())
}
