//! A legacy domain's mailboxes: one stored copy per recipient, as the
//! recipient-stores model keeps mail. Shared by the lab's MTA and its
//! mailin-embedded receiving hosts, and counted for the report.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::clock::{Clock, Millis};
use crate::proto::MessageId;
use crate::smtp_in::accept::received_header;
use crate::smtp_in::session::Envelope;

/// A message copy in a mailbox.
#[derive(Debug, Clone)]
pub struct StoredCopy {
    pub mailbox: String,
    /// Its `Message-ID:` without the angle brackets, which copies are
    /// found by.
    pub message_id: Option<String>,
    pub content: Arc<Vec<u8>>,
    pub stored_at: Millis,
    /// It is a bounce (its envelope sender was `<>`).
    pub bounce: bool,
}

#[derive(Clone)]
pub struct Mailboxes {
    clock: Arc<dyn Clock>,
    copies: Arc<Mutex<Vec<StoredCopy>>>,
}

impl Mailboxes {
    pub fn new(clock: Arc<dyn Clock>) -> Mailboxes {
        Mailboxes { clock, copies: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StoredCopy>> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lab's time.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Stores a copy for `mailbox`, stamped with the lab's time.
    pub fn file(&self, mailbox: &str, content: Arc<Vec<u8>>, bounce: bool) {
        let (mailbox, message_id) = (mailbox.to_ascii_lowercase(), message_id_of(&content));
        let copy = StoredCopy { mailbox, message_id, content, stored_at: self.clock.now(), bounce };
        self.lock().push(copy);
    }

    /// Delivers a message received by SMTP: one copy per recipient, each
    /// with its own trace header (`hostname` received it from `ip`).
    /// Returns the identifier the copies' headers name.
    pub fn deliver(&self, env: &Envelope, ip: IpAddr, hostname: &str, data: &[u8]) -> MessageId {
        let id = MessageId::random();
        let date = chrono::DateTime::from_timestamp_millis(self.now() as i64).unwrap_or_default().to_rfc2822();
        for rcpt in &env.recipients {
            let one = Envelope { recipients: vec![rcpt.clone()], ..env.clone() };
            let mut content = received_header(&one, ip, hostname, &id, &date).into_bytes();
            content.extend_from_slice(data);
            self.file(&rcpt.to_string(), Arc::new(content), env.sender.is_none());
        }
        id
    }

    /// The copies of a message (bounces about it aside).
    pub fn copies(&self, message_id: &str) -> Vec<StoredCopy> {
        self.lock().iter().filter(|c| !c.bounce && c.message_id.as_deref() == Some(message_id)).cloned().collect()
    }

    /// The bounces in `mailbox`.
    pub fn bounces(&self, mailbox: &str) -> Vec<StoredCopy> {
        self.lock().iter().filter(|c| c.bounce && c.mailbox.eq_ignore_ascii_case(mailbox)).cloned().collect()
    }

    /// How many copies are stored, and their bytes.
    pub fn usage(&self) -> (u64, u64) {
        let copies = self.lock();
        (copies.len() as u64, copies.iter().map(|c| c.content.len() as u64).sum())
    }
}

/// The `Message-ID:` of a message, without angle brackets.
pub fn message_id_of(content: &[u8]) -> Option<String> {
    let header = &content[..crate::proto::digest::header_section_len(content)];
    let text = String::from_utf8_lossy(header);
    let line = text.lines().find(|l| l.len() > 11 && l[..11].eq_ignore_ascii_case("message-id:"))?;
    Some(line[11..].trim().trim_start_matches('<').trim_end_matches('>').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids() {
        let cases: &[(&str, Option<&str>)] = &[
            ("Message-ID: <a@b>\r\n\r\nbody", Some("a@b")),
            ("Subject: x\r\nmessage-id:   <c@d> \r\n\r\n", Some("c@d")),
            ("Subject: x\r\n\r\nMessage-ID: <in@body>\r\n", None),
            ("", None),
        ];
        for (content, want) in cases {
            assert_eq!(message_id_of(content.as_bytes()).as_deref(), *want, "{content:?}");
        }
    }
}
