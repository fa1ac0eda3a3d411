//! The comparison lab end to end: the built-in scenarios through both
//! models, the qualitative differences the design promises, and the
//! report's numbers against counts taken independently from the parties'
//! own stores.

use imgate::lab::report::Role;
use imgate::lab::{self, Model, ModelReport, Scenario, World};

async fn compare(name: &str) -> lab::Report {
    let scenario = Scenario::find(name).unwrap();
    let report = lab::compare(&scenario, &|_| {}).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{}", report.to_table());
    report
}

fn models(r: &lab::Report) -> (&ModelReport, &ModelReport) {
    (r.model(Model::Smtp).unwrap(), r.model(Model::Im2000).unwrap())
}

fn recipients(m: &ModelReport) -> impl Iterator<Item = &lab::report::PartyReport> {
    m.parties.iter().filter(|p| p.role == Role::Recipient)
}

/// Runs one model in a world the test keeps, to count in its stores.
async fn run_and_keep(scenario: &Scenario, model: Model) -> (World, ModelReport) {
    let world = World::start(model, scenario).await.unwrap();
    let report = lab::run_in(&world, scenario, &|_| {}).await.unwrap();
    (world, report)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_is_one_stored_copy_in_im2000_and_one_per_subscriber_in_smtp() {
    let scenario = Scenario::find("mailing-list").unwrap();
    let list = &scenario.traffic[0];
    let subscribers: Vec<String> = list.recipient_list().into_iter().map(|(a, _)| a).collect();
    assert_eq!(subscribers.len(), 200);

    let (world, smtp) = run_and_keep(&scenario, Model::Smtp).await;
    // Counted in the MTAs' mailboxes, subscriber by subscriber: one copy each.
    let mut copies = 0;
    let mut bytes = 0;
    for s in &subscribers {
        let domain = s.split('@').nth(1).unwrap();
        let mine: Vec<_> = world.mailboxes(domain).unwrap().copies("lab-smtp-1-1@list.test");
        let mine: Vec<_> = mine.into_iter().filter(|c| &c.mailbox == s).collect();
        assert_eq!(mine.len(), 1, "{s}");
        copies += 1;
        bytes += mine[0].content.len() as u64;
    }
    assert_eq!(recipients(&smtp).map(|p| p.copies_end).sum::<u64>(), copies);
    assert_eq!(recipients(&smtp).map(|p| p.stored_bytes_end).sum::<u64>(), bytes);
    assert!(bytes >= 200 * list.size);
    assert_eq!(smtp.trace_headers_added, 200, "each copy got a Received header");
    world.shutdown().await;

    let (world, im) = run_and_keep(&scenario, Model::Im2000).await;
    // Counted in the nodes' own stores: the sender's quota accounts hold one
    // message; every subscriber's inbox one notification.
    let sender = world.node("list.test").unwrap().context().store.clone();
    let accounts = sender.accounts().unwrap();
    assert_eq!(accounts.iter().map(|(_, a)| a.messages).sum::<u64>(), 1);
    assert_eq!(im.party("list.test").unwrap().copies_end, 1);
    assert_eq!(recipients(&im).map(|p| p.copies_end).sum::<u64>(), 0);
    for s in &subscribers {
        let domain = s.split('@').nth(1).unwrap();
        let inbox = world.node(domain).unwrap().context().store.inbox_list(s, 0, 10).unwrap();
        assert_eq!(inbox.len(), 1, "{s}");
    }
    assert_eq!(recipients(&im).map(|p| p.notifications_end).sum::<u64>(), 200);
    assert_eq!(im.trace_headers_added, 0);
    // The readers pulled the message: a third of the list, counted at the
    // sender's link as bytes out, and seen by the sender as read.
    assert_eq!(im.reads.succeeded, 66);
    assert_eq!(im.sender.read_seen, 66);
    let seen = im.sender.read_after.unwrap();
    assert!(seen.min_secs >= 3.0 * 3600.0 && seen.max_secs < 4.0 * 3600.0, "read after 3h: {seen:?}");
    assert_eq!((smtp.sender.read_seen, smtp.sender.read_after), (0, None), "SMTP shows the sender nothing");
    assert!(im.party("list.test").unwrap().network.bytes_out >= 66 * list.size);
    // Recipients hold a small fraction of what SMTP makes them hold.
    let held = |m: &ModelReport| recipients(m).map(|p| p.stored_bytes_end).sum::<u64>();
    assert!(held(&im) * 20 < held(&smtp), "{} vs {}", held(&im), held(&smtp));
    world.shutdown().await;

    // Behind imgate MX gateways, the SMTP senders' mail is stored once per
    // recipient domain: each gateway's quota account holds one message, and
    // its subscribers each a notification of it.
    let (world, gw) = run_and_keep(&scenario, Model::Gateway).await;
    for domain in (1..=10).map(|n| format!("r{n}.test")) {
        let store = world.node(&domain).unwrap().context().store.clone();
        assert_eq!(store.accounts().unwrap().iter().map(|(_, a)| a.messages).sum::<u64>(), 1, "{domain}");
        assert_eq!(gw.party(&domain).unwrap().copies_end, 1);
        assert_eq!(gw.party(&domain).unwrap().notifications_end, 20);
    }
    assert_eq!(gw.trace_headers_added, 10, "one SMTP hop per domain");
    assert_eq!(gw.reads.succeeded, 66);
    assert_eq!(gw.network.connections, 10, "one SMTP transaction per domain, reads are local");
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_recipient_is_a_bounce_message_in_smtp_and_a_tracked_status_in_im2000() {
    let r = compare("unknown-recipient").await;
    let (smtp, im) = models(&r);

    assert_eq!(smtp.failure_messages, 1);
    assert_eq!(smtp.sender.bounce_messages, 1);
    let seen = &smtp.sender.failures[0];
    assert_eq!((seen.how.as_str(), seen.recipient.as_str()), ("bounce message", "nobody1@r1.test"));
    assert!(seen.what.contains("5.1.1"), "{}", seen.what);
    // The bounce is a message the sender's side stores.
    assert!(smtp.party("one.test").unwrap().stored_bytes_end > 0);

    assert_eq!(im.failure_messages, 0, "no bounce messages in IM2000");
    assert_eq!(im.sender.bounce_messages, 0);
    let seen = &im.sender.failures[0];
    assert_eq!((seen.how.as_str(), seen.what.as_str()), ("tracked status", "nouser"));
    assert_eq!(seen.recipient, "nobody1@r1.test");
    assert_eq!(im.sender.delivered_seen, 1, "the sender sees the other recipient's delivery too");
    // The known recipient got and read the message in both.
    assert_eq!((smtp.reads.succeeded, im.reads.succeeded), (1, 1));

    // An imgate gateway refuses the unknown user at RCPT: the SMTP sender
    // gets its usual bounce from its own MTA, and the gateway sends none.
    let gw = r.model(Model::Gateway).unwrap();
    assert_eq!((gw.failure_messages, gw.sender.bounce_messages), (1, 1));
    assert_eq!(gw.party("r1.test").unwrap().bounces_generated, 0);
    assert_eq!(gw.reads.succeeded, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_down_for_hours_delays_reading_in_both_models_and_loses_nothing() {
    let r = compare("server-down").await;
    for m in [models(&r).0, models(&r).1] {
        let r1 = m.party("r1.test").unwrap();
        let readable = r1.readable.expect("readable in the end");
        assert!(readable.min_secs >= 6.0 * 3600.0, "{}: {readable:?}", m.model);
        assert!(r1.network.refused > 0, "{}: the sender kept trying", m.model);
        assert_eq!(m.reads.succeeded, 1);
        assert_eq!(m.failure_messages, 0);
    }
    // While it is down, the SMTP sender's MTA holds the message in its queue.
    let smtp = models(&r).0;
    assert!(smtp.party("one.test").unwrap().byte_hours > 5.0 * 4096.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_im2000_can_take_a_message_back_before_it_is_read() {
    let r = compare("recall").await;
    let (smtp, im) = models(&r);
    let (s, i) = (smtp.recall.unwrap(), im.recall.unwrap());
    assert_eq!((s.withdrawn, s.read_anyway, smtp.reads.succeeded), (0, 6, 6));
    assert_eq!((i.withdrawn, i.read_anyway, im.reads.succeeded), (6, 0, 0));
    assert_eq!(im.party("one.test").unwrap().stored_bytes_end, 0, "the store freed the body");
    assert!(recipients(smtp).map(|p| p.copies_end).sum::<u64>() == 6, "SMTP copies stay");
}

#[tokio::test(flavor = "multi_thread")]
async fn unread_unsolicited_mail_costs_recipients_little_in_im2000() {
    let r = compare("unsolicited-burst").await;
    let (smtp, im) = models(&r);
    let held = |m: &ModelReport| recipients(m).map(|p| p.byte_hours).sum::<f64>();
    assert!(held(im) * 20.0 < held(smtp), "{} vs {}", held(im), held(smtp));
    // 10 unknown addresses × 20 messages: 200 bounces in SMTP, all of them
    // to the forged address (backscatter); none in IM2000, where failures
    // stay in the real sender's store.
    assert_eq!(smtp.failure_messages, 200);
    assert_eq!(smtp.backscatter, 200);
    assert_eq!(smtp.sender.bounce_messages, 0);
    assert!(smtp.party("victim.test").unwrap().stored_bytes_end > 0);
    assert_eq!(im.failure_messages, 0);
    assert_eq!(im.backscatter, 0);
    assert_eq!(im.party("victim.test").unwrap().stored_bytes_end, 0);
    assert_eq!(im.sender.failures.len(), 200);
    assert!(im.sender.failures.iter().all(|o| o.how == "tracked status" && o.what == "nouser"));
    assert_eq!(smtp.trace_headers_added, 1000);
    assert_eq!(im.trace_headers_added, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn network_figures_are_the_links_counts() {
    let scenario = Scenario::find("one-to-one").unwrap();
    let (world, im) = run_and_keep(&scenario, Model::Im2000).await;
    let mut total = 0;
    for domain in world.domains() {
        let t = world.traffic(domain).unwrap();
        assert_eq!(im.party(domain).unwrap().network, t);
        total += t.bytes_in + t.bytes_out;
    }
    assert_eq!(im.network.bytes_in + im.network.bytes_out, total);
    // The pull moved the body: at least its size left the sender's link.
    assert!(im.party("one.test").unwrap().network.bytes_out >= scenario.traffic[0].size);
    world.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: captures loopback with tcpdump (scripts/test runs it when root)"]
async fn network_figures_match_the_kernels_packets() {
    // Counted independently of the lab's links: the TCP payload octets the
    // kernel carried to and from each party's address, from a capture.
    for (name, model) in
        [("mailing-list", Model::Im2000), ("mailing-list", Model::Smtp), ("one-to-one", Model::Gateway)]
    {
        let scenario = Scenario::find(name).unwrap();
        let world = World::start(model, &scenario).await.unwrap();
        let links: Vec<(String, std::net::SocketAddr)> =
            world.domains().map(|d| (d.to_string(), world.link_addr(d).unwrap())).collect();
        let addrs: Vec<_> = links.iter().map(|(_, a)| *a).collect();
        let capture = tokio::task::spawn_blocking(move || crate::capture::Capture::start(&addrs)).await.unwrap();
        let report = lab::run_in(&world, &scenario, &|_| {}).await.unwrap();
        let counted = tokio::task::spawn_blocking(move || capture.stop()).await.unwrap();
        let mut moved = 0;
        for (domain, addr) in &links {
            let n = report.party(domain).unwrap().network;
            assert_eq!((n.bytes_in, n.bytes_out), counted[addr], "{name} {model:?}: {domain} at {addr}: {counted:?}");
            moved += n.bytes_in + n.bytes_out;
        }
        assert!(moved > scenario.traffic[0].size, "{name} {model:?}: traffic crossed the links");
        world.shutdown().await;
    }
}

#[test]
fn the_compare_command_runs_a_scenario_file_and_refuses_a_malformed_one() {
    use crate::cli::{imgate, ok};
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("two-readers.toml");
    std::fs::write(
        &good,
        "description = \"Two readers on two domains.\"\nrun_for = \"2h\"\n\
         [[traffic]]\nfrom = \"ann@a.test\"\nrecipients = 2\ndomains = 2\nread_after = \"10m\"\n",
    )
    .unwrap();
    let svg = dir.path().join("chart.svg");
    let out = ok(&["compare", "--scenario", good.to_str().unwrap(), "--json", "--svg", svg.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["scenario"], "two-readers");
    let models: Vec<&str> = report["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["smtp", "im2000", "gateway"]);
    assert_eq!(report["models"][1]["reads"]["succeeded"], 2);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("r2.test") && chart.contains("IM2000"), "{chart}");

    let table = ok(&["compare", "--scenario", "one-to-one"]);
    assert!(table.contains("trace headers added") && table.contains("IM2000"), "{table}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "description = \"d\"\n[[traffic]]\nfrom = \"ann@a.test\"\nread = \"most\"\n").unwrap();
    let out = imgate(&["compare", "--scenario", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("traffic[0].read") && err.contains("expected f64"), "{err}");

    let out = imgate(&["compare", "--scenario", "no-such-scenario"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-scenario: cannot read"), "{out:?}");
}

/// The example in docs/lab.md, as written there.
#[tokio::test(flavor = "multi_thread")]
async fn no_bounce_messages_in_im2000() {
    let scenario = Scenario::parse(
        "description = \"one unknown\"\n[[traffic]]\nfrom = \"a@one.test\"\nunknown = 1\nrecipients = 0\n",
        "inline",
        "mine",
    )
    .unwrap();
    let report = lab::compare(&scenario, &|_| {}).await.unwrap();
    assert_eq!(report.model(Model::Smtp).unwrap().failure_messages, 1);
    assert_eq!(report.model(Model::Im2000).unwrap().failure_messages, 0);
}
