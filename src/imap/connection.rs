//! Drives one IMAP connection: bytes from the socket, through the
//! [`Rewriter`] (IMAP4rev2 syntax imap-codec lacks), into imap-next's
//! sans-IO server flow (which frames commands and literals, answers `+` to
//! synchronising literals and refuses those over the limit), its events
//! into the [`Session`], the session's answers back out (raw lines in
//! order with typed ones, by the private `Outbox`). IDLE waits on the
//! socket and on the user's mailbox at once. STARTTLS starts a new flow
//! over TLS, so nothing pipelined behind it in plain text is read.

use std::collections::VecDeque;
use std::net::SocketAddr;

use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::response::{CommandContinuationRequest, Greeting, Response, Status};
use imap_next::server::{Error as FlowError, Event, Options, ResponseHandle, Server};
use imap_next::{Interrupt, Io, State};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::extended::Rewriter;
use super::session::{Answer, Flow, Reply, Session, bad, code, no, text};
use crate::context::Shared;
use crate::listen::{ListenerTls, handshake};

/// Serves one accepted connection to the end.
pub async fn serve_connection(
    s: Shared,
    cache: std::sync::Arc<super::cache::Shared>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: ListenerTls,
    shutdown: CancellationToken,
) {
    s.metrics.inc(
        "imgate_imap_sessions_total",
        "tls",
        if matches!(tls, ListenerTls::Implicit(_)) { "implicit" } else { "plain" },
    );
    let mut session = Session::new(s.clone(), cache, peer, false, matches!(tls, ListenerTls::StartTls(_)));
    if let ListenerTls::Implicit(acceptor) = &tls {
        let Some(mut stream) = handshake(acceptor, tcp, peer).await else { return };
        session.tls_started();
        drive(&s, &mut session, &mut stream, true, &shutdown).await;
        let _ = stream.shutdown().await;
        return;
    }
    let mut tcp = tcp;
    let end = drive(&s, &mut session, &mut tcp, true, &shutdown).await;
    if let (Flow::StartTls, ListenerTls::StartTls(acceptor)) = (end, &tls)
        && let Some(mut stream) = handshake(acceptor, tcp, peer).await
    {
        session.tls_started();
        drive(&s, &mut session, &mut stream, false, &shutdown).await;
        let _ = stream.shutdown().await;
    }
}

/// Longest command line outside literals.
const MAX_LINE: u32 = 64 * 1024;

fn flow_options(s: &Shared) -> Options {
    let mut o = Options::default();
    o.max_literal_size = s.config.imap.max_append.min(u32::MAX as u64 - MAX_LINE as u64) as u32;
    o.max_command_size = o.max_literal_size + MAX_LINE;
    let _ = o.set_literal_accept_text("go ahead".into());
    let _ = o.set_literal_reject_text(format!("TOOBIG literal over {} octets", o.max_literal_size));
    o
}

/// The tag a client gave a line imap-codec could not parse, if it has one.
fn tag_of(line: &[u8]) -> Option<Tag<'static>> {
    let first = line.split(|b| *b == b' ').next()?;
    let t = std::str::from_utf8(first).ok()?;
    Tag::try_from(t.to_string()).ok()
}

/// Decodes SASL PLAIN (RFC 4616): authzid NUL authcid NUL password.
fn plain(data: &[u8]) -> Option<(String, String)> {
    let mut parts = data.split(|b| *b == 0);
    let (authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || (!authz.is_empty() && authz != user) {
        return None;
    }
    Some((String::from_utf8(user.to_vec()).ok()?, String::from_utf8(pass.to_vec()).ok()?))
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    s: &Shared,
    session: &mut Session,
    stream: &mut S,
    greet: bool,
    shutdown: &CancellationToken,
) -> Flow {
    let greeting_text = session.greeting_text();
    let greeting =
        Greeting::ok(None, &greeting_text).unwrap_or_else(|_| Greeting::ok(None, "imgate").expect("greeting"));
    use imap_codec::imap_types::ToStatic;
    let mut server = Server::new(flow_options(s), greeting.to_static());
    let mut rewriter = Rewriter::new(MAX_LINE as usize);
    let mut outbox = Outbox::default();
    let mut fed: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut swallow_greeting = !greet;
    let mut buf = vec![0u8; 16 * 1024];
    let mut idling: Option<Tag<'static>> = None;
    let mut authenticating: Option<Tag<'static>> = None;
    let idle_timeout = s.config.imap.idle_timeout;
    loop {
        match server.next() {
            Ok(Event::GreetingSent { .. }) => {
                if swallow_greeting {
                    out.clear();
                    swallow_greeting = false;
                }
            }
            Ok(Event::ResponseSent { handle, .. }) => {
                if let Some(flow) = outbox.sent(handle, &mut server, &mut out) {
                    let _ = write_all(stream, &mut out).await;
                    return flow;
                }
            }
            Ok(Event::CommandReceived { command }) => {
                let extras = rewriter.take(command.tag.inner());
                let answer = session.command(command, extras).await;
                outbox.push(answer, &mut server, &mut out);
            }
            Ok(Event::CommandAuthenticateReceived { command_authenticate: c }) => {
                if !matches!(c.mechanism, AuthMechanism::Plain) {
                    let _ = server.authenticate_finish(no(&c.tag, None, "only AUTHENTICATE PLAIN is offered"));
                } else if !session.may_authenticate() {
                    let _ = server.authenticate_finish(no(
                        &c.tag,
                        Some(code("PRIVACYREQUIRED")),
                        "use STARTTLS before logging in",
                    ));
                } else if let Some(ir) = c.initial_response {
                    let st = match plain(ir.declassify()) {
                        Some((u, p)) => session.login(&c.tag, &u, &p).await,
                        None => bad(Some(&c.tag), None, "not a SASL PLAIN response"),
                    };
                    let _ = server.authenticate_finish(st);
                } else {
                    authenticating = Some(c.tag);
                    let _ = server.authenticate_continue(CommandContinuationRequest::base64(Vec::new()));
                }
            }
            Ok(Event::AuthenticateDataReceived { authenticate_data }) => {
                let tag = authenticating
                    .take()
                    .unwrap_or_else(|| Tag::try_from("*").unwrap_or_else(|_| Tag::unvalidated("x")));
                let st = match authenticate_data {
                    AuthenticateData::Cancel => bad(Some(&tag), None, "authentication cancelled"),
                    AuthenticateData::Continue(data) => match plain(data.declassify()) {
                        Some((u, p)) => session.login(&tag, &u, &p).await,
                        None => bad(Some(&tag), None, "not a SASL PLAIN response"),
                    },
                };
                let _ = server.authenticate_finish(st);
            }
            Ok(Event::IdleCommandReceived { tag }) => {
                if !session.authenticated() {
                    let _ = server.idle_reject(bad(Some(&tag), None, "IDLE needs LOGIN first"));
                } else {
                    let _ = server
                        .idle_accept(CommandContinuationRequest::basic(None, text("idling")).expect("continuation"));
                    idling = Some(tag);
                    let mut a = Answer::default();
                    session.changes(&mut a).await;
                    outbox.push(a, &mut server, &mut out);
                }
            }
            Ok(Event::IdleDoneReceived) => {
                if let Some(tag) = idling.take() {
                    server.enqueue_status(super::session::ok(&tag, None, "IDLE done"));
                }
            }
            Err(Interrupt::Io(Io::Output(bytes))) => {
                if !swallow_greeting {
                    out.extend_from_slice(&bytes);
                }
            }
            Err(Interrupt::Io(Io::NeedMoreInput)) => {
                if write_all(stream, &mut out).await.is_err() {
                    return Flow::Close;
                }
                let changed = async {
                    match (&idling, session.selected.as_mut()) {
                        (Some(_), Some(sel)) => {
                            let _ = sel.watch().changed().await;
                        }
                        _ => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    r = stream.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Flow::Close,
                        Ok(n) => {
                            rewriter.feed(&buf[..n], &mut fed);
                            server.enqueue_input(&fed);
                            fed.clear();
                        }
                    },
                    _ = changed => {
                        let mut a = Answer::default();
                        session.changes(&mut a).await;
                        outbox.push(a, &mut server, &mut out);
                    }
                    _ = shutdown.cancelled() => {
                        let _ = bye(stream, "the server is shutting down").await;
                        return Flow::Close;
                    }
                    _ = tokio::time::sleep(idle_timeout) => {
                        let _ = bye(stream, "idle for too long").await;
                        return Flow::Close;
                    }
                }
            }
            Err(Interrupt::Error(e)) => {
                let st = match &e {
                    FlowError::MalformedMessage { discarded_bytes }
                    | FlowError::ExpectedCrlfGotLf { discarded_bytes } => {
                        let line = discarded_bytes.declassify();
                        let tag = tag_of(line);
                        // Left as it was, with the reason in its note.
                        let extended = tag.as_ref().and_then(|t| rewriter.take(t.inner())).and_then(Result::err);
                        let why = if let Some(why) = extended {
                            why
                        } else if matches!(e, FlowError::ExpectedCrlfGotLf { .. }) {
                            "lines end with CRLF".to_string()
                        } else {
                            let word = line
                                .split(|b| *b == b' ')
                                .nth(1)
                                .map(|w| String::from_utf8_lossy(w).trim().to_string());
                            match word {
                                Some(w) if !w.is_empty() => format!("unknown command or bad arguments to {w:?}"),
                                _ => "a command is a tag, a name and arguments".into(),
                            }
                        };
                        s.metrics.inc("imgate_imap_bad_total", "why", "syntax");
                        Some(bad(tag.as_ref(), None, why))
                    }
                    FlowError::CommandTooLong { .. } => {
                        s.metrics.inc("imgate_imap_bad_total", "why", "too_long");
                        Some(bad(
                            None,
                            Some(code("TOOBIG")),
                            format!("commands are at most {MAX_LINE} octets outside literals"),
                        ))
                    }
                    // imap-next has answered the literal's tag itself.
                    FlowError::LiteralTooLong { .. } => {
                        rewriter.literal_refused();
                        s.metrics.inc("imgate_imap_bad_total", "why", "literal_too_long");
                        None
                    }
                };
                if let Some(st) = st {
                    server.enqueue_status(st);
                }
            }
        }
    }
}

/// The session's answers on their way out, in order: typed ones through
/// imap-next, raw lines appended to the output once every response queued
/// before them has been written (imap-next emits a response's octets
/// before it reports it sent).
#[derive(Default)]
struct Outbox {
    queue: VecDeque<(Reply, Option<Flow>)>,
    /// The typed response queued last and not sent yet.
    unsent: Option<ResponseHandle>,
    /// The response whose sending ends this flow (LOGOUT, STARTTLS).
    last: Option<(ResponseHandle, Flow)>,
}

impl Outbox {
    fn push(&mut self, answer: Answer, server: &mut Server, out: &mut Vec<u8>) {
        let n = answer.replies.len();
        for (i, r) in answer.replies.into_iter().enumerate() {
            let ends = (i + 1 == n && answer.flow != Flow::Continue).then_some(answer.flow);
            self.queue.push_back((r, ends));
        }
        self.pump(server, out);
    }

    fn pump(&mut self, server: &mut Server, out: &mut Vec<u8>) {
        while let Some((reply, _)) = self.queue.front() {
            if matches!(reply, Reply::Raw(_)) && self.unsent.is_some() {
                return;
            }
            let Some((reply, ends)) = self.queue.pop_front() else { return };
            let handle = match reply {
                Reply::Raw(line) => {
                    out.extend_from_slice(&line);
                    continue;
                }
                Reply::Typed(Response::Data(d)) => server.enqueue_data(d),
                Reply::Typed(Response::Status(st)) => server.enqueue_status(st),
                Reply::Typed(Response::CommandContinuationRequest(c)) => server.enqueue_continuation_request(c),
            };
            self.unsent = Some(handle);
            if let Some(flow) = ends {
                self.last = Some((handle, flow));
            }
        }
    }

    /// imap-next wrote `handle`: what waited for it follows. The flow's
    /// end if that was its last response.
    fn sent(&mut self, handle: ResponseHandle, server: &mut Server, out: &mut Vec<u8>) -> Option<Flow> {
        if self.unsent == Some(handle) {
            self.unsent = None;
            self.pump(server, out);
        }
        self.last.filter(|(h, _)| *h == handle).map(|(_, flow)| flow)
    }
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, out: &mut Vec<u8>) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    stream.write_all(out).await?;
    stream.flush().await?;
    out.clear();
    Ok(())
}

async fn bye<S: AsyncWrite + Unpin>(stream: &mut S, why: &str) -> std::io::Result<()> {
    let st = Status::bye(None, text(why)).expect("bye");
    let mut out = Vec::new();
    use imap_codec::encode::Encoder;
    out.extend(imap_codec::ResponseCodec::default().encode(&Response::Status(st)).dump());
    stream.write_all(&out).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_responses() {
        type Case = (&'static [u8], Option<(&'static str, &'static str)>);
        let cases: &[Case] = &[
            (b"\0ann@a.test\0secret", Some(("ann@a.test", "secret"))),
            (b"ann@a.test\0ann@a.test\0secret", Some(("ann@a.test", "secret"))),
            (b"bob@a.test\0ann@a.test\0secret", None),
            (b"\0ann@a.test", None),
            (b"\0a\0b\0c", None),
        ];
        for (data, want) in cases {
            let got = plain(data);
            assert_eq!(got.as_ref().map(|(u, p)| (u.as_str(), p.as_str())), *want, "{data:?}");
        }
    }

    #[test]
    fn the_tag_of_a_line_that_did_not_parse() {
        assert_eq!(tag_of(b"a1 FROB x\r\n").map(|t| t.inner().to_string()), Some("a1".into()));
        assert!(tag_of(b"\r\n").is_none());
    }
}
