//! Sender authentication on the internet's terms: DMARC judged on the
//! RFC 5322 `From:` domain (its policy applied in the session), RFC 8601
//! result names, and DKIM signatures on what this node sends by SMTP —
//! through the real DNS server of the test world.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::harness::*;
use imgate::config::DkimKeyConfig;
use imgate::outbound::dkim::{Signer, generate};

/// One SMTP transaction from outside; the reply to the end of data (or the
/// first refusal before it).
async fn smtp_send(mx: SocketAddr, mail_from: &str, to: &str, message: &str) -> String {
    let tcp = TcpStream::connect(mx).await.unwrap();
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut reply = async || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await.unwrap().unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    };
    reply().await;
    for (line, want) in [
        ("EHLO client.outside.test".to_string(), "250"),
        (format!("MAIL FROM:<{mail_from}>"), "250"),
        (format!("RCPT TO:<{to}>"), "250"),
        ("DATA".into(), "354"),
    ] {
        w.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        let got = reply().await;
        if !got.starts_with(want) {
            return got;
        }
    }
    w.write_all(message.as_bytes()).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    reply().await
}

/// The origin of the newest notification in `user`'s inbox.
async fn newest_origin(node: &TestNode, user: &str, count: usize) -> serde_json::Value {
    let entries = eventually("the message is filed", || async {
        let e = inbox(node, user).await;
        (e.len() >= count).then_some(e)
    })
    .await;
    entries.last().unwrap()["notification"]["origin"].clone()
}

fn message(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: bob@two.test\r\nSubject: {subject}\r\nDate: Tue, 1 Dec 2026 00:00:00 +0000\r\n\r\n{body}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dmarc_is_judged_on_the_from_domain_and_its_policy_applied() {
    let w = World::new().await;
    w.dns.txt("_dmarc.sender.test", "v=DMARC1; p=reject").await;
    w.dns.txt("sender.test", "v=spf1 -all").await;
    w.dns.txt("_dmarc.soft.test", "v=DMARC1; p=quarantine").await;
    w.dns.txt("unrelated.test", "v=spf1 +all").await;
    let two = w.start("two.test", &["bob"]).await;
    let lenient = w.start_tuned("three.test", &["bob"], "", "dmarc_enforce = false\n", "").await;

    // SPF passes for the envelope's domain, but that is not the From:
    // domain, and nothing signs: DMARC fails, and sender.test says reject.
    let spoof = message("ceo@sender.test", "wire the money", "now");
    let reply = smtp_send(two.mx, "bulk@unrelated.test", "bob@two.test", &spoof).await;
    assert!(reply.starts_with("550 5.7.1") && reply.contains("sender.test"), "{reply}");
    assert!(inbox(&two, "bob@two.test").await.is_empty(), "a refused message is not filed");

    // p=quarantine: filed, marked, with the domain it was judged for.
    let reply = smtp_send(two.mx, "bulk@unrelated.test", "bob@two.test", &message("ceo@soft.test", "hi", "x")).await;
    assert!(reply.starts_with("250"), "{reply}");
    let origin = newest_origin(&two, "bob@two.test", 1).await;
    assert_eq!(origin["spf"], "pass", "{origin}");
    assert_eq!(origin["dkim"], "none", "{origin}");
    assert_eq!(origin["dmarc"], "fail", "{origin}");
    assert_eq!(origin["header_from"], "soft.test", "{origin}");
    assert_eq!(origin["dmarc_policy"], "quarantine", "{origin}");

    // A domain without a DMARC record: none, and no policy.
    let reply = smtp_send(two.mx, "bulk@unrelated.test", "bob@two.test", &message("x@unrelated.test", "hi", "y")).await;
    assert!(reply.starts_with("250"), "{reply}");
    let origin = newest_origin(&two, "bob@two.test", 2).await;
    assert_eq!(origin["dmarc"], "none", "no record, no DMARC: {origin}");
    assert!(origin.get("dmarc_policy").is_none(), "{origin}");

    // Set to only mark, the node files p=reject failures, marked "reject".
    let to = "bob@three.test";
    let reply = smtp_send(lenient.mx, "bulk@unrelated.test", to, &spoof.replace("two.test", "three.test")).await;
    assert!(reply.starts_with("250"), "{reply}");
    let origin = newest_origin(&lenient, "bob@three.test", 1).await;
    assert_eq!((origin["dmarc"].as_str(), origin["dmarc_policy"].as_str()), (Some("fail"), Some("reject")), "{origin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_changed_after_signing_is_dkim_fail_not_neutral() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.pem");
    let record = generate("ed25519", &key).unwrap();
    w.dns.txt("s1._domainkey.signer.test", &record).await;
    w.dns.txt("_dmarc.signer.test", "v=DMARC1; p=none").await;
    let signer = Signer::load("signer.test", &DkimKeyConfig { selector: "s1".into(), key }).unwrap();
    let two = w.start("two.test", &["bob"]).await;

    let original = message("news@signer.test", "signed", "the body as signed");
    let signed = format!("{}{original}", signer.sign(original.as_bytes()).unwrap());
    let reply = smtp_send(two.mx, "news@signer.test", "bob@two.test", &signed).await;
    assert!(reply.starts_with("250"), "{reply}");
    let origin = newest_origin(&two, "bob@two.test", 1).await;
    assert_eq!((origin["dkim"].as_str(), origin["dmarc"].as_str()), (Some("pass"), Some("pass")), "{origin}");

    let tampered = signed.replace("the body as signed", "the body as changed");
    let reply = smtp_send(two.mx, "news@signer.test", "bob@two.test", &tampered).await;
    assert!(reply.starts_with("250"), "p=none: filed, {reply}");
    let origin = newest_origin(&two, "bob@two.test", 2).await;
    assert_eq!(origin["dkim"], "fail", "RFC 8601: a body hash mismatch fails; {origin}");
    assert_eq!(origin["dmarc"], "fail", "{origin}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_leaving_by_smtp_is_signed_so_a_strict_receiver_passes_dmarc() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("one.pem");
    let record = generate("rsa", &key).unwrap();
    // one.test's SPF passes nothing from here, and its DMARC says reject:
    // only an aligned DKIM signature gets its mail in.
    w.dns.txt("s2026._domainkey.one.test", &record).await;
    w.dns.txt("_dmarc.one.test", "v=DMARC1; p=reject").await;
    w.dns.txt("one.test", "v=spf1 -all").await;
    // carol is on a legacy host: another gateway's MX, checking senders.
    let legacy = w.start("legacy.test", &["carol"]).await;
    let keys = format!("[[domain.dkim]]\nselector = \"s2026\"\nkey = {key:?}\n");
    w.domain_keys.lock().unwrap().insert("one.test".into(), keys);
    let extra = format!("[[domain]]\nname = \"legacy.test\"\nroute = \"legacy\"\nlegacy_host = \"{}\"\n", legacy.mx);
    let one = w.start_on("one.test", &["alice"], Ports::any(), &extra).await;

    let content = "From: alice@one.test\r\nTo: carol@legacy.test\r\nSubject: signed on the way out\r\n\r\nhello\r\n";
    let sub = submit(&one, "alice@one.test", &["carol@legacy.test"], content).await;
    let msg = sub["message"].as_str().unwrap().to_string();
    await_status(&one, "alice@one.test", &msg, "silenced").await;
    let origin = newest_origin(&legacy, "carol@legacy.test", 1).await;
    assert_eq!(origin["dkim"], "pass", "{origin}");
    assert_eq!(origin["dmarc"], "pass", "{origin}");
    assert_eq!(origin["header_from"], "one.test", "{origin}");
    let metrics = one.node.context().metrics.render(&[]);
    assert!(metrics.contains("imgate_dkim_signed_total{domain=\"one.test\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_dkim_key_and_a_broken_key_changes_nothing() {
    let w = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    w.dns.txt("s2026._domainkey.one.test", &generate("ed25519", &old).unwrap()).await;
    w.dns.txt("s2027._domainkey.one.test", &generate("rsa", &new).unwrap()).await;
    let legacy = w.start("legacy.test", &["carol"]).await;
    let extra = format!("[[domain]]\nname = \"legacy.test\"\nroute = \"legacy\"\nlegacy_host = \"{}\"\n", legacy.mx);
    let keys =
        |selector: &str, key: &std::path::Path| format!("[[domain.dkim]]\nselector = \"{selector}\"\nkey = {key:?}\n");
    w.domain_keys.lock().unwrap().insert("one.test".into(), keys("s2026", &old));
    let one = w.start_on("one.test", &["alice"], Ports::any(), &extra).await;

    // What carol's gateway stored of the newest message: its signature.
    let send_and_read = async |n: usize| {
        let content = "From: alice@one.test\r\nTo: carol@legacy.test\r\nSubject: rotation\r\n\r\nhello\r\n";
        let sub = submit(&one, "alice@one.test", &["carol@legacy.test"], content).await;
        await_status(&one, "alice@one.test", sub["message"].as_str().unwrap(), "silenced").await;
        let origin = newest_origin(&legacy, "carol@legacy.test", n).await;
        assert_eq!(origin["dkim"], "pass", "{origin}");
        let entries = inbox(&legacy, "carol@legacy.test").await;
        retrieve(&legacy, entries.last().unwrap()["notification"]["id"].as_str().unwrap()).await
    };
    assert!(send_and_read(1).await.contains("s=s2026"));

    let reconfig = |keys: String| {
        w.domain_keys.lock().unwrap().insert("one.test".into(), keys);
        imgate::config::Config::parse(&w.config_text("one.test", &["alice"], &Ports::any(), &extra), "reload").unwrap()
    };
    one.node.reload(reconfig(keys("s2027", &new))).await;
    let content = send_and_read(2).await;
    assert!(content.contains("s=s2027") && !content.contains("s=s2026"), "{content}");

    // A key file that no longer parses: the reload is refused whole.
    std::fs::write(dir.path().join("broken.pem"), "not a key").unwrap();
    one.node.reload(reconfig(keys("s2028", &dir.path().join("broken.pem")))).await;
    assert!(send_and_read(3).await.contains("s=s2027"));
}
