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

mod register;
mod store;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Instant;

use crate::sip::{Message, StatusCode, Transport};
use crate::transport::ConnId;

pub use store::{Binding, LocationStore, RegistrationView};

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
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
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
}

impl Registrar {
    /// An empty registrar.
    pub fn new(cfg: RegistrarConfig) -> Registrar {
        Registrar {
            cfg: cfg.sanitized(),
            store: LocationStore::default(),
        }
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
    /// the expiry they were granted.
    pub fn set_config(&mut self, cfg: RegistrarConfig) {
        self.cfg = cfg.sanitized();
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
        register::register(self, req, login, source, transport, conn, now)
    }

    /// The next instant a binding may lapse.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.store.next_deadline()
    }

    /// Drops the bindings expired at `now` (logged at info).
    pub fn handle_timeout(&mut self, now: Instant) {
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
