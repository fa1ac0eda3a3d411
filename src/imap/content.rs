//! The octets behind a mailbox entry: a message the user APPENDed is held
//! here; one from this node's own store is read from it; any other is
//! pulled from its sender's store (cached within `[imap] cache_size`),
//! verified against the notified digest before a client sees it.
//! What the store no longer has is shown as a placeholder, never an error.

use crate::context::Shared;
use crate::peer::PeerError;
use crate::proto::digest::sha256_field;
use crate::proto::{ReadStatus, RecipientId};
use crate::store::RecipientAction;
use crate::store::records::InboxRecord;

/// Why an entry's content cannot be shown now (the session goes on, and
/// the client may ask again).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unreachable {
    #[error("{store}'s store cannot be reached: {why}")]
    Store { store: String, why: String },
    #[error("the message from {0} does not match its notification's digest")]
    Digest(String),
    #[error("storage error: {0}")]
    Local(String),
}

/// The content of `r`, or a placeholder when its store no longer has it.
pub async fn content(s: &Shared, r: &InboxRecord) -> Result<Vec<u8>, Unreachable> {
    let n = &r.notification;
    let local = |e: crate::store::StoreError| Unreachable::Local(e.to_string());
    if r.sent.is_some() {
        let body = match n.id.parse::<crate::proto::MessageId>() {
            Ok(id) => s.read(move |st| st.body(&id)).await.map_err(local)?,
            Err(_) => None,
        };
        return Ok(body.unwrap_or_else(|| {
            crate::imap::message::placeholder(&n.sender, &n.store, "you recalled it, or it expired")
        }));
    }
    if r.held {
        let id = n.id.clone();
        return Ok(match s.read(move |st| st.held(&id)).await.map_err(local)? {
            Some(c) => c,
            None => crate::imap::message::placeholder(&n.sender, &n.store, "it is no longer held here"),
        });
    }
    if s.dir().config.is_local_domain(&n.store) {
        let Ok(id) = n.id.parse::<RecipientId>() else {
            return Ok(crate::imap::message::placeholder(&n.sender, &n.store, "its identifier is not valid"));
        };
        let found = s
            .read(move |st| match st.find(&id)? {
                Ok(found) => Ok(st.body(&found.message_id)?.map(|body| (found, body))),
                Err(_) => Ok(None),
            })
            .await
            .map_err(local)?;
        let Some((found, body)) = found else {
            return Ok(crate::imap::message::placeholder(&n.sender, &n.store, "it was recalled or expired"));
        };
        if found.recipient.read < ReadStatus::All {
            // Read status is written lazily (no sync, nothing promised):
            // the client need not wait for it.
            let (store, now) = (s.store.clone(), s.clock.now());
            tokio::task::spawn_blocking(move || store.mark_read(&id, ReadStatus::All, now));
        }
        return Ok(body);
    }
    let (store, id) = (n.store.clone(), n.id.clone());
    if let Some(c) = s.read(move |st| st.pulled(&store, &id)).await.map_err(local)? {
        return Ok(c);
    }
    match s.peers.pull(&n.store, &n.id, n.size).await {
        Ok(content) => {
            if sha256_field(&content) != n.digest {
                return Err(Unreachable::Digest(n.store.clone()));
            }
            s.metrics.inc("imgate_imap_pulls_total", "outcome", "pulled");
            let (store, bound, kept) = (s.store.clone(), s.config.imap.cache_size, content.clone());
            let (from, id) = (n.store.clone(), n.id.clone());
            let _ = tokio::task::spawn_blocking(move || store.keep_pulled(&from, &id, &kept, bound)).await;
            Ok(content)
        }
        Err(PeerError::Status { status: 404 | 410, .. }) => {
            s.metrics.inc("imgate_imap_pulls_total", "outcome", "gone");
            Ok(crate::imap::message::placeholder(&n.sender, &n.store, "it was recalled or expired"))
        }
        Err(e) => {
            s.metrics.inc("imgate_imap_pulls_total", "outcome", "unreachable");
            Err(Unreachable::Store { store: n.store.clone(), why: e.to_string() })
        }
    }
}

/// Tells the sender's store that the user is done with a message: silence
/// (no more notifications) and un-pin (the store may free it). Best
/// effort: the entry is gone either way, and the store's expiry frees it
/// if this does not reach it.
pub async fn release(s: &Shared, r: &InboxRecord) {
    let n = &r.notification;
    if r.held || r.sent.is_some() {
        return;
    }
    if s.dir().config.is_local_domain(&n.store) {
        let Ok(id) = n.id.parse::<RecipientId>() else { return };
        let (store, now) = (s.store.clone(), s.clock.now());
        let _ = tokio::task::spawn_blocking(move || {
            for action in [RecipientAction::Silence, RecipientAction::Unpin] {
                if let Err(e) = store.recipient_action(&id, action, now) {
                    tracing::warn!(error = %e, "releasing an expunged message");
                }
            }
        })
        .await;
        return;
    }
    for action in ["silence", "unpin"] {
        if let Err(e) = s.peers.recipient_action(&n.store, &n.id, action, None).await {
            tracing::info!(store = %n.store, error = %e, action, "could not tell the store of an expunged message");
            s.metrics.inc("imgate_imap_release_failures_total", "action", action);
            return;
        }
    }
}

/// Keywords that show how the user's own message fares with its recipients
/// (tracked at this node's store), set by the node on Sent entries.
pub const TRACKING_KEYWORDS: [&str; 3] = ["$IM2000Pending", "$IM2000Read", "$IM2000Failed"];

/// Whether a flag is one the node sets (a client's STORE of it is ignored).
pub fn is_tracking_keyword(flag: &str) -> bool {
    TRACKING_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(flag))
}

/// A folder's entries, Sent entries with their tracking keywords.
pub fn entries(
    st: &crate::store::Store,
    user_key: &str,
    name: &str,
) -> Result<Vec<(u32, InboxRecord)>, crate::store::StoreError> {
    use crate::proto::NotificationStatus;
    use crate::store::records::RecipientKind;
    let mut entries = st.mail_entries(user_key, name)?;
    for (_, r) in entries.iter_mut().filter(|(_, r)| r.sent.is_some()) {
        r.flags.retain(|f| !is_tracking_keyword(f));
        let Ok(id) = r.notification.id.parse::<crate::proto::MessageId>() else { continue };
        let Some((_, recipients)) = st.track(&id)? else { continue };
        let mailboxes: Vec<_> = recipients.iter().filter(|x| x.kind == RecipientKind::Mailbox).collect();
        if mailboxes.is_empty() {
            continue;
        }
        if mailboxes.iter().any(|x| !x.notification.is_final() && x.accepted_at.is_none()) {
            r.flags.push(TRACKING_KEYWORDS[0].into());
        }
        if mailboxes.iter().all(|x| x.read == ReadStatus::All) {
            r.flags.push(TRACKING_KEYWORDS[1].into());
        }
        if mailboxes.iter().any(|x| x.notification.is_final() && x.notification != NotificationStatus::Silenced) {
            r.flags.push(TRACKING_KEYWORDS[2].into());
        }
    }
    Ok(entries)
}
