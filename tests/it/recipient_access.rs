//! Retrieval as the recipient's side sees it: ranges, header-only reads,
//! HEAD, unknown and recalled identifiers, lists, lifetimes and quota.

use std::time::Duration;

use crate::harness::*;

async fn one_message(w: &World, to: &[&str]) -> (TestNode, String, Vec<String>) {
    let one = w.start("one.test", &["alice"]).await;
    w.publish_down("two.test").await;
    let sent = submit(&one, "alice@one.test", to, MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    // Recipient ids are only ever told to the recipients; read them from the
    // store the way the notification worker does.
    let store = one.node.context().store.clone();
    let id: imgate::proto::MessageId = msg.parse().unwrap();
    let (m, recs) = store.track(&id).unwrap().unwrap();
    let ids = m.recipients.iter().zip(&recs).map(|(sel, r)| format!("{sel}{}", hex(&r.verifier))).collect();
    (one, msg, ids)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_headers_and_head() {
    let w = World::new().await;
    let (one, msg, ids) = one_message(&w, &["bob@two.test"]).await;
    let url = format!("{}/messages/{}", one.public_url(), ids[0]);
    let c = http();

    let head = c.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], MESSAGE.len().to_string().as_str());
    assert_eq!(head.headers()["im2000-sender"], "alice@one.test");
    assert!(head.headers()["repr-digest"].to_str().unwrap().starts_with("sha-256=:"));
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["recipients"][0]["read"], "unread", "HEAD is not a read");

    let part = c.get(format!("{url}?part=headers")).send().await.unwrap();
    assert_eq!(part.status(), 200);
    let headers_part = part.text().await.unwrap();
    assert!(MESSAGE.starts_with(&headers_part) && headers_part.ends_with("\r\n\r\n"), "{headers_part:?}");
    assert_eq!(track(&one, "alice@one.test", &msg).await["recipients"][0]["read"], "headers");

    let r = c.get(&url).header("range", "bytes=0-9").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 0-9/{}", MESSAGE.len()).as_str());
    assert_eq!(r.text().await.unwrap(), &MESSAGE[..10]);
    // Resuming from octet 10 completes the read.
    let rest = c.get(&url).header("range", "bytes=10-").send().await.unwrap();
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.text().await.unwrap(), &MESSAGE[10..]);
    assert_eq!(track(&one, "alice@one.test", &msg).await["recipients"][0]["read"], "all");

    let bad = c.get(&url).header("range", "bytes=9999-").send().await.unwrap();
    assert_eq!(bad.status(), 416);
    let e: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(e["error"], "range_not_satisfiable");

    let unknown = c.get(format!("{}/messages/{}", one.public_url(), "0".repeat(32))).send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    let malformed = c.get(format!("{}/messages/zzz", one.public_url())).send().await.unwrap();
    assert_eq!(malformed.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_gives_410_and_refuse_shows_reason() {
    let w = World::new().await;
    let (one, msg, ids) = one_message(&w, &["bob@two.test", "carol@two.test"]).await;
    let c = http();
    let refuse = c
        .post(format!("{}/messages/{}/refuse", one.public_url(), ids[1]))
        .json(&serde_json::json!({"reason": "550 5.7.1 not wanted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refuse.status(), 200);
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["recipients"][1]["notification"], "refused");
    assert_eq!(t["recipients"][1]["reason"], "550 5.7.1 not wanted");

    let cancel = c
        .delete(format!("{}/submissions/{msg}", one.private_url()))
        .header("authorization", basic("alice@one.test", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let got = c.get(format!("{}/messages/{}", one.public_url(), ids[0])).send().await.unwrap();
    assert_eq!(got.status(), 410);
    assert_eq!(got.json::<serde_json::Value>().await.unwrap()["error"], "gone");
    assert_eq!(track(&one, "alice@one.test", &msg).await["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_expiry_frees_the_body() {
    let w = World::new().await;
    let (one, msg, ids) = one_message(&w, &["bob@two.test"]).await;
    // Let the first notification attempt finish before time jumps.
    eventually("a first attempt", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["reason"].is_string().then_some(())
    })
    .await;
    w.clock.advance(Duration::from_secs(7 * 86_400 + 1));
    one.node.wake();
    let url = format!("{}/messages/{}", one.public_url(), ids[0]);
    eventually("expiry", || async { (http().get(&url).send().await.unwrap().status() == 410).then_some(()) }).await;
    assert_eq!(track(&one, "alice@one.test", &msg).await["state"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_scanned_and_retrieved() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let resp = http()
        .post(format!("{}/submissions", one.private_url()))
        .query(&[("list", "news@one.test")])
        .header("authorization", basic("alice@one.test", PASSWORD))
        .header("content-type", "message/rfc822")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let scan: serde_json::Value =
        http().get(format!("{}/lists/news@one.test", one.public_url())).send().await.unwrap().json().await.unwrap();
    let id = scan["messages"][0]["id"].as_str().unwrap();
    assert_eq!(scan["messages"][0]["sender"], "alice@one.test");
    assert_eq!(retrieve(&one, id).await, MESSAGE);
    let next = scan["next"].as_str().unwrap();
    let later: serde_json::Value = http()
        .get(format!("{}/lists/news@one.test?since={next}", one.public_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(later["messages"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_is_a_clear_error() {
    let w = World::new().await;
    let one = w.start_with("one.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", "").await;
    // A second node config with a tiny quota.
    let small = w.start_with("small.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", "[store]\nquota = \"100B\"").await;
    drop(one);
    w.publish_down("two.test").await;
    let send = || {
        http()
            .post(format!("{}/submissions", small.private_url()))
            .query(&[("to", "bob@two.test")])
            .header("authorization", basic("alice@small.test", PASSWORD))
            .header("content-type", "message/rfc822")
            .body("From: alice@small.test\r\n\r\n".to_string() + &"y".repeat(60))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 201);
    let over = send().await.unwrap();
    assert_eq!(over.status(), 507);
    let e: serde_json::Value = over.json().await.unwrap();
    assert_eq!(e["error"], "over_quota");
    assert!(e["message"].as_str().unwrap().contains("100"), "{e}");
}
