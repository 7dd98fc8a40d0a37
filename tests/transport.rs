//! The socket layer seen from a peer, against the real binary: datagrams and
//! TCP framing (several messages per segment, split messages, keep-alive
//! ping/pong, bad framing closes), hostile input never stops the server.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use common::{options, Server, LOOPBACK_CONFIG};

fn udp_client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

fn recv_text(s: &UdpSocket) -> String {
    let mut buf = [0u8; 65_536];
    let (n, _) = s.recv_from(&mut buf).expect("response within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads from a stream until `count` complete SIP responses arrived.
fn read_responses(s: &mut TcpStream, count: usize) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    while String::from_utf8_lossy(&all).matches("SIP/2.0 ").count() < count
        || !String::from_utf8_lossy(&all).ends_with("\r\n\r\n")
    {
        let n = s.read(&mut buf).expect("read within 5 s");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&all)
        );
        all.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn tcp_client(server: &Server) -> (TcpStream, SocketAddr) {
    let s = TcpStream::connect(server.tcp).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = s.local_addr().expect("local addr");
    (s, local)
}

#[test]
fn udp_options_200_known_methods_405_unknown_501() {
    let server = Server::start(LOOPBACK_CONFIG);
    let c = udp_client();
    let local = c.local_addr().expect("local");
    c.send_to(
        options("UDP", local, server.udp, "a1").as_bytes(),
        server.udp,
    )
    .expect("send");
    let r = recv_text(&c);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    assert!(
        r.contains(&format!(
            "Via: SIP/2.0/UDP {local};branch=z9hG4bKa1;rport={};received={}",
            local.port(),
            local.ip()
        )),
        "{r}"
    );
    assert!(r.contains("To: <sip:"), "{r}");
    assert!(r.contains(";tag="), "{r}");
    assert!(r.contains("Call-ID: a1@test"), "{r}");

    let info = options("UDP", local, server.udp, "a2").replace("OPTIONS", "SUBSCRIBE");
    c.send_to(info.as_bytes(), server.udp).expect("send");
    let r = recv_text(&c);
    assert!(r.starts_with("SIP/2.0 405 "), "{r}");
    assert!(r.contains("\r\nAllow: "), "{r}");
    let unknown = options("UDP", local, server.udp, "a3").replace("OPTIONS", "FROB");
    c.send_to(unknown.as_bytes(), server.udp).expect("send");
    assert!(recv_text(&c).starts_with("SIP/2.0 501 "));
}

#[test]
fn udp_garbage_is_dropped_and_server_keeps_answering() {
    let server = Server::start(LOOPBACK_CONFIG);
    let c = udp_client();
    let local = c.local_addr().expect("local");
    for junk in [
        &b"\r\n\r\n"[..],
        b"NOT SIP AT ALL",
        b"OPTIONS sip:x SIP/2.0\r\nVia: \r\n\r\n",
        &[0xffu8; 2000][..],
    ] {
        c.send_to(junk, server.udp).expect("send");
    }
    c.send_to(
        options("UDP", local, server.udp, "b1").as_bytes(),
        server.udp,
    )
    .expect("send");
    let r = recv_text(&c);
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert!(
        r.contains("Call-ID: b1@test"),
        "only the valid request is answered: {r}"
    );
}

#[test]
fn tcp_two_messages_in_one_segment_and_split_message() {
    let server = Server::start(LOOPBACK_CONFIG);
    let (mut s, local) = tcp_client(&server);
    let two = format!(
        "{}{}",
        options("TCP", local, server.tcp, "c1"),
        options("TCP", local, server.tcp, "c2")
    );
    s.write_all(two.as_bytes()).expect("write");
    let r = read_responses(&mut s, 2);
    assert!(
        r.contains("Call-ID: c1@test") && r.contains("Call-ID: c2@test"),
        "{r}"
    );

    // One message in three pieces, with a pause between them.
    let m = options("TCP", local, server.tcp, "c3");
    let (a, rest) = m.split_at(10);
    let (b, c) = rest.split_at(rest.len() - 5);
    for part in [a, b, c] {
        s.write_all(part.as_bytes()).expect("write");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = read_responses(&mut s, 1);
    assert!(
        r.starts_with("SIP/2.0 200 OK") && r.contains("Call-ID: c3@test"),
        "{r}"
    );
}

#[test]
fn tcp_double_crlf_ping_gets_crlf_pong() {
    let server = Server::start(LOOPBACK_CONFIG);
    let (mut s, local) = tcp_client(&server);
    s.write_all(b"\r\n\r\n").expect("ping");
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).expect("pong");
    assert_eq!(&pong, b"\r\n");
    // The connection still carries SIP afterwards.
    s.write_all(options("TCP", local, server.tcp, "d1").as_bytes())
        .expect("write");
    let r = read_responses(&mut s, 1);
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
}

#[test]
fn tcp_missing_content_length_closes_connection() {
    let server = Server::start(LOOPBACK_CONFIG);
    let (mut s, local) = tcp_client(&server);
    let bad = options("TCP", local, server.tcp, "e1").replace("Content-Length: 0\r\n", "");
    s.write_all(bad.as_bytes()).expect("write");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!(
            "expected close, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected close, got {e}"),
    }
    // Others are unaffected.
    let (mut s2, local2) = tcp_client(&server);
    s2.write_all(options("TCP", local2, server.tcp, "e2").as_bytes())
        .expect("write");
    assert!(read_responses(&mut s2, 1).starts_with("SIP/2.0 200 OK"));
    assert!(server.wait_log("closing TCP connection", Duration::from_secs(5)));
}
