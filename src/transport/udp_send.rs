//! UDP sending that rides out a full socket send buffer.
//!
//! `sendto` on a non-blocking socket answers `EWOULDBLOCK` when the send
//! buffer is full, or `ENOBUFS` when the interface queue is: both mean "not
//! now", not "that peer is unreachable" (RFC 3261 §18.4 transport errors are
//! ICMP-like failures). Reporting them as transport errors failed every call
//! in progress to the peer. Instead the datagram joins a bounded queue, in
//! order, that a flush task sends when the socket is writable again. Past the
//! bound a datagram is dropped and counted, which UDP allows: the transaction
//! layer retransmits (RFC 3261 §17.1.1.2, §17.2.1). Errors other than those
//! two stay errors.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use super::{Shared, Shutdown, TransportStats};
use crate::sip::Transport;

/// Linux `ENOBUFS`: the device queue is full (a transient condition that
/// `std::io::ErrorKind` has no name for).
const ENOBUFS: i32 = 105;

/// Whether a send error means "try again later" rather than a failure.
pub(super) fn is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || (cfg!(target_os = "linux") && e.raw_os_error() == Some(ENOBUFS))
}

/// Datagrams waiting for a writable socket, bounded in bytes. Sans-IO: the
/// send function is passed in, so the retry logic is tested without a
/// socket that would block.
#[derive(Debug)]
pub(super) struct RetryQueue {
    items: VecDeque<(Bytes, SocketAddr)>,
    bytes: usize,
    max_bytes: usize,
}

/// What [`RetryQueue::flush`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Flushed {
    /// Datagrams sent.
    pub(super) sent: u64,
    /// Datagrams that failed for good (destination, error).
    pub(super) failed: Vec<(SocketAddr, io::ErrorKind)>,
    /// The socket would block again: wait for writability, then flush.
    pub(super) blocked: bool,
}

impl RetryQueue {
    pub(super) fn new(max_bytes: usize) -> RetryQueue {
        RetryQueue {
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Queues a datagram; `false` (and nothing queued) when it would take
    /// the queue past its bound. An empty queue takes any one datagram, so
    /// a bound smaller than a message cannot stop sending altogether.
    pub(super) fn push(&mut self, bytes: Bytes, dest: SocketAddr) -> bool {
        if !self.items.is_empty() && self.bytes + bytes.len() > self.max_bytes {
            return false;
        }
        self.bytes += bytes.len();
        self.items.push_back((bytes, dest));
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends queued datagrams in order until the queue is empty or `send`
    /// would block. A datagram whose send fails otherwise is dropped and
    /// reported in [`Flushed::failed`].
    pub(super) fn flush(
        &mut self,
        mut send: impl FnMut(&[u8], SocketAddr) -> io::Result<usize>,
    ) -> Flushed {
        let mut done = Flushed::default();
        while let Some((bytes, dest)) = self.items.front() {
            match send(bytes, *dest) {
                Ok(_) => done.sent += 1,
                Err(e) if is_transient(&e) => {
                    done.blocked = true;
                    break;
                }
                Err(e) => done.failed.push((*dest, e.kind())),
            }
            if let Some((b, _)) = self.items.pop_front() {
                self.bytes -= b.len();
            }
        }
        done
    }
}

/// The sending side of one UDP listen address: a plain non-blocking
/// `sendto` while the socket keeps up, the retry queue when it does not.
#[derive(Debug)]
pub(super) struct UdpSender {
    /// A duplicate of the listening socket's descriptor (sync `sendto`, so
    /// `Transports::send` never waits).
    socket: std::net::UdpSocket,
    queue: Mutex<RetryQueue>,
    /// The queue is not empty: new datagrams go behind it, keeping order.
    backlogged: AtomicBool,
    wake: Notify,
}

impl UdpSender {
    pub(super) fn new(socket: std::net::UdpSocket, max_queue_bytes: usize) -> UdpSender {
        UdpSender {
            socket,
            queue: Mutex::new(RetryQueue::new(max_queue_bytes)),
            backlogged: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, RetryQueue> {
        // Each critical section is a push or a flush of whole entries: a
        // panic elsewhere cannot leave the queue half-updated.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends now, or queues when the socket would block. Never waits.
    pub(super) fn send(&self, shared: &Shared, bytes: Bytes, dest: SocketAddr) {
        let stats = &shared.stats;
        if !self.backlogged.load(Ordering::Acquire) {
            match self.socket.send_to(&bytes, dest) {
                Ok(_) => return TransportStats::inc(&stats.udp_sent),
                Err(e) if is_transient(&e) => {}
                Err(e) => return shared.send_failed(dest, Transport::Udp, None, e.kind()),
            }
        }
        let queued = self.queue().push(bytes, dest);
        if queued {
            TransportStats::inc(&stats.udp_send_queued);
            self.backlogged.store(true, Ordering::Release);
            self.wake.notify_one();
        } else {
            TransportStats::inc(&stats.udp_send_queue_dropped);
            let n = stats.udp_send_queue_dropped.load(Ordering::Relaxed);
            // Logged at 1, 2, 4, 8… drops: visible, never a log flood.
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "UDP send queue full: datagrams dropped, retransmissions will resend them"
                );
            }
        }
    }
}

/// Sends what [`UdpSender`] queued whenever the socket becomes writable.
/// `socket` is another handle on the sender's socket, registered with the
/// runtime so its writability can be awaited.
pub(super) async fn flush_loop(
    sender: Arc<UdpSender>,
    socket: tokio::net::UdpSocket,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = sender.wake.notified() => {}
            _ = shutdown.recv() => return,
        }
        loop {
            let done = {
                let mut q = sender.queue();
                let done = q.flush(|b, d| socket.try_send_to(b, d));
                if q.is_empty() {
                    sender.backlogged.store(false, Ordering::Release);
                }
                done
            };
            shared
                .stats
                .udp_sent
                .fetch_add(done.sent, Ordering::Relaxed);
            for (dest, kind) in done.failed {
                shared.send_failed(dest, Transport::Udp, None, kind);
            }
            if !done.blocked {
                break;
            }
            tokio::select! {
                r = socket.writable() => if let Err(e) = r {
                    tracing::warn!("UDP socket not writable: {e}");
                    return;
                },
                _ = shutdown.recv() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest() -> SocketAddr {
        "127.0.0.1:5060".parse().unwrap()
    }

    fn would_block() -> io::Error {
        io::Error::from(io::ErrorKind::WouldBlock)
    }

    #[test]
    fn transient_errors_are_would_block_and_enobufs_only() {
        assert!(is_transient(&would_block()));
        assert!(is_transient(&io::Error::from_raw_os_error(ENOBUFS)));
        assert!(!is_transient(&io::Error::from(
            io::ErrorKind::ConnectionRefused
        )));
        assert!(!is_transient(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }

    #[test]
    fn bounded_in_bytes_but_always_takes_one() {
        let mut q = RetryQueue::new(10);
        // Larger than the bound, but the queue is empty: taken.
        assert!(q.push(Bytes::from_static(&[0; 30]), dest()));
        assert!(!q.push(Bytes::from_static(&[0; 1]), dest()));
        let f = q.flush(|b, _| Ok(b.len()));
        assert_eq!(f.sent, 1);
        assert!(q.is_empty());
        assert!(q.push(Bytes::from_static(&[0; 6]), dest()));
        assert!(q.push(Bytes::from_static(&[0; 4]), dest()));
        assert!(!q.push(Bytes::from_static(&[0; 1]), dest()));
    }

    /// A burst bigger than the socket buffer: the socket takes 3 datagrams
    /// per writable period; every datagram goes out once, in order, and
    /// none is reported as a failure.
    #[test]
    fn would_block_is_retried_in_order_never_failed() {
        let mut q = RetryQueue::new(1 << 20);
        for i in 0..10u8 {
            assert!(q.push(Bytes::copy_from_slice(&[i]), dest()));
        }
        let mut wire = Vec::new();
        let mut rounds = 0;
        loop {
            let mut room = 3;
            let f = q.flush(|b, _| {
                if room == 0 {
                    return Err(would_block());
                }
                room -= 1;
                wire.push(b[0]);
                Ok(b.len())
            });
            assert!(f.failed.is_empty());
            rounds += 1;
            if !f.blocked {
                break;
            }
        }
        assert_eq!(wire, (0..10).collect::<Vec<u8>>());
        assert_eq!(rounds, 4);
        assert!(q.is_empty());
        // The byte count went back to zero: a full bound is free again.
        assert!(q.push(Bytes::from(vec![0; 1 << 20]), dest()));
        assert!(!q.push(Bytes::from_static(&[0]), dest()));
    }

    #[test]
    fn a_genuine_error_fails_that_datagram_and_the_rest_go_on() {
        let mut q = RetryQueue::new(1 << 20);
        for i in 0..3u8 {
            q.push(Bytes::copy_from_slice(&[i]), dest());
        }
        let f = q.flush(|b, _| {
            if b[0] == 1 {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            } else {
                Ok(1)
            }
        });
        assert_eq!(f.sent, 2);
        assert_eq!(f.failed, vec![(dest(), io::ErrorKind::ConnectionRefused)]);
        assert!(!f.blocked);
    }
}
