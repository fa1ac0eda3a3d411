//! Content digests in the RFC 9530 `Repr-Digest` form: `sha-256=:BASE64:`.

use base64::Engine;
use sha2::{Digest, Sha256};

/// The `sha-256=:…:` digest of `content`.
pub fn sha256_field(content: &[u8]) -> String {
    let sum = Sha256::digest(content);
    format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(sum))
}

/// Length of the header section of an RFC 5322 message, including the empty
/// line that ends it; the whole message when there is no body.
pub fn header_section_len(content: &[u8]) -> usize {
    let mut i = 0;
    while i < content.len() {
        let line_end = match content[i..].iter().position(|&b| b == b'\n') {
            Some(p) => i + p + 1,
            None => return content.len(),
        };
        let line = &content[i..line_end];
        if line == b"\r\n" || line == b"\n" {
            return line_end;
        }
        i = line_end;
    }
    content.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(sha256_field(b"hello"), "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:");
    }

    #[test]
    fn header_sections() {
        let cases: &[(&[u8], usize)] = &[
            (b"Subject: a\r\n\r\nbody\r\n", 14),
            (b"Subject: a\n\nbody\n", 12),
            (b"Subject: a\r\n", 12),
            (b"Subject: a", 10),
            (b"\r\nbody", 2),
            (b"", 0),
        ];
        for (input, want) in cases {
            assert_eq!(header_section_len(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
