//! SMTP replies with enhanced status codes (RFC 5321 §4.2, RFC 3463).

use std::fmt;

/// One reply: a code, an enhanced status, and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced, lines: vec![text.into()] }
    }

    /// A multi-line reply (EHLO); no enhanced code, as RFC 2034 allows.
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, enhanced: "", lines }
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply as sent: CRLF-terminated lines, `-` on all but the last.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // Text never carries CR or LF: a reply is never a way to inject lines.
            let clean: String = line.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
            let head = if self.enhanced.is_empty() {
                format!("{}{sep}", self.code)
            } else {
                format!("{}{sep}{} ", self.code, self.enhanced)
            };
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(clean.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(String::from_utf8_lossy(&self.to_wire()).trim_end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms() {
        assert_eq!(Reply::new(250, "2.0.0", "Ok").to_wire(), b"250 2.0.0 Ok\r\n");
        assert_eq!(Reply::multi(250, vec!["a".into(), "b".into()]).to_wire(), b"250-a\r\n250 b\r\n");
        assert_eq!(Reply::new(550, "5.1.1", "x\r\nRSET").to_wire(), b"550 5.1.1 x  RSET\r\n");
    }
}
