//! Turning stored IM2000 content into what an SMTP host is sent: one
//! Received header for the IM2000 hop, CRLF line endings throughout (a bare
//! LF passed on would make the gateway a smuggling source), and no final
//! CRLF (lettre adds the terminator). Content with a NUL octet is not sent
//! at all: receivers that drop NULs would read `<CRLF><NUL>.<CRLF>` as the
//! end of data.

/// The trace header for the pull from `store`.
pub fn received_header(store: &str, hostname: &str, id_short: &str, date: &str) -> String {
    format!("Received: from {store} by {hostname} with IM2000 id {id_short};\r\n\t{date}\r\n")
}

/// CRLF for every line ending, bare CR and bare LF included.
pub fn normalize_line_endings(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 50);
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\r' if content.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Whether `content` can be relayed by SMTP without becoming a smuggling
/// source (CR and LF are normalised; a NUL cannot be made safe).
pub fn relayable(content: &[u8]) -> Result<(), &'static str> {
    if content.contains(&0) {
        return Err("the message holds a NUL octet, which SMTP cannot carry safely");
    }
    Ok(())
}

/// The octets to hand to lettre's `send_raw`: header, normalised content,
/// without the final CRLF.
pub fn for_smtp(received: &str, content: &[u8]) -> Vec<u8> {
    let mut out = received.as_bytes().to_vec();
    out.extend_from_slice(&normalize_line_endings(content));
    // Exactly one: lettre's `\r\n.\r\n` supplies it again; a final empty
    // line of the content stays.
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"a\r\nb\r\n", b"a\r\nb\r\n"),
            (b"a\nb\n", b"a\r\nb\r\n"),
            (b"a\rb", b"a\r\nb"),
            (b"a\n.\r\nMAIL", b"a\r\n.\r\nMAIL"),
            (b"\r\r\n", b"\r\n\r\n"),
            (b"", b""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_line_endings(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn smtp_form_has_one_header_and_no_final_crlf() {
        let out = for_smtp(
            &received_header("one.test", "gw.test", "abcd1234", "Thu, 1 Jan 2026 00:00:00 +0000"),
            b"Subject: x\n\nhi\n",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from one.test by gw.test with IM2000 id abcd1234;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\nSubject: x\r\n\r\nhi"
        );
    }

    #[test]
    fn nul_octets_are_not_relayed() {
        assert!(relayable(b"Subject: x\r\n\r\nhi\r\n").is_ok());
        assert!(relayable(b"Subject: x\r\n\r\nhi\r\n\0.\r\nMAIL FROM:<x>\r\n").is_err());
    }
}
