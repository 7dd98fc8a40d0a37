//! WebSocket listener tests on loopback with a tokio-tungstenite client:
//! the upgrade rule, one SIP message per WebSocket message both ways,
//! keep-alives, and every limit (stalled upgrade, oversize and slow
//! messages, idle, per-IP cap) closing the connection without harm.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::super::{
    ConnId, Outbound, ShutdownController, TransportEvent, TransportLimits, Transports,
};
use crate::config::{Config, ConfigSource};
use crate::sip::Transport;

const T: Duration = Duration::from_secs(5);

const MSG: &str = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\n\r\n";

struct Rig {
    t: Transports,
    rx: mpsc::Receiver<TransportEvent>,
    _ctl: ShutdownController,
    addr: std::net::SocketAddr,
}

async fn start(limits: TransportLimits) -> Rig {
    let cfg = Config::parse(
        "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n[[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:0\"\n",
        ConfigSource::Embedded,
    )
    .unwrap();
    let ctl = ShutdownController::new();
    let (tx, rx) = mpsc::channel(64);
    let t = Transports::start(&cfg, limits, tx, &ctl).await.unwrap();
    let addr = t.ws_addrs()[0];
    Rig {
        t,
        rx,
        _ctl: ctl,
        addr,
    }
}

async fn next_event(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    timeout(T, rx.recv()).await.unwrap().unwrap()
}

/// Connects and upgrades offering `protocols`.
async fn client(
    addr: std::net::SocketAddr,
    protocols: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, tcp)
        .await
        .map(|(ws, _)| ws)
}

/// Reads until the server closes: the close code it sent, if any.
async fn closed_with(ws: &mut WebSocketStream<TcpStream>) -> Option<CloseCode> {
    let mut code = None;
    while let Ok(Some(m)) = timeout(T, ws.next()).await {
        match m {
            Ok(Message::Close(Some(f))) => code = Some(f.code),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    code
}

#[tokio::test]
async fn one_sip_message_per_websocket_message_both_ways() {
    let mut r = start(TransportLimits::default()).await;
    let mut ws = client(r.addr, Some("foo, SIP")).await.unwrap();
    ws.send(Message::text(MSG)).await.unwrap();
    ws.send(Message::binary(MSG.as_bytes().to_vec()))
        .await
        .unwrap();
    let mut conn = None;
    for _ in 0..2 {
        let TransportEvent::Inbound(inb) = next_event(&mut r.rx).await else {
            panic!("expected inbound")
        };
        assert_eq!(inb.transport, Transport::Ws);
        assert_eq!(&inb.bytes[..], MSG.as_bytes());
        assert!(inb.conn.is_some());
        conn = inb.conn;
        // A response by the client's address and one by its connection.
        r.t.send(Outbound {
            bytes: inb.bytes.clone(),
            dest: inb.peer,
            transport: Transport::Ws,
            conn: None,
        });
    }
    r.t.send(Outbound {
        bytes: bytes::Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"),
        dest: "192.0.2.1:9".parse().unwrap(),
        transport: Transport::Ws,
        conn,
    });
    for want in [MSG, MSG, "SIP/2.0 200 OK\r\n\r\n"] {
        let m = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(m, Message::text(want));
    }
    let s = r.t.stats();
    assert_eq!(s.ws_upgrades_accepted.load(Ordering::Relaxed), 1);
    assert_eq!(s.ws_received.load(Ordering::Relaxed), 2);
    assert_eq!(s.ws_sent.load(Ordering::Relaxed), 3);
    // The client closes: the core hears of it (its bindings go).
    ws.close(None).await.unwrap();
    let TransportEvent::Closed { conn: c, .. } = next_event(&mut r.rx).await else {
        panic!("expected closed")
    };
    assert_eq!(Some(c), conn);
    assert_eq!(r.t.tcp_connections(), 0);
}

#[tokio::test]
async fn upgrade_without_the_sip_subprotocol_is_refused_400() {
    let r = start(TransportLimits::default()).await;
    for offer in [None, Some("chat, superchat")] {
        match client(r.addr, offer).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 400);
                let body =
                    String::from_utf8_lossy(resp.body().as_deref().unwrap_or(b"")).into_owned();
                assert!(body.contains("RFC 7118"), "{body}");
            }
            other => panic!("expected a 400 refusal, got {other:?}"),
        }
    }
    // A plain HTTP request (no upgrade) is refused too.
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = timeout(T, s.read_to_end(&mut rest)).await.unwrap();
    let s = r.t.stats();
    assert_eq!(s.ws_upgrades_refused.load(Ordering::Relaxed), 3);
    assert_eq!(s.ws_upgrades_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(r.t.tcp_connections(), 0);
}

#[tokio::test]
async fn stalled_upgrade_is_closed_at_its_deadline() {
    let limits = TransportLimits {
        tcp_message_deadline: Duration::from_millis(300),
        ..TransportLimits::default()
    };
    let r = start(limits).await;
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    timeout(T, s.read_to_end(&mut rest)).await.unwrap().ok();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(r.t.stats().ws_upgrades_refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn oversize_message_closes_the_connection_with_1009() {
    let limits = TransportLimits {
        max_message: 2000,
        ..TransportLimits::default()
    };
    let mut r = start(limits).await;
    let mut ws = client(r.addr, Some("sip")).await.unwrap();
    let big = "x".repeat(3000);
    let _ = ws.send(Message::text(big)).await;
    assert_eq!(closed_with(&mut ws).await, Some(CloseCode::Size));
    assert!(matches!(
        next_event(&mut r.rx).await,
        TransportEvent::Closed { .. }
    ));
    assert_eq!(r.t.stats().ws_protocol_errors.load(Ordering::Relaxed), 1);
    // Sending larger than the limit is refused before any queue.
    r.t.send(Outbound {
        bytes: bytes::Bytes::from(vec![b'x'; 3000]),
        dest: "127.0.0.1:9".parse().unwrap(),
        transport: Transport::Ws,
        conn: None,
    });
    assert!(matches!(
        next_event(&mut r.rx).await,
        TransportEvent::SendFailed {
            error: std::io::ErrorKind::InvalidInput,
            ..
        }
    ));
}

#[tokio::test]
async fn message_trickled_slower_than_the_deadline_is_closed() {
    let limits = TransportLimits {
        tcp_message_deadline: Duration::from_millis(300),
        tcp_idle_timeout: Duration::from_secs(30),
        ..TransportLimits::default()
    };
    let mut r = start(limits).await;
    let ws = client(r.addr, Some("sip")).await.unwrap();
    let mut s = ws.into_inner();
    // A masked text frame announcing 100 bytes, then a byte every 100 ms.
    s.write_all(&[0x81, 0x80 | 100, 1, 2, 3, 4]).await.unwrap();
    let started = std::time::Instant::now();
    let mut ended = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"a").await.is_err() {
            ended = true;
            break;
        }
        if let Ok(Some(TransportEvent::Closed { .. })) =
            timeout(Duration::from_millis(1), r.rx.recv()).await
        {
            ended = true;
            break;
        }
    }
    assert!(ended, "still open after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.t.stats().ws_protocol_errors.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn silent_connection_is_pinged_then_closed_when_idle() {
    let limits = TransportLimits {
        tcp_idle_timeout: Duration::from_millis(600),
        ..TransportLimits::default()
    };
    let mut r = start(limits).await;
    let mut ws = client(r.addr, Some("sip")).await.unwrap();
    // Half the idle time in: a Ping (RFC 6455 §5.5.2).
    let m = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert!(matches!(m, Message::Ping(_)), "{m:?}");
    // The client reads no further (so never pongs): closed as idle.
    let started = std::time::Instant::now();
    assert!(matches!(
        next_event(&mut r.rx).await,
        TransportEvent::Closed { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn double_crlf_is_a_keepalive_answered_with_crlf() {
    let mut r = start(TransportLimits::default()).await;
    let mut ws = client(r.addr, Some("sip")).await.unwrap();
    ws.send(Message::text("\r\n\r\n")).await.unwrap();
    let m = timeout(T, ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(m, Message::text("\r\n"));
    assert_eq!(r.t.stats().keepalive_pongs.load(Ordering::Relaxed), 1);
    assert!(timeout(Duration::from_millis(100), r.rx.recv())
        .await
        .is_err());
}

#[tokio::test]
async fn sending_to_a_websocket_client_without_its_connection_fails() {
    let mut r = start(TransportLimits::default()).await;
    let gone = ConnId(999);
    for conn in [None, Some(gone)] {
        r.t.send(Outbound {
            bytes: bytes::Bytes::from_static(MSG.as_bytes()),
            dest: "127.0.0.1:9".parse().unwrap(),
            transport: Transport::Ws,
            conn,
        });
        assert!(matches!(
            next_event(&mut r.rx).await,
            TransportEvent::SendFailed {
                error: std::io::ErrorKind::NotConnected,
                ..
            }
        ));
    }
    assert_eq!(r.t.tcp_connections(), 0);
}

#[tokio::test]
async fn per_ip_cap_counts_websocket_connections() {
    let limits = TransportLimits {
        max_tcp_per_ip: 1,
        ..TransportLimits::default()
    };
    let r = start(limits).await;
    let _first = client(r.addr, Some("sip")).await.unwrap();
    assert!(client(r.addr, Some("sip")).await.is_err());
    assert_eq!(r.t.stats().tcp_refused_per_ip.load(Ordering::Relaxed), 1);
}

#[test]
fn upgrade_check_reads_every_offer_without_case() {
    use tokio_tungstenite::tungstenite::handshake::server::Request;
    let req = |vals: &[&str]| {
        let mut b = Request::builder().uri("/");
        for v in vals {
            b = b.header("Sec-WebSocket-Protocol", *v);
        }
        b.body(()).unwrap()
    };
    assert_eq!(super::check_upgrade(&req(&["sip"])).unwrap(), "sip");
    assert_eq!(
        super::check_upgrade(&req(&["chat", " SIP "])).unwrap(),
        "SIP"
    );
    assert_eq!(super::check_upgrade(&req(&["chat,sip"])).unwrap(), "sip");
    assert!(super::check_upgrade(&req(&[])).is_err());
    assert!(super::check_upgrade(&req(&["sips", "sip2"])).is_err());
}

#[test]
fn text_when_utf8_binary_otherwise() {
    let m = super::message(bytes::Bytes::from_static(MSG.as_bytes()));
    assert!(matches!(m, Message::Text(_)));
    let m = super::message(bytes::Bytes::from_static(b"INVITE \xff\xfe"));
    assert!(matches!(m, Message::Binary(_)));
}

/// A client frame (masked with a zero key, so the payload reads as is).
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Protocol: sip\r\n\r\n";

#[test]
fn replay_splits_messages_and_stops_at_the_limit() {
    use super::{replay, Incoming};
    let mut input = UPGRADE.as_bytes().to_vec();
    input.extend(frame(1, MSG.as_bytes()));
    input.extend(frame(1, b"\r\n\r\n"));
    input.extend(frame(9, b"ping"));
    input.extend(frame(2, MSG.as_bytes()));
    input.extend(frame(1, &vec![b'x'; 3000]));
    input.extend(frame(1, MSG.as_bytes()));
    let r = replay(&input, 2000);
    assert!(r.upgraded && r.refused.is_none(), "{r:?}");
    let sip = || Incoming::Sip(bytes::Bytes::from_static(MSG.as_bytes()));
    assert_eq!(
        r.incoming,
        [sip(), Incoming::KeepAlive, Incoming::Nothing, sip()],
        "{r:?}"
    );
    assert!(r.end.contains("Space limit exceeded"), "{}", r.end);

    // Without `sip` the upgrade is refused and nothing is read.
    let plain = UPGRADE.replace("Sec-WebSocket-Protocol: sip\r\n", "");
    let mut input = plain.into_bytes();
    input.extend(frame(1, MSG.as_bytes()));
    let r = replay(&input, 2000);
    assert!(!r.upgraded && r.incoming.is_empty(), "{r:?}");
    assert_eq!(r.refused, Some(super::Refusal::NoSipSubprotocol));

    // Truncated and garbage input end cleanly.
    for cut in 0..UPGRADE.len() {
        assert!(!replay(&UPGRADE.as_bytes()[..cut], 2000).upgraded);
    }
    assert!(!replay(b"\x00\xff garbage", 2000).upgraded);
}
