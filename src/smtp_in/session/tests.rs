//! Data-driven transcript tests: each `fixtures/smtp/NNNN-name.txt` is a
//! client transcript (`C:` lines get CRLF appended, `C|` lines are raw with
//! `\r`, `\n` escapes) with the expected replies (`S:` prefixes). Consecutive
//! client lines are sent together, as a pipelining client would. Header
//! lines `# key: value` set the listener (`kind`, `tls`, `plaintext_auth`,
//! `max_size`, `max_recipients`) and the expected number of `stored`
//! messages. Recipients are judged by the real policy against a small world:
//! `local.test` (users alice, bob) is local; `im2000.test` has an IM2000
//! agent; `nodomain.test` does not exist; `relay.test` has no IM2000 service
//! but mail exchangers (relayed by SMTP); `legacy.test` has neither;
//! `slow.test` cannot be looked up now. `alice@local.test` has the
//! password `secret`.

use std::path::Path;

use super::*;
use crate::discovery::LocateError;
use crate::smtp_in::policy::{Destination, recipient_verdict};
use crate::smtp_out::hosts::NoHost;

struct Fixture {
    name: String,
    cfg: SessionConfig,
    stored: Option<usize>,
    script: Vec<Line>,
}

enum Line {
    Client(Vec<u8>),
    Server(String),
}

fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\r", "\r").replace("\\0", "\0").replace("\\n", "\n").replace("\\t", "\t").into_bytes()
}

fn parse(name: &str, text: &str) -> Fixture {
    let mut cfg = SessionConfig {
        hostname: "mx.local.test".into(),
        kind: ListenerKind::Mx,
        max_size: 10_000,
        max_recipients: 50,
        tls_available: false,
        auth_without_tls: false,
        max_refused_recipients: 20,
    };
    let mut stored = None;
    let mut script = Vec::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# ") {
            if let Some((k, v)) = h.split_once(": ") {
                match k {
                    "kind" => cfg.kind = if v == "submission" { ListenerKind::Submission } else { ListenerKind::Mx },
                    "tls" => cfg.tls_available = v == "yes",
                    "plaintext_auth" => cfg.auth_without_tls = v == "yes",
                    "max_size" => cfg.max_size = v.parse().unwrap(),
                    "max_recipients" => cfg.max_recipients = v.parse().unwrap(),
                    "max_refused" => cfg.max_refused_recipients = v.parse().unwrap(),
                    "stored" => stored = Some(v.parse().unwrap()),
                    _ => {}
                }
            }
        } else if let Some(c) = line.strip_prefix("C: ") {
            let mut b = c.as_bytes().to_vec();
            b.extend_from_slice(b"\r\n");
            script.push(Line::Client(b));
        } else if let Some(c) = line.strip_prefix("C| ") {
            script.push(Line::Client(unescape(c)));
        } else if let Some(s) = line.strip_prefix("S: ") {
            script.push(Line::Server(s.to_string()));
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            panic!("{name}: cannot read line {line:?}");
        }
    }
    Fixture { name: name.into(), cfg, stored, script }
}

fn destination(rcpt: &Address) -> Destination {
    match rcpt.domain() {
        "local.test" => {
            Destination::Local { user_exists: ["alice", "bob"].contains(&rcpt.local().to_lowercase().as_str()) }
        }
        "im2000.test" => Destination::Remote(Some(Ok(()))),
        "nodomain.test" => Destination::Remote(Some(Err(LocateError::BadDomain("nodomain.test".into())))),
        "legacy.test" => Destination::Relay(Err(NoHost::Permanent("legacy.test has no MX and no address".into()))),
        "relay.test" => Destination::Relay(Ok(())),
        d => Destination::Remote(Some(Err(LocateError::Temporary(d.into(), "timed out".into())))),
    }
}

/// Runs the session until it needs input; returns its reply lines.
fn drain(f: &Fixture, session: &mut Session, stored: &mut usize, closed: &mut bool) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let step = match session.step() {
            Step::CheckRecipient(a) => {
                let dest = destination(&a);
                let verdict = recipient_verdict(f.cfg.kind, &a, &dest);
                session.recipient_checked(a, verdict, dest.is_relay())
            }
            Step::Authenticate { user, password } => {
                let ok = user == "alice@local.test" && password == "secret";
                session.authenticated(ok.then(|| user.parse().unwrap()))
            }
            Step::Message(env, data) => {
                *stored += 1;
                assert!(!env.recipients.is_empty(), "{}: a message without recipients", f.name);
                assert!(data.windows(2).all(|w| w[1] != b'\n' || w[0] == b'\r'), "{}: stored bare LF", f.name);
                session.stored(Reply::new(250, "2.0.0", "Ok: queued as TEST"))
            }
            other => other,
        };
        match step {
            Step::NeedInput => return lines,
            Step::Reply(r) => lines.extend(String::from_utf8(r.to_wire()).unwrap().lines().map(String::from)),
            Step::StartTls(r) => {
                lines.extend(String::from_utf8(r.to_wire()).unwrap().lines().map(String::from));
                session.tls_started();
            }
            Step::Close(r) => {
                lines.extend(String::from_utf8(r.to_wire()).unwrap().lines().map(String::from));
                *closed = true;
                return lines;
            }
            _ => unreachable!(),
        }
    }
}

fn check(f: &Fixture) {
    let (mut session, greeting) = Session::new(f.cfg.clone());
    let mut replies: std::collections::VecDeque<String> =
        String::from_utf8(greeting.to_wire()).unwrap().lines().map(String::from).collect();
    let (mut stored, mut closed) = (0, false);
    for (i, line) in f.script.iter().enumerate() {
        match line {
            Line::Client(bytes) => {
                assert!(!closed, "{}: line {i}: the server already closed the session", f.name);
                session.receive(bytes);
            }
            Line::Server(want) => {
                if replies.is_empty() && !closed {
                    replies.extend(drain(f, &mut session, &mut stored, &mut closed));
                }
                let got = replies.pop_front().unwrap_or_else(|| panic!("{}: expected {want:?}, got nothing", f.name));
                if std::env::var("SHOW_REPLIES").is_ok() {
                    eprintln!("{}: {got}", f.name);
                }
                assert!(got.starts_with(want.as_str()), "{}: expected {want:?}, got {got:?}", f.name);
            }
        }
    }
    if !closed {
        replies.extend(drain(f, &mut session, &mut stored, &mut closed));
    }
    assert!(replies.is_empty(), "{}: unexpected replies {replies:?}", f.name);
    if let Some(n) = f.stored {
        assert_eq!(stored, n, "{}: messages stored", f.name);
    }
}

#[test]
fn smtp_transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/smtp");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures missing from {}", dir.display());
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        check(&parse(&name, &std::fs::read_to_string(&path).unwrap()));
    }
}
