//! Where calls go (ARCHITECTURE.md, `routing/`): upstream gateways chosen by
//! priority then weight (SPEC §3 "route"), with a per-call fail-over plan.
//! Sans-IO: randomness is an argument, so selection is testable.

mod hop;
mod locations;
mod upstream;

pub use hop::{hostport, Hop};
pub use locations::{Locations, NoLocations, Reach};
pub use upstream::{Upstream, UpstreamError, Upstreams};
