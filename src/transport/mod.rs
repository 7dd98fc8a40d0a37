//! The socket side of the tokio shell: UDP and TCP listeners, stream framing,
//! connection reuse (RFC 3261 §18).
//!
//! Everything received becomes a [`TransportEvent`] on one bounded channel to
//! the core task; everything the core wants sent goes through
//! [`Transports::send`], which never blocks and never panics: a failure comes
//! back as [`TransportEvent::SendFailed`]. No SIP logic lives here beyond
//! finding message boundaries on streams (`sip::framing`, check-then-parse)
//! and answering RFC 5626 CRLF keep-alive pings.
//!
//! Drops are counted in [`TransportStats`], never silent.

mod conn;
mod shutdown;
mod tcp;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::config::{Config, ListenTransport};
use crate::sip::Transport;

pub use conn::ConnId;
pub use shutdown::{Shutdown, ShutdownController, ShutdownHandle};

use conn::ConnTable;

/// A message (datagram or framed stream message) received from the network.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Exactly one SIP message (not yet parsed).
    pub bytes: Bytes,
    /// Where it came from.
    pub peer: SocketAddr,
    /// Our socket it arrived on.
    pub local: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The stream connection, for TCP.
    pub conn: Option<ConnId>,
}

/// A message the core wants sent.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The serialized message.
    pub bytes: Bytes,
    /// Destination address.
    pub dest: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// For TCP: the connection to use (responses go back on the request's
    /// connection). `None`: any connection to `dest`, or a new one.
    pub conn: Option<ConnId>,
}

/// What the transport tells the core.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message arrived.
    Inbound(Inbound),
    /// An [`Outbound`] could not be sent (the transaction layer turns this
    /// into a transport error, RFC 3261 §17.1.4).
    SendFailed {
        /// Intended destination.
        dest: SocketAddr,
        /// Transport used.
        transport: Transport,
        /// Connection, if one was chosen.
        conn: Option<ConnId>,
        /// What went wrong.
        error: io::ErrorKind,
    },
    /// A stream connection ended (peer closed, idle timeout, framing error).
    Closed {
        /// The connection.
        conn: ConnId,
        /// Its remote address.
        peer: SocketAddr,
    },
}

/// Limits of the socket layer. SPEC §2 has no keys for these yet.
#[derive(Debug, Clone)]
pub struct TransportLimits {
    /// Largest SIP message accepted or sent over a stream.
    pub max_message: usize,
    /// Concurrent TCP connections (inbound and outbound); further accepts wait.
    pub max_tcp_connections: usize,
    /// Concurrent inbound TCP connections from one IP; more are closed at
    /// once.
    pub max_tcp_per_ip: usize,
    /// A TCP connection with no bytes received for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// A message begun on a TCP connection must be complete within this
    /// (slowloris: a byte every few seconds never idles out).
    pub tcp_message_deadline: Duration,
    /// Outbound TCP connect timeout.
    pub tcp_connect_timeout: Duration,
    /// Messages queued per TCP connection for writing.
    pub tcp_write_queue: usize,
    /// UDP receive tasks (SO_REUSEPORT sockets) per UDP listen address.
    pub udp_receivers: usize,
    /// Requested SO_RCVBUF for UDP sockets.
    pub udp_recv_buffer: usize,
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_message: crate::sip::MAX_MESSAGE_SIZE,
            max_tcp_connections: 10_000,
            max_tcp_per_ip: 100,
            tcp_idle_timeout: Duration::from_secs(300),
            tcp_message_deadline: Duration::from_secs(10),
            tcp_connect_timeout: Duration::from_secs(5),
            tcp_write_queue: 256,
            udp_receivers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            udp_recv_buffer: 4 << 20,
        }
    }
}

/// Counters of the socket layer (exported by `/metrics` later).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Datagrams received.
    pub udp_received: AtomicU64,
    /// Datagrams sent.
    pub udp_sent: AtomicU64,
    /// Stream messages received.
    pub tcp_received: AtomicU64,
    /// Stream messages queued for sending.
    pub tcp_sent: AtomicU64,
    /// TCP connections accepted.
    pub tcp_accepted: AtomicU64,
    /// TCP connections closed at once: their IP already had the most allowed.
    pub tcp_refused_per_ip: AtomicU64,
    /// TCP connections we opened.
    pub tcp_connected: AtomicU64,
    /// Streams closed for a framing error or an oversize message.
    pub tcp_framing_errors: AtomicU64,
    /// RFC 5626 double-CRLF pings answered.
    pub keepalive_pongs: AtomicU64,
    /// Inbound messages dropped because the core's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Datagrams dropped for being larger than `max_message`.
    pub dropped_too_large: AtomicU64,
    /// Events (send failures, closes) dropped because the queue was full.
    pub dropped_events: AtomicU64,
    /// Sends that failed.
    pub send_errors: AtomicU64,
}

impl TransportStats {
    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn bind_error(transport: &str, addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{transport} {addr}: {e}"))
}

/// State shared by the socket tasks and the [`Transports`] handle.
#[derive(Debug)]
struct Shared {
    events: mpsc::Sender<TransportEvent>,
    stats: Arc<TransportStats>,
    limits: TransportLimits,
    conns: ConnTable,
    /// Limits concurrent TCP connections, inbound and outbound.
    tcp_permits: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    /// Reports an event without waiting; counts it if the queue is full.
    fn report(&self, ev: TransportEvent) {
        if self.events.try_send(ev).is_err() {
            TransportStats::inc(&self.stats.dropped_events);
        }
    }

    fn send_failed(
        &self,
        dest: SocketAddr,
        transport: Transport,
        conn: Option<ConnId>,
        error: io::ErrorKind,
    ) {
        TransportStats::inc(&self.stats.send_errors);
        tracing::debug!(%dest, ?transport, ?conn, ?error, "send failed");
        self.report(TransportEvent::SendFailed {
            dest,
            transport,
            conn,
            error,
        });
    }
}

/// Handle to the running sockets: send messages, read addresses and counters.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Transports {
    shared: Arc<Shared>,
    /// Per UDP listen address: its address and the socket used for sending.
    udp: Arc<Vec<(SocketAddr, std::net::UdpSocket)>>,
    udp_local: Vec<SocketAddr>,
    tcp_local: Vec<SocketAddr>,
    shutdown: ShutdownHandle,
}

impl Transports {
    /// Binds every `[[listen]]` socket of `cfg` and starts its tasks. Inbound
    /// messages and events go to `events`.
    ///
    /// # Errors
    /// A socket cannot be bound (address in use, permission): startup fails.
    pub async fn start(
        cfg: &Config,
        limits: TransportLimits,
        events: mpsc::Sender<TransportEvent>,
        shutdown: &ShutdownController,
    ) -> io::Result<Transports> {
        let shared = Arc::new(Shared {
            events,
            stats: Arc::new(TransportStats::default()),
            tcp_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_tcp_connections)),
            limits,
            conns: ConnTable::default(),
        });
        let mut udp = Vec::new();
        let mut udp_local = Vec::new();
        let mut tcp_local = Vec::new();
        for l in &cfg.listen {
            match l.transport {
                ListenTransport::Udp => {
                    let sockets = udp::bind(l.address, &shared.limits)
                        .map_err(|e| bind_error("udp", l.address, e))?;
                    let local = sockets.local;
                    tracing::info!(%local, receivers = sockets.receivers.len(), "listening on UDP");
                    udp_local.push(local);
                    udp.push((local, sockets.sender));
                    for s in sockets.receivers {
                        let s = Arc::new(s);
                        tokio::spawn(udp::receive_loop(
                            s,
                            local,
                            shared.clone(),
                            shutdown.subscribe(),
                        ));
                    }
                }
                ListenTransport::Tcp => {
                    let listener =
                        tcp::bind(l.address).map_err(|e| bind_error("tcp", l.address, e))?;
                    let local = listener.local_addr()?;
                    tracing::info!(%local, "listening on TCP");
                    tcp_local.push(local);
                    tokio::spawn(tcp::accept_loop(
                        listener,
                        local,
                        shared.clone(),
                        shutdown.handle(),
                    ));
                }
            }
        }
        Ok(Transports {
            shared,
            udp: Arc::new(udp),
            udp_local,
            tcp_local,
            shutdown: shutdown.handle(),
        })
    }

    /// Bound UDP addresses (with the real port when the config said 0).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_local
    }

    /// Bound TCP addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_local
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.shared.stats
    }

    /// Number of open (or opening) TCP connections.
    pub fn tcp_connections(&self) -> usize {
        self.shared.conns.len()
    }

    /// Sends one message without waiting. UDP goes out at once from the first
    /// UDP socket of the destination's address family; TCP is queued on the
    /// given connection, else on any connection to `dest`, else on a new
    /// outbound connection (RFC 3261 §18.1.1/§18.2.2). Failures are reported
    /// as [`TransportEvent::SendFailed`].
    pub fn send(&self, out: Outbound) {
        match out.transport {
            Transport::Udp => self.send_udp(out),
            Transport::Tcp => tcp::send(&self.shared, out, &self.shutdown),
        }
    }

    fn send_udp(&self, out: Outbound) {
        let socket = self
            .udp
            .iter()
            .find(|(a, _)| a.is_ipv4() == out.dest.is_ipv4())
            .or_else(|| self.udp.first());
        let Some((_, socket)) = socket else {
            self.shared.send_failed(
                out.dest,
                Transport::Udp,
                None,
                io::ErrorKind::AddrNotAvailable,
            );
            return;
        };
        match socket.send_to(&out.bytes, out.dest) {
            Ok(_) => TransportStats::inc(&self.shared.stats.udp_sent),
            Err(e) => self
                .shared
                .send_failed(out.dest, Transport::Udp, None, e.kind()),
        }
    }
}

#[cfg(test)]
mod tests;
