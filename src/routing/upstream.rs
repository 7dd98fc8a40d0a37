//! `[[upstream]]` gateways (SPEC §2, §3 "route"): lower priority is tried
//! first, equal priorities share by weight (the DNS SRV rule of RFC 2782
//! §"Usage rules", applied to a static list), and an upstream marked down
//! (OPTIONS health, RFC 3261 §11) is tried only after every live one.
//!
//! Hosts must be IP literals: the sans-IO core does no DNS (RFC 3263
//! resolution is left for later and noted in the module's callers).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::Hop;
use crate::auth::Credentials;
use crate::config::{NumberFormat, UpstreamConfig};
use crate::sip::{Host, Transport, Uri};

/// Why an `[[upstream]]` entry cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The `uri` is not a `sip:` URI.
    #[error("upstream `{0}`: uri is not a sip: URI")]
    BadUri(String),
    /// The host is a name; only IP literals are supported (no DNS yet).
    #[error("upstream `{0}`: host must be an IP address (DNS is not supported yet)")]
    HostNotIp(String),
    /// `;transport=` names something other than udp or tcp.
    #[error("upstream `{0}`: unsupported transport")]
    BadTransport(String),
}

/// One gateway, resolved from its config entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Unique name from the config.
    pub name: String,
    /// Where requests go.
    pub addr: SocketAddr,
    /// `host[:port]` as written in Request-URI and To of the B-leg.
    pub hostport: String,
    /// Transport used toward it (`;transport=`, default UDP).
    pub transport: Transport,
    /// Lower is tried first.
    pub priority: u32,
    /// Share among equal priorities.
    pub weight: u32,
    /// Requests from its IP are inbound DID calls.
    pub trusted: bool,
    /// OPTIONS ping interval in seconds (0: never pinged).
    pub ping_interval_s: u32,
    /// Health: false after failed pings.
    pub up: bool,
    /// How numbers are written toward it (`number_format`).
    pub number_format: NumberFormat,
    /// What answers its `401`/`407` (`username`/`password`); `None`: its
    /// challenges fail the attempt as before.
    pub credentials: Option<Arc<Credentials>>,
    /// Keep `credentials.username` registered here (`register = true`).
    pub register: bool,
    /// Expires asked for in our REGISTER.
    pub register_expires_s: u32,
}

impl Upstream {
    /// Parses one config entry.
    ///
    /// # Errors
    /// [`UpstreamError`] when the URI is not `sip:IP[:port][;transport=udp|tcp]`.
    pub fn from_config(c: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let uri = Uri::parse(c.uri.trim()).ok_or_else(|| UpstreamError::BadUri(c.name.clone()))?;
        if uri.scheme != crate::sip::Scheme::Sip {
            return Err(UpstreamError::BadUri(c.name.clone()));
        }
        let ip: IpAddr = uri
            .host
            .ip()
            .ok_or_else(|| UpstreamError::HostNotIp(c.name.clone()))?;
        let transport = match uri.transport_param() {
            None => Transport::Udp,
            Some(t) => match Transport::from_token(t) {
                Some(t @ (Transport::Udp | Transport::Tcp)) => t,
                _ => return Err(UpstreamError::BadTransport(c.name.clone())),
            },
        };
        let addr = SocketAddr::new(ip, uri.port.unwrap_or(5060));
        Ok(Upstream {
            name: c.name.clone(),
            addr,
            hostport: super::hop::hostport(addr),
            transport,
            priority: c.priority,
            weight: c.weight,
            trusted: c.trusted,
            ping_interval_s: c.ping_interval_s,
            up: true,
            number_format: c.number_format,
            credentials: Credentials::new(&c.username, &c.auth_username, &c.password).map(Arc::new),
            register: c.register,
            register_expires_s: c.register_expires_s,
        })
    }

    /// An attempt to call `number` (digits) through this upstream, the
    /// number written in its `number_format`.
    pub fn hop(&self, number: &str, fork: u32) -> Hop {
        let written = self.number_format.write(number);
        Hop {
            carrier: Some(self.number_format),
            auth: self.credentials.clone(),
            ..Hop::number_at(&written, self.addr, self.transport, fork)
        }
    }

    /// The host of the upstream as a [`Host`] (tests and logs).
    pub fn host(&self) -> Host<'_> {
        match self.addr.ip() {
            IpAddr::V4(a) => Host::V4(a),
            IpAddr::V6(a) => Host::V6(a),
        }
    }
}

/// All upstreams, in config order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstreams {
    list: Vec<Upstream>,
}

/// splitmix64: a tiny deterministic stream from one random seed.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Upstreams {
    /// Resolves every `[[upstream]]`.
    ///
    /// # Errors
    /// The first entry that cannot be used.
    pub fn from_config(cfgs: &[UpstreamConfig]) -> Result<Upstreams, UpstreamError> {
        let list = cfgs
            .iter()
            .map(Upstream::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstreams { list })
    }

    /// From already-resolved entries (tests).
    pub fn from_list(list: Vec<Upstream>) -> Upstreams {
        Upstreams { list }
    }

    /// Number of upstreams.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Upstream number `i` (an index from [`plan`](Self::plan)).
    pub fn get(&self, i: usize) -> Option<&Upstream> {
        self.list.get(i)
    }

    /// All upstreams in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Upstream> {
        self.list.iter()
    }

    /// Marks upstream `i` up or down (OPTIONS health).
    pub fn set_up(&mut self, i: usize, up: bool) {
        if let Some(u) = self.list.get_mut(i) {
            u.up = up;
        }
    }

    /// Whether `ip` is any upstream's address (any port).
    pub fn is_upstream(&self, ip: IpAddr) -> bool {
        self.list.iter().any(|u| u.addr.ip() == ip)
    }

    /// Whether `ip` belongs to a `trusted` upstream (any port, SPEC §2).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.list.iter().any(|u| u.trusted && u.addr.ip() == ip)
    }

    /// The fail-over order for one call: by ascending priority; inside one
    /// priority a weighted random order (each pick has probability
    /// weight / remaining weight; weight 0 only after the others, RFC 2782
    /// style); live upstreams before the ones marked down. `random` seeds
    /// the choice, so a test passes a fixed value.
    pub fn plan(&self, random: u64) -> Vec<usize> {
        let mut state = random;
        let mut order: Vec<usize> = (0..self.list.len()).collect();
        order.sort_by_key(|&i| {
            let u = &self.list[i];
            (!u.up, u.priority)
        });
        let mut out = Vec::with_capacity(order.len());
        let mut start = 0;
        while start < order.len() {
            let key = |i: usize| (!self.list[i].up, self.list[i].priority);
            let group_key = key(order[start]);
            let end = order[start..]
                .iter()
                .position(|&i| key(i) != group_key)
                .map_or(order.len(), |p| start + p);
            let mut group: Vec<usize> = order[start..end].to_vec();
            while !group.is_empty() {
                let total: u64 = group.iter().map(|&i| u64::from(self.list[i].weight)).sum();
                let pick = if total == 0 {
                    0
                } else {
                    let mut r = next_random(&mut state) % total;
                    group
                        .iter()
                        .position(|&i| {
                            let w = u64::from(self.list[i].weight);
                            if r < w {
                                true
                            } else {
                                r -= w;
                                false
                            }
                        })
                        .unwrap_or(0)
                };
                out.push(group.remove(pick));
            }
            start = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, uri: &str, priority: u32, weight: u32) -> UpstreamConfig {
        UpstreamConfig {
            name: name.to_owned(),
            uri: uri.to_owned(),
            priority,
            weight,
            ping_interval_s: 0,
            trusted: false,
            ..Default::default()
        }
    }

    #[test]
    fn parses_uri() {
        let u = Upstream::from_config(&cfg("a", "sip:127.0.0.3:5080;transport=tcp", 1, 1)).unwrap();
        assert_eq!(u.addr, "127.0.0.3:5080".parse().unwrap());
        assert_eq!(u.transport, Transport::Tcp);
        assert_eq!(u.hostport, "127.0.0.3:5080");
        let u = Upstream::from_config(&cfg("b", "sip:10.0.0.1", 1, 1)).unwrap();
        assert_eq!(u.addr.port(), 5060);
        assert_eq!(u.transport, Transport::Udp);
        assert!(matches!(
            Upstream::from_config(&cfg("c", "sip:carrier.example", 1, 1)),
            Err(UpstreamError::HostNotIp(_))
        ));
        assert!(matches!(
            Upstream::from_config(&cfg("d", "sip:10.0.0.1;transport=sctp", 1, 1)),
            Err(UpstreamError::BadTransport(_))
        ));
        assert!(Upstream::from_config(&cfg("e", "http://x", 1, 1)).is_err());
    }

    #[test]
    fn priority_first_then_weight() {
        let ups = Upstreams::from_config(&[
            cfg("low", "sip:10.0.0.9", 5, 1),
            cfg("a", "sip:10.0.0.1", 1, 3),
            cfg("b", "sip:10.0.0.2", 1, 1),
        ])
        .unwrap();
        let mut first_a = 0;
        for seed in 0..1000u64 {
            let plan = ups.plan(seed);
            assert_eq!(plan.len(), 3);
            assert_eq!(plan[2], 0, "priority 5 comes last");
            if plan[0] == 1 {
                first_a += 1;
            }
        }
        // weight 3:1 → about 750 of 1000.
        assert!((650..850).contains(&first_a), "{first_a}");
        assert_eq!(ups.plan(42), ups.plan(42), "deterministic for a seed");
    }

    #[test]
    fn down_upstreams_go_last() {
        let mut ups = Upstreams::from_config(&[
            cfg("a", "sip:10.0.0.1", 1, 1),
            cfg("b", "sip:10.0.0.2", 2, 1),
        ])
        .unwrap();
        ups.set_up(0, false);
        assert_eq!(ups.plan(7), vec![1, 0]);
        assert!(!ups.is_trusted("10.0.0.1".parse().unwrap()));
    }
}
