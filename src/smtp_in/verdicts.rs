//! Judging the sender of MX mail: SPF on the envelope, DKIM on the content,
//! DMARC on the RFC 5322 `From:` domain with SPF and DKIM alignment (RFC
//! 7489), all named as RFC 8601 names them. What the DMARC policy asks for
//! is decided here too: refuse in the session, mark, or nothing.

use std::net::IpAddr;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, SpfResult};

use crate::proto::Address;

/// SPF, DKIM and DMARC verdicts as RFC 8601 result words, with the
/// `From:` domain DMARC judged and the policy it asked for on failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub spf: Option<String>,
    pub dkim: Option<String>,
    pub dmarc: Option<String>,
    /// The RFC 5322 `From:` domain the DMARC verdict is for.
    pub header_from: Option<String>,
    /// `reject` or `quarantine`: what the domain's policy asks for a
    /// message that failed DMARC (`None` when it passed or asks nothing).
    pub dmarc_policy: Option<String>,
}

/// What the session does with a message, given its verdicts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Accept,
    /// Filed, with the verdicts marking it (the user's client shows it).
    Mark,
    /// Refused in the session: the domain asked for it.
    Refuse(String),
}

/// `enforce` false: a `p=reject` failure is only marked, as `p=quarantine`.
pub fn disposition(v: &Verdicts, enforce: bool) -> Disposition {
    match (v.dmarc_policy.as_deref(), enforce) {
        (Some("reject"), true) => Disposition::Refuse(format!(
            "DMARC policy of {} rejects this message (From: domain not aligned with a passing SPF or DKIM)",
            v.header_from.as_deref().unwrap_or("the sender's domain")
        )),
        (Some(_), _) => Disposition::Mark,
        (None, _) => Disposition::Accept,
    }
}

/// Checks the sender of MX mail through the node's resolver.
pub async fn verify_sender(
    auth: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    hostname: &str,
    sender: Option<&Address>,
    data: &[u8],
) -> Verdicts {
    let mail_from = sender.map(Address::to_string);
    let spf = match &mail_from {
        Some(from) => auth.verify_spf(SpfParameters::verify_mail_from(ip, helo, hostname, from)).await,
        None => auth.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname)).await,
    };
    let spf_word = Some(spf_word(&spf.result()).to_string());
    let Some(message) = AuthenticatedMessage::parse(data) else {
        return Verdicts { spf: spf_word, ..Verdicts::default() };
    };
    let dkim = auth.verify_dkim(&message).await;
    // The best signature speaks for the message: one pass is a pass.
    let dkim_word = dkim.iter().map(|d| dkim_word(d.result())).min_by_key(|w| dkim_rank(w)).unwrap_or("none");
    // The SPF identity DMARC aligns with: the MAIL FROM domain, or the
    // HELO name for a null sender (RFC 7489 §4.1).
    let spf_domain = sender.map_or(helo.to_string(), |s| s.domain().to_string());
    let dmarc = auth.verify_dmarc(DmarcParameters::new(&message, &dkim, &spf_domain, &spf)).await;
    let result = dmarc.result();
    let dmarc_word = dmarc_word(&result);
    let policy = match (&result, dmarc.policy()) {
        (DmarcResult::Fail(_), Policy::Reject) => Some("reject".to_string()),
        (DmarcResult::Fail(_), Policy::Quarantine) => Some("quarantine".to_string()),
        _ => None,
    };
    Verdicts {
        spf: spf_word,
        dkim: Some(dkim_word.to_string()),
        dmarc: Some(dmarc_word.to_string()),
        header_from: (!dmarc.domain().is_empty()).then(|| dmarc.domain().to_lowercase()),
        dmarc_policy: policy,
    }
}

/// RFC 8601 §2.7.2 names.
fn spf_word(r: &SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// RFC 8601 §2.7.1 names. A body that no longer matches its signature's
/// hash failed verification (RFC 6376 §6.1.3): `fail`, not `neutral`.
pub fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Fail(_) => "fail",
        DkimResult::Neutral(mail_auth::Error::Dkim(mail_auth::dkim::DkimError::FailedBodyHashMatch)) => "fail",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::TempError(_) => "temperror",
        DkimResult::PermError(_) => "permerror",
        DkimResult::None => "none",
    }
}

fn dkim_rank(word: &str) -> u8 {
    match word {
        "pass" => 0,
        "fail" => 1,
        "temperror" => 2,
        "permerror" => 3,
        "neutral" => 4,
        _ => 5,
    }
}

/// The names RFC 7489 §11.2 registers for RFC 8601 headers.
fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::Error;
    use mail_auth::dkim::DkimError;

    #[test]
    fn dkim_result_names() {
        let cases = [
            (DkimResult::Pass, "pass"),
            (DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)), "fail"),
            (DkimResult::Fail(Error::Crypto(mail_auth::common::crypto::CryptoError::FailedVerification)), "fail"),
            (DkimResult::Neutral(Error::Dkim(DkimError::SignatureExpired)), "neutral"),
            (DkimResult::TempError(Error::Io("timeout".into())), "temperror"),
            (DkimResult::PermError(Error::Dkim(DkimError::UnsupportedAlgorithm)), "permerror"),
            (DkimResult::None, "none"),
        ];
        for (r, want) in cases {
            assert_eq!(dkim_word(&r), want, "{r:?}");
        }
    }

    #[test]
    fn dmarc_dispositions() {
        let v = |policy: Option<&str>| Verdicts {
            dmarc: Some(if policy.is_some() { "fail" } else { "pass" }.into()),
            header_from: Some("sender.test".into()),
            dmarc_policy: policy.map(str::to_string),
            ..Verdicts::default()
        };
        let cases = [
            (None, true, Disposition::Accept),
            (Some("quarantine"), true, Disposition::Mark),
            (Some("quarantine"), false, Disposition::Mark),
            (Some("reject"), false, Disposition::Mark),
        ];
        for (policy, enforce, want) in cases {
            assert_eq!(disposition(&v(policy), enforce), want, "{policy:?} {enforce}");
        }
        let Disposition::Refuse(why) = disposition(&v(Some("reject")), true) else { panic!("not refused") };
        assert!(why.contains("sender.test"), "{why}");
    }
}
