//! Who may send to whom, decided in the session (never by a bounce later).
//! The verdicts are pure functions of what the caller looked up, so the
//! transcript tests exercise exactly the rules the listeners apply.

use super::reply::Reply;
use super::session::ListenerKind;
use crate::discovery::LocateError;
use crate::proto::Address;
use crate::smtp_out::hosts::NoHost;

/// What is known about a recipient's domain.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A domain this node serves; whether the user exists here.
    Local { user_exists: bool },
    /// Another domain, with the outcome of locating its IM2000 agent
    /// (`None` when it was not looked up: the MX never relays).
    Remote(Option<Result<(), LocateError>>),
    /// A domain without IM2000 service, for an authenticated user: relayed
    /// by SMTP if it has mail exchangers.
    Relay(Result<(), NoHost>),
}

impl Destination {
    /// Whether an accepted recipient goes out by SMTP rather than IM2000.
    pub fn is_relay(&self) -> bool {
        matches!(self, Destination::Relay(Ok(())))
    }
}

/// The RCPT reply for `rcpt`.
pub fn recipient_verdict(kind: ListenerKind, rcpt: &Address, dest: &Destination) -> Reply {
    match dest {
        Destination::Local { user_exists: true } => Reply::new(250, "2.1.5", "Recipient ok"),
        Destination::Local { user_exists: false } => Reply::new(550, "5.1.1", format!("<{rcpt}>: no such user here")),
        Destination::Remote(_) if kind == ListenerKind::Mx => {
            Reply::new(550, "5.7.1", format!("<{rcpt}>: relaying denied; {} is not served here", rcpt.domain()))
        }
        Destination::Remote(None) => Reply::new(451, "4.3.0", "Recipient not checked; try again"),
        Destination::Remote(Some(Ok(()))) => Reply::new(250, "2.1.5", "Recipient ok (IM2000)"),
        Destination::Remote(Some(Err(LocateError::BadDomain(d)))) => {
            Reply::new(550, "5.1.2", format!("<{rcpt}>: domain {d} does not exist"))
        }
        Destination::Remote(Some(Err(LocateError::NoService(d, _)))) => Reply::new(
            550,
            "5.1.2",
            format!("<{rcpt}>: {d} has no IM2000 service and no SMTP route is configured here"),
        ),
        Destination::Remote(Some(Err(e))) => {
            Reply::new(451, "4.4.3", format!("<{rcpt}>: cannot reach {}'s IM2000 service now: {e}", rcpt.domain()))
        }
        Destination::Relay(_) if kind == ListenerKind::Mx => {
            Reply::new(550, "5.7.1", format!("<{rcpt}>: relaying denied; {} is not served here", rcpt.domain()))
        }
        Destination::Relay(Ok(())) => Reply::new(250, "2.1.5", "Recipient ok (relayed by SMTP)"),
        Destination::Relay(Err(NoHost::Permanent(why))) => Reply::new(
            550,
            "5.1.2",
            format!("<{rcpt}>: {} has no IM2000 service, and no SMTP either: {why}", rcpt.domain()),
        ),
        Destination::Relay(Err(NoHost::Temporary(why))) => {
            Reply::new(451, "4.4.3", format!("<{rcpt}>: cannot look up {}'s mail exchangers now: {why}", rcpt.domain()))
        }
    }
}
