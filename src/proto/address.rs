//! Mailbox addresses (`local@domain`) as IM2000 uses them: the domain decides
//! where services are located, so it is lower-cased; the local part is kept
//! as given but compared case-insensitively, as every real mail system does.

use std::fmt;
use std::str::FromStr;

/// Why a string is not an acceptable mailbox address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is longer than 254 octets")]
    TooLong,
    #[error("address has no '@'")]
    NoAt,
    #[error("local part is empty or longer than 64 octets")]
    BadLocal,
    #[error("local part has a character not allowed here: {0:?}")]
    BadLocalChar(char),
    #[error("domain is not a valid host name")]
    BadDomain,
}

/// A validated `local@domain` address.
///
/// ```
/// use imgate::proto::Address;
/// let a: Address = "Alice@One.TEST".parse().unwrap();
/// assert_eq!(a.domain(), "one.test");
/// assert_eq!(a.key(), "alice@one.test");
/// assert!("a%b@one.test".parse::<Address>().is_err(), "no percent-hack routing");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    pub fn local(&self) -> &str {
        &self.local
    }
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// The form used as a key: the whole address lower-cased.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Whether `s` is a DNS host name made of letter-digit-hyphen labels
/// (UTF-8 labels are accepted as SMTPUTF8 allows; they are matched as given).
pub fn valid_domain(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 || s.ends_with('.') {
        return false;
    }
    s.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > 254 {
            return Err(AddressError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoAt)?;
        if local.is_empty() || local.len() > 64 {
            return Err(AddressError::BadLocal);
        }
        // Dot-atom local parts only: quoted strings, '%', '!' and '@' routing
        // tricks have no place in an IM2000 mailbox name.
        if let Some(c) =
            local.chars().find(|c| !(c.is_alphanumeric() || "!#$&'*+-/=?^_`{|}~.".contains(*c)) || *c == '!')
        {
            return Err(AddressError::BadLocalChar(c));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(AddressError::BadLocalChar('.'));
        }
        let domain = domain.to_lowercase();
        if !valid_domain(&domain) {
            return Err(AddressError::BadDomain);
        }
        Ok(Address { local: local.to_string(), domain })
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, AddressError>)] = &[
            ("alice@one.test", Ok("alice@one.test")),
            ("Alice@ONE.Test", Ok("Alice@one.test")),
            ("a.b+tag@sub.one.test", Ok("a.b+tag@sub.one.test")),
            ("", Err(AddressError::Empty)),
            ("alice", Err(AddressError::NoAt)),
            ("@one.test", Err(AddressError::BadLocal)),
            ("alice@", Err(AddressError::BadDomain)),
            ("alice@one..test", Err(AddressError::BadDomain)),
            ("alice@-one.test", Err(AddressError::BadDomain)),
            ("alice@one.test.", Err(AddressError::BadDomain)),
            ("a%b@one.test", Err(AddressError::BadLocalChar('%'))),
            ("a!b@one.test", Err(AddressError::BadLocalChar('!'))),
            ("\"a b\"@one.test", Err(AddressError::BadLocalChar('"'))),
            ("a@b@one.test", Err(AddressError::BadLocalChar('@'))),
            (".a@one.test", Err(AddressError::BadLocalChar('.'))),
            ("a\r\nb@one.test", Err(AddressError::BadLocalChar('\r'))),
            ("alice@[127.0.0.1]", Err(AddressError::BadDomain)),
        ];
        for (input, want) in cases {
            let got = input.parse::<Address>().map(|a| a.to_string());
            assert_eq!(got.as_deref().map_err(Clone::clone), want.clone(), "{input:?}");
        }
    }

    #[test]
    fn key_folds_case() {
        let a: Address = "Alice@One.test".parse().unwrap();
        assert_eq!(a.key(), "alice@one.test");
    }
}
