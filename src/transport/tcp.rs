//! TCP (RFC 3261 §18): the listening socket, and plain streams run straight
//! through the shared connection machinery of `stream.rs`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

use super::conn::PeerKey;
use super::stream::{self, Conn};
use super::{Outbound, Shared, ShutdownHandle};
use crate::sip::Transport;

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

/// Accepts TCP connections until shutdown and runs each.
pub(super) async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    shared: Arc<Shared>,
    handle: ShutdownHandle,
) {
    stream::accept_loop(listener, local, Transport::Tcp, shared, handle, stream::run).await;
}

/// Queues `out` on the TCP connection named, else the one to `out.dest`,
/// else a new one. Never waits.
pub(super) fn send(shared: &Arc<Shared>, out: Outbound, handle: &ShutdownHandle) {
    let peer = PeerKey::plain(Transport::Tcp, out.dest);
    stream::send(shared, out, peer, handle, dial);
}

/// Opens an outbound TCP connection, then runs it like an accepted one.
async fn dial(conn: Conn) {
    if let Some((s, conn)) = stream::connect_tcp(conn).await {
        stream::run(s, conn).await;
    }
}
