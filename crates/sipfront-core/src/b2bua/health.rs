//! Upstream health by OPTIONS pings (RFC 3261 §11, Kamailio dispatcher
//! style), kept per target: every address an upstream stands for (its IP,
//! or each SRV target and address its name resolved to, RFC 3263) gets an
//! OPTIONS each `ping_interval_s`. A response 100–499 other than 408 marks
//! that target up (alive and talking SIP, even if it refuses OPTIONS); 408,
//! 5xx, 6xx, Timer F or a transport error marks it down. Down targets are
//! tried only after all live ones (`routing::Upstreams::plan`), so one dead
//! target never fails calls its siblings can take (Kamailio issue 4911).
//!
//! A B-leg INVITE that a target never answers marks it down too, and any
//! response to one marks it up (passive health, like dispatcher's
//! `ds_mark_dst` in a failure route): without pings the dead target is then
//! not the first hop of the next call.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::leg::Local;
use super::Action;
use crate::routing::Upstreams;
use crate::sip::build::RequestBuilder;
use crate::sip::random::Random;
use crate::sip::{Message, Method, StatusCode, Transport};
use crate::transaction::TransactionKey;

/// One pinged target: upstream index, address, transport.
type Pinged = (usize, SocketAddr, Transport);

/// Ping schedule (per upstream) and outstanding pings (per target).
#[derive(Debug, Default)]
pub(crate) struct Health {
    next: Vec<Option<Instant>>,
    pending: HashMap<TransactionKey, Pinged>,
    cseq: u32,
    armed: bool,
}

impl Health {
    /// Schedules the first ping of every pinged upstream at `now`.
    pub(crate) fn arm(&mut self, ups: &Upstreams, now: Instant) {
        if self.armed {
            return;
        }
        self.armed = true;
        self.next = ups
            .iter()
            .map(|u| (u.ping_interval_s > 0).then_some(now))
            .collect();
    }

    /// Pings upstream `i`'s targets at `now` (its DNS answer changed: new
    /// targets should not wait a whole interval for their first ping).
    pub(crate) fn poke(&mut self, i: usize, now: Instant) {
        if let Some(Some(at)) = self.next.get_mut(i) {
            *at = (*at).min(now);
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next.iter().flatten().min().copied()
    }

    /// Sends the pings that are due: one per target of each due upstream.
    pub(crate) fn handle_timeout(
        &mut self,
        ups: &Upstreams,
        local: &Local,
        now: Instant,
        rng: &mut Random,
        out: &mut std::collections::VecDeque<Action>,
    ) {
        for (i, next) in self.next.iter_mut().enumerate() {
            let Some(at) = *next else { continue };
            if at > now {
                continue;
            }
            let Some(up) = ups.get(i) else {
                *next = None;
                continue;
            };
            *next = Some(now + Duration::from_secs(u64::from(up.ping_interval_s.max(1))));
            for t in &up.targets {
                let target = (i, t.addr, t.transport);
                if self.pending.values().any(|p| *p == target) {
                    continue; // the previous ping is still out
                }
                self.cseq = self.cseq.wrapping_add(1);
                let tparam = crate::routing::uri_param(t.transport);
                let bytes =
                    RequestBuilder::new(Method::Options, &format!("sip:{}{tparam}", up.hostport))
                        .via(
                            t.transport,
                            &local.sent_by(t.transport),
                            &rng.branch(),
                            true,
                        )
                        .from(
                            &format!("<sip:sipfront@{}>", local.public_address),
                            Some(&rng.tag()),
                        )
                        .to(&format!("<sip:{}>", up.hostport), None)
                        .call_id(&rng.call_id(&local.public_address))
                        .cseq(self.cseq)
                        .build();
                let Ok(msg) = Message::parse(bytes) else {
                    continue;
                };
                let Ok(key) = TransactionKey::client(&msg) else {
                    continue;
                };
                self.pending.insert(key, target);
                out.push_back(Action::Request {
                    request: msg,
                    dest: t.addr,
                    transport: t.transport,
                });
            }
        }
    }

    /// A response to a ping; false if `key` is not a ping.
    pub(crate) fn on_response(
        &mut self,
        key: &TransactionKey,
        status: StatusCode,
        ups: &mut Upstreams,
    ) -> bool {
        let Some(&target) = self.pending.get(key) else {
            return false;
        };
        if status.is_final() {
            self.pending.remove(key);
            let alive = status.0 < 500 && status.0 != 408;
            mark(ups, target, alive, "OPTIONS");
        }
        true
    }

    /// A ping timed out or could not be sent; false if `key` is not a ping.
    pub(crate) fn on_failure(&mut self, key: &TransactionKey, ups: &mut Upstreams) -> bool {
        let Some(target) = self.pending.remove(key) else {
            return false;
        };
        mark(ups, target, false, "OPTIONS");
        true
    }

    /// Forgets a terminated ping; false if `key` is not a ping.
    pub(crate) fn on_terminated(&mut self, key: &TransactionKey) -> bool {
        self.pending.remove(key).is_some()
    }
}

/// Passive health from a call: the target at `dest` answered a B-leg INVITE
/// (`alive`) or never did.
pub(crate) fn call_outcome(ups: &mut Upstreams, dest: (SocketAddr, Transport), alive: bool) {
    if let Some(i) = ups.target_of(dest.0, dest.1) {
        mark(ups, (i, dest.0, dest.1), alive, "INVITE");
    }
}

fn mark(ups: &mut Upstreams, (i, addr, transport): Pinged, up: bool, by: &str) {
    if ups.set_target_up(i, addr, transport, up) {
        if let Some(u) = ups.get(i) {
            let live = u.targets.iter().filter(|t| t.up).count();
            tracing::info!(
                upstream = %u.name,
                target = %addr,
                transport = transport.as_str(),
                up,
                live_targets = live,
                "upstream target health changed ({by})"
            );
        }
    }
}
