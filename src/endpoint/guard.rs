//! The front door's own defences, before any SIP processing (SPEC-silent,
//! issue #7; what pike + htable + a User-Agent check do in Kamailio):
//! banned sources and SIP scanners get no answer at all, and wrong
//! credentials from the INVITE and REGISTER paths are counted toward bans.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Endpoint;
use crate::auth::{AuthError, BanPolicy};
use crate::config::SecuritySettings;
use crate::sip::{HeaderName, Message};

/// How often expired counts and bans are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// `[security]` as the endpoint applies it.
#[derive(Clone, Debug, Default)]
pub struct GuardConfig {
    /// Brute-force limits.
    pub bans: BanPolicy,
    /// Lowercased User-Agent fragments of scanners.
    pub user_agent_block: Vec<String>,
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
        }
    }
}

impl Endpoint {
    /// Whether a datagram or frame from `ip` is dropped unread (banned).
    pub(super) fn banned(&mut self, ip: IpAddr, now: Instant) -> bool {
        if now >= self.next_sweep {
            self.bans.sweep(now);
            self.next_sweep = now + SWEEP_EVERY;
        }
        self.bans.check(ip, now)
    }

    /// Whether a request comes from a known SIP scanner (dropped unanswered,
    /// so the scanner cannot even tell a SIP service is here).
    pub(super) fn scanner(&mut self, req: &Message) -> bool {
        let Some(ua) = req.header(&HeaderName::UserAgent) else {
            return false;
        };
        let ua = String::from_utf8_lossy(ua).to_ascii_lowercase();
        let hit = self
            .cfg
            .guard
            .user_agent_block
            .iter()
            .any(|b| ua.contains(b.as_str()));
        if hit {
            self.stats.scanners_dropped += 1;
            tracing::debug!(user_agent = %ua, "scanner dropped unanswered");
        }
        hit
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
            Ok(()) => self.bans.success(ip),
            Err(AuthError::Forbidden) => {
                // Never an upstream: its responses and DID calls must flow.
                let exempt = self.b2bua.upstreams().is_upstream(ip);
                if let Some(ban) = self.bans.failure(ip, exempt, now) {
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
