//! The registrar (RFC 3261 §10.3, RFC 5626/5627 `+sip.instance`) and the
//! location store it owns. Sans-IO: a REGISTER already authenticated as a
//! trunk login comes in with its packet source, transport, connection and
//! `now`; the status and the response headers come out.
//!
//! # Calling contract
//! * [`Registrar::register`] for every REGISTER that passed digest;
//! * [`Registrar::handle_timeout`] when [`Registrar::poll_timeout`] is due
//!   (expired bindings are dropped then; readers filter by `now` anyway, so
//!   an expired binding is never returned even before the sweep);
//! * [`Registrar::connection_closed`] when a TCP connection ends;
//! * [`Registrar::on_response`] for responses no transaction claimed (the
//!   answers to keep-alive OPTIONS);
//! * after each of those, drain [`Registrar::poll_transmit`] (keep-alive
//!   pings) and [`Registrar::poll_write`] (bindings to store);
//! * [`Registrar::restore`] once at start, with the stored bindings;
//! * `now` never goes backwards.
//!
//! # Choices where the RFCs leave room
//! * **`max_contacts`**: a REGISTER naming more new contacts than
//!   `max_contacts` is refused with `403`; otherwise, when adding its
//!   contacts would exceed the limit, the least recently registered
//!   bindings of the login are evicted. A phone whose NAT rebinds (a new
//!   Contact per REGISTER) then never locks itself out until its old
//!   bindings lapse.
//! * **Out-of-order CSeq** (same Call-ID, CSeq not higher than the stored
//!   one, §10.3 step 7): the whole request changes nothing and is answered
//!   `400` "CSeq Out Of Order".
//! * **Contact matching**: a contact with `+sip.instance` replaces the
//!   binding with the same instance and `reg-id` (RFC 5626 §6, RFC 5627
//!   §4.2), whatever its URI or source; without one, bindings match by
//!   URI text (case-insensitive), a simplification of §19.1.4.
//! * **Expires values**: a Contact `expires` param wins over the `Expires`
//!   header, which wins over `default_expires`; an all-digit value too big
//!   for 32 bits counts as "huge" and is clamped to `max_expires`; a
//!   non-numeric one is `400`.
//! * A TCP connection that closes takes its bindings with it (the UA is
//!   unreachable through its NAT without it).
//! * **Persistence** (module `persist`): write-back of whole logins, TCP
//!   bindings dropped at restore (their connections died with the old
//!   process); **keep-alive** (module `keepalive`): two unanswered OPTIONS
//!   in a row end a UDP binding.

mod keepalive;
mod persist;
mod register;
mod store;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keepalive;
#[cfg(test)]
mod tests_persist;

use std::net::SocketAddr;
use std::time::Instant;

use crate::sip::random::Random;
use crate::sip::{Message, StatusCode, Transport};
use crate::transport::ConnId;

pub use keepalive::{KeepaliveStats, MAX_LOGINS_PER_TICK, MISSES_TO_DROP};
pub use persist::{BindingWrite, RestoreReport, StoredBinding};
pub use store::{Binding, LocationStore, RegistrationView};

use crate::transport::Outbound;

/// Registrar limits (`[registrar]` in the config file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shorter requested intervals get `423` with `Min-Expires` (seconds).
    pub min_expires: u32,
    /// Longer requested intervals are clamped to this (seconds).
    pub max_expires: u32,
    /// When neither the Contact nor the request says (seconds).
    pub default_expires: u32,
    /// Bindings per trunk login.
    pub max_contacts: usize,
    /// Keep-alive ping interval toward registered contacts (seconds); 0:
    /// no pings.
    pub keepalive_s: u32,
    /// Whether changed logins are handed out by [`Registrar::poll_write`]
    /// (false: nothing is marked for the store).
    pub persist: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            keepalive_s: 30,
            persist: true,
        }
    }
}

impl RegistrarConfig {
    /// The config with its invariants forced (`1 <= min <= default <= max`,
    /// `max_contacts >= 1`), for values that did not go through validation.
    pub fn sanitized(self) -> RegistrarConfig {
        let min = self.min_expires.max(1);
        let max = self.max_expires.max(min);
        RegistrarConfig {
            min_expires: min,
            max_expires: max,
            default_expires: self.default_expires.clamp(min, max),
            max_contacts: self.max_contacts.max(1),
            keepalive_s: self.keepalive_s,
            persist: self.persist,
        }
    }
}

impl From<&crate::config::RegistrarSettings> for RegistrarConfig {
    fn from(s: &crate::config::RegistrarSettings) -> Self {
        RegistrarConfig {
            min_expires: s.min_expires,
            max_expires: s.max_expires,
            default_expires: s.default_expires,
            max_contacts: s.max_contacts,
            keepalive_s: s.keepalive_s,
            persist: s.persist,
        }
        .sanitized()
    }
}

/// The answer to one REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// `200`, or the refusal (`400`, `403`, `423`).
    pub status: StatusCode,
    /// Extra response headers: one `Contact` per current binding with
    /// `;expires=N` on `200`, `Min-Expires` on `423`.
    pub headers: Vec<(&'static str, String)>,
    /// A reason phrase saying why, for refusals.
    pub reason: Option<String>,
}

impl RegisterOutcome {
    fn refuse(status: StatusCode, reason: &str) -> RegisterOutcome {
        RegisterOutcome {
            status,
            headers: Vec::new(),
            reason: Some(reason.to_owned()),
        }
    }
}

/// REGISTER handling over the [`LocationStore`] it owns (sans-IO).
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    store: LocationStore,
    keepalive: keepalive::Keepalive,
}

impl Registrar {
    /// An empty registrar; `rng` mints its keep-alive OPTIONS' identifiers.
    pub fn new(cfg: RegistrarConfig, rng: Random) -> Registrar {
        let mut store = LocationStore::default();
        store.set_persist(cfg.persist);
        Registrar {
            keepalive: keepalive::Keepalive::new(cfg.keepalive_s, rng),
            cfg: cfg.sanitized(),
            store,
        }
    }

    /// Our `host:port` for the Via and From of keep-alive OPTIONS.
    pub fn set_local(&mut self, sent_by: String) {
        self.keepalive.set_sent_by(sent_by);
    }

    /// The location store (inbound calls, `/v1/registrations`).
    pub fn store(&self) -> &LocationStore {
        &self.store
    }

    /// The limits in force.
    pub fn config(&self) -> RegistrarConfig {
        self.cfg
    }

    /// New limits (SIGHUP). They apply to the next REGISTER; bindings keep
    /// the expiry they were granted. A new `keepalive_s` applies from each
    /// login's next ping (0 stops them; turned on, a login is pinged from
    /// its next REGISTER).
    pub fn set_config(&mut self, cfg: RegistrarConfig) {
        self.cfg = cfg.sanitized();
        // Turned on: logins are scheduled at their next REGISTER.
        self.keepalive.set_interval(self.cfg.keepalive_s);
        // Turned on: each login is written at its next change.
        self.store.set_persist(self.cfg.persist);
    }

    /// A REGISTER already authenticated as trunk `login`, from `source`
    /// over `transport` (and TCP connection `conn`), at `now`: RFC 3261
    /// §10.3 steps 5–8 (see the module doc for the choices made).
    ///
    /// Never panics on any input; a malformed Contact or Expires is `400`.
    pub fn register(
        &mut self,
        req: &Message,
        login: &str,
        source: SocketAddr,
        transport: Transport,
        conn: Option<ConnId>,
        now: Instant,
    ) -> RegisterOutcome {
        let out = register::register(self, req, login, source, transport, conn, now);
        if out.status.is_success() && !self.store.raw(login).is_empty() {
            self.keepalive.schedule(login, now);
        }
        out
    }

    /// Puts bindings read from the store back (once, at start, before any
    /// REGISTER): expired rows and TCP bindings (their connections ended
    /// with the old process) are left out, and their logins written again
    /// so the store forgets them. `now_unix_ms` is the wall time at `now`.
    /// `stored` holds each login's rows together, oldest first (as
    /// the shell's `Store::bindings` returns them).
    pub fn restore(
        &mut self,
        stored: Vec<(String, StoredBinding)>,
        now: Instant,
        now_unix_ms: u64,
    ) -> RestoreReport {
        let mut report = RestoreReport::default();
        // The store hands a login's rows together: each run is one login,
        // grouped as it comes (no map of 100k logins built and dropped).
        let mut rows = stored.into_iter().peekable();
        while let Some((login, first)) = rows.next() {
            let mut bindings = Vec::new();
            let mut changed = false;
            let mut next = Some(first);
            while let Some(s) = next.take() {
                if s.transport != Transport::Udp {
                    report.tcp_dropped += 1;
                    changed = true;
                } else if let Some(b) = s.into_binding(now, now_unix_ms) {
                    bindings.push(b);
                } else {
                    report.expired += 1;
                    changed = true;
                }
                next = rows.next_if(|(l, _)| *l == login).map(|(_, s)| s);
            }
            report.restored += bindings.len();
            // A login split over two runs: the earlier run's bindings first.
            let earlier = self.store.raw(&login);
            if !earlier.is_empty() {
                bindings.splice(0..0, earlier.iter().cloned());
            }
            let live = !bindings.is_empty();
            if changed {
                self.store.replace(&login, bindings);
            } else {
                self.store.restore(&login, bindings);
            }
            if live {
                self.keepalive.schedule(&login, now);
            }
        }
        report
    }

    /// The next instant a binding may lapse or a keep-alive is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.store.next_deadline(), self.keepalive.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next keep-alive ping to send (no transaction: the next ping is
    /// its retransmission).
    pub fn poll_transmit(&mut self) -> Option<Outbound> {
        self.keepalive.out.pop_front()
    }

    /// The next login to write to the store, with its current bindings
    /// (none: delete its rows). `now_unix_ms` is the wall time at `now`.
    pub fn poll_write(&mut self, now: Instant, now_unix_ms: u64) -> Option<BindingWrite> {
        let login = self.store.take_dirty()?;
        let bindings = self
            .store
            .raw(&login)
            .iter()
            .filter(|b| b.expires_at > now)
            .map(|b| StoredBinding::of(b, now, now_unix_ms))
            .collect();
        Some(BindingWrite {
            login: login.to_string(),
            bindings,
        })
    }

    /// Logins changed and not yet handed to [`Registrar::poll_write`].
    pub fn pending_writes(&self) -> usize {
        self.store.dirty_len()
    }

    /// A response no transaction claimed: true if it answered one of our
    /// keep-alive OPTIONS (its binding is alive), false otherwise.
    pub fn on_response(&mut self, msg: &Message) -> bool {
        self.keepalive.on_response(msg, &mut self.store)
    }

    /// Keep-alive counters.
    pub fn keepalive_stats(&self) -> KeepaliveStats {
        self.keepalive.stats
    }

    /// Keep-alive OPTIONS awaiting an answer.
    pub fn keepalive_outstanding(&self) -> usize {
        self.keepalive.outstanding()
    }

    /// Drops the bindings expired at `now` (logged at info) and sends the
    /// keep-alive pings that are due (a binding that missed too many is
    /// dropped, logged at info).
    pub fn handle_timeout(&mut self, now: Instant) {
        for (login, b) in self.keepalive.handle_timeout(&mut self.store, now) {
            tracing::info!(
                login = %login,
                contact = %b.contact,
                source = %b.source,
                transport = %b.transport,
                "registration dropped: no answer to {MISSES_TO_DROP} keep-alive OPTIONS in a row"
            );
        }
        for (login, b) in self.store.expire(now) {
            tracing::info!(
                login = %login,
                contact = %b.contact,
                source = %b.source,
                transport = %b.transport,
                "registration expired"
            );
        }
    }

    /// A TCP connection closed: its bindings go (logged at info).
    pub fn connection_closed(&mut self, conn: ConnId) {
        for (login, b) in self.store.drop_conn(conn) {
            tracing::info!(
                login = %login,
                contact = %b.contact,
                source = %b.source,
                %conn,
                "registration dropped: its connection closed"
            );
        }
    }
}
