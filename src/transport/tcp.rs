//! TCP: listeners with an accept loop capped by a semaphore, one task per
//! connection that frames the byte stream (RFC 3261 §18.3, check-then-parse
//! via `sip::framing::check`) and writes what the core queues for it, and
//! outbound connections opened on demand when the core sends to an address
//! with no connection (RFC 3261 §18.1.1).
//!
//! Keep-alives (RFC 5626 §3.5.1): leading CR/LF bytes are skipped; each
//! double-CRLF "ping" is answered with one CRLF "pong".

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::conn::ConnEntry;
use super::write_queue::{write_queue, Pushed, WriteRx};
use super::ConnId;
use super::{Inbound, Outbound, Shared, ShutdownHandle, TransportEvent, TransportStats};
use crate::sip::framing::{self, Frame, FrameError};
use crate::sip::Transport;

/// How long one write may take before the connection is considered dead.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages handled per connection per wake before yielding to other tasks.
const FRAMES_PER_WAKE: usize = 64;

/// Binds a listening socket (SO_REUSEADDR, backlog 1024).
///
/// # Errors
/// The address cannot be bound.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// A stream connection that is in the table and holds its permit: what the
/// per-connection task of a stream transport (TCP framing here, WebSocket in
/// `ws.rs`) runs on. Dropping it (with the task) frees the permit.
pub(super) struct StreamConn {
    /// Remote address.
    pub(super) peer: SocketAddr,
    /// Our address of the connection.
    pub(super) local: SocketAddr,
    /// Its id in the table.
    pub(super) id: ConnId,
    /// What the core queues for it.
    pub(super) rx: WriteRx,
    pub(super) shared: Arc<Shared>,
    pub(super) handle: ShutdownHandle,
    pub(super) permit: OwnedSemaphorePermit,
}

/// Accepts connections until shutdown and runs `serve` on each, as a task of
/// its own. A connection needs a permit from the shared semaphore first, so
/// at the limit new connections wait in the kernel backlog instead of
/// exhausting file descriptors; one from an IP that already has
/// `max_tcp_per_ip` open connections (any stream transport) is closed at
/// once. `transport` is what the connection speaks once `serve` runs it.
pub(super) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    local: SocketAddr,
    transport: Transport,
    shared: Arc<Shared>,
    handle: ShutdownHandle,
    serve: F,
) where
    F: Fn(TcpStream, StreamConn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = handle.subscribe();
    let mut backoff = Duration::from_millis(1);
    while !shutdown.is_shutdown() {
        let permit = tokio::select! {
            p = shared.tcp_permits.clone().acquire_owned() => p,
            _ = shutdown.recv() => break,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.recv() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                TransportStats::inc(&shared.stats.tcp_accepted);
                let _ = stream.set_nodelay(true);
                let id = shared.conns.next_id();
                let (tx, rx) = write_queue(shared.limits.tcp_write_queue_bytes);
                let max = shared.limits.max_tcp_per_ip;
                let entry = ConnEntry {
                    id,
                    peer,
                    transport,
                    tx,
                };
                if !shared.conns.insert_within(entry, max) {
                    TransportStats::inc(&shared.stats.tcp_refused_per_ip);
                    tracing::debug!(%peer, %transport, "connection refused: {max} already open from this IP");
                    drop(stream);
                    continue;
                }
                tracing::debug!(%peer, %local, %id, %transport, "connection accepted");
                tokio::spawn(serve(
                    stream,
                    StreamConn {
                        peer,
                        local,
                        id,
                        rx,
                        shared: shared.clone(),
                        handle: handle.clone(),
                        permit,
                    },
                ));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning (mini-redis).
                tracing::warn!(%local, "accept failed: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.recv() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Queues `out` on a TCP connection: the one named, else the one to `dest`,
/// else a new outbound connection. Never waits.
pub(super) fn send(shared: &Arc<Shared>, out: Outbound, handle: &ShutdownHandle) {
    let Outbound {
        bytes, dest, conn, ..
    } = out;
    let fail = |conn, kind| shared.send_failed(dest, Transport::Tcp, conn, kind);
    if bytes.len() > shared.limits.max_message {
        return fail(conn, io::ErrorKind::InvalidInput);
    }
    // RFC 3261 §18.2.2: use the request's connection; if it has gone, open
    // a new one to the same address.
    let named = conn
        .and_then(|id| shared.conns.get(id))
        .filter(|e| e.transport == Transport::Tcp);
    let entry = match named {
        Some(e) => e,
        // A keep-alive (only CR/LF) is for that connection alone (RFC 5626
        // §3.5.1): once it is gone, opening another would keep nothing alive.
        None if conn.is_some() && bytes.iter().all(|&b| b == b'\r' || b == b'\n') => {
            return fail(conn, io::ErrorKind::NotConnected);
        }
        None => {
            let mut new_rx = None;
            let (entry, new) = shared.conns.get_or_insert_with(dest, Transport::Tcp, |id| {
                let (tx, rx) = write_queue(shared.limits.tcp_write_queue_bytes);
                new_rx = Some(rx);
                ConnEntry {
                    id,
                    peer: dest,
                    transport: Transport::Tcp,
                    tx,
                }
            });
            if new {
                let (Some(rx), Ok(permit)) =
                    (new_rx, shared.tcp_permits.clone().try_acquire_owned())
                else {
                    shared.conns.remove(entry.id);
                    tracing::warn!(%dest, "TCP connection limit reached; not connecting");
                    return fail(Some(entry.id), io::ErrorKind::Other);
                };
                tokio::spawn(connect(
                    dest,
                    entry.id,
                    rx,
                    shared.clone(),
                    handle.clone(),
                    permit,
                ));
            }
            entry
        }
    };
    match entry.tx.push(bytes) {
        Pushed::Queued => TransportStats::inc(&shared.stats.tcp_sent),
        Pushed::Behind => {
            TransportStats::inc(&shared.stats.tcp_sent);
            TransportStats::inc(&shared.stats.tcp_write_queued);
        }
        // `tcp_write_queue_bytes` unwritten: the peer stopped reading.
        Pushed::Full => {
            TransportStats::inc(&shared.stats.tcp_write_queue_full);
            fail(Some(entry.id), io::ErrorKind::WouldBlock)
        }
        Pushed::Closed => fail(Some(entry.id), io::ErrorKind::BrokenPipe),
    }
}

/// Opens an outbound connection, then runs it like an accepted one. On
/// failure every queued message is reported as failed.
async fn connect(
    dest: SocketAddr,
    id: ConnId,
    mut rx: WriteRx,
    shared: Arc<Shared>,
    handle: ShutdownHandle,
    permit: OwnedSemaphorePermit,
) {
    let timeout = shared.limits.tcp_connect_timeout;
    let err = match tokio::time::timeout(timeout, TcpStream::connect(dest)).await {
        Ok(Ok(stream)) => {
            TransportStats::inc(&shared.stats.tcp_connected);
            let _ = stream.set_nodelay(true);
            match stream.local_addr() {
                Ok(local) => {
                    tracing::debug!(%dest, %local, %id, "TCP connection opened");
                    let conn = StreamConn {
                        peer: dest,
                        local,
                        id,
                        rx,
                        shared,
                        handle,
                        permit,
                    };
                    return run(stream, conn).await;
                }
                Err(e) => e.kind(),
            }
        }
        Ok(Err(e)) => e.kind(),
        Err(_) => io::ErrorKind::TimedOut,
    };
    tracing::debug!(%dest, %id, ?err, "TCP connect failed");
    shared.conns.remove(id);
    rx.close();
    while let Some(b) = rx.recv().await {
        rx.written(b.len());
        shared.send_failed(dest, Transport::Tcp, Some(id), err);
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Idle,
    Shutdown,
    Framing(&'static str),
    Io(io::ErrorKind),
}

/// One connection: read and frame, write what is queued, until the peer
/// closes, it idles out, a framing/IO error, or shutdown.
pub(super) async fn run(stream: TcpStream, conn: StreamConn) {
    let StreamConn {
        peer,
        local,
        id,
        mut rx,
        shared,
        handle,
        permit: _permit,
    } = conn;
    let mut shutdown = handle.subscribe();
    let (mut rd, mut wr) = stream.into_split();
    let limits = &shared.limits;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut batch = BytesMut::new();
    let mut crlf_run = 0usize;
    let mut deadline = Instant::now() + limits.tcp_idle_timeout;
    // When the message now in `buf` must be complete (None: no partial one).
    let mut partial_until: Option<Instant> = None;
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);

    let end = 'conn: loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break 'conn End::PeerClosed,
                Ok(_) => deadline = Instant::now() + limits.tcp_idle_timeout,
                Err(e) => break 'conn End::Io(e.kind()),
            },
            msg = rx.recv() => {
                // `None` cannot happen while we are in the table holding a sender clone
                // there; treat it as a close all the same.
                let Some(first) = msg else { break 'conn End::Shutdown };
                // Whatever else the core queued meanwhile goes in the same write.
                let (bytes, _) = rx.gather(first, &mut batch);
                let result = write(&mut wr, &bytes).await;
                rx.written(bytes.len());
                if let Err(kind) = result {
                    shared.send_failed(peer, Transport::Tcp, Some(id), kind);
                    break 'conn End::Io(kind);
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => break 'conn End::Idle,
            _ = tokio::time::sleep_until(partial_until.unwrap_or(far)), if partial_until.is_some() => {
                break 'conn End::Framing("message not completed in time (slow sender)")
            }
            _ = shutdown.recv() => break 'conn End::Shutdown,
        }
        // Frame what we have: check, then split off exactly one message.
        let mut budget = FRAMES_PER_WAKE;
        loop {
            match framing::check(&buf, limits.max_message) {
                Ok(Frame::KeepAlive(n)) => {
                    buf.advance(n.min(buf.len()));
                    crlf_run += n;
                    if crlf_run >= 4 {
                        // RFC 5626 §4.4.1: CRLFCRLF ping → CRLF pong.
                        crlf_run = 0;
                        TransportStats::inc(&shared.stats.keepalive_pongs);
                        if let Err(kind) = write(&mut wr, b"\r\n").await {
                            break 'conn End::Io(kind);
                        }
                    }
                }
                Ok(Frame::Message(len)) => {
                    crlf_run = 0;
                    partial_until = None;
                    let bytes = buf.split_to(len.min(buf.len())).freeze();
                    TransportStats::inc(&shared.stats.tcp_received);
                    let ev = TransportEvent::Inbound(Inbound {
                        bytes,
                        peer,
                        local,
                        transport: Transport::Tcp,
                        conn: Some(id),
                        received: Instant::now().into_std(),
                    });
                    // Backpressure: a slow core slows this peer's reads (TCP
                    // flow control does the rest), but shutdown still wins.
                    tokio::select! {
                        r = shared.events.send(ev) => if r.is_err() { break 'conn End::Shutdown },
                        _ = shutdown.recv() => break 'conn End::Shutdown,
                    }
                    budget -= 1;
                    if budget == 0 {
                        tokio::task::yield_now().await;
                        budget = FRAMES_PER_WAKE;
                    }
                }
                Err(FrameError::Incomplete) => {
                    if buf.is_empty() {
                        partial_until = None;
                    } else if partial_until.is_none() {
                        partial_until = Some(Instant::now() + limits.tcp_message_deadline);
                    }
                    break;
                }
                Err(FrameError::TooLarge) => break 'conn End::Framing("message too large"),
                Err(FrameError::Invalid(why)) => break 'conn End::Framing(why),
            }
        }
    };

    shared.conns.remove(id);
    match end {
        End::Framing(why) => {
            TransportStats::inc(&shared.stats.tcp_framing_errors);
            tracing::info!(%peer, %id, "closing TCP connection: {why}");
        }
        End::Io(kind) => tracing::debug!(%peer, %id, ?kind, "TCP connection closed on I/O error"),
        other => tracing::debug!(%peer, %id, reason = ?other, "TCP connection closed"),
    }
    // Anything still queued cannot be delivered on this connection.
    rx.close();
    while let Some(b) = rx.try_recv() {
        rx.written(b.len());
        shared.send_failed(peer, Transport::Tcp, Some(id), io::ErrorKind::BrokenPipe);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    shared.report(TransportEvent::Closed { conn: id, peer });
}

async fn write(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    bytes: &[u8],
) -> Result<(), io::ErrorKind> {
    match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.kind()),
        Err(_) => Err(io::ErrorKind::TimedOut),
    }
}
