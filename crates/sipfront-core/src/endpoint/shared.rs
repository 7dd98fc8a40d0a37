//! `SharedState`: what crosses calls, shared by every core shard of a node
//! (issue 17 goal 2, ARCHITECTURE.md "One core per CPU"): channel counters
//! per trunk and DID (SPEC §3 "channels", §4), brute-force bans and the
//! per-source rate limiter. Each shard is an [`Endpoint`](super::Endpoint)
//! that owns its calls and transactions and holds an `Arc` of this; every
//! structure here is sharded or atomic (`dashmap`, CAS), so a trunk's limit
//! holds exactly whichever shard a call lands on, and no lock is held
//! across anything but one map entry.
//!
//! The digest nonce replay table (RFC 7616 §3.4) and challenge serial are
//! shared the same way inside the admission snapshot's
//! [`Authenticator`](crate::auth::Authenticator), which every shard holds
//! and every reload carries over.
//!
//! For a fleet (issue 16) the channel counters are the seam: a Redis-backed
//! [`ChannelCounters`] goes in through [`SharedState::with_channels`].

use std::sync::Arc;

use super::guard::{GuardConfig, RateLimiter};
use crate::auth::Bans;
use crate::b2bua::{ChannelCounters, LocalChannels};

/// The cross-call state of one node.
#[derive(Debug)]
pub struct SharedState {
    channels: Arc<dyn ChannelCounters>,
    bans: Bans,
    rates: RateLimiter,
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
        }
    }

    /// Channels in use per trunk and DID.
    pub fn channels(&self) -> &Arc<dyn ChannelCounters> {
        &self.channels
    }

    /// Failure counts and bans per source.
    pub fn bans(&self) -> &Bans {
        &self.bans
    }

    /// Token buckets per source for new out-of-dialog requests.
    pub fn rates(&self) -> &RateLimiter {
        &self.rates
    }
}
