//! A legacy domain that only receives, served by mailin-embedded: an SMTP
//! server independent of imgate's own, filing one copy per recipient (with
//! its trace header) into the domain's [`Mailboxes`].
//!
//! mailin-embedded suits this role and no other (docs: crates notes): it
//! never has to refuse at the end of data here (recipients are checked at
//! `RCPT`), and no bounce is ever sent to it (`MAIL FROM:<>` it refuses),
//! because nobody at a receive-only domain sends. It has no shutdown: its
//! thread waits on its listener until the process ends.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use mailin_embedded::response::OK;
use mailin_embedded::{Handler, Response, Server};

use super::mailbox::Mailboxes;
use crate::proto::Address;
use crate::smtp_in::session::Envelope;

/// A running receive-only host.
pub struct Receiver {
    pub addr: SocketAddr,
    pub mailboxes: Mailboxes,
}

impl Receiver {
    /// Starts the host for `domain` with mailboxes for `users` (local parts).
    pub fn start(domain: &str, users: &[String], mailboxes: Mailboxes) -> io::Result<Receiver> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let hostname = format!("mx.{domain}");
        let handler = Filer {
            domain: domain.to_ascii_lowercase(),
            hostname: hostname.clone(),
            users: Arc::new(users.iter().map(|u| u.to_ascii_lowercase()).collect()),
            mailboxes: mailboxes.clone(),
            session: Session::default(),
        };
        let mut server = Server::new(handler);
        server.with_name(hostname).with_num_threads(2).with_tcp_listener(listener);
        std::thread::Builder::new().name(format!("mailin {domain}")).spawn(move || {
            if let Err(e) = server.serve() {
                tracing::error!(error = %e, "lab: mailin-embedded stopped");
            }
        })?;
        Ok(Receiver { addr, mailboxes })
    }
}

#[derive(Clone, Default)]
struct Session {
    ip: Option<IpAddr>,
    helo: String,
    sender: Option<Address>,
    recipients: Vec<Address>,
    data: Vec<u8>,
}

#[derive(Clone)]
struct Filer {
    domain: String,
    hostname: String,
    users: Arc<HashSet<String>>,
    mailboxes: Mailboxes,
    session: Session,
}

impl Handler for Filer {
    fn helo(&mut self, ip: IpAddr, domain: &str) -> Response {
        self.session = Session { ip: Some(ip), helo: domain.to_string(), ..Default::default() };
        OK
    }

    fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
        self.session.sender = from.parse().ok();
        self.session.recipients.clear();
        OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        match to.parse::<Address>() {
            Ok(a)
                if a.domain().eq_ignore_ascii_case(&self.domain)
                    && self.users.contains(&a.local().to_ascii_lowercase()) =>
            {
                self.session.recipients.push(a);
                OK
            }
            _ => Response::custom(550, "5.1.1 no such user here".into()),
        }
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, _to: &[String]) -> Response {
        self.session.data.clear();
        OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.session.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let env = Envelope {
            helo: self.session.helo.clone(),
            sender: self.session.sender.clone(),
            recipients: std::mem::take(&mut self.session.recipients),
            relay: Vec::new(),
            authenticated: None,
            tls: false,
            esmtp: true,
        };
        let ip = self.session.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        self.mailboxes.deliver(&env, ip, &self.hostname, &std::mem::take(&mut self.session.data));
        OK
    }
}
