//! Values stored in the column families of [`super::schema`].

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::proto::api::{Notification, Origin};
use crate::proto::{NotificationStatus, ReadStatus};

/// Lifecycle of a stored message's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageState {
    /// The body is stored and retrievable.
    Stored,
    /// Every recipient is done with it; the body is freed.
    Released,
    /// The sender recalled it; the body is freed.
    Cancelled,
    /// Its lifetime ended; the body is freed.
    Expired,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The store domain notifications name (the sender's, or a gateway's).
    pub store: String,
    pub sender: String,
    /// The quota account the body is charged to.
    pub account: String,
    /// Group accounts charged the same bytes (an outside sender's domain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_charged: Vec<String>,
    pub submitted_at: Millis,
    pub expires_at: Millis,
    pub size: u64,
    pub header_len: u64,
    pub digest: String,
    pub state: MessageState,
    /// Selectors (hex) of the recipient records, in submission order.
    pub recipients: Vec<String>,
    /// (list name, selector hex) of each list the message was published to.
    #[serde(default)]
    pub lists: Vec<(String, String)>,
    #[serde(default)]
    pub origin: Option<Origin>,
}

/// What a recipient record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    /// One addressee, notified.
    Mailbox,
    /// A list's public identifier; subscribers scan, nobody is notified.
    List,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientRecord {
    /// Message id (hex).
    pub message: String,
    /// The secret half of the identifier.
    pub verifier: [u8; 8],
    pub kind: RecipientKind,
    /// The address (or the list name).
    pub recipient: String,
    pub notification: NotificationStatus,
    pub read: ReadStatus,
    pub pinned: bool,
    pub attempts: u32,
    pub first_attempt_at: Option<Millis>,
    pub last_attempt_at: Option<Millis>,
    /// Due time of its queued job, if one is queued.
    pub next_attempt_at: Option<Millis>,
    pub accepted_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub silenced_at: Option<Millis>,
    pub reason: Option<String>,
    /// Notification attempts, for `imgate queue show`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
}

/// A durable unit of work in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// Send (or re-send) a recipient's notification.
    Notify {
        recipient: String,
        /// While leased: the node attempting it ([`Job::leased_by`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Pull a notified message and deliver it by SMTP to a legacy host.
    Deliver(Box<Delivery>),
}

impl Job {
    /// The node that holds the job's lease, as the lease recorded it: the
    /// lease's owner. A node starting again releases its own leases at once
    /// (no attempt of its last run can still be running); other nodes'
    /// leases are taken over only when they end.
    pub fn leased_by(&self) -> Option<&str> {
        match self {
            Job::Notify { by, .. } => by.as_deref(),
            Job::Deliver(d) => d.leased_by.as_deref(),
        }
    }

    fn set_leased_by(&mut self, owner: Option<String>) {
        match self {
            Job::Notify { by, .. } => *by = owner,
            Job::Deliver(d) => d.leased_by = owner,
        }
    }

    /// The job as leased to `owner`.
    pub fn leased_to(mut self, owner: &str) -> Job {
        self.set_leased_by(Some(owner.to_string()));
        self
    }

    /// The job as queued again, no one's.
    pub fn released(mut self) -> Job {
        self.set_leased_by(None);
        self
    }
}

/// A legacy-routed recipient's message on its way to the legacy host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub notification: Notification,
    pub attempts: u32,
    pub first_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    /// Set once the legacy host has answered for good: what remains is to
    /// tell the sender's store. Recorded before reporting, so a message the
    /// host accepted is never delivered twice.
    pub report: Option<Report>,
    /// For a smarthost relay: the authenticated sender, who is sent one
    /// RFC 3464 DSN if delivery fails for good (legacy users expect one).
    #[serde(default)]
    pub dsn_to: Option<String>,
    /// SMTP attempts, for `imgate queue show`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
    /// While leased: the node attempting it ([`Job::leased_by`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_by: Option<String>,
}

/// The outcome to report to the sender's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The legacy host accepted it: silence and un-pin.
    Delivered,
    /// The legacy host refused it (or it could not be delivered): refuse, with why.
    Refused(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListRecord {
    /// The list identifier (hex), public to anyone who scans the list.
    pub id: String,
    pub sender: String,
    pub size: u64,
    pub submitted_at: Millis,
}

/// What an account has stored (summed by `backend` counters).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountRecord {
    pub bytes: u64,
    pub messages: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxRecord {
    pub received_at: Millis,
    pub notification: Notification,
    /// IMAP flags and keywords the user set (`\Seen`, `\Flagged`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// The content is held on this node (a message the user APPENDed), not
    /// at a sender's store: `notification.id` names it in `held`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// The user's own submission, shown in Sent: `notification.id` is the
    /// message id at this node's store; the value is its `Message-ID:`
    /// header (empty without one), which spots a client's APPENDed copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
}

/// One of a user's IMAP folders other than INBOX.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FolderRecord {
    pub uidvalidity: u32,
    /// The UID the next entry gets.
    pub next_uid: u32,
    pub subscribed: bool,
    /// RFC 6154 attribute (`\Sent`, `\Drafts`, `\Trash`, `\Junk`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_use: Option<String>,
}

/// A message delivered to a legacy host, remembered so that a late bounce to
/// its return path can still be reported to the sender's store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnRecord {
    pub notification: Notification,
    pub delivered_at: Millis,
}

/// Who set a route in the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteSource {
    /// Written in the configuration file (and updated when it changes).
    Config,
    /// Set with `imgate route set`; outlives configuration changes.
    Admin,
}

/// A node's heartbeat on a shared store: which run of the node is alive,
/// and when it last said so (by its own clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Chosen at random by each start of the node.
    pub incarnation: u64,
    pub at: Millis,
}

/// One rule of the routing table: a domain's or a user's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub route: crate::config::Route,
    /// When this rule took its current value.
    pub since: Millis,
    pub source: RouteSource,
    /// The admin who set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What the queue worker holds back: everything, or jobs for some hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePause {
    pub all: bool,
    /// Recipient domains or legacy hosts (HOST:PORT), lowercase.
    pub hosts: Vec<String>,
}

/// One attempt of a job, for `imgate queue show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: Millis,
    /// The agent or SMTP host tried.
    pub host: String,
    /// What it answered (or why nothing did).
    pub result: String,
}

/// Attempts remembered per job: the first few and the latest.
pub const ATTEMPTS_KEPT: usize = 20;

/// Adds `a` to a job's history, dropping the oldest but the first when full.
pub fn remember_attempt(history: &mut Vec<Attempt>, a: Attempt) {
    if history.len() >= ATTEMPTS_KEPT {
        history.remove(1);
    }
    history.push(a);
}
