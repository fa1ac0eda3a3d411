//! Every error a service answers with: a JSON body `{"error", "message"}`
//! and a fitting HTTP status. Handlers return [`ApiError`]; nothing else
//! decides statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::proto::api::ErrorBody;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("malformed JSON: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadAddress(String),
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RangeNotSatisfiable(u64),
    #[error("{0}")]
    OverQuota(String),
    #[error("{0}")]
    RateLimited(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    Timeout(String),
    /// A bounded resource is in use; the same request may work shortly.
    #[error("{0}")]
    Busy(String),
    /// A well-formed request the node will not carry out, with the code
    /// saying why (`bad_route`, `route_loop`, …).
    #[error("{1}")]
    Refused(&'static str, String),
    #[error("the store is temporarily unavailable")]
    Storage(#[source] StoreError),
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Self::BadJson(_) => (StatusCode::BAD_REQUEST, "bad_json"),
            Self::BadAddress(_) => (StatusCode::BAD_REQUEST, "bad_address"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Gone(_) => (StatusCode::GONE, "gone"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Self::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            Self::RangeNotSatisfiable(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            Self::OverQuota(_) => (StatusCode::INSUFFICIENT_STORAGE, "over_quota"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            Self::Refused(code, _) => (StatusCode::UNPROCESSABLE_ENTITY, code),
            Self::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::OverQuota { .. } => ApiError::OverQuota(e.to_string()),
            other => {
                tracing::error!(error = %other, "store operation failed");
                ApiError::Storage(other)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            Self::RangeNotSatisfiable(len) => format!("no such range in {len} octets"),
            other => other.to_string(),
        };
        let mut resp = (status, axum::Json(ErrorBody { error: code.into(), message })).into_response();
        match self {
            Self::Unauthorized => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"imgate\", charset=\"UTF-8\""),
                );
            }
            Self::RangeNotSatisfiable(len) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// Parses a JSON body, turning serde's complaint into [`ApiError::BadJson`].
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadJson(e.to_string()))
}

/// Answer for a route that does not exist.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such operation".into())
}
