//! Bad input gets a clear JSON error with a fitting status, and leaves what
//! is stored untouched.

use std::time::Duration;

use crate::harness::*;

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: serde_json::Value = resp.json().await.expect("a JSON error body");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    (status, v["error"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_a_json_error() {
    let w = World::new().await;
    let one = w.start_with("one.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", "").await;
    w.publish_down("two.test").await;
    // A fresh connection per case: a server that answers before reading a
    // request body closes the connection, and a pooled client could race it.
    let c = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(20)).build().unwrap();
    let auth = basic("alice@one.test", PASSWORD);
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();

    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (c.post(format!("{}/notifications", one.public_url())).body("{not json"), 400, "bad_json"),
        (c.post(format!("{}/notifications", one.public_url())).body("[]"), 400, "bad_request"),
        (c.post(format!("{}/notifications", one.public_url())).body(r#"[{"store":"x"}]"#), 400, "bad_json"),
        (c.post(format!("{}/notifications", one.public_url())).body(vec![b'['; 5 << 20]), 413, "too_large"),
        (
            c.post(format!("{}/submissions?to=bob@two.test", one.private_url()))
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            401,
            "unauthorized",
        ),
        (
            c.post(format!("{}/submissions?to=bob@two.test", one.private_url()))
                .header("authorization", basic("alice@one.test", "wrong"))
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            401,
            "unauthorized",
        ),
        (
            c.post(format!("{}/submissions?to=bob@two.test", one.private_url()))
                .header("authorization", basic("mallory@one.test", PASSWORD))
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            401,
            "unauthorized",
        ),
        (
            c.post(format!("{}/submissions?to=not-an-address", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            400,
            "bad_address",
        ),
        (
            c.post(format!("{}/submissions?to=a%25b@two.test", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            400,
            "bad_address",
        ),
        (
            c.post(format!("{}/submissions?to=bob@two.test", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "text/plain")
                .body(MESSAGE),
            415,
            "unsupported_media_type",
        ),
        (
            c.post(format!("{}/submissions?to=bob@two.test&lifetime=99y", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "message/rfc822")
                .body(MESSAGE),
            400,
            "bad_request",
        ),
        (
            c.post(format!("{}/submissions?to=bob@two.test", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "message/rfc822")
                .body(vec![b'x'; 2 << 20]),
            413,
            "too_large",
        ),
        (
            c.get(format!("{}/submissions/{msg}", one.private_url()))
                .header("authorization", basic("alice@one.test", "x")),
            401,
            "unauthorized",
        ),
        (
            c.get(format!("{}/submissions/{}", one.private_url(), "0".repeat(32))).header("authorization", &auth),
            404,
            "not_found",
        ),
        (
            c.post(format!("{}/inbox/clear", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body("{}"),
            400,
            "bad_json",
        ),
        (
            c.post(format!("{}/inbox/clear", one.private_url()))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(r#"{"through":"x"}"#),
            400,
            "bad_request",
        ),
        (c.get(format!("{}/inbox?after=-1", one.private_url())).header("authorization", &auth), 400, "bad_request"),
        (c.get(format!("{}/nothing/here", one.public_url())), 404, "not_found"),
        (c.delete(format!("{}/notifications", one.public_url())), 405, "method_not_allowed"),
        (c.post(format!("{}/messages/{}/refuse", one.public_url(), "0".repeat(32))).body("{}"), 400, "bad_json"),
        (c.get(format!("{}/lists/news@one.test?since=zz", one.public_url())), 400, "bad_request"),
    ];
    for (i, (req, want_status, want_code)) in cases.into_iter().enumerate() {
        let (status, code) = error_of(req.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (want_status, want_code), "case {i}");
    }
    let resp =
        c.get(format!("{}/submissions?to=x", one.private_url())).header("authorization", &auth).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    // Without credentials the private listener says nothing of its paths.
    let resp = c.get(format!("{}/submissions?to=x", one.private_url())).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .post(format!("{}/submissions", one.private_url()))
        .header("authorization", &auth)
        .header("content-type", "message/rfc822")
        .body(MESSAGE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(resp).await, (400, "bad_address".to_string()));
    let unauth = c.get(format!("{}/inbox", one.private_url())).send().await.unwrap();
    assert_eq!(unauth.headers()["www-authenticate"], "Basic realm=\"imgate\", charset=\"UTF-8\"");

    // Nothing accepted earlier was disturbed.
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["state"], "stored");
    assert_eq!(t["size"], MESSAGE.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_passwords_or_identifiers_is_rate_limited() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let c = http();
    let inbox_url = format!("{}/inbox", one.private_url());
    for _ in 0..10 {
        let r = c.get(&inbox_url).header("authorization", basic("alice@one.test", "guess")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    // Now even the right password waits.
    let r = c.get(&inbox_url).header("authorization", basic("alice@one.test", PASSWORD)).send().await.unwrap();
    assert_eq!(error_of(r).await, (429, "rate_limited".to_string()));

    for i in 0..100 {
        let r = c.get(format!("{}/messages/{:032x}", one.public_url(), i)).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = c.get(format!("{}/messages/{:032x}", one.public_url(), 1000)).send().await.unwrap();
    assert_eq!(error_of(r).await, (429, "rate_limited".to_string()));

    // SMTP AUTH shares the count: this address is already over it.
    let t = submission_client(&one, "alice@one.test", PASSWORD);
    let env = lettre::address::Envelope::new(
        Some("alice@one.test".parse().unwrap()),
        vec!["alice@one.test".parse().unwrap()],
    )
    .unwrap();
    use lettre::AsyncTransport;
    let err = t.send_raw(&env, MESSAGE.trim_end().as_bytes()).await.unwrap_err();
    assert!(err.to_string().contains("421"), "{err}");

    let metrics = c.get(format!("http://{}/metrics", one.admin.unwrap())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("imgate_rate_limited_total{what=\"auth\"} 2"), "{metrics}");
    assert!(metrics.contains("imgate_rate_limited_total{what=\"lookup\"} 1"), "{metrics}");
}
