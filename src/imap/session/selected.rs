//! The selected folder: its entries as this session last reported them
//! (sequence numbers are positions in that list), and the commands that
//! work on them — FETCH, STORE, SEARCH, EXPUNGE, COPY, MOVE, APPEND — and
//! the changes other sessions and new mail make, reported at NOOP, IDLE
//! and after commands.

use std::sync::Arc;

use imap_codec::imap_types::core::{LiteralMode, NString, NString8, Tag, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::{Literal8, LiteralOrLiteral8};
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section};
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagPerm, StoreResponse, StoreType};
use imap_codec::imap_types::response::{Code, Data};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use tokio::sync::watch;

use super::{Answer, Session, bad, code, flag_of, flag_text, no, nz, ok};
use crate::imap::content::{Unreachable, content, release};
use crate::imap::extended::{SAVED, SearchReturn, compact, esearch};
use crate::imap::message::{Parsed, partial};
use crate::imap::search::{View, matches, needs_content};
use crate::imap::sequence::{bounds, in_set};
use crate::store::folders::{FolderError, FolderInfo};
use crate::store::records::InboxRecord;

pub struct Selected {
    pub name: String,
    pub read_only: bool,
    /// Shared, not copied, by each FETCH that reads them.
    entries: Vec<(u32, Arc<InboxRecord>)>,
    watch: watch::Receiver<u64>,
    /// The last message read, kept for the next FETCH of its other parts.
    last: Option<(u32, Arc<Vec<u8>>)>,
    /// The UIDs `SEARCH RETURN (SAVE)` kept, which `$` names (RFC 5182);
    /// reset with the selection.
    saved: Vec<u32>,
}

/// Octets of message data one FETCH answers with at most (the answer is
/// built whole before it is sent); past it the client is told to ask for
/// fewer messages at once.
pub const MAX_ANSWER: usize = 64 << 20;

const SYSTEM_FLAGS: [Flag<'static>; 5] = [Flag::Answered, Flag::Flagged, Flag::Deleted, Flag::Seen, Flag::Draft];

fn has(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let elements: Vec<UidElement> = uids.iter().map(|u| UidElement::Single(nz(*u))).collect();
    Vec1::try_from(elements).ok().map(UidSet)
}

fn fetch_flags(flags: &[String]) -> Vec<FlagFetch<'static>> {
    flags.iter().filter_map(|f| flag_of(f)).map(FlagFetch::Flag).collect()
}

fn nstring_bytes(data: &[u8]) -> NString<'static> {
    let clean: Vec<u8> = data.iter().map(|b| if *b == 0 { b' ' } else { *b }).collect();
    NString::try_from(clean).unwrap_or_default()
}

/// Decoded octets for BINARY: a literal8 (`~{n}`) only when they hold NUL.
fn nstring8(data: &[u8]) -> NString8<'static> {
    match data.contains(&0) {
        true => NString8::Literal8(Literal8 { data: data.to_vec().into(), mode: LiteralMode::Sync }),
        false => NString8::NString(NString::try_from(data.to_vec()).unwrap_or_default()),
    }
}

fn internal_date(at: crate::clock::Millis) -> DateTime {
    let utc = chrono::DateTime::from_timestamp_millis(at as i64).unwrap_or_default();
    DateTime::try_from(utc.fixed_offset()).unwrap_or_else(|_| {
        DateTime::try_from(chrono::DateTime::from_timestamp(0, 0).unwrap_or_default().fixed_offset())
            .expect("1970 is a valid IMAP date")
    })
}

impl Selected {
    pub fn new(
        name: String,
        read_only: bool,
        entries: Vec<(u32, Arc<InboxRecord>)>,
        watch: watch::Receiver<u64>,
    ) -> Selected {
        Selected { name, read_only, entries, watch, last: None, saved: Vec::new() }
    }

    /// The untagged answers of SELECT (RFC 9051 §6.3.2).
    /// In IMAP4rev2 (`rev2`) without RECENT and the first-unseen code
    /// (RFC 9051 §6.3.2; the caller adds the LIST response).
    pub fn announce(&self, a: &mut Answer, info: &FolderInfo, rev2: bool) {
        a.data(Data::Flags(SYSTEM_FLAGS.to_vec()));
        let mut perm: Vec<FlagPerm<'static>> = SYSTEM_FLAGS.iter().cloned().map(FlagPerm::Flag).collect();
        perm.push(FlagPerm::Asterisk);
        let untagged_ok = |c: Code<'static>, t: &str| {
            imap_codec::imap_types::response::Status::ok(None, Some(c), super::text(t)).expect("status")
        };
        if !self.read_only {
            a.status(untagged_ok(Code::PermanentFlags(perm), "flags are kept"));
        } else {
            a.status(untagged_ok(Code::PermanentFlags(vec![]), "read-only"));
        }
        a.data(Data::Exists(self.entries.len() as u32));
        if !rev2 {
            a.data(Data::Recent(0));
        }
        a.status(untagged_ok(Code::UidValidity(nz(info.uidvalidity)), "UIDs valid"));
        a.status(untagged_ok(Code::UidNext(nz(info.uidnext)), "predicted next UID"));
        if rev2 {
            return;
        }
        if let Some(i) = self.entries.iter().position(|(_, r)| !has(&r.flags, "\\Seen")) {
            a.status(untagged_ok(Code::Unseen(nz(i as u32 + 1)), "first unseen"));
        }
    }

    /// The saved result as a UID set, without messages expunged since;
    /// `None` when empty.
    pub fn saved_set(&self) -> Option<SequenceSet> {
        let live: Vec<u32> =
            self.saved.iter().copied().filter(|u| self.entries.binary_search_by_key(u, |(x, _)| *x).is_ok()).collect();
        SequenceSet::try_from(compact(&live)?.as_str()).ok()
    }

    /// `key` with each `$` (as the rewriter left it, [`SAVED`]) replaced
    /// by the saved UIDs, or by a key nothing matches when none are saved.
    pub fn with_saved(&self, key: &SearchKey<'static>) -> SearchKey<'static> {
        use SearchKey as K;
        let is_saved =
            |set: &SequenceSet| matches!(set.0.as_ref(), [Sequence::Single(SeqOrUid::Value(n))] if n.get() == SAVED);
        match key {
            K::SequenceSet(set) | K::Uid(set) if is_saved(set) => match self.saved_set() {
                Some(saved) => K::Uid(saved),
                None => K::Not(Box::new(K::All)),
            },
            K::And(keys) => K::And(
                Vec1::try_from(keys.as_ref().iter().map(|k| self.with_saved(k)).collect::<Vec<_>>()).expect("as many"),
            ),
            K::Not(k) => K::Not(Box::new(self.with_saved(k))),
            K::Or(x, y) => K::Or(Box::new(self.with_saved(x)), Box::new(self.with_saved(y))),
            other => other.clone(),
        }
    }

    /// The wake-up for changes to this user's mailbox.
    pub fn watch(&mut self) -> &mut watch::Receiver<u64> {
        &mut self.watch
    }

    fn max_uid(&self) -> u32 {
        self.entries.last().map_or(0, |(u, _)| *u)
    }

    /// The entries a set names (positions, ascending, each once). A
    /// sequence number past the end is an error (`None`); a UID that does
    /// not exist is left out (RFC 9051 §6.4.9).
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Option<Vec<usize>> {
        let count = self.entries.len() as u32;
        let mut out = Vec::new();
        for s in set.0.as_ref() {
            if uid {
                let (lo, hi) = bounds(s, self.max_uid());
                let start = self.entries.partition_point(|(u, _)| *u < lo);
                let end = self.entries.partition_point(|(u, _)| *u <= hi);
                out.extend(start..end);
            } else {
                let (lo, hi) = bounds(s, count);
                if lo == 0 || hi > count {
                    return None;
                }
                out.extend((lo - 1) as usize..hi as usize);
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

impl Session {
    pub(super) fn sel(&self) -> &Selected {
        self.selected.as_ref().expect("a folder is selected")
    }

    fn sel_mut(&mut self) -> &mut Selected {
        self.selected.as_mut().expect("a folder is selected")
    }

    /// The set a command names: the saved result (as UIDs) if it said `$`
    /// (the caller has answered an empty one already).
    pub(super) fn dollar(&self, dollar: bool, set: SequenceSet, uid: bool) -> (SequenceSet, bool) {
        match (dollar, self.sel().saved_set()) {
            (true, Some(saved)) => (saved, true),
            _ => (set, uid),
        }
    }

    /// Reports what changed in the selected folder since this session last
    /// looked: EXPUNGE for entries gone, EXISTS for new ones, FETCH FLAGS for
    /// flags another session changed.
    pub async fn changes(&mut self, a: &mut Answer) {
        let Some(sel) = &mut self.selected else { return };
        sel.watch.mark_unchanged();
        let name = sel.name.clone();
        let Ok(now) = self.folder_entries(&name).await else { return };
        let sel = self.sel_mut();
        let new: std::collections::HashMap<u32, &InboxRecord> = now.iter().map(|(u, r)| (*u, &**r)).collect();
        for i in (0..sel.entries.len()).rev() {
            if !new.contains_key(&sel.entries[i].0) {
                a.data(Data::Expunge(nz(i as u32 + 1)));
            }
        }
        let old: std::collections::HashMap<u32, &InboxRecord> = sel.entries.iter().map(|(u, r)| (*u, &**r)).collect();
        let mut flag_changes = Vec::new();
        let mut kept = 0u32;
        for (uid, r) in now.iter() {
            if let Some(o) = old.get(uid) {
                kept += 1;
                if o.flags != r.flags {
                    flag_changes.push((kept, *uid, r.flags.clone()));
                }
            }
        }
        if now.len() != kept as usize || now.len() != sel.entries.len() {
            a.data(Data::Exists(now.len() as u32));
        }
        for (seq, uid, flags) in flag_changes {
            let items = vec![MessageDataItem::Uid(nz(uid)), MessageDataItem::Flags(fetch_flags(&flags))];
            a.data(Data::Fetch { seq: nz(seq), items: Vec1::try_from(items).expect("not empty") });
        }
        sel.entries = (*now).clone();
    }

    /// The octets of an entry, the session's last one if it is that.
    async fn entry_content(&mut self, uid: u32, r: &InboxRecord) -> Result<Arc<Vec<u8>>, Unreachable> {
        if let Some((u, c)) = &self.sel().last
            && *u == uid
        {
            return Ok(c.clone());
        }
        let c = Arc::new(content(&self.s, r).await?);
        self.sel_mut().last = Some((uid, c.clone()));
        Ok(c)
    }

    pub(super) async fn fetch(
        &mut self,
        a: &mut Answer,
        tag: &Tag<'static>,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'static>,
        uid_cmd: bool,
    ) {
        let items: Vec<MessageDataItemName<'static>> = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                use imap_codec::imap_types::ToStatic;
                m.expand().into_iter().map(|i| i.to_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        let Some(indices) = self.sel().resolve(set, uid_cmd) else {
            a.status(bad(Some(tag), None, "no message has that sequence number"));
            return;
        };
        use MessageDataItemName as N;
        let wants_content = items.iter().any(|i| {
            matches!(
                i,
                N::Envelope
                    | N::BodyStructure
                    | N::Body
                    | N::BodyExt { .. }
                    | N::Rfc822
                    | N::Rfc822Header
                    | N::Rfc822Text
                    | N::Binary { .. }
                    | N::BinarySize { .. }
            )
        });
        // What only the header section answers needs only it parsed.
        let header_only = items.iter().all(|i| match i {
            N::Uid | N::Flags | N::InternalDate | N::Rfc822Size | N::Envelope | N::Rfc822Header => true,
            N::BodyExt { section, .. } => matches!(
                section,
                Some(Section::Header(None) | Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _))
            ),
            _ => false,
        });
        let sets_seen = !self.sel().read_only
            && items.iter().any(|i| {
                matches!(i, N::BodyExt { peek: false, .. } | N::Binary { peek: false, .. } | N::Rfc822 | N::Rfc822Text)
            });
        // Parts whose transfer encoding BINARY cannot undo (RFC 3516).
        let mut undecodable = 0;
        let mut seen_now: Vec<(u32, Vec<String>)> = Vec::new();
        let mut failures: Vec<(u32, Unreachable)> = Vec::new();
        // One command's answer is held whole before it is sent: bounded.
        let mut held = 0usize;
        let mut cut_short = false;
        // A listing (ENVELOPE with what the node keeps) reads envelopes
        // parsed before, when it can.
        let listing = items.iter().any(|i| matches!(i, N::Envelope))
            && items.iter().all(|i| matches!(i, N::Uid | N::Flags | N::InternalDate | N::Rfc822Size | N::Envelope));
        for idx in indices {
            if held > MAX_ANSWER {
                cut_short = true;
                break;
            }
            let (uid, record) = self.sel().entries[idx].clone();
            let known = if listing { self.cache.envelope(&record.notification.digest) } else { None };
            let content = if wants_content && known.is_none() {
                match self.entry_content(uid, &record).await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        failures.push((uid, e));
                        continue;
                    }
                }
            } else {
                None
            };
            held += content.as_ref().map_or(64, |c| c.len() + 512);
            let parsed = content.as_ref().map(|c| if header_only { Parsed::header_only(c) } else { Parsed::new(c) });
            let mut flags = record.flags.clone();
            let mut flags_changed = false;
            if sets_seen && !has(&flags, "\\Seen") {
                flags.push("\\Seen".into());
                seen_now.push((uid, flags.clone()));
                flags_changed = true;
            }
            let mut out = Vec::new();
            if uid_cmd && !items.iter().any(|i| matches!(i, N::Uid)) {
                out.push(MessageDataItem::Uid(nz(uid)));
            }
            for item in &items {
                let p = parsed.as_ref();
                out.push(match item {
                    N::Uid => MessageDataItem::Uid(nz(uid)),
                    N::Flags => MessageDataItem::Flags(fetch_flags(&flags)),
                    N::InternalDate => MessageDataItem::InternalDate(internal_date(record.received_at)),
                    N::Rfc822Size => MessageDataItem::Rfc822Size(
                        content.as_ref().map_or(record.notification.size, |c| c.len() as u64) as u32,
                    ),
                    N::Envelope => MessageDataItem::Envelope(match &known {
                        Some(e) => e.clone(),
                        None => {
                            let e = p.expect("loaded").envelope();
                            let c = content.as_deref().expect("loaded");
                            if listing && crate::proto::digest::sha256_field(c) == record.notification.digest {
                                self.cache.keep_envelope(&record.notification.digest, &e);
                            }
                            e
                        }
                    }),
                    N::BodyStructure => MessageDataItem::BodyStructure(p.expect("loaded").body_structure(true)),
                    N::Body => MessageDataItem::Body(p.expect("loaded").body_structure(false)),
                    N::BodyExt { section, partial: range, .. } => {
                        let data = p.expect("loaded").section(section.as_ref()).unwrap_or_default();
                        MessageDataItem::BodyExt {
                            section: section.clone(),
                            origin: range.map(|(start, _)| start),
                            data: nstring_bytes(&partial(&data, *range)),
                        }
                    }
                    // A partial BINARY gets the whole section: imap-types
                    // cannot label an answer with its `<origin>`, and the
                    // truncated octets would read as all of it.
                    N::Binary { section, .. } => {
                        let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                        let Ok(data) = p.expect("loaded").binary(&path) else {
                            undecodable += 1;
                            continue;
                        };
                        MessageDataItem::Binary { section: section.clone(), value: nstring8(&data) }
                    }
                    N::BinarySize { section } => {
                        let path: Vec<u32> = section.iter().map(|n| n.get()).collect();
                        let Ok(data) = p.expect("loaded").binary(&path) else {
                            undecodable += 1;
                            continue;
                        };
                        MessageDataItem::BinarySize { section: section.clone(), size: data.len() as u32 }
                    }
                    N::Rfc822 => MessageDataItem::Rfc822(nstring_bytes(content.as_deref().expect("loaded"))),
                    N::Rfc822Header => MessageDataItem::Rfc822Header(nstring_bytes(p.expect("loaded").header())),
                    N::Rfc822Text => {
                        let c = content.as_deref().expect("loaded");
                        MessageDataItem::Rfc822Text(nstring_bytes(&c[p.expect("loaded").header().len()..]))
                    }
                });
            }
            if flags_changed && !items.iter().any(|i| matches!(i, N::Flags)) {
                out.push(MessageDataItem::Flags(fetch_flags(&flags)));
            }
            if let Ok(items) = Vec1::try_from(out) {
                a.data(Data::Fetch { seq: nz(idx as u32 + 1), items });
            }
        }
        if !seen_now.is_empty() {
            self.set_flags(seen_now).await;
        }
        if cut_short {
            a.status(no(
                tag,
                Some(code("LIMIT")),
                format!("the answer reached {} MiB; fetch fewer messages at once", MAX_ANSWER >> 20),
            ));
            return;
        }
        match failures.first() {
            None if undecodable > 0 => a.status(no(
                tag,
                Some(code("UNKNOWN-CTE")),
                format!("{undecodable} part(s) have a transfer encoding BINARY cannot undo; fetch them with BODY[]"),
            )),
            None => a.status(ok(tag, None, "FETCH done")),
            Some((uid, e)) => a.status(no(
                tag,
                Some(code("UNAVAILABLE")),
                format!("{} message(s) could not be read now (UID {uid}: {e}); try again later", failures.len()),
            )),
        }
    }

    /// Writes new flag sets and updates this session's copy.
    async fn set_flags(&mut self, changes: Vec<(u32, Vec<String>)>) -> bool {
        let name = self.sel().name.clone();
        // The node's own keywords are not the user's to keep.
        let c: Vec<(u32, Vec<String>)> = changes
            .iter()
            .map(|(u, f)| (*u, f.iter().filter(|f| !crate::imap::content::is_tracking_keyword(f)).cloned().collect()))
            .collect();
        match self.store(move |st, user| st.mail_set_flags(&user, &name, &c)).await {
            Ok(_) => {
                let sel = self.sel_mut();
                for (uid, flags) in changes {
                    if let Ok(i) = sel.entries.binary_search_by_key(&uid, |(u, _)| *u) {
                        Arc::make_mut(&mut sel.entries[i].1).flags = flags;
                    }
                }
                sel.watch.mark_unchanged();
                true
            }
            Err(_) => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_flags(
        &mut self,
        a: &mut Answer,
        tag: &Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'static>>,
        uid_cmd: bool,
    ) {
        if self.sel().read_only {
            a.status(no(tag, Some(Code::ReadOnly), "the folder is read-only (EXAMINE)"));
            return;
        }
        let Some(indices) = self.sel().resolve(set, uid_cmd) else {
            a.status(bad(Some(tag), None, "no message has that sequence number"));
            return;
        };
        let given: Vec<String> = flags.iter().map(flag_text).collect();
        let mut changes = Vec::new();
        for idx in &indices {
            let (uid, r) = &self.sel().entries[*idx];
            let mut now: Vec<String> = match kind {
                StoreType::Replace => given.clone(),
                StoreType::Add => {
                    let mut f = r.flags.clone();
                    f.extend(given.iter().filter(|g| !has(&r.flags, g)).cloned());
                    f
                }
                StoreType::Remove => r.flags.iter().filter(|f| !has(&given, f)).cloned().collect(),
            };
            now.dedup_by(|x, y| x.eq_ignore_ascii_case(y));
            if now != r.flags {
                changes.push((*uid, now));
            }
        }
        if !changes.is_empty() && !self.set_flags(changes).await {
            a.status(no(tag, Some(code("SERVERBUG")), "storage error; flags unchanged"));
            return;
        }
        if response == StoreResponse::Answer {
            for idx in indices {
                let (uid, r) = &self.sel().entries[idx];
                let mut items = Vec::new();
                if uid_cmd {
                    items.push(MessageDataItem::Uid(nz(*uid)));
                }
                items.push(MessageDataItem::Flags(fetch_flags(&r.flags)));
                a.data(Data::Fetch { seq: nz(idx as u32 + 1), items: Vec1::try_from(items).expect("not empty") });
            }
        }
        a.status(ok(tag, None, "STORE done"));
    }

    pub(super) async fn search(
        &mut self,
        a: &mut Answer,
        tag: &Tag<'static>,
        criteria: &[SearchKey<'static>],
        uid: bool,
        ret: Option<SearchReturn>,
    ) {
        let key = match criteria {
            [one] => one.clone(),
            many => SearchKey::And(Vec1::try_from(many.to_vec()).expect("criteria are never empty")),
        };
        let load = needs_content(&key);
        let (count, max_uid) = (self.sel().entries.len() as u32, self.sel().max_uid());
        let now = self.s.clock.now();
        let mut hits = Vec::new();
        let mut unreadable = 0;
        for idx in 0..self.sel().entries.len() {
            let (u, r) = self.sel().entries[idx].clone();
            let content = if load {
                match self.entry_content(u, &r).await {
                    Ok(c) => Some(c),
                    Err(_) => {
                        unreadable += 1;
                        None
                    }
                }
            } else {
                None
            };
            let parsed = content.as_ref().map(|c| Parsed::new(c));
            let internal =
                chrono::DateTime::from_timestamp_millis(r.received_at as i64).unwrap_or_default().date_naive();
            let view = View {
                seq: idx as u32 + 1,
                count,
                uid: u,
                max_uid,
                flags: &r.flags,
                size: content.as_ref().map_or(r.notification.size, |c| c.len() as u64),
                internal,
                age: now.saturating_sub(r.received_at) / 1000,
                content: parsed.as_ref(),
            };
            if matches(&key, &view) {
                hits.push((u, idx as u32 + 1));
            }
        }
        let numbers: Vec<u32> = hits.iter().map(|(u, seq)| if uid { *u } else { *seq }).collect();
        match ret {
            Some(ret) => {
                if ret.save {
                    // RFC 5182 §2.1: a search that fails saves nothing.
                    let uids: Vec<u32> = hits.iter().map(|(u, _)| *u).collect();
                    self.sel_mut().saved = if unreadable > 0 { Vec::new() } else { ret.saved(&uids) };
                }
                if let Some(line) = esearch(tag.inner(), uid, &ret, &numbers) {
                    a.raw(line);
                }
            }
            None => a.data(Data::Search(numbers.into_iter().map(nz).collect())),
        }
        if unreadable > 0 {
            a.status(no(
                tag,
                Some(code("UNAVAILABLE")),
                format!("{unreadable} message(s) could not be read now and were not searched"),
            ));
        } else {
            a.status(ok(tag, None, "SEARCH done"));
        }
    }

    /// EXPUNGE, UID EXPUNGE and CLOSE: entries flagged `\Deleted` go; the
    /// sender's store is told (silence, un-pin) of each the user no longer
    /// refers to anywhere.
    pub(super) async fn expunge(&mut self, a: &mut Answer, only: Option<&SequenceSet>, silent: bool) {
        if self.sel().read_only {
            return;
        }
        let sel = self.sel();
        let max_uid = sel.max_uid();
        let uids: Vec<u32> = sel
            .entries
            .iter()
            .filter(|(u, r)| has(&r.flags, "\\Deleted") && only.is_none_or(|s| in_set(s, *u, max_uid)))
            .map(|(u, _)| *u)
            .collect();
        self.remove(a, uids, silent).await;
    }

    /// Removes entries from the selected folder, tells their stores, and
    /// reports EXPUNGE (highest first, so each number is right when sent).
    async fn remove(&mut self, a: &mut Answer, uids: Vec<u32>, silent: bool) {
        if uids.is_empty() {
            return;
        }
        let name = self.sel().name.clone();
        let Ok(removed) = self.store(move |st, user| st.mail_expunge(&user, &name, &uids)).await else { return };
        let s = self.s.clone();
        let to_release: Vec<InboxRecord> =
            removed.iter().filter(|e| e.last_reference).map(|e| e.record.clone()).collect();
        if !to_release.is_empty() {
            tokio::spawn(async move {
                for r in to_release {
                    release(&s, &r).await;
                }
            });
        }
        let gone: std::collections::HashSet<u32> = removed.iter().map(|e| e.uid).collect();
        let sel = self.sel_mut();
        for i in (0..sel.entries.len()).rev() {
            if gone.contains(&sel.entries[i].0) {
                if !silent {
                    a.data(Data::Expunge(nz(i as u32 + 1)));
                }
                sel.entries.remove(i);
            }
        }
        sel.watch.mark_unchanged();
    }

    pub(super) async fn copy(
        &mut self,
        a: &mut Answer,
        tag: &Tag<'static>,
        set: &SequenceSet,
        to: &str,
        uid_cmd: bool,
        moving: bool,
    ) {
        if moving && self.sel().read_only {
            a.status(no(tag, Some(Code::ReadOnly), "the folder is read-only (EXAMINE)"));
            return;
        }
        let Some(indices) = self.sel().resolve(set, uid_cmd) else {
            a.status(bad(Some(tag), None, "no message has that sequence number"));
            return;
        };
        let uids: Vec<u32> = indices.iter().map(|i| self.sel().entries[*i].0).collect();
        let (from, to_name) = (self.sel().name.clone(), to.to_string());
        let r = self
            .store(move |st, user| {
                let pairs = st.mail_copy(&user, &from, &uids, &to_name, moving)?;
                let info = st.mail_folder(&user, &to_name)?;
                Ok((pairs, info))
            })
            .await;
        let what = if moving { "MOVE" } else { "COPY" };
        let (pairs, info) = match r {
            Ok((Ok(p), Some(info))) => (p, info),
            Ok((Err(FolderError::NoSuch), _)) | Ok((Ok(_), None)) => {
                a.status(no(tag, Some(Code::TryCreate), format!("no folder {to:?}")));
                return;
            }
            Ok((Err(e), _)) => {
                a.status(no(tag, Some(super::folder_code(&e)), e.to_string()));
                return;
            }
            Err(_) => {
                a.status(no(tag, Some(code("SERVERBUG")), format!("storage error; nothing was {what}d")));
                return;
            }
        };
        let copyuid = match (
            uid_set(&pairs.iter().map(|p| p.0).collect::<Vec<_>>()),
            uid_set(&pairs.iter().map(|p| p.1).collect::<Vec<_>>()),
        ) {
            (Some(source), Some(destination)) => {
                Some(Code::CopyUid { uid_validity: nz(info.uidvalidity), source, destination })
            }
            _ => None,
        };
        if moving {
            if let Some(c) = copyuid {
                let st =
                    imap_codec::imap_types::response::Status::ok(None, Some(c), super::text("moved")).expect("status");
                a.status(st);
            }
            // The entries are gone from this folder already (one batch);
            // report them as expunged. Their stores are not told: the user
            // still has them.
            let gone: std::collections::HashSet<u32> = pairs.iter().map(|p| p.0).collect();
            let sel = self.sel_mut();
            for i in (0..sel.entries.len()).rev() {
                if gone.contains(&sel.entries[i].0) {
                    a.data(Data::Expunge(nz(i as u32 + 1)));
                    sel.entries.remove(i);
                }
            }
            sel.watch.mark_unchanged();
            a.status(ok(tag, None, "MOVE done"));
        } else {
            a.status(ok(tag, copyuid, "COPY done"));
        }
    }

    pub(super) async fn append(
        &mut self,
        a: &mut Answer,
        tag: &Tag<'static>,
        to: &str,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) {
        let content: Vec<u8> = match message {
            LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
            LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
        };
        let imap = &self.s.config.imap;
        if content.len() as u64 > imap.max_append {
            a.status(no(tag, Some(Code::TooBig), format!("messages over {} octets are not taken", imap.max_append)));
            return;
        }
        if content.is_empty() {
            a.status(no(tag, None, "an empty message"));
            return;
        }
        let quota = imap.held_quota;
        let flags: Vec<String> = flags.iter().map(flag_text).collect();
        let at = date.map_or(self.s.clock.now(), |d| d.as_ref().timestamp_millis().max(0) as u64);
        let store_domain = self.s.config.smtp.store_domain.clone();
        let (to_name, len) = (to.to_string(), content.len() as u64);
        let message_id = crate::proto::header::message_id(&content);
        let r = self
            .store(move |st, user| {
                // A client saving what it just sent (Thunderbird's default):
                // the store already keeps it, and Sent shows it.
                let info = st.mail_folder(&user, &to_name)?;
                if info.as_ref().is_some_and(|i| i.special_use.as_deref() == Some(crate::store::folders::SENT))
                    && let Some(uid) = st.sent_entry(&user, &to_name, &message_id)?
                {
                    return Ok((Ok(uid), info));
                }
                if st.held_bytes(&user)? + len > quota {
                    return Ok((Err(None), None));
                }
                let uid = st.mail_append(&user, &to_name, &content, flags, at, &store_domain)?;
                let info = st.mail_folder(&user, &to_name)?;
                Ok((uid.map_err(Some), info))
            })
            .await;
        match r {
            Ok((Ok(uid), Some(info))) => {
                if self.selected.as_ref().is_some_and(|s| s.name.eq_ignore_ascii_case(&info.name)) {
                    self.changes(a).await;
                }
                let c = Code::AppendUid { uid_validity: nz(info.uidvalidity), uid: nz(uid) };
                a.status(ok(tag, Some(c), "APPEND done"));
            }
            Ok((Err(None), _)) => {
                a.status(no(tag, Some(Code::OverQuota), "your saved messages are over their quota"));
            }
            Ok((Err(Some(FolderError::NoSuch)), _)) | Ok((Ok(_), None)) => {
                a.status(no(tag, Some(Code::TryCreate), format!("no folder {to:?}")));
            }
            Ok((Err(Some(e)), _)) => a.status(no(tag, Some(super::folder_code(&e)), e.to_string())),
            Err(_) => a.status(no(tag, Some(code("SERVERBUG")), "storage error; nothing was saved")),
        }
    }
}
