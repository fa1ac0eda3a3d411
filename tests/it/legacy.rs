//! IM2000 → SMTP: recipients still on SMTP are served by the gateway as
//! their agent. A real, independent SMTP server (mailin-embedded) plays the
//! legacy host. Outcomes go back to the sender's store as status, never as
//! mail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::response::{NO_MAILBOX, OK};
use mailin_embedded::{Handler, Response, Server};

use crate::harness::*;

/// What the legacy host received: (envelope sender, recipients, data).
pub type Mailbox = Arc<Mutex<Vec<(String, Vec<String>, Vec<u8>)>>>;

#[derive(Clone)]
struct LegacyHost {
    mailbox: Mailbox,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for LegacyHost {
    fn rcpt(&mut self, to: &str) -> Response {
        if to.starts_with("nobody@") { NO_MAILBOX } else { OK }
    }
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }
    fn data_end(&mut self) -> Response {
        self.mailbox.lock().unwrap().push((self.from.clone(), self.to.clone(), std::mem::take(&mut self.data)));
        OK
    }
}

/// Starts a legacy SMTP host on `listener` in a thread of its own.
pub fn legacy_host(listener: std::net::TcpListener) -> Mailbox {
    let mailbox: Mailbox = Default::default();
    let handler = LegacyHost { mailbox: mailbox.clone(), from: String::new(), to: vec![], data: vec![] };
    std::thread::spawn(move || {
        let mut server = Server::new(handler);
        server.with_name("legacy.two.test").with_tcp_listener(listener);
        let _ = server.serve();
    });
    mailbox
}

/// one.test (alice, IM2000) and two.test, whose users are on a legacy
/// host (mailin-embedded) — asked about users first when `verify`.
async fn legacy_world(verify: bool) -> (World, Mailbox, TestNode, TestNode) {
    let w = World::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    if verify {
        w.route_legacy_verified("two.test", addr);
    } else {
        w.route_legacy("two.test", addr);
    }
    let mailbox = legacy_host(listener);
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &[]).await;
    (w, mailbox, one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn im2000_mail_reaches_a_legacy_user_and_the_sender_sees_it_delivered() {
    let (_w, mailbox, one, _two) = legacy_world(false).await;

    let sent = submit(&one, "alice@one.test", &["carol@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    await_status(&one, "alice@one.test", &msg, "silenced").await;
    // Silence, then un-pin: two calls to the store.
    let t = eventually("un-pinned", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        (t["recipients"][0]["pinned"] == false).then_some(t)
    })
    .await;
    assert_eq!(t["recipients"][0]["read"], "all");
    assert_eq!(t["state"], "released");

    let got = mailbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].1, vec!["carol@two.test".to_string()]);
    let data = String::from_utf8(got[0].2.clone()).unwrap();
    assert!(data.starts_with("Received: from one.test by node.two.test with IM2000 id "), "{data}");
    assert_eq!(data.matches("Received:").count(), 1);
    assert!(data.ends_with(MESSAGE), "content unchanged:\n{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_550_becomes_refused_at_the_store_and_no_mail_goes_back() {
    let (_w, mailbox, one, _two) = legacy_world(false).await;

    let sent = submit(&one, "alice@one.test", &["nobody@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let t = await_status(&one, "alice@one.test", &msg, "refused").await;
    let reason = t["recipients"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("550"), "{reason}");
    assert!(mailbox.lock().unwrap().is_empty());
    assert!(inbox(&one, "alice@one.test").await.is_empty(), "no bounce message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_host_down_means_retries_then_delivery() {
    let w = World::new().await;
    let addr = unused_addr();
    w.route_legacy("two.test", addr);
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &[]).await;

    let sent = submit(&one, "alice@one.test", &["carol@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    // The notification is accepted by two.test; its deliveries fail for now.
    eventually("acceptance", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["accepted_at"].is_string().then_some(())
    })
    .await;
    let store = two.node.context().store.clone();
    let (due, d) = eventually("a failed delivery attempt, rescheduled", || async {
        store.queued_deliveries().unwrap().pop().filter(|(_, d)| d.last_error.is_some())
    })
    .await;
    assert_eq!(d.attempts, 1);
    assert!(d.last_error.as_deref().unwrap().contains("Connection refused"), "{d:?}");
    use imgate::clock::Clock;
    assert!(due > w.clock.now(), "retried later, not now");
    assert_eq!(status(&track(&one, "alice@one.test", &msg).await), "notifying");

    // The host comes up; the next retry delivers.
    let mailbox = legacy_host(std::net::TcpListener::bind(addr).unwrap());
    w.clock.advance(Duration::from_secs(120));
    await_status(&one, "alice@one.test", &msg, "silenced").await;
    assert_eq!(mailbox.lock().unwrap().len(), 1);
    // The job ends just after its report reaches the store.
    eventually("nothing left queued", || async { store.queued_deliveries().unwrap().is_empty().then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_bounce_becomes_refused_at_the_store() {
    let (_w, mailbox, one, two) = legacy_world(false).await;

    let sent = submit(&one, "alice@one.test", &["carol@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    await_status(&one, "alice@one.test", &msg, "silenced").await;
    // The legacy host took it, and later finds it cannot deliver: it sends a
    // DSN to the envelope sender it was given.
    let got = mailbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let bounce_to = got[0].0.clone();
    assert!(bounce_to.starts_with("bounce+") && bounce_to.ends_with("@two.test"), "{bounce_to}");

    let dsn = format!(
        "From: MAILER-DAEMON@legacy.two.test\r\nTo: {bounce_to}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nI could not deliver it.\r\n\
         --b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; legacy.two.test\r\n\r\n\
         Final-Recipient: rfc822; carol@two.test\r\nAction: failed\r\nStatus: 5.2.2\r\n\
         Diagnostic-Code: smtp; 552 5.2.2 carol's mailbox is full\r\n\r\n--b--\r\n"
    );
    let mx = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(two.mx.port())
        .build();
    let env = lettre::address::Envelope::new(None, vec![bounce_to.parse().unwrap()]).unwrap();
    use lettre::AsyncTransport;
    let resp = mx.send_raw(&env, dsn.trim_end().as_bytes()).await.unwrap();
    assert!(resp.message().any(|l| l.contains("delivery report processed")), "{resp:?}");

    let t = await_status(&one, "alice@one.test", &msg, "refused").await;
    let reason = t["recipients"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("552 5.2.2 carol's mailbox is full"), "{reason}");
    assert!(inbox(&one, "alice@one.test").await.is_empty(), "no bounce message to the sender");

    // The return path works once; a replay is refused at RCPT.
    let again = mx.send_raw(&env, dsn.trim_end().as_bytes()).await.unwrap_err();
    assert!(again.to_string().contains("550"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smarthost_users_reach_smtp_domains_by_mx_and_get_one_dsn_on_failure() {
    let w = World::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    *w.relay_port.lock().unwrap() = Some(listener.local_addr().unwrap().port());
    let mailbox = legacy_host(listener);
    // legacy.test has mail exchangers and no IM2000 service.
    w.dns.mx("legacy.test", 10, "mx.legacy.test").await;
    w.dns.a("mx.legacy.test", "127.0.0.1".parse().unwrap()).await;
    let one = w.start("one.test", &["alice"]).await;

    let t = submission_client(&one, "alice@one.test", PASSWORD);
    let env = lettre::address::Envelope::new(
        Some("alice@one.test".parse().unwrap()),
        vec!["bob@legacy.test".parse().unwrap(), "nobody@legacy.test".parse().unwrap()],
    )
    .unwrap();
    use lettre::AsyncTransport;
    let resp = t.send_raw(&env, MESSAGE.trim_end().as_bytes()).await.unwrap();
    let msg = resp.message().collect::<Vec<_>>().join(" ").rsplit(' ').next().unwrap().to_string();

    let t = eventually("both outcomes", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        let st: Vec<String> = t["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["notification"].as_str().unwrap().to_string())
            .collect();
        (st == ["silenced", "refused"]).then_some(t)
    })
    .await;
    assert!(t["recipients"][1]["reason"].as_str().unwrap().contains("550"), "{t}");
    let got = mailbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "bob's copy only");
    assert_eq!(got[0].1, vec!["bob@legacy.test".to_string()]);
    assert!(String::from_utf8_lossy(&got[0].2).ends_with(MESSAGE));

    // alice is a legacy (SMTP) user here: she gets exactly one DSN.
    let dsn = eventually("the DSN in alice's inbox", || async { inbox(&one, "alice@one.test").await.pop() }).await;
    assert_eq!(dsn["notification"]["sender"], "MAILER-DAEMON@one.test");
    let body = retrieve(&one, dsn["notification"]["id"].as_str().unwrap()).await;
    assert!(body.contains("Content-Type: message/delivery-status"), "{body}");
    assert!(body.contains("Final-Recipient: rfc822; nobody@legacy.test"), "{body}");
    assert!(body.contains("Action: failed"), "{body}");
    assert!(body.contains("Subject: hello"), "original headers attached:\n{body}");
    // Nothing is left that could send another.
    let store = one.node.context().store.clone();
    eventually("the delivery jobs to end", || async { store.queued_deliveries().unwrap().is_empty().then_some(()) })
        .await;
    assert_eq!(inbox(&one, "alice@one.test").await.len(), 1, "one DSN, not more");
}

/// A minimal SMTP server of the 1990s: EHLO answers no extensions at all.
async fn seven_bit_host() -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 old.two.test SMTP\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = match line.to_ascii_uppercase().split(' ').next().unwrap_or("") {
                        "EHLO" | "HELO" => b"250 old.two.test\r\n",
                        "QUIT" => b"221 bye\r\n",
                        "NOOP" | "RSET" => b"250 ok\r\n",
                        _ => b"502 not here\r\n",
                    };
                    if w.write_all(reply).await.is_err() || line.eq_ignore_ascii_case("QUIT") {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_8bitmime_is_a_clear_permanent_failure_for_8bit_mail() {
    let w = World::new().await;
    w.route_legacy("two.test", seven_bit_host().await);
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &[]).await;
    let eight_bit = "From: alice@one.test\r\nSubject: caf\u{e9}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nd\u{e9}j\u{e0} vu\r\n";
    let sent = submit(&one, "alice@one.test", &["carol@two.test"], eight_bit).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let t = await_status(&one, "alice@one.test", &msg, "refused").await;
    let reason = t["recipients"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("8BITMIME"), "{reason}");
    let store = two.node.context().store.clone();
    eventually("no retry left queued", || async { store.queued_deliveries().unwrap().is_empty().then_some(()) }).await;
}

/// A store of our own making that breaks off its first answer half-way, then
/// honours `Range`. Returns its address and the log of what it was asked.
async fn flaky_store(content: &'static str, sender: &'static str) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Default::default();
    let seen = log.clone();
    tokio::spawn(async move {
        let mut gets = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let req = String::from_utf8_lossy(&req).to_string();
            let line = req.lines().next().unwrap_or("").to_string();
            let range = req
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("range: bytes=").map(|r| r.trim_end_matches('-').to_string())
                })
                .and_then(|r| r.parse::<usize>().ok());
            seen.lock().unwrap().push(format!("{line} range={range:?}"));
            let digest = imgate::proto::digest::sha256_field(content.as_bytes());
            let head = |status: &str, len: usize, extra: &str| {
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: message/rfc822\r\ncontent-length: {len}\r\n\
                     im2000-sender: {sender}\r\nrepr-digest: {digest}\r\nconnection: close\r\n{extra}\r\n"
                )
            };
            let reply = if line.starts_with("HEAD ") {
                head("200 OK", content.len(), "").into_bytes()
            } else if line.starts_with("GET ") {
                gets += 1;
                match range {
                    Some(from) => {
                        let rest = &content[from..];
                        let cr = format!("content-range: bytes {from}-{}/{}\r\n", content.len() - 1, content.len());
                        [head("206 Partial Content", rest.len(), &cr).into_bytes(), rest.as_bytes().to_vec()].concat()
                    }
                    None if gets == 1 => {
                        // Half the body, then the connection drops.
                        [
                            head("200 OK", content.len(), "").into_bytes(),
                            content.as_bytes()[..content.len() / 2].to_vec(),
                        ]
                        .concat()
                    }
                    None => [head("200 OK", content.len(), "").into_bytes(), content.as_bytes().to_vec()].concat(),
                }
            } else if line.starts_with("POST /im2000/v1/probe ") {
                // A store from before batch probes: the agent falls back to HEAD.
                let body = r#"{"error":"not_found","message":"no such operation"}"#;
                format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            } else {
                let body = r#"{"notification":"silenced","read":"all","pinned":false}"#;
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            };
            let _ = stream.write_all(&reply).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_pull_resumes_with_range() {
    let w = World::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    w.route_legacy("two.test", listener.local_addr().unwrap());
    let mailbox = legacy_host(listener);
    let two = w.start("two.test", &[]).await;
    let (store, log) = flaky_store(MESSAGE, "zed@fake.test").await;
    w.dns.a("store.fake.test", store.ip()).await;
    w.dns.srv("_im2000-store._tcp.fake.test", 10, 1, store.port(), "store.fake.test").await;

    let id = "5a".repeat(16);
    let n = serde_json::json!([{"store": "fake.test", "id": id, "sender": "zed@fake.test", "recipient": "carol@two.test",
        "size": MESSAGE.len(), "digest": imgate::proto::digest::sha256_field(MESSAGE.as_bytes())}]);
    let answer: serde_json::Value =
        http().post(format!("{}/notifications", two.public_url())).json(&n).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["results"][0]["result"], "accepted", "{answer}");

    eventually("delivery and its report", || async {
        let l = log.lock().unwrap().clone();
        l.iter().any(|r| r.contains("/unpin")).then_some(())
    })
    .await;
    let got = mailbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].2).ends_with(MESSAGE), "whole and unchanged");
    let l = log.lock().unwrap().clone();
    let resumed = format!("range=Some({})", MESSAGE.len() / 2);
    assert!(l.iter().any(|r| r.starts_with("GET ") && r.ends_with(&resumed)), "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_users_can_be_verified_before_notifications_are_accepted() {
    let (_w, mailbox, one, _two) = legacy_world(true).await;

    let sent = submit(&one, "alice@one.test", &["nobody@two.test", "carol@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let t = eventually("both answers", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        let r = t["recipients"].as_array().unwrap();
        (r[0]["notification"] == "nouser" && r[1]["notification"] == "silenced").then_some(t)
    })
    .await;
    // The store is told that there is no such user, not what the legacy
    // host said (that stays in the agent's log).
    assert_eq!(t["recipients"][0]["reason"], "no user nobody@two.test here", "{t}");
    let got = mailbox.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "only carol's copy was delivered");
    assert_eq!(got[0].1, vec!["carol@two.test".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_list_retry_and_drop_queued_deliveries() {
    let w = World::new().await;
    let addr = unused_addr();
    w.route_legacy("two.test", addr);
    let one = w.start("one.test", &["alice"]).await;
    let ops = format!("[[user]]\naddress = \"ops@two.test\"\npassword = \"{PASSWORD}\"\nadmin = true\n");
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", &ops).await;

    let carol =
        submit(&one, "alice@one.test", &["carol@two.test"], MESSAGE).await["message"].as_str().unwrap().to_string();
    let dave =
        submit(&one, "alice@one.test", &["dave@two.test"], MESSAGE).await["message"].as_str().unwrap().to_string();
    let url = format!("{}/admin/queue", two.admin_url());
    let jobs = eventually("two failed deliveries in the queue", || async {
        let v: serde_json::Value = http()
            .get(&url)
            .header("authorization", basic("ops@two.test", PASSWORD))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jobs = v["jobs"].as_array().unwrap().clone();
        (jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "scheduled" && j["last_error"].is_string()))
            .then_some(jobs)
    })
    .await;
    let id_of = |rcpt: &str| jobs.iter().find(|j| j["recipient"] == rcpt).unwrap()["id"].as_str().unwrap().to_string();
    let (carol_job, dave_job) = (id_of("carol@two.test"), id_of("dave@two.test"));
    assert_eq!(jobs[0]["kind"], "deliver");

    // Only admins.
    let denied = http().get(&url).header("authorization", basic("bob@two.test", PASSWORD)).send().await.unwrap();
    assert_eq!(denied.status(), 403);

    // dave's delivery is dropped; the host comes back; carol's is retried now,
    // without waiting for its backoff.
    let dropped = http()
        .delete(format!("{url}/{dave_job}"))
        .header("authorization", basic("ops@two.test", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.status(), 200);
    let mailbox = legacy_host(std::net::TcpListener::bind(addr).unwrap());
    let retried = http()
        .post(format!("{url}/{carol_job}/retry"))
        .header("authorization", basic("ops@two.test", PASSWORD))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    await_status(&one, "alice@one.test", &carol, "silenced").await;
    assert_eq!(status(&track(&one, "alice@one.test", &dave).await), "notifying", "accepted by the agent, then dropped");
    assert_eq!(mailbox.lock().unwrap().len(), 1);

    // The CLI shows the (now empty) queue.
    let c2 = two.config_path.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_imgate"))
            .args(["queue", "--config", &c2, "--user", "ops@two.test", "list"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("no jobs"), "{out:?}");
}
