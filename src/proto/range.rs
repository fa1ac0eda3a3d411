//! HTTP `Range: bytes=…` (RFC 9110 §14) for resumable retrieval. One range
//! is served; a request for several is answered with the whole
//! representation, which the RFC allows.

/// What to send for a `Range` header against a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: send everything with 200.
    Full,
    /// Send bytes `start..end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Interprets a `Range` header value.
pub fn resolve(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(h) = header else { return RangeAnswer::Full };
    let Some(spec) = h.trim().strip_prefix("bytes=") else { return RangeAnswer::Full };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeAnswer::Full };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        let Ok(n) = b.parse::<u64>() else { return RangeAnswer::Full };
        if n == 0 || len == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Partial { start: len.saturating_sub(n), end: len };
    }
    let Ok(start) = a.parse::<u64>() else { return RangeAnswer::Full };
    let end = if b.is_empty() {
        len
    } else {
        match b.parse::<u64>() {
            Ok(last) if last >= start => last.saturating_add(1).min(len),
            _ => return RangeAnswer::Full,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeAnswer::*;

    #[test]
    fn table() {
        let cases: &[(Option<&str>, u64, RangeAnswer)] = &[
            (None, 100, Full),
            (Some("bytes=0-9"), 100, Partial { start: 0, end: 10 }),
            (Some("bytes=90-"), 100, Partial { start: 90, end: 100 }),
            (Some("bytes=90-200"), 100, Partial { start: 90, end: 100 }),
            (Some("bytes=-10"), 100, Partial { start: 90, end: 100 }),
            (Some("bytes=-200"), 100, Partial { start: 0, end: 100 }),
            (Some("bytes=100-"), 100, Unsatisfiable),
            (Some("bytes=-0"), 100, Unsatisfiable),
            (Some("bytes=5-2"), 100, Full),
            (Some("bytes=0-1,5-6"), 100, Full),
            (Some("items=0-1"), 100, Full),
            (Some("bytes=x-1"), 100, Full),
            (Some("bytes=0-"), 0, Unsatisfiable),
        ];
        for (h, len, want) in cases {
            assert_eq!(resolve(*h, *len), *want, "{h:?} of {len}");
        }
    }
}
