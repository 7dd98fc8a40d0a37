//! The hops of an admitted call, in hunting order (SPEC §3 "route", §4):
//! off-net numbers go to the upstreams by priority then weight; a trunk is
//! reached at its registered contacts, all at once (one fork), else at its
//! `host_request` address; a DID's destinations are tried by priority.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::admission::{Admission, Admitted, RefusalCause, DEST_PSTN, DEST_TRUNK, DEST_URI};
use super::Rejection;
use crate::auth::TrunkId;
use crate::config::{DidConfig, TrunkConfig};
use crate::policy::{OnNetTarget, Route};
use crate::routing::{did_hosts, DidHosts, Hop, Locations, Upstreams};
use crate::sip::{StatusCode, Transport, Uri};

/// What planning reads.
pub(crate) struct Planner<'a> {
    pub(crate) upstreams: &'a Upstreams,
    pub(crate) admission: &'a Admission,
    pub(crate) locations: &'a dyn Locations,
    /// Host part of the To URI toward trunks (`server.public_address`).
    pub(crate) domain: &'a str,
    /// DNS answers for host names in DID SIP URI destinations.
    pub(crate) did_hosts: &'a DidHosts,
    /// Drives the weighted upstream order.
    pub(crate) seed: u64,
    pub(crate) now: Instant,
}

impl Planner<'_> {
    /// The hops of `admitted`, or the refusal when none is reachable.
    pub(crate) fn plan(&self, admitted: &Admitted) -> Result<Vec<Hop>, Rejection> {
        let number = &admitted.decision.number;
        let mut fork = 0;
        let hops = match (&admitted.decision.route, &admitted.did) {
            (Route::OffNet(_), _) => {
                let hops = self.upstream_hops(number, &mut fork);
                if hops.is_empty() {
                    let why = self.upstreams.why_no_target();
                    return Err(Rejection::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        RefusalCause::NoRoute,
                        &why,
                    ));
                }
                hops
            }
            (Route::OnNet(OnNetTarget::Trunk(TrunkId(id))), _) => match self.admission.trunk(*id) {
                Some(t) => self.trunk_hops(t, number, &mut fork),
                None => Vec::new(),
            },
            (Route::OnNet(OnNetTarget::Did), Some(did)) => self.did_hops(did, &mut fork),
            (Route::OnNet(OnNetTarget::Did), None) => Vec::new(),
        };
        if hops.is_empty() {
            let why = format!("{number}: no destination is reachable (not registered, no address)");
            return Err(Rejection::new(
                StatusCode::TEMPORARILY_UNAVAILABLE,
                RefusalCause::NoRoute,
                &why,
            ));
        }
        Ok(hops)
    }

    fn upstream_hops(&self, number: &str, fork: &mut u32) -> Vec<Hop> {
        upstream_hops(self.upstreams, self.seed, number, fork)
    }

    /// A trunk: all its registered contacts ring at once, at the address and
    /// over the transport they registered from; without any, its
    /// `host_request` address. The To user is `to_user`.
    fn trunk_hops(&self, trunk: &TrunkConfig, to_user: &str, fork: &mut u32) -> Vec<Hop> {
        *fork += 1;
        let to = format!("sip:{to_user}@{}", self.domain);
        let contacts: Vec<Hop> = self
            .locations
            .reach(trunk.login(), self.now)
            .into_iter()
            .map(|r| Hop {
                addr: r.addr,
                transport: r.transport,
                uri: r.uri,
                to: to.clone(),
                fork: *fork,
                failover: crate::routing::FailoverCodes::default(),
                carrier: None,
                auth: None,
                media: trunk.media,
            })
            .collect();
        if !contacts.is_empty() {
            return contacts;
        }
        match trunk.host_request.trim().parse::<IpAddr>() {
            Ok(ip) => {
                let addr = SocketAddr::new(ip, 5060);
                let mut hop = Hop::number_at(to_user, addr, Transport::Udp, *fork);
                hop.media = trunk.media;
                vec![hop]
            }
            Err(_) => Vec::new(),
        }
    }

    /// A DID's destinations by priority (SPEC §4); `didinfo_enabled` on a
    /// destination trunk puts the DID in To, else its login.
    fn did_hops(&self, did: &DidConfig, fork: &mut u32) -> Vec<Hop> {
        let mut dests: Vec<_> = did.destinations.iter().collect();
        dests.sort_by_key(|d| d.priority);
        let mut hops = Vec::new();
        for d in dests {
            match d.transport {
                DEST_TRUNK => {
                    if let Some(t) = self.admission.trunk_by_login(&d.destination) {
                        let to_user = if t.didinfo_enabled {
                            did.number.as_str()
                        } else {
                            t.login()
                        };
                        hops.extend(self.trunk_hops(t, to_user, fork));
                    }
                }
                DEST_URI => hops.extend(self.uri_hops(&did.number, &d.destination, fork)),
                DEST_PSTN => {
                    let n = d.destination.trim().trim_start_matches('+');
                    hops.extend(self.upstream_hops(n, fork));
                }
                _ => {}
            }
        }
        hops
    }
}

impl Planner<'_> {
    /// A SIP URI destination: an IP literal is one hop; a host name is one
    /// hop per resolved target in RFC 3263 order (each its own fail-over
    /// step, as for upstreams), the Request-URI keeping the name. A name
    /// with no answer is skipped like an unreachable destination.
    fn uri_hops(&self, did: &str, uri: &str, fork: &mut u32) -> Vec<Hop> {
        let Some(name) = did_hosts::resolution(uri) else {
            return uri_hop(uri, *fork + 1).map_or_else(Vec::new, |hop| {
                *fork += 1;
                vec![hop]
            });
        };
        let targets = match self.did_hosts.targets(&name) {
            Ok(t) => t,
            Err(why) => {
                tracing::warn!(
                    did,
                    host = %name.host,
                    "DID destination `{}` skipped: its host does not resolve ({why})",
                    uri.trim()
                );
                return Vec::new();
            }
        };
        let mut targets: Vec<_> = targets.iter().collect();
        targets.sort_by_key(|t| t.priority);
        targets
            .into_iter()
            .map(|t| {
                *fork += 1;
                Hop {
                    addr: t.addr,
                    transport: t.transport,
                    uri: uri.trim().to_owned(),
                    to: uri.trim().to_owned(),
                    fork: *fork,
                    failover: crate::routing::FailoverCodes::default(),
                    carrier: None,
                    auth: None,
                    media: crate::config::MediaMode::Passthrough,
                }
            })
            .collect()
    }
}

/// `number` through each upstream in fail-over order, one step (fork) each,
/// numbered after `fork`.
pub(crate) fn upstream_hops(
    upstreams: &Upstreams,
    seed: u64,
    number: &str,
    fork: &mut u32,
) -> Vec<Hop> {
    upstreams
        .plan(seed)
        .iter()
        .filter_map(|&(i, j)| {
            let u = upstreams.get(i)?;
            let t = u.targets.get(j)?;
            *fork += 1;
            Some(u.hop(number, t, *fork))
        })
        .collect()
}

/// A SIP URI destination whose host is an IP literal.
fn uri_hop(uri: &str, fork: u32) -> Option<Hop> {
    let u = Uri::parse(uri.trim())?;
    let ip = u.host.ip()?;
    let transport = u.transport().ok()?.unwrap_or(Transport::Udp);
    Some(Hop {
        addr: SocketAddr::new(ip, u.port.unwrap_or(transport.default_port())),
        transport,
        uri: uri.trim().to_owned(),
        to: uri.trim().to_owned(),
        fork,
        failover: crate::routing::FailoverCodes::default(),
        carrier: None,
        auth: None,
        media: crate::config::MediaMode::Passthrough,
    })
}
