//! Several real `imgate serve` processes of one domain on one PostgreSQL
//! database, and what happens when one of them dies or stalls. A ledger of
//! every `250` and `201` the nodes gave is checked afterwards: each
//! acknowledged SMTP message is filed exactly once, each acknowledged
//! submission reaches its recipient exactly once as she sees it, whichever
//! node took it and whichever node finished it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::crash::{free_port, inbox_page, sender_into, sender_until, spawn, submitter_until, wait_listening};
use imgate::testkit::postgres::Cluster;

use crate::harness::*;

/// The ports of one node.
#[derive(Clone, Copy)]
struct NodePorts {
    public: u16,
    private: u16,
    mx: u16,
    admin: u16,
}

impl NodePorts {
    fn new() -> NodePorts {
        NodePorts { public: free_port(), private: free_port(), mx: free_port(), admin: free_port() }
    }
}

/// Writes the configuration of a `crash.test` node on the database at
/// `url`, notifying far.test's agent at `far_notify`.
fn node_config(dir: &Path, name: &str, p: NodePorts, url: &str, far_notify: u16) -> PathBuf {
    node_config_with(dir, name, p, url, far_notify, "")
}

/// [`node_config`] with more `[store]` keys.
fn node_config_with(dir: &Path, name: &str, p: NodePorts, url: &str, far_notify: u16, store: &str) -> PathBuf {
    let config = dir.join(format!("{name}.toml"));
    let NodePorts { public, private, mx, admin } = p;
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:{public}\"]\nprivate = [\"127.0.0.1:{private}\"]\n\
             admin = [\"127.0.0.1:{admin}\"]\n\
             [smtp]\nmx = [\"127.0.0.1:{mx}\"]\nverify_sender = false\n[log]\nlevel = \"warn\"\n\
             [notify]\nretry_min = \"1s\"\nretry_max = \"2s\"\ntimeout = \"1s\"\n\
             [store]\nbackend = \"postgres\"\nurl = \"{url}\"\nnode = \"{name}\"\n{store}\
             [peers.\"far.test\"]\nnotify = \"127.0.0.1:{far_notify}\"\nplain = true\n\
             [[domain]]\nname = \"crash.test\"\n[[user]]\naddress = \"bob@crash.test\"\npassword = \"{PASSWORD}\"\n\
             [[user]]\naddress = \"alice@crash.test\"\npassword = \"{PASSWORD}\"\n",
            dir.join(name)
        ),
    )
    .unwrap();
    config
}

/// far.test: an agent in this process, fetching crash.test's messages
/// from `store` (one node's public port: every node serves the one store).
async fn far_agent(dir: &Path, store: u16) -> (imgate::node::Node, u16) {
    let far_public = free_port();
    let text = format!(
        "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:{far_public}\"]\nprivate = [\"127.0.0.1:0\"]\n\
         [peers.\"crash.test\"]\nstore = \"127.0.0.1:{store}\"\nplain = true\n\
         [[domain]]\nname = \"far.test\"\n[[user]]\naddress = \"carol@far.test\"\npassword = \"{PASSWORD}\"\n",
        dir.join("far")
    );
    let far = imgate::node::Node::start(imgate::config::Config::parse(&text, "far").unwrap()).await.unwrap();
    (far, far_public)
}

/// Every notification id in `user`'s inbox at `inbox` (a URL).
async fn all_ids(c: &reqwest::Client, inbox: &str, user: &str) -> Option<Vec<String>> {
    let (mut ids, mut after) = (Vec::new(), String::new());
    loop {
        let (page, next) = inbox_page(c, inbox, user, &after).await?;
        if page.is_empty() {
            return Some(ids);
        }
        ids.extend(page);
        after = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_has_its_work_finished_by_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let db = imgate::testkit::postgres::database();
    let (a, b) = (NodePorts::new(), NodePorts::new());
    let (far, far_public) = far_agent(dir.path(), b.public).await;
    let far_private = far.private_addrs()[0];
    let log = dir.path().join("imgate.log");
    let mut node_a = spawn(&node_config(dir.path(), "a", a, &db.url, far_public), &log);
    let mut node_b = spawn(&node_config(dir.path(), "b", b, &db.url, far_public), &log);
    wait_listening(a.mx).await;
    wait_listening(b.mx).await;

    // SMTP and IM2000 load on both nodes; node A is killed mid-load.
    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let submitted: Arc<Mutex<Vec<(String, String)>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (n, p) in [(0, a), (1, a), (2, b)] {
        let (acked, stop) = (acked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let ids = sender_until(p.mx, n, &stop).await;
            acked.lock().unwrap().extend(ids);
        }));
    }
    for (n, p) in [(0, a), (1, b)] {
        let (submitted, stop) = (submitted.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let ids = submitter_until(p.private, n, &stop).await;
            submitted.lock().unwrap().extend(ids);
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // a moment mid-load, not a synchronisation
    node_a.kill().unwrap(); // SIGKILL
    node_a.wait().unwrap();
    // B's load goes on a while after; A's ended with A.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    // B finishes A's leased jobs once their leases end.
    let acked = acked.lock().unwrap().clone();
    let submitted = submitted.lock().unwrap().clone();
    assert!(acked.len() > 10 && submitted.len() > 5, "load got through: {} / {}", acked.len(), submitted.len());

    let c = http();
    // A's leases last 4 × notify timeout + 60 s.
    assert_each_filed_once(&c, b, &acked).await;

    let carol_inbox = format!("http://{far_private}/im2000/v1/inbox");
    let seen: Mutex<HashMap<String, usize>> = Default::default();
    eventually_within(Duration::from_secs(150), "every submission at carol's", || async {
        let ids = all_ids(&c, &carol_inbox, "carol@far.test").await?;
        let mut counts = HashMap::new();
        for id in &ids {
            let url = format!("http://127.0.0.1:{}/im2000/v1/messages/{id}?part=headers", b.public);
            let text = c.get(url).send().await.ok()?.text().await.ok()?;
            let token = text.split("Subject: ").nth(1)?.split_whitespace().next()?.to_string();
            *counts.entry(token).or_insert(0) += 1;
        }
        let done = submitted.iter().all(|(token, _)| counts.contains_key(token));
        *seen.lock().unwrap() = counts;
        done.then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    for (token, msg) in &submitted {
        assert_eq!(seen.get(token), Some(&1), "submission {msg} got 201 but reached carol {:?} times", seen.get(token));
    }
    eprintln!(
        "node A killed: {} SMTP messages acknowledged by A and B, each filed once; {} submissions, each at carol's once",
        acked.len(),
        submitted.len()
    );
    far.shutdown().await;
    node_b.kill().unwrap();
    node_b.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

/// A TCP proxy to `to` that takes the first connection and never answers
/// it (an agent that hangs); later connections pass through. The returned
/// flag is set once the first connection is held.
async fn hang_first(to: u16) -> (u16, Arc<AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(AtomicBool::new(false));
    let flag = held.clone();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((mut client, _)) = listener.accept().await {
            if !flag.swap(true, Ordering::SeqCst) {
                kept.push(client);
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (port, held)
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stalled_past_its_lease_has_its_late_result_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = imgate::testkit::postgres::database();
    let (a, b) = (NodePorts::new(), NodePorts::new());
    let (far, far_public) = far_agent(dir.path(), b.public).await;
    let far_private = far.private_addrs()[0];
    let (proxy, held) = hang_first(far_public).await;
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut node_a = spawn(&node_config(dir.path(), "a", a, &db.url, proxy), &log_a);
    wait_listening(a.private).await;

    // A takes the notification job; its attempt hangs at the agent, and A
    // is stopped (SIGSTOP) in the middle of it.
    let resp = http()
        .post(format!("http://127.0.0.1:{}/im2000/v1/submissions", a.private))
        .query(&[("to", "carol@far.test")])
        .header("authorization", basic("alice@crash.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body("From: alice@crash.test\r\nSubject: stalled\r\n\r\nhello\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let msg = resp.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap().to_string();
    eventually("A's attempt under way", || async { held.load(Ordering::SeqCst).then_some(()) }).await;
    signal(&node_a, "-STOP");

    // B takes the job over when A's lease ends, and the agent accepts it.
    let mut node_b = spawn(&node_config(dir.path(), "b", b, &db.url, proxy), &log_b);
    wait_listening(b.private).await;
    let c = http();
    let track = || {
        let c = c.clone();
        let url = format!("http://127.0.0.1:{}/im2000/v1/submissions/{msg}", b.private);
        async move {
            let t: serde_json::Value = c
                .get(url)
                .header("authorization", basic("alice@crash.test", PASSWORD))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            Some(t["recipients"][0].clone())
        }
    };
    let taken_over = eventually_within(Duration::from_secs(150), "B's attempt accepted", || async {
        let r = track().await?;
        r["accepted_at"].is_string().then_some(r)
    })
    .await;
    let carol = format!("http://{far_private}/im2000/v1/inbox");
    assert_eq!(all_ids(&c, &carol, "carol@far.test").await.unwrap().len(), 1);

    // A wakes up: its attempt times out, and its late result is refused.
    signal(&node_a, "-CONT");
    eventually_within(Duration::from_secs(30), "A's late result refused", || async {
        let log = std::fs::read_to_string(&log_a).unwrap_or_default();
        log.contains("late notification results refused").then_some(())
    })
    .await;
    let now = track().await.unwrap();
    assert_eq!(now["accepted_at"], taken_over["accepted_at"]);
    assert_eq!(now["next_attempt_at"], taken_over["next_attempt_at"], "A's retry was not recorded: {now}");
    assert_eq!(now["attempts"], taken_over["attempts"]);
    assert_eq!(all_ids(&c, &carol, "carol@far.test").await.unwrap().len(), 1);
    far.shutdown().await;
    for node in [&mut node_a, &mut node_b] {
        node.kill().unwrap();
        node.wait().unwrap();
    }
}

/// A primary that confirms commits only once its synchronous standby has
/// them, with a database `imgate`, and that standby.
fn replicated() -> (Cluster, Cluster) {
    let primary = Cluster::start(false);
    primary.psql("postgres", "CREATE DATABASE imgate");
    let standby = primary.standby();
    // Set once the standby exists (commits would wait for one before), and
    // on the primary alone: the standby, promoted, confirms commits alone.
    primary.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'");
    primary.psql("postgres", "SELECT pg_reload_conf()");
    (primary, standby)
}

/// Every message id filed in bob@crash.test's inbox at a node, with counts.
async fn filed(c: &reqwest::Client, p: NodePorts) -> Option<HashMap<String, usize>> {
    let ids = all_ids(c, &format!("http://127.0.0.1:{}/im2000/v1/inbox", p.private), "bob@crash.test").await?;
    let mut counts = HashMap::new();
    for id in &ids {
        let body = c.get(format!("http://127.0.0.1:{}/im2000/v1/messages/{id}", p.public)).send().await.ok()?;
        assert_eq!(body.status(), 200, "a filed notification whose message is gone");
        let text = body.text().await.ok()?;
        let msg = text.split(" id ").nth(1)?.split_whitespace().next()?.to_string();
        *counts.entry(msg).or_insert(0) += 1;
    }
    Some(counts)
}

/// Waits until every id in `acked` is filed in bob's inbox (read through
/// node `p`), then checks that each was filed exactly once.
async fn assert_each_filed_once(c: &reqwest::Client, p: NodePorts, acked: &[String]) {
    let seen: Mutex<HashMap<String, usize>> = Default::default();
    eventually_within(Duration::from_secs(150), "every acknowledged message filed", || async {
        let counts = filed(c, p).await?;
        let done = acked.iter().all(|id| counts.contains_key(id));
        *seen.lock().unwrap() = counts;
        done.then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    for id in acked {
        assert_eq!(seen.get(id), Some(&1), "message {id} acknowledged with 250 but filed {:?} times", seen.get(id));
    }
    assert!(seen.values().all(|n| *n == 1), "a message filed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_load_and_its_standby_promoted_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut primary, standby) = tokio::task::spawn_blocking(replicated).await.unwrap();
    // Both servers in the URL: a node connects to whichever takes writes.
    let url = format!(
        "postgres://imgate@127.0.0.1:{},127.0.0.1:{}/imgate?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let (a, b) = (NodePorts::new(), NodePorts::new());
    let log = dir.path().join("imgate.log");
    let nowhere = free_port();
    let mut nodes = [
        spawn(&node_config(dir.path(), "a", a, &url, nowhere), &log),
        spawn(&node_config(dir.path(), "b", b, &url, nowhere), &log),
    ];
    wait_listening(a.mx).await;
    wait_listening(b.mx).await;

    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (n, p) in [(0, a), (1, b)] {
        let (acked, stop) = (acked.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            // The load goes on through the outage (its refusals are not acknowledgements).
            while !stop.load(Ordering::SeqCst) {
                sender_into(p.mx, n, &stop, &acked).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // a moment mid-load
    let before = acked.lock().unwrap().len();
    let primary_dir = primary.dir.clone();
    let standby = tokio::task::spawn_blocking(move || {
        primary.kill(); // SIGKILL
        standby.promote();
        (primary, standby)
    })
    .await
    .unwrap();
    // The nodes carry on on the new primary.
    let during = acked.lock().unwrap().len();
    eventually_within(Duration::from_secs(30), "mail acknowledged after the promotion", || async {
        (acked.lock().unwrap().len() > during + 20).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(before > 10, "load before the kill: {before}");

    assert_each_filed_once(&http(), b, &acked).await;
    eprintln!(
        "primary killed and standby promoted: {} messages acknowledged ({before} before the kill), each filed once",
        acked.len()
    );
    for node in &mut nodes {
        node.kill().unwrap();
        node.wait().unwrap();
    }
    drop(standby);
    let _ = std::fs::remove_dir_all(primary_dir);
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_synchronous_standby_gives_451_and_503_never_250() {
    use lettre::AsyncTransport;
    let dir = tempfile::tempdir().unwrap();
    let (primary, standby) = tokio::task::spawn_blocking(replicated).await.unwrap();
    let url = primary.url("imgate");
    let a = NodePorts::new();
    let log = dir.path().join("imgate.log");
    let config = node_config_with(dir.path(), "a", a, &url, free_port(), "timeout = \"2s\"\n");
    let mut node = spawn(&config, &log);
    wait_listening(a.mx).await;
    let mx = crate::smtp::plain_client(std::net::SocketAddr::from(([127, 0, 0, 1], a.mx)));
    let env = crate::smtp::envelope("someone@example.org", &["bob@crash.test"]);
    let content = "From: someone@example.org\r\nSubject: hi\r\n\r\nHi.";
    assert_eq!(mx.send_raw(&env, content.as_bytes()).await.unwrap().code().to_string(), "250");

    let mut standby = tokio::task::spawn_blocking(move || {
        let mut standby = standby;
        standby.kill();
        standby
    })
    .await
    .unwrap();
    // The commit waits for a standby that is not there: refused in time.
    let refused = mx.send_raw(&env, content.as_bytes()).await.unwrap_err();
    assert!(refused.to_string().contains("4.3.0"), "{refused}");
    let resp = http()
        .post(format!("http://127.0.0.1:{}/im2000/v1/submissions?to=bob@crash.test", a.private))
        .header("authorization", basic("alice@crash.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body("From: alice@crash.test\r\nSubject: x\r\n\r\nx\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);

    // The standby is back: mail is taken again, without a restart.
    standby = tokio::task::spawn_blocking(move || {
        standby.restart();
        standby
    })
    .await
    .unwrap();
    eventually_within(Duration::from_secs(30), "a 250 with the standby back", || async {
        let r = mx.send_raw(&env, content.as_bytes()).await.ok()?;
        (r.code().to_string() == "250").then_some(())
    })
    .await;
    node.kill().unwrap();
    node.wait().unwrap();
    drop((primary, standby));
}

/// Stops a node as an operator does (SIGTERM) and waits until it is gone.
fn stop(node: &mut std::process::Child) {
    signal(node, "-TERM");
    node.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = imgate::testkit::postgres::database();
    let (a, b) = (NodePorts::new(), NodePorts::new());
    let (far, far_public) = far_agent(dir.path(), b.public).await;
    let far_private = far.private_addrs()[0];
    let log = dir.path().join("imgate.log");
    let configs =
        [node_config(dir.path(), "a", a, &db.url, far_public), node_config(dir.path(), "b", b, &db.url, far_public)];
    let mut nodes = [spawn(&configs[0], &log), spawn(&configs[1], &log)];
    wait_listening(a.mx).await;
    wait_listening(b.mx).await;

    // SMTP and IM2000 load on both nodes, going on through each restart
    // (what a node down refuses is not acknowledged).
    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let submitted: Arc<Mutex<Vec<(String, String)>>> = Default::default();
    let stop_load = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for (n, p) in [(0, a), (1, b)] {
        let (acked, stop) = (acked.clone(), stop_load.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                sender_into(p.mx, n, &stop, &acked).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
        let (submitted, stop) = (submitted.clone(), stop_load.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let ids = submitter_until(p.private, n, &stop).await;
                submitted.lock().unwrap().extend(ids);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    // Each node in turn: stopped, started again, taking mail again.
    for (i, p) in [(0, a), (1, b)] {
        tokio::time::sleep(Duration::from_millis(1000)).await; // a moment of load, not a synchronisation
        stop(&mut nodes[i]);
        nodes[i] = spawn(&configs[i], &log);
        wait_listening(p.mx).await;
        let before = acked.lock().unwrap().len();
        eventually_within(Duration::from_secs(30), "mail acknowledged after the restart", || async {
            (acked.lock().unwrap().len() > before + 10).then_some(())
        })
        .await;
    }
    stop_load.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let submitted = submitted.lock().unwrap().clone();
    assert!(acked.len() > 20 && submitted.len() > 10, "load got through: {} / {}", acked.len(), submitted.len());

    let c = http();
    assert_each_filed_once(&c, a, &acked).await;
    let carol_inbox = format!("http://{far_private}/im2000/v1/inbox");
    let seen: Mutex<HashMap<String, usize>> = Default::default();
    eventually_within(Duration::from_secs(150), "every submission at carol's", || async {
        let ids = all_ids(&c, &carol_inbox, "carol@far.test").await?;
        let mut counts = HashMap::new();
        for id in &ids {
            let url = format!("http://127.0.0.1:{}/im2000/v1/messages/{id}?part=headers", b.public);
            let text = c.get(url).send().await.ok()?.text().await.ok()?;
            let token = text.split("Subject: ").nth(1)?.split_whitespace().next()?.to_string();
            *counts.entry(token).or_insert(0) += 1;
        }
        let done = submitted.iter().all(|(token, _)| counts.contains_key(token));
        *seen.lock().unwrap() = counts;
        done.then_some(())
    })
    .await;
    let seen = seen.into_inner().unwrap();
    for (token, msg) in &submitted {
        assert_eq!(seen.get(token), Some(&1), "submission {msg} got 201 but reached carol {:?} times", seen.get(token));
    }
    eprintln!(
        "rolling restart: {} SMTP messages acknowledged, each filed once; {} submissions, each at carol's once",
        acked.len(),
        submitted.len()
    );
    far.shutdown().await;
    for node in &mut nodes {
        stop(node);
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("another node runs under this node's name"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_started_again_takes_its_own_leases_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = imgate::testkit::postgres::database();
    let a = NodePorts::new();
    let (far, far_public) = far_agent(dir.path(), a.public).await;
    let far_private = far.private_addrs()[0];
    let (proxy, held) = hang_first(far_public).await;
    let log = dir.path().join("a.log");
    let config = node_config(dir.path(), "a", a, &db.url, proxy);
    let mut node = spawn(&config, &log);
    wait_listening(a.private).await;

    // A's first attempt hangs at the agent; A dies in the middle of it.
    let resp = http()
        .post(format!("http://127.0.0.1:{}/im2000/v1/submissions", a.private))
        .query(&[("to", "carol@far.test")])
        .header("authorization", basic("alice@crash.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body("From: alice@crash.test\r\nSubject: again\r\n\r\nhello\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    eventually("A's attempt under way", || async { held.load(Ordering::SeqCst).then_some(()) }).await;
    node.kill().unwrap(); // SIGKILL
    node.wait().unwrap();

    // Started again under its name, A knows the lease is its dead run's:
    // carol has the message long before the lease (64 s) would have ended.
    let mut node = spawn(&config, &log);
    let carol = format!("http://{far_private}/im2000/v1/inbox");
    let c = http();
    eventually_within(Duration::from_secs(30), "the message at carol's", || async {
        (all_ids(&c, &carol, "carol@far.test").await?.len() == 1).then_some(())
    })
    .await;

    // A second process under the same name is refused while A runs.
    let twin = NodePorts::new();
    let twin_dir = dir.path().join("twin");
    std::fs::create_dir_all(&twin_dir).unwrap();
    let twin_config = node_config(&twin_dir, "a", twin, &db.url, proxy);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config", twin_config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another node named \"a\" is running on this store"), "{err}");
    far.shutdown().await;
    stop(&mut node);
}
