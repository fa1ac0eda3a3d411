//! The client subcommands, each one or a few calls of the HTTP API.

use std::io::{Read, Write};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use reqwest::Method;

use super::api::Api;
use super::output;
use super::{Command, Conn, MigrationAction, QueueAction, RouteAction};
use crate::config::Config;
use crate::discovery::Locator;
use crate::dns::HickoryDns;
use crate::peer::{PeerClient, tls_client_config};
use crate::proto::api::{ClearRequest, ClearResponse, InboxEntry, InboxPage, SubmitResponse, TrackResponse};
use crate::proto::digest::sha256_field;

fn load(conn: &Conn) -> anyhow::Result<Option<Config>> {
    conn.config.as_deref().map(|p| Config::load(p).map_err(|e| anyhow!("{e}"))).transpose()
}

fn load_or_embedded(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Config::load(p).map_err(|e| anyhow!("{e}")),
        None => Ok(Config::embedded()),
    }
}

/// The user for track/cancel: `--user`, else the configuration's only user.
fn default_user(config: Option<&Config>, user: Option<String>) -> anyhow::Result<String> {
    if let Some(u) = user {
        return Ok(u);
    }
    match config.map(|c| c.users.as_slice()) {
        Some([only]) => Ok(only.address.to_string()),
        _ => bail!("say which user: --user ADDRESS"),
    }
}

/// The admin for queue and route commands: `--user`, else the
/// configuration's only admin.
fn default_admin(config: Option<&Config>, user: Option<String>) -> anyhow::Result<String> {
    if let Some(u) = user {
        return Ok(u);
    }
    let admins: Vec<_> = config.map(|c| c.users.iter().filter(|u| u.admin).collect()).unwrap_or_default();
    match admins.as_slice() {
        [only] => Ok(only.address.to_string()),
        _ => bail!("say which admin: --user ADDRESS"),
    }
}

/// An API client for an admin command.
fn admin_api(conn: &Conn, user: Option<String>) -> anyhow::Result<Api> {
    let config = load(conn)?;
    let user = default_admin(config.as_ref(), user)?;
    Api::admin(config.as_ref(), conn.server.as_deref(), &user)
}

/// A path segment, percent-encoded (RFC 3986 unreserved characters and
/// `@` pass as they are).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Prints an admin answer: as JSON, or through `show`.
fn emit(json: bool, v: &serde_json::Value, show: fn(&serde_json::Value)) -> anyhow::Result<()> {
    if json {
        return print_json(v);
    }
    show(v);
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs a client subcommand (everything but serve, check-config, hash-password).
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Compare { scenario, json, svg, list } => {
            super::compare::run(&scenario, json, svg.as_deref(), list).await
        }
        Command::Send { conn, from, to, list, lifetime, file } => {
            let config = load(&conn)?;
            let content = if file == "-" {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b)?;
                b
            } else {
                std::fs::read(&file).with_context(|| format!("reading {file}"))?
            };
            let api = Api::new(config.as_ref(), conn.server.as_deref(), &from)?;
            let mut query: Vec<(&str, String)> = to.iter().map(|t| ("to", t.clone())).collect();
            query.extend(list.iter().map(|l| ("list", l.clone())));
            if let Some(l) = lifetime {
                query.push(("lifetime", l));
            }
            let req = api
                .request(Method::POST, "/submissions")
                .query(&query)
                .header("content-type", "message/rfc822")
                .body(content);
            let resp: SubmitResponse = api.json(req).await?;
            if conn.json { print_json(&resp) } else { output::submitted(&resp) }
        }
        Command::Inbox { conn, user, after, clear } => {
            let config = load(&conn)?;
            let api = Api::new(config.as_ref(), conn.server.as_deref(), &user)?;
            let entries = inbox_all(&api, after).await?;
            if conn.json {
                print_json(&entries)?;
            } else {
                output::inbox(&entries);
            }
            if clear && let Some(last) = entries.last() {
                let req =
                    api.request(Method::POST, "/inbox/clear").json(&ClearRequest { through: last.cursor.clone() });
                let r: ClearResponse = api.json(req).await?;
                if !conn.json {
                    eprintln!("cleared {} notification(s)", r.cleared);
                }
            }
            Ok(())
        }
        Command::Fetch { conn, user, id, out, keep } => {
            let config = load(&conn)?;
            let api = Api::new(config.as_ref(), conn.server.as_deref(), &user)?;
            let entries = inbox_all(&api, None).await?;
            let entry = entries
                .iter()
                .find(|e| e.notification.id.eq_ignore_ascii_case(&id))
                .ok_or_else(|| anyhow!("no notification with id {id} in {user}'s inbox"))?;
            let n = &entry.notification;
            let peers = peer_client(config.as_ref())?;
            let got = peers
                .retrieve(&n.store, &n.id, 0, n.size)
                .await
                .map_err(|e| anyhow!("retrieving from {}: {e}", n.store))?;
            let digest = sha256_field(&got.content);
            if digest != n.digest {
                bail!("the message from {} does not match its notification's digest; not marked read", n.store);
            }
            match &out {
                Some(path) => {
                    std::fs::write(path, &got.content).with_context(|| format!("writing {}", path.display()))?
                }
                None => std::io::stdout().write_all(&got.content)?,
            }
            if !keep {
                for action in ["silence", "unpin"] {
                    peers
                        .recipient_action(&n.store, &n.id, action, None)
                        .await
                        .map_err(|e| anyhow!("{action} at {}: {e}", n.store))?;
                }
            }
            eprintln!(
                "fetched {} octets from {} (sent by {}){}",
                got.content.len(),
                n.store,
                n.sender,
                if keep { "" } else { "; silenced and un-pinned" }
            );
            let dns = config.as_ref().map(|c| c.dns.clone()).unwrap_or_else(|| Config::embedded().dns);
            eprintln!("{}", super::evidence::describe(n, &got.content, &dns).await);
            Ok(())
        }
        Command::Track { conn, msg, user } => {
            let config = load(&conn)?;
            let user = default_user(config.as_ref(), user)?;
            let api = Api::new(config.as_ref(), conn.server.as_deref(), &user)?;
            let t: TrackResponse = api.json(api.request(Method::GET, &format!("/submissions/{msg}"))).await?;
            if conn.json { print_json(&t) } else { output::track(&t) }
        }
        Command::Cancel { conn, msg, user } => {
            let config = load(&conn)?;
            let user = default_user(config.as_ref(), user)?;
            let api = Api::new(config.as_ref(), conn.server.as_deref(), &user)?;
            let t: TrackResponse = api.json(api.request(Method::DELETE, &format!("/submissions/{msg}"))).await?;
            if conn.json { print_json(&t) } else { output::track(&t) }
        }
        Command::Queue { conn, user, action } => {
            let api = admin_api(&conn, user)?;
            let host = |h: &Option<String>| h.iter().map(|h| ("host", h.clone())).collect::<Vec<_>>();
            let (v, show): (serde_json::Value, fn(&serde_json::Value)) = match action {
                QueueAction::List { state, recipient, host } => {
                    let q: Vec<(&str, String)> = [("state", state), ("recipient", recipient), ("host", host)]
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, v?)))
                        .collect();
                    (api.json(api.request(Method::GET, "/admin/queue").query(&q)).await?, output::queue)
                }
                QueueAction::Show { id } => {
                    (api.json(api.request(Method::GET, &format!("/admin/queue/{}", segment(&id)))).await?, output::job)
                }
                QueueAction::Retry { id: Some(id), .. } => {
                    let path = format!("/admin/queue/{}/retry", segment(&id));
                    (api.json(api.request(Method::POST, &path)).await?, output::done)
                }
                QueueAction::Retry { id: None, host: h, .. } => {
                    let req = api.request(Method::POST, "/admin/queue/retry").query(&host(&h));
                    (api.json(req).await?, output::done)
                }
                QueueAction::Drop { id } => {
                    let path = format!("/admin/queue/{}", segment(&id));
                    (api.json(api.request(Method::DELETE, &path)).await?, output::done)
                }
                QueueAction::Pause { host: h } => {
                    let req = api.request(Method::POST, "/admin/queue/pause").query(&host(&h));
                    (api.json(req).await?, output::paused)
                }
                QueueAction::Resume { host: h } => {
                    let req = api.request(Method::POST, "/admin/queue/resume").query(&host(&h));
                    (api.json(req).await?, output::paused)
                }
            };
            emit(conn.json, &v, show)
        }
        Command::Route { conn, user, action } => {
            let api = admin_api(&conn, user)?;
            let (v, show): (serde_json::Value, fn(&serde_json::Value)) = match action {
                RouteAction::Set { target, route } => {
                    let req = api
                        .request(Method::PUT, &format!("/admin/routes/{}", segment(&target)))
                        .json(&serde_json::json!({ "route": route }));
                    (api.json(req).await?, output::route_set)
                }
                RouteAction::List => (api.json(api.request(Method::GET, "/admin/routes")).await?, output::routes),
                RouteAction::Explain { address } => {
                    let path = format!("/admin/routes/{}", segment(&address));
                    (api.json(api.request(Method::GET, &path)).await?, output::explain)
                }
            };
            emit(conn.json, &v, show)
        }
        Command::Migration { conn, user, action: MigrationAction::Status } => {
            let api = admin_api(&conn, user)?;
            let v: serde_json::Value = api.json(api.request(Method::GET, "/admin/migration")).await?;
            emit(conn.json, &v, output::migration)
        }
        Command::DnsRecords { config, domain } => {
            let config = load_or_embedded(config.as_deref())?;
            let domains = match domain {
                Some(d) => vec![d.to_lowercase()],
                None => config.domains.clone(),
            };
            let signers = super::dns::signers(&config)?;
            print!("{}", super::dns::zone_text(&config, &signers, &domains));
            Ok(())
        }
        Command::DkimKeygen { domain, selector, algorithm, out } => {
            let domain = domain.to_lowercase();
            let record = crate::outbound::dkim::generate(&algorithm, &out).map_err(|e| anyhow!(e))?;
            println!("; wrote {} ({algorithm}); publish:", out.display());
            println!("{selector}._domainkey.{domain}. 3600 IN TXT {}", super::dns::txt_strings(&record));
            println!("; and add to the [[domain]] of {domain}:");
            println!("; [[domain.dkim]]\n; selector = \"{selector}\"\n; key = \"{}\"", out.display());
            Ok(())
        }
        Command::DnsCheck { config, domain } => {
            let config = load_or_embedded(config.as_deref())?;
            let http = peer_client(Some(&config))?;
            if super::dns::run_check(&config, &http, &domain.to_lowercase()).await? {
                Ok(())
            } else {
                bail!("{domain} does not publish everything this node needs")
            }
        }
        Command::Serve { .. } | Command::CheckConfig { .. } | Command::HashPassword => {
            unreachable!("handled by main")
        }
    }
}

async fn inbox_all(api: &Api, after: Option<String>) -> anyhow::Result<Vec<InboxEntry>> {
    let mut cursor = after.unwrap_or_default();
    let mut all = Vec::new();
    loop {
        let page: InboxPage = api.json(api.request(Method::GET, "/inbox").query(&[("after", &cursor)])).await?;
        let done = page.notifications.is_empty();
        all.extend(page.notifications);
        if done || page.next == cursor {
            return Ok(all);
        }
        cursor = page.next;
    }
}

/// A client for other domains' stores: DNS and peers from the configuration
/// when given, else the system resolver.
fn peer_client(config: Option<&Config>) -> anyhow::Result<PeerClient> {
    let mut config = config.cloned().unwrap_or_else(Config::embedded);
    // The node's own domains are served by its own public listener, whatever
    // DNS says (or does not say, on a test or private deployment).
    if let Some(public) = config.im2000.public.first().copied() {
        let ip = if public.ip().is_unspecified() { "127.0.0.1".parse().expect("ip") } else { public.ip() };
        let here = std::net::SocketAddr::new(ip, public.port()).to_string();
        for d in config.domains.clone() {
            config.peers.entry(d).or_insert_with(|| crate::config::Peer {
                store: Some(here.clone()),
                notify: Some(here.clone()),
                plain: config.tls.is_none(),
            });
        }
    }
    let dns = Arc::new(HickoryDns::new(&config.dns).map_err(|e| anyhow!(e))?);
    let tls = tls_client_config(config.tls.as_ref().and_then(|t| t.ca.as_deref())).map_err(|e| anyhow!(e))?;
    PeerClient::new(Locator::new(&config, dns), std::time::Duration::from_secs(120), tls).map_err(|e| anyhow!(e))
}
