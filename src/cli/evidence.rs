//! What `imgate fetch` can check of a message's origin by itself: the DKIM
//! signatures of the content it pulled, through its own resolver — beside
//! the verdicts the notification carried, which are only the word of the
//! store that asserted them.

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use crate::config::DnsConfig;
use crate::proto::api::Notification;

/// One line for the user: what was asserted, by whom, and what this
/// command found itself.
pub async fn describe(n: &Notification, content: &[u8], dns: &DnsConfig) -> String {
    let asserted = match &n.origin {
        Some(o) if o.spf.is_some() || o.dkim.is_some() || o.dmarc.is_some() => {
            let word = |v: &Option<String>| v.as_deref().unwrap_or("none").to_string();
            let from = o.header_from.as_deref().map(|d| format!(" header.from={d}")).unwrap_or_default();
            let policy = o.dmarc_policy.as_deref().map(|p| format!(" (policy: {p})")).unwrap_or_default();
            format!(
                "asserted by {}: spf={} dkim={} dmarc={}{from}{policy}",
                o.asserted_by.as_deref().unwrap_or(&n.store),
                word(&o.spf),
                word(&o.dkim),
                word(&o.dmarc)
            )
        }
        _ => format!("nothing asserted by {}", n.store),
    };
    format!("{asserted}; checked here: dkim={}", dkim_here(content, dns).await)
}

/// The DKIM result of `content`, checked with this machine's resolver:
/// `pass (d=…)` for the first valid signature, else the first failure.
async fn dkim_here(content: &[u8], dns: &DnsConfig) -> String {
    let Ok((rc, opts)) = crate::dns::resolver_parts(dns) else { return "unchecked (no resolver)".into() };
    let Ok(auth) = MessageAuthenticator::new(rc, opts) else { return "unchecked (no resolver)".into() };
    let Some(message) = AuthenticatedMessage::parse(content) else { return "none (unparseable)".into() };
    let results = auth.verify_dkim(&message).await;
    if let Some(pass) = results.iter().find(|r| r.result() == &DkimResult::Pass) {
        let domain = pass.signature().map(|s| s.d.clone()).unwrap_or_default();
        return format!("pass (d={domain})");
    }
    match results.first() {
        None => "none".into(),
        Some(r) => crate::smtp_in::verdicts::dkim_word(r.result()).to_string(),
    }
}
