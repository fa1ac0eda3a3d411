//! Migrating a domain user by user: a mixed domain whose MX and IM2000 agent
//! is imgate, with a real legacy SMTP host (mailin-embedded) for the users
//! still on SMTP; routes moved live with `imgate route set` while mail for
//! them is queued; queue pause and resume; and changes that are refused.

use crate::cli::run;
use crate::harness::*;
use crate::legacy::{Mailbox, legacy_host};
use crate::smtp::{envelope, plain_client, send};

const FROM_SMTP: &str = "From: someone@legacy.test\r\nTo: x@two.test\r\nSubject: old world\r\n\r\nStill on SMTP.\r\n";

fn user_keys(address: &str, route: &str) -> String {
    format!("[[user]]\naddress = \"{address}\"\npassword = \"{PASSWORD}\"\nroute = \"{route}\"\n")
}

/// What the legacy host received for `rcpt`: the data of each message.
fn received_by(mailbox: &Mailbox, rcpt: &str) -> Vec<String> {
    let got = mailbox.lock().unwrap();
    got.iter()
        .filter(|(_, to, _)| to.iter().any(|t| t == rcpt))
        .map(|(_, _, d)| String::from_utf8_lossy(d).into())
        .collect()
}

/// The CLI against `node` as its admin, with `--json`.
async fn cli_json(node: &TestNode, args: &[&str]) -> serde_json::Value {
    let config = node.config_path.display().to_string();
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.splice(1..1, ["--config".to_string(), config, "--json".to_string()]);
    serde_json::from_str(&run(all).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_domain_serves_both_kinds_of_user_in_both_directions() {
    let w = World::new().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    w.route_legacy("two.test", listener.local_addr().unwrap());
    let mailbox = legacy_host(listener);
    let one = w.start("one.test", &["alice"]).await;
    let extra = format!("{}{}", user_keys("ann@two.test", "im2000"), admin_keys("two.test"));
    let two = w.start_with("two.test", &[], "127.0.0.1:0", "127.0.0.1:0", &extra).await;

    // SMTP in, for a user still on SMTP: relayed to the legacy host with
    // the content untouched but for one Received header.
    let smtp = plain_client(two.mx);
    send(&smtp, &envelope("someone@legacy.test", &["bob@two.test"]), FROM_SMTP).await;
    let relayed = eventually("bob's SMTP mail at the legacy host", || async {
        received_by(&mailbox, "bob@two.test").first().cloned()
    })
    .await;
    assert_eq!(relayed.matches("Received:").count(), 1, "{relayed}");
    assert!(relayed.contains("with ESMTP") || relayed.contains("with SMTP"), "{relayed}");
    assert!(relayed.ends_with(FROM_SMTP), "{relayed}");

    // SMTP in, for a user on IM2000: their inbox.
    send(&smtp, &envelope("someone@legacy.test", &["ann@two.test"]), FROM_SMTP).await;
    eventually("ann's SMTP mail in her inbox", || async {
        (inbox(&two, "ann@two.test").await.len() == 1).then_some(())
    })
    .await;

    // IM2000 in, for each: pulled and delivered by SMTP / filed in the inbox.
    let to_bob = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    submit(&one, "alice@one.test", &["ann@two.test"], MESSAGE).await;
    await_status(&one, "alice@one.test", to_bob["message"].as_str().unwrap(), "silenced").await;
    let pulled = received_by(&mailbox, "bob@two.test");
    assert_eq!(pulled.len(), 2);
    assert!(pulled[1].starts_with("Received: from one.test by node.two.test with IM2000 id "), "{}", pulled[1]);
    eventually("ann's IM2000 mail", || async { (inbox(&two, "ann@two.test").await.len() == 2).then_some(()) }).await;
    assert!(received_by(&mailbox, "ann@two.test").is_empty());

    // Where each stands, and why.
    let bob = cli_json(&two, &["route", "explain", "bob@two.test"]).await;
    assert_eq!(
        (bob["route"].as_str(), bob["rule"].as_str(), bob["source"].as_str()),
        (Some("legacy"), Some("domain"), Some("config"))
    );
    let ann = cli_json(&two, &["route", "explain", "ann@two.test"]).await;
    assert_eq!((ann["route"].as_str(), ann["rule"].as_str()), (Some("im2000"), Some("user")));
    let status = cli_json(&two, &["migration", "status"]).await;
    let d = &status["domains"][0];
    assert_eq!(d["domain"], "two.test");
    assert_eq!((d["users_im2000"].as_u64(), d["users_legacy"].as_u64()), (Some(1), Some(1)), "ann / ops: {d}");
    let t = &d["last_day"];
    assert_eq!((t["im2000_messages"].as_u64(), t["legacy_messages"].as_u64()), (Some(2), Some(2)), "{d}");
    assert!(t["legacy_bytes"].as_u64().unwrap() > t["im2000_bytes"].as_u64().unwrap() / 2, "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_users_take_their_queued_mail_along() {
    let w = World::new().await;
    let legacy_addr = unused_addr(); // down for now
    w.route_legacy("two.test", legacy_addr);
    let one = w.start_with("one.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", &admin_keys("one.test")).await;
    let extra = format!(
        "{}{}{}",
        user_keys("carol@two.test", "legacy"),
        user_keys("erin@two.test", "im2000"),
        admin_keys("two.test")
    );
    let extra = format!("{extra}{}", crate::imap::IMAP);
    let two = w.start_with("two.test", &[], "127.0.0.1:0", "127.0.0.1:0", &extra).await;
    // carol's mail client is already pointed at the node, waiting (IDLE).
    let mut client = crate::imap::Raw::connect(two.node.imap_addrs()[0]).await;
    client.cmd("a1", &format!("LOGIN carol@two.test \"{PASSWORD}\"")).await;
    let sel = client.cmd("a2", "SELECT INBOX").await;
    assert!(sel.iter().any(|l| l == "* 0 EXISTS\r\n"), "{sel:?}");
    client.send("a3 IDLE").await;
    assert!(client.line().await.starts_with("+ "));

    // carol is on SMTP and her host is down: her delivery waits in the queue.
    submit(&one, "alice@one.test", &["carol@two.test"], MESSAGE).await;
    let job = eventually("carol's delivery tried and waiting", || async {
        let q = cli_json(&two, &["queue", "list", "--recipient", "carol@two.test"]).await;
        let jobs = q["jobs"].as_array().unwrap().clone();
        jobs.into_iter().find(|j| j["state"] == "scheduled" && j["attempts"].as_u64() >= Some(1))
    })
    .await;
    assert_eq!(job["host"], legacy_addr.to_string());
    let shown = cli_json(&two, &["queue", "show", job["id"].as_str().unwrap()]).await;
    let attempt = &shown["history"][0];
    assert_eq!(attempt["host"], legacy_addr.to_string(), "{shown}");
    assert!(!attempt["result"].as_str().unwrap().is_empty() && attempt["at"].is_string(), "{shown}");
    assert_eq!(shown["sender"], "alice@one.test");

    // She moves to IM2000: the waiting delivery lands in her inbox instead.
    let set = cli_json(&two, &["route", "set", "carol@two.test", "im2000"]).await;
    assert_eq!((set["route"].as_str(), set["previous"].as_str()), (Some("im2000"), Some("legacy")));
    cli_json(&two, &["queue", "retry", "--all"]).await;
    eventually("carol's queued mail in her inbox", || async {
        (inbox(&two, "carol@two.test").await.len() == 1).then_some(())
    })
    .await;
    assert_eq!(client.line().await, "* 1 EXISTS\r\n", "her client sees it at once");
    client.send("DONE").await;
    let f = client.until("a3").await;
    assert!(f.last().unwrap().starts_with("a3 OK"), "{f:?}");
    let f = client.cmd("a4", "FETCH 1 BODY[TEXT]").await;
    assert!(f.iter().any(|l| l.contains("Hello, Bob.")), "{f:?}");
    let q = cli_json(&two, &["queue", "list", "--recipient", "carol@two.test"]).await;
    assert!(q["jobs"].as_array().unwrap().is_empty(), "{q}");

    // The other way: alice's notification to erin is held at one.test
    // (paused for two.test) while erin moves to SMTP.
    let paused = cli_json(&one, &["queue", "pause", "--host", "two.test"]).await;
    assert_eq!(paused["hosts"][0], "two.test");
    let to_erin = submit(&one, "alice@one.test", &["erin@two.test"], MESSAGE).await;
    eventually("erin's notification held", || async {
        let q = cli_json(&one, &["queue", "list", "--state", "held"]).await;
        q["jobs"].as_array().unwrap().iter().any(|j| j["recipient"] == "erin@two.test").then_some(())
    })
    .await;
    assert_eq!(status(&track(&one, "alice@one.test", to_erin["message"].as_str().unwrap()).await), "unprocessed");
    cli_json(&two, &["route", "set", "erin@two.test", "legacy"]).await;
    let mailbox = legacy_host(std::net::TcpListener::bind(legacy_addr).unwrap());
    cli_json(&one, &["queue", "resume", "--host", "two.test"]).await;
    await_status(&one, "alice@one.test", to_erin["message"].as_str().unwrap(), "silenced").await;
    assert_eq!(received_by(&mailbox, "erin@two.test").len(), 1);
    assert!(received_by(&mailbox, "carol@two.test").is_empty(), "carol's mail went to her inbox, not SMTP");
    assert!(inbox(&two, "erin@two.test").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_route_changes_leave_the_table_as_it_was() {
    let w = World::new().await;
    // three.test's MX is this very gateway: routing it to SMTP is a loop.
    let mx = unused_addr();
    *w.relay_port.lock().unwrap() = Some(mx.port());
    w.dns.mx("three.test", 10, "mx.three.test").await;
    w.dns.a("mx.three.test", mx.ip()).await;
    let extra = format!("[[domain]]\nname = \"three.test\"\n{}", admin_keys("two.test"));
    let ports = Ports { mx: mx.to_string(), ..Ports::any() };
    let two = w.start_on("two.test", &["bob"], ports, &extra).await;

    let (_, before) = admin_json(&two, reqwest::Method::GET, "/admin/routes", None).await;
    let put = reqwest::Method::PUT;
    let cases = [
        ("/admin/routes/three.test", r#"{"route":"legacy"}"#, 422, "route_loop"),
        ("/admin/routes/two.test", r#"{"route":"smtp"}"#, 422, "bad_route"),
        ("/admin/routes/zed@elsewhere.test", r#"{"route":"legacy"}"#, 422, "unknown_domain"),
        ("/admin/routes/nomailbox@two.test", r#"{"route":"im2000"}"#, 422, "no_mailbox"),
        ("/admin/routes/two.test", r#"{"route":"#, 400, "bad_json"),
    ];
    for (path, body, code, error) in cases {
        let (status, v) = admin_json(&two, put.clone(), path, Some(body)).await;
        assert_eq!((status, v["error"].as_str()), (code, Some(error)), "{path} {body}: {v}");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    // The private listener serves no admin routes, even to an admin.
    for path in ["/im2000/v1/admin/routes", "/metrics"] {
        let private = http()
            .get(format!("http://{}{path}", two.private))
            .header("authorization", basic("ops@two.test", PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(private.status(), 404, "{path}");
    }
    let metrics = http().get(format!("http://{}/metrics", two.admin.unwrap())).send().await.unwrap();
    assert!(metrics.text().await.unwrap().contains("imgate_queue_jobs"));
    let denied = http()
        .put(format!("{}/admin/routes/two.test", two.admin_url()))
        .header("authorization", basic("bob@two.test", PASSWORD))
        .header("content-type", "application/json")
        .body(r#"{"route":"legacy"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let out = tokio::task::spawn_blocking({
        let c = two.config_path.display().to_string();
        move || crate::cli::imgate(&["route", "--config", &c, "set", "two.test", "smtp"])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"smtp\" is not a route"), "{out:?}");

    let (_, after) = admin_json(&two, reqwest::Method::GET, "/admin/routes", None).await;
    assert_eq!(before, after);
    let (_, three) = admin_json(&two, reqwest::Method::GET, "/admin/routes/x@three.test", None).await;
    assert_eq!(three["route"], "im2000");
}
