//! End of data: judge the sender (SPF, DKIM, DMARC for MX mail), add the one
//! Received header for this SMTP hop, store ONE copy with an identifier and
//! a queued notification per recipient — synced — and only then say 250.

use std::net::IpAddr;

use super::reply::Reply;
use super::session::{Envelope, ListenerKind};
use super::verdicts::{Disposition, Verdicts, disposition, verify_sender};
use crate::context::Shared;
use crate::proto::api::Origin;
use crate::proto::{Address, MessageId};
use crate::store::schema::OUTSIDE_ACCOUNT;
use crate::store::{NewMessage, StoreError};

/// The quota accounts an outside sender's mail is charged to: the sender's
/// address and the sender's domain (the client address for a null sender,
/// whose mail no domain vouches for).
pub fn outside_accounts(sender: Option<&Address>, ip: IpAddr) -> (String, String) {
    match sender {
        Some(a) => (format!("{OUTSIDE_ACCOUNT}{}", a.key()), format!("group:{OUTSIDE_ACCOUNT}{}", a.domain())),
        None => (format!("{OUTSIDE_ACCOUNT}<>@[{ip}]"), format!("group:{OUTSIDE_ACCOUNT}[{ip}]")),
    }
}

/// The trace header for this hop (RFC 5321 §4.4, RFC 3848 protocol names).
pub fn received_header(env: &Envelope, ip: IpAddr, hostname: &str, id: &MessageId, date: &str) -> String {
    let proto = match (env.esmtp, env.tls, env.authenticated.is_some()) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let helo: String = env.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    let ip = match ip {
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
        v4 => v4.to_string(),
    };
    let mut h = format!("Received: from {helo} ([{ip}])\r\n\tby {hostname} (imgate) with {proto} id {id}");
    if let [only] = env.recipients.as_slice() {
        h.push_str(&format!("\r\n\tfor <{only}>"));
    }
    h.push_str(&format!(";\r\n\t{date}\r\n"));
    h
}

/// Stores an accepted message and says how it went, as an SMTP reply.
pub async fn accept(s: &Shared, kind: ListenerKind, ip: IpAddr, mut env: Envelope, data: Vec<u8>) -> Reply {
    let smtp = &s.config.smtp;
    // Bounces to the return paths of our SMTP deliveries are consumed here:
    // they become a refusal at the sender's store, never a stored message.
    let (returns, normal): (Vec<Address>, Vec<Address>) = env
        .recipients
        .drain(..)
        .partition(|r| r.domain() == smtp.store_domain && crate::smtp_out::deliver::return_token(r).is_some());
    env.recipients = normal;
    if !returns.is_empty() {
        if let Err(reply) = consume_bounce(s, &returns, &data).await {
            return reply;
        }
        if env.recipients.is_empty() {
            return Reply::new(250, "2.0.0", "Ok: delivery report processed");
        }
    }
    if let (Some(user), ListenerKind::Submission) = (&env.authenticated, kind)
        && let Err(why) = s.dir().check_from(user, &data)
    {
        s.metrics.inc("imgate_rate_limited_total", "what", "from_mismatch");
        return Reply::new(550, "5.7.1", why);
    }
    let id = MessageId::random();
    let date = chrono::DateTime::from_timestamp_millis(s.clock.now() as i64).unwrap_or_default().to_rfc2822();
    let mut content = received_header(&env, ip, &s.config.hostname, &id, &date).into_bytes();
    content.extend_from_slice(&data);

    let verdicts = match (&s.authenticator, kind) {
        (Some(a), ListenerKind::Mx) if smtp.verify_sender => {
            verify_sender(a, ip, &env.helo, &s.config.hostname, env.sender.as_ref(), &data).await
        }
        _ => Verdicts::default(),
    };
    match disposition(&verdicts, smtp.dmarc_enforce) {
        Disposition::Refuse(why) => {
            s.metrics.inc("imgate_dmarc_total", "disposition", "refused");
            tracing::info!(client = %ip, header_from = ?verdicts.header_from, "refused by the sender domain's DMARC policy");
            return Reply::new(550, "5.7.1", why);
        }
        Disposition::Mark => {
            s.metrics.inc("imgate_dmarc_total", "disposition", "marked");
        }
        Disposition::Accept if verdicts.dmarc.is_some() => {
            s.metrics.inc("imgate_dmarc_total", "disposition", "accepted")
        }
        Disposition::Accept => {}
    }
    let origin = Origin {
        protocol: "smtp".into(),
        client_ip: Some(ip.to_string()),
        helo: Some(env.helo.clone()),
        spf: verdicts.spf,
        dkim: verdicts.dkim,
        dmarc: verdicts.dmarc,
        header_from: verdicts.header_from,
        dmarc_policy: verdicts.dmarc_policy,
        asserted_by: None,
    };
    let (store_domain, sender, account, quota, also_charge) = match &env.authenticated {
        // A local user: their own message, in their own domain's store,
        // trackable with their own account.
        Some(user) => (
            user.domain().to_string(),
            user.clone(),
            user.key(),
            s.dir().users.quota(user).unwrap_or(s.config.store.quota),
            vec![],
        ),
        None => {
            let (account, group) = outside_accounts(env.sender.as_ref(), ip);
            let sender = env
                .sender
                .clone()
                .unwrap_or_else(|| format!("MAILER-DAEMON@{}", smtp.store_domain).parse().expect("a valid address"));
            (smtp.store_domain.clone(), sender, account, smtp.sender_quota, vec![(group, smtp.sender_domain_quota)])
        }
    };
    let new = NewMessage {
        store: store_domain,
        sender,
        account,
        also_charge,
        recipients: env.recipients.iter().filter(|r| !env.relay.contains(r)).cloned().collect(),
        relay: env.relay.clone(),
        lists: vec![],
        lifetime_ms: s.config.store.default_lifetime.as_millis() as u64,
        content,
        origin: Some(origin),
        file_in_sent: env.authenticated.is_some(),
    };
    let (store, now) = (s.store.clone(), s.clock.now());
    let stored = match s.store.submit_here(id, new, now, quota).await {
        Ok(stored) => stored,
        Err(new) => s.blocking(move || store.submit_with_id(id, new, now, quota)).await.and_then(|r| r),
    };
    match stored {
        Ok(sub) => {
            s.wake.notify_one();
            s.metrics.inc("imgate_messages_stored_total", "origin", "smtp");
            tracing::info!(msg = %sub.message, client = %ip, recipients = sub.recipients.len(),
                size = sub.size, "SMTP message stored");
            Reply::new(250, "2.0.0", format!("Ok: queued as {}", sub.message))
        }
        Err(StoreError::OverQuota { .. }) => {
            s.metrics.inc("imgate_rate_limited_total", "what", "sender_quota");
            Reply::new(452, "4.3.1", "Insufficient storage for this sender; try later")
        }
        Err(e) if e.is_disk_full() => {
            tracing::error!(error = %e, "storing an SMTP message failed: the disk is full");
            Reply::new(452, "4.3.1", "Insufficient system storage; message not accepted, try again later")
        }
        Err(e) => {
            tracing::error!(error = %e, "storing an SMTP message failed");
            Reply::new(451, "4.3.0", "Local storage error; message not accepted, try again later")
        }
    }
}

/// Turns a bounce for our deliveries into refusal reports (queued, synced).
async fn consume_bounce(s: &Shared, returns: &[Address], data: &[u8]) -> Result<(), Reply> {
    let Some(reason) = crate::smtp_out::dsn::failure_reason(data) else {
        // A delay or success notice: nothing for the sender's store.
        return Ok(());
    };
    for r in returns {
        let Some(token) = crate::smtp_out::deliver::return_token(r) else { continue };
        let (st, why, now) = (s.store.clone(), reason.clone(), s.clock.now());
        match s.blocking(move || st.bounce_received(token, &why, now)).await {
            Ok(Ok(known)) => {
                tracing::info!(token = %r.local(), known, reason = ?reason, "late bounce received");
            }
            _ => return Err(Reply::new(451, "4.3.0", "Local storage error; try again later")),
        }
    }
    s.wake.notify_one();
    Ok(())
}
