//! Calls through the back-to-back user agent (RFC 3261 §6 "B2BUA"; SPEC §5):
//! a call from a trunk (the A-leg, where we are the UAS) reaches an upstream
//! carrier (the B-leg, where we are the UAC) as two independent dialogs with
//! their own Call-ID, tags, Via, Contact and CSeq space (topology hiding).
//!
//! Sans-IO, like the transaction layer under it: every input carries `now`,
//! the outputs are [`Action`]s the endpoint executes against
//! [`Transactions`](crate::transaction::Transactions) and the transport.
//!
//! # Calling contract
//! * `handle_invite` for a new INVITE (no To tag), `handle_in_dialog` for
//!   any other request with a To tag except ACK, `handle_ack` for an ACK not
//!   absorbed by a transaction, `handle_cancel` for a new CANCEL,
//!   `handle_response` for a response delivered to a client transaction,
//!   `handle_transaction_event` for every transaction event, and
//!   `handle_timeout` when [`poll_timeout`](B2bua::poll_timeout) is reached;
//! * after each, drain [`poll_action`](B2bua::poll_action) until `None`;
//! * `now` never goes backwards.
//!
//! The session table (`table.rs`) is the single owner of active calls.
//!
//! # Not yet here
//! * Trunk policy beyond IP identification (digest, channels, rewrite,
//!   cost/duration limits, caller ID: SPEC §3) and DID routing (SPEC §4):
//!   trusted upstreams get `404`, others without `host_request` `403`.
//! * DNS (RFC 3263): upstream hosts are IP literals.
//! * `100rel` is relayed end to end (Supported/Require/RSeq/RAck) but not
//!   offered by us, so an INVITE that *requires* it gets `420`.
//! * Several early dialogs from a forking upstream share one A-leg tag; a
//!   second 2xx with another tag is ACKed and BYEd.
//! * CDRs, webhooks and `/v1/calls` read nothing from the table yet.

mod admission;
mod call;
mod health;
mod leg;
mod table;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::routing::Upstreams;
use crate::sip::build::ResponseBuilder;
use crate::sip::{Message, StatusCode, Transport};
use crate::transaction::{TimerConfig, TransactionEvent, TransactionKey};

pub use admission::{Refusal, TrunkIps};
pub use call::Phase;
pub use leg::{Local, Side};

use call::{Call, Fx, NewCall};
use health::Health;
use table::{CallId, DialogKey, SessionTable};

/// Settings of the B2BUA.
#[derive(Clone, Debug)]
pub struct B2buaConfig {
    /// Our addresses for Via and Contact.
    pub local: Local,
    /// T1/T2 for 2xx retransmission and the ACK wait (RFC 3261 §13.3.1.4).
    pub timers: TimerConfig,
    /// Hard upper bound of a call (default 4 h): both legs get BYE.
    pub max_call_duration: Duration,
    /// An upstream that sends no response at all within this is skipped
    /// (fail-over before Timer B's 32 s). Default 5 s.
    pub no_answer_failover: Duration,
    /// How long an ended call may wait for its transactions before it is
    /// dropped from the table regardless (default 64·T1 + T4 + 1 s).
    pub linger: Duration,
    /// `Server` header on our responses.
    pub server_header: String,
}

impl B2buaConfig {
    /// Defaults around `local`.
    pub fn new(local: Local) -> B2buaConfig {
        let timers = TimerConfig::default();
        B2buaConfig {
            local,
            timers,
            max_call_duration: Duration::from_secs(4 * 3600),
            no_answer_failover: Duration::from_secs(5),
            linger: timers.t1x64() + timers.t4 + Duration::from_secs(1),
            server_header: concat!("sipfront/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// What the endpoint must do for the B2BUA.
// Actions live in a queue drained right after each input: boxing the request
// would add an allocation per request for no memory saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Action {
    /// Send this response on server transaction `key`.
    Respond {
        /// The server transaction.
        key: TransactionKey,
        /// Its status (for the transaction layer).
        status: StatusCode,
        /// The whole response.
        bytes: Bytes,
    },
    /// Send this request in a new client transaction.
    Request {
        /// The request.
        request: Message,
        /// Where to.
        dest: SocketAddr,
        /// Over what.
        transport: Transport,
    },
    /// Send these bytes outside any transaction (ACK for a 2xx, our 2xx
    /// retransmissions: RFC 3261 §13.2.2.4, §13.3.1.4).
    Send {
        /// The whole message.
        bytes: Bytes,
        /// Where to.
        dest: SocketAddr,
        /// Over what.
        transport: Transport,
    },
}

/// Counters of the B2BUA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B2buaStats {
    /// Calls created.
    pub calls: u64,
    /// New INVITEs refused before routing.
    pub refused: u64,
    /// In-dialog requests answered 481.
    pub no_dialog: u64,
}

/// The B2BUA: routing data, the session table and the action queue.
#[derive(Debug)]
pub struct B2bua {
    cfg: B2buaConfig,
    upstreams: Upstreams,
    trunks: TrunkIps,
    table: SessionTable,
    actions: VecDeque<Action>,
    heap: BinaryHeap<Reverse<(Instant, CallId)>>,
    rng: u64,
    stats: B2buaStats,
    health: Health,
}

impl B2bua {
    /// A B2BUA with no calls. `seed` drives the weighted upstream choice.
    pub fn new(cfg: B2buaConfig, upstreams: Upstreams, trunks: TrunkIps, seed: u64) -> B2bua {
        B2bua {
            cfg,
            upstreams,
            trunks,
            table: SessionTable::default(),
            actions: VecDeque::new(),
            heap: BinaryHeap::new(),
            rng: seed,
            stats: B2buaStats::default(),
            health: Health::default(),
        }
    }

    /// Calls in the table (including ended ones waiting for transactions).
    pub fn len(&self) -> usize {
        self.table.calls.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.calls.is_empty()
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.table
            .calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .count()
    }

    /// Calls of one trunk not yet ended (channel limits derive from this).
    pub fn calls_of_trunk(&self, trunk: u64) -> usize {
        self.table
            .calls
            .values()
            .filter(|c| c.trunk == trunk && c.phase != Phase::Ended)
            .count()
    }

    /// Counters.
    pub fn stats(&self) -> &B2buaStats {
        &self.stats
    }

    /// The upstreams (health marks included).
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// The next action to execute.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.heap.peek().map(|Reverse((at, _))| *at);
        match (calls, self.health.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Answers a new INVITE with a failure, counts it, and logs why, so an
    /// operator reading the log sees what happened to the call.
    fn refuse(
        &mut self,
        msg: &Message,
        key: &TransactionKey,
        source: SocketAddr,
        status: StatusCode,
        why: &dyn std::fmt::Display,
    ) {
        self.stats.refused += 1;
        tracing::info!(
            call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
            %source,
            status = status.as_u16(),
            "INVITE refused: {why}"
        );
        self.reply(msg, key, source, status);
    }

    fn reply(
        &mut self,
        req: &Message,
        key: &TransactionKey,
        source: SocketAddr,
        status: StatusCode,
    ) {
        let bytes = ResponseBuilder::new(req, status)
            .received(source)
            .to_tag(&crate::sip::build::new_tag())
            .server(&self.cfg.server_header)
            .build();
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status,
            bytes,
        });
    }

    fn next_seed(&mut self) -> u64 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.rng >> 11
    }

    /// A new INVITE (no To tag) on server transaction `key`: `100 Trying`
    /// at once, then admission, routing and the B-leg INVITE.
    pub fn handle_invite(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let trying = ResponseBuilder::new(msg, StatusCode::TRYING)
            .received(source)
            .build();
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status: StatusCode::TRYING,
            bytes: trying,
        });
        let trunk = match self.trunks.identify(source.ip(), &self.upstreams) {
            Ok(t) => t,
            Err(refusal) => {
                return self.refuse(msg, &key, source, refusal.status(), &refusal);
            }
        };
        let seed = self.next_seed();
        let plan = self.upstreams.plan(seed);
        if plan.is_empty() {
            let why = "no upstream configured";
            return self.refuse(msg, &key, source, StatusCode::SERVICE_UNAVAILABLE, &why);
        }
        let new = NewCall {
            invite: msg,
            key: key.clone(),
            source,
            transport,
            plan,
            trunk,
        };
        let call = match Call::new(new, &self.cfg, now) {
            Ok(c) => c,
            Err(status) => {
                let why = "the INVITE cannot be relayed";
                return self.refuse(msg, &key, source, status, &why);
            }
        };
        self.stats.calls += 1;
        let id = self.table.insert(call);
        self.with_call(id, now, |call, fx| {
            if !call.send_attempt(fx) {
                call.end_call(None, StatusCode::SERVICE_UNAVAILABLE, fx);
            }
        });
    }

    /// An in-dialog request (To tag present, not ACK) on server
    /// transaction `key`; `481` when it matches no call (RFC 3261 §12.2.2).
    pub fn handle_in_dialog(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some((id, side)) = self.find_dialog(msg) else {
            self.stats.no_dialog += 1;
            return self.reply(
                msg,
                &key,
                source,
                StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST,
            );
        };
        self.with_call(id, now, |call, fx| call.on_request(side, msg, &key, fx));
    }

    /// An ACK that no transaction absorbed: the ACK for a 2xx (§13.2.2.4).
    /// ACKs matching no call are dropped (§17.2.3).
    pub fn handle_ack(&mut self, msg: &Message, now: Instant) {
        if let Some((id, side)) = self.find_dialog(msg) {
            self.with_call(id, now, |call, fx| call.on_ack(side, msg, fx));
        }
    }

    /// A new CANCEL on its own server transaction `cancel`, for the INVITE
    /// server transaction `invite`. Returns false when no call has that
    /// INVITE: the caller answers `481` (§9.2).
    pub fn handle_cancel(
        &mut self,
        msg: &Message,
        cancel: &TransactionKey,
        invite: &TransactionKey,
        now: Instant,
    ) -> bool {
        let Some(&id) = self.table.invites.get(invite) else {
            return false;
        };
        self.with_call(id, now, |call, fx| call.on_cancel(msg, cancel, fx));
        true
    }

    /// A response the transaction layer delivered for client transaction `key`.
    pub fn handle_response(&mut self, msg: &Message, key: &TransactionKey, now: Instant) {
        if let Some(status) = msg.status() {
            if self.health.on_response(key, status, &mut self.upstreams) {
                return;
            }
        }
        let Some((id, purpose)) = self.table.clients.get(key).cloned() else {
            return;
        };
        self.with_call(id, now, |call, fx| call.on_response(&purpose, msg, fx));
    }

    /// A transaction event: client timeouts and transport errors are "no
    /// response" (fail-over, 408 on relays); terminations release the call.
    pub fn handle_transaction_event(&mut self, ev: &TransactionEvent, now: Instant) {
        match ev {
            TransactionEvent::Timeout { key, .. } | TransactionEvent::TransportError { key } => {
                if self.health.on_failure(key, &mut self.upstreams) {
                    return;
                }
                if let Some((id, purpose)) = self.table.clients.get(key).cloned() {
                    self.with_call(id, now, |call, fx| call.on_no_response(&purpose, fx));
                } else if let Some(&id) = self.table.invites.get(key) {
                    // The A-leg INVITE's Timer C guard: ringing too long.
                    // The B-leg is cancelled; the call cannot outlive it.
                    self.with_call(id, now, |call, fx| {
                        call.end_call(None, StatusCode::REQUEST_TIMEOUT, fx);
                    });
                }
            }
            TransactionEvent::Terminated { key } => {
                if self.health.on_terminated(key) {
                    return;
                }
                if let Some((id, purpose)) = self.table.clients.remove(key) {
                    let invite = matches!(purpose, table::Purpose::Invite { .. });
                    self.with_call(id, now, |call, _| {
                        call.open = call.open.saturating_sub(1);
                        if invite {
                            call.open_invites = call.open_invites.saturating_sub(1);
                        }
                    });
                }
            }
        }
    }

    /// Client transactions whose requests went to `dest` over `transport`
    /// while their call waits for them (a failed send is then reported to
    /// the transaction layer, which fails them over). O(calls): only on
    /// send failures.
    pub fn clients_to(&self, dest: SocketAddr, transport: Transport) -> Vec<TransactionKey> {
        self.table
            .clients
            .iter()
            .filter(|(_, (id, p))| {
                matches!(p, table::Purpose::Invite { .. })
                    && self
                        .table
                        .calls
                        .get(id)
                        .is_some_and(|c| c.b_dest() == (dest, transport))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Fires call timers and upstream pings due at `now`. The first call
    /// starts the OPTIONS pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.health.arm(&self.upstreams, now);
        self.health
            .handle_timeout(&self.upstreams, &self.cfg.local, now, &mut self.actions);
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let due = self.table.calls.get_mut(&id).is_some_and(|c| {
                c.scheduled == Some(at) && {
                    c.scheduled = None;
                    true
                }
            });
            if due {
                self.with_call(id, now, |call, fx| call.on_timeout(fx));
            }
        }
    }

    fn find_dialog(&self, msg: &Message) -> Option<(CallId, Side)> {
        let call_id = msg.call_id().ok()?;
        let to = msg.to().ok()?;
        let key = DialogKey {
            call_id: String::from_utf8_lossy(call_id).into_owned(),
            local_tag: to.tag()?.to_owned(),
        };
        self.table.find_dialog(&key)
    }

    /// Runs `f` on call `id`, then indexes its new client transactions,
    /// removes it if finished, else reschedules its timer.
    fn with_call(&mut self, id: CallId, now: Instant, f: impl FnOnce(&mut Call, &mut Fx<'_>)) {
        let Some(call) = self.table.calls.get_mut(&id) else {
            return;
        };
        let mut fx = Fx {
            actions: &mut self.actions,
            new_clients: Vec::new(),
            cfg: &self.cfg,
            upstreams: &self.upstreams,
            now,
        };
        f(call, &mut fx);
        let new = std::mem::take(&mut fx.new_clients);
        call.open += new.len();
        for (key, purpose) in new {
            if matches!(purpose, table::Purpose::Invite { .. }) {
                call.open_invites += 1;
            }
            self.table.clients.insert(key, (id, purpose));
        }
        if call.finished(now, &self.cfg) {
            self.table.remove(id);
            return;
        }
        let next = call
            .next_deadline(&self.cfg)
            .map(|d| d.max(now + Duration::from_millis(1)));
        if next != call.scheduled {
            call.scheduled = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, id)));
            }
        }
        if self.heap.len() > 2 * self.table.calls.len() + 64 {
            let calls = &self.table.calls;
            self.heap = calls
                .iter()
                .filter_map(|(id, c)| c.scheduled.map(|at| Reverse((at, *id))))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests;
