//! `[[upstream]]` gateways (SPEC §2, §3 "route") and their targets.
//!
//! An upstream is a configured name; its *targets* are the addresses it
//! stands for: the IP literal of its `uri`, or every SRV target and address
//! its host name resolved to (RFC 3263 §4). The sans-IO core does no DNS:
//! the shell resolves the [`Resolve`] query of each named upstream and hands
//! the answer in with [`Upstreams::set_targets`], like a timer firing.
//!
//! Fail-over order of one call ([`Upstreams::plan`]): upstreams by ascending
//! priority, equal priorities shuffled by weight; inside an upstream its
//! targets by SRV priority, equal ones shuffled by SRV weight (RFC 2782
//! "Usage rules"). Health is kept per target (OPTIONS pings, RFC 3261 §11):
//! every live target comes before every target marked down, so one dead SRV
//! target never fails calls that its siblings could take.
//!
//! Clones of one [`Upstreams`] (the node's core shards) share one health
//! board: a target marked on one shard (by shard 0's pings, or by any
//! shard's B-leg INVITE) reaches the others at their next
//! [`Upstreams::sync_health`] (one atomic load when nothing changed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::{FailoverCodes, Hop};
use crate::auth::Credentials;
use crate::config::{IpNet, NumberFormat, UpstreamConfig};
use crate::sip::{Host, Transport, Uri};

/// At most this many targets per upstream (a DNS answer is not trusted to
/// be small; Kamailio's dispatcher keeps a similar cap per destination set).
pub const MAX_TARGETS: usize = 16;

/// Why an `[[upstream]]` entry cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The `uri` is not a `sip:` or `sips:` URI.
    #[error("upstream `{0}`: uri is not a sip: or sips: URI")]
    BadUri(String),
    /// `;transport=` names something other than udp or tcp (sipfront
    /// does not dial WebSocket peers: RFC 7118 clients connect to it).
    #[error("upstream `{0}`: unsupported transport")]
    BadTransport(String),
}

/// One address an upstream stands for: a fail-over hop of its own, with
/// its own health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Where requests go.
    pub addr: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// SRV priority (RFC 2782; 0 for an address without SRV).
    pub priority: u16,
    /// SRV weight among equal priorities.
    pub weight: u16,
    /// Health: false after failed pings or an INVITE it never answered.
    pub up: bool,
    /// When the DNS answer behind it expires (None: an IP literal).
    pub expires: Option<Instant>,
}

impl Target {
    /// A target that is up, with no SRV data and no expiry.
    pub fn fixed(addr: SocketAddr, transport: Transport) -> Target {
        Target {
            addr,
            transport,
            priority: 0,
            weight: 0,
            up: true,
            expires: None,
        }
    }
}

/// What the shell must resolve for a named upstream (RFC 3263 §4.1, §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resolve {
    /// The host name of the `uri`.
    pub host: String,
    /// An explicit port: A/AAAA only, no NAPTR/SRV.
    pub port: Option<u16>,
    /// An explicit `;transport=`: no NAPTR, SRV for that transport only.
    pub transport: Option<Transport>,
}

/// One gateway from its config entry, with its current targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Unique name from the config.
    pub name: String,
    /// The `uri` as configured.
    pub uri: String,
    /// `host[:port]` as written in Request-URI and To of the B-leg (the
    /// configured host: a carrier that hands out a name expects it there).
    pub hostport: String,
    /// Transport toward an IP literal (`;transport=`, default UDP).
    pub transport: Transport,
    /// Lower is tried first.
    pub priority: u32,
    /// Share among equal priorities.
    pub weight: u32,
    /// Requests from its addresses (and `trusted_cidrs`) are inbound DID calls.
    pub trusted: bool,
    /// More source networks that are this upstream's.
    pub trusted_cidrs: Vec<IpNet>,
    /// OPTIONS ping interval in seconds (0: never pinged).
    pub ping_interval_s: u32,
    /// Final responses that move a call to the next hop.
    pub failover: FailoverCodes,
    /// Where requests may go now (empty: not resolved yet, or gone).
    pub targets: Vec<Target>,
    /// The DNS query behind the targets; None for an IP literal.
    pub resolve: Option<Resolve>,
    /// The last DNS failure, until an answer comes.
    pub dns_error: Option<String>,
    /// How numbers are written toward it (`number_format`).
    pub number_format: NumberFormat,
    /// What answers its `401`/`407` (`username`/`password`); `None`: its
    /// challenges fail the attempt as before.
    pub credentials: Option<Arc<Credentials>>,
    /// Keep `credentials.username` registered here (`register = true`).
    pub register: bool,
    /// Expires asked for in our REGISTER.
    pub register_expires_s: u32,
    /// `relay`: calls through it are anchored by rtpengine (SPEC §8.4).
    pub media: crate::config::MediaMode,
}

impl Upstream {
    /// Parses one config entry. A host name gives no target until the
    /// shell resolves it.
    ///
    /// # Errors
    /// [`UpstreamError`] when the URI is not `sip:HOST[:port][;transport=udp|tcp]`.
    pub fn from_config(c: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let uri = Uri::parse(c.uri.trim()).ok_or_else(|| UpstreamError::BadUri(c.name.clone()))?;
        if !matches!(
            uri.scheme,
            crate::sip::Scheme::Sip | crate::sip::Scheme::Sips
        ) {
            return Err(UpstreamError::BadUri(c.name.clone()));
        }
        let explicit = uri
            .transport()
            .map_err(|_| UpstreamError::BadTransport(c.name.clone()))?;
        let transport = explicit.unwrap_or(Transport::Udp);
        let (hostport, targets, resolve) = match uri.host {
            Host::Name(name) if !name.is_empty() => {
                let hostport = match uri.port {
                    Some(p) => format!("{name}:{p}"),
                    None => name.to_owned(),
                };
                let resolve = Resolve {
                    host: name.to_ascii_lowercase(),
                    port: uri.port,
                    transport: explicit,
                };
                (hostport, Vec::new(), Some(resolve))
            }
            Host::Name(_) => return Err(UpstreamError::BadUri(c.name.clone())),
            Host::V4(_) | Host::V6(_) => {
                let ip = uri
                    .host
                    .ip()
                    .ok_or_else(|| UpstreamError::BadUri(c.name.clone()))?;
                let addr = SocketAddr::new(ip, uri.port.unwrap_or(transport.default_port()));
                let target = Target::fixed(addr, transport);
                (super::hop::hostport(addr), vec![target], None)
            }
        };
        Ok(Upstream {
            name: c.name.clone(),
            uri: c.uri.trim().to_owned(),
            hostport,
            transport,
            priority: c.priority,
            weight: c.weight,
            trusted: c.trusted,
            trusted_cidrs: c.trusted_cidrs.clone(),
            ping_interval_s: c.ping_interval_s,
            failover: FailoverCodes::from_config(&c.failover_codes),
            targets,
            resolve,
            dns_error: None,
            number_format: c.number_format,
            credentials: Credentials::new(&c.username, &c.auth_username, &c.password).map(Arc::new),
            register: c.register,
            register_expires_s: c.register_expires_s,
            media: c.media,
        })
    }

    /// Whether any target is up.
    pub fn up(&self) -> bool {
        self.targets.iter().any(|t| t.up)
    }

    /// The target out-of-call requests (REGISTER) go to: the first live one
    /// in SRV priority order, else the first; None before DNS answers.
    pub fn primary(&self) -> Option<&Target> {
        let best = |up: bool| {
            self.targets
                .iter()
                .filter(|t| t.up == up)
                .min_by_key(|t| t.priority)
        };
        best(true).or_else(|| best(false))
    }

    /// An attempt to call `number` (digits) through target `t` of this
    /// upstream, the number written in its `number_format`.
    pub fn hop(&self, number: &str, t: &Target, fork: u32) -> Hop {
        let written = self.number_format.write(number);
        let mut hop = Hop::number_via(&written, &self.hostport, t.addr, t.transport, fork);
        hop.carrier = Some(self.number_format);
        hop.failover = self.failover;
        hop.auth = self.credentials.clone();
        hop.media = self.media;
        hop
    }

    /// Whether `ip` is one of its targets' addresses (any port) or inside
    /// its `trusted_cidrs`.
    pub fn owns(&self, ip: IpAddr) -> bool {
        self.targets.iter().any(|t| t.addr.ip() == ip)
            || self.trusted_cidrs.iter().any(|n| n.contains(ip))
    }
}

/// All upstreams, in config order.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    list: Vec<Upstream>,
    /// Target health as last marked by any clone (shared by clones).
    board: Arc<HealthBoard>,
    /// The board's version this copy last applied.
    seen: u64,
}

/// Equal lists (health included); the shared board is not compared.
impl PartialEq for Upstreams {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Eq for Upstreams {}

/// The last health mark of each target, by (upstream, address, transport).
#[derive(Debug, Default)]
struct HealthBoard {
    version: AtomicU64,
    marks: Mutex<HashMap<(usize, SocketAddr, Transport), bool>>,
}

impl HealthBoard {
    fn publish(&self, target: (usize, SocketAddr, Transport), up: bool) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if marks.insert(target, up) != Some(up) {
            self.version.fetch_add(1, Ordering::Release);
        }
    }
}

/// splitmix64: a tiny deterministic stream from one random seed.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Orders `items` by `key`, shuffling each run of equal keys by weight: each
/// pick has probability weight / remaining weight, weight 0 only after the
/// others (RFC 2782 "Usage rules", also used for `[[upstream]]` weights).
fn weighted_order<K: Ord + Copy>(
    mut items: Vec<usize>,
    key: impl Fn(usize) -> K,
    weight: impl Fn(usize) -> u64,
    state: &mut u64,
) -> Vec<usize> {
    items.sort_by_key(|&i| key(i));
    let mut out = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let group_key = key(items[start]);
        let end = items[start..]
            .iter()
            .position(|&i| key(i) != group_key)
            .map_or(items.len(), |p| start + p);
        let mut group: Vec<usize> = items[start..end].to_vec();
        while !group.is_empty() {
            let total: u64 = group.iter().map(|&i| weight(i)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut r = next_random(state) % total;
                group
                    .iter()
                    .position(|&i| {
                        let w = weight(i);
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

impl Upstreams {
    /// Reads every `[[upstream]]`; named ones start with no target.
    ///
    /// # Errors
    /// The first entry that cannot be used.
    pub fn from_config(cfgs: &[UpstreamConfig]) -> Result<Upstreams, UpstreamError> {
        let list = cfgs
            .iter()
            .map(Upstream::from_config)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstreams::from_list(list))
    }

    /// From already-built entries (tests).
    pub fn from_list(list: Vec<Upstream>) -> Upstreams {
        Upstreams {
            list,
            ..Upstreams::default()
        }
    }

    /// Applies the health marks other clones (core shards) made since the
    /// last call; cheap when there are none.
    pub fn sync_health(&mut self) {
        let version = self.board.version.load(Ordering::Acquire);
        if version == self.seen {
            return;
        }
        let marks = self
            .board
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for ((i, addr, transport), up) in marks {
            self.set_local(i, addr, transport, up);
        }
        self.seen = version;
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

    /// The DNS queries the shell must run, by upstream index.
    pub fn resolutions(&self) -> Vec<(usize, Resolve)> {
        self.list
            .iter()
            .enumerate()
            .filter_map(|(i, u)| u.resolve.clone().map(|r| (i, r)))
            .collect()
    }

    /// Replaces upstream `i`'s targets with a DNS answer (at most
    /// [`MAX_TARGETS`]; an empty list with `error` when the name does not
    /// resolve). A target that was already known keeps its health, so a
    /// re-resolution does not revive a dead address. Returns false for an
    /// unknown index or an IP-literal upstream.
    pub fn set_targets(
        &mut self,
        i: usize,
        mut targets: Vec<Target>,
        error: Option<String>,
    ) -> bool {
        let Some(u) = self.list.get_mut(i) else {
            return false;
        };
        if u.resolve.is_none() {
            return false;
        }
        targets.truncate(MAX_TARGETS);
        for t in &mut targets {
            if let Some(old) = u
                .targets
                .iter()
                .find(|o| o.addr == t.addr && o.transport == t.transport)
            {
                t.up = old.up;
            }
        }
        u.targets = targets;
        u.dns_error = error;
        true
    }

    /// Marks one target of upstream `i` up or down, here and for every
    /// clone (at its next [`sync_health`](Self::sync_health)); returns
    /// whether its health changed here.
    pub fn set_target_up(
        &mut self,
        i: usize,
        addr: SocketAddr,
        transport: Transport,
        up: bool,
    ) -> bool {
        let changed = self.set_local(i, addr, transport, up);
        self.board.publish((i, addr, transport), up);
        changed
    }

    fn set_local(&mut self, i: usize, addr: SocketAddr, transport: Transport, up: bool) -> bool {
        let Some(t) = self.list.get_mut(i).and_then(|u| {
            u.targets
                .iter_mut()
                .find(|t| t.addr == addr && t.transport == transport)
        }) else {
            return false;
        };
        let changed = t.up != up;
        t.up = up;
        changed
    }

    /// The upstream (index) that has a target at `addr` over `transport`.
    pub fn target_of(&self, addr: SocketAddr, transport: Transport) -> Option<usize> {
        self.list.iter().position(|u| {
            u.targets
                .iter()
                .any(|t| t.addr == addr && t.transport == transport)
        })
    }

    /// Whether `ip` is any upstream's (a target address, any port, or
    /// inside its `trusted_cidrs`).
    pub fn is_upstream(&self, ip: IpAddr) -> bool {
        self.list.iter().any(|u| u.owns(ip))
    }

    /// Whether `ip` belongs to a `trusted` upstream: any address its name
    /// resolves to, any port, or its `trusted_cidrs` (SPEC §8.1).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.list.iter().any(|u| u.trusted && u.owns(ip))
    }

    /// Why no upstream has a target (the log line of a call refused `503`).
    pub fn why_no_target(&self) -> String {
        if self.list.is_empty() {
            return "no upstream configured".to_owned();
        }
        let parts: Vec<String> = self
            .list
            .iter()
            .map(|u| match &u.dns_error {
                Some(e) => format!("`{}` ({}): {e}", u.name, u.hostport),
                None => format!("`{}` ({}): not resolved yet", u.name, u.hostport),
            })
            .collect();
        format!("no upstream has an address: {}", parts.join("; "))
    }

    /// The fail-over order for one call as `(upstream, target)` indexes:
    /// upstreams by ascending priority, weighted inside one priority;
    /// each upstream's targets by SRV priority, weighted inside one; every
    /// live target before every target marked down (those stay a last
    /// resort). `random` seeds the choice, so a test passes a fixed value.
    pub fn plan(&self, random: u64) -> Vec<(usize, usize)> {
        let mut state = random;
        let list = &self.list;
        let ups = weighted_order(
            (0..list.len()).collect(),
            |i| (!list[i].up(), list[i].priority),
            |i| u64::from(list[i].weight),
            &mut state,
        );
        let mut live = Vec::new();
        let mut down = Vec::new();
        for i in ups {
            let targets = &list[i].targets;
            let order = weighted_order(
                (0..targets.len()).collect(),
                |j| targets[j].priority,
                |j| u64::from(targets[j].weight),
                &mut state,
            );
            for j in order {
                if targets[j].up {
                    live.push((i, j));
                } else {
                    down.push((i, j));
                }
            }
        }
        live.extend(down);
        live
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

    fn srv(addr: &str, priority: u16, weight: u16) -> Target {
        Target {
            priority,
            weight,
            ..Target::fixed(addr.parse().unwrap(), Transport::Udp)
        }
    }

    #[test]
    fn parses_uri() {
        let u = Upstream::from_config(&cfg("a", "sip:127.0.0.3:5080;transport=tcp", 1, 1)).unwrap();
        assert_eq!(u.targets[0].addr, "127.0.0.3:5080".parse().unwrap());
        assert_eq!(u.targets[0].transport, Transport::Tcp);
        assert_eq!(u.hostport, "127.0.0.3:5080");
        assert!(u.resolve.is_none());
        let u = Upstream::from_config(&cfg("b", "sip:10.0.0.1", 1, 1)).unwrap();
        assert_eq!(u.targets[0].addr.port(), 5060);
        assert_eq!(u.transport, Transport::Udp);
        let u = Upstream::from_config(&cfg("c", "sip:Carrier.Example", 1, 1)).unwrap();
        assert!(u.targets.is_empty() && !u.up());
        assert_eq!(u.hostport, "Carrier.Example");
        assert_eq!(
            u.resolve,
            Some(Resolve {
                host: "carrier.example".into(),
                port: None,
                transport: None
            })
        );
        let u = Upstream::from_config(&cfg("c", "sip:carrier.example:5070;transport=tcp", 1, 1))
            .unwrap();
        assert_eq!(u.hostport, "carrier.example:5070");
        assert_eq!(u.resolve.unwrap().port, Some(5070));
        assert!(matches!(
            Upstream::from_config(&cfg("d", "sip:10.0.0.1;transport=sctp", 1, 1)),
            Err(UpstreamError::BadTransport(_))
        ));
        assert!(matches!(
            Upstream::from_config(&cfg("d", "sip:10.0.0.1;transport=ws", 1, 1)),
            Err(UpstreamError::BadTransport(_))
        ));
        assert!(Upstream::from_config(&cfg("e", "http://x", 1, 1)).is_err());
        let u = Upstream::from_config(&cfg("f", "sips:carrier.example", 1, 1)).unwrap();
        assert_eq!(u.transport, Transport::Tls);
        let u = Upstream::from_config(&cfg("g", "sip:10.0.0.7;transport=tls", 1, 1)).unwrap();
        assert_eq!(u.targets[0].addr.port(), 5061);
        assert_eq!(u.targets[0].transport, Transport::Tls);
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
            assert_eq!(plan[2], (0, 0), "priority 5 comes last");
            if plan[0].0 == 1 {
                first_a += 1;
            }
        }
        // weight 3:1 → about 750 of 1000.
        assert!((650..850).contains(&first_a), "{first_a}");
        assert_eq!(ups.plan(42), ups.plan(42), "deterministic for a seed");
    }

    #[test]
    fn srv_targets_by_priority_then_weight() {
        let mut ups = Upstreams::from_config(&[cfg("c", "sip:carrier.example", 1, 1)]).unwrap();
        assert!(ups.plan(1).is_empty(), "no target before DNS");
        let targets = vec![
            srv("10.0.0.3:5060", 20, 1),
            srv("10.0.0.1:5060", 10, 60),
            srv("10.0.0.2:5060", 10, 20),
            srv("10.0.0.4:5060", 10, 0),
        ];
        assert!(ups.set_targets(0, targets, None));
        let mut first = [0u32; 4];
        for seed in 0..1000u64 {
            let plan = ups.plan(seed);
            assert_eq!(plan.len(), 4);
            assert_eq!(plan[3], (0, 0), "priority 20 last");
            assert_eq!(plan[2], (0, 3), "weight 0 after its weighted peers");
            first[plan[0].1] += 1;
        }
        // 60:20 → about 750 of 1000 first.
        assert!((650..850).contains(&first[1]), "{first:?}");
        assert_eq!(first[1] + first[2], 1000);
    }

    #[test]
    fn clones_share_health_marks_at_their_next_sync() {
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut shard0 = Upstreams::from_list(vec![Upstream::from_config(&cfg(
            "c",
            "sip:192.0.2.1:5060",
            1,
            1,
        ))
        .unwrap()]);
        let mut shard1 = shard0.clone();
        assert!(shard0.set_target_up(0, a, Transport::Udp, false));
        assert!(shard1.get(0).unwrap().up(), "not before its sync");
        shard1.sync_health();
        assert!(!shard1.get(0).unwrap().up());
        // Back up on shard 1 (its own INVITE was answered): shard 0 follows.
        shard1.set_target_up(0, a, Transport::Udp, true);
        shard0.sync_health();
        assert!(shard0.get(0).unwrap().up());
    }

    #[test]
    fn health_is_per_target_and_survives_re_resolution() {
        let mut ups = Upstreams::from_config(&[
            cfg("c", "sip:carrier.example", 1, 1),
            cfg("backup", "sip:10.0.0.9", 2, 1),
        ])
        .unwrap();
        ups.set_targets(
            0,
            vec![srv("10.0.0.1:5060", 10, 1), srv("10.0.0.2:5060", 20, 1)],
            None,
        );
        let dead: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        assert_eq!(ups.target_of(dead, Transport::Udp), Some(0));
        assert!(ups.set_target_up(0, dead, Transport::Udp, false));
        assert!(
            !ups.set_target_up(0, dead, Transport::Udp, false),
            "no change"
        );
        // The live sibling first, then the other upstream, the dead one last.
        assert_eq!(ups.plan(7), vec![(0, 1), (1, 0), (0, 0)]);
        assert!(ups.get(0).unwrap().up());
        // A new answer keeps the dead mark; a new address starts up.
        ups.set_targets(
            0,
            vec![srv("10.0.0.1:5060", 10, 1), srv("10.0.0.5:5060", 20, 1)],
            None,
        );
        assert!(!ups.get(0).unwrap().targets[0].up);
        assert!(ups.get(0).unwrap().targets[1].up);
        // IP-literal upstreams take no DNS answer.
        assert!(!ups.set_targets(1, Vec::new(), None));
    }

    #[test]
    fn trusted_by_every_resolved_address_and_cidrs() {
        let mut c = cfg("c", "sip:carrier.example", 1, 1);
        c.trusted = true;
        c.trusted_cidrs = vec!["192.0.2.0/24".parse().unwrap()];
        let mut ups = Upstreams::from_config(&[c, cfg("u", "sip:10.0.0.9", 1, 1)]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(ups.is_trusted(ip("192.0.2.77")));
        assert!(!ups.is_trusted(ip("10.0.0.1")));
        ups.set_targets(
            0,
            vec![srv("10.0.0.1:5060", 10, 1), srv("10.0.0.2:5070", 20, 1)],
            None,
        );
        assert!(ups.is_trusted(ip("10.0.0.1")) && ups.is_trusted(ip("10.0.0.2")));
        assert!(!ups.is_trusted(ip("10.0.0.9")), "not a trusted upstream");
        assert!(ups.is_upstream(ip("10.0.0.9")));
        ups.set_targets(0, Vec::new(), Some("NXDOMAIN".into()));
        assert!(!ups.is_trusted(ip("10.0.0.1")));
        assert!(
            ups.why_no_target().contains("NXDOMAIN"),
            "{}",
            ups.why_no_target()
        );
    }

    #[test]
    fn targets_are_capped() {
        let mut ups = Upstreams::from_config(&[cfg("c", "sip:carrier.example", 1, 1)]).unwrap();
        let many = (0..100u16)
            .map(|p| srv(&format!("10.0.1.{}:5060", p % 250), p, 1))
            .collect();
        ups.set_targets(0, many, None);
        assert_eq!(ups.get(0).unwrap().targets.len(), MAX_TARGETS);
    }
}
