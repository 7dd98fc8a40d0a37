//! Where calls go (ARCHITECTURE.md, `routing/`): upstream gateways chosen by
//! priority then weight (SPEC §3 "route"), with a per-call fail-over plan.
//! Sans-IO: randomness is an argument, so selection is testable.

mod hop;
mod upstream;

pub use hop::Hop;
pub use upstream::{Upstream, UpstreamError, Upstreams};
