//! `SharedState`: what crosses calls, shared by every core shard of a node
//! (issue 17 goal 2, ARCHITECTURE.md "One core per CPU"): channel counters
//! per trunk and DID (SPEC §3 "channels", §4), brute-force bans and the
//! per-source rate limiter. Each shard is an [`Endpoint`](super::Endpoint)
//! that owns its calls and transactions and holds an `Arc` of this; every
//! structure here is sharded or atomic (`dashmap`, CAS), so a trunk's limit
//! holds exactly whichever shard a call lands on, and no lock is held
//! across anything but one map entry.
//!
//! The registrar and its location store live here too, behind a mutex held
//! for one REGISTER or one lookup (microseconds): a phone registered
//! through any shard is found by a call on any other. Shard 0 owns what
//! the registrar does by itself (expiry, keep-alive OPTIONS, store
//! writes); the others only register, look up and drop a closed
//! connection's bindings.
//!
//! The digest nonce replay table (RFC 7616 §3.4) and challenge serial are
//! shared the same way inside the admission snapshot's
//! [`Authenticator`](crate::auth::Authenticator), which every shard holds
//! and every reload carries over.
//!
//! For a fleet (issue 16) the channel counters are the seam: a Redis-backed
//! [`ChannelCounters`] goes in through [`SharedState::with_channels`]. The
//! shell also feeds a [`FleetView`] (the other nodes' SIP addresses and the
//! trunk logins registered with each): a DID call for a phone registered on
//! another node is relayed there, and an INVITE from another node is a
//! relayed call to deliver to this node's own contacts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::guard::{GuardConfig, RateLimiter};
use crate::auth::Bans;
use crate::b2bua::{ChannelCounters, LocalChannels};
use crate::registrar::{Registrar, RegistrarConfig};
use crate::routing::{Locations, Reach};
use crate::sip::random::Random;
use crate::sip::Transport;

/// What this node knows of the other nodes of its fleet (README
/// "Fleets"), as the shell last read it from the fleet store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetView {
    /// The live nodes' SIP addresses (UDP): an INVITE from one of them is
    /// a call that node relays to a phone registered here.
    pub peers: Vec<SocketAddr>,
    /// Trunk logins registered on other live nodes: the SIP address of
    /// each node holding a binding of that login.
    pub registered: HashMap<String, Vec<SocketAddr>>,
}

/// The cross-call state of one node.
#[derive(Debug)]
pub struct SharedState {
    channels: Arc<dyn ChannelCounters>,
    bans: Bans,
    rates: RateLimiter,
    registrar: Mutex<Registrar>,
    /// The other nodes of the fleet (empty for one node).
    fleet: ArcSwap<FleetView>,
}

impl SharedState {
    /// Empty state for one node, counting channels in memory.
    pub fn new(guard: &GuardConfig) -> SharedState {
        SharedState::with_channels(guard, Arc::new(LocalChannels::new()))
    }

    /// Empty state counting channels in `channels` (another node-wide or
    /// fleet-wide implementation).
    pub fn with_channels(guard: &GuardConfig, channels: Arc<dyn ChannelCounters>) -> SharedState {
        SharedState {
            channels,
            bans: Bans::new(guard.bans.clone()),
            rates: RateLimiter::default(),
            // Shard 0 installs the configured one (`Endpoint::with_shared`).
            registrar: Mutex::new(Registrar::new(
                RegistrarConfig::default(),
                Random::from_seed([0; 32]),
            )),
            fleet: ArcSwap::from_pointee(FleetView::default()),
        }
    }

    /// The registrar and its location store, locked (hold it for one
    /// operation: every shard's REGISTERs and DID calls wait on it). A
    /// panic while it was held leaves it usable: each operation leaves the
    /// store consistent.
    pub fn registrar(&self) -> MutexGuard<'_, Registrar> {
        self.registrar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Channels in use per trunk and DID.
    pub fn channels(&self) -> &Arc<dyn ChannelCounters> {
        &self.channels
    }

    /// Failure counts and bans per source.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    /// Replaces the view of the other nodes (the shell, after reading the
    /// fleet store).
    pub fn set_fleet(&self, view: FleetView) {
        self.fleet.store(Arc::new(view));
    }

    /// Whether `source` is another node of the fleet (its INVITEs are
    /// calls it relays to phones registered here).
    pub fn is_fleet_peer(&self, source: SocketAddr) -> bool {
        self.fleet.load().peers.contains(&source)
    }

    /// Whether `ip` is the address of another node of the fleet.
    pub fn is_fleet_peer_ip(&self, ip: std::net::IpAddr) -> bool {
        self.fleet.load().peers.iter().any(|p| p.ip() == ip)
    }

    /// Token buckets per source for new out-of-dialog requests.
    pub fn rates(&self) -> &RateLimiter {
        &self.rates
    }
}

/// Routing reads the shared location store, locked for each lookup only;
/// a login registered only on other nodes is reached through them.
impl Locations for SharedState {
    fn reach(&self, login: &str, now: Instant) -> Vec<Reach> {
        let local = self.reach_local(login, now);
        if !local.is_empty() {
            return local;
        }
        let fleet = self.fleet.load();
        fleet
            .registered
            .get(login)
            .map(|nodes| {
                nodes
                    .iter()
                    .map(|addr| Reach {
                        // The node finds the trunk by the login.
                        uri: format!("sip:{login}@{addr}"),
                        addr: *addr,
                        transport: Transport::Udp,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn reach_local(&self, login: &str, now: Instant) -> Vec<Reach> {
        self.registrar().store().reach(login, now)
    }
}
