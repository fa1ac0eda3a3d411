//! A user's mailbox as IMAP sees it: INBOX is the agent's inbox (its
//! entries' sequence numbers are their UIDs), other folders are entries the
//! user moved or copied there, or messages they APPENDed, which are held on
//! this node. Flags live on the entries. Also the bounded cache of messages
//! pulled from other stores.

use std::collections::HashMap;

use super::backend::Batch;

use super::records::*;
use super::schema::*;
use super::*;

/// The one folder every user has: the agent's inbox.
pub const INBOX: &str = "INBOX";

/// The RFC 6154 attribute of the folder a user's own submissions show in.
pub const SENT: &str = "\\Sent";
const SEEN: &str = "\\Seen";

/// Folders a user has before creating any, with their RFC 6154 use.
pub const DEFAULT_FOLDERS: &[(&str, &str)] =
    &[("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk")];

/// What a folder is, for SELECT, STATUS and LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderInfo {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub subscribed: bool,
    pub special_use: Option<String>,
}

/// Why a folder operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    #[error("no folder of that name")]
    NoSuch,
    #[error("a folder of that name exists")]
    Exists,
    #[error("INBOX cannot be created, deleted or renamed over")]
    Inbox,
    #[error("the folder still holds messages; expunge or move them first")]
    NotEmpty,
    #[error("at most {0} folders")]
    TooMany(usize),
    #[error("the folder is full")]
    Full,
}

/// An entry removed by EXPUNGE (or moved away), and whether it was the
/// user's last reference to that message: then its store is told.
#[derive(Debug, Clone)]
pub struct Expunged {
    pub uid: u32,
    pub record: InboxRecord,
    pub last_reference: bool,
}

/// Whether a name is INBOX (case-insensitive, RFC 9051 §5.1).
pub fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case(INBOX)
}

fn be_u32(v: &[u8]) -> Result<u32, StoreError> {
    Ok(u32::from_be_bytes(v.try_into().map_err(|_| StoreError::Corrupt("u32 value".into()))?))
}

fn be_u64(v: &[u8]) -> Result<u64, StoreError> {
    Ok(u64::from_be_bytes(v.try_into().map_err(|_| StoreError::Corrupt("u64 value".into()))?))
}

impl Store {
    /// INBOX's UIDVALIDITY, made at first use.
    fn inbox_uidvalidity(&self, batch: &mut Batch) -> Result<u32, StoreError> {
        if let Some(v) = self.get(CF_META, META_INBOX_UIDVALIDITY)? {
            return be_u32(&v);
        }
        let v = self.uidvalidities(batch, 1)?[0];
        batch.put(CF_META, META_INBOX_UIDVALIDITY, v.to_be_bytes());
        Ok(v)
    }

    /// `n` UIDVALIDITY values later than every one given out (seconds since
    /// 1970 while the clock leads, so a wiped store starts with later ones).
    /// Under the write lock.
    fn uidvalidities(&self, batch: &mut Batch, n: u32) -> Result<Vec<u32>, StoreError> {
        let last = match self.get(CF_META, META_UIDVALIDITY)? {
            Some(v) => be_u32(&v)?,
            None => 0,
        };
        let now = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
            .min(u32::MAX as u64 / 2) as u32;
        let first = now.max(last.saturating_add(1)).max(1);
        let values: Vec<u32> = (0..n).map(|i| first.saturating_add(i)).collect();
        batch.put(CF_META, META_UIDVALIDITY, values[values.len() - 1].to_be_bytes());
        Ok(values)
    }

    /// The user's folders, INBOX first; the default ones (Sent, Drafts,
    /// Trash, Junk) are made the first time.
    pub fn mail_folders(&self, user_key: &str) -> Result<Vec<FolderInfo>, StoreError> {
        if self.get(CF_META, folders_made_key(user_key))?.is_none() {
            let _g = self.lock()?;
            let mut batch = Batch::default();
            self.make_default_folders(&mut batch, user_key)?;
            if !batch.is_empty() {
                self.commit(batch)?;
            }
        }
        let mut out = vec![self.inbox_info(user_key)?];
        out.extend(self.folder_records(user_key)?.into_iter().map(|(name, r)| FolderInfo {
            name,
            uidvalidity: r.uidvalidity,
            uidnext: r.next_uid,
            subscribed: r.subscribed,
            special_use: r.special_use,
        }));
        Ok(out)
    }

    /// Adds the default folders to `batch` unless they were made before
    /// (under the write lock); returns those it adds.
    fn make_default_folders(
        &self,
        batch: &mut Batch,
        user_key: &str,
    ) -> Result<Vec<(String, FolderRecord)>, StoreError> {
        let made = folders_made_key(user_key);
        if self.get(CF_META, &made)?.is_some() {
            return Ok(Vec::new());
        }
        self.inbox_uidvalidity(batch)?;
        let values = self.uidvalidities(batch, DEFAULT_FOLDERS.len() as u32)?;
        let mut out = Vec::new();
        for ((name, special), uidvalidity) in DEFAULT_FOLDERS.iter().zip(values) {
            let key = folder_key(user_key, name);
            if self.get(CF_FOLDERS, &key)?.is_some() {
                continue;
            }
            let record =
                FolderRecord { uidvalidity, next_uid: 1, subscribed: true, special_use: Some(special.to_string()) };
            batch.put(CF_FOLDERS, key, to_json(&record));
            out.push((name.to_string(), record));
        }
        batch.put(CF_META, &made, []);
        Ok(out)
    }

    /// Files a user's own submission in their Sent folder (the one marked
    /// `\Sent`, made with the defaults if need be; none if the user
    /// deleted it), in `batch`, under the write lock.
    pub(super) fn file_sent(
        &self,
        batch: &mut Batch,
        user_key: &str,
        n: Notification,
        message_id: String,
        now: Millis,
    ) -> Result<(), StoreError> {
        let mut folders = self.folder_records(user_key)?;
        folders.extend(self.make_default_folders(batch, user_key)?);
        let Some((name, mut record)) = folders.into_iter().find(|(_, r)| r.special_use.as_deref() == Some(SENT)) else {
            return Ok(());
        };
        if record.next_uid == u32::MAX {
            return Ok(());
        }
        let uid = record.next_uid;
        record.next_uid += 1;
        batch.put(CF_FOLDERS, folder_key(user_key, &name), to_json(&record));
        let flags = vec![SEEN.to_string()];
        let entry = InboxRecord { received_at: now, notification: n, flags, held: false, sent: Some(message_id) };
        batch.put(CF_FOLDER_MAIL, folder_mail_key(user_key, &name, uid), to_json(&entry));
        Ok(())
    }

    /// The Sent entry of the user's own message with this `Message-ID:`,
    /// if there is one (a client APPENDing what it just sent).
    pub fn sent_entry(&self, user_key: &str, folder: &str, message_id: &str) -> Result<Option<u32>, StoreError> {
        if message_id.is_empty() {
            return Ok(None);
        }
        Ok(self
            .folder_entries(user_key, folder)?
            .into_iter()
            .rev()
            .find(|(_, r)| r.sent.as_deref() == Some(message_id))
            .map(|(uid, _)| uid))
    }

    fn inbox_info(&self, user_key: &str) -> Result<FolderInfo, StoreError> {
        let uidvalidity = match self.get(CF_META, META_INBOX_UIDVALIDITY)? {
            Some(v) => be_u32(&v)?,
            None => {
                let _g = self.lock()?;
                let mut batch = Batch::default();
                let v = self.inbox_uidvalidity(&mut batch)?;
                self.commit(batch)?;
                v
            }
        };
        let last = self.inbox_last_seq(user_key)?;
        Ok(FolderInfo {
            name: INBOX.into(),
            uidvalidity,
            uidnext: (last + 1).min(u32::MAX as u64) as u32,
            subscribed: true,
            special_use: None,
        })
    }

    fn folder_records(&self, user_key: &str) -> Result<Vec<(String, FolderRecord)>, StoreError> {
        let prefix = folder_prefix(user_key);
        let mut out = Vec::new();
        for item in self.scan(CF_FOLDERS, &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let name =
                String::from_utf8(k[prefix.len()..].to_vec()).map_err(|_| StoreError::Corrupt("folder name".into()))?;
            out.push((name, from_json(CF_FOLDERS, &v)?));
        }
        Ok(out)
    }

    /// One folder, by name (INBOX in any case).
    pub fn mail_folder(&self, user_key: &str, name: &str) -> Result<Option<FolderInfo>, StoreError> {
        if is_inbox(name) {
            return self.inbox_info(user_key).map(Some);
        }
        Ok(self.get_json::<FolderRecord>(CF_FOLDERS, &folder_key(user_key, name))?.map(|r| FolderInfo {
            name: name.to_string(),
            uidvalidity: r.uidvalidity,
            uidnext: r.next_uid,
            subscribed: r.subscribed,
            special_use: r.special_use,
        }))
    }

    /// Creates a folder (at most `max` per user).
    pub fn mail_create(
        &self,
        user_key: &str,
        name: &str,
        special_use: Option<String>,
        max: usize,
    ) -> Result<Result<(), FolderError>, StoreError> {
        if is_inbox(name) {
            return Ok(Err(FolderError::Exists));
        }
        self.mail_folders(user_key)?;
        let _g = self.lock()?;
        let key = folder_key(user_key, name);
        if self.get(CF_FOLDERS, &key)?.is_some() {
            return Ok(Err(FolderError::Exists));
        }
        if self.folder_records(user_key)?.len() >= max {
            return Ok(Err(FolderError::TooMany(max)));
        }
        let mut batch = Batch::default();
        let uidvalidity = self.uidvalidities(&mut batch, 1)?[0];
        let record = FolderRecord { uidvalidity, next_uid: 1, subscribed: true, special_use };
        batch.put(CF_FOLDERS, key, to_json(&record));
        self.commit(batch)?;
        Ok(Ok(()))
    }

    /// Deletes an empty folder.
    pub fn mail_delete(&self, user_key: &str, name: &str) -> Result<Result<(), FolderError>, StoreError> {
        if is_inbox(name) {
            return Ok(Err(FolderError::Inbox));
        }
        let _g = self.lock()?;
        let key = folder_key(user_key, name);
        if self.get(CF_FOLDERS, &key)?.is_none() {
            return Ok(Err(FolderError::NoSuch));
        }
        if !self.folder_entries(user_key, name)?.is_empty() {
            return Ok(Err(FolderError::NotEmpty));
        }
        let mut batch = Batch::default();
        batch.delete(CF_FOLDERS, key);
        self.commit(batch)?;
        Ok(Ok(()))
    }

    /// Renames a folder and moves its entries with it (their UIDs and the
    /// folder's UIDVALIDITY stay: RFC 9051 §6.3.6).
    pub fn mail_rename(&self, user_key: &str, from: &str, to: &str) -> Result<Result<(), FolderError>, StoreError> {
        if is_inbox(from) || is_inbox(to) {
            return Ok(Err(FolderError::Inbox));
        }
        let _g = self.lock()?;
        let (from_key, to_key) = (folder_key(user_key, from), folder_key(user_key, to));
        let Some(record) = self.get(CF_FOLDERS, &from_key)?.map(|v| v.to_vec()) else {
            return Ok(Err(FolderError::NoSuch));
        };
        if self.get(CF_FOLDERS, &to_key)?.is_some() {
            return Ok(Err(FolderError::Exists));
        }
        let mut batch = Batch::default();
        batch.delete(CF_FOLDERS, &from_key);
        batch.put(CF_FOLDERS, &to_key, record);
        for (uid, r) in self.folder_entries(user_key, from)? {
            batch.delete(CF_FOLDER_MAIL, folder_mail_key(user_key, from, uid));
            batch.put(CF_FOLDER_MAIL, folder_mail_key(user_key, to, uid), to_json(&r));
        }
        self.commit(batch)?;
        Ok(Ok(()))
    }

    /// SUBSCRIBE / UNSUBSCRIBE.
    pub fn mail_subscribe(&self, user_key: &str, name: &str, on: bool) -> Result<Result<(), FolderError>, StoreError> {
        if is_inbox(name) {
            return Ok(Ok(()));
        }
        let _g = self.lock()?;
        let key = folder_key(user_key, name);
        let Some(mut record) = self.get_json::<FolderRecord>(CF_FOLDERS, &key)? else {
            return Ok(Err(FolderError::NoSuch));
        };
        record.subscribed = on;
        let mut batch = Batch::default();
        batch.put(CF_FOLDERS, key, to_json(&record));
        self.commit(batch)?;
        Ok(Ok(()))
    }

    /// Every entry of a folder, by ascending UID.
    pub fn mail_entries(&self, user_key: &str, name: &str) -> Result<Vec<(u32, InboxRecord)>, StoreError> {
        if is_inbox(name) {
            return Ok(self.inbox_list(user_key, 0, usize::MAX)?.into_iter().map(|(seq, r)| (seq as u32, r)).collect());
        }
        self.folder_entries(user_key, name)
    }

    fn folder_entries(&self, user_key: &str, name: &str) -> Result<Vec<(u32, InboxRecord)>, StoreError> {
        let prefix = folder_mail_prefix(user_key, name);
        let mut out = Vec::new();
        for item in self.scan(CF_FOLDER_MAIL, &prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let uid = folder_mail_uid(&k).ok_or_else(|| StoreError::Corrupt("folder entry key".into()))?;
            out.push((uid, from_json(CF_FOLDER_MAIL, &v)?));
        }
        Ok(out)
    }

    fn entry_cf_key(user_key: &str, name: &str, uid: u32) -> (&'static str, Vec<u8>) {
        if is_inbox(name) {
            (CF_INBOX, inbox_key(user_key, uid as u64))
        } else {
            (CF_FOLDER_MAIL, folder_mail_key(user_key, name, uid))
        }
    }

    /// Sets the flags of entries (the whole new set of each); returns the
    /// UIDs that existed. One synced batch.
    pub fn mail_set_flags(
        &self,
        user_key: &str,
        name: &str,
        changes: &[(u32, Vec<String>)],
    ) -> Result<Vec<u32>, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let mut done = Vec::with_capacity(changes.len());
        for (uid, flags) in changes {
            let (cf, key) = Self::entry_cf_key(user_key, name, *uid);
            let Some(mut r) = self.get_json::<InboxRecord>(cf, &key)? else { continue };
            r.flags = flags.clone();
            batch.put(cf, key, to_json(&r));
            done.push(*uid);
        }
        if !batch.is_empty() {
            self.commit(batch)?;
            self.touched(user_key);
        }
        Ok(done)
    }

    /// Removes entries from a folder; says of each whether it was the
    /// user's last reference to its message (then its store is to be told,
    /// or a held message is deleted here, in the same batch).
    pub fn mail_expunge(&self, user_key: &str, name: &str, uids: &[u32]) -> Result<Vec<Expunged>, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let removed = self.remove_entries(&mut batch, user_key, name, uids)?;
        if !batch.is_empty() {
            self.commit(batch)?;
            self.touched(user_key);
        }
        Ok(removed)
    }

    fn remove_entries(
        &self,
        batch: &mut Batch,
        user_key: &str,
        name: &str,
        uids: &[u32],
    ) -> Result<Vec<Expunged>, StoreError> {
        let mut removed = Vec::new();
        let (mut inbox_bytes, mut inbox_n) = (0i64, 0i64);
        for uid in uids {
            let (cf, key) = Self::entry_cf_key(user_key, name, *uid);
            let Some(r) = self.get_json::<InboxRecord>(cf, &key)? else { continue };
            batch.delete(cf, key);
            if is_inbox(name) {
                inbox_bytes += r.notification.size as i64;
                inbox_n += 1;
            }
            removed.push(Expunged { uid: *uid, record: r, last_reference: true });
        }
        if inbox_n > 0 {
            batch.add(CF_ACCOUNTS, inbox_tally_key(user_key), -inbox_bytes, -inbox_n);
        }
        if removed.is_empty() {
            return Ok(removed);
        }
        // Other entries of the user that refer to the same message (a COPY).
        let mut remaining: HashMap<(String, String), usize> = HashMap::new();
        let gone: std::collections::HashSet<u32> = removed.iter().map(|e| e.uid).collect();
        for folder in self.mail_folders_unlocked(user_key)? {
            for (uid, r) in self.mail_entries(user_key, &folder)? {
                if folder.eq_ignore_ascii_case(name) && gone.contains(&uid) {
                    continue;
                }
                *remaining
                    .entry((r.notification.store.to_lowercase(), r.notification.id.to_lowercase()))
                    .or_default() += 1;
            }
        }
        let mut held_bytes = 0i64;
        for e in &mut removed {
            let n = &e.record.notification;
            e.last_reference = !remaining.contains_key(&(n.store.to_lowercase(), n.id.to_lowercase()));
            if e.last_reference && e.record.held {
                batch.delete(CF_HELD, n.id.as_bytes());
                held_bytes += n.size as i64;
            }
        }
        if held_bytes > 0 {
            batch.add(CF_ACCOUNTS, held_tally_key(user_key), -held_bytes, 0);
        }
        Ok(removed)
    }

    /// Folder names without taking the lock or making defaults.
    fn mail_folders_unlocked(&self, user_key: &str) -> Result<Vec<String>, StoreError> {
        let mut names = vec![INBOX.to_string()];
        names.extend(self.folder_records(user_key)?.into_iter().map(|(n, _)| n));
        Ok(names)
    }

    /// Copies (or, with `remove`, moves) entries to another folder, where
    /// they get new UIDs; flags travel with them. Returns (old UID, new UID)
    /// pairs for COPYUID. Moving to INBOX files under the inbox's own
    /// sequence.
    pub fn mail_copy(
        &self,
        user_key: &str,
        from: &str,
        uids: &[u32],
        to: &str,
        remove: bool,
    ) -> Result<Result<Vec<(u32, u32)>, FolderError>, StoreError> {
        let _g = self.lock()?;
        let mut batch = Batch::default();
        let target_key = folder_key(user_key, to);
        let mut target = if is_inbox(to) {
            None
        } else {
            match self.get_json::<FolderRecord>(CF_FOLDERS, &target_key)? {
                Some(r) => Some(r),
                None => return Ok(Err(FolderError::NoSuch)),
            }
        };
        let mut inbox_next = self.inbox_last_seq(user_key)?;
        let mut pairs = Vec::new();
        let (mut inbox_bytes, mut inbox_n) = (0i64, 0i64);
        for uid in uids {
            let (cf, key) = Self::entry_cf_key(user_key, from, *uid);
            let Some(r) = self.get_json::<InboxRecord>(cf, &key)? else { continue };
            let new_uid = match &mut target {
                Some(t) => {
                    if t.next_uid == u32::MAX {
                        return Ok(Err(FolderError::Full));
                    }
                    let u = t.next_uid;
                    t.next_uid += 1;
                    batch.put(CF_FOLDER_MAIL, folder_mail_key(user_key, to, u), to_json(&r));
                    u
                }
                None => {
                    inbox_next += 1;
                    if inbox_next > u32::MAX as u64 {
                        return Ok(Err(FolderError::Full));
                    }
                    batch.put(CF_INBOX, inbox_key(user_key, inbox_next), to_json(&r));
                    inbox_bytes += r.notification.size as i64;
                    inbox_n += 1;
                    inbox_next as u32
                }
            };
            if remove {
                batch.delete(cf, key);
                if is_inbox(from) {
                    inbox_bytes -= r.notification.size as i64;
                    inbox_n -= 1;
                }
            }
            pairs.push((*uid, new_uid));
        }
        if let Some(t) = &target {
            batch.put(CF_FOLDERS, target_key, to_json(t));
        } else if inbox_n != 0 || !pairs.is_empty() {
            batch.put(CF_META, inbox_seq_key(user_key), inbox_next.to_be_bytes());
        }
        if inbox_n != 0 {
            batch.add(CF_ACCOUNTS, inbox_tally_key(user_key), inbox_bytes, inbox_n);
        }
        if !batch.is_empty() {
            self.commit(batch)?;
            self.touched(user_key);
        }
        Ok(Ok(pairs))
    }

    /// Stores a message the user APPENDed: held on this node (there is no
    /// sender's store to pull it from). Its stand-in notification names
    /// the user as sender and recipient and carries its digest.
    pub fn mail_append(
        &self,
        user_key: &str,
        name: &str,
        content: &[u8],
        flags: Vec<String>,
        received_at: Millis,
        store: &str,
    ) -> Result<Result<u32, FolderError>, StoreError> {
        let _g = self.lock()?;
        let id = crate::proto::hex::encode(&rand::random::<[u8; 16]>());
        let notification = Notification {
            store: store.to_string(),
            id: id.clone(),
            sender: user_key.to_string(),
            recipient: user_key.to_string(),
            size: content.len() as u64,
            digest: sha256_field(content),
            origin: None,
        };
        let record = InboxRecord { received_at, notification, flags, held: true, sent: None };
        let mut batch = Batch::default();
        let uid = if is_inbox(name) {
            let seq = self.inbox_last_seq(user_key)? + 1;
            if seq > u32::MAX as u64 {
                return Ok(Err(FolderError::Full));
            }
            batch.put(CF_META, inbox_seq_key(user_key), seq.to_be_bytes());
            batch.put(CF_INBOX, inbox_key(user_key, seq), to_json(&record));
            batch.add(CF_ACCOUNTS, inbox_tally_key(user_key), content.len() as i64, 1);
            seq as u32
        } else {
            let key = folder_key(user_key, name);
            let Some(mut folder) = self.get_json::<FolderRecord>(CF_FOLDERS, &key)? else {
                return Ok(Err(FolderError::NoSuch));
            };
            if folder.next_uid == u32::MAX {
                return Ok(Err(FolderError::Full));
            }
            let uid = folder.next_uid;
            folder.next_uid += 1;
            batch.put(CF_FOLDERS, key, to_json(&folder));
            batch.put(CF_FOLDER_MAIL, folder_mail_key(user_key, name, uid), to_json(&record));
            uid
        };
        batch.put(CF_HELD, id.as_bytes(), content);
        batch.add(CF_ACCOUNTS, held_tally_key(user_key), content.len() as i64, 1);
        self.commit(batch)?;
        self.touched(user_key);
        Ok(Ok(uid))
    }

    /// Octets `user_key` holds in APPENDed messages.
    pub fn held_bytes(&self, user_key: &str) -> Result<u64, StoreError> {
        let v = self.get(CF_ACCOUNTS, held_tally_key(user_key))?;
        Ok(v.map_or(0, |v| parse_account_value(&v).0.max(0) as u64))
    }

    /// The content of a held message.
    pub fn held(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_HELD, id.as_bytes())
    }

    /// A message pulled earlier from `store`, if the cache still has it.
    pub fn pulled(&self, store: &str, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(CF_PULLED, pulled_key(store, id))?.and_then(|v| v.get(8..).map(<[u8]>::to_vec)))
    }

    /// Keeps a pulled message, dropping the oldest ones past `bound` octets.
    /// Not synced: the cache is never the only copy.
    pub fn keep_pulled(&self, store: &str, id: &str, content: &[u8], bound: u64) -> Result<(), StoreError> {
        if content.len() as u64 > bound {
            return Ok(());
        }
        let _g = self.lock()?;
        let key = pulled_key(store, id);
        if self.get(CF_PULLED, key)?.is_some() {
            return Ok(());
        }
        let meta = |k: &[u8]| -> Result<u64, StoreError> { self.get(CF_META, k)?.map_or(Ok(0), |v| be_u64(&v)) };
        let (mut bytes, order) = (meta(META_PULLED_BYTES)?, meta(META_PULLED_ORDER)?);
        let mut batch = Batch::default();
        let mut value = order.to_be_bytes().to_vec();
        value.extend_from_slice(content);
        batch.put(CF_PULLED, key, value);
        batch.put(CF_PULLED_ORDER, order.to_be_bytes(), key);
        bytes += content.len() as u64;
        if bytes > bound {
            for item in self.scan(CF_PULLED_ORDER, &[]) {
                let (k, v) = item?;
                if bytes <= bound {
                    break;
                }
                if let Some(old) = self.get(CF_PULLED, &v)? {
                    bytes = bytes.saturating_sub(old.len().saturating_sub(8) as u64);
                    batch.delete(CF_PULLED, &v);
                }
                batch.delete(CF_PULLED_ORDER, k);
            }
        }
        batch.put(CF_META, META_PULLED_BYTES, bytes.to_be_bytes());
        batch.put(CF_META, META_PULLED_ORDER, (order + 1).to_be_bytes());
        self.commit_lazy(batch)
    }

    /// Octets the pulled-message cache holds.
    pub fn pulled_bytes(&self) -> Result<u64, StoreError> {
        self.get(CF_META, META_PULLED_BYTES)?.map_or(Ok(0), |v| be_u64(&v))
    }
}
