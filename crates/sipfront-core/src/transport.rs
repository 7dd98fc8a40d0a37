//! The types that cross between the shell's sockets and the core: a
//! received message ([`Inbound`]), a message to send ([`Outbound`]), and
//! what the transport tells the core ([`TransportEvent`]).
//!
//! Plain data, no I/O: the shell (`sipfront::transport`) owns the sockets and
//! connections and re-exports these types; the core consumes and produces
//! them (RFC 3261 §18).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::sip::Transport;

/// Identifies one stream connection for its whole life (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A message (datagram or framed stream message) received from the network.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Exactly one SIP message (not yet parsed).
    pub bytes: Bytes,
    /// Where it came from.
    pub peer: SocketAddr,
    /// Our socket it arrived on.
    pub local: SocketAddr,
    /// UDP, TCP, WS or WSS.
    pub transport: Transport,
    /// The stream connection, for TCP and WebSocket.
    pub conn: Option<ConnId>,
    /// When the shell read it off the socket (a stream message: when it
    /// was framed whole), on the clock the core's `now` comes from. The
    /// core measures how long it queued against that `now` (overload
    /// control: a new INVITE that waited too long is refused at once).
    pub received: Instant,
}

/// A message the core wants sent.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The serialized message.
    pub bytes: Bytes,
    /// Destination address.
    pub dest: SocketAddr,
    /// UDP, TCP, WS or WSS.
    pub transport: Transport,
    /// For TCP: the connection to use (responses go back on the request's
    /// connection). `None`: any connection to `dest`, or a new one. For
    /// WebSocket: the connection, or `None` for the client's connection
    /// from `dest` (never a new one, RFC 7118 §5).
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
