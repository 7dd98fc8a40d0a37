//! Where trunks are registered: the view of the registrar's location store
//! that routing needs (SPEC §4 transport 5: "the trunk's registered
//! contacts, over the connection and NAT address it registered from").

use std::net::SocketAddr;
use std::time::Instant;

use crate::sip::Transport;

/// One registered contact, as routing reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The Contact URI as registered: the Request-URI of calls to it.
    pub uri: String,
    /// The address the REGISTER came from: where calls go (NAT).
    pub addr: SocketAddr,
    /// The transport it registered over (TCP reuses its connection).
    pub transport: Transport,
}

/// Registered contacts of trunks, by login.
pub trait Locations {
    /// The live contacts of `login` at `now`, most recent first; on a node
    /// of a fleet, when this node holds none, the other nodes that hold
    /// one (a call relayed there, README "Fleets").
    fn reach(&self, login: &str, now: Instant) -> Vec<Reach>;

    /// Only the contacts this node holds the connection or NAT binding
    /// of: where a call another node relayed here is delivered.
    fn reach_local(&self, login: &str, now: Instant) -> Vec<Reach> {
        self.reach(login, now)
    }
}

/// `locations` restricted to this node's own contacts (a call relayed by
/// another node of the fleet is never relayed on).
pub struct LocalOnly<'a>(pub &'a dyn Locations);

impl Locations for LocalOnly<'_> {
    fn reach(&self, login: &str, now: Instant) -> Vec<Reach> {
        self.0.reach_local(login, now)
    }
}

/// No registrations at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLocations;

impl Locations for NoLocations {
    fn reach(&self, _login: &str, _now: Instant) -> Vec<Reach> {
        Vec::new()
    }
}
