//! One delivery job: pull, verify, deliver by SMTP, then report to the
//! sender's store. The host's answer is recorded (synced) before it is
//! reported, so a message the legacy host accepted is never sent twice.

use lettre::AsyncTransport;
use lettre::address::Envelope;

use super::hosts::{self, NoHost};
use super::render;
use crate::backoff::retry_delay;
use crate::context::Shared;
use crate::outbound::pool::Hop;
use crate::peer::PeerError;
use crate::proto::api::Notification;
use crate::proto::digest::sha256_field;
use crate::proto::{Address, RecipientId};
use crate::store::records::{Attempt, Delivery, Report, remember_attempt};
use crate::store::{LeasedDelivery, RecipientAction, Unavailable};

/// Local part prefix of the per-delivery return paths (`bounce+ID@domain`).
pub const RETURN_PREFIX: &str = "bounce+";

/// The delivery token of a return-path address, if it is one.
pub fn return_token(rcpt: &Address) -> Option<[u8; 8]> {
    crate::proto::hex::decode_array(rcpt.local().strip_prefix(RETURN_PREFIX)?)
}

/// How an attempt at the legacy host ended, short of success.
#[derive(Debug)]
enum Failure {
    /// Try again later.
    Temporary(String),
    /// The host refused it for good (its reply).
    Permanent(String),
    /// The message is no longer at the sender's store: nothing to do.
    Gone,
}

/// Runs one leased delivery job to its next state.
pub async fn run(s: &Shared, leased: LeasedDelivery) {
    let mut d = leased.delivery.clone();
    let n = d.notification.clone();
    let lease = s.config.notify.lease();
    let mut current = leased;
    if d.report.is_none() && moved_to_im2000(s, &current).await {
        return;
    }
    if d.report.is_none() {
        // The whole attempt (DNS, every host) ends well inside the job's
        // lease, so a lease never expires under a running attempt.
        let budget = s.config.notify.timeout * 4;
        let mut host = String::new();
        let outcome = tokio::time::timeout(budget, attempt(s, &n, &current.id, &mut host))
            .await
            .unwrap_or_else(|_| Err(Failure::Temporary(format!("no host answered within {}s", budget.as_secs()))));
        let label = match &outcome {
            Ok(()) => "delivered",
            Err(Failure::Permanent(_)) => "refused",
            Err(Failure::Temporary(_)) => "deferred",
            Err(Failure::Gone) => "gone",
        };
        let result = match &outcome {
            Ok(()) => "250 accepted".to_string(),
            Err(Failure::Permanent(r) | Failure::Temporary(r)) => r.clone(),
            Err(Failure::Gone) => "the message is no longer at its store".to_string(),
        };
        tracing::info!(store = %n.store, rid = %n.rid(), recipient = %n.recipient, host = %host,
            attempt = d.attempts, outcome = label, reply = ?result, "smtp delivery attempt");
        s.metrics.inc("imgate_smtp_deliveries_total", "outcome", label);
        remember_attempt(&mut d.history, Attempt { at: s.clock.now(), host, result });
        match outcome {
            Ok(()) => d.report = Some(Report::Delivered),
            Err(Failure::Permanent(reply)) => d.report = Some(Report::Refused(reply)),
            Err(Failure::Gone) => {
                save(s, &current, None).await;
                return;
            }
            Err(Failure::Temporary(reason)) => {
                let now = s.clock.now();
                let cfg = &s.config.notify;
                if now.saturating_sub(d.first_attempt_at.unwrap_or(now)) >= cfg.max_retry_age.as_millis() as u64 {
                    d.report = Some(Report::Refused(format!("gave up: {reason}")));
                } else {
                    let delay = retry_delay(d.attempts, cfg.retry_min, cfg.retry_max, &mut rand::rng());
                    d.last_error = Some(reason);
                    save(s, &current, Some((now + delay.as_millis() as u64, d))).await;
                    return;
                }
            }
        }
        // Record the host's answer before telling the store.
        let now = s.clock.now();
        let due = now + lease.as_millis() as u64;
        let saved = if d.report == Some(Report::Delivered) {
            let (st, l, next) = (s.store.clone(), current.clone(), (due, d.clone()));
            matches!(s.blocking(move || st.delivered(&l, next, now)).await, Ok(Ok(())))
        } else {
            save(s, &current, Some((due, d.clone()))).await
        };
        if !saved {
            tracing::error!("recording a delivery outcome failed; the lease will retry it");
            return;
        }
        current = LeasedDelivery { id: current.id, due, delivery: d.clone() };
    }
    let report = d.report.clone().expect("set above");
    if let (Report::Refused(reason), Some(to)) = (&report, d.dsn_to.clone()) {
        // A smarthost user is a legacy user: they get one DSN, then the job
        // forgets them so that a retried report does not send another.
        if let Err(e) = send_dsn(s, &n, &to, reason).await {
            tracing::error!(error = %e, "storing a DSN failed; will try again");
            let retry = s.clock.now() + s.config.notify.retry_min.as_millis() as u64;
            save(s, &current, Some((retry, d))).await;
            return;
        }
        d.dsn_to = None;
        let due = current.due;
        if !save(s, &current, Some((due, d.clone()))).await {
            return;
        }
    }
    match report_to_store(s, &n, &report).await {
        Ok(()) => {
            tracing::info!(store = %n.store, rid = %n.rid(), recipient = %n.recipient, report = ?report,
                "delivery outcome reported to the store");
            save(s, &current, None).await;
        }
        Err(e) => {
            let now = s.clock.now();
            let cfg = &s.config.notify;
            d.attempts += 1;
            d.last_error = Some(format!("reporting to {}: {e}", n.store));
            let delay = retry_delay(d.attempts, cfg.retry_min, cfg.retry_max, &mut rand::rng());
            save(s, &current, Some((now + delay.as_millis() as u64, d))).await;
        }
    }
}

async fn save(s: &Shared, leased: &LeasedDelivery, next: Option<(u64, Delivery)>) -> bool {
    let (st, l) = (s.store.clone(), leased.clone());
    match s.blocking(move || st.finish_delivery(&l, next)).await {
        Ok(Ok(())) => true,
        Ok(Err(e @ crate::store::StoreError::LeaseLost)) => {
            tracing::warn!(error = %e, rid = %leased.delivery.notification.rid(), "a late delivery result");
            false
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "recording a delivery failed");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "recording a delivery failed");
            false
        }
    }
}

/// A user moved to IM2000 while their SMTP delivery waited: the job ends
/// and the notification goes to their inbox instead. `true` if so.
async fn moved_to_im2000(s: &Shared, leased: &LeasedDelivery) -> bool {
    let n = &leased.delivery.notification;
    let Ok(rcpt) = n.recipient.parse::<Address>() else { return false };
    // A relay for a submission user, or a user without a mailbox here (whose
    // domain moved, not they): SMTP as before.
    if leased.delivery.dsn_to.is_some()
        || !s.dir().config.is_local_domain(rcpt.domain())
        || !s.dir().users.contains(&rcpt)
        || s.route(&rcpt) != crate::config::Route::Im2000
    {
        return false;
    }
    let (st, l, key, now) = (s.store.clone(), leased.clone(), rcpt.key(), s.clock.now());
    match s.blocking(move || st.delivery_to_inbox(&l, &key, now)).await {
        Ok(Ok(seq)) => {
            tracing::info!(store = %n.store, rid = %n.rid(), recipient = %rcpt, seq, "queued delivery rerouted to the IM2000 inbox");
            s.metrics.inc("imgate_smtp_deliveries_total", "outcome", "rerouted");
            true
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "rerouting a delivery failed; the lease will retry it");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "rerouting a delivery failed; the lease will retry it");
            true
        }
    }
}

/// A message pulled for delivery.
struct Pulled {
    content: Vec<u8>,
    /// Written here: in this node's own store, by a local user or by the
    /// node itself (a DSN) — never mail the MX took from outside. Only such
    /// mail is DKIM-signed.
    ours: bool,
}

/// The message from the sender's store: this node's own, or a peer's.
async fn pull(s: &Shared, n: &Notification) -> Result<Pulled, Failure> {
    if s.dir().config.is_local_domain(&n.store) {
        let id: RecipientId = n.id.parse().map_err(|_| Failure::Gone)?;
        let st = s.store.clone();
        let found = s
            .blocking(move || -> Result<_, crate::store::StoreError> {
                match st.find(&id)? {
                    Ok(f) => Ok(Ok((st.body(&f.message_id)?, f.message.account))),
                    Err(u) => Ok(Err(u)),
                }
            })
            .await
            .map_err(|e| Failure::Temporary(e.to_string()))?
            .map_err(|e| Failure::Temporary(e.to_string()))?;
        return match found {
            Ok((Some(content), account)) => {
                Ok(Pulled { content, ours: !account.starts_with(crate::store::schema::OUTSIDE_ACCOUNT) })
            }
            Ok((None, _)) | Err(Unavailable::Gone) | Err(Unavailable::Unknown) => Err(Failure::Gone),
        };
    }
    match s.peers.pull(&n.store, &n.id, n.size).await {
        Ok(content) => Ok(Pulled { content, ours: false }),
        Err(PeerError::Status { status: 404 | 410, .. }) => Err(Failure::Gone),
        Err(e) => Err(Failure::Temporary(format!("retrieving from {}: {e}", n.store))),
    }
}

/// One attempt; `tried` names the last host tried.
async fn attempt(s: &Shared, n: &Notification, job: &[u8; 8], tried: &mut String) -> Result<(), Failure> {
    let Pulled { content, ours } = pull(s, n).await?;
    if sha256_field(&content) != n.digest {
        return Err(Failure::Temporary(format!("the content from {} does not match its digest", n.store)));
    }
    render::relayable(&content).map_err(|why| Failure::Permanent(why.into()))?;
    let rcpt: Address = n.recipient.parse().map_err(|e| Failure::Permanent(format!("bad recipient: {e}")))?;
    let hops = hosts::plan(s, &n.store, rcpt.domain()).await.map_err(|e| match e {
        NoHost::Permanent(m) => Failure::Permanent(m),
        NoHost::Temporary(m) => Failure::Temporary(m),
    })?;
    // SMTP mail this gateway took in already carries its Received header for
    // this host: relaying it on is one hop, not two.
    let from_our_smtp =
        s.dir().config.is_local_domain(&n.store) && n.origin.as_ref().is_some_and(|o| o.protocol == "smtp");
    let received = if from_our_smtp {
        String::new()
    } else {
        let date = chrono::DateTime::from_timestamp_millis(s.clock.now() as i64).unwrap_or_default().to_rfc2822();
        render::received_header(&n.store, &s.config.hostname, &n.id[..8.min(n.id.len())], &date)
    };
    let mut octets = render::for_smtp(&received, &content);
    if ours {
        octets = sign(s, octets)?;
    }

    // A per-delivery return path on the gateway, so that late bounces come
    // back here rather than to anyone else.
    let return_path = format!("{RETURN_PREFIX}{}@{}", crate::proto::hex::encode(job), s.config.smtp.store_domain);
    let envelope = Envelope::new(
        Some(return_path.parse().map_err(|e| Failure::Permanent(format!("return path: {e}")))?),
        vec![n.recipient.parse().map_err(|e| Failure::Permanent(format!("recipient: {e}")))?],
    )
    .map_err(|e| Failure::Permanent(e.to_string()))?;

    let dns = s.peers.locator().dns();
    let mut last = String::from("no host to try");
    for hop in hops {
        let (host, port) = (&hop.host, hop.port);
        let ips = match dns.ips(host).await {
            Ok(ips) if !ips.is_empty() => ips,
            Ok(_) => {
                last = format!("{host} has no address");
                continue;
            }
            Err(e) => {
                last = format!("{host}: {e}");
                continue;
            }
        };
        for ip in ips {
            *tried = format!("{host}:{port}");
            if s.config.smtp.is_own_listener(ip, port) {
                return Err(Failure::Permanent(format!("route loop: {host}:{port} is this gateway")));
            }
            match send_to(s, ip, &hop, &envelope, &octets).await {
                Ok(()) => return Ok(()),
                Err(Sent::Refused(reply)) => return Err(Failure::Permanent(reply)),
                // A 4xx or no answer: the next host may do better (RFC 5321 §5.1).
                Err(Sent::Deferred(why)) => last = why,
            }
        }
    }
    Err(Failure::Temporary(last))
}

/// `octets` with the DKIM signatures of its `From:` domain on top, when
/// this node holds keys for it. A key that fails to sign defers the
/// delivery: unsigned mail from a signing domain would fail DMARC.
fn sign(s: &Shared, octets: Vec<u8>) -> Result<Vec<u8>, Failure> {
    let from = crate::proto::from::from_addresses(&octets);
    let Some(domain) = from.first().and_then(|a| a.rsplit_once('@')).map(|(_, d)| d.to_string()) else {
        return Ok(octets);
    };
    // lettre's terminator restores the final CRLF the signed body has.
    let mut message = octets;
    message.extend_from_slice(b"\r\n");
    let (headers, domains) =
        s.dkim().sign(&domain, &message).map_err(|e| Failure::Temporary(format!("DKIM signing as {domain}: {e}")))?;
    for d in &domains {
        s.metrics.inc("imgate_dkim_signed_total", "domain", d);
    }
    let mut out = headers.into_bytes();
    out.extend_from_slice(&message[..message.len() - 2]);
    Ok(out)
}

/// A host's answer short of acceptance.
enum Sent {
    Refused(String),
    Deferred(String),
}

/// One SMTP transaction with one host, by address, TLS named for the host.
async fn send_to(s: &Shared, ip: std::net::IpAddr, hop: &Hop, envelope: &Envelope, octets: &[u8]) -> Result<(), Sent> {
    let (host, port) = (&hop.host, hop.port);
    let timeout = s.config.notify.timeout;
    let dest = s
        .transports
        .get(ip, hop, &s.config.hostname, timeout, s.config.smtp.relay_concurrency)
        .map_err(Sent::Deferred)?;
    let _slot = dest.slots.acquire().await.map_err(|e| Sent::Deferred(e.to_string()))?;
    // lettre's own timeout covers only the connection: bound the whole send.
    match tokio::time::timeout(timeout * 4, dest.transport.send_raw(envelope, octets)).await {
        Err(_) => Err(Sent::Deferred(format!("{host}:{port} timed out"))),
        Ok(Ok(_)) => Ok(()),
        // A relay refusing our credentials refuses us, not the message:
        // the operator fixes the password and the mail goes (RFC 4954 §6).
        Ok(Err(e)) if hop.credentials.is_some() && e.status().is_some_and(|c| auth_refused(&c.to_string())) => {
            Err(Sent::Deferred(format!("{host}:{port} refused our credentials: {}", reply_text(&e))))
        }
        Ok(Err(e)) if e.is_permanent() => Err(Sent::Refused(reply_text(&e))),
        Ok(Err(e)) if e.is_tls() || hop.because.is_some() && e.to_string().contains("STARTTLS") => {
            let because = hop.because.as_deref().unwrap_or("this host");
            Err(Sent::Deferred(format!("{host}:{port}: TLS required by {because} failed: {}", reply_text(&e))))
        }
        // lettre refuses to send 8-bit content or UTF-8 addresses to a host
        // that lacks 8BITMIME or SMTPUTF8: that will not change by retrying.
        Ok(Err(e)) if e.is_client() && e.to_string().contains("does not support") => {
            Err(Sent::Refused(format!("{host}:{port} cannot take this message: {}", reply_text(&e))))
        }
        Ok(Err(e)) => Err(Sent::Deferred(format!("{host}:{port}: {}", reply_text(&e)))),
    }
}

/// Whether an SMTP reply code refuses authentication: 535 (bad
/// credentials), 530 (authentication required), 534 (mechanism too weak).
fn auth_refused(code: &str) -> bool {
    matches!(code, "535" | "530" | "534" | "538")
}

/// "550 5.1.1 …" from a lettre error, or its description.
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    crate::peer::error_chain(e)
}

async fn report_to_store(s: &Shared, n: &Notification, report: &Report) -> Result<(), String> {
    let actions: Vec<(RecipientAction, &str, Option<String>)> = match report {
        Report::Delivered => vec![(RecipientAction::Silence, "silence", None), (RecipientAction::Unpin, "unpin", None)],
        Report::Refused(why) => vec![(RecipientAction::Refuse(why.clone()), "refuse", Some(why.clone()))],
    };
    for (action, name, reason) in actions {
        if s.dir().config.is_local_domain(&n.store) {
            let id: RecipientId = n.id.parse().map_err(|_| "bad identifier".to_string())?;
            let (st, now) = (s.store.clone(), s.clock.now());
            s.blocking(move || st.recipient_action(&id, action, now))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        } else {
            match s.peers.recipient_action(&n.store, &n.id, name, reason.as_deref()).await {
                Ok(()) | Err(PeerError::Status { status: 404 | 410, .. }) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

/// Stores a DSN for `to` (a local user) in their domain's store; it reaches
/// their inbox like any message.
async fn send_dsn(s: &Shared, n: &Notification, to: &str, reason: &str) -> Result<(), String> {
    let user: Address = to.parse().map_err(|e| format!("{to}: {e}"))?;
    let headers = pull(s, n).await.ok().map(|Pulled { content: c, .. }| {
        let len = crate::proto::digest::header_section_len(&c);
        super::dsn::truncate_headers(&c[..len]).to_vec()
    });
    let now = s.clock.now();
    let date = chrono::DateTime::from_timestamp_millis(now as i64).unwrap_or_default().to_rfc2822();
    let unique = crate::proto::MessageId::random().to_string();
    let content = super::dsn::Bounce {
        hostname: &s.config.hostname,
        from_domain: user.domain(),
        sender: to,
        recipient: &n.recipient,
        reason,
        original_headers: headers.as_deref(),
        date: &date,
        unique: &unique,
    }
    .render();
    let new = crate::store::NewMessage {
        store: user.domain().to_string(),
        sender: format!("MAILER-DAEMON@{}", user.domain()).parse().map_err(|e| format!("{e}"))?,
        // The submitter's own account: a user whose mail keeps failing pays
        // for the reports, within their quota, like any mail they keep.
        account: user.key(),
        also_charge: vec![],
        recipients: vec![user.clone()],
        relay: vec![],
        lists: vec![],
        lifetime_ms: s.config.store.default_lifetime.as_millis() as u64,
        content,
        origin: None,
        file_in_sent: false,
    };
    let (st, quota) = (s.store.clone(), s.dir().users.quota(&user).unwrap_or(s.config.store.quota));
    s.blocking(move || st.submit(new, now, quota)).await.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
    s.metrics.inc("imgate_dsns_sent_total", "kind", "failure");
    s.wake.notify_one();
    Ok(())
}
