//! `[capture] hep`: a HEP receiver written here gets a HEPv3 copy of
//! every SIP message of a call placed by SIPp through the real binary,
//! each decodable, with the addresses and ports of both legs.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{
    api_text, b2bua_config, calls::builtin_uas, free_port, Server, TEST_API_KEY,
    TEST_API_KEY_CONFIG,
};

/// One decoded HEPv3 packet.
#[derive(Debug)]
struct Hep {
    src: SocketAddr,
    dst: SocketAddr,
    proto_type: u8,
    payload: String,
}

impl Hep {
    fn first_line(&self) -> &str {
        self.payload.lines().next().unwrap_or_default()
    }
}

/// Decodes one packet: `HEP3`, its total length, then chunks (vendor,
/// type, length with the 6-byte header, value). Panics on any mismatch.
fn decode(p: &[u8]) -> Hep {
    assert_eq!(p.get(..4), Some(&b"HEP3"[..]), "{p:?}");
    assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len());
    let (mut src_ip, mut dst_ip) = (None, None);
    let (mut sport, mut dport, mut proto_type, mut payload) = (0, 0, 0, None);
    let mut at = 6;
    while at < p.len() {
        let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
        let len = usize::from(u16::from_be_bytes([p[at + 4], p[at + 5]]));
        assert!(len >= 6 && at + len <= p.len(), "chunk {kind} length {len}");
        let v = &p[at + 6..at + len];
        match kind {
            0x0003 => src_ip = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            0x0004 => dst_ip = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            0x0007 => sport = u16::from_be_bytes([v[0], v[1]]),
            0x0008 => dport = u16::from_be_bytes([v[0], v[1]]),
            0x000b => proto_type = v[0],
            0x000f => payload = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
        at += len;
    }
    Hep {
        src: SocketAddr::from((src_ip.expect("IPv4 source"), sport)),
        dst: SocketAddr::from((dst_ip.expect("IPv4 destination"), dport)),
        proto_type,
        payload: payload.expect("payload chunk"),
    }
}

#[test]
fn every_message_of_a_call_reaches_the_hep_receiver() {
    let hep = UdpSocket::bind("127.0.0.1:0").expect("bind HEP receiver");
    hep.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let hep_addr = hep.local_addr().expect("addr");
    let carrier_port = free_port();
    let mut carrier = builtin_uas(carrier_port, 1);
    let mut cfg = b2bua_config(&[(format!("sip:127.0.0.1:{carrier_port}"), 1)]);
    cfg.push_str(TEST_API_KEY_CONFIG);
    cfg.push_str(&format!("\n[capture]\nhep = \"{hep_addr}\"\n"));
    let server = Server::start(&cfg);
    let uac_port = free_port();
    common::sipp_calls_ok(&server, 1, &["-p", &uac_port.to_string()]);
    let (uas_code, uas_text) = carrier.wait(Duration::from_secs(10));
    assert_eq!(uas_code, Some(0), "{uas_text}");

    let uac: SocketAddr = ([127, 0, 0, 1], uac_port).into();
    let up: SocketAddr = ([127, 0, 0, 1], carrier_port).into();
    // (from, to, first line prefix, CSeq method) of every message of the
    // call, both legs; SIPp's built-in scenarios ring (180) and answer.
    let want: Vec<(SocketAddr, SocketAddr, &str, &str)> = vec![
        (uac, server.udp, "INVITE ", "INVITE"),
        (server.udp, up, "INVITE ", "INVITE"),
        (up, server.udp, "SIP/2.0 180", "INVITE"),
        (server.udp, uac, "SIP/2.0 180", "INVITE"),
        (up, server.udp, "SIP/2.0 200", "INVITE"),
        (server.udp, uac, "SIP/2.0 200", "INVITE"),
        (uac, server.udp, "ACK ", "ACK"),
        (server.udp, up, "ACK ", "ACK"),
        (uac, server.udp, "BYE ", "BYE"),
        (server.udp, up, "BYE ", "BYE"),
        (up, server.udp, "SIP/2.0 200", "BYE"),
        (server.udp, uac, "SIP/2.0 200", "BYE"),
    ];
    let matches = |h: &Hep, w: &(SocketAddr, SocketAddr, &str, &str)| {
        h.src == w.0
            && h.dst == w.1
            && h.first_line().starts_with(w.2)
            && h.payload
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("cseq:") && l.trim_end().ends_with(w.3))
    };
    let mut got: Vec<Hep> = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < end && !want.iter().all(|w| got.iter().any(|h| matches(h, w))) {
        if let Ok(n) = hep.recv(&mut buf) {
            got.push(decode(&buf[..n]));
        }
    }
    let shown = || {
        got.iter()
            .map(|h| format!("{} -> {}: {}", h.src, h.dst, h.first_line()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for w in &want {
        assert!(
            got.iter().any(|h| matches(h, w)),
            "no {} -> {} `{}…` ({}) in:\n{}",
            w.0,
            w.1,
            w.2,
            w.3,
            shown()
        );
    }
    assert!(got.iter().all(|h| h.proto_type == 1), "{}", shown());
    let (st, metrics) = api_text(&server, TEST_API_KEY, "/metrics");
    assert_eq!(st, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l == "sipfront_capture_dropped_total 0"),
        "{metrics}"
    );
}
