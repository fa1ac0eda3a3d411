//! The PostgreSQL engine end to end: two nodes of one domain on one
//! database serve the same mail, a database that goes away gives `451` and
//! `503` (never a false `250`) and the nodes recover by themselves when it
//! is back, and start-up names the setting that is wrong. PostgreSQL runs
//! as a real server the tests start (as `nobody` under root).

use std::time::Duration;

use imgate::config::Config;
use imgate::node::{Node, NodeParts};
use imgate::testkit::postgres::{Cluster, database};

use lettre::AsyncTransport;

use crate::harness::*;
use crate::smtp::{envelope, plain_client};

/// `[store]` keys for a PostgreSQL database.
fn on_postgres(url: &str) -> String {
    format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n")
}

/// Starts a node of `domain` on the database at `url`, with a data
/// directory of its own (`name`): several nodes of one domain.
async fn start_shared(w: &World, domain: &str, name: &str, users: &[&str], url: &str) -> TestNode {
    let extra = format!("{}node = \"{name}\"\n{}{}", on_postgres(url), admin_keys(domain), crate::imap::IMAP);
    let text = w.config_text(domain, users, &Ports::any(), &extra);
    let data = w.dir.path().join(domain);
    let text = text.replacen(&format!("data_dir = {data:?}"), &format!("data_dir = {:?}", w.dir.path().join(name)), 1);
    w.start_text(domain, &text).await
}

/// Alice's message `msg` as tracked once its notification was accepted.
async fn accepted(node: &TestNode, msg: &str) -> serde_json::Value {
    eventually("the notification accepted", || async {
        let t = track(node, "alice@one.test", msg).await;
        t["recipients"][0]["accepted_at"].is_string().then_some(t)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_one_domain_share_one_database() {
    let w = World::new().await;
    let db = database();
    let two = w.start("two.test", &["bob"]).await;
    let one_a = start_shared(&w, "one.test", "one-a", &["alice", "carol"], &db.url).await;
    let one_b = start_shared(&w, "one.test", "one-b", &["alice", "carol"], &db.url).await;

    // Submitted through one node, tracked through the other, read by bob
    // (his node pulls from whichever node DNS names now: the second).
    let sub = submit(&one_a, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sub["message"].as_str().unwrap().to_string();
    let entry = eventually("bob's notification", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    assert_eq!(entry["notification"]["store"], "one.test");
    let id = entry["notification"]["id"].as_str().unwrap();
    assert!(retrieve(&one_b, id).await.contains("Hello, Bob."), "the other node serves the same store");
    assert!(retrieve(&one_a, id).await.contains("Hello, Bob."));
    let t = accepted(&one_b, &msg).await;
    assert_eq!(t["recipients"][0]["recipient"], "bob@two.test");
    assert_eq!(t["recipients"][0]["read"], "all", "the pull through the other node counts");

    // carol's mail client waits (IDLE) on the second node; mail for her
    // arrives at the first node's MX: she is told at once, and it is in her
    // inbox on both.
    let mut client = crate::imap::Raw::connect(one_b.node.imap_addrs()[0]).await;
    client.cmd("a1", &format!("LOGIN carol@one.test \"{PASSWORD}\"")).await;
    let sel = client.cmd("a2", "SELECT INBOX").await;
    assert!(sel.iter().any(|l| l == "* 0 EXISTS\r\n"), "{sel:?}");
    client.send("a3 IDLE").await;
    assert!(client.line().await.starts_with("+ "));
    let mx = plain_client(one_a.mx);
    let content = "From: bob@two.test\r\nTo: carol@one.test\r\nSubject: to carol\r\n\r\nHi.\r\n";
    let two_mail = crate::smtp::send(&mx, &envelope("bob@two.test", &["carol@one.test"]), content).await;
    assert_eq!(two_mail.code().to_string(), "250");
    eventually("carol's notification on the other node", || async { inbox(&one_b, "carol@one.test").await.pop() })
        .await;
    assert_eq!(inbox(&one_a, "carol@one.test").await.len(), 1);
    let told = tokio::time::timeout(Duration::from_secs(5), client.line()).await.expect("IDLE told of the new mail");
    assert_eq!(told, "* 1 EXISTS\r\n");

    // An admin's route change and queue pause on one node are followed by
    // the other within a second.
    let explain = |n: &TestNode| {
        let n = n.admin_url();
        async move {
            let v: serde_json::Value = http()
                .get(format!("{n}/admin/routes/carol@one.test"))
                .header("authorization", basic("ops@one.test", PASSWORD))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v
        }
    };
    let before = explain(&one_b).await;
    let (status, _) =
        admin_json(&one_a, reqwest::Method::PUT, "/admin/routes/carol@one.test", Some(r#"{"route":"auto"}"#)).await;
    assert_eq!(status, 200);
    let after = explain(&one_a).await;
    assert_ne!(before, after);
    eventually_within(Duration::from_secs(2), "the route on the other node", || async {
        (explain(&one_b).await == after).then_some(())
    })
    .await;
    let (status, _) = admin_json(&one_a, reqwest::Method::POST, "/admin/queue/pause", Some("{}")).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = submit(&one_b, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let held = held["message"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 1, "paused on every node");
    let (status, _) = admin_json(&one_a, reqwest::Method::POST, "/admin/queue/resume", Some("{}")).await;
    assert_eq!(status, 200);
    accepted(&one_b, &held).await;

    // One node goes; the other takes every new message alone, and what the
    // first had stored stays served.
    one_a.node.shutdown().await;
    w.dns.publish_node("one.test", one_b.public).await;
    let later = submit(&one_b, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let later = later["message"].as_str().unwrap().to_string();
    accepted(&one_b, &later).await;
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 3);
    assert!(retrieve(&one_b, id).await.contains("Hello, Bob."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_451_and_503_and_the_node_recovers() {
    let w = World::new().await;
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(false)).await.unwrap();
    cluster.psql("postgres", "CREATE DATABASE imgate");
    let url = cluster.url("imgate");
    let one = start_shared(&w, "one.test", "one", &["alice"], &url).await;
    let mx = plain_client(one.mx);
    let content = "From: bob@two.test\r\nTo: alice@one.test\r\nSubject: hi\r\n\r\nHi.\r\n";
    let env = envelope("bob@two.test", &["alice@one.test"]);
    assert_eq!(crate::smtp::send(&mx, &env, content).await.code().to_string(), "250");
    // Filed before the outage (an attempt the outage cut short would wait
    // for its lease to end, and this test's clock stands still).
    eventually("the first message in alice's inbox", || async { inbox(&one, "alice@one.test").await.pop() }).await;

    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.kill();
        cluster
    })
    .await
    .unwrap();
    // lettre reports a 4xx as an error: the reply is in it.
    let refused = mx.send_raw(&env, content.strip_suffix("\r\n").unwrap().as_bytes()).await.unwrap_err();
    assert!(refused.to_string().contains("4.3.0"), "{refused}");
    let resp = http()
        .post(format!("{}/submissions?to=bob@two.test", one.private_url()))
        .header("authorization", basic("alice@one.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "storage_unavailable", "{body}");

    // Back: the same node takes mail again without a restart, and what it
    // acknowledged before the outage is there.
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    let again = eventually_within(Duration::from_secs(30), "a 250 after the database is back", || async {
        let r = mx.send_raw(&env, content.strip_suffix("\r\n").unwrap().as_bytes()).await.ok()?;
        (r.code().to_string() == "250").then_some(r)
    })
    .await;
    assert!(again.is_positive());
    let entries = eventually("both messages in alice's inbox", || async {
        let e = inbox(&one, "alice@one.test").await;
        (e.len() == 2).then_some(e)
    })
    .await;
    assert_eq!(entries.len(), 2);
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_names_the_setting_that_is_wrong() {
    let w = World::new().await;
    let text = |extra: &str| w.config_text("one.test", &["alice"], &Ports::any(), extra);

    let bad_url = Config::parse(&text(&on_postgres("mysql://nowhere")), "one.toml").unwrap_err().to_string();
    assert!(bad_url.contains("store.url"), "{bad_url}");
    let no_url = Config::parse(&text("[store]\nbackend = \"postgres\"\n"), "one.toml").unwrap_err().to_string();
    assert!(no_url.contains("store.url"), "{no_url}");
    let unknown = Config::parse(&text("[store]\nbackend = \"mysql\"\n"), "one.toml").unwrap_err().to_string();
    assert!(unknown.contains("store.backend"), "{unknown}");
    let bad_node = format!("{}node = \"a b\"\n", on_postgres("postgres://imgate@127.0.0.1/imgate"));
    let bad_node = Config::parse(&text(&bad_node), "one.toml").unwrap_err().to_string();
    assert!(bad_node.contains("store.node") && bad_node.contains("not a node name"), "{bad_node}");

    // Nothing listens there.
    let down = format!("postgres://imgate@{}/imgate", unused_addr());
    let config = Config::parse(&text(&on_postgres(&down)), "one.toml").unwrap();
    let err = Node::start_with(config, NodeParts::default()).await.err().expect("no database, no node").to_string();
    assert!(err.contains("[store] url") && err.contains("connect"), "{err}");

    // A database written by a newer imgate.
    let db = database();
    let config = Config::parse(&text(&on_postgres(&db.url)), "one.toml").unwrap();
    Node::start_with(config.clone(), NodeParts::default()).await.unwrap().shutdown().await;
    imgate::testkit::postgres::psql(
        &db.url,
        "UPDATE imgate_meta SET v = '\\x000003e7'::bytea WHERE k = 'schema'::bytea",
    );
    let err = Node::start_with(config, NodeParts::default()).await.err().expect("a newer schema refuses").to_string();
    assert!(err.contains("[store] url") && err.contains("newer imgate (schema 999)"), "{err}");
}
