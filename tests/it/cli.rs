//! The `imgate` binary as a user runs it: send, inbox, fetch, track, cancel
//! between two nodes that find each other through DNS SRV records.

use std::process::{Command, Output, Stdio};

use crate::harness::*;

pub fn imgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(args)
        .env_remove("IMGATE_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub fn ok(args: &[&str]) -> String {
    let out = imgate(args);
    assert!(
        out.status.success(),
        "imgate {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub async fn run(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || ok(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_inbox_fetch_track_round_trip() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &["bob"]).await;
    let c1 = one.config_path.display().to_string();
    let c2 = two.config_path.display().to_string();
    let msg_file = w.dir.path().join("hello.eml");
    std::fs::write(&msg_file, MESSAGE).unwrap();

    let sent = run(vec![
        "send".into(),
        "--config".into(),
        c1.clone(),
        "--json".into(),
        "--from".into(),
        "alice@one.test".into(),
        "--to".into(),
        "bob@two.test".into(),
        msg_file.display().to_string(),
    ])
    .await;
    let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
    let msg = sent["message"].as_str().unwrap().to_string();
    assert_eq!(sent["recipients"][0]["accepted"], true);

    // The notification reaches bob's inbox at two.test.
    let entries = eventually("bob's notification", || async {
        let out =
            run(vec!["inbox".into(), "--config".into(), c2.clone(), "--json".into(), "bob@two.test".into()]).await;
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        (!v.is_empty()).then_some(v)
    })
    .await;
    let n = &entries[0]["notification"];
    assert_eq!(n["sender"], "alice@one.test");
    assert_eq!(n["store"], "one.test");
    assert_eq!(n["size"], MESSAGE.len());
    let id = n["id"].as_str().unwrap().to_string();

    let human = run(vec!["inbox".into(), "--config".into(), c2.clone(), "bob@two.test".into()]).await;
    assert!(human.contains("alice@one.test") && human.contains(&id), "{human}");

    // Fetch pulls from one.test's store (located through DNS) byte for byte.
    let fetched = run(vec!["fetch".into(), "--config".into(), c2.clone(), "bob@two.test".into(), id.clone()]).await;
    assert_eq!(fetched, MESSAGE);

    // The sender sees it read, silenced and un-pinned; the body is freed.
    let t = run(vec!["track".into(), "--config".into(), c1.clone(), "--json".into(), msg.clone()]).await;
    let t: serde_json::Value = serde_json::from_str(&t).unwrap();
    let r = &t["recipients"][0];
    assert_eq!(r["notification"], "silenced");
    assert_eq!(r["read"], "all");
    assert_eq!(r["pinned"], false);
    assert_eq!(t["state"], "released");
    let human = run(vec!["track".into(), "--config".into(), c1.clone(), msg.clone()]).await;
    assert!(human.contains("bob@two.test") && human.contains("silenced") && human.contains("all"), "{human}");

    // Fetching again finds the message gone.
    let again = tokio::task::spawn_blocking({
        let (c2, id) = (c2.clone(), id.clone());
        move || imgate(&["fetch", "--config", &c2, "bob@two.test", &id])
    })
    .await
    .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("410"), "{}", String::from_utf8_lossy(&again.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_recalls_and_wrong_password_is_refused() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let c1 = one.config_path.display().to_string();
    w.publish_down("nowhere.test").await;
    let sent = submit(&one, "alice@one.test", &["bob@nowhere.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let out = run(vec!["cancel".into(), "--config".into(), c1.clone(), msg.clone()]).await;
    assert!(out.contains("cancelled"), "{out}");

    let bad = tokio::task::spawn_blocking({
        let addr = format!("http://{}", one.private);
        move || {
            Command::new(env!("CARGO_BIN_EXE_imgate"))
                .args(["track", "--server", &addr, "--user", "alice@one.test", &msg])
                .env("IMGATE_PASSWORD", "wrong")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("401: unauthorized"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn check_config_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "hostname = \"ok.test\"\nmystery = 1\n[im2000]\npublic = [\"x\"]\nprivate = [\"127.0.0.1:0\"]\n[[domain]]\nname = \"one.test\"\n\
         [[user]]\naddress = \"carol@two.test\"\npassword = \"p\"\n[store]\nquota = \"lots\"\n",
    )
    .unwrap();
    let out = imgate(&["check-config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["mystery: unknown key", "im2000.public[0]", "user[0].address", "store.quota", "4 problems"] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains(&file.display().to_string()), "{err}");

    let defaults = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/imgate.toml");
    assert!(ok(&["check-config", defaults.to_str().unwrap()]).contains("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_records_are_printed_and_checked_against_real_dns() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let c1 = one.config_path.display().to_string();
    let zone = run(vec!["dns-records".into(), "--config".into(), c1.clone()]).await;
    for want in [
        format!("_im2000-store._tcp.one.test. 3600 IN SRV 10 1 {} node.one.test.", one.public.port()),
        format!("_im2000-notify._tcp.one.test. 3600 IN SRV 10 1 {} node.one.test.", one.public.port()),
        "one.test. 3600 IN MX 10 node.one.test.".to_string(),
        "node.one.test. 3600 IN A 127.0.0.1".to_string(),
    ] {
        assert!(zone.contains(&want), "missing {want:?} in:\n{zone}");
    }
    assert!(zone.contains("; note: the MX listener is on port"), "{zone}");

    // The harness published SRV and A records, but no MX yet.
    let check = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || imgate(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let args = vec!["dns-check".to_string(), "--config".into(), c1.clone(), "one.test".into()];
    let out = check(args.clone()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ok       _im2000-store._tcp.one.test SRV"), "{text}");
    assert!(text.contains("missing  one.test MX → node.one.test"), "{text}");

    assert!(text.contains("missing  one.test TXT v=spf1 a:node.one.test -all"), "{text}");
    assert!(text.contains("missing  _dmarc.one.test TXT v=DMARC1"), "{text}");
    assert!(zone.contains("one.test. 3600 IN TXT \"v=spf1 a:node.one.test -all\""), "{zone}");
    assert!(zone.contains("; note: no DKIM key signs one.test's mail"), "{zone}");

    w.dns.mx("one.test", 10, "node.one.test").await;
    w.dns.txt("one.test", "v=spf1 a:node.one.test -all").await;
    w.dns.txt("_dmarc.one.test", "v=DMARC1; p=none").await;
    let out = check(args).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("missing") && !text.contains("elsewhere"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_says_what_the_store_asserted_and_what_it_checked_itself() {
    let w = World::new().await;
    let two = w.start("two.test", &["bob"]).await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(two.mx).await.unwrap();
    tcp.write_all(
        b"EHLO mta.legacy.test\r\nMAIL FROM:<someone@legacy.test>\r\nRCPT TO:<bob@two.test>\r\nDATA\r\n\
          From: someone@legacy.test\r\nSubject: unsigned\r\n\r\nhello\r\n.\r\nQUIT\r\n",
    )
    .await
    .unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 1024];
    while !got.contains("221") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("250 2.0.0 Ok: queued"), "{got}");
    let entry = eventually("bob's notification", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    assert_eq!(entry["notification"]["origin"]["asserted_by"], "two.test");
    let id = entry["notification"]["id"].as_str().unwrap().to_string();
    let c2 = two.config_path.display().to_string();
    let out = tokio::task::spawn_blocking(move || imgate(&["fetch", "--config", &c2, "--keep", "bob@two.test", &id]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("asserted by two.test: spf="), "{err}");
    assert!(err.contains("checked here: dkim=none"), "{err}");
}
