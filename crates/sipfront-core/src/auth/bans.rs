//! Brute-force protection (what Kamailio operators build from pike +
//! htable): wrong credentials are counted per source IP in a fixed window;
//! a source that reaches the limit is banned, and a source banned again is
//! banned twice as long (up to a day). Banned sources get no answer at all,
//! so a password cracker learns nothing and costs us one hash lookup per
//! packet. Sans-IO: time comes in as `now`.
//!
//! Concurrent: every core shard of a node shares one `Bans` (issue 17 goal
//! 2), so the maps are sharded (`dashmap`) and no lock is held across more
//! than one map entry; a source's failures count toward one ban whichever
//! shard its requests land on.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] sources are counted; past
//! that, expired windows are dropped first and new sources are not counted
//! until there is room (their failures still get `403`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use crate::config::{IpNet, SecuritySettings};

/// Sources counted at once.
pub(crate) const MAX_TRACKED: usize = 100_000;
/// Longest ban after repeats.
const MAX_BAN: Duration = Duration::from_secs(24 * 3600);
/// A source that authenticated within this long counts as known.
const KNOWN_FOR: Duration = Duration::from_secs(3600);

/// Limits (`[security]` in the config).
#[derive(Clone, Debug)]
pub struct BanPolicy {
    /// Failures in one window that ban the source; 0 disables banning.
    pub max_failures: u32,
    /// Length of the counting window.
    pub window: Duration,
    /// First ban; each repeat doubles it.
    pub ban: Duration,
    /// Sources never banned.
    pub allow: Vec<IpNet>,
}

impl From<&SecuritySettings> for BanPolicy {
    fn from(s: &SecuritySettings) -> BanPolicy {
        BanPolicy {
            max_failures: s.max_auth_failures,
            window: Duration::from_secs(s.failure_window_s),
            ban: Duration::from_secs(s.ban_s),
            allow: s.allow.clone(),
        }
    }
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            max_failures: 10,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(900),
            allow: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Count {
    since: Instant,
    failures: u32,
}

/// One banned source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    /// When the ban ends.
    pub until: Instant,
    /// How many times this source has been banned.
    pub strikes: u32,
}

/// Failure counts and bans, shared by the node's shards.
#[derive(Debug, Default)]
pub struct Bans {
    policy: ArcSwap<BanPolicy>,
    counts: DashMap<IpAddr, Count>,
    banned: DashMap<IpAddr, Ban>,
    /// Sources with a recent successful authentication, and when.
    known: DashMap<IpAddr, Instant>,
    /// Packets dropped because their source was banned.
    dropped: AtomicU64,
}

impl Bans {
    /// No counts, no bans.
    pub fn new(policy: BanPolicy) -> Bans {
        Bans {
            policy: ArcSwap::from_pointee(policy),
            ..Bans::default()
        }
    }

    /// New limits (SIGHUP); counts and bans stay.
    pub fn set_policy(&self, policy: BanPolicy) {
        self.policy.store(Arc::new(policy));
    }

    /// Packets dropped because their source was banned.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether packets from `ip` are dropped now. Counts the drop.
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        let banned = self.banned.get(&ip).is_some_and(|b| b.until > now);
        if banned {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        banned
    }

    /// Wrong credentials from `ip`. Returns the ban when this one bans it.
    /// `exempt` sources (trusted upstreams) are never counted.
    pub fn failure(&self, ip: IpAddr, exempt: bool, now: Instant) -> Option<Ban> {
        let p = self.policy.load();
        if p.max_failures == 0 || exempt || p.allow.iter().any(|n| n.contains(ip)) {
            return None;
        }
        if !self.counts.contains_key(&ip) && self.counts.len() >= MAX_TRACKED {
            let window = p.window;
            self.counts
                .retain(|_, c| now.saturating_duration_since(c.since) < window);
            if self.counts.len() >= MAX_TRACKED {
                return None;
            }
        }
        {
            // One entry lock: concurrent failures from one source count
            // one by one, and exactly one of them reaches the limit.
            let mut c = self.counts.entry(ip).or_insert(Count {
                since: now,
                failures: 0,
            });
            if now.saturating_duration_since(c.since) >= p.window {
                *c = Count {
                    since: now,
                    failures: 0,
                };
            }
            c.failures += 1;
            if c.failures < p.max_failures {
                return None;
            }
            c.failures = 0;
        }
        self.counts.remove_if(&ip, |_, c| c.failures == 0);
        let mut b = self.banned.entry(ip).or_insert(Ban {
            until: now,
            strikes: 0,
        });
        let strikes = b.strikes.saturating_add(1);
        let factor = 1u32 << (strikes - 1).min(16);
        let length = p.ban.saturating_mul(factor).min(MAX_BAN);
        *b = Ban {
            until: now + length,
            strikes,
        };
        Some(*b)
    }

    /// Right credentials from `ip` at `now`: its count starts again, and
    /// for an hour it is a known source (see [`Bans::is_known`]).
    pub fn success(&self, ip: IpAddr, now: Instant) {
        self.counts.remove(&ip);
        if self.known.contains_key(&ip) || self.known.len() < MAX_TRACKED {
            self.known.insert(ip, now);
        }
    }

    /// Whether `ip` authenticated within the last hour: a customer's PBX
    /// or SBC, not a stranger (rate limits apply to strangers only).
    pub fn is_known(&self, ip: IpAddr, now: Instant) -> bool {
        self.known
            .get(&ip)
            .is_some_and(|at| now.saturating_duration_since(*at) < KNOWN_FOR)
    }

    /// Lifts a ban (the API's `DELETE /v1/bans/{ip}`); false if none.
    pub fn unban(&self, ip: IpAddr) -> bool {
        self.counts.remove(&ip);
        self.banned.remove(&ip).is_some()
    }

    /// Bans in force at `now`.
    pub fn list(&self, now: Instant) -> Vec<(IpAddr, Ban)> {
        let mut v: Vec<_> = self
            .banned
            .iter()
            .filter(|e| e.value().until > now)
            .map(|e| (*e.key(), *e.value()))
            .collect();
        v.sort_by_key(|(ip, _)| *ip);
        v
    }

    /// Forgets counts whose window has passed and bans long over (a
    /// source's strikes are kept for a day after its ban ends).
    pub fn sweep(&self, now: Instant) {
        let window = self.policy.load().window;
        self.counts
            .retain(|_, c| now.saturating_duration_since(c.since) < window);
        self.banned
            .retain(|_, b| now.saturating_duration_since(b.until) < MAX_BAN);
        self.known
            .retain(|_, at| now.saturating_duration_since(*at) < KNOWN_FOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &str = "192.0.2.7";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ten_failures_in_a_minute_ban_for_fifteen_minutes_then_doubling() {
        let b = Bans::new(BanPolicy::default());
        let t0 = Instant::now();
        for _ in 0..9 {
            assert_eq!(b.failure(ip(IP), false, t0), None);
        }
        let ban = b.failure(ip(IP), false, t0).expect("tenth failure bans");
        assert_eq!(ban.until, t0 + Duration::from_secs(900));
        assert!(b.check(ip(IP), t0 + Duration::from_secs(899)));
        assert!(
            !b.check(ip("192.0.2.8"), t0),
            "another source is unaffected"
        );
        assert!(!b.check(ip(IP), t0 + Duration::from_secs(900)));
        assert_eq!(b.dropped(), 1);
        let t1 = t0 + Duration::from_secs(1000);
        for _ in 0..10 {
            b.failure(ip(IP), false, t1);
        }
        assert_eq!(b.list(t1)[0].1.until, t1 + Duration::from_secs(1800));
    }

    #[test]
    fn failures_spread_over_windows_do_not_ban_and_success_resets() {
        let b = Bans::new(BanPolicy::default());
        let t0 = Instant::now();
        for i in 0..30u64 {
            // 9 per minute: never 10 in one window.
            let t = t0 + Duration::from_secs(i / 9 * 61);
            assert_eq!(b.failure(ip(IP), false, t), None, "failure {i}");
        }
        for _ in 0..9 {
            b.failure(ip("192.0.2.9"), false, t0);
        }
        b.success(ip("192.0.2.9"), t0);
        assert!(b.is_known(ip("192.0.2.9"), t0 + Duration::from_secs(3599)));
        assert!(!b.is_known(ip("192.0.2.9"), t0 + Duration::from_secs(3600)));
        assert_eq!(b.failure(ip("192.0.2.9"), false, t0), None);
    }

    #[test]
    fn trusted_and_allowed_sources_are_never_banned_and_unban_lifts() {
        let policy = BanPolicy {
            allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..BanPolicy::default()
        };
        let b = Bans::new(policy);
        let t0 = Instant::now();
        for _ in 0..50 {
            assert_eq!(b.failure(ip("10.1.2.3"), false, t0), None);
            assert_eq!(b.failure(ip("198.51.100.1"), true, t0), None);
        }
        for _ in 0..10 {
            b.failure(ip(IP), false, t0);
        }
        assert!(b.unban(ip(IP)));
        assert!(!b.check(ip(IP), t0));
        assert!(!b.unban(ip(IP)));
    }

    #[test]
    fn failures_from_several_threads_count_toward_one_ban_exactly() {
        let b = std::sync::Arc::new(Bans::new(BanPolicy::default()));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    (0..10)
                        .filter_map(|_| b.failure(ip(IP), false, t0))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut bans: Vec<Ban> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        bans.sort_by_key(|b| b.strikes);
        // 40 failures, 10 per ban: four bans, each one strike more.
        assert_eq!(
            bans.iter().map(|b| b.strikes).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(b.check(ip(IP), t0));
    }

    #[test]
    fn tracked_sources_are_bounded() {
        let b = Bans::new(BanPolicy::default());
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let a = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            b.failure(a, false, t0);
        }
        assert!(b.counts.len() <= MAX_TRACKED);
        b.sweep(t0 + Duration::from_secs(61));
        assert!(b.counts.is_empty());
    }
}
