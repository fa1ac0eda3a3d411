//! Peers that lie (docs/security.md, "Hostile peers"): a fake message store
//! written here — it answers for any message it is told to, with whatever
//! it is told to say, redirects, or streams without end — against a real
//! node through real sockets and the test DNS server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::harness::*;

/// How the fake store answers for a message.
#[derive(Clone)]
enum Answer {
    /// A message of this sender and content (HEAD and GET alike).
    Message { sender: String, content: Vec<u8> },
    /// HEAD names this sender and digest with no length; GET never ends.
    Endless { sender: String, digest: String },
    /// `307` to this URL.
    Redirect(String),
}

#[derive(Clone, Default)]
struct FakeStore {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    hits: Arc<AtomicUsize>,
}

impl FakeStore {
    /// Serves on a fresh loopback port; returns the store and its address.
    async fn start() -> (FakeStore, SocketAddr) {
        let store = FakeStore::default();
        let router = axum::Router::new()
            .route("/im2000/v1/messages/{id}", axum::routing::get(message))
            .with_state(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (store, addr)
    }

    fn answer(&self, id: &str, a: Answer) {
        self.answers.lock().unwrap().insert(id.to_string(), a);
    }
}

async fn message(State(f): State<FakeStore>, Path(id): Path<String>) -> Response {
    f.hits.fetch_add(1, Ordering::SeqCst);
    let answer = f.answers.lock().unwrap().get(&id).cloned();
    match answer {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Answer::Message { sender, content }) => {
            let digest = imgate::proto::digest::sha256_field(&content);
            ([("im2000-sender", sender), ("repr-digest", digest)], content).into_response()
        }
        Some(Answer::Endless { sender, digest }) => {
            let chunk = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
            let endless = futures::StreamExt::map(futures::stream::repeat(chunk), Ok::<_, std::io::Error>);
            let mut headers = HeaderMap::new();
            headers.insert("im2000-sender", sender.parse().unwrap());
            headers.insert("repr-digest", digest.parse().unwrap());
            (headers, Body::from_stream(endless)).into_response()
        }
        Some(Answer::Redirect(to)) => (StatusCode::TEMPORARY_REDIRECT, [("location", to)]).into_response(),
    }
}

/// A fresh recipient identifier, as a store would make one.
fn new_id() -> String {
    imgate::proto::RecipientId::random().to_string()
}

/// A notification as JSON, for `recipient` from `sender` at `store`.
fn notification(store: &str, id: &str, sender: &str, recipient: &str, content: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "store": store, "id": id, "sender": sender, "recipient": recipient,
        "size": content.len(), "digest": imgate::proto::digest::sha256_field(content),
    })
}

/// Posts notifications to `node`'s agent; the outcomes.
async fn notify(node: &TestNode, batch: &serde_json::Value) -> Vec<serde_json::Value> {
    let resp = http().post(format!("{}/notifications", node.public_url())).json(batch).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["results"].as_array().unwrap().clone()
}

fn result(o: &serde_json::Value) -> (&str, &str) {
    (o["result"].as_str().unwrap(), o["reason"].as_str().unwrap_or(""))
}

const FORGED: &[u8] = b"From: ceo@two.test\r\nSubject: wire the money\r\n\r\nNow.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_gateway_cannot_speak_for_other_domains_senders() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    let (fake, addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    let smtp = serde_json::json!({"protocol": "smtp", "spf": "pass", "dkim": "pass", "dmarc": "pass"});
    let cases = [
        // A sender of the agent's own domain, from anyone's store.
        ("ceo@two.test", "mail from two.test comes only from that domain's own store"),
        // A sender of a third domain, from a store nobody said is a gateway.
        ("ceo@bank.test", "evil.test is not a gateway this agent trusts"),
    ];
    for (sender, why) in cases {
        let id = new_id();
        fake.answer(&id, Answer::Message { sender: sender.into(), content: FORGED.to_vec() });
        let mut n = notification("evil.test", &id, sender, "bob@two.test", FORGED);
        n["origin"] = smtp.clone();
        let out = notify(&two, &serde_json::json!([n])).await;
        let (res, reason) = result(&out[0]);
        assert_eq!(res, "refused", "{sender}: {reason}");
        assert!(reason.contains(why), "{sender}: {reason}");
    }
    assert!(inbox(&two, "bob@two.test").await.is_empty(), "nothing forged was filed");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 0, "an untrusted gateway is not even asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_gateways_verdicts_are_filed_as_its_assertion() {
    let w = World::new().await;
    let (fake, addr) = FakeStore::start().await;
    w.dns.publish_node("gw.test", addr).await;
    let node = start_trusting(&w, "four.test", "gw.test").await;
    let id = new_id();
    let content = b"From: someone@bank.test\r\n\r\nhello\r\n".to_vec();
    fake.answer(&id, Answer::Message { sender: "someone@bank.test".into(), content: content.clone() });
    let mut n = notification("gw.test", &id, "someone@bank.test", "dave@four.test", &content);
    // The gateway's own claim of who vouches for it is not taken.
    n["origin"] = serde_json::json!({"protocol": "smtp", "dkim": "pass", "asserted_by": "four.test"});
    let out = notify(&node, &serde_json::json!([n])).await;
    assert_eq!(result(&out[0]).0, "accepted", "{:?}", out[0]);
    let entries = inbox(&node, "dave@four.test").await;
    let origin = &entries[0]["notification"]["origin"];
    assert_eq!(origin["dkim"], "pass");
    assert_eq!(origin["asserted_by"], "gw.test", "the verdicts are shown as the gateway's word: {origin}");
}

/// A node for `domain` (user dave) that trusts `gateway`.
async fn start_trusting(w: &World, domain: &str, gateway: &str) -> TestNode {
    w.start_tuned(domain, &["dave"], &format!("trusted_gateways = [\"{gateway}\"]\n"), "", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_found_in_dns_on_private_addresses_are_not_contacted() {
    let w = World::new().await;
    *w.private_peers.lock().unwrap() = false;
    let two = w.start("two.test", &["bob"]).await;
    let (fake, addr) = FakeStore::start().await;
    // evil.test's SRV records point at loopback: an attacker's way inside.
    w.dns.publish_node("evil.test", addr).await;
    let id = new_id();
    let content = b"From: x@evil.test\r\n\r\nhi\r\n".to_vec();
    fake.answer(&id, Answer::Message { sender: "x@evil.test".into(), content: content.clone() });
    let out =
        notify(&two, &serde_json::json!([notification("evil.test", &id, "x@evil.test", "bob@two.test", &content)]))
            .await;
    let (res, reason) = result(&out[0]);
    assert_eq!(res, "retry", "{reason}");
    assert_eq!(reason, "cannot verify the message at its store now; try later", "a generic reason");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 0, "nothing connected to the private address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_from_a_store_are_not_followed_and_reasons_tell_nothing() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    let (fake, addr) = FakeStore::start().await;
    let (inside, inside_addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    let id = new_id();
    fake.answer(&id, Answer::Redirect(format!("http://{inside_addr}/im2000/v1/messages/{id}")));
    let content = b"From: x@evil.test\r\n\r\nhi\r\n".to_vec();
    inside.answer(&id, Answer::Message { sender: "x@evil.test".into(), content: content.clone() });
    let out =
        notify(&two, &serde_json::json!([notification("evil.test", &id, "x@evil.test", "bob@two.test", &content)]))
            .await;
    let (res, reason) = result(&out[0]);
    assert_eq!(res, "refused");
    assert_eq!(reason, "the message could not be verified at its store");
    assert!(!reason.contains(&inside_addr.port().to_string()) && !reason.contains("307"), "{reason}");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
    assert_eq!(inside.hits.load(Ordering::SeqCst), 0, "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_stops_at_the_notified_size() {
    let w = World::new().await;
    // bob is on a legacy host: the node pulls to deliver. Nothing listens
    // there; the pull fails first.
    w.route_legacy("two.test", unused_addr());
    let two = w.start_with("two.test", &[], "127.0.0.1:0", "127.0.0.1:0", &admin_keys("two.test")).await;
    let (fake, addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    let id = new_id();
    let content = b"From: x@evil.test\r\n\r\nsmall\r\n";
    let digest = imgate::proto::digest::sha256_field(content);
    fake.answer(&id, Answer::Endless { sender: "x@evil.test".into(), digest });
    let out =
        notify(&two, &serde_json::json!([notification("evil.test", &id, "x@evil.test", "bob@two.test", content)]))
            .await;
    assert_eq!(result(&out[0]).0, "accepted", "{:?}", out[0]);
    let error = eventually("the pull to fail", || async {
        let (_, q) = admin_json(&two, reqwest::Method::GET, "/admin/queue", None).await;
        let text = q.to_string();
        text.contains("sends more than the notified").then_some(text)
    })
    .await;
    assert!(error.contains(&format!("notified {} octets", content.len())), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_bounded_per_field_per_inbox_and_per_store() {
    let w = World::new().await;
    let two = start_limited(&w).await;
    let (fake, addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    let content = b"From: x@evil.test\r\n\r\nflood\r\n".to_vec();
    let mut batch = Vec::new();
    for _ in 0..4 {
        let id = new_id();
        fake.answer(&id, Answer::Message { sender: "x@evil.test".into(), content: content.clone() });
        batch.push(notification("evil.test", &id, "x@evil.test", "bob@two.test", &content));
    }
    // A 3 KB HELO: refused for its length before anything else.
    let mut long = batch[0].clone();
    long["id"] = new_id().into();
    long["origin"] = serde_json::json!({"protocol": "smtp", "helo": "h".repeat(3000)});
    let out = notify(&two, &serde_json::json!([long])).await;
    assert_eq!(result(&out[0]), ("refused", "origin.helo is longer than 255 octets"));

    // The inbox holds 3: the 4th is told to come back later.
    let out = notify(&two, &serde_json::Value::Array(batch.clone())).await;
    let results: Vec<(&str, &str)> = out.iter().map(result).collect();
    assert_eq!(&results[..3], &[("accepted", ""); 3]);
    assert_eq!(results[3], ("retry", "the recipient's inbox is full; try later"));
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 3);

    // evil.test may send 5 a minute: 4 above, one more here, then no more
    // (a notification refused for its length was not counted).
    let out = notify(&two, &serde_json::json!([batch[3].clone(), batch[3].clone()])).await;
    assert_eq!(result(&out[0]), ("retry", "the recipient's inbox is full; try later"));
    assert_eq!(result(&out[1]), ("retry", "too many notifications from this store; slow down"));
    let metrics = http().get(format!("http://{}/metrics", two.admin.unwrap())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    for what in ["notification_field", "inbox_full", "store_notifications"] {
        assert!(metrics.contains(&format!("imgate_rate_limited_total{{what=\"{what}\"}}")), "{what}: {metrics}");
    }
}

/// two.test (bob) with an inbox of 3 and 5 notifications per store a minute.
async fn start_limited(w: &World) -> TestNode {
    w.start_tuned("two.test", &["bob"], "max_inbox = 3\nstore_rate = 5\n", "", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_host_is_asked_only_about_verified_notifications() {
    let w = World::new().await;
    let legacy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    w.route_legacy_verified("two.test", legacy.local_addr().unwrap());
    let two = w.start("two.test", &[]).await;
    let (_fake, addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    // The store does not have the message: the legacy host must not be
    // probed for bob (an attacker's way to make us scan it).
    let content = b"From: x@evil.test\r\n\r\nhi\r\n";
    let out = notify(
        &two,
        &serde_json::json!([notification("evil.test", &new_id(), "x@evil.test", "bob@two.test", content)]),
    )
    .await;
    assert_eq!(result(&out[0]).0, "refused");
    let probed = tokio::time::timeout(std::time::Duration::from_millis(300), legacy.accept()).await;
    assert!(probed.is_err(), "the legacy host was contacted for an unverified notification");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let (public, submission) = (unused_addr(), unused_addr());
    let config = dir.path().join("log.toml");
    let text = format!(
        "data_dir = {:?}\n[im2000]\npublic = [\"{public}\"]\n[smtp]\nsubmission = [\"{submission}\"]\n\
         submission_plaintext = true\n[[domain]]\nname = \"solo.test\"\n",
        dir.path().join("data")
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let forged = "INFO imgate: FORGED admin password changed";
    let n = serde_json::json!([{
        "store": "evil.test", "id": new_id(), "sender": format!("x@evil.test\r\n{forged}"),
        "recipient": format!("bob@solo.test\n{forged}"), "size": 1, "digest": "sha-256=:x:",
    }]);
    let url = format!("http://{public}/im2000/v1/notifications");
    let out = eventually("the node", || async { http().post(&url).json(&n).send().await.ok() }).await;
    assert_eq!(out.status(), 200);
    // An AUTH user name with a line break, over SMTP.
    let mut tcp = eventually("submission", || async { tokio::net::TcpStream::connect(submission).await.ok() }).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let user = format!("eve\r\n{forged}");
    let token = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0pw"))
    };
    tcp.write_all(format!("EHLO x.test\r\nAUTH PLAIN {token}\r\n").as_bytes()).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 1024];
    while !got.contains("535") {
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    eventually("both logged", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.contains("notification considered") && text.contains("SMTP AUTH failed")).then_some(())
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(|l| !l.starts_with("INFO imgate: FORGED")), "a forged line:\n{text}");
    assert!(text.contains("\\r\\nINFO imgate: FORGED"), "the field is logged, escaped:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imap_reader_never_sees_what_a_store_changed_after_notifying() {
    let w = World::new().await;
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", crate::imap::IMAP).await;
    let (fake, addr) = FakeStore::start().await;
    w.dns.publish_node("evil.test", addr).await;
    let (changed, recalled) = (new_id(), new_id());
    let content = b"From: x@evil.test\r\nSubject: invoice\r\n\r\nPay to account 1.\r\n".to_vec();
    for id in [&changed, &recalled] {
        fake.answer(id, Answer::Message { sender: "x@evil.test".into(), content: content.clone() });
    }
    let batch = serde_json::json!([
        notification("evil.test", &changed, "x@evil.test", "bob@two.test", &content),
        notification("evil.test", &recalled, "x@evil.test", "bob@two.test", &content),
    ]);
    let out = notify(&two, &batch).await;
    assert!(out.iter().all(|o| result(o).0 == "accepted"), "{out:?}");
    // Verified and filed; now the store swaps one and drops the other.
    let swapped = b"From: x@evil.test\r\nSubject: invoice\r\n\r\nPay to account 2.\r\n".to_vec();
    fake.answer(&changed, Answer::Message { sender: "x@evil.test".into(), content: swapped });
    fake.answers.lock().unwrap().remove(&recalled);

    let mut c = crate::imap::Raw::connect(two.node.imap_addrs()[0]).await;
    c.cmd("a1", &format!("LOGIN bob@two.test \"{PASSWORD}\"")).await;
    c.cmd("a2", "SELECT INBOX").await;
    let f = c.cmd("a3", "FETCH 1 BODY[]").await;
    assert!(!f.iter().any(|l| l.contains("account 2")), "the changed message is not shown: {f:?}");
    let last = f.last().unwrap();
    assert!(last.starts_with("a3 NO [UNAVAILABLE]") && last.contains("digest"), "{last}");
    let f = c.cmd("a4", "FETCH 2 BODY[]").await;
    assert!(f.iter().any(|l| l.contains("no longer available")), "a placeholder for the gone one: {f:?}");
    assert!(f.last().unwrap().starts_with("a4 OK"), "{f:?}");
}
