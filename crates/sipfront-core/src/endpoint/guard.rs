//! The front door's own defences, before any SIP processing (SPEC-silent,
//! issue #7; what pike + htable + a User-Agent check do in Kamailio):
//! banned sources and SIP scanners get no answer at all, and wrong
//! credentials from the INVITE and REGISTER paths are counted toward bans.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::Endpoint;
use crate::auth::{AuthError, BanPolicy};
use crate::config::SecuritySettings;
use crate::sip::{HeaderName, Message};

/// How often expired counts and bans are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Sources whose request rate is tracked at once (bounded memory).
const MAX_BUCKETS: usize = 100_000;

/// `[security]` as the endpoint applies it.
#[derive(Clone, Debug, Default)]
pub struct GuardConfig {
    /// Brute-force limits.
    pub bans: BanPolicy,
    /// Lowercased User-Agent fragments of scanners.
    pub user_agent_block: Vec<String>,
    /// New out-of-dialog requests per second per source; 0: unlimited.
    pub rate_limit: u32,
    /// Live transactions past which new INVITEs get `503`.
    pub max_transactions: usize,
}

/// One source's token bucket (capacity twice the rate).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source token buckets for new out-of-dialog requests, shared by the
/// node's shards (a source's rate is its rate over all of them).
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: DashMap<IpAddr, Bucket>,
    /// Requests refused for exceeding the rate.
    limited: AtomicU64,
}

impl RateLimiter {
    /// Requests refused for exceeding the rate.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Takes one token for `ip`; false when its bucket is empty.
    fn take(&self, ip: IpAddr, rate: u32, now: Instant) -> bool {
        let cap = f64::from(rate) * 2.0;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_BUCKETS {
            // Full buckets carry no information: forget them first.
            self.buckets.retain(|_, b| {
                now.saturating_duration_since(b.at).as_secs_f64() * f64::from(rate) < cap
            });
            if self.buckets.len() >= MAX_BUCKETS {
                return true;
            }
        }
        let mut b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * f64::from(rate);
        b.tokens = (b.tokens + refill).min(cap);
        // Shards pass their own `now`: a bucket's time never goes back.
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            drop(b);
            self.limited.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

impl From<&SecuritySettings> for GuardConfig {
    fn from(s: &SecuritySettings) -> GuardConfig {
        GuardConfig {
            bans: BanPolicy::from(s),
            user_agent_block: s
                .user_agent_block
                .iter()
                .map(|u| u.trim().to_ascii_lowercase())
                .filter(|u| !u.is_empty())
                .collect(),
            rate_limit: s.rate_limit,
            max_transactions: s.max_transactions,
        }
    }
}

/// Whether `hay` contains `needle` (already lowercase), ignoring ASCII case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Endpoint {
    /// Whether a datagram or frame from `ip` is dropped unread (banned).
    pub(super) fn banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        if now >= self.next_sweep {
            self.shared.bans().sweep(now);
            self.next_sweep = now + SWEEP_EVERY;
        }
        self.shared.bans().check(ip, now)
    }

    /// Whether a request comes from a known SIP scanner (dropped unanswered,
    /// so the scanner cannot even tell a SIP service is here).
    pub(super) fn scanner(&mut self, req: &Message) -> bool {
        let Some(ua) = req.header(&HeaderName::UserAgent) else {
            return false;
        };
        // Per request: a case-insensitive byte search, no allocation.
        let hit = self
            .cfg
            .guard
            .user_agent_block
            .iter()
            .any(|b| contains_ignore_case(ua, b.as_bytes()));
        if hit {
            self.stats.scanners_dropped += 1;
            tracing::debug!(user_agent = %String::from_utf8_lossy(ua), "scanner dropped unanswered");
        }
        hit
    }

    /// Whether a new out-of-dialog request from `ip` is within its rate.
    /// Only strangers are limited: upstreams, `allow` sources, IP trunks,
    /// the other nodes of the fleet and sources that authenticated in the
    /// last hour are customers or peers, whose load (an SBC registering
    /// thousands of phones, a node relaying calls) is not an attack.
    pub(super) fn within_rate(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.cfg.guard.rate_limit;
        if rate == 0
            || self.b2bua.upstreams().is_upstream(ip)
            || self.shared.is_fleet_peer_ip(ip)
            || self.cfg.guard.bans.allow.iter().any(|n| n.contains(ip))
            || self.b2bua.admission().is_ip_trunk(ip)
            || self.shared.bans().is_known(ip, now)
        {
            return true;
        }
        self.shared.rates().take(ip, rate, now)
    }

    /// Whether the node is past its transaction bound: new INVITEs get
    /// `503` so the calls in progress keep their capacity.
    pub(super) fn overloaded(&self) -> bool {
        self.txns.len() > self.cfg.guard.max_transactions
    }

    /// Counts the outcome of a digest check from `ip`: wrong credentials
    /// toward a ban, right ones reset the count.
    pub(super) fn auth_outcome(
        &mut self,
        ip: IpAddr,
        outcome: Result<(), AuthError>,
        now: Instant,
    ) {
        match outcome {
            Ok(()) => self.shared.bans().success(ip, now),
            Err(AuthError::Forbidden) => {
                // Never an upstream: its responses and DID calls must flow.
                let exempt = self.b2bua.upstreams().is_upstream(ip);
                if let Some(ban) = self.shared.bans().failure(ip, exempt, now) {
                    let secs = ban.until.saturating_duration_since(now).as_secs();
                    tracing::warn!(
                        source = %ip,
                        ban_s = secs,
                        strikes = ban.strikes,
                        "source banned after repeated wrong credentials; it gets no answer until then"
                    );
                }
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_sources_bucket_is_one_over_every_shard() {
        let limiter = Arc::new(RateLimiter::default());
        let ip: IpAddr = [192, 0, 2, 7].into();
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&limiter);
                std::thread::spawn(move || (0..10).filter(|_| l.take(ip, 5, t0)).count())
            })
            .collect();
        let granted: usize = handles.into_iter().map(|h| h.join().unwrap_or(99)).sum();
        // Rate 5/s: a bucket of 10, whichever thread asks.
        assert_eq!(granted, 10);
        assert_eq!(limiter.limited(), 30);
    }
}
