//! `GET /metrics` on the admin listener: the node's counters, and gauges
//! read from the store (queue depth by state, stored bytes by sender class).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::Shared;
use super::error::ApiError;
use crate::metrics::Gauge;

/// `GET /metrics`: Prometheus text, on the admin listener.
pub async fn metrics(State(s): State<Shared>) -> Response {
    let (store, now) = (s.store.clone(), s.clock.now());
    let gauges = s
        .blocking(move || -> Result<_, crate::store::StoreError> { Ok((store.queue_stats(now)?, store.accounts()?)) })
        .await
        .and_then(|r| r);
    let (queue, accounts) = match gauges {
        Ok(g) => g,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let queue = queue.into_iter().map(|((kind, state), n)| (format!("kind=\"{kind}\",state=\"{state}\""), n)).collect();
    let (mut legacy, mut users) = ((0, 0), (0, 0));
    for (account, a) in accounts {
        let outside = account.starts_with(crate::store::schema::OUTSIDE_ACCOUNT);
        let class = if outside { &mut legacy } else { &mut users };
        class.0 += a.bytes;
        class.1 += a.messages;
    }
    let classes =
        |smtp: u64, im2000: u64| vec![("class=\"smtp\"".to_string(), smtp), ("class=\"im2000\"".to_string(), im2000)];
    let text = s.metrics.render(&[
        Gauge { name: "imgate_queue_jobs", help: "Queued jobs, by kind and state.", values: queue },
        Gauge {
            name: "imgate_stored_bytes",
            help: "Bytes of stored message bodies, by sender class.",
            values: classes(legacy.0, users.0),
        },
        Gauge {
            name: "imgate_stored_messages",
            help: "Stored messages, by sender class.",
            values: classes(legacy.1, users.1),
        },
    ]);
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
