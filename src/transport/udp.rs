//! UDP listeners: one or more SO_REUSEPORT sockets per address, each drained
//! by its own receive task (the kernel spreads datagrams across them by
//! source address), with a large SO_RCVBUF to ride out bursts.
//!
//! A datagram is one SIP message (RFC 3261 §18.3 applies to streams only).
//! Datagrams of only CR/LF (keep-alives) are ignored; oversize ones are
//! dropped and counted. Received bytes are split off one growing `BytesMut`,
//! so a message costs no copy and no allocation of its own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{Inbound, Shared, Shutdown, TransportEvent, TransportLimits, TransportStats};
use crate::sip::Transport;

fn socket(
    addr: SocketAddr,
    limits: &TransportLimits,
    reuse_port: bool,
) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // No SO_REUSEADDR: on Linux it lets a second process bind the same UDP
    // address silently.
    #[cfg(unix)]
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps them at net.core.rmem_max / wmem_max
    // (what it granted is logged by `bind`).
    if let Err(e) = s.set_recv_buffer_size(limits.udp_recv_buffer) {
        tracing::debug!(%addr, "SO_RCVBUF not set: {e}");
    }
    if let Err(e) = s.set_send_buffer_size(limits.udp_send_buffer) {
        tracing::debug!(%addr, "SO_SNDBUF not set: {e}");
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Bound UDP sockets for one listen address.
pub(super) struct Bound {
    /// The receive sockets (SO_REUSEPORT siblings).
    pub(super) receivers: Vec<UdpSocket>,
    /// A duplicate of the first socket's descriptor, non-blocking, used for
    /// sending (`udp_send::UdpSender`): a plain `sendto` with no readiness
    /// bookkeeping, so `Transports::send` stays synchronous and never waits.
    pub(super) sender: std::net::UdpSocket,
    /// The bound address (real port when the config said 0).
    pub(super) local: SocketAddr,
}

/// Binds `limits.udp_receivers` sockets to `addr` (SO_REUSEPORT), or one if
/// that is not possible. With port 0, the others bind the port the first got.
///
/// # Errors
/// The first socket cannot be bound.
pub(super) fn bind(addr: SocketAddr, limits: &TransportLimits) -> io::Result<Bound> {
    let n = limits.udp_receivers.max(1);
    if n > 1 && addr.port() != 0 {
        // SO_REUSEPORT would let us share the port with another process that
        // also set it (a second sipfront): probe with a plain socket first so
        // that case fails with "address in use" like any other.
        drop(socket(addr, limits, false)?);
    }
    let first = socket(addr, limits, n > 1)?;
    let local = first.local_addr()?;
    log_buffers(&first, local, limits);
    let sender = first.try_clone()?;
    let bound = local;
    let mut sockets = vec![UdpSocket::from_std(first)?];
    for _ in 1..n {
        match socket(bound, limits, true).and_then(UdpSocket::from_std) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                tracing::debug!(%bound, "extra SO_REUSEPORT socket not bound: {e}");
                break;
            }
        }
    }
    Ok(Bound {
        receivers: sockets,
        sender,
        local,
    })
}

/// Logs the socket buffer sizes the kernel granted (Linux reports twice
/// the requested size, its bookkeeping overhead included); a warning when
/// it capped the request, naming the sysctl to raise.
fn log_buffers(s: &std::net::UdpSocket, local: SocketAddr, limits: &TransportLimits) {
    let s = socket2::SockRef::from(s);
    let (rcv, snd) = (s.recv_buffer_size(), s.send_buffer_size());
    let (Ok(rcv), Ok(snd)) = (rcv, snd) else {
        return;
    };
    tracing::info!(%local, so_rcvbuf = rcv, so_sndbuf = snd, "UDP socket buffers");
    if rcv < limits.udp_recv_buffer {
        tracing::warn!(%local, requested = limits.udp_recv_buffer, granted = rcv,
            "UDP receive buffer capped by the kernel: raise net.core.rmem_max");
    }
    if snd < limits.udp_send_buffer {
        tracing::warn!(%local, requested = limits.udp_send_buffer, granted = snd,
            "UDP send buffer capped by the kernel: raise net.core.wmem_max");
    }
}

fn is_keepalive(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\r' || c == b'\n')
}

/// Receives datagrams until shutdown, handing each to the core.
pub(super) async fn receive_loop(
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) {
    let max = shared.limits.max_message;
    // Room for several messages per allocation; one spare byte detects oversize.
    let chunk = (max + 1) * 4;
    let mut buf = BytesMut::with_capacity(chunk);
    while !shutdown.is_shutdown() {
        if buf.capacity() - buf.len() < max + 1 {
            buf.reserve(chunk);
        }
        let received = tokio::select! {
            r = socket.recv_buf_from(&mut buf) => r,
            _ = shutdown.recv() => break,
        };
        let (n, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP port unreachable from an earlier send shows up here on
                // some platforms; it is not fatal for a listening socket.
                tracing::debug!(%local, "UDP receive error: {e}");
                buf.clear();
                continue;
            }
        };
        let bytes = buf.split().freeze();
        if n > max {
            TransportStats::inc(&shared.stats.dropped_too_large);
            tracing::debug!(%peer, n, "oversize datagram dropped");
            continue;
        }
        if is_keepalive(&bytes) {
            continue;
        }
        TransportStats::inc(&shared.stats.udp_received);
        let ev = TransportEvent::Inbound(Inbound {
            bytes,
            peer,
            local,
            transport: Transport::Udp,
            conn: None,
            // tokio's clock, as main.rs's `now()`: the core compares them.
            received: tokio::time::Instant::now().into_std(),
        });
        // Never block the socket on a slow core: drop and count instead.
        if shared.events.try_send(ev).is_err() {
            TransportStats::inc(&shared.stats.dropped_queue_full);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn address_in_use_is_an_error_despite_reuseport() {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let limits = TransportLimits {
            udp_receivers: 2,
            ..TransportLimits::default()
        };
        let err = bind(addr, &limits).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // Once free, all receivers bind.
        drop(taken);
        let b = bind(addr, &limits).unwrap();
        assert_eq!(b.local, addr);
        assert_eq!(b.receivers.len(), 2);
        // And a second sipfront on the same address is refused.
        assert!(bind(addr, &limits).is_err());
    }
}
