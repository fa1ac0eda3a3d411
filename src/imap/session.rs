//! One IMAP session's commands: the states of RFC 9051 §3 (not
//! authenticated, authenticated, selected, logout) and what each command
//! does to the user's mailbox. Commands arrive parsed (imap-codec, through
//! imap-next's server flow in [`super::connection`]); answers leave as
//! typed responses. Mailbox work in the private `selected` module.

mod selected;

use std::net::SocketAddr;

use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Atom, IString, Tag, Text, Vec1};
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::{Flag, FlagNameAttribute};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{Capability, Code, CodeOther, Data, Response, Status};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::extended::{Extras, ListOptions, SearchReturn};
use crate::context::Shared;
use crate::im2000::auth::{AuthOutcome, authenticate};
use crate::proto::Address;
use crate::store::folders::{FolderError, FolderInfo, is_inbox};
use selected::Selected;

/// What the connection does after a command's answers are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    #[default]
    Continue,
    /// Answered OK to STARTTLS: the TLS handshake comes next.
    StartTls,
    /// LOGOUT (or a fatal condition): close after the answers.
    Close,
}

/// One response: typed, or a line imap-types cannot encode (ESEARCH,
/// LIST with CHILDINFO), CRLF included.
pub enum Reply {
    Typed(Response<'static>),
    Raw(Vec<u8>),
}

/// Answers to one command, in order, and what comes next.
#[derive(Default)]
pub struct Answer {
    pub replies: Vec<Reply>,
    pub flow: Flow,
}

impl Answer {
    pub fn data(&mut self, d: Data<'static>) {
        self.replies.push(Reply::Typed(Response::Data(d)));
    }

    pub fn status(&mut self, s: Status<'static>) {
        self.replies.push(Reply::Typed(Response::Status(s)));
    }

    pub fn raw(&mut self, line: Vec<u8>) {
        self.replies.push(Reply::Raw(line));
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
    /// The client sent `ENABLE IMAP4rev2`: answers follow RFC 9051 where
    /// it differs from RFC 3501 (ESEARCH for SEARCH, no RECENT).
    rev2: bool,
}

/// A response code that imap-types has no variant for (RFC 5530).
pub fn code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

/// Text for a status line: CR, LF, other controls and a leading `[`
/// cannot be in it, nor (before UTF8=ACCEPT) anything but ASCII.
pub fn text(t: impl Into<String>) -> Text<'static> {
    let shown = |c: char| match c {
        _ if c.is_ascii_graphic() => c,
        ' ' | '\r' | '\n' | '\t' => ' ',
        _ => '?',
    };
    let mut t: String = t.into().chars().map(shown).collect();
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

/// A folder name as the node keeps it: modified UTF-7, as IMAP4rev1
/// clients send it; a UTF-8 name (IMAP4rev2) is converted to it.
pub fn stored_name(raw: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw);
    if name.is_ascii() { name.into_owned() } else { super::utf7::encode(&name) }
}

pub fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => crate::store::folders::INBOX.to_string(),
        Mailbox::Other(o) => stored_name(o.as_ref()),
    }
}

/// A kept folder name as a client sees it: in UTF-8 for a session that
/// enabled IMAP4rev2 (`utf8`), else as kept.
pub fn mailbox_of(name: &str, utf8: bool) -> Mailbox<'static> {
    if is_inbox(name) {
        return Mailbox::Inbox;
    }
    let shown = match utf8 {
        true => super::utf7::decode(name).unwrap_or_else(|| name.to_string()),
        false => name.to_string(),
    };
    if !shown.is_ascii() {
        // A UTF-8 quoted string (RFC 9755), not a literal.
        use imap_codec::imap_types::{core::AString, extensions::utf8::QuotedUtf8, mailbox::MailboxOther};
        if let Ok(q) = QuotedUtf8::try_from(shown.clone())
            && let Ok(other) = MailboxOther::try_from(AString::String(IString::QuotedUtf8(q)))
        {
            return Mailbox::Other(other);
        }
    }
    Mailbox::try_from(shown).unwrap_or(Mailbox::Inbox)
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
        Session { s, cache, peer, tls, tls_available, user: None, selected: None, rev2: false }
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
        let mut caps = vec![Capability::Imap4Rev1, Capability::from(atom("IMAP4rev2"))];
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
            Capability::Binary,
            Capability::ListExtended,
            Capability::from(atom("LIST-STATUS")),
            Capability::from(atom("ESEARCH")),
            Capability::from(atom("SEARCHRES")),
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

    /// One command (not AUTHENTICATE or IDLE, which the connection drives),
    /// with what [`super::extended::Rewriter`] took out of it, if anything.
    pub async fn command(&mut self, cmd: Command<'static>, extras: Option<Result<Extras, String>>) -> Answer {
        let mut a = Answer::default();
        let tag = cmd.tag.clone();
        let name = cmd.body.name();
        let extras = match extras {
            Some(Err(why)) => {
                a.status(bad(Some(&tag), None, why));
                return a;
            }
            Some(Ok(x)) => x,
            None => Extras::default(),
        };
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
            CommandBody::Enable { capabilities } if self.user.is_some() => {
                // Only IMAP4rev2 changes anything here (no UTF8=ACCEPT or
                // CONDSTORE); other names are ignored, as RFC 5161 says.
                let rev2 = capabilities.as_ref().iter().any(|c| c.to_string().eq_ignore_ascii_case("IMAP4rev2"));
                let mut enabled = vec![];
                if rev2 && !self.rev2 {
                    self.rev2 = true;
                    enabled.push(CapabilityEnable::try_from("IMAP4rev2").expect("atom"));
                }
                a.data(Data::Enabled { capabilities: enabled });
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
            CommandBody::List { reference, mailbox_wildcard } => match extras.list {
                Some(options) => self.list_extended(&mut a, &tag, &mailbox_name(&reference), options).await,
                None => self.list(&mut a, &tag, &mailbox_name(&reference), &list_text(&mailbox_wildcard), false).await,
            },
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
            CommandBody::Search { criteria, uid, .. } => {
                let ret = extras.search.or(self.rev2.then_some(SearchReturn::ALL));
                let criteria: Vec<_> = match extras.dollar {
                    true => criteria.as_ref().iter().map(|k| self.sel().with_saved(k)).collect(),
                    false => criteria.into_inner(),
                };
                self.search(&mut a, &tag, &criteria, uid, ret).await
            }
            // `$` (RFC 5182): the saved result, as UIDs; empty, nothing to do.
            CommandBody::ExpungeUid { .. }
            | CommandBody::Fetch { .. }
            | CommandBody::Store { .. }
            | CommandBody::Copy { .. }
            | CommandBody::Move { .. }
                if extras.dollar && self.sel().saved_set().is_none() =>
            {
                a.status(ok(&tag, None, format!("{name} done (the saved search result is empty)")));
            }
            CommandBody::ExpungeUid { sequence_set } => {
                let set = self.dollar(extras.dollar, sequence_set, true).0;
                self.expunge(&mut a, Some(&set), false).await;
                a.status(ok(&tag, None, "UID EXPUNGE done"));
            }
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid, .. } => {
                let (set, uid) = self.dollar(extras.dollar, sequence_set, uid);
                self.fetch(&mut a, &tag, &set, macro_or_item_names, uid).await
            }
            CommandBody::Store { sequence_set, kind, response, flags, uid, .. } => {
                let (set, uid) = self.dollar(extras.dollar, sequence_set, uid);
                self.store_flags(&mut a, &tag, &set, kind, response, flags, uid).await
            }
            CommandBody::Copy { sequence_set, mailbox, uid } => {
                let (set, uid) = self.dollar(extras.dollar, sequence_set, uid);
                self.copy(&mut a, &tag, &set, &mailbox_name(&mailbox), uid, false).await
            }
            CommandBody::Move { sequence_set, mailbox, uid } => {
                let (set, uid) = self.dollar(extras.dollar, sequence_set, uid);
                self.copy(&mut a, &tag, &set, &mailbox_name(&mailbox), uid, true).await
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
        if self.selected.take().is_some() {
            // RFC 9051 §6.3.1: what follows is about the new folder.
            a.status(Status::ok(None, Some(code("CLOSED")), text("previous folder closed")).expect("status"));
        }
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
        sel.announce(a, &info, self.rev2);
        if self.rev2 {
            // RFC 9051 §6.3.2: the folder's name and attributes.
            let folders = self.store(|st, user| st.mail_folders(&user)).await.unwrap_or_default();
            a.data(list_data(&info, &folders, false, self.rev2));
        }
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
            a.data(match list_data(f, &folders, false, self.rev2) {
                Data::List { items, delimiter, mailbox } if lsub => Data::Lsub { items, delimiter, mailbox },
                d => d,
            });
        }
        if !lsub {
            for name in missing_parents(&folders).iter().filter(|n| wildcard_match(&full, n)) {
                a.data(parent_data(name, FlagNameAttribute::Noselect, self.rev2));
            }
        }
        a.status(ok(tag, None, if lsub { "LSUB done" } else { "LIST done" }));
    }

    /// LIST with selection and return options (RFC 5258, 5819, 6154):
    /// every pattern, SUBSCRIBED and SPECIAL-USE selections,
    /// RECURSIVEMATCH's parents with CHILDINFO, `\Subscribed`, STATUS.
    async fn list_extended(&mut self, a: &mut Answer, tag: &Tag<'static>, reference: &str, o: ListOptions) {
        let folders = match self.store(|st, user| st.mail_folders(&user)).await {
            Ok(f) => f,
            Err(_) => {
                a.status(no(tag, Some(code("UNAVAILABLE")), "the folder list cannot be read now"));
                return;
            }
        };
        let selected = |f: &FolderInfo| (!o.subscribed || f.subscribed) && (!o.special_use || f.special_use.is_some());
        let patterns: Vec<String> = o.patterns.iter().map(|p| stored_name(p.as_bytes())).collect();
        let matched = |name: &str| patterns.iter().any(|p| wildcard_match(&format!("{reference}{p}"), name));
        let child_selected =
            |name: &str| folders.iter().any(|c| c.name.starts_with(&format!("{name}{DELIMITER}")) && selected(c));
        // RFC 5258 §3.5: a folder not selected itself is listed, with
        // CHILDINFO, for a descendant that is.
        let with_childinfo = |d: Data<'static>| {
            let line = encode_line(&Response::Data(d));
            let mut line = line.strip_suffix(b"\r\n").unwrap_or(&line).to_vec();
            line.extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
            line
        };
        // Parents that are not folders, for what lies below them: listed
        // when nothing is selected, or for CHILDINFO.
        for name in missing_parents(&folders).iter().filter(|n| matched(n)) {
            let d = parent_data(name, FlagNameAttribute::from(atom("NonExistent")), self.rev2);
            if !o.subscribed && !o.special_use {
                a.data(d);
            } else if o.recursive && child_selected(name) {
                a.raw(with_childinfo(d));
            }
        }
        for f in folders.iter().filter(|f| matched(&f.name)) {
            if !selected(f) {
                if o.recursive && child_selected(&f.name) {
                    a.raw(with_childinfo(list_data(f, &folders, o.return_subscribed, self.rev2)));
                }
                continue;
            }
            a.data(list_data(f, &folders, o.return_subscribed, self.rev2));
            if !o.status.is_empty() {
                match self.status_data(&f.name, &o.status).await {
                    Ok(d) => a.data(d),
                    // RFC 5819 §2: the LIST stands; the STATUS is left out.
                    Err(_) => tracing::warn!(folder = %f.name, "no STATUS for LIST-STATUS"),
                }
            }
        }
        a.status(ok(tag, None, "LIST done"));
    }

    async fn status(&mut self, a: &mut Answer, tag: &Tag<'static>, name: &str, items: &[StatusDataItemName]) {
        match self.status_data(name, items).await {
            Ok(d) => {
                a.data(d);
                a.status(ok(tag, None, "STATUS done"));
            }
            Err(StatusError::NoSuch) => a.status(no(tag, Some(code("NONEXISTENT")), format!("no folder {name:?}"))),
            Err(StatusError::Unavailable) => {
                a.status(no(tag, Some(code("UNAVAILABLE")), "the folder cannot be read now"))
            }
        }
    }

    /// The STATUS response for a folder.
    async fn status_data(&mut self, name: &str, items: &[StatusDataItemName]) -> Result<Data<'static>, StatusError> {
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
            Ok(None) => return Err(StatusError::NoSuch),
            Err(_) => return Err(StatusError::Unavailable),
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
        Ok(Data::Status { mailbox: mailbox_of(&info.name, self.rev2), items: out.into() })
    }
}

enum StatusError {
    NoSuch,
    Unavailable,
}

/// The LIST response for `f`: `\HasChildren` or `\HasNoChildren`, its
/// special use, and `\Subscribed` if asked (`subscribed`) and so; the
/// name in UTF-8 if `utf8`.
fn list_data(f: &FolderInfo, folders: &[FolderInfo], subscribed: bool, utf8: bool) -> Data<'static> {
    let prefix = format!("{}{DELIMITER}", f.name);
    let children = folders.iter().any(|c| c.name.len() > prefix.len() && c.name.starts_with(&prefix));
    let mut items = vec![FlagNameAttribute::from(atom(if children { "HasChildren" } else { "HasNoChildren" }))];
    if let Some(special) = &f.special_use
        && let Ok(at) = Atom::try_from(special.trim_start_matches('\\').to_string())
    {
        items.push(FlagNameAttribute::from(at));
    }
    if subscribed && f.subscribed {
        items.push(FlagNameAttribute::from(atom("Subscribed")));
    }
    Data::List { items, delimiter: Some(DELIMITER.try_into().expect("char")), mailbox: mailbox_of(&f.name, utf8) }
}

/// The names above folders that are not folders themselves (`Archive`
/// when only `Archive/2026` exists), sorted.
fn missing_parents(folders: &[FolderInfo]) -> Vec<String> {
    let names: std::collections::HashSet<&str> = folders.iter().map(|f| f.name.as_str()).collect();
    let mut out: Vec<String> = folders
        .iter()
        .flat_map(|f| f.name.match_indices(DELIMITER).map(|(i, _)| f.name[..i].to_string()))
        .filter(|p| !p.is_empty() && !names.contains(p.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The LIST response for a parent that is not a folder: `\Noselect`
/// (IMAP4rev1) or `\NonExistent` (extended LIST), with children.
fn parent_data(name: &str, kind: FlagNameAttribute<'static>, utf8: bool) -> Data<'static> {
    let items = vec![kind, FlagNameAttribute::from(atom("HasChildren"))];
    Data::List { items, delimiter: Some(DELIMITER.try_into().expect("char")), mailbox: mailbox_of(name, utf8) }
}

/// One response as the codec writes it, CRLF included.
fn encode_line(r: &Response<'_>) -> Vec<u8> {
    use imap_codec::encode::Encoder;
    imap_codec::ResponseCodec::default().encode(r).dump()
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
        ListMailbox::Token(t) => stored_name(t.as_ref()),
        ListMailbox::String(s) => stored_name(s.as_ref()),
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
        let cases = [
            ("[ALERT] x", " [ALERT] x"),
            ("a\r\nb", "a  b"),
            ("RFC 5258 \u{a7}3.1", "RFC 5258 ?3.1"),
            ("no\0nul", "no?nul"),
            ("", "done"),
        ];
        for (given, shown) in cases {
            assert_eq!(text(given).to_string(), shown, "{given:?}");
        }
    }
}
