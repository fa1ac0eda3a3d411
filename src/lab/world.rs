//! The lab's world for one model: a DNS server, and for every domain of the
//! scenario a party — a legacy MTA ([`super::mta`]) or an imgate node — with
//! a [`Link`] in front that DNS points at. Parties act as their users would:
//! send, read, recall; the world says what each holds and whether anything
//! is still to do.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::net::TcpListener;

use super::dns::Dns;
use super::link::{Link, Traffic};
use super::mailbox::Mailboxes;
use super::mailbox::message_id_of;
use super::mta::Mta;
use super::receiver::Receiver;
use super::scenario::Scenario;
use super::{LabError, Model};
use crate::clock::{Clock, ManualClock, Millis};
use crate::config::Config;
use crate::node::{Node, NodeParts};
use crate::proto::api::{Notification, SubmitResponse, TrackResponse};
use crate::proto::{MessageId, RecipientId};

/// Every lab user's password.
const PASSWORD: &str = "lab-password";

/// What a party holds at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    /// Message copies: mailbox copies and queued messages (SMTP), stored
    /// bodies (IM2000).
    pub copies: u64,
    pub copy_bytes: u64,
    /// IM2000 notifications in inboxes.
    pub notifications: u64,
    pub notification_bytes: u64,
}

impl Holding {
    pub fn bytes(&self) -> u64 {
        self.copy_bytes + self.notification_bytes
    }
}

enum Server {
    /// A legacy domain whose users send (and so receive bounces).
    Legacy(Mta),
    /// A legacy domain that only receives.
    Mailin(Receiver),
    Im2000 {
        node: Box<Node>,
        private: SocketAddr,
    },
}

impl Server {
    fn mailboxes(&self) -> Option<&Mailboxes> {
        match self {
            Server::Legacy(mta) => Some(mta.mailboxes()),
            Server::Mailin(r) => Some(&r.mailboxes),
            Server::Im2000 { .. } => None,
        }
    }
}

struct Party {
    link: Link,
    server: Server,
    /// Its users' addresses.
    users: Vec<String>,
}

/// Content and when it arrived.
pub type Dated = (Millis, Arc<Vec<u8>>);

/// A message as sent: what identifies it in each model.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Its `Message-ID:`, which finds its copies.
    pub message_id: String,
    pub sender: String,
    pub at: Millis,
    /// IM2000: the message identifier at the sender's store and its digest.
    pub im2000: Option<(String, String)>,
}

pub struct World {
    pub model: Model,
    pub clock: ManualClock,
    _dns: Dns,
    parties: BTreeMap<String, Party>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl World {
    /// Builds the world for `scenario`'s domains, every party up.
    pub async fn start(model: Model, scenario: &Scenario) -> Result<World, LabError> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dns = Dns::start().await.map_err(|e| LabError::Setup(format!("DNS server: {e}")))?;
        let clock = ManualClock::new();
        let dir = tempfile::tempdir().map_err(|e| LabError::Setup(format!("scratch directory: {e}")))?;
        let domains = scenario.domains();
        let mut parties = BTreeMap::new();
        match model {
            Model::Smtp | Model::Gateway => {
                // MX records carry no port: every party's link listens on
                // the same port, each on an address of its own. Domains
                // whose users send get the lab's MTA (imgate's SMTP parts).
                // Those that only receive get mailin-embedded (SMTP), or an
                // imgate node as their MX gateway (a domain that moved to
                // IM2000 while its correspondents stayed on SMTP).
                let (listeners, port) = bind_same_port(domains.len()).await?;
                let hash = crate::directory::hash_password(PASSWORD);
                for (domain, listener) in domains.iter().zip(listeners) {
                    let ip = listener.local_addr().map_err(setup)?.ip();
                    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
                    let users = scenario.users(domain);
                    let (server, addr) = if scenario.sends(domain) {
                        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
                        let mta = Mta::start(domain, &users, any, dns.addr, port, clock).await.map_err(setup)?;
                        let addr = mta.addr;
                        (Server::Legacy(mta), addr)
                    } else if model == Model::Smtp {
                        let receiver = Receiver::start(domain, &users, Mailboxes::new(clock)).map_err(setup)?;
                        let addr = receiver.addr;
                        (Server::Mailin(receiver), addr)
                    } else {
                        let mx = "[smtp]\nmx = [\"127.0.0.1:0\"]\nverify_sender = false\n";
                        let config = node_config(domain, &users, &hash, dir.path(), dns.addr, mx);
                        let node = start_node(&config, domain, clock).await?;
                        let (addr, private) = (node.mx_addrs()[0], node.private_addrs()[0]);
                        (Server::Im2000 { node: Box::new(node), private }, addr)
                    };
                    let link = Link::start(listener, addr).map_err(setup)?;
                    dns.mx(domain, 10, &format!("mx.{domain}")).await;
                    dns.a(&format!("mx.{domain}"), ip).await;
                    let users = users.iter().map(|u| format!("{u}@{domain}")).collect();
                    parties.insert(domain.clone(), Party { link, server, users });
                }
            }
            Model::Im2000 => {
                let hash = crate::directory::hash_password(PASSWORD);
                for domain in &domains {
                    let users = scenario.users(domain);
                    // A sender that claims another's address in From: runs a
                    // store that lets it (imgate's own would refuse).
                    let claims: String = scenario
                        .traffic
                        .iter()
                        .filter_map(|t| Some((t.from.clone(), t.forged_from.clone()?)))
                        .filter(|(from, _)| from.domain().eq_ignore_ascii_case(domain))
                        .map(|(from, forged)| {
                            format!(
                                "[[user]]\naddress = \"{from}\"\npassword_hash = \"{hash}\"\naliases = [\"{forged}\"]\n"
                            )
                        })
                        .collect();
                    let users: Vec<String> =
                        users.into_iter().filter(|u| !claims.contains(&format!("\"{u}@{domain}\""))).collect();
                    let config = node_config(domain, &users, &hash, dir.path(), dns.addr, "") + &claims;
                    let node = start_node(&config, domain, Arc::new(clock.clone())).await?;
                    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(setup)?;
                    let link = Link::start(listener, node.public_addrs()[0]).map_err(setup)?;
                    dns.publish_node(domain, link.addr).await;
                    let private = node.private_addrs()[0];
                    let users = users.iter().map(|u| format!("{u}@{domain}")).collect();
                    parties.insert(
                        domain.clone(),
                        Party { link, server: Server::Im2000 { node: Box::new(node), private }, users },
                    );
                }
            }
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(setup)?;
        Ok(World { model, clock, _dns: dns, parties, http, _dir: dir })
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.parties.keys().map(String::as_str)
    }

    /// `domain`'s mailboxes, when it is a legacy domain.
    pub fn mailboxes(&self, domain: &str) -> Option<&Mailboxes> {
        self.parties.get(domain)?.server.mailboxes()
    }

    /// `domain`'s imgate node (every domain in the IM2000 model; the
    /// receiving domains' gateways in the GATEWAY model).
    pub fn node(&self, domain: &str) -> Option<&Node> {
        match &self.parties.get(domain)?.server {
            Server::Im2000 { node, .. } => Some(node),
            Server::Legacy(_) | Server::Mailin(_) => None,
        }
    }

    fn party(&self, domain: &str) -> Result<&Party, LabError> {
        self.parties.get(domain).ok_or_else(|| LabError::Setup(format!("no party for {domain}")))
    }

    /// `sender` sends `content` to `recipients`, as a user of its domain,
    /// with `envelope_from` as the SMTP envelope sender (its own address, or
    /// a forged one). An IM2000 sender has no envelope to forge: it submits
    /// to its own store, where any failure is recorded.
    pub async fn send(
        &self,
        sender: &str,
        envelope_from: &str,
        recipients: &[String],
        content: Vec<u8>,
    ) -> Result<Sent, LabError> {
        let domain = domain_of(sender);
        let message_id =
            message_id_of(&content).ok_or_else(|| LabError::Party("a lab message needs a Message-ID".into()))?;
        let at = self.clock.now();
        let im2000 = match &self.party(domain)?.server {
            Server::Legacy(mta) => {
                mta.submit(envelope_from, recipients, content);
                None
            }
            Server::Mailin(_) => return Err(LabError::Party(format!("{domain} only receives"))),
            Server::Im2000 { private, .. } => {
                let mut query: Vec<(&str, &str)> = recipients.iter().map(|r| ("to", r.as_str())).collect();
                query.push(("lifetime", "30d"));
                let resp = self
                    .http
                    .post(format!("http://{private}/im2000/v1/submissions"))
                    .query(&query)
                    .header("authorization", basic(sender))
                    .header("content-type", "message/rfc822")
                    .body(content)
                    .send()
                    .await
                    .map_err(|e| LabError::Party(format!("{sender} could not submit: {e}")))?;
                let submitted: SubmitResponse = answer(resp, "submit").await?;
                let track = self.track(sender, &submitted.message).await?;
                Some((submitted.message, track.digest))
            }
        };
        Ok(Sent { message_id, sender: sender.to_string(), at, im2000 })
    }

    /// What the sender's store says of a message (IM2000 only).
    pub async fn track(&self, sender: &str, message: &str) -> Result<TrackResponse, LabError> {
        let Server::Im2000 { private, .. } = &self.party(domain_of(sender))?.server else {
            return Err(LabError::Party("SMTP has no tracking".into()));
        };
        let resp = self
            .http
            .get(format!("http://{private}/im2000/v1/submissions/{message}"))
            .header("authorization", basic(sender))
            .send()
            .await
            .map_err(|e| LabError::Party(format!("track: {e}")))?;
        answer(resp, "track").await
    }

    /// The sender takes the message back. Returns how many recipients it
    /// was withdrawn from before they could read it.
    pub async fn recall(&self, sent: &Sent) -> Result<u64, LabError> {
        match &self.party(domain_of(&sent.sender))?.server {
            Server::Legacy(mta) => Ok(mta.recall(&sent.message_id) as u64),
            Server::Mailin(_) => Err(LabError::Party("a receive-only domain sent nothing".into())),
            Server::Im2000 { private, .. } => {
                let Some((message, _)) = &sent.im2000 else {
                    return Err(LabError::Party("only messages submitted to a store can be cancelled there".into()));
                };
                let before = self.track(&sent.sender, message).await?;
                let resp = self
                    .http
                    .delete(format!("http://{private}/im2000/v1/submissions/{message}"))
                    .header("authorization", basic(&sent.sender))
                    .send()
                    .await
                    .map_err(|e| LabError::Party(format!("recall: {e}")))?;
                let _: serde_json::Value = answer(resp, "recall").await?;
                let unread = before.recipients.iter().filter(|r| r.read == crate::proto::ReadStatus::Unread);
                Ok(unread.count() as u64)
            }
        }
    }

    /// `reader` opens the message: from their mailbox (SMTP), or by pulling
    /// it from the sender's store over the network (IM2000). `Ok(false)`:
    /// there was nothing to read.
    pub async fn read(&self, reader: &str, sent: &Sent) -> Result<bool, LabError> {
        match &self.party(domain_of(reader))?.server {
            Server::Legacy(_) | Server::Mailin(_) => {
                let copies = self.mailboxes(domain_of(reader)).map(|m| m.copies(&sent.message_id)).unwrap_or_default();
                Ok(copies.iter().any(|c| c.mailbox.eq_ignore_ascii_case(reader)))
            }
            Server::Im2000 { node, .. } => {
                let Some((_, n)) = self.notification(node, reader, sent)? else { return Ok(false) };
                // The reader pulls from the sender's store over the network,
                // or from their own gateway's store, which is local.
                let store = match self.node(&n.store) {
                    Some(own) if n.store.eq_ignore_ascii_case(domain_of(reader)) => own.public_addrs()[0],
                    _ => self.party(&n.store)?.link.addr,
                };
                let url = format!("http://{store}/im2000/v1/messages/{}", n.id);
                let resp = self.http.get(&url).send().await.map_err(|e| LabError::Party(format!("read: {e}")))?;
                if !resp.status().is_success() {
                    return Ok(false);
                }
                resp.bytes().await.map_err(|e| LabError::Party(format!("read: {e}")))?;
                // Read: the reader's agent tells the store to stop notifying.
                let _ = self.http.post(format!("{url}/silence")).send().await;
                Ok(true)
            }
        }
    }

    /// When `recipient` could first read the message (its copy or its
    /// notification arrived), from the recipient's own server.
    pub fn readable_at(&self, recipient: &str, sent: &Sent) -> Result<Option<Millis>, LabError> {
        Ok(match &self.party(domain_of(recipient))?.server {
            Server::Legacy(_) | Server::Mailin(_) => {
                let copies =
                    self.mailboxes(domain_of(recipient)).map(|m| m.copies(&sent.message_id)).unwrap_or_default();
                copies.iter().find(|c| c.mailbox.eq_ignore_ascii_case(recipient)).map(|c| c.stored_at)
            }
            Server::Im2000 { node, .. } => self.notification(node, recipient, sent)?.map(|(at, _)| at),
        })
    }

    /// The notification of `sent` in `user`'s inbox at `node`, and when it
    /// was filed: matched by digest when the lab submitted the message to
    /// a store itself, else by the Message-ID of the body it points at.
    fn notification(&self, node: &Node, user: &str, sent: &Sent) -> Result<Option<(Millis, Notification)>, LabError> {
        for (at, n) in inbox(node, user)? {
            let matches = match &sent.im2000 {
                Some((_, digest)) => &n.digest == digest,
                None => self.body_of(&n)?.and_then(|(_, b)| message_id_of(&b)).as_deref() == Some(&sent.message_id),
            };
            if matches {
                return Ok(Some((at, n)));
            }
        }
        Ok(None)
    }

    /// The stored message a notification points at (looked up in the
    /// store's database, in process), with its identifier there.
    fn body_of(&self, n: &Notification) -> Result<Option<(MessageId, Vec<u8>)>, LabError> {
        let Some(node) = self.node(&n.store) else { return Ok(None) };
        let Ok(rid) = n.id.parse::<RecipientId>() else { return Ok(None) };
        let store = &node.context().store;
        let Ok(found) = store.find(&rid).map_err(failed)? else { return Ok(None) };
        Ok(store.body(&found.message_id).map_err(failed)?.map(|b| (found.message_id, b)))
    }

    /// Takes `domain` off the network or puts it back.
    pub fn set_up(&self, domain: &str, up: bool) -> Result<(), LabError> {
        self.party(domain)?.link.set_up(up);
        Ok(())
    }

    pub fn traffic(&self, domain: &str) -> Result<Traffic, LabError> {
        Ok(self.party(domain)?.link.traffic())
    }

    /// Where `domain`'s link listens (what DNS publishes for it).
    pub fn link_addr(&self, domain: &str) -> Result<SocketAddr, LabError> {
        Ok(self.party(domain)?.link.addr)
    }

    /// What `domain`'s server holds now, counted in its store.
    pub fn holding(&self, domain: &str) -> Result<Holding, LabError> {
        Ok(match &self.party(domain)?.server {
            Server::Legacy(mta) => {
                let c = mta.counts();
                Holding {
                    copies: c.mailbox_copies + c.queued_messages as u64,
                    copy_bytes: c.mailbox_bytes + c.queued_bytes,
                    ..Default::default()
                }
            }
            Server::Mailin(r) => {
                let (copies, copy_bytes) = r.mailboxes.usage();
                Holding { copies, copy_bytes, ..Default::default() }
            }
            Server::Im2000 { node, .. } => {
                let f = node.context().store.footprint().map_err(|e| LabError::Party(e.to_string()))?;
                Holding {
                    copies: f.bodies,
                    copy_bytes: f.body_bytes,
                    notifications: f.notifications,
                    notification_bytes: f.notification_bytes,
                }
            }
        })
    }

    /// Messages generated because something failed (bounces), per domain.
    pub fn bounces_generated(&self, domain: &str) -> Result<u64, LabError> {
        Ok(match &self.party(domain)?.server {
            Server::Legacy(mta) => mta.counts().bounces_generated,
            Server::Mailin(_) => 0,
            Server::Im2000 { node, .. } => node.context().metrics.total("imgate_dsns_sent_total"),
        })
    }

    /// Bounce messages that arrived in `mailbox`: when, and their content
    /// (SMTP; IM2000 agents file DSNs as notifications from MAILER-DAEMON,
    /// counted here without content).
    pub fn bounce_copies(&self, mailbox: &str) -> Result<Vec<Dated>, LabError> {
        Ok(match &self.party(domain_of(mailbox))?.server {
            Server::Legacy(_) | Server::Mailin(_) => {
                let bounces = self.mailboxes(domain_of(mailbox)).map(|m| m.bounces(mailbox)).unwrap_or_default();
                bounces.into_iter().map(|c| (c.stored_at, c.content)).collect()
            }
            Server::Im2000 { node, .. } => inbox(node, mailbox)?
                .into_iter()
                .filter(|(_, n)| n.sender.to_ascii_lowercase().starts_with("mailer-daemon@"))
                .map(|(at, _)| (at, Arc::new(Vec::new())))
                .collect(),
        })
    }

    /// The copies of a message in `domain`'s mailboxes (SMTP), to count
    /// trace headers in.
    pub fn copies_of(&self, domain: &str, sent: &Sent) -> Result<Vec<Arc<Vec<u8>>>, LabError> {
        let party = self.party(domain)?;
        let Server::Im2000 { node, .. } = &party.server else {
            let copies = party.server.mailboxes().map(|m| m.copies(&sent.message_id)).unwrap_or_default();
            return Ok(copies.into_iter().map(|c| c.content).collect());
        };
        // A store holds one body per message: the sender's, or a gateway's
        // for the mail it took by SMTP, found through its users' inboxes.
        let mut bodies: BTreeMap<MessageId, Vec<u8>> = BTreeMap::new();
        if let Some((message, _)) = sent.im2000.as_ref().filter(|_| domain_of(&sent.sender) == domain)
            && let Ok(id) = message.parse::<MessageId>()
            && let Some(body) = node.context().store.body(&id).map_err(failed)?
        {
            bodies.insert(id, body);
        }
        for user in &party.users {
            if let Some((_, n)) = self.notification(node, user, sent)?
                && n.store.eq_ignore_ascii_case(domain)
                && let Some((id, body)) = self.body_of(&n)?
            {
                bodies.insert(id, body);
            }
        }
        Ok(bodies.into_values().map(Arc::new).collect())
    }

    /// Whether any party has work to do at the current time.
    pub fn is_busy(&self) -> Result<bool, LabError> {
        let now = self.clock.now();
        for party in self.parties.values() {
            let busy = match &party.server {
                Server::Legacy(mta) => mta.is_busy(),
                Server::Mailin(_) => false,
                Server::Im2000 { node, .. } => {
                    let stats = node.context().store.queue_stats(now).map_err(|e| LabError::Party(e.to_string()))?;
                    stats.iter().any(|((_, state), n)| *n > 0 && (*state == "leased" || *state == "due"))
                }
            };
            if busy {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// When the next queued job anywhere comes due.
    pub fn next_due(&self) -> Result<Option<Millis>, LabError> {
        let mut next: Option<Millis> = None;
        for party in self.parties.values() {
            let due = match &party.server {
                Server::Legacy(mta) => mta.next_due(),
                Server::Mailin(_) => None,
                Server::Im2000 { node, .. } => {
                    node.context().store.next_unleased_due().map_err(|e| LabError::Party(e.to_string()))?
                }
            };
            next = match (next, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(next)
    }

    /// Bytes through every link so far (to see the network fall quiet).
    pub fn total_bytes(&self) -> u64 {
        self.parties.values().map(|p| p.link.traffic()).map(|t| t.bytes_in + t.bytes_out).sum()
    }

    /// Stops every node cleanly.
    pub async fn shutdown(self) {
        for (_, party) in self.parties {
            if let Server::Im2000 { node, .. } = party.server {
                node.shutdown().await;
            }
        }
    }
}

fn setup(e: impl std::fmt::Display) -> LabError {
    LabError::Setup(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> LabError {
    LabError::Party(e.to_string())
}

async fn start_node(config: &str, domain: &str, clock: Arc<dyn Clock>) -> Result<Node, LabError> {
    let config = Config::parse(config, domain).map_err(setup)?;
    let parts = NodeParts { clock: Some(clock), ..Default::default() };
    Node::start_with(config, parts).await.map_err(setup)
}

pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(_, d)| d)
}

fn basic(user: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}")))
}

async fn answer<T: serde::de::DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T, LabError> {
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(LabError::Party(format!("{what}: {status}: {body}")));
    }
    resp.json().await.map_err(|e| LabError::Party(format!("{what}: {e}")))
}

/// A user's inbox, read in the agent's store: (filed at, notification).
fn inbox(node: &Node, user: &str) -> Result<Vec<(Millis, crate::proto::api::Notification)>, LabError> {
    let key = user.to_ascii_lowercase();
    let entries = node.context().store.inbox_list(&key, 0, 100_000).map_err(|e| LabError::Party(e.to_string()))?;
    Ok(entries.into_iter().map(|(_, r)| (r.received_at, r.notification)).collect())
}

/// An imgate node's configuration for one lab domain: plain HTTP on
/// loopback, the lab's DNS, the users with mailboxes.
fn node_config(
    domain: &str,
    users: &[String],
    hash: &str,
    dir: &std::path::Path,
    dns: SocketAddr,
    extra: &str,
) -> String {
    let data = dir.join(domain);
    let mut t = format!(
        "hostname = \"node.{domain}\"\ndata_dir = {data:?}\n\
         [im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\nplain_to_loopback = true\nprivate_peers = true\n\
         [dns]\nnameservers = [\"{dns}\"]\ntimeout = \"2s\"\n\
         {extra}[[domain]]\nname = \"{domain}\"\n"
    );
    for u in users {
        t.push_str(&format!("[[user]]\naddress = \"{u}@{domain}\"\npassword_hash = \"{hash}\"\n"));
    }
    t
}

/// `n` listeners on one port, each on its own loopback address
/// (127.x.y.1, .2, …), so that MX records without ports can reach them.
async fn bind_same_port(n: usize) -> Result<(Vec<TcpListener>, u16), LabError> {
    'again: for _ in 0..50 {
        let (x, y): (u8, u8) = (rand::random_range(1..255), rand::random_range(0..255));
        let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(127, x, y.wrapping_add((i / 250) as u8), (i % 250 + 1) as u8));
        let Ok(first) = TcpListener::bind((ip(0), 0)).await else { continue };
        let port = first.local_addr().map_err(setup)?.port();
        let mut all = vec![first];
        for i in 1..n {
            match TcpListener::bind((ip(i), port)).await {
                Ok(l) => all.push(l),
                Err(_) => continue 'again,
            }
        }
        return Ok((all, port));
    }
    Err(LabError::Setup("could not bind the MTAs' links on one port".into()))
}
