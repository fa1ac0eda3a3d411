//! Clients that try to exhaust or fool a node (docs/security.md, "Hostile
//! clients"), each written here over plain sockets: from several loopback
//! addresses (127.0.0.2, .3, …: all of 127/8 is this machine), so limits
//! per client address can be told from limits for everyone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::*;

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// An SMTP client that speaks line by line and reads whole replies.
struct Smtp {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl Smtp {
    async fn open(from: &str, to: SocketAddr) -> (Smtp, String) {
        let mut s = Smtp { tcp: connect_from(from, to).await, buf: Vec::new() };
        let greeting = s.reply().await;
        (s, greeting)
    }

    /// The next reply, all its lines; empty when the server closed.
    async fn reply(&mut self) -> String {
        loop {
            let text = String::from_utf8_lossy(&self.buf).to_string();
            if let Some(end) = text.split_inclusive("\r\n").position(|l| l.len() > 3 && &l[3..4] == " ") {
                let reply: String = text.split_inclusive("\r\n").take(end + 1).collect();
                self.buf.drain(..reply.len());
                return reply;
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(10), self.tcp.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return String::new(),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no reply; have {text:?}"),
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, RCPT, DATA: ready for message data.
    async fn begin(&mut self, from: &str, to: &str) {
        assert!(self.cmd("EHLO client.test").await.starts_with("250"));
        assert!(self.cmd(&format!("MAIL FROM:<{from}>")).await.starts_with("250"));
        let rcpt = self.cmd(&format!("RCPT TO:<{to}>")).await;
        assert!(rcpt.starts_with("250"), "{rcpt}");
        assert!(self.cmd("DATA").await.starts_with("354"));
    }

    /// A whole message to `to`; the reply at its end.
    async fn message(&mut self, from: &str, to: &str, body: &str) -> String {
        self.begin(from, to).await;
        self.send(format!("From: {from}\r\nSubject: x\r\n\r\n{body}\r\n.\r\n").as_bytes()).await;
        self.reply().await
    }
}

/// Starts two.test (bob, and the admin ops) with `im2000` and `smtp` keys added.
async fn node_with(w: &World, im2000: &str, smtp: &str, users: &str) -> TestNode {
    let extra = format!("{}{users}", admin_keys("two.test"));
    w.start_tuned("two.test", &["bob"], im2000, &format!("verify_sender = false\n{smtp}"), &extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_outside_sender_cannot_fill_the_store_for_every_other() {
    let w = World::new().await;
    let two = node_with(&w, "", "sender_quota = \"8KiB\"\nsender_domain_quota = \"12KiB\"\n", "").await;
    let body = format!("{}\r\n", "q".repeat(98)).repeat(30);
    let send = |from: &'static str| {
        let (mx, body) = (two.mx, body.clone());
        async move {
            let (mut s, _) = Smtp::open("127.0.0.2", mx).await;
            s.message(from, "bob@two.test", &body).await
        }
    };
    // Each message is about 3.3 KB once stored: two fit a sender's 8 KiB.
    assert!(send("a@x.test").await.starts_with("250"));
    assert!(send("a@x.test").await.starts_with("250"));
    assert!(send("a@x.test").await.starts_with("452 4.3.1"), "a@x.test has used its quota");
    // Another sender of x.test: room in x.test's 12 KiB for one more.
    assert!(send("c@x.test").await.starts_with("250"));
    assert!(send("c@x.test").await.starts_with("452 4.3.1"), "x.test has used its domain quota");
    // Everyone else is unaffected.
    assert!(send("d@y.test").await.starts_with("250"));
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 4);
    let metrics = http().get(format!("http://{}/metrics", two.admin.unwrap())).send().await.unwrap();
    assert!(metrics.text().await.unwrap().contains("imgate_rate_limited_total{what=\"sender_quota\"} 2"));
}

/// Basic credentials for the private listener, from `from`.
async fn inbox_as(node: &TestNode, from: &str, user: &str, password: &str) -> u16 {
    let client = reqwest::Client::builder().local_address(from.parse::<IpAddr>().unwrap()).build().unwrap();
    let resp = client
        .get(format!("{}/inbox", node.private_url()))
        .header("authorization", basic(user, password))
        .send()
        .await
        .unwrap();
    resp.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_passwords_throttle_the_address_not_the_user() {
    let w = World::new().await;
    let two = node_with(&w, "", "", "").await;
    for _ in 0..10 {
        assert_eq!(inbox_as(&two, "127.0.0.2", "bob@two.test", "guess").await, 401);
    }
    // The guessing address is held back, even with the right password...
    assert_eq!(inbox_as(&two, "127.0.0.2", "bob@two.test", PASSWORD).await, 429);
    // ...but bob, from his own address, is not locked out.
    assert_eq!(inbox_as(&two, "127.0.0.1", "bob@two.test", PASSWORD).await, 200);
    // The same limit holds for SMTP AUTH from the guessing address.
    let (mut s, _) = Smtp::open("127.0.0.2", two.submission).await;
    assert!(s.cmd("EHLO client.test").await.starts_with("250"));
    let auth = s.cmd(&format!("AUTH PLAIN {}", plain("bob@two.test", PASSWORD))).await;
    assert!(auth.starts_with("421 4.7.0"), "{auth}");
}

fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_race_past_the_limit() {
    let w = World::new().await;
    let two = node_with(&w, "", "", "").await;
    let guesses = (0..40).map(|i| {
        let url = two.private_url();
        async move {
            let client = reqwest::Client::builder().local_address("127.0.0.3".parse::<IpAddr>().unwrap()).build();
            let resp = client
                .unwrap()
                .get(format!("{url}/inbox"))
                .header("authorization", basic("bob@two.test", &format!("guess{i}")))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let judged = statuses.iter().filter(|s| **s == 401).count();
    let held = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(judged + held, 40, "{statuses:?}");
    assert!(judged <= 10, "{judged} guesses were judged; the limit is 10 an address ({statuses:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_the_mx_do_not_lock_out_submission() {
    let w = World::new().await;
    let two = node_with(&w, "", "max_sessions = 3\nmax_sessions_per_ip = 2\n", "").await;
    let (_a, g) = Smtp::open("127.0.0.2", two.mx).await;
    assert!(g.starts_with("220"));
    let (_b, g) = Smtp::open("127.0.0.2", two.mx).await;
    assert!(g.starts_with("220"));
    let (_, g) = Smtp::open("127.0.0.2", two.mx).await;
    assert!(g.starts_with("421 4.7.0 Too many connections from your address"), "{g}");
    let (_c, g) = Smtp::open("127.0.0.3", two.mx).await;
    assert!(g.starts_with("220"));
    let (_, g) = Smtp::open("127.0.0.4", two.mx).await;
    assert!(g.starts_with("421 4.3.2"), "the MX pool is full: {g}");
    // Submission has its own pool.
    let (mut s, g) = Smtp::open("127.0.0.1", two.submission).await;
    assert!(g.starts_with("220"), "{g}");
    assert!(s.cmd("EHLO me.test").await.starts_with("250"));
    assert!(s.cmd(&format!("AUTH PLAIN {}", plain("bob@two.test", PASSWORD))).await.starts_with("235"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_harvesting_addresses_is_closed() {
    let w = World::new().await;
    let two = node_with(&w, "", "", "").await;
    let (mut s, _) = Smtp::open("127.0.0.2", two.mx).await;
    assert!(s.cmd("EHLO client.test").await.starts_with("250"));
    assert!(s.cmd("MAIL FROM:<h@x.test>").await.starts_with("250"));
    for i in 1..20 {
        let r = s.cmd(&format!("RCPT TO:<user{i}@two.test>")).await;
        assert!(r.starts_with("550 5.1.1"), "{i}: {r}");
    }
    let last = s.cmd("RCPT TO:<user20@two.test>").await;
    assert!(last.starts_with("421 4.7.0"), "{last}");
    assert_eq!(s.reply().await, "", "and the connection is closed");
    let metrics = http().get(format!("http://{}/metrics", two.admin.unwrap())).send().await.unwrap();
    assert!(metrics.text().await.unwrap().contains("imgate_rate_limited_total{what=\"smtp_refused_recipients\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_data_held_in_memory_is_bounded_for_the_whole_node() {
    let w = World::new().await;
    // 1 MiB of data in memory for all sessions together.
    let two = node_with(&w, "", "max_inflight_data = \"1MiB\"\n", "").await;
    let chunk = format!("{}\r\n", "d".repeat(998));
    let part: String = chunk.repeat(700); // ~700 KB
    let (mut first, _) = Smtp::open("127.0.0.2", two.mx).await;
    first.begin("a@x.test", "bob@two.test").await;
    first.send(b"Subject: one\r\n\r\n").await;
    first.send(part.as_bytes()).await;
    // Let the first session's data arrive before the second's.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut second, _) = Smtp::open("127.0.0.3", two.mx).await;
    second.begin("b@y.test", "bob@two.test").await;
    second.send(format!("Subject: two\r\n\r\n{part}.\r\n").as_bytes()).await;
    let refused = second.reply().await;
    assert!(refused.starts_with("452 4.3.1"), "{refused}");
    first.send(b".\r\n").await;
    assert!(first.reply().await.starts_with("250"));
    // Once the first is stored, the budget is free again.
    second.begin("b@y.test", "bob@two.test").await;
    second.send(format!("Subject: two\r\n\r\n{part}.\r\n").as_bytes()).await;
    assert!(second.reply().await.starts_with("250"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_before_the_dot_refuses_the_message() {
    let w = World::new().await;
    let two = node_with(&w, "", "", "").await;
    let (mut s, _) = Smtp::open("127.0.0.2", two.mx).await;
    s.begin("a@x.test", "bob@two.test").await;
    s.send(b"Subject: first\r\n\r\nhi\r\n\0.\r\nMAIL FROM:<ceo@two.test>\r\nRCPT TO:<bob@two.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n").await;
    let r = s.reply().await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
    assert!(inbox(&two, "bob@two.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitters_send_only_as_themselves_or_their_aliases() {
    let w = World::new().await;
    let alias =
        "[[user]]\naddress = \"carol@two.test\"\npassword = \"correct horse\"\naliases = [\"sales@two.test\"]\n";
    let two = node_with(&w, "", "", alias).await;
    let try_as = |user: &'static str, from: &'static str| {
        let addr = two.submission;
        async move {
            let (mut s, _) = Smtp::open("127.0.0.1", addr).await;
            assert!(s.cmd("EHLO me.test").await.starts_with("250"));
            assert!(s.cmd(&format!("AUTH PLAIN {}", plain(user, PASSWORD))).await.starts_with("235"));
            assert!(s.cmd(&format!("MAIL FROM:<{user}>")).await.starts_with("250"));
            assert!(s.cmd("RCPT TO:<bob@two.test>").await.starts_with("250"));
            assert!(s.cmd("DATA").await.starts_with("354"));
            s.send(format!("From: {from}\r\nSubject: x\r\n\r\nhi\r\n.\r\n").as_bytes()).await;
            s.reply().await
        }
    };
    let forged = try_as("bob@two.test", "ceo@two.test").await;
    assert!(forged.starts_with("550 5.7.1 From: ceo@two.test is not an address bob@two.test may send as"), "{forged}");
    assert!(try_as("bob@two.test", "Bob <bob@two.test>").await.starts_with("250"));
    assert!(try_as("carol@two.test", "sales@two.test").await.starts_with("250"));
    // The HTTP submission service holds to the same rule.
    let resp = http()
        .post(format!("{}/submissions", two.private_url()))
        .query(&[("to", "bob@two.test")])
        .header("authorization", basic("bob@two.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body("From: ceo@two.test\r\n\r\nhi\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "from_mismatch");
}

/// Sends raw HTTP to `addr` and reads what comes back within `wait`.
async fn raw_http(addr: SocketAddr, request: &[u8], wait: Duration) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_private_listener_checks_credentials_before_the_body_and_times_bodies_out() {
    let w = World::new().await;
    let two = node_with(&w, "body_timeout = \"1s\"\n", "", "").await;
    // 20 MB announced, none sent: a stranger is refused at once.
    let stranger = format!(
        "POST /im2000/v1/submissions?to=bob@two.test HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: message/rfc822\r\nContent-Length: 20000000\r\n\r\n",
        basic("bob@two.test", "wrong")
    );
    let answer = raw_http(two.private, stranger.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // A user whose body stalls is answered 408 after body_timeout.
    let stalled = format!(
        "POST /im2000/v1/submissions?to=bob@two.test HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n\
         Content-Type: message/rfc822\r\nContent-Length: 1000\r\n\r\nFrom: bob@two.test\r\n",
        basic("bob@two.test", PASSWORD)
    );
    let answer = raw_http(two.private, stalled.as_bytes(), Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_need_a_json_body_type_and_operators_have_their_own_listener() {
    let w = World::new().await;
    let two = node_with(&w, "", "", "").await;
    let (mut s, _) = Smtp::open("127.0.0.2", two.mx).await;
    assert!(s.message("a@x.test", "bob@two.test", "hi").await.starts_with("250"));
    // What a cross-site form could send: text/plain.
    let clear = |ctype: &'static str| {
        http()
            .post(format!("{}/inbox/clear", two.private_url()))
            .header("authorization", basic("bob@two.test", PASSWORD))
            .header("content-type", ctype)
            .body(r#"{"through": "999"}"#)
            .send()
    };
    let resp = clear("text/plain").await.unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 1, "nothing was cleared");
    assert_eq!(clear("application/json").await.unwrap().status(), 200);
    assert!(inbox(&two, "bob@two.test").await.is_empty());

    // /metrics and the admin API: on the admin listener, nowhere else.
    let get = |url: String| http().get(url).header("authorization", basic("ops@two.test", PASSWORD)).send();
    assert_eq!(get(format!("http://{}/metrics", two.private)).await.unwrap().status(), 404);
    assert_eq!(get(format!("{}/admin/queue", two.private_url())).await.unwrap().status(), 404);
    assert_eq!(get(format!("http://{}/metrics", two.admin.unwrap())).await.unwrap().status(), 200);
    assert_eq!(get(format!("{}/admin/queue", two.admin_url())).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped_per_address() {
    let w = World::new().await;
    let two = node_with(&w, "max_connections_per_ip = 2\n", "", "").await;
    let _a = connect_from("127.0.0.2", two.public).await;
    let _b = connect_from("127.0.0.2", two.public).await;
    let mut third = connect_from("127.0.0.2", two.public).await;
    third.write_all(b"GET /im2000/v1/lists/x HTTP/1.1\r\nHost: x\r\n\r\n").await.ok();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the third connection from one address is closed unanswered");
    // Another address is served.
    let resp = reqwest::Client::builder()
        .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
        .get(format!("{}/lists/x", two.public_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
