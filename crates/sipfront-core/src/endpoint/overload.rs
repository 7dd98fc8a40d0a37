//! Overload control: work that queued too long between the socket and the
//! core is shed before it costs anything (what a careful SBC does).
//!
//! Under overload, UDP requests queue; by the time the core reads one its
//! caller has retransmitted it (Timer A/E, RFC 3261 §17.1.1.2, §17.1.2.2)
//! and processing stale copies only feeds more retransmissions. So, by how
//! long a message waited (its [`Inbound::received`] stamp against `now`):
//!
//! * a *new* INVITE (not a retransmission, no To tag) that waited longer than
//!   `[server] overload_queue_ms` is answered `503 Service Unavailable` with
//!   `Retry-After` (RFC 3261 §21.5.4) at once: no authentication, no
//!   policy, no routing. Its transaction absorbs the retransmissions;
//! * a new out-of-dialog request (not CANCEL, not ACK) that came over UDP
//!   and is older than `[server] overload_drop_ms` is dropped unanswered:
//!   a newer copy is already queued behind it. Over a reliable transport
//!   nothing is retransmitted (RFC 3261 §17.1.1.2), so nothing is dropped:
//!   a new INVITE gets its `503`, other requests are processed;
//! * in-dialog requests, CANCEL, ACK and responses are always processed:
//!   they finish calls and free resources.
//!
//! Both are counted in `/metrics`, and logged at WARN on the 1st, 2nd,
//! 4th, 8th… occurrence (visible, never a flood).

use std::time::Duration;

use super::Endpoint;
use crate::config::ServerConfig;
use crate::sip::{Message, Method, Transport};

#[cfg(doc)]
use crate::transport::Inbound;

/// `[server] overload_queue_ms` and `overload_drop_ms` as the endpoint
/// applies them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverloadConfig {
    /// A new INVITE that waited longer gets `503` unprocessed; `None`: off.
    pub refuse_after: Option<Duration>,
    /// A new out-of-dialog request that waited longer is dropped; `None`:
    /// off.
    pub drop_after: Option<Duration>,
}

impl From<&ServerConfig> for OverloadConfig {
    fn from(s: &ServerConfig) -> Self {
        let ms = |v: u64| (v > 0).then(|| Duration::from_millis(v));
        OverloadConfig {
            refuse_after: ms(s.overload_queue_ms),
            drop_after: ms(s.overload_drop_ms),
        }
    }
}

impl Endpoint {
    /// True (counted, logged) when `msg`, a request that waited `waited`,
    /// is a new out-of-dialog UDP request past `overload_drop_ms`: drop it.
    pub(super) fn stale_request(
        &mut self,
        msg: &Message,
        transport: Transport,
        waited: Duration,
    ) -> bool {
        let Some(limit) = self.cfg.overload.drop_after else {
            return false;
        };
        if waited <= limit || transport.is_reliable() {
            return false;
        }
        let method = msg.method();
        let new = match method {
            Some(Method::Cancel | Method::Ack) => false,
            // REGISTER has no dialog, whatever its To tag says.
            Some(Method::Register) => true,
            _ => !msg.to().is_ok_and(|t| t.tag().is_some()),
        };
        if !new {
            return false;
        }
        self.stats.overload_dropped += 1;
        let n = self.stats.overload_dropped;
        if n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                waited_ms = waited.as_millis(),
                limit_ms = limit.as_millis(),
                "overload: new requests that queued too long are dropped unanswered"
            );
        }
        tracing::debug!(
            ?method,
            waited_ms = waited.as_millis(),
            "stale request dropped"
        );
        true
    }

    /// True (counted, logged) when a new INVITE that waited `waited` is
    /// past `overload_queue_ms`: answer `503` without processing it.
    pub(super) fn shed_invite(&mut self, waited: Duration) -> bool {
        let Some(limit) = self.cfg.overload.refuse_after else {
            return false;
        };
        if waited <= limit {
            return false;
        }
        self.stats.overload_refused += 1;
        let n = self.stats.overload_refused;
        if n.is_power_of_two() {
            tracing::warn!(
                refused = n,
                waited_ms = waited.as_millis(),
                limit_ms = limit.as_millis(),
                "overload: new INVITEs that queued too long are answered 503 unprocessed"
            );
        }
        true
    }
}
