//! Drives one SMTP session over a socket: reads into the sans-IO
//! [`Session`], carries out its steps (recipient checks, AUTH, storing), and
//! writes replies — buffered while pipelined commands are pending
//! (RFC 2920), flushed before waiting for input. STARTTLS swaps the stream.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ListenerTls;
use super::accept::accept;
use super::pace::{Pace, Verdict};
use super::policy::{Destination, recipient_verdict};
use super::reply::Reply;
use super::session::{ListenerKind, Session, SessionConfig, Step};
use crate::context::Shared;
use crate::discovery::{LocateError, Service};
use crate::im2000::auth::{AuthOutcome, authenticate};
use crate::listen::handshake;
use crate::proto::Address;

/// How a drive of the session ended.
enum End {
    Closed,
    StartTls,
}

/// Serves one accepted connection to the end.
pub async fn serve_connection(
    s: Shared,
    kind: ListenerKind,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: ListenerTls,
    shutdown: CancellationToken,
) {
    let smtp = &s.config.smtp;
    let cfg = SessionConfig {
        hostname: s.config.hostname.clone(),
        kind,
        max_size: smtp.max_message_size as usize,
        max_recipients: smtp.max_recipients,
        tls_available: matches!(tls, ListenerTls::StartTls(_)),
        auth_without_tls: smtp.submission_plaintext,
        max_refused_recipients: smtp.max_refused_recipients,
    };
    let deadline = Instant::now() + smtp.session_timeout;
    s.metrics.inc("imgate_smtp_sessions_total", "listener", listener_name(kind));
    let (mut session, greeting) = Session::new(cfg);
    let mut tcp = tcp;
    if let ListenerTls::Implicit(acceptor) = &tls {
        let Some(mut stream) = handshake(acceptor, tcp, peer).await else { return };
        session.tls_started();
        if stream.write_all(&greeting.to_wire()).await.is_ok() {
            drive(&s, kind, &mut session, &mut stream, peer, deadline, &shutdown).await;
        }
        let _ = stream.shutdown().await;
        return;
    }
    if tcp.write_all(&greeting.to_wire()).await.is_err() {
        return;
    }
    let end = drive(&s, kind, &mut session, &mut tcp, peer, deadline, &shutdown).await;
    if let (End::StartTls, ListenerTls::StartTls(acceptor)) = (end, &tls)
        && let Some(mut stream) = handshake(acceptor, tcp, peer).await
    {
        session.tls_started();
        drive(&s, kind, &mut session, &mut stream, peer, deadline, &shutdown).await;
        let _ = stream.shutdown().await;
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &Shared,
    kind: ListenerKind,
    session: &mut Session,
    stream: &mut S,
    peer: SocketAddr,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> End {
    let idle = s.config.smtp.idle_timeout;
    let mut pace = Pace::new(s.config.smtp.min_data_rate);
    let mut budget = DataBudget::new(s.smtp_data.clone());
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let step = session.step();
        let step = match step {
            Step::CheckRecipient(addr) => {
                let sender_domain = session.user().map(|u| u.domain().to_string());
                let dest = destination(s, kind, &addr, sender_domain.as_deref()).await;
                let verdict = recipient_verdict(kind, &addr, &dest);
                let step = session.recipient_checked(addr, verdict, dest.is_relay());
                if matches!(step, Step::Close(_)) {
                    s.metrics.inc("imgate_rate_limited_total", "what", "smtp_refused_recipients");
                }
                step
            }
            Step::Authenticate { user, password } => match authenticate(s, peer.ip(), &user, &password).await {
                AuthOutcome::Valid(a) => session.authenticated(Some(a)),
                AuthOutcome::Invalid => {
                    tracing::info!(%peer, user = ?user.chars().take(64).collect::<String>(), "SMTP AUTH failed");
                    session.authenticated(None)
                }
                AuthOutcome::Throttled => {
                    let bye = Reply::new(421, "4.7.0", "Too many failed authentications; try again later");
                    out.extend_from_slice(&bye.to_wire());
                    let _ = stream.write_all(&out).await;
                    return End::Closed;
                }
                AuthOutcome::Busy => session.authentication_unavailable(),
            },
            Step::Message(env, data) => {
                let reply = accept(s, kind, peer.ip(), env, data).await;
                budget.release();
                session.stored(reply)
            }
            other => other,
        };
        if let Step::Reply(r) | Step::StartTls(r) | Step::Close(r) = &step {
            s.metrics.inc("imgate_smtp_replies_total", "code", &r.code.to_string());
        }
        match step {
            Step::Reply(reply) => out.extend_from_slice(&reply.to_wire()),
            Step::StartTls(reply) => {
                out.extend_from_slice(&reply.to_wire());
                if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                    return End::Closed;
                }
                return End::StartTls;
            }
            Step::Close(reply) => {
                out.extend_from_slice(&reply.to_wire());
                let _ = stream.write_all(&out).await;
                let _ = stream.flush().await;
                return End::Closed;
            }
            Step::NeedInput => {
                if !out.is_empty() {
                    if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
                        return End::Closed;
                    }
                    out.clear();
                }
                let in_data = session.in_data();
                if !in_data {
                    pace.reset();
                    budget.release();
                }
                let idle_end = deadline.min(Instant::now() + idle);
                let until = match pace.deadline() {
                    Some(window_end) if in_data => idle_end.min(window_end),
                    _ => idle_end,
                };
                let read = tokio::select! {
                    r = tokio::time::timeout_at(until, stream.read(&mut buf)) => r,
                    _ = shutdown.cancelled() => {
                        let bye = Reply::new(421, "4.3.2", "Server shutting down; try again later");
                        let _ = stream.write_all(&bye.to_wire()).await;
                        return End::Closed;
                    }
                };
                let (now, mut verdict) = (Instant::now(), Verdict::Fine);
                match read {
                    Ok(Ok(0)) | Ok(Err(_)) => return End::Closed,
                    Ok(Ok(n)) => {
                        if in_data {
                            verdict = pace.record(n, now);
                        }
                        session.receive(&buf[..n]);
                        // Data still buffered counts too: a message is held
                        // in memory until it is stored or refused.
                        let held = session.data_held() + n;
                        if in_data && !budget.cover(held) {
                            s.metrics.inc("imgate_rate_limited_total", "what", "smtp_inflight_data");
                            session.data_out_of_resources();
                            budget.release();
                        }
                    }
                    // Only the pace window ended: judge it, then read on.
                    Err(_) if now < idle_end => verdict = pace.check(now),
                    Err(_) => {
                        let bye = Reply::new(421, "4.4.2", "Timeout; closing");
                        let _ = stream.write_all(&bye.to_wire()).await;
                        return End::Closed;
                    }
                }
                if verdict == Verdict::TooSlow {
                    s.metrics.inc("imgate_rate_limited_total", "what", "slow_data");
                    let bye = Reply::new(421, "4.4.2", "Message data arriving too slowly; closing");
                    let _ = stream.write_all(&bye.to_wire()).await;
                    return End::Closed;
                }
            }
            Step::CheckRecipient(_) | Step::Authenticate { .. } | Step::Message(..) => {
                unreachable!("handled above")
            }
        }
    }
}

/// This session's share of the node's budget for message data in memory
/// (`smtp.max_inflight_data`), in KiB permits, grown as data arrives and
/// given back once the message is stored or refused.
struct DataBudget {
    pool: std::sync::Arc<tokio::sync::Semaphore>,
    held: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl DataBudget {
    fn new(pool: std::sync::Arc<tokio::sync::Semaphore>) -> DataBudget {
        DataBudget { pool, held: None }
    }

    /// Holds permits for `octets`; `false` when the node has none to spare.
    fn cover(&mut self, octets: usize) -> bool {
        let want = octets.div_ceil(1024) as u32;
        let have = self.held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if want <= have {
            return true;
        }
        match self.pool.clone().try_acquire_many_owned(want - have) {
            Ok(more) => {
                match &mut self.held {
                    Some(p) => p.merge(more),
                    None => self.held = Some(more),
                }
                true
            }
            Err(_) => false,
        }
    }

    fn release(&mut self) {
        self.held = None;
    }
}

fn listener_name(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Mx => "mx",
        ListenerKind::Submission => "submission",
    }
}

/// Looks up what the policy needs to know about `rcpt`.
async fn destination(s: &Shared, kind: ListenerKind, rcpt: &Address, sender_domain: Option<&str>) -> Destination {
    if let Some(token) = crate::smtp_out::deliver::return_token(rcpt)
        && rcpt.domain() == s.config.smtp.store_domain
    {
        // A late bounce for a delivery to a legacy host.
        let st = s.store.clone();
        let known = s.blocking(move || st.has_return(token)).await;
        Destination::Local { user_exists: matches!(known, Ok(Ok(true))) }
    } else if s.dir().config.is_local_domain(rcpt.domain()) {
        let on_smtp = s.route(rcpt) == crate::config::Route::Legacy;
        Destination::Local { user_exists: on_smtp || s.dir().users.contains(rcpt) }
    } else if kind == ListenerKind::Mx {
        Destination::Remote(None)
    } else {
        match s.peers.locator().locate(Service::Notify, rcpt.domain()).await {
            // No IM2000 here: an authenticated user's mail goes out by SMTP.
            // Through an upstream relay it goes whatever the domain's MX
            // records say (the relay judges them), as Postfix's relayhost.
            Err(LocateError::NoService(..))
                if sender_domain.is_some_and(|d| s.dir().config.outbound.relay_for(d).is_some()) =>
            {
                Destination::Relay(Ok(()))
            }
            Err(LocateError::NoService(..)) => {
                Destination::Relay(crate::smtp_out::hosts::smtp_hosts(s, rcpt.domain()).await.map(drop))
            }
            other => Destination::Remote(Some(other.map(drop))),
        }
    }
}
