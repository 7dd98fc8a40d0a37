//! Bindings as the store keeps them, so registrations survive a restart
//! (RFC 3261 §10.3 leaves persistence to the registrar; this is Kamailio
//! usrloc's `db_mode = 2`, write-back).
//!
//! The core never touches the store: each login whose bindings changed is
//! one [`BindingWrite`] output (its whole current set, so writes are
//! idempotent and the last one wins), and at start the shell reads the rows
//! and hands them in once ([`Registrar::restore`](super::Registrar::restore)).
//! Expiry is wall-clock (Unix milliseconds) on disk, monotonic in memory:
//! both conversions take `now` and the wall time at `now` as arguments.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Binding;
use crate::sip::Transport;

/// One stored binding of a trunk login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBinding {
    /// The Contact URI as registered.
    pub contact: String,
    /// The REGISTER's packet source (where calls go after a restart too).
    pub source: SocketAddr,
    /// Transport the REGISTER came over.
    pub transport: Transport,
    /// When it lapses, Unix milliseconds.
    pub expires_unix_ms: u64,
    /// `+sip.instance`.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
    /// Call-ID of the REGISTER that made or refreshed it (CSeq ordering
    /// goes on across the restart).
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// User-Agent of the registering UA.
    pub user_agent: String,
}

/// "`login` now has exactly these bindings" (none: delete them all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingWrite {
    /// The trunk login.
    pub login: String,
    /// Its bindings, oldest registration first.
    pub bindings: Vec<StoredBinding>,
}

/// What [`Registrar::restore`](super::Registrar::restore) did with the rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Bindings back in the location store.
    pub restored: usize,
    /// Rows already expired.
    pub expired: usize,
    /// TCP bindings: their connections ended with the old process.
    pub tcp_dropped: usize,
}

impl StoredBinding {
    /// `b` as stored, at `now` which is `now_unix_ms` on the wall clock.
    pub(super) fn of(b: &Binding, now: Instant, now_unix_ms: u64) -> StoredBinding {
        let left = b.expires_at.saturating_duration_since(now);
        StoredBinding {
            contact: b.contact.clone(),
            source: b.source,
            transport: b.transport,
            expires_unix_ms: now_unix_ms
                .saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            instance: b.instance.clone(),
            reg_id: b.reg_id,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            user_agent: b.user_agent.clone(),
        }
    }

    /// The binding again, with its remaining time from `now`; `None` once
    /// expired. Connections do not survive a restart, so `conn` is `None`.
    pub(super) fn into_binding(self, now: Instant, now_unix_ms: u64) -> Option<Binding> {
        let left = self.expires_unix_ms.checked_sub(now_unix_ms)?;
        if left == 0 {
            return None;
        }
        Some(Binding {
            expires_at: now.checked_add(Duration::from_millis(left))?,
            contact: self.contact,
            source: self.source,
            transport: self.transport,
            conn: None,
            instance: self.instance,
            reg_id: self.reg_id,
            call_id: self.call_id,
            cseq: self.cseq,
            user_agent: self.user_agent,
            ping: Default::default(),
        })
    }
}
