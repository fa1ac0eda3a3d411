//! Reading one header field of a message, sans-IO.

use super::digest::header_section_len;

/// The value of the first `name:` field of the message's header, unfolded
/// and trimmed; `None` without one.
pub fn field(raw: &[u8], name: &str) -> Option<String> {
    let header = &raw[..header_section_len(raw)];
    let mut value: Option<String> = None;
    for line in header.split_inclusive(|b| *b == b'\n') {
        let text = String::from_utf8_lossy(line);
        match &mut value {
            Some(v) if text.starts_with([' ', '\t']) => v.push_str(text.trim_end_matches(['\r', '\n'])),
            Some(_) => break,
            None => {
                if let Some((n, v)) = text.split_once(':')
                    && n.trim().eq_ignore_ascii_case(name)
                {
                    value = Some(v.trim_end_matches(['\r', '\n']).to_string());
                }
            }
        }
    }
    value.map(|v| v.trim().to_string())
}

/// The `Message-ID:` of a message, spaces removed, or empty.
pub fn message_id(raw: &[u8]) -> String {
    field(raw, "message-id").map(|v| v.split_whitespace().collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_a_header() {
        let raw = b"Subject: a\r\n b\r\nMessage-ID:\r\n <1@x.test>\r\nX: y\r\n\r\nMessage-ID: <body@x>\r\n";
        let cases = [("subject", Some("a b")), ("message-id", Some("<1@x.test>")), ("x", Some("y")), ("to", None)];
        for (name, want) in cases {
            assert_eq!(field(raw, name).as_deref(), want, "{name}");
        }
        assert_eq!(message_id(raw), "<1@x.test>");
        assert_eq!(message_id(b"Subject: none\r\n\r\n"), "");
    }
}
