//! IMAP over a user's notification inbox, through real sockets: Python's
//! imaplib as the client (tests/it/imap_client.py), messages pulled from
//! another node's store, IDLE woken by a notification being filed, and a
//! store that cannot be reached answered NO [UNAVAILABLE] for that message
//! only.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::*;

pub const IMAP: &str = "[imap]\nlisten = [\"127.0.0.1:0\"]\nplaintext = true\n";

fn message(subject: &str, body: &str) -> String {
    format!("From: alice@one.test\r\nTo: bob@two.test\r\nSubject: {subject}\r\n\r\n{body}\r\n")
}

/// A line-at-a-time IMAP client for what imaplib cannot do (IDLE).
pub struct Raw {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        let (r, w) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
        let mut c = Raw { r: BufReader::new(r), w };
        assert!(c.line().await.starts_with("* OK"), "greeting");
        c
    }

    pub async fn line(&mut self) -> String {
        let mut l = String::new();
        tokio::time::timeout(Duration::from_secs(20), self.r.read_line(&mut l)).await.expect("an answer").unwrap();
        l
    }

    pub async fn send(&mut self, l: &str) {
        self.w.write_all(format!("{l}\r\n").as_bytes()).await.unwrap();
    }

    /// Sends a tagged command; returns the lines up to its tagged answer.
    pub async fn cmd(&mut self, tag: &str, l: &str) -> Vec<String> {
        self.send(&format!("{tag} {l}")).await;
        self.until(tag).await
    }

    /// The lines up to the tagged answer of `tag`.
    pub async fn until(&mut self, tag: &str) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line().await;
            let done = l.starts_with(&format!("{tag} "));
            out.push(l);
            if done {
                return out;
            }
        }
    }
}

#[tokio::test]
async fn imaplib_reads_flags_moves_and_expunges_mail_pulled_from_the_senders_store() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", IMAP).await;
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], &message("imap test", "Hello over IMAP.")).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    eventually("the notification filed", || async { (inbox(&two, "bob@two.test").await.len() == 1).then_some(()) })
        .await;

    let addr = two.node.imap_addrs()[0];
    let out = tokio::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/imap_client.py"))
        .args([addr.ip().to_string(), addr.port().to_string(), "bob@two.test".into(), PASSWORD.into()])
        .output()
        .await
        .expect("python3 runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "imaplib: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |k: &str| seen[k].to_string();
    assert!(text("capabilities").contains("IDLE") && text("capabilities").contains("MOVE"), "{seen}");
    assert!(text("wrong_password").contains("AUTHENTICATIONFAILED"), "{seen}");
    assert!(text("folders").contains("\\\\Sent") && text("folders").contains("INBOX"), "{seen}");
    assert_eq!(seen["exists"], 1);
    assert!(text("listing").contains("imap test") && text("listing").contains("RFC822.SIZE"), "{seen}");
    assert_eq!(seen["subject_field"], "Subject: imap test\r\n\r\n");
    assert!(!text("flags_after_peek").contains("Seen"), "a PEEK does not set \\Seen: {seen}");
    assert!(seen["body"].as_str().unwrap().contains("Hello over IMAP."), "{seen}");
    assert!(text("flags_after_read").contains("\\\\Seen"), "BODY[] sets \\Seen: {seen}");
    assert!(text("partial").contains("Hello") && !text("partial").contains("Hello over"), "{seen}");
    assert!(text("bodystructure").to_lowercase().contains("\\\"text\\\" \\\"plain\\\""), "{seen}");
    assert_eq!(seen["search_subject"], "1");
    assert_eq!(seen["search_unseen"], "");
    assert!(text("store").contains("\\\\Flagged"), "{seen}");
    assert!(text("create_twice").contains("NO") && text("create_twice").contains("ALREADYEXISTS"), "{seen}");
    assert!(text("status").contains("MESSAGES 1") && text("status").contains("UNSEEN 0"), "{seen}");
    assert!(text("copy").contains("COPYUID"), "{seen}");
    assert_eq!(seen["move"], "OK");
    assert_eq!(seen["projects_exists"], 2, "the copy and the moved one: {seen}");
    assert!(text("projects_listing").contains("Flagged"), "flags travel: {seen}");
    assert!(text("append").contains("APPENDUID"), "{seen}");
    assert!(seen["draft"].as_str().unwrap().contains("unfinished"), "{seen}");
    assert!(text("fetch_past_end").contains("BAD"), "{seen}");
    assert_eq!(seen["projects_after_expunge"], 1);
    // One copy was expunged, one is left: the sender's store was not told.
    assert!(inbox(&two, "bob@two.test").await.is_empty(), "moved out of INBOX");
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["recipients"][0]["read"], "all", "reading over IMAP pulled the whole message: {t}");
    assert_eq!(t["recipients"][0]["pinned"], true, "a copy is still kept: {t}");
}

#[tokio::test]
async fn idle_reports_a_new_notification_and_expunge_releases_the_message_at_its_store() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", IMAP).await;
    let mut c = Raw::connect(two.node.imap_addrs()[0]).await;
    let login = c.cmd("a1", &format!("LOGIN bob@two.test \"{PASSWORD}\"")).await;
    assert!(login.last().unwrap().starts_with("a1 OK"), "{login:?}");
    let sel = c.cmd("a2", "SELECT INBOX").await;
    assert!(sel.iter().any(|l| l == "* 0 EXISTS\r\n"), "{sel:?}");
    c.send("a3 IDLE").await;
    assert!(c.line().await.starts_with("+ "), "IDLE accepted");
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], &message("while idling", "ping")).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    assert_eq!(c.line().await, "* 1 EXISTS\r\n", "IDLE reports the new message");
    c.send("DONE").await;
    assert!(c.line().await.starts_with("a3 OK"), "IDLE ended");

    let bad = c.cmd("a6", "FROBNICATE now").await;
    assert!(bad.last().unwrap().starts_with("a6 BAD"), "{bad:?}");

    // Back up: \Deleted + EXPUNGE silences and un-pins at the store.
    let f = c.cmd("a7", "FETCH 1 BODY[]").await;
    assert!(f.iter().any(|l| l.contains("BODY[] {")), "{f:?}");
    let f = c.cmd("a8", "STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    assert!(f.last().unwrap().starts_with("a8 OK"), "{f:?}");
    let e = c.cmd("a9", "EXPUNGE").await;
    assert_eq!(e[0], "* 1 EXPUNGE\r\n", "{e:?}");
    let t = eventually("the store told", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        (t["recipients"][0]["pinned"] == false).then_some(t)
    })
    .await;
    assert_eq!(t["recipients"][0]["notification"], "silenced", "{t}");
    let out = c.cmd("a10", "LOGOUT").await;
    assert!(out[0].starts_with("* BYE"), "{out:?}");
}

#[tokio::test]
async fn a_store_that_cannot_be_reached_fails_that_message_only() {
    let w = World::new().await;
    let one = w.start("one.test", &["alice"]).await;
    let three = w.start("three.test", &["carol"]).await;
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", IMAP).await;
    submit(&one, "alice@one.test", &["bob@two.test"], &message("from one", "still here")).await;
    eventually("one filed", || async { (inbox(&two, "bob@two.test").await.len() == 1).then_some(()) }).await;
    let from_three = message("from three", "gone away").replace("alice@one.test", "carol@three.test");
    submit(&three, "carol@three.test", &["bob@two.test"], &from_three).await;
    eventually("two filed", || async { (inbox(&two, "bob@two.test").await.len() == 2).then_some(()) }).await;
    three.node.shutdown().await;

    let mut c = Raw::connect(two.node.imap_addrs()[0]).await;
    c.cmd("a1", &format!("LOGIN bob@two.test \"{PASSWORD}\"")).await;
    c.cmd("a2", "SELECT INBOX").await;
    let f = c.cmd("a3", "FETCH 1:2 (BODY.PEEK[TEXT])").await;
    assert!(f.iter().any(|l| l.starts_with("* 1 FETCH")), "the reachable one is answered: {f:?}");
    assert!(!f.iter().any(|l| l.starts_with("* 2 FETCH")), "{f:?}");
    let last = f.last().unwrap();
    assert!(last.starts_with("a3 NO [UNAVAILABLE]") && last.contains("three.test"), "{last}");
    let f = c.cmd("a4", "FETCH 2 (FLAGS UID RFC822.SIZE)").await;
    assert!(f.last().unwrap().starts_with("a4 OK"), "what the node keeps needs no store: {f:?}");
    let f = c.cmd("a5", "NOOP").await;
    assert!(f.last().unwrap().starts_with("a5 OK"), "the session goes on: {f:?}");
}

#[tokio::test]
async fn login_is_refused_before_tls_unless_the_operator_allows_plaintext() {
    let w = World::new().await;
    let two =
        w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", "[imap]\nlisten = [\"127.0.0.1:0\"]\n").await;
    let mut c = Raw::connect(two.node.imap_addrs()[0]).await;
    let caps = c.cmd("a1", "CAPABILITY").await;
    assert!(caps[0].contains("LOGINDISABLED"), "{caps:?}");
    let login = c.cmd("a2", &format!("LOGIN bob@two.test \"{PASSWORD}\"")).await;
    assert!(login.last().unwrap().starts_with("a2 NO [PRIVACYREQUIRED]"), "{login:?}");
    let sel = c.cmd("a3", "SELECT INBOX").await;
    assert!(sel.last().unwrap().starts_with("a3 BAD"), "{sel:?}");
    // An oversized literal is refused before it is sent.
    c.send("a4 APPEND INBOX {999999999}").await;
    let l = c.line().await;
    assert!(l.starts_with("a4 BAD") && l.contains("TOOBIG"), "{l}");
}

#[tokio::test]
async fn sent_shows_the_users_own_submissions_with_their_tracking_and_a_saved_copy_is_not_stored_twice() {
    let w = World::new().await;
    let one = w.start_with("one.test", &["alice"], "127.0.0.1:0", "127.0.0.1:0", IMAP).await;
    let two = w.start("two.test", &["bob"]).await;
    let content = "From: alice@one.test\r\nTo: bob@two.test\r\nSubject: report\r\nMessage-ID: <r1@one.test>\r\n\r\nQ4 numbers.\r\n";
    submit(&one, "alice@one.test", &["bob@two.test"], content).await;
    let mut c = Raw::connect(one.node.imap_addrs()[0]).await;
    c.cmd("a1", &format!("LOGIN alice@one.test \"{PASSWORD}\"")).await;
    let sel = c.cmd("a2", "SELECT Sent").await;
    assert!(sel.iter().any(|l| l == "* 1 EXISTS\r\n"), "{sel:?}");
    let f = c.cmd("a3", "FETCH 1 (FLAGS BODY.PEEK[])").await;
    assert!(f.iter().any(|l| l.contains("Q4 numbers.")), "the stored message itself: {f:?}");
    assert!(f[0].contains("\\Seen"), "{f:?}");

    // Bob reads it at alice's store; alice's Sent says so at her next NOOP.
    let n = eventually("filed for bob", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    retrieve(&one, n["notification"]["id"].as_str().unwrap()).await;
    let noop = c.cmd("a4", "NOOP").await;
    assert!(noop.iter().any(|l| l.contains("FETCH") && l.contains("$IM2000Read")), "{noop:?}");

    // Thunderbird saves a copy of what it sent: the same Message-ID.
    let copy = content.replace("\r\n\r\n", "\r\nX-Mozilla-Draft-Info: x\r\n\r\n");
    c.send(&format!("a5 APPEND Sent (\\Seen) {{{}+}}", copy.len())).await;
    c.send(&copy).await;
    let out = c.until("a5").await;
    assert!(out.last().unwrap().contains("APPENDUID") && out.last().unwrap().contains(" 1]"), "{out:?}");
    let st = c.cmd("a6", "STATUS Sent (MESSAGES)").await;
    assert!(st[0].contains("MESSAGES 1"), "no second copy: {st:?}");
    // Another message saved there (no Message-ID of a submission) is kept.
    let other = "Subject: note to self\r\n\r\nkeep me\r\n";
    c.send(&format!("a7 APPEND Sent {{{}+}}", other.len())).await;
    c.send(other).await;
    let out = c.until("a7").await;
    assert!(out.iter().any(|l| l == "* 2 EXISTS\r\n"), "appended to the selected folder: {out:?}");
    assert!(out.last().unwrap().starts_with("a7 OK"), "{out:?}");
    let st = c.cmd("a8", "STATUS Sent (MESSAGES)").await;
    assert!(st[0].contains("MESSAGES 2"), "{st:?}");
}

/// The transcripts in fixtures/imap/: `C:` lines are sent as written (with
/// CRLF), each `S:` line must begin the next line the server sends. Each
/// runs against a fresh node whose user bob has one message from alice's
/// store (Subject: fixture, body "one line").
#[tokio::test]
async fn transcripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/imap");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "the fixtures are there");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let w = World::new().await;
        let one = w.start("one.test", &["alice"]).await;
        let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", IMAP).await;
        let m = "From: alice@one.test\r\nTo: bob@two.test\r\nSubject: fixture\r\n\r\none line\r\n";
        submit(&one, "alice@one.test", &["bob@two.test"], m).await;
        eventually("filed", || async { (inbox(&two, "bob@two.test").await.len() == 1).then_some(()) }).await;
        let (r, mut wr) = tokio::net::TcpStream::connect(two.node.imap_addrs()[0]).await.unwrap().into_split();
        let mut r = BufReader::new(r);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        for (n, line) in text.lines().enumerate() {
            if let Some(c) = line.strip_prefix("C: ").or(line.strip_prefix("C:")) {
                wr.write_all(format!("{c}\r\n").as_bytes()).await.unwrap();
            } else if let Some(want) = line.strip_prefix("S: ").or(line.strip_prefix("S:")) {
                let mut got = String::new();
                tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut got))
                    .await
                    .unwrap_or_else(|_| panic!("{name}:{}: no answer, wanted {want:?}", n + 1))
                    .unwrap();
                assert!(got.starts_with(want), "{name}:{}: wanted {want:?}, got {got:?}", n + 1);
            }
        }
        two.node.shutdown().await;
        one.node.shutdown().await;
    }
}

#[tokio::test]
async fn a_client_address_holds_at_most_its_share_of_sessions() {
    let w = World::new().await;
    let extra = "[imap]\nlisten = [\"127.0.0.1:0\"]\nplaintext = true\nmax_sessions_per_ip = 2\n";
    let two = w.start_with("two.test", &["bob"], "127.0.0.1:0", "127.0.0.1:0", extra).await;
    let addr = two.node.imap_addrs()[0];
    let (_a, _b) = (Raw::connect(addr).await, Raw::connect(addr).await);
    let (r, _w) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), BufReader::new(r).read_line(&mut line)).await.unwrap().unwrap();
    assert!(line.starts_with("* BYE [UNAVAILABLE]"), "{line}");
    drop(_a);
    eventually("a slot free again", || async {
        let (r, _w) = tokio::net::TcpStream::connect(addr).await.unwrap().into_split();
        let mut line = String::new();
        let _ = BufReader::new(r).read_line(&mut line).await;
        line.starts_with("* OK").then_some(())
    })
    .await;
}
