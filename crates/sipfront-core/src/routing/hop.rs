//! Where one B-leg attempt goes: an upstream gateway, another trunk's own
//! address, a registered contact (reached at the address it registered
//! from), or a SIP URI destination of a DID.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::FailoverCodes;
use crate::auth::Credentials;
use crate::config::NumberFormat;
use crate::sip::Transport;

/// The next hop of one attempt, with the Request-URI and To it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Where requests go (for a registered contact: its NAT source address).
    pub addr: SocketAddr,
    /// Transport toward it.
    pub transport: Transport,
    /// Request-URI of the B-leg INVITE.
    pub uri: String,
    /// To URI of the B-leg.
    pub to: String,
    /// Hops with the same fork number ring at once (parallel forking to a
    /// trunk's registered contacts); each new number is the next step of
    /// the hunt.
    pub fork: u32,
    /// Final responses that move the call to the next hop (an upstream's
    /// `failover_codes`; default `408` and `5xx`).
    pub failover: FailoverCodes,
    /// Set when the hop is an upstream carrier: how it wants numbers
    /// written. Carriers are our RFC 3325 trust domain: they get the
    /// caller's number in P-Asserted-Identity even under `Privacy: id`.
    pub carrier: Option<NumberFormat>,
    /// Credentials for this hop's `401`/`407` (an upstream's account).
    pub auth: Option<Arc<Credentials>>,
    /// `relay`: the upstream or trunk this hop reaches wants its media
    /// anchored (SPEC §8.4).
    pub media: crate::config::MediaMode,
}

impl Hop {
    /// `sip:{number}@{addr}` over `transport` (upstreams, `host_request`).
    pub fn number_at(number: &str, addr: SocketAddr, transport: Transport, fork: u32) -> Hop {
        Hop::number_via(number, &hostport(addr), addr, transport, fork)
    }

    /// `sip:{number}@{host}` sent to `addr`: the Request-URI keeps the
    /// configured host (a name, RFC 3263 §4), the datagrams go to one of
    /// the addresses it resolved to.
    pub fn number_via(
        number: &str,
        host: &str,
        addr: SocketAddr,
        transport: Transport,
        fork: u32,
    ) -> Hop {
        let uri = format!("sip:{number}@{host}{}", uri_param(transport));
        Hop {
            addr,
            transport,
            to: uri.clone(),
            uri,
            fork,
            failover: FailoverCodes::default(),
            carrier: None,
            auth: None,
            media: crate::config::MediaMode::Passthrough,
        }
    }
}

/// `host:port`, IPv6 in brackets.
pub fn hostport(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(a) => format!("{a}:{}", addr.port()),
        IpAddr::V6(a) => format!("[{a}]:{}", addr.port()),
    }
}

/// `;transport=tcp` (or `tls`) for a URI when not UDP, the default
/// (RFC 3261 §19.1.1).
pub fn uri_param(transport: Transport) -> String {
    match transport {
        Transport::Udp => String::new(),
        t => format!(";transport={}", t.as_lowercase()),
    }
}
