//! A full disk: the data directory on a small tmpfs, filled up under SMTP
//! load. Every answer is `250` or a clear `452`/`451`, the node keeps
//! answering, and after space is freed and the node restarted, every
//! message that got `250` is there — once.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs at {} failed (the test runs as root)", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn config(data: &std::path::Path) -> imgate::config::Config {
    let text = format!(
        "data_dir = {data:?}\n[im2000]\npublic = [\"127.0.0.1:0\"]\nprivate = [\"127.0.0.1:0\"]\n\
         [smtp]\nmx = [\"127.0.0.1:0\"]\nverify_sender = false\nmax_message_size = \"1MiB\"\n\
         [store]\nquota = \"1GiB\"\n\
         [[domain]]\nname = \"solo.test\"\n[[user]]\naddress = \"bob@solo.test\"\npassword = \"pw\"\n"
    );
    imgate::config::Config::parse(&text, "disk-full").unwrap()
}

async fn reply(c: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(30), c.read(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Sends one message in its own session; the final reply.
async fn send_one(mx: std::net::SocketAddr, body: &str) -> String {
    let mut c = tokio::net::TcpStream::connect(mx).await.unwrap();
    reply(&mut c).await;
    for cmd in ["EHLO filler.test\r\n", "MAIL FROM:<a@filler.test>\r\n", "RCPT TO:<bob@solo.test>\r\n", "DATA\r\n"] {
        c.write_all(cmd.as_bytes()).await.unwrap();
        let r = reply(&mut c).await;
        if !(r.starts_with('2') || r.starts_with('3')) {
            return r;
        }
    }
    c.write_all(body.as_bytes()).await.unwrap();
    c.write_all(b".\r\n").await.unwrap();
    reply(&mut c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a tmpfs: scripts/test runs it when root (CI is)"]
async fn a_full_disk_says_452_or_451_and_loses_nothing_acknowledged() {
    assert!(nix::unistd::Uid::effective().is_root(), "mounting a tmpfs needs root");
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "24m");
    let data = dir.path().join("data");
    let node = imgate::node::Node::start(config(&data)).await.unwrap();
    let mx = node.mx_addrs()[0];

    // Leave a little room, then fill it with 64 KiB messages.
    let filler = dir.path().join("filler");
    let free = nix::sys::statvfs::statvfs(dir.path()).unwrap();
    let room = free.blocks_available() as u64 * free.fragment_size() as u64;
    std::fs::write(&filler, vec![0u8; room.saturating_sub(6 << 20) as usize]).unwrap();
    let line = format!("{}\r\n", "y".repeat(78));
    let mut accepted = Vec::new();
    let mut refusal = None;
    for i in 0..400 {
        let body = format!("Subject: filler {i}\r\n\r\n{}", line.repeat(800));
        let r = send_one(mx, &body).await;
        if r.starts_with("250 ") {
            accepted.push(r.trim().rsplit(' ').next().unwrap().to_string());
        } else {
            refusal = Some(r);
            break;
        }
    }
    let refusal = refusal.expect("the disk filled up");
    eprintln!("disk full after {} messages: {}", accepted.len(), refusal.trim());
    assert!(refusal.starts_with("452 4.3.1") || refusal.starts_with("451 4.3.0"), "{refusal}");
    assert!(!accepted.is_empty(), "some mail fitted before the disk was full");
    // Still answering, still refusing cleanly.
    let again = send_one(mx, "Subject: more\r\n\r\nmore\r\n").await;
    assert!(again.starts_with("452") || again.starts_with("451") || again.starts_with("250"), "{again}");
    if again.starts_with("250 ") {
        accepted.push(again.trim().rsplit(' ').next().unwrap().to_string());
    }

    // Room again; a restart; everything acknowledged is there, once.
    std::fs::remove_file(&filler).unwrap();
    node.shutdown().await;
    let node = imgate::node::Node::start(config(&data)).await.unwrap();
    let private = node.private_addrs()[0];
    let public = node.public_addrs()[0];
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while ids.len() < accepted.len() && std::time::Instant::now() < deadline {
        let page: serde_json::Value = client
            .get(format!("http://{private}/im2000/v1/inbox?limit=1000"))
            .basic_auth("bob@solo.test", Some("pw"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["notification"]["id"].as_str().unwrap().to_string())
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut found = Vec::new();
    for id in &ids {
        let content =
            client.get(format!("http://{public}/im2000/v1/messages/{id}")).send().await.unwrap().text().await.unwrap();
        let received = content.lines().next().unwrap_or("").to_string();
        let msg = accepted.iter().find(|m| content[..content.len().min(400)].contains(m.as_str()));
        found.push(
            msg.cloned().unwrap_or_else(|| panic!("an inbox entry for a message never acknowledged: {received}")),
        );
    }
    found.sort();
    let mut want = accepted.clone();
    want.sort();
    assert_eq!(found, want, "every 250 filed exactly once");
    node.shutdown().await;
}
