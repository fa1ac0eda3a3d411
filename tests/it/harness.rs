//! A small world for end-to-end tests: a real DNS server, nodes for several
//! domains in this process (each with its own RocksDB directory), one manual
//! clock they all share, and helpers to call their HTTP APIs.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use imgate::clock::{Clock, ManualClock};
use imgate::config::Config;
use imgate::node::{Node, NodeParts};

use imgate::lab::Dns as TestDns;

pub struct World {
    pub dns: TestDns,
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    /// (cert, key) files when the nodes serve HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
    /// The port nodes deliver to MX hosts on (instead of 25).
    pub relay_port: std::sync::Mutex<Option<u16>>,
    /// Extra keys for a domain's `[[domain]]` table (routes).
    pub domain_keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// `im2000.private_peers` of nodes started after: every test peer is
    /// on loopback, so true unless a test checks the refusal itself.
    pub private_peers: std::sync::Mutex<bool>,
}

/// A certificate authority made once per test process; every HTTP client in
/// the tests trusts it, and TLS worlds' node certificates are signed by it.
struct TestCa {
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
    pem_path: PathBuf,
    _dir: tempfile::TempDir,
}

fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "imgate test CA");
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        TestCa { params, key, pem_path, _dir: dir }
    })
}

pub struct TestNode {
    pub node: Node,
    pub domain: String,
    /// The configuration file, rewritten with the bound ports.
    pub config_path: PathBuf,
    pub public: SocketAddr,
    pub private: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub mx: SocketAddr,
    pub submission: SocketAddr,
    pub scheme: &'static str,
}

pub const PASSWORD: &str = "correct horse";

/// Listener addresses of a node.
pub struct Ports {
    /// An admin listener of its own (else admin routes are on `private`).
    pub admin: Option<String>,
    pub public: String,
    pub private: String,
    pub mx: String,
    pub submission: String,
}

impl Ports {
    /// Every listener, the admin one included, on a fresh loopback port.
    pub fn any() -> Ports {
        let any = || "127.0.0.1:0".to_string();
        Ports { admin: Some(any()), public: any(), private: any(), mx: any(), submission: any() }
    }
}

impl World {
    pub async fn new() -> World {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        World {
            dns: TestDns::start().await.unwrap(),
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(),
            tls: None,
            domain_keys: Default::default(),
            relay_port: Default::default(),
            private_peers: std::sync::Mutex::new(true),
        }
    }

    /// A world whose nodes serve HTTPS only, with certificates for
    /// `node.<domain>` of the given domains (and 127.0.0.1).
    pub async fn with_tls(domains: &[&str]) -> World {
        let mut w = World::new().await;
        w.tls = Some((w.dir.path().join("node.pem"), w.dir.path().join("node.key")));
        w.issue_certificate(domains);
        w
    }

    /// Writes a new certificate and key (signed by the test CA) over the
    /// TLS world's files, as a renewal would; returns the certificate (DER).
    pub fn issue_certificate(&self, domains: &[&str]) -> Vec<u8> {
        let (cert_path, key_path) = self.tls.as_ref().expect("a TLS world");
        let ca = test_ca();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = domains.iter().map(|d| format!("node.{d}")).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &rcgen::Issuer::from_params(&ca.params, &ca.key)).unwrap();
        std::fs::write(cert_path, cert.pem()).unwrap();
        std::fs::write(key_path, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }

    /// Configuration text for `domain` with `users` (local parts).
    pub fn config_text(&self, domain: &str, users: &[&str], ports: &Ports, extra: &str) -> String {
        let Ports { admin, public, private, mx, submission } = ports;
        let data = self.dir.path().join(domain);
        let admin = admin.as_ref().map(|a| format!("admin = [\"{a}\"]\n")).unwrap_or_default();
        let mut t = format!(
            "hostname = \"node.{domain}\"\ndata_dir = {data:?}\n\
             [im2000]\n{admin}public = [\"{public}\"]\nprivate = [\"{private}\"]\nmax_message_size = \"1MiB\"\n\
             plain_to_loopback = {}\nprivate_peers = {}\n\
             [smtp]\nmx = [\"{mx}\"]\nsubmission = [\"{submission}\"]\nsubmission_plaintext = {}\nrelay_port = {}\n\
             [dns]\nnameservers = [\"{}\"]\ntimeout = \"2s\"\n\
             [notify]\ntimeout = \"5s\"\n\
             [[domain]]\nname = \"{domain}\"\n{}\n",
            self.tls.is_none(),
            *self.private_peers.lock().unwrap(),
            self.tls.is_none(),
            self.relay_port.lock().unwrap().unwrap_or(25),
            self.dns.addr,
            self.domain_keys.lock().unwrap().get(domain).cloned().unwrap_or_default()
        );
        if let Some((cert, key)) = &self.tls {
            t.push_str(&format!("[tls]\ncert = {cert:?}\nkey = {key:?}\nca = {:?}\n", test_ca().pem_path));
        }
        for u in users {
            t.push_str(&format!("[[user]]\naddress = \"{u}@{domain}\"\npassword = \"{PASSWORD}\"\n"));
        }
        t.push_str(extra);
        t
    }

    /// Like [`World::route_legacy`], asking the legacy host about users first.
    pub fn route_legacy_verified(&self, domain: &str, legacy_host: SocketAddr) {
        let keys = format!("route = \"legacy\"\nlegacy_host = \"{legacy_host}\"\nverify_users = true");
        self.domain_keys.lock().unwrap().insert(domain.to_string(), keys);
    }

    /// Routes `domain`'s mail by SMTP to `legacy_host` (for nodes started after).
    pub fn route_legacy(&self, domain: &str, legacy_host: SocketAddr) {
        let keys = format!("route = \"legacy\"\nlegacy_host = \"{legacy_host}\"");
        self.domain_keys.lock().unwrap().insert(domain.to_string(), keys);
    }

    /// Starts a node for `domain` on fresh ports and publishes it in DNS.
    pub async fn start(&self, domain: &str, users: &[&str]) -> TestNode {
        self.start_with(domain, users, "127.0.0.1:0", "127.0.0.1:0", "").await
    }

    pub async fn start_with(&self, domain: &str, users: &[&str], public: &str, private: &str, extra: &str) -> TestNode {
        let ports = Ports { public: public.into(), private: private.into(), ..Ports::any() };
        self.start_on(domain, users, ports, extra).await
    }

    /// Starts a node for `domain` on the given listener addresses.
    pub async fn start_on(&self, domain: &str, users: &[&str], ports: Ports, extra: &str) -> TestNode {
        let text = self.config_text(domain, users, &ports, extra);
        let config = Config::parse(&text, domain).unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start_with(config, self.parts()).await.unwrap();
        let (public, private) = (node.public_addrs()[0], node.private_addrs()[0]);
        let (mx, submission) = (node.mx_addrs()[0], node.submission_addrs()[0]);
        self.dns.publish_node(domain, public).await;
        // Keep the bound ports, so restarts and the CLI find the same node.
        let admin = node.admin_addrs().first().copied();
        let bound = Ports {
            admin: admin.map(|a| a.to_string()),
            public: public.to_string(),
            private: private.to_string(),
            mx: mx.to_string(),
            submission: submission.to_string(),
        };
        let fixed = self.config_text(domain, users, &bound, extra);
        let config_path = self.dir.path().join(format!("{domain}.toml"));
        std::fs::write(&config_path, fixed).unwrap();
        TestNode {
            node,
            domain: domain.to_string(),
            config_path,
            public,
            private,
            admin,
            mx,
            submission,
            scheme: self.scheme(),
        }
    }

    /// Starts a node for `domain` with keys added to its `[im2000]` and
    /// `[smtp]` tables (limits under test), and `extra` at the end; it
    /// cannot be restarted.
    pub async fn start_tuned(&self, domain: &str, users: &[&str], im2000: &str, smtp: &str, extra: &str) -> TestNode {
        let text = self.config_text(domain, users, &Ports::any(), extra);
        let text = text.replacen("[im2000]\n", &format!("[im2000]\n{im2000}"), 1);
        let text = text.replacen("[smtp]\n", &format!("[smtp]\n{smtp}"), 1);
        self.start_text(domain, &text).await
    }

    /// Starts a node for `domain` from configuration text as written (its
    /// listeners on port 0) and publishes it in DNS; it cannot be restarted.
    pub async fn start_text(&self, domain: &str, text: &str) -> TestNode {
        let config = Config::parse(text, domain).unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start_with(config, self.parts()).await.unwrap();
        let (public, private) = (node.public_addrs()[0], node.private_addrs()[0]);
        self.dns.publish_node(domain, public).await;
        TestNode {
            admin: node.admin_addrs().first().copied(),
            mx: node.mx_addrs()[0],
            submission: node.submission_addrs()[0],
            node,
            domain: domain.to_string(),
            config_path: PathBuf::new(),
            public,
            private,
            scheme: self.scheme(),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Publishes `domain` in DNS at a port where nothing listens: its agent
    /// is "down", so notifications to it stay pending. Returns that address.
    pub async fn publish_down(&self, domain: &str) -> SocketAddr {
        let addr = unused_addr();
        self.dns.publish_node(domain, addr).await;
        addr
    }

    /// Stops a node and starts it again on the same data and ports.
    pub async fn restart(&self, n: TestNode) -> TestNode {
        let TestNode { node, domain, config_path, public, private, admin, mx, submission, .. } = n;
        node.shutdown().await;
        let config = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
        let node = Node::start_with(config, self.parts()).await.unwrap();
        TestNode { node, domain, config_path, public, private, admin, mx, submission, scheme: self.scheme() }
    }

    fn parts(&self) -> NodeParts {
        NodeParts { clock: Some(Arc::new(self.clock.clone()) as Arc<dyn Clock>), dns: None, run_as: None }
    }
}

impl TestNode {
    pub fn public_url(&self) -> String {
        format!("{}://{}/im2000/v1", self.scheme, self.public)
    }
    pub fn private_url(&self) -> String {
        format!("{}://{}/im2000/v1", self.scheme, self.private)
    }
    /// Where the admin API is: the admin listener.
    pub fn admin_url(&self) -> String {
        format!("{}://{}/im2000/v1", self.scheme, self.admin.expect("nodes under test have an admin listener"))
    }
}

/// A loopback address where nothing listens (yet), reserved for later use.
///
/// Ports come from below the kernel's ephemeral range (32768 and up), so an
/// outgoing connection cannot take one between this call and the bind that
/// uses it, and from a counter, so two calls in this process never return
/// the same port. The start depends on the process id, which keeps
/// concurrent test processes mostly apart; the bind check does the rest.
pub fn unused_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() * 97 % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().unwrap();
        }
    }
}

/// An SMTP client for `node`'s submission listener, authenticating in the
/// clear (the plain-HTTP worlds allow it).
pub fn submission_client(
    node: &TestNode,
    user: &str,
    password: &str,
) -> lettre::AsyncSmtpTransport<lettre::Tokio1Executor> {
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(node.submission.port())
        .tls(lettre::transport::smtp::client::Tls::None)
        .credentials(lettre::transport::smtp::authentication::Credentials::new(user.into(), password.into()))
        .build()
}

/// The test CA's certificate file.
pub fn ca_pem() -> &'static std::path::Path {
    &test_ca().pem_path
}

pub fn http() -> reqwest::Client {
    let tls = imgate::peer::tls_client_config(Some(&test_ca().pem_path)).unwrap();
    reqwest::Client::builder().use_preconfigured_tls(tls).timeout(Duration::from_secs(20)).build().unwrap()
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Submits `content` from `from` (a user of `node`) to `to`. [`MESSAGE`]'s
/// `From: alice@one.test` becomes `from`, which is all a node lets its
/// users write there.
pub async fn submit(node: &TestNode, from: &str, to: &[&str], content: &str) -> serde_json::Value {
    let content = content.replacen("From: alice@one.test\r\n", &format!("From: {from}\r\n"), 1);
    let mut q: Vec<(&str, &str)> = to.iter().map(|t| ("to", *t)).collect();
    q.push(("lifetime", "7d"));
    let resp = http()
        .post(format!("{}/submissions", node.private_url()))
        .query(&q)
        .header("authorization", basic(from, PASSWORD))
        .header("content-type", "message/rfc822")
        .body(content.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "submit: {}", resp.text().await.unwrap());
    resp.json().await.unwrap()
}

pub async fn track(node: &TestNode, user: &str, msg: &str) -> serde_json::Value {
    let resp = http()
        .get(format!("{}/submissions/{msg}", node.private_url()))
        .header("authorization", basic(user, PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

pub async fn inbox(node: &TestNode, user: &str) -> Vec<serde_json::Value> {
    let resp = http()
        .get(format!("{}/inbox", node.private_url()))
        .header("authorization", basic(user, PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["notifications"].as_array().unwrap().clone()
}

/// Polls `check` until it returns `Some`, for at most 20 seconds.
pub async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, check: impl FnMut() -> F) -> T {
    eventually_within(Duration::from_secs(20), what, check).await
}

/// Polls `check` until it returns `Some`, for at most `limit`.
pub async fn eventually_within<T, F: Future<Output = Option<T>>>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The body of a message retrieved from `node`'s store with `id`.
pub async fn retrieve(node: &TestNode, id: &str) -> String {
    http().get(format!("{}/messages/{id}", node.public_url())).send().await.unwrap().text().await.unwrap()
}

/// Waits until the first recipient of `msg` has notification status `want`.
pub async fn await_status(node: &TestNode, user: &str, msg: &str, want: &str) -> serde_json::Value {
    eventually(&format!("status {want}"), || async {
        let t = track(node, user, msg).await;
        (status(&t) == want).then_some(t)
    })
    .await
}

/// The first recipient's status in a track answer.
pub fn status(t: &serde_json::Value) -> &str {
    t["recipients"][0]["notification"].as_str().unwrap()
}

/// A JSON request to `node`'s admin API as `ops@<domain>` (an admin the
/// test configured): the status and the answer.
pub async fn admin_json(
    node: &TestNode,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = http()
        .request(method, format!("{}{path}", node.admin_url()))
        .header("authorization", basic(&format!("ops@{}", node.domain), PASSWORD));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The `[[user]]` table of an admin, `ops@<domain>`.
pub fn admin_keys(domain: &str) -> String {
    format!("[[user]]\naddress = \"ops@{domain}\"\npassword = \"{PASSWORD}\"\nadmin = true\n")
}

pub const MESSAGE: &str = "From: alice@one.test\r\nTo: bob@two.test\r\nSubject: hello\r\n\r\nHello, Bob.\r\n";
