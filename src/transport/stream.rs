//! Stream connections, whatever carries the bytes (TCP, TLS over TCP): the
//! accept loop capped by a semaphore and a per-source limit, one task per
//! connection that frames the byte stream (RFC 3261 §18.3, check-then-parse
//! via `sip::framing::check`) and writes what the core queues for it, and
//! outbound connections opened on demand when the core sends to a peer with
//! no connection (RFC 3261 §18.1.1).
//!
//! The seam: [`accept_loop`] hands each accepted TCP socket with its
//! [`Conn`] (id, table entry, write queue, permit) to a serve function;
//! plain TCP runs [`run`] on it at once, TLS first completes a handshake
//! within its deadline. [`send`] opens missing outbound connections with a
//! dial function the same way. [`run`] is generic over
//! `AsyncRead + AsyncWrite`, so every stream transport shares the framing,
//! idle timeout and slowloris deadline.
//!
//! Keep-alives (RFC 5626 §3.5.1): leading CR/LF bytes are skipped; each
//! double-CRLF "ping" is answered with one CRLF "pong".

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::conn::{ConnEntry, PeerKey};
use super::write_queue::{write_queue, Pushed, WriteRx};
use super::ConnId;
use super::{Inbound, Outbound, Shared, ShutdownHandle, TransportEvent, TransportStats};
use crate::sip::framing::{self, Frame, FrameError};
use crate::sip::Transport;

/// How long one write may take before the connection is considered dead.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages handled per connection per wake before yielding to other tasks.
const FRAMES_PER_WAKE: usize = 64;

/// One connection's place in the transport: who it is, its table entry's
/// write queue, its share of the connection limit. Handed to whatever runs
/// the connection; dropping it (after [`Conn::abandon`]) gives everything back.
#[derive(Debug)]
pub(super) struct Conn {
    /// The table key (transport, remote address, TLS name).
    pub(super) peer: PeerKey,
    /// Our address on it.
    pub(super) local: SocketAddr,
    /// Its id.
    pub(super) id: ConnId,
    /// What the core queued for it.
    pub(super) rx: WriteRx,
    /// The transport's shared state.
    pub(super) shared: Arc<Shared>,
    /// To learn about shutdown.
    pub(super) handle: ShutdownHandle,
    /// Held while the connection lives (`max_tcp_connections`).
    pub(super) permit: OwnedSemaphorePermit,
}

impl Conn {
    /// Takes the connection out of the table before it ever ran (failed
    /// connect or handshake): what was queued for it is reported failed
    /// with `err`, and the core hears it closed.
    pub(super) async fn abandon(mut self, err: io::ErrorKind) {
        let Conn {
            ref peer,
            id,
            ref shared,
            ..
        } = self;
        shared.conns.remove(id);
        self.rx.close();
        while let Some(b) = self.rx.recv().await {
            self.rx.written(b.len());
            shared.send_failed(peer.addr, peer.transport, Some(id), err);
        }
        shared.report(TransportEvent::Closed {
            conn: id,
            peer: peer.addr,
        });
    }
}

/// Accepts connections until shutdown and hands each to `serve`. A
/// connection needs a permit from the shared semaphore first, so at the
/// limit new connections wait in the kernel backlog instead of exhausting
/// file descriptors; one IP past `max_tcp_per_ip` is closed at once.
pub(super) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    local: SocketAddr,
    transport: Transport,
    shared: Arc<Shared>,
    handle: ShutdownHandle,
    serve: F,
) where
    F: Fn(TcpStream, Conn) -> Fut,
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
                let key = PeerKey::plain(transport, peer);
                let entry = ConnEntry {
                    id,
                    peer: key.clone(),
                    tx,
                };
                if !shared.conns.insert_within(entry, max) {
                    TransportStats::inc(&shared.stats.tcp_refused_per_ip);
                    tracing::debug!(%peer, "{transport} connection refused: {max} already open from this IP");
                    drop(stream);
                    continue;
                }
                tracing::debug!(%peer, %local, %id, "{transport} connection accepted");
                tokio::spawn(serve(
                    stream,
                    Conn {
                        peer: key,
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

/// Queues `out` on a stream connection: the one named, else the one to
/// `peer`, else a new outbound connection opened by `dial`. Never waits.
pub(super) fn send<F, Fut>(
    shared: &Arc<Shared>,
    out: Outbound,
    peer: PeerKey,
    handle: &ShutdownHandle,
    dial: F,
) where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Outbound { bytes, conn, .. } = out;
    let (dest, transport) = (peer.addr, peer.transport);
    let fail = |conn, kind| shared.send_failed(dest, transport, conn, kind);
    if bytes.len() > shared.limits.max_message {
        return fail(conn, io::ErrorKind::InvalidInput);
    }
    // RFC 3261 §18.2.2: use the request's connection; if it has gone, open
    // a new one to the same address.
    let entry = match conn.and_then(|id| shared.conns.get(id)) {
        Some(e) => e,
        // A keep-alive (only CR/LF) is for that connection alone (RFC 5626
        // §3.5.1): once it is gone, opening another would keep nothing alive.
        None if conn.is_some() && bytes.iter().all(|&b| b == b'\r' || b == b'\n') => {
            return fail(conn, io::ErrorKind::NotConnected);
        }
        None => {
            let mut new_rx = None;
            let (entry, new) = shared.conns.get_or_insert_with(&peer, |id| {
                let (tx, rx) = write_queue(shared.limits.tcp_write_queue_bytes);
                new_rx = Some(rx);
                ConnEntry {
                    id,
                    peer: peer.clone(),
                    tx,
                }
            });
            if new {
                let (Some(rx), Ok(permit)) =
                    (new_rx, shared.tcp_permits.clone().try_acquire_owned())
                else {
                    shared.conns.remove(entry.id);
                    tracing::warn!(%dest, "{transport} connection limit reached; not connecting");
                    return fail(Some(entry.id), io::ErrorKind::Other);
                };
                tokio::spawn(dial(Conn {
                    peer,
                    // Filled in once connected.
                    local: SocketAddr::from(([0, 0, 0, 0], 0)),
                    id: entry.id,
                    rx,
                    shared: shared.clone(),
                    handle: handle.clone(),
                    permit,
                }));
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

/// Opens the TCP connection under an outbound `conn` within the connect
/// timeout. On failure the connection is abandoned (queued messages fail).
pub(super) async fn connect_tcp(mut conn: Conn) -> Option<(TcpStream, Conn)> {
    let dest = conn.peer.addr;
    let timeout = conn.shared.limits.tcp_connect_timeout;
    let err = match tokio::time::timeout(timeout, TcpStream::connect(dest)).await {
        Ok(Ok(stream)) => {
            TransportStats::inc(&conn.shared.stats.tcp_connected);
            let _ = stream.set_nodelay(true);
            match stream.local_addr() {
                Ok(local) => {
                    conn.local = local;
                    tracing::debug!(%dest, %local, id = %conn.id, "TCP connection opened");
                    return Some((stream, conn));
                }
                Err(e) => e.kind(),
            }
        }
        Ok(Err(e)) => e.kind(),
        Err(_) => io::ErrorKind::TimedOut,
    };
    tracing::debug!(%dest, id = %conn.id, ?err, "TCP connect failed");
    conn.abandon(err).await;
    None
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
pub(super) async fn run<S>(mut stream: S, conn: Conn)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Conn {
        peer: key,
        local,
        id,
        mut rx,
        shared,
        handle,
        permit: _permit,
    } = conn;
    let (peer, transport) = (key.addr, key.transport);
    let mut shutdown = handle.subscribe();
    let limits = &shared.limits;
    let mut buf = BytesMut::new();
    let mut batch = BytesMut::new();
    let mut crlf_run = 0usize;
    let mut deadline = Instant::now() + limits.tcp_idle_timeout;
    // When the message now in `buf` must be complete (None: no partial one).
    let mut partial_until: Option<Instant> = None;
    let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);

    let end = 'conn: loop {
        if buf.capacity() - buf.len() < 4096 {
            // An idle connection holds no buffer: it is allocated for the
            // first bytes and given back once everything is framed.
            buf.reserve(if buf.is_empty() { 8 * 1024 } else { 16 * 1024 });
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
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
                let result = write(&mut stream, &bytes).await;
                rx.written(bytes.len());
                if let Err(kind) = result {
                    shared.send_failed(peer, transport, Some(id), kind);
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
                        if let Err(kind) = write(&mut stream, b"\r\n").await {
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
                        transport,
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
                        // Nothing pending: drop the buffer (idle memory).
                        buf = BytesMut::new();
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
            tracing::info!(%peer, %id, "closing {transport} connection: {why}");
        }
        End::Io(kind) => {
            tracing::debug!(%peer, %id, ?kind, "{transport} connection closed on I/O error")
        }
        other => tracing::debug!(%peer, %id, reason = ?other, "{transport} connection closed"),
    }
    // Anything still queued cannot be delivered on this connection.
    rx.close();
    while let Some(b) = rx.try_recv() {
        rx.written(b.len());
        shared.send_failed(peer, transport, Some(id), io::ErrorKind::BrokenPipe);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    shared.report(TransportEvent::Closed { conn: id, peer });
}

async fn write<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> Result<(), io::ErrorKind> {
    let io = async {
        stream.write_all(bytes).await?;
        // TLS buffers records in the session: push them out now.
        stream.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, io).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.kind()),
        Err(_) => Err(io::ErrorKind::TimedOut),
    }
}
