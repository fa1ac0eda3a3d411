//! The addresses a message's `From:` header names (RFC 5322 §3.6.2), read
//! with mail-parser: what a submission service compares with the
//! authenticated user, so that nobody sends in someone else's name.

use mail_parser::MessageParser;

/// Every address in the `From:` fields of `content`'s header section,
/// as written (empty when there is none, or it names no address).
pub fn from_addresses(content: &[u8]) -> Vec<String> {
    let Some(message) = MessageParser::new().parse_headers(content) else { return Vec::new() };
    let Some(from) = message.from() else { return Vec::new() };
    from.iter().filter_map(|a| a.address().map(str::to_string)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_fields() {
        let cases: &[(&str, &[&str])] = &[
            ("From: alice@one.test\r\n\r\nhi\r\n", &["alice@one.test"]),
            ("From: \"Alice A.\" <alice@one.test>\r\nTo: b@x.test\r\n\r\n", &["alice@one.test"]),
            ("From: a@one.test, b@two.test\r\n\r\n", &["a@one.test", "b@two.test"]),
            ("From: Team: a@one.test, b@one.test;\r\n\r\n", &["a@one.test", "b@one.test"]),
            ("Subject: no from\r\n\r\n", &[]),
            ("From: nobody\r\n\r\n", &[]),
            ("From: alice@one.test\r\n\r\nFrom: body@evil.test\r\n", &["alice@one.test"]),
        ];
        for (message, want) in cases {
            assert_eq!(from_addresses(message.as_bytes()), *want, "{message:?}");
        }
    }
}
