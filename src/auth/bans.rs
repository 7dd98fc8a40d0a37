//! Brute-force protection (what Kamailio operators build from pike +
//! htable): wrong credentials are counted per source IP in a fixed window;
//! a source that reaches the limit is banned, and a source banned again is
//! banned twice as long (up to a day). Banned sources get no answer at all,
//! so a password cracker learns nothing and costs us one hash lookup per
//! packet. Sans-IO: time comes in as `now`.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] sources are counted; past
//! that, expired windows are dropped first and new sources are not counted
//! until there is room (their failures still get `403`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

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

/// Failure counts and bans.
#[derive(Debug, Default)]
pub struct Bans {
    policy: BanPolicy,
    counts: HashMap<IpAddr, Count>,
    banned: HashMap<IpAddr, Ban>,
    /// Sources with a recent successful authentication, and when.
    known: HashMap<IpAddr, Instant>,
    /// Packets dropped because their source was banned.
    pub dropped: u64,
}

impl Bans {
    /// No counts, no bans.
    pub fn new(policy: BanPolicy) -> Bans {
        Bans {
            policy,
            ..Bans::default()
        }
    }

    /// New limits (SIGHUP); counts and bans stay.
    pub fn set_policy(&mut self, policy: BanPolicy) {
        self.policy = policy;
    }

    /// Whether packets from `ip` are dropped now. Counts the drop.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> bool {
        match self.banned.get(&ip) {
            Some(b) if b.until > now => {
                self.dropped += 1;
                true
            }
            _ => false,
        }
    }

    /// Wrong credentials from `ip`. Returns the ban when this one bans it.
    /// `exempt` sources (trusted upstreams) are never counted.
    pub fn failure(&mut self, ip: IpAddr, exempt: bool, now: Instant) -> Option<Ban> {
        let p = &self.policy;
        if p.max_failures == 0 || exempt || p.allow.iter().any(|n| n.contains(ip)) {
            return None;
        }
        if !self.counts.contains_key(&ip) && self.counts.len() >= MAX_TRACKED {
            let window = p.window;
            self.counts
                .retain(|_, c| now.duration_since(c.since) < window);
            if self.counts.len() >= MAX_TRACKED {
                return None;
            }
        }
        let c = self.counts.entry(ip).or_insert(Count {
            since: now,
            failures: 0,
        });
        if now.duration_since(c.since) >= p.window {
            *c = Count {
                since: now,
                failures: 0,
            };
        }
        c.failures += 1;
        if c.failures < p.max_failures {
            return None;
        }
        self.counts.remove(&ip);
        let strikes = self.banned.get(&ip).map_or(1, |b| b.strikes + 1);
        let factor = 1u32 << (strikes - 1).min(16);
        let length = p.ban.saturating_mul(factor).min(MAX_BAN);
        let ban = Ban {
            until: now + length,
            strikes,
        };
        self.banned.insert(ip, ban);
        Some(ban)
    }

    /// Right credentials from `ip` at `now`: its count starts again, and
    /// for an hour it is a known source (see [`Bans::is_known`]).
    pub fn success(&mut self, ip: IpAddr, now: Instant) {
        self.counts.remove(&ip);
        if self.known.len() < MAX_TRACKED || self.known.contains_key(&ip) {
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
    pub fn unban(&mut self, ip: IpAddr) -> bool {
        self.counts.remove(&ip);
        self.banned.remove(&ip).is_some()
    }

    /// Bans in force at `now`.
    pub fn list(&self, now: Instant) -> Vec<(IpAddr, Ban)> {
        let mut v: Vec<_> = self
            .banned
            .iter()
            .filter(|(_, b)| b.until > now)
            .map(|(ip, b)| (*ip, *b))
            .collect();
        v.sort_by_key(|(ip, _)| *ip);
        v
    }

    /// Forgets counts whose window has passed and bans long over (a
    /// source's strikes are kept for a day after its ban ends).
    pub fn sweep(&mut self, now: Instant) {
        let window = self.policy.window;
        self.counts
            .retain(|_, c| now.duration_since(c.since) < window);
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
        let mut b = Bans::new(BanPolicy::default());
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
        assert_eq!(b.dropped, 1);
        let t1 = t0 + Duration::from_secs(1000);
        for _ in 0..10 {
            b.failure(ip(IP), false, t1);
        }
        assert_eq!(b.list(t1)[0].1.until, t1 + Duration::from_secs(1800));
    }

    #[test]
    fn failures_spread_over_windows_do_not_ban_and_success_resets() {
        let mut b = Bans::new(BanPolicy::default());
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
        let mut b = Bans::new(policy);
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
    fn tracked_sources_are_bounded() {
        let mut b = Bans::new(BanPolicy::default());
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
