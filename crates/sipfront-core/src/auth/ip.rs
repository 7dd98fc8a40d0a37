//! IP authentication (SPEC §2 `host_request`, §3 "identify" and "ip_restrict").
//!
//! A trunk with a non-empty `host_request` is identified by the request's
//! source address alone, with no digest. A digest trunk with `ip_restrict`
//! may only be used from its `allowed_ips` networks.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::TrunkConfig;

use super::TrunkId;

/// Source address → IP-authenticated trunk, built from a config snapshot.
#[derive(Debug, Clone, Default)]
pub struct IpAuth {
    by_ip: HashMap<IpAddr, TrunkId>,
}

impl IpAuth {
    /// Indexes every trunk whose `host_request` is an IP address. A
    /// `host_request` that does not parse as an IP is skipped (config
    /// validation reports it); if two trunks name the same IP the first wins.
    pub fn new<'a>(trunks: impl IntoIterator<Item = &'a TrunkConfig>) -> IpAuth {
        let mut by_ip = HashMap::new();
        for t in trunks {
            if let Ok(ip) = t.host_request.trim().parse::<IpAddr>() {
                by_ip.entry(canonical(ip)).or_insert(TrunkId(t.id()));
            }
        }
        IpAuth { by_ip }
    }

    /// The IP-authenticated trunk for a request from `source`, if any.
    pub fn identify(&self, source: IpAddr) -> Option<TrunkId> {
        self.by_ip.get(&canonical(source)).copied()
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as seen on dual-stack sockets) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// SPEC §3 "ip_restrict": whether `trunk` may be used from `source`. Always
/// true when `ip_restrict` is off; with it on and `allowed_ips` empty, false.
pub fn ip_allowed(trunk: &TrunkConfig, source: IpAddr) -> bool {
    if !trunk.ip_restrict {
        return true;
    }
    let source = canonical(source);
    trunk.allowed_ips.iter().any(|n| n.contains(source))
}
