//! Upstream health by OPTIONS pings (RFC 3261 §11, Kamailio dispatcher
//! style): every upstream with `ping_interval_s > 0` gets an OPTIONS each
//! interval. A response 100–499 other than 408 marks it up (it is alive and
//! talking SIP, even if it refuses OPTIONS); 408, 5xx, 6xx, Timer F or a
//! transport error marks it down. Down upstreams are tried only after all
//! live ones (`routing::Upstreams::plan`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::leg::Local;
use super::Action;
use crate::routing::Upstreams;
use crate::sip::build::{self, RequestBuilder};
use crate::sip::{Message, Method, StatusCode, Transport};
use crate::transaction::TransactionKey;

/// Ping schedule and outstanding pings.
#[derive(Debug, Default)]
pub(crate) struct Health {
    next: Vec<Option<Instant>>,
    pending: HashMap<TransactionKey, usize>,
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

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next.iter().flatten().min().copied()
    }

    /// Sends the pings that are due.
    pub(crate) fn handle_timeout(
        &mut self,
        ups: &Upstreams,
        local: &Local,
        now: Instant,
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
            if self.pending.values().any(|&p| p == i) {
                continue; // the previous ping is still out
            }
            self.cseq = self.cseq.wrapping_add(1);
            let tparam = if up.transport == Transport::Tcp {
                ";transport=tcp"
            } else {
                ""
            };
            let bytes =
                RequestBuilder::new(Method::Options, &format!("sip:{}{tparam}", up.hostport))
                    .via(
                        up.transport,
                        &local.sent_by(up.transport),
                        &build::new_branch(),
                        true,
                    )
                    .from(
                        &format!("<sip:sipfront@{}>", local.public_address),
                        Some(&build::new_tag()),
                    )
                    .to(&format!("<sip:{}>", up.hostport), None)
                    .call_id(&build::new_call_id(&local.public_address))
                    .cseq(self.cseq)
                    .build();
            let Ok(msg) = Message::parse(bytes) else {
                continue;
            };
            let Ok(key) = TransactionKey::client(&msg) else {
                continue;
            };
            self.pending.insert(key, i);
            out.push_back(Action::Request {
                request: msg,
                dest: up.addr,
                transport: up.transport,
            });
        }
    }

    /// A response to a ping; false if `key` is not a ping.
    pub(crate) fn on_response(
        &mut self,
        key: &TransactionKey,
        status: StatusCode,
        ups: &mut Upstreams,
    ) -> bool {
        let Some(&i) = self.pending.get(key) else {
            return false;
        };
        if status.is_final() {
            self.pending.remove(key);
            let alive = status.0 < 500 && status.0 != 408;
            mark(ups, i, alive);
        }
        true
    }

    /// A ping timed out or could not be sent; false if `key` is not a ping.
    pub(crate) fn on_failure(&mut self, key: &TransactionKey, ups: &mut Upstreams) -> bool {
        let Some(i) = self.pending.remove(key) else {
            return false;
        };
        mark(ups, i, false);
        true
    }

    /// Forgets a terminated ping; false if `key` is not a ping.
    pub(crate) fn on_terminated(&mut self, key: &TransactionKey) -> bool {
        self.pending.remove(key).is_some()
    }
}

fn mark(ups: &mut Upstreams, i: usize, up: bool) {
    if ups.get(i).is_some_and(|u| u.up != up) {
        if let Some(u) = ups.get(i) {
            tracing::info!(upstream = %u.name, up, "upstream health changed");
        }
    }
    ups.set_up(i, up);
}
