//! Identifiers. A message identifier names a submission for its sender; a
//! recipient identifier is a capability: holding it is what allows retrieval.
//!
//! A recipient identifier is 128 random bits split into a 64-bit *selector*
//! (the storage key) and a 64-bit *verifier* compared in constant time, so a
//! lookup reveals nothing about how close a guess was. Neither kind of
//! identifier is ever logged whole: [`RecipientId::short`] is for logs.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use subtle::ConstantTimeEq;

/// Error for a string that is not 32 hexadecimal digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an identifier: expected 32 hexadecimal digits")]
pub struct BadId;

fn parse_hex16(s: &str) -> Result<[u8; 16], BadId> {
    super::hex::decode_array(s).ok_or(BadId)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str(&super::hex::encode(bytes))
}

/// Names one stored message (a submission) for its sender.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        MessageId(b)
    }
    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        format!("{:02x}{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({}…)", self.short())
    }
}

impl FromStr for MessageId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        parse_hex16(s).map(MessageId)
    }
}

/// A per-recipient retrieval capability.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecipientId(pub [u8; 16]);

impl RecipientId {
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rng().fill_bytes(&mut b);
        RecipientId(b)
    }
    /// The storage key half.
    pub fn selector(&self) -> [u8; 8] {
        self.0[..8].try_into().expect("16 bytes")
    }
    /// The secret half, compared in constant time.
    pub fn verifier(&self) -> [u8; 8] {
        self.0[8..].try_into().expect("16 bytes")
    }
    /// Whether `stored` is this identifier's verifier, in constant time.
    pub fn verifies(&self, stored: &[u8; 8]) -> bool {
        self.verifier().ct_eq(stored).into()
    }
    /// The selector's first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        format!("{:02x}{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl fmt::Display for RecipientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for RecipientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecipientId({}…)", self.short())
    }
}

impl FromStr for RecipientId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        parse_hex16(s).map(RecipientId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let cases: &[(&str, bool)] = &[
            ("00112233445566778899aabbccddeeff", true),
            ("00112233445566778899AABBCCDDEEFF", true),
            ("00112233445566778899aabbccddeef", false),
            ("00112233445566778899aabbccddeeff0", false),
            ("0011223344556677889gaabbccddeeff", false),
            ("", false),
            ("ü0112233445566778899aabbccddeef", false),
        ];
        for (input, ok) in cases {
            assert_eq!(input.parse::<RecipientId>().is_ok(), *ok, "{input}");
        }
    }

    #[test]
    fn display_round_trips_and_verifies() {
        let id = RecipientId::random();
        let back: RecipientId = id.to_string().parse().unwrap();
        assert_eq!(id, back);
        assert!(back.verifies(&id.verifier()));
        let mut wrong = id.verifier();
        wrong[7] ^= 1;
        assert!(!back.verifies(&wrong));
        assert!(!format!("{id:?}").contains(&id.to_string()));
    }
}
