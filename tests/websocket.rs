//! SIP over WebSocket (RFC 7118) against the real binary: hostile input on a
//! `ws` listener is refused or closed within its deadline while sipfront
//! goes on serving, and what an idle WebSocket connection costs in memory.
//! The clients are tokio-tungstenite, written here. (A WebSocket phone's
//! registration and calls: `did_calls.rs`, `ws_client_*`.)

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use common::phone::{ws_request, ws_runtime, WsPhone};
use common::{api_text, wait_until, Server, LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG};

const TRUNK: &str = "[[trunk]]\nid = 1\nname = \"alice\"\npassword = \"pw-alice\"\n";
const WS_LISTEN: &str = "\n[[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:0\"\n";

fn start() -> (Server, SocketAddr) {
    let cfg = format!("{LOOPBACK_CONFIG}{WS_LISTEN}{TEST_API_KEY_CONFIG}\n{TRUNK}");
    let server = Server::start(&cfg);
    let ws = server.ws.expect("ws address in the ready line");
    (server, ws)
}

/// A counter's value on `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let (_, text) = api_text(server, TEST_API_KEY, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// Upgrades without `sip`, with an oversize message, and stalls an upgrade:
/// each is refused or closed (the stalled one within the 10 s upgrade
/// deadline), counted, and logged; nothing panics, and a WebSocket phone
/// registers with digest afterwards.
#[test]
fn hostile_websocket_input_is_refused_and_sipfront_keeps_serving() {
    let (server, ws) = start();
    let rt = ws_runtime();
    let show = |what: &str| format!("{what}\n--- sipfront log ---\n{}", server.log_text());

    // 1. A stalled upgrade: half a request, then silence.
    let mut stalled = rt.block_on(async {
        let mut s = TcpStream::connect(ws).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            .await
            .expect("write");
        s
    });
    let stalled_at = Instant::now();

    // 2. No `sip` subprotocol: 400 with the reason, connection closed.
    for offer in [None, Some("chat")] {
        let r = rt.block_on(async {
            let tcp = TcpStream::connect(ws).await.expect("connect");
            tokio_tungstenite::client_async(ws_request("ws", ws, offer), tcp).await
        });
        match r {
            Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), 400, "{resp:?}"),
            other => panic!(
                "{}",
                show(&format!("expected 400 for {offer:?}, got {other:?}"))
            ),
        }
    }

    // 3. A message larger than the largest SIP message (65,536 bytes):
    // closed with 1009.
    let code = rt.block_on(async {
        let tcp = TcpStream::connect(ws).await.expect("connect");
        let (mut c, _) = tokio_tungstenite::client_async(ws_request("ws", ws, Some("sip")), tcp)
            .await
            .expect("upgrade");
        let _ = c.send(Message::text("x".repeat(70_000))).await;
        let mut code = None;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), c.next()).await {
            match m {
                Ok(Message::Close(Some(f))) => code = Some(f.code),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        code
    });
    assert_eq!(code, Some(CloseCode::Size), "{}", show("oversize message"));

    // The stalled upgrade is closed at its deadline (10 s), not before
    // and not much after.
    let mut rest = Vec::new();
    let read = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), stalled.read_to_end(&mut rest)).await
    });
    let took = stalled_at.elapsed();
    assert!(
        read.is_ok(),
        "{}",
        show("stalled upgrade still open after 15 s")
    );
    assert!(
        took >= Duration::from_secs(9) && took < Duration::from_secs(13),
        "{}",
        show(&format!("stalled upgrade closed after {took:?}"))
    );

    // Counted, logged, no panic; and a phone still registers.
    assert_eq!(metric(&server, "sipfront_ws_upgrades_refused_total"), 3);
    assert_eq!(metric(&server, "sipfront_ws_protocol_errors_total"), 1);
    assert!(server.log_text().contains("no `sip` subprotocol offered"));
    assert!(server
        .log_text()
        .contains("WebSocket upgrade not completed in time"));
    let mut ph = WsPhone::connect_ws(ws).unwrap_or_else(|e| panic!("{}", show(&e)));
    let contact = format!(
        "sip:alice@{};transport=ws",
        common::phone::Pipe::sent_by(&ph.pipe)
    );
    let code = ph.register("alice", "pw-alice", &contact, ws);
    assert_eq!(
        code,
        200,
        "{}\n{}",
        ph.log,
        show("REGISTER after the hostile input")
    );
    assert!(!server.log_text().contains("panicked"), "{}", show("panic"));
}

/// Resident memory of a process, from `/proc/PID/status` (bytes).
fn rss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Memory per idle connection: `N` WebSocket clients (from 10 loopback
/// addresses, under the per-IP cap of 100) upgrade and stay silent; the
/// server's resident memory grows by the figure printed (the same for plain
/// TCP connections, for comparison). Bounded at 64 KiB a connection.
#[test]
fn idle_websocket_connection_memory() {
    const N: usize = 1000;
    let (server, ws) = start();
    let pid = server.pid();
    let rt = ws_runtime();
    // Sources 127.0.0.10-19 for the WebSocket clients, .20 for the
    // warm-up, .30-39 for the TCP ones: the per-IP cap counts both.
    let connect = |dest: SocketAddr, i: usize| {
        let last = match i {
            usize::MAX => 20,
            i if dest == ws => 10 + (i % 10) as u8,
            i => 30 + (i % 10) as u8,
        };
        let src = IpAddr::from([127, 0, 0, last]);
        async move {
            let sock = tokio::net::TcpSocket::new_v4().expect("socket");
            sock.bind(SocketAddr::new(src, 0)).expect("bind");
            sock.connect(dest).await.expect("connect")
        }
    };
    // Warm up (first connection's one-off allocations), then measure.
    let warm = rt.block_on(async {
        let tcp = connect(ws, usize::MAX).await;
        tokio_tungstenite::client_async(ws_request("ws", ws, Some("sip")), tcp)
            .await
            .expect("upgrade")
    });
    std::thread::sleep(Duration::from_millis(300));
    let before = rss(pid);
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let c = rt.block_on(async {
            let tcp = connect(ws, i).await;
            tokio_tungstenite::client_async(ws_request("ws", ws, Some("sip")), tcp)
                .await
                .map(|(c, _)| c)
        });
        clients.push(c.unwrap_or_else(|e| panic!("client {i}: {e}\n{}", server.log_text())));
    }
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &server,
            "sipfront_ws_upgrades_accepted_total"
        ) == N as u64 + 1),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    let per_ws = after.saturating_sub(before) / N as u64;

    // Plain TCP, the same way, for comparison.
    let tcp_before = rss(pid);
    let tcp_clients: Vec<TcpStream> = (0..N)
        .map(|i| rt.block_on(connect(server.tcp, i)))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &server,
            "sipfront_tcp_accepted_total"
        ) == 2 * N as u64 + 1),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(metric(&server, "sipfront_tcp_refused_per_ip_total"), 0);
    let tcp_after = rss(pid);
    let per_tcp = tcp_after.saturating_sub(tcp_before) / N as u64;
    eprintln!(
        "idle connections, sipfront RSS: {N} WebSocket {before} -> {after} bytes \
         ({per_ws} B each); {N} TCP {tcp_before} -> {tcp_after} bytes ({per_tcp} B each)"
    );
    assert!(per_ws < 64 * 1024, "{per_ws} bytes per idle WebSocket");
    drop((warm, clients, tcp_clients));
}

/// A WebSocket phone places a call (RFC 7118 on the A-leg): its INVITE is
/// challenged 407 and answered over its connection, the call reaches the
/// SIPp carrier over UDP, `/v1/calls` shows `ws` → `udp`, and the phone's
/// BYE ends it.
#[test]
fn ws_client_places_a_call_to_a_udp_carrier_and_hangs_up() {
    let carrier_port = common::free_port();
    let cfg = format!(
        "{LOOPBACK_CONFIG}{WS_LISTEN}{TEST_API_KEY_CONFIG}\n[rates]\nfile = \"{}\"\n\n{}\n{TRUNK}",
        common::shipped_rates(),
        common::carrier_upstream(carrier_port),
    );
    let server = Server::start(&cfg);
    let ws = server.ws.expect("ws address in the ready line");
    let _carrier = common::calls::carrier_uas(carrier_port);
    let ph = WsPhone::connect_ws(ws).unwrap_or_else(|e| panic!("{e}"));
    common::calls::phone_places_a_call_to_a_udp_carrier(
        &server,
        ph,
        ws,
        "ws",
        ("alice", "pw-alice"),
    );
}
