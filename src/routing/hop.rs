//! Where one B-leg attempt goes: an upstream gateway, or (on-net) another
//! trunk's own address.

use std::net::{IpAddr, SocketAddr};

use crate::sip::Transport;

/// The next hop of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    /// Where requests go.
    pub addr: SocketAddr,
    /// `host:port` as written in the Request-URI and To of the B-leg.
    pub hostport: String,
    /// Transport toward it.
    pub transport: Transport,
}

impl Hop {
    /// A hop to `addr` over `transport`.
    pub fn new(addr: SocketAddr, transport: Transport) -> Hop {
        let hostport = match addr.ip() {
            IpAddr::V4(a) => format!("{a}:{}", addr.port()),
            IpAddr::V6(a) => format!("[{a}]:{}", addr.port()),
        };
        Hop {
            addr,
            hostport,
            transport,
        }
    }

    /// `;transport=tcp` for the Request-URI when not UDP.
    pub fn uri_param(&self) -> &'static str {
        match self.transport {
            Transport::Tcp => ";transport=tcp",
            _ => "",
        }
    }
}
