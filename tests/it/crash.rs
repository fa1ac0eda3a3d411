//! Crash safety: the real binary under SMTP and IM2000 load is killed with
//! SIGKILL at arbitrary moments and restarted on the same data directory,
//! again and again (`IMGATE_CRASH_KILLS`, default 8; `bench/crash_loop.sh`
//! runs 100). Afterwards every message that got `250` is stored and was
//! filed in its local recipient's inbox exactly once; every submission that
//! got `201` reached the other domain's agent exactly once as its recipient
//! sees it; and no job is left due or running.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::*;

pub fn free_port() -> u16 {
    unused_addr().port()
}

pub fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap())
        .spawn()
        .unwrap()
}

pub async fn wait_listening(port: u16) {
    eventually("the node to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
    })
    .await;
}

/// Sends messages one after another on fresh sessions until the server goes
/// away; returns the ids it acknowledged with 250.
pub async fn sender(port: u16, n: usize) -> Vec<String> {
    sender_until(port, n, &AtomicBool::new(false)).await
}

/// [`sender`], stopping early once `stop` is set.
pub async fn sender_until(port: u16, n: usize, stop: &AtomicBool) -> Vec<String> {
    let acked = Mutex::new(Vec::new());
    sender_into(port, n, stop, &acked).await;
    acked.into_inner().unwrap()
}

/// [`sender_until`], adding each acknowledged id to `acked` as it comes.
pub async fn sender_into(port: u16, n: usize, stop: &AtomicBool, acked: &Mutex<Vec<String>>) {
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { break };
        let (r, mut w) = stream.into_split();
        let mut lines = BufReader::new(r).lines();
        let script = format!(
            "EHLO load.example\r\nMAIL FROM:<load{n}@example.org>\r\nRCPT TO:<bob@crash.test>\r\nDATA\r\n\
             Subject: load {n}-{i}\r\n\r\n{}.\r\nQUIT\r\n",
            ("y".repeat(98) + "\r\n").repeat(20)
        );
        if w.write_all(script.as_bytes()).await.is_err() {
            break;
        }
        let mut gone = true;
        while let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await {
            if let Some(id) = line.strip_prefix("250 2.0.0 Ok: queued as ") {
                acked.lock().unwrap().push(id.trim().to_string());
            }
            if line.starts_with("221") {
                gone = false;
                break;
            }
        }
        if gone {
            break;
        }
    }
}

/// Submits messages over HTTP (alice → carol@far.test) until the server goes
/// away; returns (subject token, message id) of each `201`.
pub async fn submitter(private: u16, n: usize) -> Vec<(String, String)> {
    submitter_until(private, n, &AtomicBool::new(false)).await
}

/// [`submitter`], stopping early once `stop` is set.
pub async fn submitter_until(private: u16, n: usize, stop: &AtomicBool) -> Vec<(String, String)> {
    let c = http();
    let mut acked = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let token = format!("im2000-{n}-{i}-{}", rand::rng().random::<u32>());
        let resp = c
            .post(format!("http://127.0.0.1:{private}/im2000/v1/submissions"))
            .query(&[("to", "carol@far.test")])
            .header("authorization", basic("alice@crash.test", PASSWORD))
            .header("content-type", "message/rfc822")
            .body(format!("From: alice@crash.test\r\nSubject: {token}\r\n\r\nload\r\n"))
            .send()
            .await;
        let Ok(resp) = resp else { break };
        if resp.status() != 201 {
            break;
        }
        let Ok(v) = resp.json::<serde_json::Value>().await else { break };
        acked.push((token, v["message"].as_str().unwrap().to_string()));
    }
    acked
}

/// One page of `user`'s inbox at `inbox` (its URL) after cursor `after`:
/// the notifications' identifiers and the next cursor.
pub async fn inbox_page(c: &reqwest::Client, inbox: &str, user: &str, after: &str) -> Option<(Vec<String>, String)> {
    let page: serde_json::Value = c
        .get(format!("{inbox}?limit=1000&after={after}"))
        .header("authorization", basic(user, PASSWORD))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let ids =
        page["notifications"].as_array()?.iter().filter_map(|e| Some(e["notification"]["id"].as_str()?.to_string()));
    Some((ids.collect(), page["next"].as_str()?.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (public, private, mx, admin) = (free_port(), free_port(), free_port(), free_port());
    // far.test: an agent in this process that is never killed, reached and
    // reaching back through static [peers] entries.
    let far_public = free_port();
    let far_text = format!(
        "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:{far_public}\"]\nprivate = [\"127.0.0.1:0\"]\n\
         [peers.\"crash.test\"]\nstore = \"127.0.0.1:{public}\"\nplain = true\n\
         [[domain]]\nname = \"far.test\"\n[[user]]\naddress = \"carol@far.test\"\npassword = \"{PASSWORD}\"\n",
        dir.path().join("far")
    );
    let far = imgate::node::Node::start(imgate::config::Config::parse(&far_text, "far").unwrap()).await.unwrap();
    let far_private = far.private_addrs()[0];
    let config = dir.path().join("crash.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:{public}\"]\nprivate = [\"127.0.0.1:{private}\"]\n\
             admin = [\"127.0.0.1:{admin}\"]\n\
             [smtp]\nmx = [\"127.0.0.1:{mx}\"]\nverify_sender = false\n[log]\nlevel = \"warn\"\n\
             [notify]\nretry_min = \"1s\"\nretry_max = \"2s\"\n\
             [peers.\"far.test\"]\nnotify = \"127.0.0.1:{far_public}\"\nplain = true\n\
             [[domain]]\nname = \"crash.test\"\n[[user]]\naddress = \"bob@crash.test\"\npassword = \"{PASSWORD}\"\n\
             [[user]]\naddress = \"alice@crash.test\"\npassword = \"{PASSWORD}\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let log = dir.path().join("imgate.log");
    let acked: Arc<Mutex<Vec<String>>> = Default::default();
    let submitted: Arc<Mutex<Vec<(String, String)>>> = Default::default();
    let kills: usize = std::env::var("IMGATE_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(8);
    for _ in 0..kills {
        let mut child = spawn(&config, &log);
        wait_listening(mx).await;
        let mut senders: Vec<_> = (0..3)
            .map(|n| {
                let acked = acked.clone();
                tokio::spawn(async move {
                    let ids = sender(mx, n).await;
                    acked.lock().unwrap().extend(ids);
                })
            })
            .collect();
        senders.push({
            let submitted = submitted.clone();
            tokio::spawn(async move {
                let ids = submitter(private, 0).await;
                submitted.lock().unwrap().extend(ids);
            })
        });
        let pause = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await; // a random moment, not a synchronisation
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for s in senders {
            s.await.unwrap();
        }
    }

    // Restart once more, let the queue catch up, and account for everything.
    let mut child = spawn(&config, &log);
    wait_listening(private).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > kills, "the load got through between kills ({} acknowledged)", acked.len());
    // Messages stored just before a kill may be filed without their 250
    // having reached the client: the inbox can hold more than `acked`. Wait
    // until every acknowledged id is filed, reading each new entry once (its
    // message names its id in the Received header).
    let c = http();
    let bob_inbox = format!("http://127.0.0.1:{private}/im2000/v1/inbox");
    let filed: Mutex<HashMap<String, usize>> = Default::default();
    let cursor = Mutex::new(String::new());
    eventually_within(Duration::from_secs(120), "every acknowledged message in the inbox", || async {
        loop {
            let after = cursor.lock().unwrap().clone();
            let (ids, next) = inbox_page(&c, &bob_inbox, "bob@crash.test", &after).await?;
            if ids.is_empty() {
                break;
            }
            for id in &ids {
                let body = c.get(format!("http://127.0.0.1:{public}/im2000/v1/messages/{id}")).send().await.ok()?;
                assert_eq!(body.status(), 200, "a filed notification whose message is gone");
                let text = body.text().await.ok()?;
                let msg = text.split(" id ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
                *filed.lock().unwrap().entry(msg).or_default() += 1;
            }
            *cursor.lock().unwrap() = next;
        }
        let filed = filed.lock().unwrap();
        acked.iter().all(|id| filed.contains_key(id)).then_some(())
    })
    .await;
    let filed = filed.into_inner().unwrap();
    for id in &acked {
        assert_eq!(filed.get(id), Some(&1), "message {id} acknowledged with 250 but filed {:?} times", filed.get(id));
    }
    assert!(filed.values().all(|n| *n == 1), "a message filed twice");

    // Every 201 reached carol at far.test, once as she sees it.
    let submitted = submitted.lock().unwrap().clone();
    let seen: Mutex<HashMap<String, usize>> = Default::default();
    let carol_inbox = format!("http://{far_private}/im2000/v1/inbox");
    eventually_within(Duration::from_secs(120), "every submission in carol's inbox", || async {
        let (mut ids, mut after) = (Vec::new(), String::new());
        loop {
            let (page, next) = inbox_page(&c, &carol_inbox, "carol@far.test", &after).await?;
            if page.is_empty() {
                break;
            }
            ids.extend(page);
            after = next;
        }
        let mut counts = HashMap::new();
        for id in &ids {
            let text =
                c.get(format!("http://127.0.0.1:{public}/im2000/v1/messages/{id}?part=headers")).send().await.ok()?;
            let text = text.text().await.ok()?;
            let token = text.split("Subject: ").nth(1)?.split_whitespace().next()?.to_string();
            *counts.entry(token).or_default() += 1;
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

    // Nothing left due or running in the queue.
    eventually_within(Duration::from_secs(60), "an idle queue", || async {
        let text = c.get(format!("http://127.0.0.1:{admin}/metrics")).send().await.ok()?.text().await.ok()?;
        let busy = text.lines().filter(|l| {
            l.starts_with("imgate_queue_jobs{") && (l.contains("state=\"due\"") || l.contains("state=\"leased\""))
        });
        busy.map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).all(|n| n == 0).then_some(())
    })
    .await;
    eprintln!(
        "{kills} kills: {} SMTP messages acknowledged and each filed exactly once; {} submissions each notified exactly once",
        acked.len(),
        submitted.len()
    );
    far.shutdown().await;
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
