//! Where calls go (ARCHITECTURE.md, `routing/`): upstream gateways chosen by
//! priority then weight (SPEC §3 "route"), with a per-call fail-over plan.
//! Sans-IO: randomness is an argument, so selection is testable; DNS
//! answers (RFC 3263) come in from the shell, `dns` keeps their TTLs.

pub mod did_hosts;
pub mod dns;
mod failover;
mod hop;
mod locations;
mod upstream;

pub use did_hosts::DidHosts;
pub use failover::FailoverCodes;
pub use hop::{hostport, uri_param, Hop};
pub use locations::{LocalOnly, Locations, NoLocations, Reach};
pub use upstream::{Resolve, Target, Upstream, UpstreamError, Upstreams, MAX_TARGETS};
