//! Overload control through the real binary on loopback: sipfront is
//! stopped (SIGSTOP, every thread) while a caller sends, so its datagrams queue in the
//! socket buffer exactly as under overload; on SIGCONT the kernel's receive
//! stamps show how long they waited. A new INVITE that waited past
//! `overload_queue_ms` gets `503` + `Retry-After` and never reaches the
//! carrier, while a BYE that waited as long ends its call on both legs; a
//! new INVITE past `overload_drop_ms` is dropped unanswered.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::calls::Msg;
use common::{b2bua_config, options, Server};

const WAIT: Duration = Duration::from_secs(10);

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// Receives until a message matches `want` (skipping others) or `WAIT`.
fn recv_until(s: &UdpSocket, what: &str, want: impl Fn(&Msg) -> bool) -> Msg {
    let end = Instant::now() + WAIT;
    let mut buf = vec![0u8; 65_536];
    let mut seen = Vec::new();
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = Msg {
                t: 0.0,
                sent: false,
                text: String::from_utf8_lossy(&buf[..n]).into_owned(),
            };
            if want(&m) {
                return m;
            }
            seen.push(m.first_line().to_owned());
        }
    }
    panic!("no {what} within {WAIT:?}; saw {seen:?}");
}

fn invite(a: SocketAddr, n: u32) -> String {
    format!(
        "INVITE sip:12125551234@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-inv{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{a}>;tag=a{n}\r\n\
         To: <sip:12125551234@127.0.0.1>\r\n\
         Call-ID: overload-{n}@test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{a}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// An in-dialog request of call `n` from A, toward sipfront's To tag.
fn in_dialog(method: &str, a: SocketAddr, n: u32, to_tag: &str, cseq: u32) -> String {
    format!(
        "{method} sip:12125551234@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {a};branch=z9hG4bK-{method}{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{a}>;tag=a{n}\r\n\
         To: <sip:12125551234@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: overload-{n}@test\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The carrier's answer to `req` (an INVITE or BYE sipfront sent it).
fn answer(req: &Msg, status: &str, carrier: SocketAddr) -> String {
    let h = |n: &str| req.header(n).unwrap_or_default().to_owned();
    format!(
        "SIP/2.0 {status}\r\n\
         Via: {}\r\n\
         From: {}\r\n\
         To: {};tag=carrier\r\n\
         Call-ID: {}\r\n\
         CSeq: {}\r\n\
         Contact: <sip:carrier@{carrier}>\r\n\
         Content-Length: 0\r\n\r\n",
        h("Via"),
        h("From"),
        h("To").split(";tag=").next().unwrap_or_default(),
        h("Call-ID"),
        h("CSeq"),
    )
}

fn tag_of(to: &str) -> String {
    to.split(";tag=").nth(1).unwrap_or_default().to_owned()
}

#[test]
fn aged_new_invite_gets_503_an_aged_bye_ends_its_call_and_stale_ones_are_dropped() {
    let (a, carrier) = (socket(), socket());
    let (a_addr, c_addr) = (a.local_addr().unwrap(), carrier.local_addr().unwrap());
    let upstream = format!("sip:127.0.0.1:{};transport=udp", c_addr.port());
    let cfg = format!(
        "{}\n[server]\noverload_queue_ms = 200\noverload_drop_ms = 2000\n",
        b2bua_config(&[(upstream, 1)])
    );
    let server = Server::start(&cfg);
    let send = |text: &str| a.send_to(text.as_bytes(), server.udp).unwrap();

    // Call 1, answered and ACKed.
    send(&invite(a_addr, 1));
    let b_inv = recv_until(&carrier, "B-leg INVITE", |m| m.method() == Some("INVITE"));
    carrier
        .send_to(answer(&b_inv, "200 OK", c_addr).as_bytes(), server.udp)
        .unwrap();
    let ok = recv_until(&a, "200 to A", |m| m.status() == Some(200));
    let tag = tag_of(ok.header("To").unwrap_or_default());
    send(&in_dialog("ACK", a_addr, 1, &tag, 1));
    recv_until(&carrier, "B-leg ACK", |m| m.method() == Some("ACK"));

    // Stopped: a new INVITE (call 2) and call 1's BYE queue 400 ms.
    server.pause();
    send(&invite(a_addr, 2));
    send(&in_dialog("BYE", a_addr, 1, &tag, 2));
    std::thread::sleep(Duration::from_millis(400));
    server.resume();

    let refused = recv_until(&a, "503 to call 2", |m| m.status() == Some(503));
    assert_eq!(refused.call_id(), "overload-2@test");
    assert_eq!(
        refused.header("Retry-After"),
        Some("5"),
        "{}\n{}",
        refused.text,
        server.log_text()
    );
    let bye_ok = recv_until(&a, "200 to the BYE", |m| {
        m.status() == Some(200) && m.cseq_method() == "BYE"
    });
    assert_eq!(bye_ok.call_id(), "overload-1@test");
    let b_bye = recv_until(&carrier, "B-leg BYE", |m| m.method() == Some("BYE"));
    assert_eq!(
        b_bye.call_id(),
        b_inv.call_id(),
        "call 2 never reached the carrier"
    );
    carrier
        .send_to(answer(&b_bye, "200 OK", c_addr).as_bytes(), server.udp)
        .unwrap();
    assert!(server.wait_log("new INVITEs that queued too long are answered 503", WAIT));

    // Stopped past overload_drop_ms: call 3's INVITE is dropped unanswered.
    // An OPTIONS sent after it is answered; nothing for call 3 came first.
    server.pause();
    send(&invite(a_addr, 3));
    std::thread::sleep(Duration::from_millis(2300));
    server.resume();
    send(&options("UDP", a_addr, server.udp, "after-drop"));
    // (Call 2's 503 is retransmitted until ACKed: RFC 3261 §17.2.1.)
    let first = recv_until(&a, "an answer", |m| {
        m.status().is_some() && m.call_id() != "overload-2@test"
    });
    assert_eq!(first.call_id(), "after-drop@test", "{}", first.text);
    assert!(server.wait_log(
        "new requests that queued too long are dropped unanswered",
        WAIT
    ));
}
