//! Socket-layer tests on loopback: outbound TCP connect and reuse, inbound
//! messages on that connection, send failures reported as events, UDP both
//! ways, and shutdown completing.

use std::time::Duration;

use bytes::Bytes;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

use super::*;
use crate::config::ConfigSource;
use std::sync::atomic::Ordering;

const T: Duration = Duration::from_secs(5);

const MSG: &str = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

type Started = (
    Transports,
    mpsc::Receiver<TransportEvent>,
    ShutdownController,
);

async fn start() -> Started {
    start_with(TransportLimits::default()).await
}

async fn start_with(limits: TransportLimits) -> Started {
    let cfg = Config::parse(
        "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:0\"\n",
        ConfigSource::Embedded,
    )
    .unwrap();
    let ctl = ShutdownController::new();
    let (tx, rx) = mpsc::channel(64);
    let t = Transports::start(&cfg, limits, tx, &ctl).await.unwrap();
    (t, rx, ctl)
}

async fn next_event(rx: &mut mpsc::Receiver<TransportEvent>) -> TransportEvent {
    timeout(T, rx.recv()).await.unwrap().unwrap()
}

fn out(dest: SocketAddr, transport: Transport, conn: Option<ConnId>) -> Outbound {
    Outbound {
        bytes: Bytes::from_static(MSG.as_bytes()),
        dest,
        transport,
        conn,
    }
}

#[tokio::test]
async fn outbound_tcp_connects_once_and_is_reused_both_ways() {
    let (t, mut rx, ctl) = start().await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();

    t.send(out(dest, Transport::Tcp, None));
    t.send(out(dest, Transport::Tcp, None));
    let (mut s, _) = timeout(T, peer.accept()).await.unwrap().unwrap();
    let mut got = vec![0u8; MSG.len() * 2];
    timeout(T, s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, [MSG.as_bytes(), MSG.as_bytes()].concat());
    assert_eq!(t.tcp_connections(), 1);
    // No second connection was opened.
    assert!(timeout(Duration::from_millis(200), peer.accept())
        .await
        .is_err());

    // The peer sends a request on that connection: it comes in tagged with it.
    s.write_all(MSG.as_bytes()).await.unwrap();
    let TransportEvent::Inbound(inb) = next_event(&mut rx).await else {
        panic!("expected inbound")
    };
    assert_eq!(inb.transport, Transport::Tcp);
    assert_eq!(inb.peer, dest);
    assert_eq!(&inb.bytes[..], MSG.as_bytes());
    let conn = inb.conn.unwrap();

    // A response on that connection id goes back on it.
    t.send(out(dest, Transport::Tcp, Some(conn)));
    let mut one = vec![0u8; MSG.len()];
    timeout(T, s.read_exact(&mut one)).await.unwrap().unwrap();

    // Peer closes: the core hears about it and the table forgets it.
    drop(s);
    loop {
        if let TransportEvent::Closed { conn: c, peer: p } = next_event(&mut rx).await {
            assert_eq!((c, p), (conn, dest));
            break;
        }
    }
    assert_eq!(t.tcp_connections(), 0);

    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

/// A burst to one connection far bigger than the socket buffers (and than
/// the old 256-message queue) while the peer is not reading yet: every
/// message waits and arrives in order, none becomes a send failure.
#[tokio::test]
async fn tcp_burst_waits_instead_of_failing() {
    let (t, mut rx, ctl) = start().await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    const N: usize = 5_000; // ~1 MB
    for _ in 0..N {
        t.send(out(dest, Transport::Tcp, None));
    }
    let (mut s, _) = timeout(T, peer.accept()).await.unwrap().unwrap();
    let mut got = vec![0u8; MSG.len() * N];
    timeout(T, s.read_exact(&mut got)).await.unwrap().unwrap();
    assert!(got.chunks(MSG.len()).all(|m| m == MSG.as_bytes()));
    assert_eq!(t.stats().send_errors.load(Ordering::Relaxed), 0);
    assert_eq!(t.stats().tcp_write_queue_full.load(Ordering::Relaxed), 0);
    assert!(t.stats().tcp_write_queued.load(Ordering::Relaxed) > 0);
    assert!(rx.try_recv().is_err(), "no event expected");
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

/// Past `tcp_write_queue_bytes` unwritten, sends fail and are counted.
#[tokio::test]
async fn tcp_write_queue_is_bounded_in_bytes() {
    let (t, mut rx, ctl) = start_with(TransportLimits {
        tcp_write_queue_bytes: MSG.len() * 3,
        ..TransportLimits::default()
    })
    .await;
    // Nobody accepts: the connect is pending (or refused), nothing is written.
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    for _ in 0..4 {
        t.send(out(dest, Transport::Tcp, None));
    }
    assert_eq!(t.stats().tcp_write_queue_full.load(Ordering::Relaxed), 1);
    let TransportEvent::SendFailed { error, .. } = next_event(&mut rx).await else {
        panic!("expected a send failure")
    };
    assert_eq!(error, io::ErrorKind::WouldBlock);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn failed_connect_is_reported_not_panicked() {
    let (t, mut rx, ctl) = start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    t.send(out(closed, Transport::Tcp, None));
    match next_event(&mut rx).await {
        TransportEvent::SendFailed {
            dest, transport, ..
        } => {
            assert_eq!(dest, closed);
            assert_eq!(transport, Transport::Tcp);
        }
        other => panic!("expected SendFailed, got {other:?}"),
    }
    assert_eq!(t.stats().send_errors.load(Ordering::Relaxed), 1);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn udp_both_ways() {
    let (t, mut rx, ctl) = start().await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    t.send(out(dest, Transport::Udp, None));
    let mut buf = vec![0u8; 2048];
    let (n, from) = timeout(T, peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], MSG.as_bytes());
    assert_eq!(from, t.udp_addrs()[0]);

    peer.send_to(MSG.as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    let TransportEvent::Inbound(inb) = next_event(&mut rx).await else {
        panic!("expected inbound")
    };
    assert_eq!(
        (inb.transport, inb.peer, inb.conn),
        (Transport::Udp, dest, None)
    );
    assert_eq!(inb.local, t.udp_addrs()[0]);

    // Oversize datagram: dropped and counted.
    peer.send_to(&vec![b'x'; 65_507], t.udp_addrs()[0])
        .await
        .ok();
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn oversize_outbound_is_refused() {
    let (t, mut rx, ctl) = start().await;
    let mut o = out("127.0.0.1:9".parse().unwrap(), Transport::Tcp, None);
    o.bytes = Bytes::from(vec![b'x'; crate::sip::MAX_MESSAGE_SIZE + 1]);
    t.send(o);
    assert!(matches!(
        next_event(&mut rx).await,
        TransportEvent::SendFailed {
            error: io::ErrorKind::InvalidInput,
            ..
        }
    ));
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn oversize_datagram_dropped_and_counted() {
    let limits = TransportLimits {
        max_message: 1000,
        ..TransportLimits::default()
    };
    let (t, mut rx, ctl) = start_with(limits).await;
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer.send_to(&[b'x'; 2000], t.udp_addrs()[0]).await.unwrap();
    peer.send_to(MSG.as_bytes(), t.udp_addrs()[0])
        .await
        .unwrap();
    let TransportEvent::Inbound(inb) = next_event(&mut rx).await else {
        panic!("expected inbound")
    };
    assert_eq!(&inb.bytes[..], MSG.as_bytes());
    assert_eq!(t.stats().dropped_too_large.load(Ordering::Relaxed), 1);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn idle_tcp_connection_is_closed_and_reported() {
    let limits = TransportLimits {
        tcp_idle_timeout: Duration::from_millis(200),
        ..TransportLimits::default()
    };
    let (t, mut rx, ctl) = start_with(limits).await;
    let tcp = *t.tcp_addrs().first().unwrap();
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut buf = [0u8; 16];
    // The server closes after the idle timeout: EOF on our side.
    let n = timeout(T, s.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0);
    assert!(matches!(
        next_event(&mut rx).await,
        TransportEvent::Closed { .. }
    ));
    assert_eq!(t.tcp_connections(), 0);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn slow_sender_is_closed_at_the_message_deadline_though_never_idle() {
    let limits = TransportLimits {
        tcp_message_deadline: Duration::from_millis(300),
        ..TransportLimits::default()
    };
    let (t, mut rx, ctl) = start_with(limits).await;
    let tcp = *t.tcp_addrs().first().unwrap();
    let mut s = tokio::net::TcpStream::connect(tcp).await.unwrap();
    // A byte every 50 ms: never idle, never a whole message.
    let started = tokio::time::Instant::now();
    let mut closed = false;
    for b in MSG.as_bytes().iter().take(40) {
        if s.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(Some(TransportEvent::Closed { .. })) =
            timeout(Duration::from_millis(1), rx.recv()).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "slow sender still connected");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1000), "closed after {took:?}");
    assert_eq!(t.stats().tcp_framing_errors.load(Ordering::Relaxed), 1);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn connections_past_the_per_ip_limit_are_closed_at_once() {
    let limits = TransportLimits {
        max_tcp_per_ip: 2,
        ..TransportLimits::default()
    };
    let (t, _rx, ctl) = start_with(limits).await;
    let tcp = *t.tcp_addrs().first().unwrap();
    let _a = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let _b = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut c = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let mut buf = [0u8; 4];
    let n = timeout(T, c.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "third connection closed");
    assert_eq!(t.stats().tcp_refused_per_ip.load(Ordering::Relaxed), 1);
    assert_eq!(t.tcp_connections(), 2);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}

#[tokio::test]
async fn keepalive_to_a_gone_connection_fails_and_opens_no_new_one() {
    let (t, mut rx, ctl) = start().await;
    let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = peer.local_addr().unwrap();
    // A connection id that no longer exists (closed, or from before).
    t.send(Outbound {
        bytes: Bytes::from_static(b"\r\n\r\n"),
        dest,
        transport: Transport::Tcp,
        conn: Some(ConnId(4242)),
    });
    match next_event(&mut rx).await {
        TransportEvent::SendFailed { conn, error, .. } => {
            assert_eq!(
                (conn, error),
                (Some(ConnId(4242)), io::ErrorKind::NotConnected)
            );
        }
        other => panic!("expected SendFailed, got {other:?}"),
    }
    assert!(
        timeout(Duration::from_millis(300), peer.accept())
            .await
            .is_err(),
        "a keep-alive opened a new connection"
    );
    assert_eq!(t.tcp_connections(), 0);
    drop(t);
    timeout(T, ctl.shutdown()).await.unwrap();
}
