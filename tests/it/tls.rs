//! Nodes that serve HTTPS only: certificates from `[tls]`, peers verified
//! against the configured CA by the names their SRV records give, and no
//! plain HTTP toward a peer unless the configuration allows it.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_over_https() {
    let w = World::with_tls(&["one.test", "two.test"]).await;
    let one = w.start("one.test", &["alice"]).await;
    let two = w.start("two.test", &["bob"]).await;
    assert!(one.public_url().starts_with("https://"));

    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let entry = eventually("the notification over HTTPS", || async { inbox(&two, "bob@two.test").await.pop() }).await;
    let id = entry["notification"]["id"].as_str().unwrap();
    let body = http().get(format!("{}/messages/{id}", one.public_url())).send().await.unwrap();
    assert_eq!(body.text().await.unwrap(), MESSAGE);
    let t = track(&one, "alice@one.test", &msg).await;
    assert_eq!(t["recipients"][0]["read"], "all");

    // Plain HTTP to a TLS listener gets nowhere.
    let plain = http().get(format!("http://{}/im2000/v1/messages/{id}", one.public)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plain_http_to_a_peer_that_lacks_tls() {
    // one.test requires HTTPS toward peers; two.test speaks only plain HTTP.
    let plain_world = World::new().await;
    let tls_world = World::with_tls(&["one.test"]).await;
    let two = plain_world.start("two.test", &["bob"]).await;
    tls_world.dns.publish_node("two.test", two.public).await;
    let one = tls_world.start("one.test", &["alice"]).await;
    let sent = submit(&one, "alice@one.test", &["bob@two.test"], MESSAGE).await;
    let msg = sent["message"].as_str().unwrap().to_string();
    let t = eventually("a failed attempt", || async {
        let t = track(&one, "alice@one.test", &msg).await;
        t["recipients"][0]["reason"].is_string().then_some(t)
    })
    .await;
    assert_eq!(status(&t), "notifying", "{t}");
    assert!(inbox(&two, "bob@two.test").await.is_empty());
}

/// The certificate `addr` serves in a TLS handshake (DER).
async fn served_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_pem()).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_the_certificate_and_keeps_open_connections() {
    let w = World::with_tls(&["one.test"]).await;
    let one = w.start("one.test", &["alice"]).await;
    let first = served_certificate(one.public).await;
    // A keep-alive connection made before the renewal.
    let client = http();
    assert!(client.get(format!("{}/lists/none", one.public_url())).send().await.is_ok());

    let renewed = w.issue_certificate(&["one.test"]);
    assert_ne!(first, renewed);
    let config = imgate::config::Config::load(&one.config_path).unwrap();
    one.node.reload(config).await;
    assert_eq!(served_certificate(one.public).await, renewed, "new handshakes get the new certificate");
    assert!(client.get(format!("{}/lists/none", one.public_url())).send().await.is_ok());

    // A certificate that does not load leaves the running one in place.
    let cert_path = one.config_path.parent().unwrap().join("node.pem");
    std::fs::write(&cert_path, "not a certificate").unwrap();
    one.node.reload(imgate::config::Config::load(&one.config_path).unwrap()).await;
    assert_eq!(served_certificate(one.public).await, renewed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_the_mta_sts_policy_of_its_mx() {
    let w = World::with_tls(&["one.test"]).await;
    let one = w.start("one.test", &["alice"]).await;
    let url = format!("https://{}/.well-known/mta-sts.txt", one.public);
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    let policy = imgate::outbound::mta_sts::Policy::parse(&resp.text().await.unwrap()).unwrap();
    assert_eq!(policy.mode, imgate::outbound::mta_sts::Mode::Enforce);
    assert!(policy.allows("node.one.test"), "{policy:?}");

    // Without TLS there is nothing to enforce: no policy.
    let plain = World::new().await;
    let two = plain.start("two.test", &["bob"]).await;
    let resp = http().get(format!("http://{}/.well-known/mta-sts.txt", two.public)).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
