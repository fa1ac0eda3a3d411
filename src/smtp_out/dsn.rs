//! Reading a late bounce from a legacy host: a delivery status notification
//! (RFC 3464) if it is one, else whatever the bounce says. The result is a
//! refusal reason for the sender's store — never a message passed on.

use mail_parser::{MessageParser, MimeHeaders};

/// The failure a bounce reports, as "STATUS DIAGNOSTIC", or `None` when the
/// message reports no failure (a delay or success notice).
pub fn failure_reason(raw: &[u8]) -> Option<String> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Some("bounce received (unparseable)".into());
    };
    let report = msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status") || s.eq_ignore_ascii_case("global-delivery-status")
                })
        })
    });
    let Some(report) = report else {
        // Not a DSN: an old-style bounce. Its subject is the best summary.
        return Some(format!("bounce received: {}", msg.subject().unwrap_or("(no subject)")));
    };
    let text = String::from_utf8_lossy(report.contents()).replace("\r\n", "\n");
    let (mut action, mut status, mut diagnostic) = (None, None, None);
    // Per-recipient fields follow the per-message ones; the first failed
    // recipient's fields win (each delivery carries one recipient).
    for line in unfold(&text) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_string();
        match name.trim().to_ascii_lowercase().as_str() {
            "action" if action.is_none() => action = Some(value.to_ascii_lowercase()),
            "status" if status.is_none() => status = Some(value),
            "diagnostic-code" if diagnostic.is_none() => {
                diagnostic = Some(value.split_once(';').map_or(value.clone(), |(_, d)| d.trim().to_string()))
            }
            _ => {}
        }
    }
    if action.as_deref().is_some_and(|a| a != "failed") {
        return None;
    }
    let reason = match (status, diagnostic) {
        (_, Some(d)) => d,
        (Some(s), None) => s,
        (None, None) => "delivery failed (DSN without status)".into(),
    };
    Some(format!("{reason} (reported later by the legacy host)"))
}

/// Most octets of the failed message's header section a DSN attaches
/// (Postfix's `bounce_size_limit` is 50,000 for the whole message).
pub const DSN_HEADERS_MAX: usize = 16 * 1024;

/// `headers` cut to at most [`DSN_HEADERS_MAX`] octets, at a line end.
pub fn truncate_headers(headers: &[u8]) -> &[u8] {
    if headers.len() <= DSN_HEADERS_MAX {
        return headers;
    }
    let cut = &headers[..DSN_HEADERS_MAX];
    match cut.windows(2).rposition(|w| w == b"\r\n") {
        Some(i) => &cut[..i + 2],
        None => &[],
    }
}

/// A delivery status notification (RFC 3464) telling `sender` that their
/// message to `recipient` failed for good.
pub struct Bounce<'a> {
    /// This gateway's host name (Reporting-MTA).
    pub hostname: &'a str,
    /// The domain of the MAILER-DAEMON address it comes from.
    pub from_domain: &'a str,
    pub sender: &'a str,
    pub recipient: &'a str,
    pub reason: &'a str,
    /// The failed message's header section, attached when still stored.
    pub original_headers: Option<&'a [u8]>,
    pub date: &'a str,
    /// Makes the boundary and Message-ID unique.
    pub unique: &'a str,
}

impl Bounce<'_> {
    pub fn render(&self) -> Vec<u8> {
        let Bounce { hostname, from_domain, sender, recipient, reason, original_headers, date, unique } = *self;
        let boundary = format!("imgate-dsn-{unique}");
        let status = reason
            .split_whitespace()
            .find(|w| {
                let parts: Vec<&str> = w.split('.').collect();
                parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
            })
            .unwrap_or("5.0.0");
        let reason_line: String = reason.chars().filter(|c| !c.is_control()).collect();
        let mut m = format!(
            "From: Mail Delivery System <MAILER-DAEMON@{from_domain}>\r\n\
         To: <{sender}>\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Date: {date}\r\n\
         Message-ID: <dsn.{unique}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your message to <{recipient}> could not be delivered.\r\n\
         The mail system said: {reason_line}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {hostname}\r\n\
         \r\n\
         Final-Recipient: rfc822; {recipient}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {reason_line}\r\n\
         \r\n"
        );
        if let Some(h) = original_headers {
            m.push_str(&format!("--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"));
            m.push_str(&String::from_utf8_lossy(h));
            if !m.ends_with("\r\n") {
                m.push_str("\r\n");
            }
        }
        m.push_str(&format!("--{boundary}--\r\n"));
        m.into_bytes()
    }
}

/// Header-style lines with continuation lines joined.
fn unfold(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            out.push(line.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "From: MAILER-DAEMON@legacy.test\r\nTo: bounce+0011@two.test\r\nSubject: Undelivered Mail\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; legacy.test\r\n\r\n\
Final-Recipient: rfc822; carol@two.test\r\nAction: ACTION\r\nStatus: 5.2.2\r\n\
Diagnostic-Code: smtp; 552 5.2.2 mailbox\r\n full\r\n\r\n--b--\r\n";

    /// A multipart `depth` levels deep, each level a new boundary.
    fn nested_mime(depth: usize) -> Vec<u8> {
        let mut head = String::from("From: a@x.test\r\nMIME-Version: 1.0\r\n");
        let mut tail = String::new();
        for i in 0..depth {
            head.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
            tail = format!("\r\n--b{i}--\r\n{tail}");
        }
        format!("{head}Content-Type: text/plain\r\n\r\ndeep{tail}").into_bytes()
    }

    #[test]
    fn deeply_nested_mime_reads_as_an_old_style_bounce_without_crashing() {
        for depth in [1, 50, 5_000, 50_000] {
            let reason = failure_reason(&nested_mime(depth));
            assert!(reason.as_deref().is_some_and(|r| r.starts_with("bounce received")), "depth {depth}: {reason:?}");
        }
    }

    #[test]
    fn built_dsns_read_back() {
        let dsn = Bounce {
            hostname: "gw.test",
            from_domain: "one.test",
            sender: "alice@one.test",
            recipient: "x@legacy.test",
            reason: "550 5.1.1 no such user",
            original_headers: Some(b"Subject: hi\r\n\r\n"),
            date: "Thu, 1 Jan 2026 00:00:00 +0000",
            unique: "u1",
        }
        .render();
        assert_eq!(failure_reason(&dsn).as_deref(), Some("550 5.1.1 no such user (reported later by the legacy host)"));
        assert!(String::from_utf8(dsn).unwrap().contains("Status: 5.1.1\r\n"));
    }

    #[test]
    fn attached_headers_are_cut_at_a_line_end() {
        let line = b"X-Filler: 0123456789012345678901234567890123456789\r\n";
        let big: Vec<u8> = line.iter().copied().cycle().take(line.len() * 1000).collect();
        let cut = truncate_headers(&big);
        assert!(cut.len() <= DSN_HEADERS_MAX && cut.len() > DSN_HEADERS_MAX - line.len(), "{}", cut.len());
        assert!(cut.ends_with(b"\r\n"));
        assert_eq!(truncate_headers(line), line);
        assert_eq!(truncate_headers(&vec![b'a'; DSN_HEADERS_MAX + 1]), b"");
    }

    #[test]
    fn reports() {
        assert_eq!(
            failure_reason(DSN.replace("ACTION", "failed").as_bytes()).as_deref(),
            Some("552 5.2.2 mailbox full (reported later by the legacy host)")
        );
        assert_eq!(failure_reason(DSN.replace("ACTION", "delayed").as_bytes()), None);
        assert_eq!(
            failure_reason(b"From: postmaster@x\r\nSubject: Mail delivery failed\r\n\r\nUser unknown\r\n").as_deref(),
            Some("bounce received: Mail delivery failed")
        );
    }
}
