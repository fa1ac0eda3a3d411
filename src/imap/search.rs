//! SEARCH criteria (RFC 9051 §6.4.4, and WITHIN's YOUNGER/OLDER of RFC
//! 5032) judged against one entry, sans-IO.
//! Keys that look into the message (headers, body, the Date: header) are
//! judged on its parsed octets, which the caller loads only when
//! [`needs_content`] says so.

use imap_codec::imap_types::search::SearchKey;

use super::message::Parsed;
use super::sequence::in_set;

/// What a search key may look at of one entry.
pub struct View<'a> {
    /// 1-based sequence number, and how many the folder has.
    pub seq: u32,
    pub count: u32,
    pub uid: u32,
    pub max_uid: u32,
    pub flags: &'a [String],
    pub size: u64,
    /// When the entry was filed, as a date (UTC).
    pub internal: chrono::NaiveDate,
    /// How long ago it was filed, in seconds (WITHIN, RFC 5032).
    pub age: u64,
    pub content: Option<&'a Parsed<'a>>,
}

/// Whether judging `key` needs the message's octets.
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    use SearchKey::*;
    match key {
        And(keys) => keys.as_ref().iter().any(needs_content),
        Not(k) => needs_content(k),
        Or(a, b) => needs_content(a) || needs_content(b),
        Bcc(_) | Body(_) | Cc(_) | From(_) | Header(..) | Subject(_) | Text(_) | To(_) | SentBefore(_) | SentOn(_)
        | SentSince(_) => true,
        _ => false,
    }
}

fn has(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

fn contains(hay: &str, needle: &[u8]) -> bool {
    let needle = String::from_utf8_lossy(needle).to_lowercase();
    hay.to_lowercase().contains(&needle)
}

/// Whether `key` holds for the entry.
pub fn matches(key: &SearchKey<'_>, v: &View<'_>) -> bool {
    use SearchKey::*;
    let text = |field: &str| v.content.map(|p| p.search_text(field)).unwrap_or_default();
    let sent = || v.content.and_then(|p| p.sent_date());
    match key {
        And(keys) => keys.as_ref().iter().all(|k| matches(k, v)),
        SequenceSet(set) => in_set(set, v.seq, v.count),
        Uid(set) => in_set(set, v.uid, v.max_uid),
        All => true,
        Answered => has(v.flags, "\\Answered"),
        Deleted => has(v.flags, "\\Deleted"),
        Draft => has(v.flags, "\\Draft"),
        Flagged => has(v.flags, "\\Flagged"),
        Seen => has(v.flags, "\\Seen"),
        Unanswered => !has(v.flags, "\\Answered"),
        Undeleted => !has(v.flags, "\\Deleted"),
        Undraft => !has(v.flags, "\\Draft"),
        Unflagged => !has(v.flags, "\\Flagged"),
        Unseen => !has(v.flags, "\\Seen"),
        Keyword(k) => has(v.flags, k.as_ref()),
        Unkeyword(k) => !has(v.flags, k.as_ref()),
        // No session here sees \Recent (RFC 9051 drops it).
        New | Recent => false,
        Old => true,
        Larger(n) => v.size > *n as u64,
        Smaller(n) => v.size < *n as u64,
        Before(d) => v.internal < *d.as_ref(),
        On(d) => v.internal == *d.as_ref(),
        Since(d) => v.internal >= *d.as_ref(),
        Older(secs) => v.age >= u64::from(secs.get()),
        Younger(secs) => v.age <= u64::from(secs.get()),
        SentBefore(d) => sent().is_some_and(|s| s < *d.as_ref()),
        SentOn(d) => sent().is_some_and(|s| s == *d.as_ref()),
        SentSince(d) => sent().is_some_and(|s| s >= *d.as_ref()),
        Not(k) => !matches(k, v),
        Or(a, b) => matches(a, v) || matches(b, v),
        From(s) => contains(&text("from"), s.as_ref()),
        To(s) => contains(&text("to"), s.as_ref()),
        Cc(s) => contains(&text("cc"), s.as_ref()),
        Bcc(s) => contains(&text("bcc"), s.as_ref()),
        Subject(s) => contains(&text("subject"), s.as_ref()),
        Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).to_string();
            let t = text(&name);
            // An empty value matches every message that has the field.
            if s.as_ref().is_empty() { v.content.is_some_and(|p| p.has_field(&name)) } else { contains(&t, s.as_ref()) }
        }
        Body(s) => v.content.is_some_and(|p| contains(&p.body_text(), s.as_ref())),
        Text(s) => v.content.is_some_and(|p| contains(&p.whole_text(), s.as_ref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::ToStatic;
    use imap_codec::imap_types::command::CommandBody;

    fn key(s: &str) -> SearchKey<'static> {
        let line = format!("a SEARCH {s}\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).expect(s);
        let CommandBody::Search { criteria, .. } = cmd.body else { panic!("{s}") };
        let keys = criteria.as_ref().to_vec();
        match keys.as_slice() {
            [one] => one.to_static(),
            _ => panic!("one key: {s}"),
        }
    }

    #[test]
    fn criteria_against_one_entry() {
        let raw = b"From: Ann <ann@a.test>\r\nTo: bob@b.test\r\nSubject: Lunch plans\r\n\
Date: Tue, 1 Dec 2026 10:00:00 +0000\r\nX-Tag: blue\r\n\r\nSee you at noon.\r\n";
        let parsed = Parsed::new(raw);
        let flags = vec!["\\Seen".to_string(), "Work".to_string()];
        let v = View {
            seq: 3,
            count: 10,
            uid: 42,
            max_uid: 99,
            flags: &flags,
            size: raw.len() as u64,
            internal: chrono::NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
            age: 3600,
            content: Some(&parsed),
        };
        let cases = [
            ("ALL", true),
            ("SEEN", true),
            ("UNSEEN", false),
            ("KEYWORD Work", true),
            ("UNKEYWORD Work", false),
            ("FLAGGED", false),
            ("NOT FLAGGED", true),
            ("OR FLAGGED SEEN", true),
            ("FROM ann", true),
            ("FROM carl", false),
            ("SUBJECT lunch", true),
            ("TO bob@b.test", true),
            ("BODY noon", true),
            ("BODY lunch", false),
            ("TEXT lunch", true),
            ("HEADER X-Tag blue", true),
            ("HEADER X-Tag \"\"", true),
            ("HEADER X-Other \"\"", false),
            ("LARGER 10", true),
            ("SMALLER 10", false),
            ("SINCE 1-Dec-2026", true),
            ("BEFORE 2-Dec-2026", false),
            ("ON 2-Dec-2026", true),
            ("SENTON 1-Dec-2026", true),
            ("SENTSINCE 2-Dec-2026", false),
            ("YOUNGER 3600", true),
            ("YOUNGER 3599", false),
            ("OLDER 3600", true),
            ("OLDER 3601", false),
            ("NOT OLDER 7200", true),
            ("UID 40:45", true),
            ("UID 42:*", true),
            ("UID 43:*", false),
            ("UID 1:41", false),
            ("2:4", true),
            ("4:*", false),
        ];
        for (k, want) in cases {
            assert_eq!(matches(&key(k), &v), want, "{k}");
            assert_eq!(
                needs_content(&key(k)),
                k.contains("FROM")
                    || k.contains("SUBJECT")
                    || k.starts_with("TO")
                    || k.contains("BODY")
                    || k.contains("TEXT")
                    || k.contains("HEADER")
                    || k.contains("SENT"),
                "{k}"
            );
        }
    }
}
