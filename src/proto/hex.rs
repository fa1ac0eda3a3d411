//! Lower-case hexadecimal, as identifiers, selectors, job ids and cursors are
//! written on the wire and in storage.

/// `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of an even-length hex string (either case).
pub fn decode(s: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` alone would take a sign ("+1").
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Exactly `N` bytes of hex.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    decode(s)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(encode(&[0, 0xab, 0xff]), "00abff");
        let cases: &[(&str, Option<Vec<u8>>)] = &[
            ("00abff", Some(vec![0, 0xab, 0xff])),
            ("00ABFF", Some(vec![0, 0xab, 0xff])),
            ("", Some(vec![])),
            ("0", None),
            ("zz", None),
            ("+1", None),
            ("é0", None),
        ];
        for (input, want) in cases {
            assert_eq!(decode(input), *want, "{input:?}");
        }
        assert_eq!(decode_array::<2>("0102"), Some([1, 2]));
        assert_eq!(decode_array::<2>("010203"), None);
    }
}
