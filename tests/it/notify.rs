//! Notification between stores and agents: verification of what arrives,
//! status the sender sees, retries while an agent is down, and restarts.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

async fn post_notifications(node: &TestNode, body: serde_json::Value) -> serde_json::Value {
    let resp = http().post(format!("{}/notifications", node.public_url())).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_notifications_are_refused() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &["bob"]).await;
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let real = eventually("the real notification", || async {
        inbox(&two, "bob@two.test").await.first().map(|e| e["notification"].clone())
    })
    .await;

    let n = |store: &str, id: &str, sender: &str| {
        json!({"store": store, "id": id, "sender": sender, "recipient": "bob@two.test",
               "size": MESSAGE.len(), "digest": real["digest"]})
    };
    let id = real["id"].as_str().unwrap();
    let answer = post_notifications(
        &two,
        json!([
            // A store that is not the sender's domain.
            n("one.test", id, "ceo@bank.test"),
            // The sender's real store, but no such message there.
            n("one.test", &"ab".repeat(16), "alice@one.test"),
            // The same notification again: idempotent.
            n("one.test", id, "alice@one.test"),
            // Not a user here.
            {"store": "one.test", "id": id, "sender": "alice@one.test", "recipient": "nobody@two.test",
             "size": 1, "digest": "x"},
            // A domain not served here.
            {"store": "one.test", "id": id, "sender": "alice@one.test", "recipient": "bob@three.test",
             "size": 1, "digest": "x"},
        ]),
    )
    .await;
    let results: Vec<&str> =
        answer["results"].as_array().unwrap().iter().map(|r| r["result"].as_str().unwrap()).collect();
    assert_eq!(results, ["refused", "refused", "duplicate", "nouser", "refused"], "{answer}");
    assert!(answer["results"][0]["reason"].as_str().unwrap().contains("not the sender's domain"));
    assert!(answer["results"][1]["reason"].as_str().unwrap().contains("no such message"));
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 1, "nothing forged was filed");

    // A message recalled by its sender no longer verifies.
    let resp = http()
        .delete(format!("{}/submissions/{msg}", one.private_url()))
        .header("authorization", basic("alice@one.test", PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let carol = post_notifications(&two, json!([n("one.test", id, "alice@one.test")])).await;
    assert_eq!(carol["results"][0]["result"], "duplicate", "already filed stays filed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_recipient_and_unknown_domain_show_in_track() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let _two = w.start("two.test", &["bob"]).await;
    w.dns.a("legacy.test", "127.0.0.1".parse().unwrap()).await;
    let sent = submit(&one, "alice@one.test", &["nobody@two.test", "x@nosuch.test", "y@legacy.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    // Tracking reads the message, then its recipients: the last status and
    // the release are one write, but a read between the two sees the
    // statuses final and the message not yet released. Wait for both.
    let t = eventually("final statuses", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        let done = t["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["notification"] != "unprocessed" && r["notification"] != "notifying");
        (done && t["state"] != "stored").then_some(t)
    })
    .await;
    let st: Vec<&str> =
        t["recipients"].as_array().unwrap().iter().map(|r| r["notification"].as_str().unwrap()).collect();
    assert_eq!(st, ["nouser", "baddomain", "noservice"], "{t}");
    assert!(t["recipients"][0]["reason"].as_str().unwrap().contains("no user"));
    assert_eq!(t["state"], "released", "nobody left to keep it for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_down_means_retries_then_delivery_and_restarts_lose_nothing() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    // two.test is published in DNS, but nothing listens there yet.
    let two_addr = w.publish_down("two.test").await;

    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let t = eventually("a failed first attempt", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        (t["recipients"][0]["attempts"] == 1 && t["recipients"][0]["reason"].is_string()).then_some(t)
    })
    .await;
    assert_eq!(status(&t), "notifying");
    assert!(t["recipients"][0]["next_attempt_at"].is_string());

    // Time passes: the worker retries on its backoff schedule, still failing.
    w.clock.advance(Duration::from_secs(40));
    eventually("a second attempt", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        (t["recipients"][0]["attempts"] == 2).then_some(())
    })
    .await;

    // The sender's node restarts with the notification still pending.
    let one = w.restart(one).await;
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(status(&t), "notifying");
    // An attempt the restart interrupted is made again at once: 2 or 3.
    assert!(t["recipients"][0]["attempts"].as_u64().unwrap() >= 2, "{t}");

    // The agent comes up; the next retry gets through.
    let two = w.start_with("two.test", &["bob"], &two_addr.to_string(), "127.0.0.1:0", "").await;
    w.clock.advance(Duration::from_secs(200));
    let t = eventually("acceptance", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["accepted_at"].is_string().then_some(t)
    })
    .await;
    assert_eq!(status(&t), "notifying", "accepted, not yet silenced");
    // Two failed attempts, perhaps one the restart interrupted, then this one.
    let accepted_after = t["recipients"][0]["attempts"].as_u64().unwrap();
    assert!((3..=4).contains(&accepted_after), "{t}");
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 1);

    // Accepted notifications are re-sent on a slow schedule until silenced;
    // the agent files them once.
    w.clock.advance(Duration::from_secs(86_400 + 3600));
    eventually("a re-send", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        (t["recipients"][0]["attempts"] == accepted_after + 1).then_some(())
    })
    .await;
    assert_eq!(inbox(&two, "bob@two.test").await.len(), 1);

    // Both nodes restart; the message and the inbox are still there.
    let one = w.restart(one).await;
    let two = w.restart(two).await;
    let e = inbox(&two, "bob@two.test").await;
    let id = e[0]["notification"]["id"].as_str().unwrap();
    let body = http().get(format!("{}/messages/{id}", one.public_url())).send().await.unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(body.text().await.unwrap(), MESSAGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_agent_is_given_up_after_max_retry_age() {
    let w = World::new().await;
    let one = w.start_with("one.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", "").await;
    w.publish_down("two.test").await;
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    // Step through five days of backoff an hour at a time, each time waiting
    // until the worker has dealt with everything due.
    use imgate::clock::Clock;
    let mut attempts_seen = 0;
    // (A few hours past the five days: a retry may land up to 72 minutes
    // after its step, and a loaded machine may need a step to catch up.)
    for _ in 0..(5 * 24 + 12) {
        w.clock.advance(Duration::from_secs(3600));
        let now = w.clock.now() as i64;
        let t = eventually("the worker to catch up", || async {
            let t = track(&one, "alice@one.test", &msg).await;
            let r = &t["recipients"][0];
            let next = r["next_attempt_at"]
                .as_str()
                .map(|s| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis());
            (status(&t) == "noserver" || next.is_some_and(|n| n > now)).then_some(t)
        })
        .await;
        if status(&t) == "noserver" {
            assert!(t["recipients"][0]["reason"].as_str().unwrap().starts_with("gave up"), "{t}");
            assert!(attempts_seen >= 5, "backed off through several attempts, saw {attempts_seen}");
            return;
        }
        attempts_seen = t["recipients"][0]["attempts"].as_u64().unwrap();
    }
    panic!("never gave up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_delivers_to_its_own_users_without_dns() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 (discard) answers no DNS: any lookup would fail.
    let text = format!(
        "data_dir = {:?}\n[im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\n\
         [dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout = \"1s\"\n[[domain]]\nname = \"solo.test\"\n\
         [[user]]\naddress = \"alice@solo.test\"\npassword = \"{PASSWORD}\"\n\
         [[user]]\naddress = \"carol@solo.test\"\npassword = \"{PASSWORD}\"\n",
        dir.path()
    );
    let config = imgate::config::Config::parse(&text, "solo").unwrap();
    let node = imgate::node::Node::start(config).await.unwrap();
    let n = TestNode {
        public: node.public_addrs()[0],
        private: node.private_addrs()[0],
        admin: None,
        mx: node.public_addrs()[0],
        submission: node.public_addrs()[0],
        node,
        domain: "solo.test".into(),
        config_path: dir.path().join("unused"),
        scheme: "http",
    };
    let sent =
        submit(&n, "alice@solo.test", &["carol@solo.test"], &MESSAGE.replace("alice@one.test", "alice@solo.test"))
            .await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let entry = eventually("carol's notification", || async { inbox(&n, "carol@solo.test").await.pop() }).await;
    assert_eq!(entry["notification"]["store"], "solo.test");
    let t = track(&n, "alice@solo.test", &msg).await;
    assert!(t["recipients"][0]["accepted_at"].is_string(), "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_verifies_a_batch_with_one_probe_per_store() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &["bob", "carol", "dave"]).await;
    let sent = submit(&one, "alice@one.test", &["bob@two.test", "carol@two.test", "dave@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    eventually("three accepted", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"].as_array().unwrap().iter().all(|r| r["accepted_at"].is_string()).then_some(())
    })
    .await;
    // The store was asked about all three in batch probes, never by HEAD.
    let metrics = http().get(format!("http://{}/metrics", one.admin.unwrap())).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("imgate_retrievals_total{part=\"probe\"} 3"), "{metrics}");
    assert!(!metrics.contains("imgate_retrievals_total{part=\"head\"}"), "{metrics}");

    // A batch probe answers like HEAD, identifier by identifier, in order.
    let ids: Vec<String> = inbox(&two, "bob@two.test")
        .await
        .iter()
        .map(|e| e["notification"]["id"].as_str().unwrap().to_string())
        .collect();
    let body = json!({"ids": [ids[0], "ab".repeat(16), "not an id"]});
    let resp = http().post(format!("{}/probe", one.public_url())).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let m = v["messages"].as_array().unwrap();
    assert_eq!((m[0]["status"].as_u64(), m[0]["sender"].as_str()), (Some(200), Some("alice@one.test")));
    assert_eq!((m[1]["status"].as_u64(), m[2]["status"].as_u64()), (Some(404), Some(404)));
    assert_eq!(m[0]["size"].as_u64(), Some(MESSAGE.len() as u64));
}

/// Notifications this node's queue files for its own users are not read
/// again before filing: the filing's own checks must still hold the
/// inbox's limit and answer a re-sent notification as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_files_its_own_users_within_the_inbox_limit_and_once() {
    let w = World::new().await;
    let one = w.start_tuned("one.test", &["alice", "bob"], "max_inbox = 2\n", "", "").await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let s = submit(&one, "alice@one.test", &["bob@one.test"], MESSAGE).await;
        sent.push(s["message"].as_str().unwrap().to_string());
    }
    let full = eventually("the third told the inbox is full", || async {
        let mut accepted = 0;
        let mut full = None;
        for msg in &sent {
            let t = track(&one, "alice@one.test", msg).await;
            let r = &t["recipients"][0];
            if r["accepted_at"].is_string() {
                accepted += 1;
            } else if r["reason"].as_str().is_some_and(|r| r.contains("inbox is full")) {
                full = Some(t);
            }
        }
        (accepted == 2).then_some(full).flatten()
    })
    .await;
    assert_eq!(status(&full), "notifying", "{full}");
    assert_eq!(inbox(&one, "bob@one.test").await.len(), 2);

    // A day on, the accepted are notified again (resent as unread): filed
    // once still, and the third waits for room.
    w.clock.advance(Duration::from_secs(86_400));
    eventually("the resends answered", || async {
        let t = track(&one, "alice@one.test", &sent[0]).await;
        (t["recipients"][0]["attempts"].as_u64() >= Some(2)).then_some(())
    })
    .await;
    let filed = inbox(&one, "bob@one.test").await;
    assert_eq!(filed.len(), 2, "{filed:?}");
}
