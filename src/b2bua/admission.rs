//! Who may place a call (SPEC §3 "identify", first step only): a trusted
//! upstream's IP is an inbound DID call (answered `404` until DID routing
//! lands, SPEC §4); a trunk whose `host_request` equals the source IP is
//! IP-authenticated; anyone else gets `403` (digest comes later).

use std::net::IpAddr;

use crate::config::TrunkConfig;
use crate::routing::Upstreams;
use crate::sip::StatusCode;

/// Why a new INVITE is refused before routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// From a trusted upstream: an inbound DID call, not routed yet.
    #[error("inbound DID calls are not routed yet")]
    InboundNotRouted,
    /// No trunk matches the source.
    #[error("source is not a known trunk")]
    UnknownSource,
}

impl Refusal {
    /// The SIP answer (SPEC §3/§4).
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::InboundNotRouted => StatusCode::NOT_FOUND,
            Refusal::UnknownSource => StatusCode::FORBIDDEN,
        }
    }
}

/// IP-authenticated trunks: (`host_request` address, trunk id).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrunkIps(Vec<(IpAddr, u64)>);

impl TrunkIps {
    /// Trunks with a parseable non-empty `host_request`.
    pub fn from_config(trunks: &[TrunkConfig]) -> TrunkIps {
        TrunkIps(
            trunks
                .iter()
                .filter_map(|t| Some((t.host_request.trim().parse().ok()?, t.id())))
                .collect(),
        )
    }

    /// From (address, trunk id) pairs (tests).
    pub fn from_pairs(pairs: Vec<(IpAddr, u64)>) -> TrunkIps {
        TrunkIps(pairs)
    }

    /// Identifies the source of a new INVITE: the trunk id, or why not.
    ///
    /// # Errors
    /// [`Refusal`] when the source is a trusted upstream or no trunk.
    pub fn identify(&self, source: IpAddr, upstreams: &Upstreams) -> Result<u64, Refusal> {
        if upstreams.is_trusted(source) {
            return Err(Refusal::InboundNotRouted);
        }
        self.0
            .iter()
            .find(|(ip, _)| *ip == source)
            .map(|(_, id)| *id)
            .ok_or(Refusal::UnknownSource)
    }
}
