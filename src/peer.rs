//! The HTTP client side of the IM2000 binding (docs/protocol.md), used by the notification worker
//! (notify), the notification agent (probe) and the CLI (retrieve, silence,
//! un-pin). Each call locates the service itself and walks the endpoints in
//! order until one answers.
//!
//! Peers are strangers: redirects are never followed, connections go only
//! to checked addresses (see [`crate::discovery`]), and every body read is
//! bounded — a pull stops at the size the notification gave.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::discovery::{Endpoint, LocateError, Locator, Service};
use crate::proto::api::{self, BASE, ErrorBody, Notification, NotifyOutcome, NotifyResponse};

/// Why an exchange with a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// Nothing answered (connection refused, timeout, TLS failure).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It answered, but not in the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// It answered with an error status.
    #[error("{status}: {code}: {message}")]
    Status { status: u16, code: String, message: String },
}

impl PeerError {
    /// Whether trying again later may help.
    pub fn is_temporary(&self) -> bool {
        match self {
            PeerError::Locate(l) => l.is_temporary(),
            PeerError::Unreachable(_) => true,
            PeerError::Protocol(_) => false,
            PeerError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        }
    }
}

/// What a store said about a message, without its content.
#[derive(Debug, Clone)]
pub struct Probe {
    pub sender: Option<String>,
    pub size: Option<u64>,
    pub digest: Option<String>,
}

/// A retrieved message (or part of it).
#[derive(Debug, Clone)]
pub struct Retrieved {
    pub content: Vec<u8>,
    pub sender: Option<String>,
    pub digest: Option<String>,
    /// The store answered 206: `content` starts at the offset asked for.
    pub partial: bool,
    /// The body arrived whole; `false` when the connection broke mid-way
    /// (what did arrive is in `content`, to resume from).
    pub complete: bool,
}

#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    locator: Locator,
}

/// The TLS client configuration: public roots plus an optional extra CA.
pub fn tls_client_config(extra_ca: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

impl PeerClient {
    pub fn new(locator: Locator, timeout: Duration, tls: rustls::ClientConfig) -> Result<PeerClient, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(locator.connecting_dns()))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("imgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(PeerClient { http, locator })
    }

    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// Sends one request to the first endpoint of `service` at `domain` that
    /// answers; connection failures move on to the next endpoint.
    async fn exchange(
        &self,
        service: Service,
        domain: &str,
        build: impl Fn(&Endpoint) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, PeerError> {
        let endpoints = self.locator.locate(service, domain).await?;
        let mut last = String::new();
        for ep in &endpoints {
            match build(ep).send().await {
                Ok(resp) => return Ok(resp),
                Err(e) => last = format!("{}: {}", ep.base_url(), error_chain(&e)),
            }
        }
        Err(PeerError::Unreachable(last))
    }

    fn request(&self, method: Method, ep: &Endpoint, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{BASE}{path}", ep.base_url()))
    }

    /// Posts a batch of notifications to `domain`'s notification agent.
    /// Posts a batch of notifications to `domain`'s agent; `sent` is told
    /// the size of the request body.
    pub async fn notify(
        &self,
        domain: &str,
        batch: &[Notification],
        sent: impl FnOnce(usize),
    ) -> Result<Vec<NotifyOutcome>, PeerError> {
        let body = bytes::Bytes::from(serde_json::to_vec(batch).map_err(|e| PeerError::Protocol(e.to_string()))?);
        sent(body.len());
        let resp = self
            .exchange(Service::Notify, domain, |ep| {
                self.request(Method::POST, ep, "/notifications")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let resp = check(resp).await?;
        let (body, _) = read_bounded(resp, MAX_ANSWER).await?;
        let body: NotifyResponse =
            serde_json::from_slice(&body).map_err(|e| PeerError::Protocol(format!("notification answer: {e}")))?;
        if body.results.len() != batch.len() {
            return Err(PeerError::Protocol(format!(
                "{} results for {} notifications",
                body.results.len(),
                batch.len()
            )));
        }
        Ok(body.results)
    }

    /// `HEAD` of a message at `store`'s recipient access.
    pub async fn probe(&self, store: &str, id: &str) -> Result<Probe, PeerError> {
        let path = format!("/messages/{id}");
        let resp = self.exchange(Service::Store, store, |ep| self.request(Method::HEAD, ep, &path)).await?;
        let resp = check(resp).await?;
        let h = resp.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok(Probe {
            sender: text(api::SENDER_HEADER),
            size: text("content-length").and_then(|v| v.parse().ok()),
            digest: text("repr-digest"),
        })
    }

    /// Probes many identifiers at `store` in one request (`POST /probe`):
    /// each is the probe, or the status (404, 410) `HEAD` would have given.
    /// A store without the operation answers 404 or 405 for the request
    /// itself, which the caller takes as "probe one by one".
    pub async fn probe_many(&self, store: &str, ids: &[String]) -> Result<Vec<Result<Probe, u16>>, PeerError> {
        let request = api::ProbeRequest { ids: ids.to_vec() };
        let body = bytes::Bytes::from(serde_json::to_vec(&request).map_err(|e| PeerError::Protocol(e.to_string()))?);
        let resp = self
            .exchange(Service::Store, store, |ep| {
                self.request(Method::POST, ep, "/probe")
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        let resp = check(resp).await?;
        let (body, complete) = read_bounded(resp, MAX_ANSWER).await?;
        if !complete {
            return Err(PeerError::Unreachable("the probe answer broke off".into()));
        }
        let answer: api::ProbeResponse =
            serde_json::from_slice(&body).map_err(|e| PeerError::Protocol(format!("probe answer: {e}")))?;
        if answer.messages.len() != ids.len() || answer.messages.iter().zip(ids).any(|(a, id)| &a.id != id) {
            return Err(PeerError::Protocol("the probe answer does not follow the identifiers asked".into()));
        }
        Ok(answer
            .messages
            .into_iter()
            .map(|a| match a.status {
                200 => Ok(Probe { sender: a.sender, size: a.size, digest: a.digest }),
                other => Err(other),
            })
            .collect())
    }

    /// Retrieves a message of at most `size` octets (the notified size);
    /// `from` resumes at that octet. A store that sends more is answering
    /// outside the protocol, and what it sent is dropped.
    pub async fn retrieve(&self, store: &str, id: &str, from: u64, size: u64) -> Result<Retrieved, PeerError> {
        let path = format!("/messages/{id}");
        let resp = self
            .exchange(Service::Store, store, |ep| {
                let r = self.request(Method::GET, ep, &path);
                if from > 0 { r.header("range", format!("bytes={from}-")) } else { r }
            })
            .await?;
        let resp = check(resp).await?;
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        let h = resp.headers();
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (sender, digest) = (text(api::SENDER_HEADER), text("repr-digest"));
        let expected = resp.content_length();
        let room = if partial { size.saturating_sub(from) } else { size };
        if expected.is_some_and(|n| n > room) {
            return Err(PeerError::Protocol(format!("{store}'s store sends more than the notified {size} octets")));
        }
        let (content, mut complete) = read_bounded(resp, room as usize).await.map_err(|e| match e {
            PeerError::Protocol(_) => {
                PeerError::Protocol(format!("{store}'s store sends more than the notified {size} octets"))
            }
            other => other,
        })?;
        if expected.is_some_and(|n| content.len() as u64 != n) {
            complete = false;
        }
        Ok(Retrieved { content, sender, digest, partial, complete })
    }

    /// The whole message (at most the notified `size` octets): an
    /// interrupted pull resumes where it broke off, with Range.
    pub async fn pull(&self, store: &str, id: &str, size: u64) -> Result<Vec<u8>, PeerError> {
        let mut content: Vec<u8> = Vec::new();
        for _ in 0..PULL_RESUMES {
            let r = self.retrieve(store, id, content.len() as u64, size).await?;
            if !r.partial {
                // The store sent it all from the start (it may ignore Range).
                content.clear();
            }
            content.extend_from_slice(&r.content);
            if r.complete {
                return Ok(content);
            }
            tracing::info!(%store, have = content.len(), of = size, "pull interrupted; resuming");
        }
        Err(PeerError::Unreachable(format!("retrieving from {store} broke off {PULL_RESUMES} times")))
    }

    /// Silence, un-pin or refuse (`action`) at `store`.
    pub async fn recipient_action(
        &self,
        store: &str,
        id: &str,
        action: &str,
        reason: Option<&str>,
    ) -> Result<(), PeerError> {
        let path = format!("/messages/{id}/{action}");
        let resp = self
            .exchange(Service::Store, store, |ep| {
                let r = self.request(Method::POST, ep, &path);
                match reason {
                    Some(reason) => r.json(&api::RefuseRequest { reason: reason.to_string() }),
                    None => r,
                }
            })
            .await?;
        check(resp).await.map(drop)
    }
}

impl PeerClient {
    /// A small document over HTTPS (an MTA-STS policy): certificate checked,
    /// no redirects, addresses under the peer rule, at most `limit` octets.
    pub async fn fetch_document(&self, url: &str, limit: usize) -> Result<String, PeerError> {
        let resp = self.http.get(url).send().await.map_err(|e| PeerError::Unreachable(error_chain(&e)))?;
        let resp = check(resp).await?;
        let (body, whole) = read_bounded(resp, limit).await?;
        if !whole {
            return Err(PeerError::Unreachable(format!("{url}: the connection broke off")));
        }
        String::from_utf8(body).map_err(|_| PeerError::Protocol(format!("{url}: not UTF-8 text")))
    }
}

/// Resumptions of one interrupted pull before it is given up.
const PULL_RESUMES: usize = 5;

/// Most octets read of an answer that is not a message (JSON, errors).
const MAX_ANSWER: usize = 4 << 20;
/// Most octets read of an error answer.
const MAX_ERROR: usize = 16 << 10;

/// Reads a body of at most `limit` octets: the octets and whether the body
/// arrived whole (`false`: the connection broke; what came is kept). More
/// than `limit` is a protocol error.
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<(Vec<u8>, bool), PeerError> {
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit as u64) as usize);
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(PeerError::Protocol(format!("answer over {limit} octets")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok((body, true)),
            Err(_) => return Ok((body, false)),
        }
    }
}

/// Turns an error status into [`PeerError::Status`] with the peer's JSON error.
pub async fn check(resp: reqwest::Response) -> Result<reqwest::Response, PeerError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = match read_bounded(resp, MAX_ERROR).await {
        Ok((body, _)) => body,
        Err(_) => b"(an error answer over 16 KiB)".to_vec(),
    };
    let text = String::from_utf8_lossy(&body);
    Err(match serde_json::from_str::<ErrorBody>(&text) {
        Ok(e) => PeerError::Status { status, code: e.error, message: e.message },
        Err(_) => PeerError::Status { status, code: "http".into(), message: text.chars().take(200).collect() },
    })
}

/// An error with its causes, which reqwest keeps in `source()`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
