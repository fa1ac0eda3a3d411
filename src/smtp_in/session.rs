//! One SMTP session as a state machine, sans-IO: bytes go in with
//! [`Session::receive`], and [`Session::step`] hands out one step at a time —
//! a reply to send, or a decision the caller must make (check a recipient,
//! verify a password, store a message, start TLS) and report back. The same
//! code runs over TCP, TLS, or a test's byte slices.
//!
//! Commands are parsed by smtp-proto; line framing is ours: strict CRLF, a
//! bounded command line, and DATA by [`super::data`].

use std::borrow::Cow;

use base64::Engine;
use smtp_proto::{MAIL_BODY_BINARYMIME, Request};

use super::data::{DataFault, DataReader, DataStatus};
use super::reply::Reply;
use crate::proto::Address;

/// Longest command line accepted, CRLF included (RFC 5321 says 512; SMTP
/// extensions' parameters make room for more).
pub const MAX_COMMAND_LINE: usize = 2048;
/// Failed AUTH attempts before the session is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// Protocol errors before the session is closed.
const MAX_ERRORS: u32 = 10;

/// Which kind of listener the session came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Mail exchanger: anyone may send, only to local domains.
    Mx,
    /// Submission: authenticated users may send anywhere.
    Submission,
}

/// Fixed facts a session needs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub hostname: String,
    pub kind: ListenerKind,
    pub max_size: usize,
    pub max_recipients: usize,
    /// STARTTLS can be offered.
    pub tls_available: bool,
    /// AUTH may be used without TLS (a listener marked plaintext-allowed).
    pub auth_without_tls: bool,
    /// Refused recipients before the session is closed (`421`): a client
    /// trying name after name is harvesting the directory.
    pub max_refused_recipients: u32,
}

/// A message received in full, ready to be stored.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub helo: String,
    /// `None` for the null reverse-path `<>`.
    pub sender: Option<Address>,
    pub recipients: Vec<Address>,
    /// Those of `recipients` to be relayed by SMTP (smarthost).
    pub relay: Vec<Address>,
    pub authenticated: Option<Address>,
    pub tls: bool,
    pub esmtp: bool,
}

/// What the caller must do next.
#[derive(Debug)]
pub enum Step {
    /// Nothing more can be done until more input arrives.
    NeedInput,
    /// Send this reply, then call [`Session::step`] again.
    Reply(Reply),
    /// Decide whether this recipient may receive; answer with [`Session::recipient_checked`].
    CheckRecipient(Address),
    /// Verify credentials; answer with [`Session::authenticated`].
    Authenticate { user: String, password: String },
    /// Send the reply, then switch to TLS and call [`Session::tls_started`].
    StartTls(Reply),
    /// Store the message; answer with [`Session::stored`].
    Message(Envelope, Vec<u8>),
    /// Send the reply and close the connection.
    Close(Reply),
}

#[derive(Debug)]
enum State {
    /// Before HELO/EHLO.
    Fresh,
    /// Between transactions.
    Ready,
    /// In a transaction (after MAIL).
    Mail,
    /// Receiving message data.
    Data(DataReader),
    /// Waiting for an AUTH continuation line.
    AuthPlain,
    AuthLoginUser,
    AuthLoginPassword(String),
    /// Waiting for the caller's answer to a step.
    Waiting,
    Closed,
}

pub struct Session {
    cfg: SessionConfig,
    state: State,
    input: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    tls: bool,
    user: Option<Address>,
    sender: Option<Option<Address>>,
    recipients: Vec<Address>,
    /// The keys of `recipients`, so a duplicate is found at once however
    /// long the list (a mailing list's 10,000).
    recipient_keys: std::collections::HashSet<String>,
    relay: Vec<Address>,
    /// State to return to after a `Waiting` step.
    resume: Option<Box<State>>,
    auth_failures: u32,
    errors: u32,
    refused_recipients: u32,
    /// The rest of an over-long command line is being discarded.
    skipping_line: bool,
}

fn r(code: u16, enhanced: &'static str, text: impl Into<String>) -> Step {
    Step::Reply(Reply::new(code, enhanced, text))
}

impl Session {
    /// A new session and its greeting.
    pub fn new(cfg: SessionConfig) -> (Session, Reply) {
        let greeting = Reply::new(220, "", format!("{} ESMTP imgate", cfg.hostname));
        let s = Session {
            cfg,
            state: State::Fresh,
            input: Vec::new(),
            helo: None,
            esmtp: false,
            tls: false,
            user: None,
            sender: None,
            recipients: Vec::new(),
            recipient_keys: Default::default(),
            relay: Vec::new(),
            resume: None,
            auth_failures: 0,
            errors: 0,
            refused_recipients: 0,
            skipping_line: false,
        };
        (s, greeting)
    }

    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Whether unprocessed input is buffered (pipelined commands).
    pub fn has_input(&self) -> bool {
        !self.input.is_empty()
    }

    /// Whether message data is being received.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_))
    }

    /// Octets of message data held in memory now.
    pub fn data_held(&self) -> usize {
        match &self.state {
            State::Data(reader) => reader.held(),
            _ => 0,
        }
    }

    /// The node's budget for message data is spent: this message is read
    /// to its end, discarded, and refused with `452 4.3.1`.
    pub fn data_out_of_resources(&mut self) {
        if let State::Data(reader) = &mut self.state {
            reader.out_of_resources();
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn user(&self) -> Option<&Address> {
        self.user.as_ref()
    }

    fn reset_transaction(&mut self) {
        self.sender = None;
        self.recipients.clear();
        self.recipient_keys.clear();
        self.relay.clear();
    }

    fn error(&mut self, code: u16, enhanced: &'static str, text: impl Into<String>) -> Step {
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.state = State::Closed;
            return Step::Close(Reply::new(421, "4.7.0", "Too many errors; closing"));
        }
        r(code, enhanced, text)
    }

    /// The next step; call repeatedly until [`Step::NeedInput`].
    pub fn step(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Waiting) {
            State::Closed => {
                self.state = State::Closed;
                Step::NeedInput
            }
            State::Waiting => {
                // The caller has not answered the previous step.
                self.state = State::Waiting;
                Step::NeedInput
            }
            State::Data(mut reader) => match reader.feed(&self.input) {
                DataStatus::More => {
                    self.input.clear();
                    self.state = State::Data(reader);
                    Step::NeedInput
                }
                DataStatus::Done { consumed } => {
                    self.input.drain(..consumed);
                    self.finish_data(reader)
                }
            },
            other => {
                self.state = other;
                self.next_line()
            }
        }
    }

    fn finish_data(&mut self, reader: DataReader) -> Step {
        let recipients = std::mem::take(&mut self.recipients);
        self.recipient_keys.clear();
        let relay = std::mem::take(&mut self.relay);
        let sender = self.sender.take().flatten();
        self.state = State::Ready;
        match reader.finish() {
            Ok(data) => {
                self.state = State::Waiting;
                self.resume = Some(Box::new(State::Ready));
                let env = Envelope {
                    helo: self.helo.clone().unwrap_or_default(),
                    sender,
                    recipients,
                    relay,
                    authenticated: self.user.clone(),
                    tls: self.tls,
                    esmtp: self.esmtp,
                };
                Step::Message(env, data)
            }
            Err(DataFault::TooBig) => r(552, "5.3.4", format!("Message exceeds the {} octet limit", self.cfg.max_size)),
            Err(DataFault::LineTooLong) => r(500, "5.5.2", "Line too long (over 998 octets); message refused"),
            Err(DataFault::BareNewline) => {
                r(554, "5.6.0", "Bare CR or LF in message data (RFC 5321 2.3.8); message refused")
            }
            Err(DataFault::Nul) => r(554, "5.6.0", "NUL octet in message data; message refused"),
            Err(DataFault::NoResources) => {
                r(452, "4.3.1", "Insufficient system resources for message data now; try again later")
            }
        }
    }

    /// Takes one CRLF-terminated line from the input, if there is one.
    fn take_line(&mut self) -> Option<Result<Vec<u8>, Step>> {
        let nl = self.input.iter().position(|&b| b == b'\n');
        if self.skipping_line {
            // The tail of a line already answered as too long.
            match nl {
                Some(nl) => {
                    self.input.drain(..=nl);
                    self.skipping_line = false;
                    return self.take_line();
                }
                None => {
                    self.input.clear();
                    return None;
                }
            }
        }
        let Some(nl) = nl else {
            if self.input.len() > MAX_COMMAND_LINE {
                // Answer once; drop the rest of the line as it arrives.
                self.input.clear();
                self.skipping_line = true;
                return Some(Err(self.error(500, "5.5.2", "Line too long")));
            }
            return None;
        };
        let line: Vec<u8> = self.input.drain(..=nl).collect();
        if line.len() > MAX_COMMAND_LINE {
            return Some(Err(self.error(500, "5.5.2", "Line too long")));
        }
        if line.len() < 2 || line[line.len() - 2] != b'\r' {
            return Some(Err(self.error(500, "5.5.2", "Lines must end with CRLF")));
        }
        Some(Ok(line))
    }

    fn next_line(&mut self) -> Step {
        let line = match self.take_line() {
            None => return Step::NeedInput,
            Some(Err(step)) => return step,
            Some(Ok(line)) => line,
        };
        match std::mem::replace(&mut self.state, State::Ready) {
            State::AuthPlain => self.auth_plain_response(&line),
            State::AuthLoginUser => self.auth_login_user(&line),
            State::AuthLoginPassword(user) => self.auth_login_password(user, &line),
            state => {
                self.state = state;
                self.command(&line)
            }
        }
    }

    fn command(&mut self, line: &[u8]) -> Step {
        let request = match Request::parse(&mut line.iter()) {
            Ok(req) => req,
            Err(smtp_proto::Error::UnknownCommand) => return self.error(500, "5.5.2", "Command not recognized"),
            Err(smtp_proto::Error::InvalidSenderAddress) => {
                return self.error(501, "5.1.7", "Bad sender address syntax");
            }
            Err(smtp_proto::Error::InvalidRecipientAddress) => {
                return self.error(501, "5.1.3", "Bad recipient address syntax");
            }
            Err(smtp_proto::Error::SyntaxError { syntax }) => {
                return self.error(501, "5.5.4", format!("Syntax: {syntax}"));
            }
            Err(smtp_proto::Error::InvalidParameter { param }) => {
                return self.error(501, "5.5.4", format!("Invalid parameter {param:?}"));
            }
            Err(smtp_proto::Error::UnsupportedParameter { param }) => {
                return self.error(555, "5.5.4", format!("Unsupported parameter {param:?}"));
            }
            Err(e) => return self.error(501, "5.5.2", format!("Syntax error: {e:?}")),
        };
        match request {
            Request::Ehlo { host } => self.helo(host, true),
            Request::Helo { host } => self.helo(host, false),
            Request::Lhlo { .. } => self.error(500, "5.5.1", "This is not an LMTP server"),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to),
            Request::Data => self.data(),
            Request::Bdat { .. } => self.error(502, "5.5.1", "CHUNKING is not offered"),
            Request::Rset => {
                self.reset_transaction();
                if !matches!(self.state, State::Fresh) {
                    self.state = State::Ready;
                }
                r(250, "2.0.0", "Ok")
            }
            Request::Noop { .. } => r(250, "2.0.0", "Ok"),
            Request::Vrfy { .. } => r(252, "2.5.0", "Cannot VRFY; send mail and it will be tried"),
            Request::Expn { .. } => self.error(502, "5.5.1", "EXPN is not offered"),
            Request::Help { .. } => r(214, "2.0.0", "See RFC 5321; this is imgate"),
            Request::Quit => {
                self.state = State::Closed;
                Step::Close(Reply::new(221, "2.0.0", "Bye"))
            }
            Request::StartTls => self.starttls(),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, initial_response),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(502, "5.5.1", "Command not implemented")
            }
        }
    }

    fn helo(&mut self, host: Cow<'_, str>, esmtp: bool) -> Step {
        if host.is_empty() {
            return self.error(501, "5.5.4", "Say who you are: EHLO your.host.name");
        }
        self.reset_transaction();
        self.helo = Some(host.chars().filter(|c| !c.is_control()).take(255).collect());
        self.esmtp = esmtp;
        self.state = State::Ready;
        if !esmtp {
            return Step::Reply(Reply::new(250, "", self.cfg.hostname.clone()));
        }
        let mut lines = vec![
            format!("{} greets {}", self.cfg.hostname, self.helo.as_deref().unwrap_or("")),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.max_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.cfg.tls_available && !self.tls {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Step::Reply(Reply::multi(250, lines))
    }

    fn auth_offered(&self) -> bool {
        self.cfg.kind == ListenerKind::Submission && self.user.is_none() && (self.tls || self.cfg.auth_without_tls)
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<Cow<'_, str>>) -> Step {
        match self.state {
            State::Fresh => return self.error(503, "5.5.1", "Say EHLO first"),
            State::Mail => return self.error(503, "5.5.1", "Nested MAIL command"),
            _ => {}
        }
        if self.cfg.kind == ListenerKind::Submission && self.user.is_none() {
            return self.error(530, "5.7.0", "Authentication required");
        }
        if from.size > self.cfg.max_size {
            return r(552, "5.3.4", format!("Message size exceeds the {} octet limit", self.cfg.max_size));
        }
        if from.flags & MAIL_BODY_BINARYMIME != 0 {
            return self.error(555, "5.5.4", "BINARYMIME is not offered");
        }
        let sender = if from.address.is_empty() {
            if self.cfg.kind == ListenerKind::Submission {
                return self.error(553, "5.7.1", "A null sender cannot be used on submission");
            }
            None
        } else {
            match from.address.parse::<Address>() {
                Ok(a) => Some(a),
                Err(e) => return self.error(553, "5.1.7", format!("Sender address not accepted: {e}")),
            }
        };
        if let (Some(user), ListenerKind::Submission) = (&self.user, self.cfg.kind)
            && sender.as_ref().map(Address::key) != Some(user.key())
        {
            return self.error(553, "5.7.1", format!("Sender address is not yours ({user})"));
        }
        self.sender = Some(sender);
        self.recipients.clear();
        self.recipient_keys.clear();
        self.relay.clear();
        self.state = State::Mail;
        r(250, "2.1.0", "Sender ok")
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<Cow<'_, str>>) -> Step {
        if !matches!(self.state, State::Mail) {
            return self.error(503, "5.5.1", "Need MAIL before RCPT");
        }
        if self.recipients.len() >= self.cfg.max_recipients {
            return r(452, "4.5.3", "Too many recipients");
        }
        let addr = match to.address.parse::<Address>() {
            Ok(a) => a,
            Err(e) => return self.error(553, "5.1.3", format!("Recipient address not accepted: {e}")),
        };
        if self.recipient_keys.contains(&addr.key()) {
            return r(250, "2.1.5", "Recipient ok (duplicate)");
        }
        self.state = State::Waiting;
        self.resume = Some(Box::new(State::Mail));
        Step::CheckRecipient(addr)
    }

    /// The caller's verdict on a [`Step::CheckRecipient`]; `relay` when the
    /// recipient is to be relayed by SMTP.
    pub fn recipient_checked(&mut self, addr: Address, verdict: Reply, relay: bool) -> Step {
        self.state = self.resume.take().map_or(State::Mail, |b| *b);
        if verdict.is_positive() {
            if relay {
                self.relay.push(addr.clone());
            }
            self.recipient_keys.insert(addr.key());
            self.recipients.push(addr);
        } else if verdict.code >= 500 {
            self.refused_recipients += 1;
            if self.refused_recipients >= self.cfg.max_refused_recipients {
                self.state = State::Closed;
                return Step::Close(Reply::new(421, "4.7.0", "Too many unknown recipients; closing"));
            }
        }
        Step::Reply(verdict)
    }

    fn data(&mut self) -> Step {
        if !matches!(self.state, State::Mail) {
            return self.error(503, "5.5.1", "Need MAIL before DATA");
        }
        if self.recipients.is_empty() {
            return r(554, "5.5.1", "No valid recipients");
        }
        self.state = State::Data(DataReader::new(self.cfg.max_size));
        Step::Reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"))
    }

    /// The caller's verdict on a [`Step::Message`].
    pub fn stored(&mut self, reply: Reply) -> Step {
        self.state = self.resume.take().map_or(State::Ready, |b| *b);
        Step::Reply(reply)
    }

    fn starttls(&mut self) -> Step {
        if self.tls {
            return self.error(503, "5.5.1", "TLS is already active");
        }
        if !self.cfg.tls_available {
            return self.error(454, "4.7.0", "TLS not available");
        }
        // RFC 3207 §4.2: anything pipelined after STARTTLS was sent in the
        // clear; it must not be taken as coming over TLS.
        self.input.clear();
        self.state = State::Waiting;
        Step::StartTls(Reply::new(220, "2.0.0", "Ready to start TLS"))
    }

    /// TLS is up: the session starts over, as RFC 3207 requires.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.input.clear();
        self.helo = None;
        self.esmtp = false;
        self.reset_transaction();
        self.state = State::Fresh;
    }

    fn auth(&mut self, mechanism: u64, initial: Cow<'_, str>) -> Step {
        if self.cfg.kind != ListenerKind::Submission {
            return self.error(503, "5.5.1", "AUTH is not offered here");
        }
        if matches!(self.state, State::Fresh) {
            return self.error(503, "5.5.1", "Say EHLO first");
        }
        if self.user.is_some() {
            return self.error(503, "5.5.1", "Already authenticated");
        }
        if matches!(self.state, State::Mail) {
            return self.error(503, "5.5.1", "AUTH is not allowed during a transaction");
        }
        if !self.tls && !self.cfg.auth_without_tls {
            return self.error(538, "5.7.11", "Encryption required: use STARTTLS first");
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN => {
                if initial.is_empty() {
                    self.state = State::AuthPlain;
                    Step::Reply(Reply::new(334, "", ""))
                } else {
                    self.auth_plain_response(format!("{initial}\r\n").as_bytes())
                }
            }
            smtp_proto::AUTH_LOGIN => {
                if initial.is_empty() {
                    self.state = State::AuthLoginUser;
                    Step::Reply(Reply::new(334, "", "VXNlcm5hbWU6"))
                } else {
                    self.auth_login_user(format!("{initial}\r\n").as_bytes())
                }
            }
            _ => self.error(504, "5.5.4", "Unrecognized authentication mechanism (use PLAIN or LOGIN)"),
        }
    }

    fn decode(line: &[u8]) -> Result<Vec<u8>, Reply> {
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if text == b"*" {
            return Err(Reply::new(501, "5.0.0", "Authentication cancelled"));
        }
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| Reply::new(501, "5.5.2", "Cannot decode the authentication response"))
    }

    fn auth_plain_response(&mut self, line: &[u8]) -> Step {
        self.state = State::Ready;
        let raw = match Self::decode(line) {
            Ok(r) => r,
            Err(reply) => return Step::Reply(reply),
        };
        let mut parts = raw.split(|&b| b == 0);
        let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
        match (user, pass, parts.next()) {
            (Some(u), Some(p), None) => {
                self.ask_auth(String::from_utf8_lossy(u).into(), String::from_utf8_lossy(p).into())
            }
            _ => self.error(501, "5.5.2", "Malformed PLAIN response"),
        }
    }

    fn auth_login_user(&mut self, line: &[u8]) -> Step {
        self.state = State::Ready;
        match Self::decode(line) {
            Ok(user) => {
                self.state = State::AuthLoginPassword(String::from_utf8_lossy(&user).into());
                Step::Reply(Reply::new(334, "", "UGFzc3dvcmQ6"))
            }
            Err(reply) => Step::Reply(reply),
        }
    }

    fn auth_login_password(&mut self, user: String, line: &[u8]) -> Step {
        self.state = State::Ready;
        match Self::decode(line) {
            Ok(pass) => self.ask_auth(user, String::from_utf8_lossy(&pass).into()),
            Err(reply) => Step::Reply(reply),
        }
    }

    fn ask_auth(&mut self, user: String, password: String) -> Step {
        self.state = State::Waiting;
        self.resume = Some(Box::new(State::Ready));
        Step::Authenticate { user, password }
    }

    /// The caller could not check the credentials now (not a failure).
    pub fn authentication_unavailable(&mut self) -> Step {
        self.state = self.resume.take().map_or(State::Ready, |b| *b);
        r(454, "4.7.0", "Temporary authentication failure; try again")
    }

    /// The caller's verdict on a [`Step::Authenticate`]: the user's address
    /// when the credentials are right.
    pub fn authenticated(&mut self, user: Option<Address>) -> Step {
        self.state = self.resume.take().map_or(State::Ready, |b| *b);
        match user {
            Some(u) => {
                self.user = Some(u);
                r(235, "2.7.0", "Authentication successful")
            }
            None => {
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.state = State::Closed;
                    return Step::Close(Reply::new(421, "4.7.0", "Too many failed authentications"));
                }
                r(535, "5.7.8", "Authentication credentials invalid")
            }
        }
    }
}

#[cfg(test)]
mod tests;
