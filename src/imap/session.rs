//! One IMAP session's commands: the states of RFC 9051 §3 (not
//! authenticated, authenticated, selected, logout) and what each command
//! does to the user's mailbox. Commands arrive parsed (imap-codec, through
//! imap-next's server flow in [`super::connection`]); answers leave as
//! typed responses. Mailbox work in the private `selected` module.

mod selected;

use std::net::SocketAddr;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Atom, IString, Tag, Text, Vec1};
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::{Flag, FlagNameAttribute};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Capability, Code, CodeOther, Data, Response, Status};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use crate::context::Shared;
use crate::im2000::auth::{AuthOutcome, authenticate};
use crate::proto::Address;
use crate::store::folders::{FolderError, FolderInfo, is_inbox};
use selected::Selected;

/// What the connection does after a command's answers are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Answered OK to STARTTLS: the TLS handshake comes next.
    StartTls,
    /// LOGOUT (or a fatal condition): close after the answers.
    Close,
}

/// Answers to one command, in order, and what comes next.
pub struct Answer {
    pub responses: Vec<Response<'static>>,
    pub flow: Flow,
}

impl Answer {
    fn new() -> Answer {
        Answer { responses: Vec::new(), flow: Flow::Continue }
    }

    pub fn data(&mut self, d: Data<'static>) {
        self.responses.push(Response::Data(d));
    }

    pub fn status(&mut self, s: Status<'static>) {
        self.responses.push(Response::Status(s));
    }
}

/// The folder hierarchy delimiter.
pub const DELIMITER: char = '/';

pub struct Session {
    pub(super) s: Shared,
    pub(super) cache: std::sync::Arc<super::cache::Shared>,
    peer: SocketAddr,
    tls: bool,
    tls_available: bool,
    user: Option<Address>,
    pub(super) selected: Option<Selected>,
}

/// A response code that imap-types has no variant for (RFC 5530).
pub fn code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

/// Text for a status line: CR, LF and a leading `[` cannot be in it.
pub fn text(t: impl Into<String>) -> Text<'static> {
    let mut t: String = t.into().replace(['\r', '\n'], " ");
    if t.starts_with('[') {
        t.insert(0, ' ');
    }
    if t.trim().is_empty() {
        t = "done".into();
    }
    Text::try_from(t).unwrap_or_else(|_| Text::try_from("done").expect("plain text"))
}

pub fn ok(tag: &Tag<'static>, c: Option<Code<'static>>, t: impl Into<String>) -> Status<'static> {
    Status::ok(Some(tag.clone()), c, text(t)).expect("valid status")
}

pub fn no(tag: &Tag<'static>, c: Option<Code<'static>>, t: impl Into<String>) -> Status<'static> {
    Status::no(Some(tag.clone()), c, text(t)).expect("valid status")
}

pub fn bad(tag: Option<&Tag<'static>>, c: Option<Code<'static>>, t: impl Into<String>) -> Status<'static> {
    Status::bad(tag.cloned(), c, text(t)).expect("valid status")
}

/// A mailbox name as text (modified UTF-7 kept as the client sent it).
pub fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => crate::store::folders::INBOX.to_string(),
        Mailbox::Other(o) => String::from_utf8_lossy(o.as_ref()).to_string(),
    }
}

pub fn mailbox_of(name: &str) -> Mailbox<'static> {
    if is_inbox(name) {
        return Mailbox::Inbox;
    }
    Mailbox::try_from(name.to_string()).unwrap_or(Mailbox::Inbox)
}

fn atom(a: &'static str) -> Atom<'static> {
    Atom::try_from(a).expect("atom")
}

impl Session {
    pub fn new(
        s: Shared,
        cache: std::sync::Arc<super::cache::Shared>,
        peer: SocketAddr,
        tls: bool,
        tls_available: bool,
    ) -> Session {
        Session { s, cache, peer, tls, tls_available, user: None, selected: None }
    }

    pub fn tls_started(&mut self) {
        self.tls = true;
    }

    /// LOGIN and AUTHENTICATE are allowed on this connection now.
    pub fn may_authenticate(&self) -> bool {
        self.tls || self.s.config.imap.plaintext
    }

    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    pub fn user_key(&self) -> Option<String> {
        self.user.as_ref().map(|u| u.key())
    }

    pub fn capabilities(&self) -> Vec1<Capability<'static>> {
        let mut caps = vec![Capability::Imap4Rev1];
        if self.user.is_none() {
            if self.tls_available && !self.tls {
                caps.push(Capability::StartTls);
            }
            if self.may_authenticate() {
                caps.push(Capability::Auth(imap_codec::imap_types::auth::AuthMechanism::Plain));
                caps.push(Capability::SaslIr);
            } else {
                caps.push(Capability::LoginDisabled);
            }
        }
        caps.extend([
            Capability::LiteralPlus,
            Capability::Idle,
            Capability::UidPlus,
            Capability::Move,
            Capability::Enable,
            Capability::Unselect,
            Capability::Namespace,
            Capability::Id,
            Capability::from(atom("SPECIAL-USE")),
            Capability::from(atom("CHILDREN")),
            Capability::StatusSize,
            Capability::Within,
        ]);
        Vec1::try_from(caps).expect("not empty")
    }

    pub fn greeting_text(&self) -> String {
        format!("{} imgate IMAP ready", self.s.config.hostname)
    }

    /// Checks a user name and password for LOGIN and AUTHENTICATE PLAIN.
    pub async fn login(&mut self, tag: &Tag<'static>, user: &str, password: &str) -> Status<'static> {
        if !self.may_authenticate() {
            return no(tag, Some(code("PRIVACYREQUIRED")), "use STARTTLS (or port 993) before logging in");
        }
        if self.user.is_some() {
            return bad(Some(tag), None, "already authenticated");
        }
        match authenticate(&self.s, self.peer.ip(), user, password).await {
            AuthOutcome::Valid(address) => {
                tracing::info!(peer = %self.peer, user = %address, "IMAP login");
                self.s.metrics.inc("imgate_imap_logins_total", "outcome", "ok");
                self.user = Some(address);
                // The default folders exist from the first login on.
                if self.store(|st, user| st.mail_folders(&user)).await.is_err() {
                    self.user = None;
                    return no(tag, Some(code("UNAVAILABLE")), "the mailbox cannot be opened now");
                }
                ok(tag, Some(Code::Capability(self.capabilities())), "logged in")
            }
            AuthOutcome::Invalid => {
                self.s.metrics.inc("imgate_imap_logins_total", "outcome", "invalid");
                no(tag, Some(code("AUTHENTICATIONFAILED")), "user name or password is wrong")
            }
            AuthOutcome::Throttled => {
                no(tag, Some(code("LIMIT")), "too many failed logins from your address; try again later")
            }
            AuthOutcome::Busy => no(tag, Some(code("UNAVAILABLE")), "busy checking passwords; try again shortly"),
        }
    }

    /// One command (not AUTHENTICATE or IDLE, which the connection drives).
    pub async fn command(&mut self, cmd: Command<'static>) -> Answer {
        let mut a = Answer::new();
        let tag = cmd.tag.clone();
        let name = cmd.body.name();
        match cmd.body {
            CommandBody::Capability => {
                a.data(Data::Capability(self.capabilities()));
                a.status(ok(&tag, None, "CAPABILITY done"));
            }
            CommandBody::Noop | CommandBody::Check => {
                self.changes(&mut a).await;
                a.status(ok(&tag, None, format!("{name} done")));
            }
            CommandBody::Logout => {
                a.status(Status::bye(None, text("logging out")).expect("bye"));
                a.status(ok(&tag, None, "LOGOUT done"));
                a.flow = Flow::Close;
            }
            CommandBody::StartTLS => {
                if self.tls || !self.tls_available {
                    a.status(bad(Some(&tag), None, "TLS is not available here (or already on)"));
                } else {
                    a.status(ok(&tag, None, "begin TLS now"));
                    a.flow = Flow::StartTls;
                }
            }
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).to_string();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).to_string();
                let st = self.login(&tag, &user, &pass).await;
                a.status(st);
            }
            CommandBody::Enable { .. } if self.user.is_some() => {
                // Nothing we offer needs enabling yet (no UTF8=ACCEPT,
                // CONDSTORE, IMAP4rev2): the list of enabled ones is empty.
                a.data(Data::Enabled { capabilities: vec![] });
                a.status(ok(&tag, None, "ENABLE done"));
            }
            CommandBody::Id { .. } => {
                let params = vec![
                    (IString::try_from("name").expect("s"), nstr("imgate")),
                    (IString::try_from("version").expect("s"), nstr(env!("CARGO_PKG_VERSION"))),
                ];
                a.data(Data::Id { parameters: Some(params) });
                a.status(ok(&tag, None, "ID done"));
            }
            _ if self.user.is_none() => {
                a.status(bad(Some(&tag), None, format!("{name} needs LOGIN first")));
            }
            CommandBody::Namespace => {
                let personal = vec![Namespace {
                    prefix: IString::try_from("").expect("s"),
                    delimiter: Some(DELIMITER.try_into().expect("char")),
                    extensions: vec![],
                }];
                a.data(Data::Namespace { personal, other: vec![], shared: vec![] });
                a.status(ok(&tag, None, "NAMESPACE done"));
            }
            CommandBody::Select { mailbox, .. } => self.select(&mut a, &tag, &mailbox_name(&mailbox), false).await,
            CommandBody::Examine { mailbox, .. } => self.select(&mut a, &tag, &mailbox_name(&mailbox), true).await,
            CommandBody::Create { mailbox } => {
                let name = mailbox_name(&mailbox);
                let name = name.trim_end_matches(DELIMITER).to_string();
                let max = self.s.config.imap.max_folders;
                let r = self.store(move |st, user| st.mail_create(&user, &name, None, max)).await;
                self.folder_result(&mut a, &tag, "CREATE", r);
            }
            CommandBody::Delete { mailbox } => {
                let name = mailbox_name(&mailbox);
                if self.selected.as_ref().is_some_and(|s| s.name == name) {
                    self.selected = None;
                }
                let r = self.store(move |st, user| st.mail_delete(&user, &name)).await;
                self.folder_result(&mut a, &tag, "DELETE", r);
            }
            CommandBody::Rename { from, to } => {
                let (from, to) = (mailbox_name(&from), mailbox_name(&to));
                let r = self.store(move |st, user| st.mail_rename(&user, &from, &to)).await;
                self.folder_result(&mut a, &tag, "RENAME", r);
            }
            CommandBody::Subscribe { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self.store(move |st, user| st.mail_subscribe(&user, &name, true)).await;
                self.folder_result(&mut a, &tag, "SUBSCRIBE", r);
            }
            CommandBody::Unsubscribe { mailbox } => {
                let name = mailbox_name(&mailbox);
                let r = self.store(move |st, user| st.mail_subscribe(&user, &name, false)).await;
                self.folder_result(&mut a, &tag, "UNSUBSCRIBE", r);
            }
            CommandBody::List { reference, mailbox_wildcard } => {
                self.list(&mut a, &tag, &mailbox_name(&reference), &list_text(&mailbox_wildcard), false).await
            }
            CommandBody::Lsub { reference, mailbox_wildcard } => {
                self.list(&mut a, &tag, &mailbox_name(&reference), &list_text(&mailbox_wildcard), true).await
            }
            CommandBody::Status { mailbox, item_names } => {
                self.status(&mut a, &tag, &mailbox_name(&mailbox), &item_names).await
            }
            CommandBody::Append { mailbox, flags, date, message } => {
                self.append(&mut a, &tag, &mailbox_name(&mailbox), flags, date, message).await
            }
            _ if self.selected.is_none() => {
                a.status(bad(Some(&tag), None, format!("{name} needs a selected folder (SELECT first)")));
            }
            CommandBody::Close => {
                self.expunge(&mut a, None, true).await;
                self.selected = None;
                a.status(ok(&tag, None, "CLOSE done"));
            }
            CommandBody::Unselect => {
                self.selected = None;
                a.status(ok(&tag, None, "UNSELECT done"));
            }
            CommandBody::Expunge => {
                self.expunge(&mut a, None, false).await;
                a.status(ok(&tag, None, "EXPUNGE done"));
            }
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(&mut a, Some(&sequence_set), false).await;
                a.status(ok(&tag, None, "UID EXPUNGE done"));
            }
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid, .. } => {
                self.fetch(&mut a, &tag, &sequence_set, macro_or_item_names, uid).await
            }
            CommandBody::Store { sequence_set, kind, response, flags, uid, .. } => {
                self.store_flags(&mut a, &tag, &sequence_set, kind, response, flags, uid).await
            }
            CommandBody::Search { criteria, uid, .. } => self.search(&mut a, &tag, criteria.as_ref(), uid).await,
            CommandBody::Copy { sequence_set, mailbox, uid } => {
                self.copy(&mut a, &tag, &sequence_set, &mailbox_name(&mailbox), uid, false).await
            }
            CommandBody::Move { sequence_set, mailbox, uid } => {
                self.copy(&mut a, &tag, &sequence_set, &mailbox_name(&mailbox), uid, true).await
            }
            _ => {
                a.status(bad(Some(&tag), None, format!("{name} is not supported")));
            }
        }
        a
    }

    /// Runs store work for the logged-in user off the async threads.
    pub(super) async fn store<T: Send + 'static>(
        &self,
        f: impl FnOnce(crate::store::Store, String) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, String> {
        let user = self.user_key().ok_or("not logged in")?;
        let st = self.s.store.clone();
        match tokio::task::spawn_blocking(move || f(st, user)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "IMAP store operation failed");
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn folder_result(
        &self,
        a: &mut Answer,
        tag: &Tag<'static>,
        what: &str,
        r: Result<Result<(), FolderError>, String>,
    ) {
        a.status(match r {
            Ok(Ok(())) => ok(tag, None, format!("{what} done")),
            Ok(Err(e)) => no(tag, Some(folder_code(&e)), e.to_string()),
            Err(_) => no(tag, Some(code("SERVERBUG")), "storage error; nothing was changed"),
        });
    }

    async fn select(&mut self, a: &mut Answer, tag: &Tag<'static>, name: &str, read_only: bool) {
        self.selected = None;
        let user = self.user_key().unwrap_or_default();
        // Watch first: a change made while the folder is read is reported.
        let watch = self.s.store.watch_mailbox(&user);
        let n = name.to_string();
        let info = match self.store(move |st, user| st.mail_folder(&user, &n)).await {
            Ok(Some(info)) => info,
            Ok(None) => {
                a.status(no(tag, Some(code("NONEXISTENT")), format!("no folder {name:?}")));
                return;
            }
            Err(_) => {
                a.status(no(tag, Some(code("UNAVAILABLE")), "the mailbox cannot be read now"));
                return;
            }
        };
        let Ok(entries) = self.folder_entries(&info.name).await else {
            a.status(no(tag, Some(code("UNAVAILABLE")), "the mailbox cannot be read now"));
            return;
        };
        let sel = Selected::new(info.name.clone(), read_only, (*entries).clone(), watch);
        sel.announce(a, &info);
        self.selected = Some(sel);
        let c = if read_only { Code::ReadOnly } else { Code::ReadWrite };
        a.status(ok(tag, Some(c), format!("{} selected", if read_only { "EXAMINE" } else { "SELECT" })));
    }

    /// A folder's entries: the copy sessions share if nothing changed
    /// since it was read, else read now (and shared).
    pub(super) async fn folder_entries(&self, name: &str) -> Result<super::cache::Entries, String> {
        let user = self.user_key().ok_or("not logged in")?;
        let generation = self.s.store.mailbox_generation(&user);
        if let Some(e) = self.cache.folder(&user, name, generation) {
            return Ok(e);
        }
        let n = name.to_string();
        let entries = self.store(move |st, user| super::content::entries(&st, &user, &n)).await?;
        let entries: super::cache::Entries =
            std::sync::Arc::new(entries.into_iter().map(|(u, r)| (u, std::sync::Arc::new(r))).collect());
        self.cache.keep_folder(&user, name, generation, &entries);
        Ok(entries)
    }

    async fn list(&mut self, a: &mut Answer, tag: &Tag<'static>, reference: &str, pattern: &str, lsub: bool) {
        if pattern.is_empty() {
            // RFC 9051 §6.3.9: the delimiter and root.
            let d = Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter: Some(DELIMITER.try_into().expect("char")),
                mailbox: Mailbox::try_from("").unwrap_or(Mailbox::Inbox),
            };
            a.data(d);
            a.status(ok(tag, None, "LIST done"));
            return;
        }
        let folders = match self.store(|st, user| st.mail_folders(&user)).await {
            Ok(f) => f,
            Err(_) => {
                a.status(no(tag, Some(code("UNAVAILABLE")), "the folder list cannot be read now"));
                return;
            }
        };
        let full = format!("{reference}{pattern}");
        for f in &folders {
            if (lsub && !f.subscribed) || !wildcard_match(&full, &f.name) {
                continue;
            }
            let children = folders
                .iter()
                .any(|c| c.name.len() > f.name.len() + 1 && c.name.starts_with(&format!("{}{DELIMITER}", f.name)));
            let mut items = vec![FlagNameAttribute::from(atom(if children { "HasChildren" } else { "HasNoChildren" }))];
            if let Some(special) = &f.special_use
                && let Ok(at) = Atom::try_from(special.trim_start_matches('\\').to_string())
            {
                items.push(FlagNameAttribute::from(at));
            }
            let delimiter = Some(DELIMITER.try_into().expect("char"));
            let mailbox = mailbox_of(&f.name);
            a.data(if lsub {
                Data::Lsub { items, delimiter, mailbox }
            } else {
                Data::List { items, delimiter, mailbox }
            });
        }
        a.status(ok(tag, None, if lsub { "LSUB done" } else { "LIST done" }));
    }

    async fn status(&mut self, a: &mut Answer, tag: &Tag<'static>, name: &str, items: &[StatusDataItemName]) {
        let n = name.to_string();
        let r = match self.store(move |st, user| st.mail_folder(&user, &n)).await {
            Ok(Some(info)) => match self.folder_entries(&info.name).await {
                Ok(entries) => Ok(Some((info, entries))),
                Err(e) => Err(e),
            },
            other => other.map(|_| None),
        };
        let (info, entries): (FolderInfo, _) = match r {
            Ok(Some(v)) => v,
            Ok(None) => {
                a.status(no(tag, Some(code("NONEXISTENT")), format!("no folder {name:?}")));
                return;
            }
            Err(_) => {
                a.status(no(tag, Some(code("UNAVAILABLE")), "the folder cannot be read now"));
                return;
            }
        };
        let flagged =
            |r: &crate::store::records::InboxRecord, flag: &str| r.flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
        let seen = |r: &crate::store::records::InboxRecord| flagged(r, "\\Seen");
        let deleted = |r: &crate::store::records::InboxRecord| flagged(r, "\\Deleted");
        let out: Vec<_> = items
            .iter()
            .map(|item| match item {
                StatusDataItemName::Messages => StatusDataItem::Messages(entries.len() as u32),
                StatusDataItemName::Recent => StatusDataItem::Recent(0),
                StatusDataItemName::UidNext => StatusDataItem::UidNext(nz(info.uidnext)),
                StatusDataItemName::UidValidity => StatusDataItem::UidValidity(nz(info.uidvalidity)),
                StatusDataItemName::Unseen => {
                    StatusDataItem::Unseen(entries.iter().filter(|(_, r)| !seen(r)).count() as u32)
                }
                StatusDataItemName::Deleted => {
                    StatusDataItem::Deleted(entries.iter().filter(|(_, r)| deleted(r)).count() as u32)
                }
                // RFC 8438: the octets of every message, as RFC822.SIZE gives them.
                StatusDataItemName::Size => {
                    StatusDataItem::Size(entries.iter().map(|(_, r)| r.notification.size).sum())
                }
                // RFC 9208: what an EXPUNGE would free.
                StatusDataItemName::DeletedStorage => StatusDataItem::DeletedStorage(
                    entries.iter().filter(|(_, r)| deleted(r)).map(|(_, r)| r.notification.size).sum(),
                ),
            })
            .collect();
        a.data(Data::Status { mailbox: mailbox_of(&info.name), items: out.into() });
        a.status(ok(tag, None, "STATUS done"));
    }
}

pub fn nz(v: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN)
}

fn nstr(s: &str) -> imap_codec::imap_types::core::NString<'static> {
    imap_codec::imap_types::core::NString::try_from(s.to_string()).unwrap_or_default()
}

pub fn folder_code(e: &FolderError) -> Code<'static> {
    match e {
        FolderError::NoSuch => code("NONEXISTENT"),
        FolderError::Exists => code("ALREADYEXISTS"),
        FolderError::Inbox => code("CANNOT"),
        FolderError::NotEmpty => code("INUSE"),
        FolderError::TooMany(_) => code("LIMIT"),
        FolderError::Full => code("LIMIT"),
    }
}

fn list_text(l: &ListMailbox<'_>) -> String {
    match l {
        ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).to_string(),
        ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).to_string(),
    }
}

/// LIST wildcards (RFC 9051 §6.3.9): `*` matches anything, `%` anything
/// but the delimiter. INBOX matches case-insensitively.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('%', rest)) => {
                (0..=n.len()).take_while(|i| *i == 0 || n[i - 1] != DELIMITER).any(|i| go(rest, &n[i..]))
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let (p, n) = if is_inbox(name) {
        (pattern.to_ascii_uppercase(), name.to_ascii_uppercase())
    } else {
        (pattern.to_string(), name.to_string())
    };
    go(&p.chars().collect::<Vec<_>>(), &n.chars().collect::<Vec<_>>())
}

/// A flag as stored: its IMAP text.
pub fn flag_text(f: &Flag<'_>) -> String {
    f.to_string()
}

/// A stored flag back as a typed one.
pub fn flag_of(s: &str) -> Option<Flag<'static>> {
    match s.strip_prefix('\\') {
        Some(system) => Atom::try_from(system.to_string()).ok().map(Flag::system),
        None => Atom::try_from(s.to_string()).ok().map(Flag::Keyword),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_wildcards() {
        let cases = [
            ("*", "INBOX", true),
            ("*", "Work/2026", true),
            ("%", "Work/2026", false),
            ("%", "Work", true),
            ("Work/%", "Work/2026", true),
            ("Work/%", "Work/2026/Dec", false),
            ("Work/*", "Work/2026/Dec", true),
            ("inbox", "INBOX", true),
            ("sent", "Sent", false),
            ("S*", "Sent", true),
            ("", "Sent", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "{p:?} against {n:?}");
        }
    }

    #[test]
    fn flags_round_trip_through_their_text() {
        for f in ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "Work"] {
            assert_eq!(flag_text(&flag_of(f).unwrap()), f);
        }
        assert!(flag_of("bad flag").is_none());
    }

    #[test]
    fn status_text_never_starts_a_response_code() {
        assert_eq!(text("[ALERT] x").to_string(), " [ALERT] x");
        assert_eq!(text("a\r\nb").to_string(), "a  b");
    }
}
