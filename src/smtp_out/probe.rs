//! Asking a legacy host whether a user exists (MAIL FROM, RCPT TO, QUIT),
//! so that a notification for an unknown legacy user is answered `nouser`
//! at once instead of being accepted and refused after a delivery attempt.

use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::{Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

use super::hosts::{NoHost, smtp_hosts};
use crate::context::Shared;
use crate::proto::Address;

/// What the legacy host said about a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Exists,
    /// A permanent refusal at RCPT, with the host's reply.
    NoUser(String),
    /// No answer worth trusting now (host down, 4xx, DNS).
    Unknown(String),
}

/// Probes the legacy host of `rcpt`'s domain.
pub async fn recipient(s: &Shared, rcpt: &Address) -> Verdict {
    let hosts = match smtp_hosts(s, rcpt.domain()).await {
        Ok(h) => h,
        Err(NoHost::Permanent(why)) | Err(NoHost::Temporary(why)) => return Verdict::Unknown(why),
    };
    let Ok(to) = rcpt.to_string().parse::<lettre::Address>() else {
        return Verdict::NoUser("not an address the legacy host can take".into());
    };
    // Like Postfix's address verification: a sender that never receives
    // mail, not the null sender (which some hosts refuse outright).
    let Ok(from) = format!("double-bounce@{}", s.config.smtp.store_domain).parse::<lettre::Address>() else {
        return Verdict::Unknown("no store domain to probe from".into());
    };
    let hello = ClientId::Domain(s.config.hostname.clone());
    let timeout = Some(s.config.notify.timeout);
    let mut last = String::from("no host to ask");
    for (host, port) in hosts {
        let ips = s.peers.locator().dns().ips(&host).await.unwrap_or_default();
        for ip in ips {
            // The probe shares the host's delivery slots: it never puts more
            // than `relay_concurrency` connections on one legacy host.
            let per_host = s.config.smtp.relay_concurrency;
            let hop = crate::outbound::pool::Hop::plain(host.clone(), port);
            let dest = s.transports.get(ip, &hop, &s.config.hostname, s.config.notify.timeout, per_host);
            let _slot = match dest {
                Ok(d) => d.slots.acquire_owned().await.ok(),
                Err(_) => None,
            };
            let mut conn = match AsyncSmtpConnection::connect_tokio1((ip, port), timeout, &hello, None, None).await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("{host}:{port}: {e}");
                    continue;
                }
            };
            let verdict = match conn.command(Mail::new(Some(from.clone()), vec![])).await {
                Err(e) => Verdict::Unknown(format!("{host}:{port} at MAIL: {e}")),
                Ok(_) => match conn.command(Rcpt::new(to.clone(), vec![])).await {
                    Ok(_) => Verdict::Exists,
                    Err(e) if e.is_permanent() => Verdict::NoUser(crate::peer::error_chain(&e)),
                    Err(e) => Verdict::Unknown(format!("{host}:{port} at RCPT: {e}")),
                },
            };
            let _ = conn.quit().await;
            return verdict;
        }
    }
    Verdict::Unknown(last)
}
