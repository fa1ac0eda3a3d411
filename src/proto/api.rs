//! The JSON bodies of the IM2000-over-HTTP binding (docs/protocol.md). Both
//! the services and the clients (peer nodes, the CLI) use these types, so the
//! two sides cannot drift apart.

use serde::{Deserialize, Serialize};

use super::{NotificationStatus, ReadStatus};

/// Base path of every operation.
pub const BASE: &str = "/im2000/v1";
/// Response header naming the message's sender on retrieval.
pub const SENDER_HEADER: &str = "IM2000-Sender";
/// SRV service label of a message store (recipient access).
pub const SRV_STORE: &str = "_im2000-store._tcp";
/// SRV service label of a notification agent (notification submission).
pub const SRV_NOTIFY: &str = "_im2000-notify._tcp";

/// Every error answer: `{"error": "<code>", "message": "<text>"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// How the message reached the store, so a recipient can judge the sender.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// `im2000` for a native submission, `smtp` for mail a gateway accepted.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<String>,
    /// The RFC 5322 `From:` domain the DMARC verdict was judged for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_from: Option<String>,
    /// On a DMARC failure, what that domain's policy asks: `quarantine`, or
    /// `reject` when the gateway was set to mark rather than refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_policy: Option<String>,
    /// Set by the agent that filed the notification, never taken from the
    /// wire: the store whose word the verdicts above are. They are that
    /// gateway's assertion about the SMTP hop; the agent did not check them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asserted_by: Option<String>,
}

/// One notification, as a store posts it to a recipient's agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Domain whose store holds the message (located by the agent itself).
    pub store: String,
    /// The recipient's identifier (capability) at that store.
    pub id: String,
    pub sender: String,
    pub recipient: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Longest value of each notification field an agent takes; a longer one
/// refuses the notification. Addresses: RFC 5321's 64 + 1 + 255 octets.
pub const NOTIFICATION_FIELD_LIMITS: &[(&str, usize)] = &[
    ("store", 253),
    ("id", 64),
    ("sender", 320),
    ("recipient", 320),
    ("digest", 128),
    ("origin.protocol", 16),
    ("origin.client_ip", 45),
    ("origin.helo", 255),
    ("origin.spf", 32),
    ("origin.dkim", 32),
    ("origin.dmarc", 32),
    ("origin.header_from", 253),
    ("origin.dmarc_policy", 16),
    ("origin.asserted_by", 253),
];

impl Notification {
    /// How the recipient identifier is named in logs: its first 8 hex
    /// digits, of the public selector half (never the verifier).
    pub fn rid(&self) -> &str {
        self.id.get(..8).unwrap_or("")
    }

    /// The first field longer than [`NOTIFICATION_FIELD_LIMITS`] allows.
    pub fn oversized_field(&self) -> Option<(&'static str, usize)> {
        let o = self.origin.as_ref();
        let text = |v: Option<&String>| v.map_or(0, |s| s.len());
        let lengths = [
            self.store.len(),
            self.id.len(),
            self.sender.len(),
            self.recipient.len(),
            self.digest.len(),
            o.map_or(0, |o| o.protocol.len()),
            text(o.and_then(|o| o.client_ip.as_ref())),
            text(o.and_then(|o| o.helo.as_ref())),
            text(o.and_then(|o| o.spf.as_ref())),
            text(o.and_then(|o| o.dkim.as_ref())),
            text(o.and_then(|o| o.dmarc.as_ref())),
            text(o.and_then(|o| o.header_from.as_ref())),
            text(o.and_then(|o| o.dmarc_policy.as_ref())),
            text(o.and_then(|o| o.asserted_by.as_ref())),
        ];
        NOTIFICATION_FIELD_LIMITS
            .iter()
            .zip(lengths)
            .find(|((_, max), len)| len > max)
            .map(|((name, max), _)| (*name, *max))
    }
}

/// The agent's answer for one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyResult {
    Accepted,
    Duplicate,
    Nouser,
    Refused,
    Retry,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyOutcome {
    pub result: NotifyResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /notifications` answer: one outcome per notification, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyResponse {
    pub results: Vec<NotifyOutcome>,
}

/// `POST /messages/{id}/refuse` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefuseRequest {
    pub reason: String,
}

/// Answer to silence, un-pin and refuse.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecipientState {
    pub notification: NotificationStatus,
    pub read: ReadStatus,
    pub pinned: bool,
}

/// `POST /submissions` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub message: String,
    pub size: u64,
    pub expires_at: String,
    pub recipients: Vec<SubmitRecipient>,
    #[serde(default)]
    pub lists: Vec<ListEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitRecipient {
    pub recipient: String,
    pub accepted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /submissions/{msg}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackResponse {
    pub message: String,
    pub sender: String,
    pub submitted_at: String,
    pub expires_at: String,
    pub size: u64,
    pub digest: String,
    /// `stored`, `released` (every recipient done), `cancelled` or `expired`.
    pub state: String,
    pub recipients: Vec<TrackRecipient>,
    #[serde(default)]
    pub lists: Vec<ListEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackRecipient {
    pub recipient: String,
    pub notification: NotificationStatus,
    pub read: ReadStatus,
    pub pinned: bool,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub silenced_at: Option<String>,
}

/// A list a message was published to, with the list's retrieval identifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListEntry {
    pub list: String,
    pub id: String,
}

/// `GET /lists/{list}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListScan {
    pub list: String,
    pub messages: Vec<ListMessage>,
    /// Pass as `since` to get only what came after this answer.
    pub next: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListMessage {
    pub id: String,
    pub sender: String,
    pub size: u64,
    pub submitted_at: String,
}

/// One entry of a user's inbox (`GET /inbox`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxEntry {
    pub cursor: String,
    pub received_at: String,
    pub notification: Notification,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InboxPage {
    pub notifications: Vec<InboxEntry>,
    /// The cursor of the last entry (or the `after` given): pass it as
    /// `after` for the next page, or as `through` to clear.
    pub next: String,
}

/// Most identifiers one batch probe may name.
pub const MAX_PROBE_BATCH: usize = 1000;

/// `POST /probe` body: identifiers to probe as `HEAD` would, in one request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    pub ids: Vec<String>,
}

/// `POST /probe` answer: one entry per identifier, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResponse {
    pub messages: Vec<ProbeAnswer>,
}

/// What `HEAD /messages/{id}` would have said: `status` 200 with the
/// sender, size and digest, or 404 / 410 alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeAnswer {
    pub id: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `POST /inbox/clear` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    pub through: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClearResponse {
    pub cleared: u64,
}
