//! A real DNS server in this process (hickory-server), authoritative for
//! `test.`, that the lab's nodes and MTAs (and the end-to-end tests) resolve
//! through over UDP and TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, MX, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

/// An authoritative server for `test.` on a loopback port; records are
/// added while it runs.
pub struct Dns {
    pub addr: SocketAddr,
    zone: Arc<Zone>,
    _server: Server<Catalog>,
}

fn name(s: &str) -> Name {
    Name::from_ascii(if s.ends_with('.') { s.to_string() } else { format!("{s}.") })
        .expect("lab names are checked DNS names")
}

impl Dns {
    pub async fn start() -> std::io::Result<Dns> {
        let origin = name("test.");
        let zone = Arc::new(Zone::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny));
        let soa = SOA::new(name("ns.test."), name("hostmaster.test."), 1, 3600, 600, 86_400, 0);
        zone.upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1).await;
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&origin), vec![zone.clone()]);
        let mut server = Server::new(catalog);
        // UDP and TCP on the same port: a port free for UDP may be taken for
        // TCP by a neighbouring test, so try again until both are ours.
        let (udp, tcp, addr) = loop {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = tokio::net::TcpListener::bind(addr).await {
                break (udp, tcp, addr);
            }
        };
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 65_535);
        Ok(Dns { addr, zone, _server: server })
    }

    pub async fn a(&self, host: &str, ip: IpAddr) {
        let IpAddr::V4(v4) = ip else { panic!("the lab DNS serves IPv4 addresses only") };
        self.zone.upsert(Record::from_rdata(name(host), 0, RData::A(A(v4))), 2).await;
    }

    pub async fn txt(&self, owner: &str, text: &str) {
        // Character-strings of at most 255 octets (an RSA key is longer).
        let parts = text.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let txt = TXT::new(parts);
        self.zone.upsert(Record::from_rdata(name(owner), 0, RData::TXT(txt)), 2).await;
    }

    pub async fn mx(&self, owner: &str, preference: u16, host: &str) {
        let mx = MX::new(preference, name(host));
        self.zone.upsert(Record::from_rdata(name(owner), 0, RData::MX(mx)), 2).await;
    }

    pub async fn srv(&self, owner: &str, priority: u16, weight: u16, port: u16, target: &str) {
        let srv = SRV::new(priority, weight, port, name(target));
        self.zone.upsert(Record::from_rdata(name(owner), 0, RData::SRV(srv)), 2).await;
    }

    /// Publishes a node's public listener as `domain`'s store and agent:
    /// `node.<domain>` A 127.0.0.1, and both SRV records pointing at it.
    pub async fn publish_node(&self, domain: &str, public: SocketAddr) {
        let host = format!("node.{domain}");
        self.a(&host, public.ip()).await;
        self.a(domain, public.ip()).await;
        self.srv(&format!("_im2000-store._tcp.{domain}"), 10, 1, public.port(), &host).await;
        self.srv(&format!("_im2000-notify._tcp.{domain}"), 10, 1, public.port(), &host).await;
    }
}
