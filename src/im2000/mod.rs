//! The IM2000 services over HTTP (docs/protocol.md): the public listener
//! serves recipient access and notification submission; the private listener
//! serves originator access and notification query. [`crate::peer`] is the
//! other side of the same binding.

pub mod admin;
pub mod auth;
pub mod error;
pub mod guard;
pub mod inbox;
pub mod notifications;
pub mod originator;
pub mod recipient_access;
pub mod scrape;
pub mod server;
pub mod well_known;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use crate::context::Shared;

/// Largest request body on the public listener (a notification batch).
pub(crate) const MAX_NOTIFY_BODY: usize = 4 << 20;

/// Routes of the public listener.
pub fn public_router(s: Shared) -> Router {
    Router::new()
        .route("/im2000/v1/messages/{id}", get(recipient_access::retrieve))
        .route("/im2000/v1/messages/{id}/silence", post(recipient_access::silence))
        .route("/im2000/v1/messages/{id}/unpin", post(recipient_access::unpin))
        .route("/im2000/v1/messages/{id}/refuse", post(recipient_access::refuse))
        .route("/im2000/v1/lists/{list}", get(recipient_access::scan_list))
        .route("/im2000/v1/probe", post(recipient_access::probe_many))
        .route("/im2000/v1/notifications", post(notifications::submit))
        .route("/.well-known/mta-sts.txt", get(well_known::mta_sts))
        .fallback(error::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_NOTIFY_BODY))
        .layer(axum::middleware::from_fn_with_state(s.clone(), guard::timed_body))
        .layer(axum::middleware::from_fn_with_state(s.clone(), guard::lookups))
        .with_state(s)
}

/// Routes of the private listener: the node's users' own services. The
/// admin API and `/metrics` are never here: only on an admin listener,
/// where the operator puts one.
pub fn private_router(s: Shared) -> Router {
    let limit = s.config.im2000.max_message_size as usize + 4096;
    let router = Router::new()
        .route("/im2000/v1/submissions", post(originator::submit))
        .route("/im2000/v1/submissions/{msg}", get(originator::track).delete(originator::cancel))
        .route("/im2000/v1/inbox", get(inbox::list))
        .route("/im2000/v1/inbox/clear", post(inbox::clear));
    finish(router, s, limit)
}

/// Routes of the admin listener: `/metrics` and the admin API.
pub fn admin_router(s: Shared) -> Router {
    finish(admin_routes(), s, 64 << 10)
}

fn admin_routes() -> Router<Shared> {
    Router::new()
        .route("/metrics", get(scrape::metrics))
        .route("/im2000/v1/admin/queue", get(admin::queue))
        .route("/im2000/v1/admin/queue/retry", post(admin::retry_all))
        .route("/im2000/v1/admin/queue/pause", post(admin::pause))
        .route("/im2000/v1/admin/queue/resume", post(admin::resume))
        .route("/im2000/v1/admin/queue/{id}/retry", post(admin::retry))
        .route("/im2000/v1/admin/queue/{id}", get(admin::show).delete(admin::drop_job))
        .route("/im2000/v1/admin/routes", get(admin::routes))
        .route("/im2000/v1/admin/routes/{target}", get(admin::explain).put(admin::set_route))
        .route("/im2000/v1/admin/migration", get(admin::migration))
}

fn finish(router: Router<Shared>, s: Shared, body_limit: usize) -> Router {
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(s.clone(), guard::authenticated))
        .with_state(s)
}

async fn method_not_allowed() -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = crate::proto::api::ErrorBody {
        error: "method_not_allowed".into(),
        message: "this operation does not take that method".into(),
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
