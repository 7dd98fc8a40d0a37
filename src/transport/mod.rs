//! The socket side of the tokio shell: UDP, TCP, TLS and WebSocket (RFC
//! 7118) listeners, stream framing, connection reuse (RFC 3261 §18, §26.2).
//!
//! Everything received becomes a [`TransportEvent`] on the bounded channel
//! of the core shard that owns it ([`EventSink`]); everything the core wants sent goes through
//! [`Transports::send`], which never blocks and never panics: a failure comes
//! back as [`TransportEvent::SendFailed`]. No SIP logic lives here beyond
//! finding message boundaries on streams (`sip::framing`, check-then-parse)
//! and answering RFC 5626 CRLF keep-alive pings.
//!
//! Drops are counted in [`TransportStats`], never silent.

mod conn;
mod dispatch;
mod shutdown;
mod stats;
mod stream;
mod tcp;
pub mod tls;
mod udp;
mod udp_send;
mod udp_stamp;
mod write_queue;
pub mod ws;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ListenTransport, TransportSettings};
use crate::sip::Transport;

pub use dispatch::{EventSink, SinkError};
pub use shutdown::{Shutdown, ShutdownController, ShutdownHandle};
pub use sipfront_core::transport::{ConnId, Inbound, Outbound, TransportEvent};
pub use stats::TransportStats;

use conn::ConnTable;

/// Limits of the socket layer; the sizes come from `[transport]`.
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
    /// A TLS handshake (inbound or outbound) must finish within this.
    pub tls_handshake_timeout: Duration,
    /// Bytes queued per TCP connection for writing before further messages
    /// are refused (a peer that stopped reading).
    pub tcp_write_queue_bytes: usize,
    /// UDP receive tasks (SO_REUSEPORT sockets) per UDP listen address.
    pub udp_receivers: usize,
    /// Requested SO_RCVBUF for UDP sockets.
    pub udp_recv_buffer: usize,
    /// Requested SO_SNDBUF for UDP sockets.
    pub udp_send_buffer: usize,
    /// Bytes of datagrams held per UDP socket while its send buffer is full.
    pub udp_send_queue_bytes: usize,
}

impl TransportLimits {
    /// The defaults with the `[transport]` sizes of the config.
    pub fn from_settings(t: &TransportSettings) -> TransportLimits {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        TransportLimits {
            udp_recv_buffer: size(t.udp_recv_buffer),
            udp_send_buffer: size(t.udp_send_buffer),
            udp_send_queue_bytes: size(t.udp_send_queue),
            tcp_write_queue_bytes: size(t.tcp_write_queue),
            tls_handshake_timeout: Duration::from_millis(t.tls_handshake_timeout_ms),
            ..TransportLimits::default()
        }
    }
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
            tls_handshake_timeout: Duration::from_secs(5),
            tcp_write_queue_bytes: 4 << 20,
            udp_receivers: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(4),
            udp_recv_buffer: 4 << 20,
            udp_send_buffer: 4 << 20,
            udp_send_queue_bytes: 4 << 20,
        }
    }
}

fn bind_error(transport: &str, addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{transport} {addr}: {e}"))
}

/// State shared by the socket tasks and the [`Transports`] handle.
#[derive(Debug)]
struct Shared {
    events: EventSink,
    stats: Arc<TransportStats>,
    limits: TransportLimits,
    conns: ConnTable,
    /// Limits concurrent TCP connections, inbound and outbound.
    tcp_permits: Arc<tokio::sync::Semaphore>,
    /// Outbound TLS identities, TLS counters and listeners' certificates.
    client_tls: tls::ClientTls,
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
    /// Per UDP listen address: its address and its sender.
    udp: Arc<Vec<(SocketAddr, Arc<udp_send::UdpSender>)>>,
    udp_local: Vec<SocketAddr>,
    tcp_local: Vec<SocketAddr>,
    /// Bound stream listeners other than plain TCP (WebSocket ...).
    other_local: Vec<(Transport, SocketAddr)>,
    shutdown: ShutdownHandle,
}

impl Transports {
    /// Binds every `[[listen]]` socket of `cfg` and starts its tasks. Inbound
    /// messages and events go to `events` (a channel, or one per core shard).
    ///
    /// # Errors
    /// A socket cannot be bound (address in use, permission), or a TLS
    /// certificate, key or CA file is unusable: startup fails.
    pub async fn start(
        cfg: &Config,
        limits: TransportLimits,
        events: impl Into<EventSink>,
        shutdown: &ShutdownController,
    ) -> io::Result<Transports> {
        let shared = Arc::new(Shared {
            events: events.into(),
            stats: Arc::new(TransportStats::default()),
            tcp_permits: Arc::new(tokio::sync::Semaphore::new(limits.max_tcp_connections)),
            limits,
            conns: ConnTable::default(),
            client_tls: tls::ClientTls::new(&cfg.upstream)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
        });
        let mut udp = Vec::new();
        let mut udp_local = Vec::new();
        let mut tcp_local = Vec::new();
        let mut other_local = Vec::new();
        for l in &cfg.listen {
            match l.transport {
                ListenTransport::Udp => {
                    let sockets = udp::bind(l.address, &shared.limits)
                        .map_err(|e| bind_error("udp", l.address, e))?;
                    let local = sockets.local;
                    tracing::info!(%local, receivers = sockets.receivers.len(), "listening on UDP");
                    udp_local.push(local);
                    let flush = tokio::net::UdpSocket::from_std(sockets.sender.try_clone()?)?;
                    let sender = Arc::new(udp_send::UdpSender::new(
                        sockets.sender,
                        shared.limits.udp_send_queue_bytes,
                    ));
                    tokio::spawn(udp_send::flush_loop(
                        sender.clone(),
                        flush,
                        shared.clone(),
                        shutdown.subscribe(),
                    ));
                    udp.push((local, sender));
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
                ListenTransport::Ws => {
                    let listener =
                        tcp::bind(l.address).map_err(|e| bind_error("ws", l.address, e))?;
                    let local = listener.local_addr()?;
                    tracing::info!(%local, "listening on WebSocket (ws)");
                    other_local.push((Transport::Ws, local));
                    tokio::spawn(stream::accept_loop(
                        listener,
                        local,
                        Transport::Ws,
                        shared.clone(),
                        shutdown.handle(),
                        ws::run_plain,
                    ));
                }
                ListenTransport::Tls | ListenTransport::Wss => {
                    let (transport, name) = match l.transport {
                        ListenTransport::Wss => (Transport::Wss, "wss"),
                        _ => (Transport::Tls, "tls"),
                    };
                    let server = tls::ServerTls::load(l).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{name} {}: {e}", l.address),
                        )
                    })?;
                    let listener =
                        tcp::bind(l.address).map_err(|e| bind_error(name, l.address, e))?;
                    let local = listener.local_addr()?;
                    tracing::info!(%local, cert = %server.cert_path().display(), "listening on {name}");
                    other_local.push((transport, local));
                    let acceptor = server.acceptor();
                    shared.client_tls.add_server(server, local);
                    let (shared, handle) = (shared.clone(), shutdown.handle());
                    // One accept loop per kind, so that each connection's
                    // task has the size of its own future: a `wss` one
                    // (TLS, the upgrade, WebSocket framing) is about three
                    // times a `tls` one, and one future type for both cost
                    // every idle TLS connection ~12 KiB more.
                    if transport == Transport::Wss {
                        tokio::spawn(stream::accept_loop(
                            listener,
                            local,
                            transport,
                            shared,
                            handle,
                            move |s, conn| ws::serve_tls(acceptor.clone(), s, conn),
                        ));
                    } else {
                        tokio::spawn(stream::accept_loop(
                            listener,
                            local,
                            transport,
                            shared,
                            handle,
                            move |s, conn| tls::serve(acceptor.clone(), s, conn),
                        ));
                    }
                }
            }
        }
        Ok(Transports {
            shared,
            udp: Arc::new(udp),
            udp_local,
            tcp_local,
            other_local,
            shutdown: shutdown.handle(),
        })
    }

    /// Bound secure WebSocket addresses.
    pub fn wss_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(Transport::Wss)
    }

    /// Bound TLS addresses.
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(Transport::Tls)
    }

    /// Re-reads every TLS listener's certificate and key (SIGHUP). A file
    /// that fails keeps that listener's running certificate; open
    /// connections are never dropped.
    ///
    /// # Errors
    /// One message per listener whose files could not be used.
    pub fn reload_tls(&self) -> Result<usize, Vec<String>> {
        self.shared.client_tls.reload_servers()
    }

    /// Upstream `index` (config order) resolved to `addrs`: TLS toward
    /// them verifies that upstream's name.
    pub fn learn_upstream(&self, index: usize, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.shared.client_tls.learn(index, addrs);
    }

    /// Appends the socket layer's counters and TLS gauges to `/metrics`.
    pub fn write_metrics(&self, m: &mut String) {
        self.shared.stats.write_metrics(m);
        self.shared.client_tls.write_metrics(m);
    }

    /// Bound UDP addresses (with the real port when the config said 0).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_local
    }

    /// Bound TCP addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_local
    }

    /// Bound WebSocket addresses.
    pub fn ws_addrs(&self) -> Vec<SocketAddr> {
        self.addrs_of(Transport::Ws)
    }

    /// The bound addresses of `transport`, in `[[listen]]` order.
    pub fn addrs_of(&self, transport: Transport) -> Vec<SocketAddr> {
        match transport {
            Transport::Udp => self.udp_local.clone(),
            Transport::Tcp => self.tcp_local.clone(),
            t => self
                .other_local
                .iter()
                .filter(|(x, _)| *x == t)
                .map(|(_, a)| *a)
                .collect(),
        }
    }

    /// Every bound listen address with its transport (for the ports sipfront
    /// writes in its own Via and Contact).
    pub fn bound(&self) -> Vec<(Transport, SocketAddr)> {
        let udp = self.udp_local.iter().map(|a| (Transport::Udp, *a));
        let tcp = self.tcp_local.iter().map(|a| (Transport::Tcp, *a));
        udp.chain(tcp)
            .chain(self.other_local.iter().copied())
            .collect()
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.shared.stats
    }

    /// Number of open (or opening) stream connections (TCP and WebSocket).
    pub fn tcp_connections(&self) -> usize {
        self.shared.conns.len()
    }

    /// Sends one message without waiting. UDP goes out at once from the first
    /// UDP socket of the destination's address family (or waits in a bounded
    /// queue while that socket's send buffer is full); TCP is queued on the
    /// given connection, else on any connection to `dest`, else on a new
    /// outbound connection (RFC 3261 §18.1.1/§18.2.2); WebSocket only on the
    /// client's own connection (RFC 7118 §5). Failures are reported as
    /// [`TransportEvent::SendFailed`].
    pub fn send(&self, out: Outbound) {
        match out.transport {
            Transport::Udp => self.send_udp(out),
            Transport::Tcp => tcp::send(&self.shared, out, &self.shutdown),
            Transport::Tls => tls::send(&self.shared, out, &self.shutdown),
            Transport::Ws | Transport::Wss => ws::send(&self.shared, out),
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
        socket.send(&self.shared, out.bytes, out.dest);
    }
}

#[cfg(test)]
mod tests;
