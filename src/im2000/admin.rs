//! The admin API on the admin listener, for users with `admin = true`:
//! the queue (list, show, retry, drop, pause, resume), the routing table
//! (list, explain, set) and migration figures.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::Shared;
use super::error::{ApiError, parse_json};
use super::guard::Caller;
use crate::clock::{Millis, rfc3339};
use crate::proto::Address;
use crate::routing::{DomainStatus, RouteError, check_change, last_day, users_by_side};
use crate::store::JobView;
use crate::store::records::{QueuePause, RouteRecord, RouteSource};

/// The admin making the request.
fn admin(s: &Shared, Caller(user): Caller) -> Result<Address, ApiError> {
    if s.dir().users.is_admin(&user) { Ok(user) } else { Err(ApiError::Forbidden(format!("{user} is not an admin"))) }
}

fn job_id(id: &str) -> Result<[u8; 8], ApiError> {
    crate::proto::hex::decode_array(id).ok_or_else(|| ApiError::NotFound("no such job".into()))
}

fn json(v: impl Serialize) -> Response {
    axum::Json(v).into_response()
}

#[derive(Serialize)]
pub struct QueueJob {
    pub id: String,
    pub kind: &'static str,
    /// `running`, `held` (its host is paused), `due` or `scheduled`.
    pub state: &'static str,
    pub due: String,
    pub recipient: String,
    /// Where it goes: the recipient's domain, or its legacy host.
    pub host: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Serialize)]
pub struct AttemptView {
    pub at: String,
    pub host: String,
    pub result: String,
}

/// `imgate queue show`: the job, its message and every attempt remembered.
#[derive(Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: QueueJob,
    pub sender: String,
    pub store: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_attempt_at: Option<String>,
    pub history: Vec<AttemptView>,
}

fn queue_job(s: &Shared, j: &JobView, now: Millis) -> QueueJob {
    let state = if j.leased {
        "running"
    } else if s.is_held(&j.recipient, j.kind == "deliver") {
        "held"
    } else if j.due <= now {
        "due"
    } else {
        "scheduled"
    };
    QueueJob {
        id: j.id.clone(),
        kind: j.kind,
        state,
        due: rfc3339(j.due),
        recipient: j.recipient.clone(),
        host: s.job_host(&j.recipient, j.kind == "deliver"),
        attempts: j.attempts,
        last_error: j.last_error.clone(),
    }
}

#[derive(Deserialize)]
pub struct QueueFilter {
    state: Option<String>,
    recipient: Option<String>,
    host: Option<String>,
}

/// `GET /admin/queue[?state=&recipient=&host=]`.
pub async fn queue(
    State(s): State<Shared>,
    caller: Caller,
    Query(f): Query<QueueFilter>,
) -> Result<Response, ApiError> {
    admin(&s, caller)?;
    const STATES: [&str; 4] = ["running", "held", "due", "scheduled"];
    if let Some(st) = &f.state
        && !STATES.contains(&st.as_str())
    {
        return Err(ApiError::BadRequest(format!("state {st:?} is not one of {}", STATES.join(", "))));
    }
    let (store, now) = (s.store.clone(), s.clock.now());
    let jobs = s.blocking(move || store.jobs()).await??;
    let jobs: Vec<QueueJob> = jobs
        .iter()
        .filter(|j| f.host.as_ref().is_none_or(|h| s.job_matches(&j.recipient, j.kind == "deliver", h)))
        .map(|j| queue_job(&s, j, now))
        .filter(|j| f.state.as_ref().is_none_or(|st| j.state == st))
        .filter(|j| f.recipient.as_ref().is_none_or(|r| j.recipient.eq_ignore_ascii_case(r)))
        .collect();
    let pause = s.pause.read().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(json(serde_json::json!({ "jobs": jobs, "paused": pause })))
}

/// `GET /admin/queue/{id}`.
pub async fn show(State(s): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    admin(&s, caller)?;
    let job = job_id(&id)?;
    let (store, now) = (s.store.clone(), s.clock.now());
    let Some(j) = s.blocking(move || store.job(job)).await?? else {
        return Err(ApiError::NotFound("no such job".into()));
    };
    Ok(json(JobDetail {
        job: queue_job(&s, &j, now),
        history: j
            .history
            .iter()
            .map(|a| AttemptView { at: rfc3339(a.at), host: a.host.clone(), result: a.result.clone() })
            .collect(),
        sender: j.sender,
        store: j.store,
        size: j.size,
        first_attempt_at: j.first_attempt_at.map(rfc3339),
    }))
}

/// `POST /admin/queue/{id}/retry`.
pub async fn retry(State(s): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let job = job_id(&id)?;
    let (store, now) = (s.store.clone(), s.clock.now());
    if !s.blocking(move || store.retry_job(job, now)).await?? {
        return Err(ApiError::NotFound("no such waiting job".into()));
    }
    s.wake.notify_one();
    tracing::info!(job = %id, by = %by, "job retried by an admin");
    Ok(json(serde_json::json!({ "id": id, "retried": true })))
}

#[derive(Deserialize)]
pub struct HostFilter {
    host: Option<String>,
}

/// `POST /admin/queue/retry[?host=]`: every waiting job (for a host) due now.
pub async fn retry_all(
    State(s): State<Shared>,
    caller: Caller,
    Query(f): Query<HostFilter>,
) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let n = retry_matching(&s, f.host.as_deref()).await?;
    tracing::info!(jobs = n, host = ?f.host, by = %by, "queue retried by an admin");
    Ok(json(serde_json::json!({ "retried": n })))
}

/// Makes waiting jobs (for `host`, or all) due now and wakes the worker.
async fn retry_matching(s: &Shared, host: Option<&str>) -> Result<usize, ApiError> {
    let (store, now, s2, host) = (s.store.clone(), s.clock.now(), s.clone(), host.map(str::to_string));
    let pick = move |rcpt: &str, deliver: bool| host.as_ref().is_none_or(|h| s2.job_matches(rcpt, deliver, h));
    let n = s.blocking(move || store.retry_jobs(now, &pick)).await??;
    s.wake.notify_one();
    Ok(n)
}

/// `DELETE /admin/queue/{id}`.
pub async fn drop_job(State(s): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let job = job_id(&id)?;
    let store = s.store.clone();
    if !s.blocking(move || store.drop_job(job)).await?? {
        return Err(ApiError::NotFound("no such waiting job".into()));
    }
    tracing::info!(job = %id, by = %by, "job dropped by an admin");
    Ok(json(serde_json::json!({ "id": id, "dropped": true })))
}

/// `POST /admin/queue/pause[?host=]`: hold back everything, or one host's jobs.
pub async fn pause(State(s): State<Shared>, caller: Caller, Query(f): Query<HostFilter>) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let changed = change_pause(&s, |p| match &f.host {
        None => p.all = true,
        Some(h) => {
            if !p.hosts.contains(&h.to_lowercase()) {
                p.hosts.push(h.to_lowercase());
            }
        }
    })
    .await?;
    tracing::info!(host = ?f.host, by = %by, "queue paused by an admin");
    Ok(json(changed))
}

/// `POST /admin/queue/resume[?host=]`: the reverse; held jobs come due now.
pub async fn resume(
    State(s): State<Shared>,
    caller: Caller,
    Query(f): Query<HostFilter>,
) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let host = f.host.as_deref().map(str::to_lowercase);
    if let Some(h) = &host
        && !s.pause.read().unwrap_or_else(|p| p.into_inner()).hosts.contains(h)
    {
        return Err(ApiError::NotFound(format!("{h} is not paused")));
    }
    let changed = change_pause(&s, |p| match &host {
        None => *p = QueuePause::default(),
        Some(h) => p.hosts.retain(|x| x != h),
    })
    .await?;
    let retried = retry_matching(&s, host.as_deref()).await?;
    tracing::info!(host = ?host, jobs = retried, by = %by, "queue resumed by an admin");
    Ok(json(changed))
}

/// Applies `change` to the stored pause state (synced), then to the copy the
/// worker reads.
async fn change_pause(s: &Shared, change: impl FnOnce(&mut QueuePause)) -> Result<QueuePause, ApiError> {
    let mut pause = s.pause.read().unwrap_or_else(|p| p.into_inner()).clone();
    change(&mut pause);
    let (store, p) = (s.store.clone(), pause.clone());
    s.blocking(move || store.set_queue_pause(&p)).await??;
    *s.pause.write().unwrap_or_else(|p| p.into_inner()) = pause.clone();
    s.wake.notify_one();
    Ok(pause)
}

#[derive(Serialize)]
pub struct RouteView {
    pub target: String,
    pub route: crate::config::Route,
    pub source: RouteSource,
    pub since: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// `GET /admin/routes`: every rule of the routing table.
pub async fn routes(State(s): State<Shared>, caller: Caller) -> Result<Response, ApiError> {
    admin(&s, caller)?;
    let routes: Vec<RouteView> = s
        .routes()
        .rules
        .iter()
        .map(|(t, r)| RouteView {
            target: t.clone(),
            route: r.route,
            source: r.source,
            since: rfc3339(r.since),
            by: r.by.clone(),
        })
        .collect();
    Ok(json(serde_json::json!({ "routes": routes })))
}

/// `GET /admin/routes/{address}`: the route of one address and why.
pub async fn explain(
    State(s): State<Shared>,
    Path(address): Path<String>,
    caller: Caller,
) -> Result<Response, ApiError> {
    admin(&s, caller)?;
    let a: Address = address.parse().map_err(|e| ApiError::BadAddress(format!("{address}: {e}")))?;
    if !s.dir().config.is_local_domain(a.domain()) {
        return Err(ApiError::Refused(
            RouteError::UnknownDomain(a.domain().into()).code(),
            format!("{} is not one of this node's domains: its mail goes to its own domain's servers", a.domain()),
        ));
    }
    Ok(json(s.explain_route(&a)))
}

#[derive(Deserialize)]
pub struct SetRoute {
    route: String,
}

/// `PUT /admin/routes/{target}` with `{"route": "im2000"|"legacy"|"auto"}`.
/// A refused change leaves the table as it was.
pub async fn set_route(
    State(s): State<Shared>,
    Path(target): Path<String>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let by = admin(&s, caller)?;
    let req: SetRoute = parse_json(&body)?;
    let refused = |e: RouteError| ApiError::Refused(e.code(), e.to_string());
    let (target, route) = check_change(&s.dir(), &target, &req.route).map_err(refused)?;
    if route != crate::config::Route::Im2000 {
        crate::smtp_out::hosts::check_loop(&s, target.domain()).await.map_err(refused)?;
    }
    let now = s.clock.now();
    let record = RouteRecord { route, since: now, source: RouteSource::Admin, by: Some(by.to_string()) };
    let (store, key) = (s.store.clone(), target.key());
    let previous = s.blocking(move || store.set_route(&key, record)).await??;
    let ctx = s.clone();
    s.blocking(move || ctx.load_routes()).await??;
    // Queued work for whoever moved follows the new route when it runs.
    s.wake.notify_one();
    tracing::info!(target = %target.key(), route = %route, previous = ?previous.as_ref().map(|p| p.route), by = %by,
        "route set by an admin");
    Ok(json(serde_json::json!({
        "target": target.key(),
        "route": route,
        "previous": previous.map(|p| p.route),
    })))
}

/// `GET /admin/migration`: per domain, users and the last day's mail on each side.
pub async fn migration(State(s): State<Shared>, caller: Caller) -> Result<Response, ApiError> {
    admin(&s, caller)?;
    let (dir, routes, since) = (s.dir(), s.routes(), last_day(s.clock.now()));
    let mut out = Vec::new();
    for domain in &dir.config.domains {
        let (users_im2000, users_legacy) = users_by_side(&routes, &dir, domain);
        let (store, d) = (s.store.clone(), domain.clone());
        let last_day = s.blocking(move || store.traffic(&d, since)).await??;
        let default_route = routes.rules.get(domain).map_or(crate::config::Route::Im2000, |r| r.route);
        out.push(DomainStatus { domain: domain.clone(), default_route, users_im2000, users_legacy, last_day });
    }
    Ok(json(serde_json::json!({ "domains": out })))
}
