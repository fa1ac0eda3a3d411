//! DKIM signing of mail leaving by SMTP (RFC 6376, Ed25519 by RFC 8463):
//! the keys of the domains this node serves, loaded once, and the one
//! signature header per key prepended to what is sent. Signing happens at
//! the last moment, over the exact octets handed to the SMTP client.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done, NeedDomain};
use rustls::pki_types::PrivateKeyDer;

use crate::config::DkimKeyConfig;

/// The header fields signed when present; each `From` listed once more than
/// it appears, and the absent ones too, so that none can be added later
/// without breaking the signature (RFC 6376 §8.15, "oversigning").
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A private key of either algorithm, made into a signer for its domain.
enum Key {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// One loaded key: the domain it signs for and its selector.
pub struct Signer {
    pub domain: String,
    pub selector: String,
    pub path: PathBuf,
    key: Key,
    /// The DNS `p=` value: SubjectPublicKeyInfo for RSA, the raw 32
    /// octets for Ed25519 (RFC 8463 §4.2).
    public: Vec<u8>,
}

/// Why a key cannot be used; names the domain and the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DKIM key {path} of {domain}: {why}")]
pub struct KeyError {
    pub domain: String,
    pub path: String,
    pub why: String,
}

impl Signer {
    /// Loads a PEM private key: PKCS#8 (RSA or Ed25519) or PKCS#1 RSA.
    pub fn load(domain: &str, cfg: &DkimKeyConfig) -> Result<Signer, KeyError> {
        let err = |why: String| KeyError { domain: domain.to_string(), path: cfg.key.display().to_string(), why };
        let pem = std::fs::read(&cfg.key).map_err(|e| err(format!("cannot read: {e}")))?;
        let der = rustls_pemfile::private_key(&mut pem.as_slice())
            .map_err(|e| err(format!("not PEM: {e}")))?
            .ok_or_else(|| err("holds no private key".into()))?;
        let ed25519 = match &der {
            PrivateKeyDer::Pkcs8(p8) => Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()).ok(),
            PrivateKeyDer::Pkcs1(_) => None,
            _ => return Err(err("not an RSA or Ed25519 key".into())),
        };
        let (key, public) = match ed25519 {
            Some(k) => {
                let public = k.public_key();
                (Key::Ed25519(template(DkimSigner::from_key(k), domain, &cfg.selector)), public)
            }
            None => {
                let k = RsaKey::<Sha256>::from_key_der(der).map_err(|e| err(e.to_string()))?;
                let pkcs1 = k.public_key();
                // A 2048-bit modulus makes a PKCS#1 key of 270 octets.
                if pkcs1.len() < 256 {
                    return Err(err("an RSA key shorter than 2048 bits (the large receivers ask 2048)".into()));
                }
                (Key::Rsa(template(DkimSigner::from_key(k), domain, &cfg.selector)), rsa_spki(&pkcs1))
            }
        };
        Ok(Signer { domain: domain.to_string(), selector: cfg.selector.clone(), path: cfg.key.clone(), key, public })
    }

    /// `rsa` or `ed25519`, as the DNS record's `k=` says.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa",
            Key::Ed25519(_) => "ed25519",
        }
    }

    /// Where the public key is published.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text.
    pub fn record_text(&self) -> String {
        public_record(self.algorithm(), &self.public)
    }

    /// Whether a published record's `p=` is this key's.
    pub fn matches_record(&self, txt: &str) -> bool {
        let p = txt.split(';').map(str::trim).find_map(|t| t.strip_prefix("p=")).unwrap_or("");
        let published: String = p.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD.decode(published).is_ok_and(|b| b == self.public)
    }

    /// The `DKIM-Signature:` header (with its CRLF) for `message`.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        let signature = match &self.key {
            Key::Rsa(k) => k.sign(message),
            Key::Ed25519(k) => k.sign(message),
        };
        let header = signature.map(|s| s.to_header()).map_err(|e| e.to_string())?;
        Ok(glue_final_semicolon(header))
    }
}

/// mail-auth folds a long `b=` so that the closing `;` sits on a line of
/// its own. Verifiers that delete the `b=` value but keep the whitespace
/// around it (dkimpy does) then hash `b= ;` where the signer hashed `b=;`,
/// and every RSA signature fails: the `;` goes back onto the value's line.
fn glue_final_semicolon(header: String) -> String {
    match header.strip_suffix(";\r\n").map(str::trim_end) {
        Some(value) => format!("{value};\r\n"),
        None => header,
    }
}

fn template<T: SigningKey>(signer: DkimSigner<T, NeedDomain>, domain: &str, selector: &str) -> DkimSigner<T, Done> {
    signer
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// `v=DKIM1; k=…; p=…` for a public key.
pub fn public_record(algorithm: &str, public: &[u8]) -> String {
    format!("v=DKIM1; k={algorithm}; p={}", base64::engine::general_purpose::STANDARD.encode(public))
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo, the form DKIM
/// records publish (what `openssl rsa -pubout` and opendkim-genkey write).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: &[u8] =
        &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let len = n.to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Every configured key, by the domain it signs for.
#[derive(Default)]
pub struct Signers {
    by_domain: BTreeMap<String, Vec<Signer>>,
}

impl Signers {
    /// Loads every `[[domain.dkim]]` key; all problems at once.
    pub fn load(keys: &BTreeMap<String, Vec<DkimKeyConfig>>) -> Result<Signers, Vec<KeyError>> {
        let mut by_domain = BTreeMap::new();
        let mut errors = Vec::new();
        for (domain, cfgs) in keys {
            let loaded: Vec<Signer> =
                cfgs.iter().filter_map(|c| Signer::load(domain, c).map_err(|e| errors.push(e)).ok()).collect();
            by_domain.insert(domain.clone(), loaded);
        }
        if errors.is_empty() { Ok(Signers { by_domain }) } else { Err(errors) }
    }

    pub fn all(&self) -> impl Iterator<Item = &Signer> {
        self.by_domain.values().flatten()
    }

    /// The keys that sign mail from `from_domain`: its own, else those of
    /// the nearest parent domain with keys (relaxed DMARC alignment).
    pub fn for_author(&self, from_domain: &str) -> &[Signer] {
        let mut d = from_domain.to_ascii_lowercase();
        loop {
            if let Some(keys) = self.by_domain.get(&d).filter(|k| !k.is_empty()) {
                return keys;
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent.to_string(),
                _ => return &[],
            }
        }
    }

    /// `message` with one signature per key of its author's domain on top;
    /// unchanged when that domain has none. The headers are returned
    /// separately so that the caller can prepend them to what it sends.
    pub fn sign(&self, from_domain: &str, message: &[u8]) -> Result<(String, Vec<String>), String> {
        let mut headers = String::new();
        let mut domains = Vec::new();
        for signer in self.for_author(from_domain) {
            headers.push_str(&signer.sign(message)?);
            domains.push(signer.domain.clone());
        }
        Ok((headers, domains))
    }
}

/// Writes a new private key (PKCS#8 PEM, mode 0600) and returns the TXT
/// record that publishes it.
pub fn generate(algorithm: &str, path: &Path) -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let (pkcs8, record) = match algorithm {
        "rsa" => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "generating an RSA key failed".to_string())?;
            let der = pair.as_der().map_err(|_| "encoding the key failed".to_string())?;
            let spki: aws_lc_rs::encoding::PublicKeyX509Der<'static> =
                pair.public_key().as_der().map_err(|_| "encoding the public key failed".to_string())?;
            (der.as_ref().to_vec(), public_record("rsa", spki.as_ref()))
        }
        "ed25519" => {
            let pair = aws_lc_rs::signature::Ed25519KeyPair::generate()
                .map_err(|_| "generating an Ed25519 key failed".to_string())?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                pair.as_der().map_err(|_| "encoding the key failed".to_string())?;
            (der.as_ref().to_vec(), public_record("ed25519", pair.public_key().as_ref()))
        }
        other => return Err(format!("{other:?} is not a DKIM algorithm (rsa or ed25519)")),
    };
    let body = base64::engine::general_purpose::STANDARD.encode(pkcs8);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    write_private(path, pem.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(record)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths() {
        let cases: &[(usize, &[u8])] =
            &[(3, &[0x03]), (127, &[0x7f]), (128, &[0x81, 0x80]), (270, &[0x82, 0x01, 0x0e])];
        for (n, want) in cases {
            let out = der(0x04, &vec![0; *n]);
            assert_eq!(&out[1..1 + want.len()], *want, "{n}");
            assert_eq!(out.len(), 1 + want.len() + n);
        }
    }

    fn signer(algorithm: &str) -> (tempfile::TempDir, Signer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let record = generate(algorithm, &path).unwrap();
        let s = Signer::load("one.test", &DkimKeyConfig { selector: "s1".into(), key: path }).unwrap();
        assert_eq!(s.record_text(), record, "the record from the loaded key is the one keygen printed");
        assert!(s.matches_record(&record));
        (dir, s)
    }

    #[test]
    fn signatures_name_the_domain_selector_and_algorithm() {
        for (algorithm, a) in [("rsa", "a=rsa-sha256"), ("ed25519", "a=ed25519-sha256")] {
            let (_dir, s) = signer(algorithm);
            let header = s.sign(b"From: a@one.test\r\nTo: b@two.test\r\nSubject: hi\r\n\r\nbody\r\n").unwrap();
            assert!(header.starts_with("DKIM-Signature:") && header.ends_with("\r\n"), "{header}");
            let flat: String = header.split_whitespace().collect();
            for want in [a, "d=one.test", "s=s1", "c=relaxed/relaxed"] {
                assert!(flat.contains(want), "{want} missing in {header}");
            }
            // From oversigned: listed once more than it appears.
            assert!(flat.to_ascii_lowercase().contains("from:from:"), "{header}");
        }
    }

    #[test]
    fn the_closing_semicolon_stays_on_the_value_line() {
        let cases = [
            ("DKIM-Signature: a=1; b=AAAA\r\n\tBBBB==\r\n\t;\r\n", "DKIM-Signature: a=1; b=AAAA\r\n\tBBBB==;\r\n"),
            ("DKIM-Signature: a=1; b=AAAA==;\r\n", "DKIM-Signature: a=1; b=AAAA==;\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(glue_final_semicolon(input.to_string()), want);
        }
    }

    #[test]
    fn parent_domains_sign_for_subdomains_but_not_for_others() {
        let (_dir, s) = signer("ed25519");
        let signers = Signers { by_domain: BTreeMap::from([("one.test".to_string(), vec![s])]) };
        assert_eq!(signers.for_author("one.test").len(), 1);
        assert_eq!(signers.for_author("News.One.Test").len(), 1);
        assert!(signers.for_author("two.test").is_empty());
        assert!(signers.for_author("test").is_empty());
        assert!(signers.for_author("evilone.test").is_empty());
    }
}
