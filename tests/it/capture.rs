//! Counting what crosses loopback without trusting the code under test: a
//! tcpdump capture (the kernel's view of every packet), read back here as a
//! pcap file, with the TCP payload octets summed per address and direction.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Payload octets (to, from) each watched address.
pub type Counts = HashMap<SocketAddr, (u64, u64)>;

pub struct Capture {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
    watched: Vec<SocketAddr>,
    filter: String,
    rest: Option<std::thread::JoinHandle<String>>,
}

impl Capture {
    /// Captures TCP on `lo` to and from the ports of `watched` (headers
    /// only: lengths come from the IP header). Returns once tcpdump listens.
    pub fn start(watched: &[SocketAddr]) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lo.pcap");
        let ports: std::collections::BTreeSet<u16> = watched.iter().map(SocketAddr::port).collect();
        let ports: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
        let filter = format!("tcp and ({})", ports.join(" or "));
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-n", "-s", "128", "-w"])
            .arg(&file)
            .arg(&filter)
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/test installs it when run as root)");
        // tcpdump says "listening on lo" once the capture is armed.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            use std::io::Read;
            let n = err.read(&mut buf).unwrap();
            assert!(n > 0, "tcpdump quit: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        let rest = std::thread::spawn(move || {
            let mut text = String::from_utf8_lossy(&seen).into_owned();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        Capture { child, file, _dir: dir, watched: watched.to_vec(), filter, rest: Some(rest) }
    }

    /// Stops the capture (letting the last packets land) and counts.
    pub fn stop(mut self) -> Counts {
        // --immediate-mode hands each packet over at once; give the last
        // ones time to be written before the interrupt ends the loop.
        std::thread::sleep(Duration::from_millis(1000));
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        self.child.wait().unwrap();
        let pcap = std::fs::read(&self.file).unwrap();
        let said = self.rest.take().map(|t| t.join().unwrap()).unwrap_or_default();
        eprintln!("capture: {} octets; filter {}; tcpdump said: {said}", pcap.len(), self.filter);
        count(&pcap, &self.watched)
    }
}

/// Sums TCP payload lengths in a pcap file (Ethernet or Linux cooked
/// framing, IPv4) per watched address: octets sent to it, and from it.
pub fn count(pcap: &[u8], watched: &[SocketAddr]) -> Counts {
    let mut out: Counts = watched.iter().map(|a| (*a, (0, 0))).collect();
    assert!(pcap.len() >= 24, "no pcap header");
    let le = match &pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        other => panic!("not a pcap file: {other:?}"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le { u32::from_le_bytes(w) } else { u32::from_be_bytes(w) }
    };
    let link = u32_at(pcap, 20);
    let frame = match link {
        1 => 14,   // Ethernet: lo on Linux
        113 => 16, // Linux cooked
        other => panic!("link type {other}"),
    };
    let mut i = 24;
    while i + 16 <= pcap.len() {
        let caplen = u32_at(pcap, i + 8) as usize;
        let p = &pcap[i + 16..(i + 16 + caplen).min(pcap.len())];
        i += 16 + caplen;
        if p.len() < frame + 20 || p[frame] >> 4 != 4 {
            continue;
        }
        let ip = &p[frame..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[9] != 6 || ip.len() < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..];
        let doff = usize::from(tcp[12] >> 4) * 4;
        let payload = total.saturating_sub(ihl + doff) as u64;
        let addr = |ip_at: usize, port_at: usize| {
            let a = Ipv4Addr::new(ip[ip_at], ip[ip_at + 1], ip[ip_at + 2], ip[ip_at + 3]);
            SocketAddr::new(IpAddr::V4(a), u16::from_be_bytes([tcp[port_at], tcp[port_at + 1]]))
        };
        let (src, dst) = (addr(12, 0), addr(16, 2));
        if let Some(c) = out.get_mut(&dst) {
            c.0 += payload;
        }
        if let Some(c) = out.get_mut(&src) {
            c.1 += payload;
        }
    }
    out
}

#[test]
fn a_pcap_is_counted_by_payload_and_direction() {
    // A little-endian pcap with one Ethernet/IPv4/TCP packet of 5 payload
    // octets from 127.0.0.1:40000 to 127.0.0.2:25.
    let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    pcap.extend([0; 8]);
    pcap.extend(128u32.to_le_bytes());
    pcap.extend(1u32.to_le_bytes());
    let mut frame = vec![0; 12];
    frame.extend([0x08, 0x00]);
    let total: u16 = 20 + 20 + 5;
    frame.extend([0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2]);
    let mut tcp = vec![0x9c, 0x40, 0, 25, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0, 0, 0, 0, 0, 0];
    tcp.extend(b"hello");
    frame.extend(tcp);
    pcap.extend([0; 8]);
    pcap.extend((frame.len() as u32).to_le_bytes());
    pcap.extend((frame.len() as u32).to_le_bytes());
    pcap.extend(frame);
    let server: SocketAddr = "127.0.0.2:25".parse().unwrap();
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let counts = count(&pcap, &[server, client]);
    assert_eq!(counts[&server], (5, 0));
    assert_eq!(counts[&client], (0, 5));
}
