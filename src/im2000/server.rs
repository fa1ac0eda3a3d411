//! Serving a router on TCP listeners, with TLS (rustls) when configured, and
//! graceful shutdown: on cancellation listeners close and open connections
//! finish their current request.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::limits::{ConnectionSlots, NoSlot};
use crate::proto::api::ErrorBody;

/// Rewrites any error answer that is not already JSON (axum's own rejections
/// for bodies over the limit, bad query strings, …) into the binding's
/// `{"error", "message"}` form, so clients only ever parse one shape.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json =
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let code = match status.as_u16() {
        413 => "too_large",
        415 => "unsupported_media_type",
        400 | 422 => "bad_request",
        _ => "http_error",
    };
    let message = String::from_utf8_lossy(&text).trim().to_string();
    let message = if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
    let body = serde_json::to_vec(&ErrorBody { error: code.into(), message }).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// How a listener serves: TLS or not, and its connection slots (a total,
/// and a share per client address).
pub struct Serving {
    pub tls: Option<TlsAcceptor>,
    pub slots: ConnectionSlots,
    /// The node, whose metrics count refused connections.
    pub ctx: crate::context::Shared,
}

/// Serves `router` on `listener` until `shutdown`, then drains connections
/// for at most `drain`. A connection over the listener's slots is closed at
/// once, before TLS or a byte of HTTP.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    serving: Serving,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let Serving { tls, slots, ctx } = serving;
    let router = router.layer(axum::middleware::map_response(json_errors));
    let graceful = GracefulShutdown::new();
    while let Some((stream, peer)) = crate::listen::next_connection(&listener, &shutdown).await {
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                let what = match why {
                    NoSlot::Full => "http_connections",
                    NoSlot::PerAddress => "http_connections_per_ip",
                };
                ctx.metrics.inc("imgate_rate_limited_total", "what", what);
                drop(stream);
                continue;
            }
        };
        let router = router.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(super::guard::ClientAddr(peer));
                router.clone().oneshot(req)
            });
            let mut builder = http1::Builder::new();
            builder.header_read_timeout(Duration::from_secs(30));
            builder.timer(hyper_util::rt::TokioTimer::new());
            let result = match tls {
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(Duration::from_secs(15), acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}
