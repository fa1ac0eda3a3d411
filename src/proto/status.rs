//! The tracking vocabulary a sender sees for each recipient.

use serde::{Deserialize, Serialize};

/// Where a recipient's notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    /// Not yet attempted.
    Unprocessed,
    /// Being notified: attempts go on (and, once accepted, are re-sent on a
    /// slow schedule) until the recipient silences the notification.
    Notifying,
    /// The recipient asked the store to stop notifying.
    Silenced,
    /// The recipient's notification agent has no such user.
    Nouser,
    /// The recipient's domain does not exist.
    Baddomain,
    /// The recipient's domain publishes no IM2000 notification service.
    Noservice,
    /// The notification service could not be reached before retries ran out.
    Noserver,
    /// The notification service answered something that is not the protocol.
    Protocolerror,
    /// The recipient side will not take the message.
    Refused,
}

impl NotificationStatus {
    /// A final status: nothing will be attempted any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Unprocessed | Self::Notifying)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unprocessed => "unprocessed",
            Self::Notifying => "notifying",
            Self::Silenced => "silenced",
            Self::Nouser => "nouser",
            Self::Baddomain => "baddomain",
            Self::Noservice => "noservice",
            Self::Noserver => "noserver",
            Self::Protocolerror => "protocolerror",
            Self::Refused => "refused",
        }
    }
}

/// How much of the message the recipient has retrieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadStatus {
    Unread,
    Headers,
    All,
}

impl ReadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unread => "unread",
            Self::Headers => "headers",
            Self::All => "all",
        }
    }
}
