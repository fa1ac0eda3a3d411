//! SMTP in, end to end: legacy senders reach IM2000 users through the MX,
//! local users submit with STARTTLS and AUTH, a restart after 250 loses
//! nothing, and smuggling through a real socket stores nothing.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::*;

const LEGACY: &str =
    "From: someone@legacy.test\r\nTo: bob@two.test\r\nSubject: from the old world\r\n\r\nStill on SMTP.\r\n";

pub fn plain_client(addr: std::net::SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

pub fn envelope(from: &str, to: &[&str]) -> Envelope {
    Envelope::new(Some(from.parse().unwrap()), to.iter().map(|t| t.parse().unwrap()).collect()).unwrap()
}

/// The message id from a `250 2.0.0 Ok: queued as ID` reply.
fn queued_id(resp: &lettre::transport::smtp::response::Response) -> String {
    let text: String = resp.message().collect::<Vec<_>>().join(" ");
    text.rsplit(' ').next().unwrap().to_string()
}

pub async fn send(
    t: &AsyncSmtpTransport<Tokio1Executor>,
    env: &Envelope,
    msg: &str,
) -> lettre::transport::smtp::response::Response {
    // lettre adds the final CRLF.CRLF itself.
    t.send_raw(env, msg.strip_suffix("\r\n").unwrap().as_bytes()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sender_reaches_an_im2000_user_through_the_mx() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    // legacy.test publishes SPF (the test sender's address is allowed) and DMARC.
    w.dns.txt("legacy.test", "v=spf1 ip4:127.0.0.1 -all").await;
    w.dns.txt("_dmarc.legacy.test", "v=DMARC1; p=reject").await;
    w.dns.txt("forged.test", "v=spf1 ip4:192.0.2.1 -all").await;
    let mx = plain_client(two.mx);

    let resp = send(&mx, &envelope("someone@legacy.test", &["bob@two.test"]), LEGACY).await;
    assert_eq!(resp.code().to_string(), "250");
    let msg = queued_id(&resp);
    assert_eq!(msg.len(), 32, "{resp:?}");

    let entry = eventually("bob's notification", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    let n = &entry["notification"].clone();
    assert_eq!(n["sender"], "someone@legacy.test");
    assert_eq!(n["store"], "two.test");
    assert_eq!(n["origin"]["protocol"], "smtp");
    assert_eq!(n["origin"]["client_ip"], "127.0.0.1");
    assert_eq!(n["origin"]["spf"], "pass", "{n}");
    assert_eq!(n["origin"]["dkim"], "none", "{n}");
    assert_eq!(n["origin"]["dmarc"], "pass", "{n}");

    // A sender whose domain's SPF does not allow this client (and which
    // publishes no DMARC): the verdict travels with the notification for
    // the recipient to judge.
    let forged_content = LEGACY.replace("someone@legacy.test", "ceo@forged.test");
    send(&mx, &envelope("ceo@forged.test", &["bob@two.test"]), &forged_content).await;
    let forged = eventually("the second notification", || async {
        inbox(&two, "bob@two.test").await.into_iter().find(|e| e["notification"]["sender"] == "ceo@forged.test")
    })
    .await;
    assert_eq!(forged["notification"]["origin"]["spf"], "fail");
    // The same client claiming legacy.test in From: fails that domain's
    // DMARC (p=reject): refused in the session.
    let err =
        mx.send_raw(&envelope("ceo@forged.test", &["bob@two.test"]), LEGACY.trim_end().as_bytes()).await.unwrap_err();
    assert!(err.to_string().contains("5.7.1 DMARC policy of legacy.test"), "{err}");

    let body = http().get(format!("{}/messages/{}", two.public_url(), n["id"].as_str().unwrap())).send().await.unwrap();
    let body = body.text().await.unwrap();
    let (received, rest) = body.split_once("\r\n\t").unwrap();
    assert!(
        received.starts_with("Received: from 127.0.0.1 ([127.0.0.1])") || received.starts_with("Received: from "),
        "{body}"
    );
    assert!(body.contains(&format!("with ESMTP id {msg}")), "{body}");
    assert_eq!(body.matches("Received:").count(), 1);
    assert!(rest.ends_with(LEGACY), "the content is stored as sent:\n{body}");

    // Unknown users are refused in the session; nothing is stored for them.
    let err = mx
        .send_raw(&envelope("someone@legacy.test", &["nobody@two.test"]), LEGACY.trim_end().as_bytes())
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("no such user"), "{err}");
    // And the MX is no relay.
    let err = mx
        .send_raw(&envelope("someone@legacy.test", &["carol@one.test"]), LEGACY.trim_end().as_bytes())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("relaying denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_mime_is_stored_as_received() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    // 2,000 nested multiparts: SPF/DKIM/DMARC parse it at the MX, the
    // recipient's agent never does; it is stored and served byte for byte.
    let mut head = String::from("From: someone@legacy.test\r\nMIME-Version: 1.0\r\n");
    let mut tail = String::new();
    for i in 0..2_000 {
        head.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
        tail = format!("\r\n--b{i}--\r\n{tail}");
    }
    let deep = format!("{head}Content-Type: text/plain\r\n\r\ndeep{tail}");
    let resp = send(&plain_client(two.mx), &envelope("someone@legacy.test", &["bob@two.test"]), &deep).await;
    assert_eq!(resp.code().to_string(), "250");
    let entry = eventually("the notification", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    let stored = retrieve(&two, entry["notification"]["id"].as_str().unwrap()).await;
    assert!(stored.ends_with(&deep), "stored as received, after one Received header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_with_starttls_and_auth_reaches_another_domain() {
    let w = World::with_tls(&["one.test", "two.test"]).await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &["bob"]).await;
    let pem = std::fs::read(ca_pem()).unwrap();
    let tls = TlsParameters::builder("127.0.0.1".into())
        .add_root_certificate(Certificate::from_pem(&pem).unwrap())
        .build_rustls()
        .unwrap();
    let submission = |password: &str| {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(one.submission.port())
            .tls(Tls::Required(tls.clone()))
            .credentials(Credentials::new("alice@one.test".into(), password.into()))
            .authentication(vec![Mechanism::Plain])
            .timeout(Some(Duration::from_secs(20)))
            .build()
    };

    let bad = submission("wrong")
        .send_raw(&envelope("alice@one.test", &["bob@two.test"]), MESSAGE.trim_end().as_bytes())
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("535"), "{bad}");

    let resp = send(&submission(PASSWORD), &envelope("alice@one.test", &["bob@two.test"]), MESSAGE).await;
    let msg = queued_id(&resp);
    // The 250 names a message alice can track like any other she sent.
    let t = eventually("acceptance at two.test", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["accepted_at"].is_string().then_some(t)
    })
    .await;
    assert_eq!(t["sender"], "alice@one.test");
    let entry = inbox(&two, "bob@two.test").await.pop().unwrap();
    let body = retrieve(&one, entry["notification"]["id"].as_str().unwrap()).await;
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(body.ends_with(MESSAGE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_250_keeps_the_message_and_its_notification() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two_addr = w.publish_down("two.test").await;
    let t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(one.submission.port())
        .tls(Tls::None)
        .credentials(Credentials::new("alice@one.test".into(), PASSWORD.into()))
        .authentication(vec![Mechanism::Login])
        .build();
    let msg = queued_id(&send(&t, &envelope("alice@one.test", &["bob@two.test"]), MESSAGE).await);
    eventually("a first failed attempt", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["reason"].is_string().then_some(())
    })
    .await;

    let one = w.restart(one).await;
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["state"], "stored");
    assert_eq!(status(&t), "notifying");

    let two = w.start_with("two.test", &["bob"], &two_addr.to_string(), "127.0.0.1:0", "").await;
    w.clock.advance(Duration::from_secs(120));
    eventually("delivery after the restart", || async { inbox(&two, "bob@two.test").await.pop() }).await;
}

/// Writes `input` to a fresh MX session and returns everything it answers.
async fn raw_session(addr: std::net::SocketAddr, input: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(input).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await.unwrap().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_through_a_real_socket_stores_nothing() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    let stored = || {
        let accounts = two.node.context().store.accounts().unwrap();
        let outside = accounts.iter().filter(|(a, _)| a.starts_with(imgate::store::schema::OUTSIDE_ACCOUNT));
        outside.map(|(_, a)| a.messages).sum::<u64>()
    };
    for terminator in ["\n.\r\n", "\n.\n", "\r\n.\n", "\r.\r"] {
        let input = format!(
            "EHLO attacker.example\r\nMAIL FROM:<a@legacy.example>\r\nRCPT TO:<bob@two.test>\r\nDATA\r\n\
             Subject: one\r\n\r\nfirst{terminator}MAIL FROM:<ceo@two.test>\r\nRCPT TO:<bob@two.test>\r\nDATA\r\n\
             Subject: smuggled\r\n\r\nsecond\r\n.\r\nQUIT\r\n"
        );
        let replies = raw_session(two.mx, input.as_bytes()).await;
        assert!(replies.contains("\r\n554 5.6.0 "), "{terminator:?}: {replies}");
        assert!(!replies.contains("queued as"), "{terminator:?}: {replies}");
        assert!(replies.ends_with("221 2.0.0 Bye\r\n"), "{terminator:?}: {replies}");
    }
    assert_eq!(stored(), 0);
    let ok = raw_session(
        two.mx,
        b"HELO ok.example\r\nMAIL FROM:<a@legacy.example>\r\nRCPT TO:<bob@two.test>\r\nDATA\r\nSubject: fine\r\n\r\nok\r\n.\r\nQUIT\r\n",
    )
    .await;
    assert!(ok.contains("queued as"), "{ok}");
    assert_eq!(stored(), 1);
}

/// A node on its own (no DNS world) with the given extra `[smtp]` keys.
async fn smtp_node(dir: &std::path::Path, smtp_keys: &str) -> imgate::node::Node {
    let text = format!(
        "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\n\
         [smtp]\nmx = [\"127.0.0.1:0\"]\nverify_sender = false\n{smtp_keys}\n\
         [[domain]]\nname = \"solo.test\"\n[[user]]\naddress = \"bob@solo.test\"\npassword = \"x\"\n",
        dir.join("data")
    );
    imgate::node::Node::start(imgate::config::Config::parse(&text, "solo").unwrap()).await.unwrap()
}

async fn read_reply(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cap_idle_timeout_and_shutdown_say_421() {
    let dir = tempfile::tempdir().unwrap();
    let node = smtp_node(dir.path(), "max_sessions = 1\nidle_timeout = \"1s\"").await;
    let mx = node.mx_addrs()[0];

    // One session at a time: the second is told to come back later.
    let mut first = tokio::net::TcpStream::connect(mx).await.unwrap();
    assert!(read_reply(&mut first).await.starts_with("220 "));
    let mut second = tokio::net::TcpStream::connect(mx).await.unwrap();
    assert!(read_reply(&mut second).await.starts_with("421 4.3.2"));

    // An idle session is closed with 421 4.4.2, freeing its place.
    assert!(read_reply(&mut first).await.starts_with("421 4.4.2"));
    let mut third = tokio::net::TcpStream::connect(mx).await.unwrap();
    assert!(read_reply(&mut third).await.starts_with("220 "));

    // Shutdown tells an open session 421 and waits for it.
    let shutdown = tokio::spawn(node.shutdown());
    assert!(read_reply(&mut third).await.starts_with("421 4.3.2"));
    shutdown.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_message_data_is_closed_and_a_brisk_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = smtp_node(dir.path(), "min_data_rate = \"1KiB\"\nidle_timeout = \"3s\"").await;
    let mx = node.mx_addrs()[0];
    let start = |mx| async move {
        let mut c = tokio::net::TcpStream::connect(mx).await.unwrap();
        read_reply(&mut c).await;
        for cmd in ["EHLO slow.test\r\n", "MAIL FROM:<a@slow.test>\r\n", "RCPT TO:<bob@solo.test>\r\n", "DATA\r\n"] {
            c.write_all(cmd.as_bytes()).await.unwrap();
            read_reply(&mut c).await;
        }
        c
    };
    // 40 octets a second, each write well inside the idle timeout.
    let mut slow = start(mx).await;
    let began = std::time::Instant::now();
    let closed = loop {
        if slow.write_all(b"Subject: slow\r\n0123456789012345678901\r\n").await.is_err() {
            break String::new();
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            Ok(Ok(n)) => break String::from_utf8_lossy(&buf[..n]).into_owned(),
            _ => assert!(began.elapsed() < Duration::from_secs(20), "never closed"),
        }
    };
    assert!(closed.starts_with("421 4.4.2"), "{closed:?}");
    assert!(began.elapsed() < Duration::from_secs(12), "closed within about one window: {:?}", began.elapsed());

    // 64 KiB at once is well above the floor.
    let mut brisk = start(mx).await;
    let mut data = "Subject: brisk\r\n\r\n".to_string();
    data.push_str(&format!("{}\r\n", "x".repeat(78)).repeat(840));
    data.push_str(".\r\n");
    brisk.write_all(data.as_bytes()).await.unwrap();
    assert!(read_reply(&mut brisk).await.starts_with("250 "));
    node.shutdown().await;
}

/// `GET /metrics` parsed into "name{labels}" → value.
async fn scrape(node: &TestNode) -> std::collections::HashMap<String, u64> {
    let text =
        http().get(format!("http://{}/metrics", node.admin.unwrap())).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_workload() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    let mx = plain_client(two.mx);
    send(&mx, &envelope("someone@legacy.example", &["bob@two.test"]), LEGACY).await;
    assert!(mx.send_raw(&envelope("someone@legacy.example", &["nobody@two.test"]), b"x").await.is_err());
    submit(&two, "bob@two.test", &["bob@two.test"], MESSAGE).await;
    let entries = eventually("two notifications", || async {
        let e = inbox(&two, "bob@two.test").await;
        (e.len() == 2).then_some(e)
    })
    .await;
    retrieve(&two, entries[0]["notification"]["id"].as_str().unwrap()).await;

    let m = eventually("the outcomes recorded", || async {
        let m = scrape(&two).await;
        (m.get("imgate_notifications_sent_total{outcome=\"accepted\"}") == Some(&2)).then_some(m)
    })
    .await;
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    assert_eq!(get("imgate_messages_stored_total{origin=\"smtp\"}"), 1, "{m:?}");
    assert_eq!(get("imgate_messages_stored_total{origin=\"im2000\"}"), 1);
    assert_eq!(get("imgate_smtp_replies_total{code=\"550\"}"), 1);
    assert!(get("imgate_smtp_sessions_total{listener=\"mx\"}") >= 1, "lettre may reuse its connection");
    assert_eq!(get("imgate_notifications_received_total{result=\"accepted\"}"), 2);
    assert_eq!(get("imgate_retrievals_total{part=\"all\"}"), 1);
    assert_eq!(get("imgate_stored_messages{class=\"smtp\"}"), 1);
    assert_eq!(get("imgate_stored_messages{class=\"im2000\"}"), 1);
    assert_eq!(get("imgate_queue_jobs{kind=\"notify\",state=\"scheduled\"}"), 2, "the daily re-sends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_listeners_can_come_from_socket_activation() {
    // Like systemd: the socket is bound by someone else (port 25 needs no
    // privilege in the daemon) and passed as fd 3 with LISTEN_FDS/LISTEN_PID.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("activated.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhostname = \"activated.test\"\n[im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\n\
             [smtp]\nmx = [\"127.0.0.1:25\"]\nverify_sender = false\n[[domain]]\nname = \"solo.test\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let fd: std::os::fd::OwnedFd = listener.into();
    // The shell moves the socket from stdin to fd 3, then becomes imgate, so
    // that LISTEN_PID ($$) is imgate's own pid.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec \"$0\" serve --config \"$1\"",
            env!("CARGO_BIN_EXE_imgate"),
            config.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::from(fd))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let greeting = eventually("the activated MX to answer", || async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut buf = [0u8; 128];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(greeting.starts_with("220 activated.test ESMTP"), "{greeting}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to bind port 25 and drop privileges: scripts/test runs it when root (CI is)"]
async fn started_as_root_it_binds_then_becomes_run_as() {
    assert!(nix::unistd::geteuid().is_root(), "this test starts imgate as root");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mx = unused_addr();
    let data = dir.path().join("data");
    let config = dir.path().join("root.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nrun_as = \"nobody\"\nhostname = \"dropped.test\"\n\
             [im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\n\
             [smtp]\nmx = [\"{mx}\"]\nverify_sender = false\n[[domain]]\nname = \"solo.test\"\n\
             [[user]]\naddress = \"bob@solo.test\"\npassword = \"x\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It serves SMTP, and stores a message, as nobody.
    let replies = eventually("the MX to take a message", || async {
        let mut s = tokio::net::TcpStream::connect(mx).await.ok()?;
        s.write_all(b"HELO x.example\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<bob@solo.test>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\nQUIT\r\n")
            .await
            .ok()?;
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(replies.contains("queued as"), "{replies}");
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap().uid.as_raw();
    assert!(uid.split_whitespace().skip(1).all(|u| u == nobody.to_string()), "{uid}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), nobody);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_dropping_sessions_and_sigterm_drains_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (mx, private) = (unused_addr(), unused_addr());
    let config = dir.path().join("hup.toml");
    let text = |users: &str| {
        format!(
            "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"{private}\"]\n\
             [smtp]\nmx = [\"{mx}\"]\nverify_sender = false\n[[domain]]\nname = \"solo.test\"\n{users}",
            dir.path().join("data")
        )
    };
    let alice = format!("[[user]]\naddress = \"alice@solo.test\"\npassword = \"{PASSWORD}\"\n");
    std::fs::write(&config, text(&alice)).unwrap();
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let inbox_status = |user: &'static str| {
        let url = format!("http://{private}/im2000/v1/inbox");
        async move { http().get(url).header("authorization", basic(user, PASSWORD)).send().await.ok().map(|r| r.status()) }
    };
    eventually("alice", || async { (inbox_status("alice@solo.test").await? == 200).then_some(()) }).await;
    assert_eq!(inbox_status("carol@solo.test").await.unwrap(), 401);

    // A session open across the reload.
    let mut session = tokio::net::TcpStream::connect(mx).await.unwrap();
    let mut buf = [0u8; 256];
    let n = session.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"220 "));

    // carol joins; a broken file is refused and changes nothing.
    std::fs::write(&config, "this is not toml [").unwrap();
    std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    eventually("the broken file refused", || async {
        std::fs::read_to_string(&log).ok()?.contains("keeping the old one").then_some(())
    })
    .await;
    assert_eq!(inbox_status("alice@solo.test").await.unwrap(), 200, "the old configuration stays");
    let carol = format!("{alice}[[user]]\naddress = \"carol@solo.test\"\npassword = \"{PASSWORD}\"\n");
    std::fs::write(&config, text(&carol)).unwrap();
    std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    eventually("carol after the reload", || async { (inbox_status("carol@solo.test").await? == 200).then_some(()) })
        .await;
    assert_eq!(inbox_status("alice@solo.test").await.unwrap(), 200);

    session.write_all(b"HELO still.here\r\nRCPT TO:<carol@solo.test>\r\n").await.unwrap();
    let mut got = String::new();
    while !got.contains("503") {
        let n = tokio::time::timeout(Duration::from_secs(10), session.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the session was dropped: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.starts_with("250 "), "{got}");

    // SIGTERM: the open session is told 421, and the process exits 0.
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), session.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"421 4.3.2"), "{}", String::from_utf8_lossy(&buf[..n]));
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}
