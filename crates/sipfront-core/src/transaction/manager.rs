//! The transaction manager (RFC 3261 §17): owns every transaction of one
//! endpoint, matches incoming messages to them (§17.1.3, §17.2.3, §9.2), turns
//! state-machine actions into datagrams, and keeps one timer queue.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use crate::sip::{build, Bytes, Message, Method, StatusCode, Transport};

use super::action::{Action, Actions};
use super::client_invite::ClientInvite;
use super::client_non_invite::ClientNonInvite;
use super::completed::Completed;
use super::key::{KeyError, Role, TransactionKey};
use super::server_invite::{ServerInvite, ServerInviteInput};
use super::server_non_invite::ServerNonInvite;
use super::timer::{Timer, TimerConfig};
use super::{
    ClientInviteState, ClientNonInviteState, RespondError, ServerInviteState, ServerNonInviteState,
};

/// A datagram (or stream write) the owner must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to: the request's destination, or the source of the request being
    /// answered.
    pub dest: SocketAddr,
    /// Over what.
    pub transport: Transport,
    /// The whole message.
    pub bytes: Bytes,
}

/// Something the TU must hear about that did not come back from a `handle_*`
/// call: timeouts, transport failures and the end of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransactionEvent {
    /// A timer gave up: B (INVITE got no response), F (non-INVITE got no final
    /// response), H (our non-2xx final response was never ACKed: the call must
    /// be ended) or C (no final response in time, see the module doc).
    Timeout {
        /// The transaction.
        key: TransactionKey,
        /// Which timer fired.
        timer: Timer,
    },
    /// The owner reported that sending failed ([`Transactions::transport_error`]).
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
    /// The transaction reached Terminated and was removed. Always the last
    /// event for a key.
    Terminated {
        /// The transaction.
        key: TransactionKey,
    },
}

/// What an incoming request turned out to be ([`Transactions::handle_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerInput {
    /// A new server transaction was created: deliver the request to the TU,
    /// which answers with [`Transactions::respond`].
    NewRequest {
        /// The new transaction.
        key: TransactionKey,
    },
    /// A retransmission, absorbed; the last response (if any) was queued again.
    Absorbed {
        /// The transaction it belongs to.
        key: TransactionKey,
    },
    /// The ACK for our non-2xx final response: absorbed (Completed → Confirmed).
    AckForServerInvite {
        /// The INVITE server transaction.
        key: TransactionKey,
    },
    /// An ACK that is not for a non-2xx of ours: the ACK for a 2xx is its own
    /// transaction (§17.1.1.3), so pass it to the TU. `invite` is the INVITE
    /// server transaction when it matched one in Accepted (RFC 2543 peers, or
    /// a peer reusing the branch).
    Ack2xx {
        /// The matching INVITE transaction, if any.
        invite: Option<TransactionKey>,
    },
    /// A new CANCEL (§9.2): its own non-INVITE server transaction `cancel` (the
    /// TU answers it 200 or 481) and the INVITE server transaction it cancels,
    /// if one exists (the TU then sends 487 on it).
    CancelFor {
        /// The CANCEL's own transaction.
        cancel: TransactionKey,
        /// The INVITE transaction being cancelled.
        invite: Option<TransactionKey>,
    },
    /// No transaction key could be derived (bad Via/CSeq/...): answer
    /// statelessly with `KeyError::status` or drop.
    Invalid(KeyError),
}

/// What an incoming response turned out to be ([`Transactions::handle_response`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientInput {
    /// Deliver this response to the TU for the transaction `key`.
    Response {
        /// The client transaction.
        key: TransactionKey,
    },
    /// A retransmission, absorbed (for an INVITE non-2xx, the ACK was resent).
    Absorbed {
        /// The client transaction.
        key: TransactionKey,
    },
    /// Matches no client transaction. With RFC 6026 the TU has no use for it
    /// (a proxy might forward it statelessly); usually drop and count.
    Stray,
    /// No key could be derived (bad Via/CSeq).
    Invalid(KeyError),
}

/// Why [`Transactions::send_request`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// ACK is never sent in a client transaction: the ACK for a 2xx is sent by
    /// the TU directly, the ACK for a non-2xx by the INVITE transaction.
    #[error("ACK does not create a client transaction")]
    Ack,
    /// A client transaction with the same branch and method exists.
    #[error("a client transaction with this branch already exists")]
    Duplicate,
    /// The message is not a request, or its Via/CSeq does not parse.
    #[error("cannot key request: {0}")]
    Key(#[from] KeyError),
}

/// The state of one transaction, by kind ([`Transactions::state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionState {
    /// Client INVITE.
    ClientInvite(ClientInviteState),
    /// Client non-INVITE.
    ClientNonInvite(ClientNonInviteState),
    /// Server INVITE.
    ServerInvite(ServerInviteState),
    /// Server non-INVITE.
    ServerNonInvite(ServerNonInviteState),
}

// The names are the RFC's four transaction kinds; two of them end in Invite.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::ClientInvite(m) => m.poll_timeout(),
            Machine::ClientNonInvite(m) => m.poll_timeout(),
            Machine::ServerInvite(m) => m.poll_timeout(),
            Machine::ServerNonInvite(m) => m.poll_timeout(),
        }
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Actions) {
        match self {
            Machine::ClientInvite(m) => m.handle_timeout(now, out),
            Machine::ClientNonInvite(m) => m.handle_timeout(now, out),
            Machine::ServerInvite(m) => m.handle_timeout(now, out),
            Machine::ServerNonInvite(m) => m.handle_timeout(now, out),
        }
    }

    fn on_transport_error(&mut self, out: &mut Actions) {
        match self {
            Machine::ClientInvite(m) => m.on_transport_error(out),
            Machine::ClientNonInvite(m) => m.on_transport_error(out),
            Machine::ServerInvite(m) => m.on_transport_error(out),
            Machine::ServerNonInvite(m) => m.on_transport_error(out),
        }
    }

    fn state(&self) -> TransactionState {
        match self {
            Machine::ClientInvite(m) => TransactionState::ClientInvite(m.state()),
            Machine::ClientNonInvite(m) => TransactionState::ClientNonInvite(m.state()),
            Machine::ServerInvite(m) => TransactionState::ServerInvite(m.state()),
            Machine::ServerNonInvite(m) => TransactionState::ServerNonInvite(m.state()),
        }
    }
}

/// Internal id: heap entries carry this `Copy` id instead of cloning keys.
type TxId = u64;

#[derive(Debug)]
struct Tx {
    key: TransactionKey,
    machine: Machine,
    /// Client: where the request goes. Server: the request's source.
    dest: SocketAddr,
    transport: Transport,
    /// Client: the request sent (retransmitted as is; basis of the ACK).
    /// Boxed: a `Message` is ~850 bytes inline, and server transactions
    /// (most of those alive under load) have none.
    request: Option<Box<Message>>,
    /// Server: the most recent response sent by the TU.
    last_response: Option<Bytes>,
    /// Client INVITE: the ACK for the non-2xx final response.
    ack: Option<Bytes>,
    /// The deadline this transaction has in the heap (lazy deletion marker).
    scheduled: Option<Instant>,
}

/// All transactions of one endpoint (RFC 3261 §17), sans-IO.
///
/// # Calling contract
///
/// * **Inputs** (mutators): [`handle_request`](Self::handle_request),
///   [`handle_response`](Self::handle_response), [`respond`](Self::respond),
///   [`send_request`](Self::send_request), [`transport_error`](Self::transport_error)
///   and [`handle_timeout`](Self::handle_timeout). Each takes `now`, which
///   must not go backwards; if it does, new deadlines are computed from the
///   `now` given and nothing panics.
/// * **Outputs**: after *every* input, drain [`poll_transmit`](Self::poll_transmit)
///   until `None` (send each), then [`poll_event`](Self::poll_event) until
///   `None` (deliver to the TU), then re-arm the one wake-up timer to
///   [`poll_timeout`](Self::poll_timeout) and call `handle_timeout` when it
///   expires. Outputs queue up if not drained, but their order is only
///   meaningful relative to the input that produced them.
/// * The manager never reads the clock and never does I/O.
///
/// # Cost
///
/// Matching is one `HashMap` lookup on a [`TransactionKey`] (plus a second
/// for ACK/CANCEL). Timers live in one `BinaryHeap` of `(deadline, id)`, one
/// entry per (re)scheduling, with lazy deletion: an entry is live only while
/// it equals its transaction's `scheduled` deadline. Stale entries are popped
/// when they reach the top (so `poll_timeout` is O(1) and exact) and the heap
/// is rebuilt when it holds more than twice the live transactions, so memory
/// stays O(transactions) and each operation is O(log n) amortised. A
/// per-transaction table of `Option<Instant>` (see `Timer`) stays the source
/// of truth; the heap only says when to look.
#[derive(Debug)]
pub struct Transactions {
    cfg: TimerConfig,
    by_key: HashMap<TransactionKey, TxId>,
    /// Boxed: table slots stay small, so the table's spare capacity costs
    /// 16 bytes a slot instead of a whole transaction.
    txs: HashMap<TxId, Box<Tx>>,
    next_id: TxId,
    heap: BinaryHeap<Reverse<(Instant, TxId)>>,
    /// Non-INVITE server transactions in Completed over UDP, slimmed to
    /// what answering a retransmission needs (most live transactions
    /// under a REGISTER load).
    completed: Completed,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
    scratch: Actions,
    stats: TransactionStats,
}

/// Retransmission counters, for `/metrics`: a rising rate of either says a
/// peer or the path to it is losing packets or slow to answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransactionStats {
    /// Requests and responses we sent again on a timer (A, E, G).
    pub retransmissions_sent: u64,
    /// Retransmitted requests absorbed by a server transaction.
    pub retransmissions_received: u64,
}

impl Transactions {
    /// An empty manager. The config is [`TimerConfig::sanitized`] first.
    pub fn new(cfg: TimerConfig) -> Self {
        let cfg = cfg.sanitized();
        Transactions {
            cfg,
            by_key: HashMap::new(),
            txs: HashMap::new(),
            next_id: 0,
            heap: BinaryHeap::new(),
            completed: Completed::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Actions::new(),
            stats: TransactionStats::default(),
        }
    }

    /// Retransmission counters since start.
    pub fn stats(&self) -> TransactionStats {
        self.stats
    }

    /// The timer configuration in force.
    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len() + self.completed.len()
    }

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` names a live transaction (the `accepts`-style lookup).
    pub fn contains(&self, key: &TransactionKey) -> bool {
        self.by_key.contains_key(key) || self.completed.contains(key)
    }

    /// Whether `msg` belongs to a live transaction (str0m's `accepts`): a
    /// request to a server transaction (an ACK to its INVITE's), a response
    /// to a client transaction. Malformed messages belong to none.
    pub fn accepts(&self, msg: &Message) -> bool {
        let key = if msg.is_request() {
            TransactionKey::server(msg)
        } else {
            TransactionKey::client(msg)
        };
        key.is_ok_and(|k| self.contains(&k))
    }

    /// The state of a live transaction.
    pub fn state(&self, key: &TransactionKey) -> Option<TransactionState> {
        if self.completed.contains(key) {
            return Some(TransactionState::ServerNonInvite(
                ServerNonInviteState::Completed,
            ));
        }
        let id = self.by_key.get(key)?;
        self.txs.get(id).map(|tx| tx.machine.state())
    }

    /// Server side: feed an incoming request (§17.2.3 matching).
    ///
    /// Retransmissions are absorbed (the last response is queued again),
    /// ACKs for our non-2xx responses are absorbed, everything else either
    /// creates a server transaction or is handed to the TU. `peer` is where
    /// responses will be sent.
    pub fn handle_request(
        &mut self,
        msg: &Message,
        peer: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> ServerInput {
        let key = match TransactionKey::server(msg) {
            Ok(k) => k,
            Err(e) => return ServerInput::Invalid(e),
        };
        let input = match msg.method() {
            Some(Method::Ack) => self.handle_ack(key, now),
            Some(Method::Cancel) => match self.by_key.get(&key).copied() {
                Some(id) => self.retransmission(id),
                None if self.completed.contains(&key) => self.completed_retransmission(key),
                None => {
                    let invite = key.with_method(Method::Invite);
                    let invite = self.live_server_invite(&invite).then_some(invite);
                    self.create_server(key.clone(), false, peer, transport, now);
                    ServerInput::CancelFor {
                        cancel: key,
                        invite,
                    }
                }
            },
            _ => match self.by_key.get(&key).copied() {
                Some(id) => self.retransmission(id),
                None if self.completed.contains(&key) => self.completed_retransmission(key),
                None => {
                    let invite = key.method == Method::Invite;
                    self.create_server(key.clone(), invite, peer, transport, now);
                    ServerInput::NewRequest { key }
                }
            },
        };
        self.prune();
        input
    }

    /// TU sends a response on a server transaction; it is stored for
    /// retransmission (Timer G, request retransmissions). Refused responses
    /// (see [`try_respond`](Self::try_respond)) are dropped and logged.
    pub fn respond(
        &mut self,
        key: &TransactionKey,
        response: Bytes,
        status: StatusCode,
        now: Instant,
    ) {
        if let Err(e) = self.try_respond(key, response, status, now) {
            tracing::debug!(?key, status = status.0, error = %e, "response refused by transaction");
        }
    }

    /// [`respond`](Self::respond), saying whether the response was accepted.
    ///
    /// # Errors
    /// [`RespondError::UnknownTransaction`] for a key naming no live server
    /// transaction, [`RespondError::InvalidState`] when the transaction's state
    /// forbids the response (e.g. a second final response),
    /// [`RespondError::BadStatus`] outside 100..=699.
    pub fn try_respond(
        &mut self,
        key: &TransactionKey,
        response: Bytes,
        status: StatusCode,
        now: Instant,
    ) -> Result<(), RespondError> {
        self.respond_with(key, response, status, now, false)
    }

    /// Sends a final response to a non-INVITE request once and forgets the
    /// transaction: a retransmitted request is a new one, handed to the TU
    /// again. For digest challenges (401/407) RFC 3261 §26.3.2.4 advises
    /// this ("behaving statelessly towards unauthenticated requests"), as
    /// Kamailio's `sl` does: nothing is held for Timer J. A TU using it
    /// must answer the retransmission with the same bytes (RFC 3261
    /// §17.2.2), as the endpoint's challenge memory does. On an INVITE (or
    /// a provisional) it is [`respond`](Self::respond).
    pub fn respond_stateless(
        &mut self,
        key: &TransactionKey,
        response: Bytes,
        status: StatusCode,
        now: Instant,
    ) {
        if let Err(e) = self.respond_with(key, response, status, now, true) {
            tracing::debug!(?key, status = status.0, error = %e, "response refused by transaction");
        }
    }

    fn respond_with(
        &mut self,
        key: &TransactionKey,
        response: Bytes,
        status: StatusCode,
        now: Instant,
        stateless: bool,
    ) -> Result<(), RespondError> {
        let code = status.0;
        if !(100..=699).contains(&code) {
            return Err(RespondError::BadStatus(code));
        }
        if self.completed.contains(key) {
            return Err(RespondError::InvalidState);
        }
        let id = *self
            .by_key
            .get(key)
            .ok_or(RespondError::UnknownTransaction)?;
        let tx = self
            .txs
            .get_mut(&id)
            .ok_or(RespondError::UnknownTransaction)?;
        let mut out = std::mem::take(&mut self.scratch);
        let accepted = match &mut tx.machine {
            Machine::ServerInvite(m) if m.accepts(code) => {
                tx.last_response = Some(response);
                m.respond(code, now, &mut out)
            }
            Machine::ServerNonInvite(m) if m.accepts(code) => {
                tx.last_response = Some(response);
                let sent = m.respond(code, now, &mut out);
                if stateless && code >= 200 {
                    m.forget(&mut out);
                }
                sent
            }
            Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => {
                Err(RespondError::InvalidState)
            }
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {
                Err(RespondError::UnknownTransaction)
            }
        };
        self.scratch = out;
        self.apply(id);
        if (200..300).contains(&code) {
            // RFC 6026: in Accepted the transaction never resends its 2xx
            // (the TU does), so it need not hold it for 64·T1.
            if let Some(tx) = self.txs.get_mut(&id) {
                if matches!(tx.machine, Machine::ServerInvite(_)) {
                    tx.last_response = None;
                }
            }
        }
        self.prune();
        accepted
    }

    /// TU sends a request: creates a client transaction (INVITE or non-INVITE,
    /// chosen by the method) keyed by the request's top Via branch, and queues
    /// the first transmission.
    ///
    /// # Errors
    /// [`RequestError::Ack`] for ACK, [`RequestError::Duplicate`] when the
    /// branch/method is already in use, [`RequestError::Key`] when the request
    /// has no usable Via/CSeq.
    pub fn send_request(
        &mut self,
        request: Message,
        dest: SocketAddr,
        transport: Transport,
        now: Instant,
    ) -> Result<TransactionKey, RequestError> {
        let method = request.method().ok_or(KeyError::WrongKind)?.clone();
        if method == Method::Ack {
            return Err(RequestError::Ack);
        }
        let key = TransactionKey::client(&request)?;
        if self.by_key.contains_key(&key) {
            return Err(RequestError::Duplicate);
        }
        let reliable = transport.is_reliable();
        let mut out = std::mem::take(&mut self.scratch);
        let machine = if method == Method::Invite {
            Machine::ClientInvite(ClientInvite::start(self.cfg, reliable, now, &mut out))
        } else {
            Machine::ClientNonInvite(ClientNonInvite::start(self.cfg, reliable, now, &mut out))
        };
        self.scratch = out;
        let id = self.insert(
            key.clone(),
            machine,
            dest,
            transport,
            Some(Box::new(request)),
        );
        self.apply(id);
        self.prune();
        Ok(key)
    }

    /// Client side: feed an incoming response (§17.1.3 matching by top Via
    /// branch and sent-by plus CSeq method).
    pub fn handle_response(&mut self, msg: &Message, now: Instant) -> ClientInput {
        let Some(status) = msg.status() else {
            return ClientInput::Invalid(KeyError::WrongKind);
        };
        let key = match TransactionKey::client(msg) {
            Ok(k) => k,
            Err(e) => return ClientInput::Invalid(e),
        };
        let Some(id) = self.by_key.get(&key).copied() else {
            return ClientInput::Stray;
        };
        let Some(tx) = self.txs.get_mut(&id) else {
            return ClientInput::Stray;
        };
        let mut out = std::mem::take(&mut self.scratch);
        let deliver = match &mut tx.machine {
            Machine::ClientInvite(m) => m.on_response(status.0, now, &mut out),
            Machine::ClientNonInvite(m) => m.on_response(status.0, now, &mut out),
            // A server key never equals a client key (role differs).
            Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => false,
        };
        if tx.ack.is_none() && out.contains(&Action::SendAck) {
            // §17.1.1.3: built once from the INVITE and the first final response.
            if let Some(invite) = &tx.request {
                tx.ack = Some(build::ack_for_non_2xx(invite, msg));
            }
        }
        if status.0 >= 200 {
            // No state after a final response resends the request: drop it
            // rather than hold it through Timer K/M (up to 64·T1).
            tx.request = None;
        }
        self.scratch = out;
        self.apply(id);
        self.prune();
        if deliver {
            ClientInput::Response { key }
        } else {
            ClientInput::Absorbed { key }
        }
    }

    /// The owner could not send for transaction `key` (ICMP unreachable,
    /// connection refused/reset): the transaction terminates (§17.1.1.2,
    /// §17.2.1) and the TU gets [`TransactionEvent::TransportError`].
    pub fn transport_error(&mut self, key: &TransactionKey, _now: Instant) {
        if self.completed.remove(key) {
            self.events
                .push_back(TransactionEvent::TransportError { key: key.clone() });
            self.events
                .push_back(TransactionEvent::Terminated { key: key.clone() });
            return;
        }
        let Some(id) = self.by_key.get(key).copied() else {
            return;
        };
        if let Some(tx) = self.txs.get_mut(&id) {
            self.events
                .push_back(TransactionEvent::TransportError { key: key.clone() });
            let mut out = std::mem::take(&mut self.scratch);
            tx.machine.on_transport_error(&mut out);
            self.scratch = out;
        }
        self.apply(id);
        self.prune();
    }

    /// Fires every timer due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Every message a timer makes us send is a retransmission.
        let queued = self.transmits.len();
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue;
            };
            if tx.scheduled != Some(at) {
                continue; // stale entry
            }
            tx.scheduled = None;
            let mut out = std::mem::take(&mut self.scratch);
            tx.machine.handle_timeout(now, &mut out);
            self.scratch = out;
            // Rescheduled deadlines are strictly after `now` (intervals are
            // at least 1 ms), so this loop ends.
            self.apply(id);
        }
        self.stats.retransmissions_sent += (self.transmits.len() - queued) as u64;
        while let Some(key) = self.completed.pop_due(now) {
            self.events.push_back(TransactionEvent::Terminated { key });
        }
        self.prune();
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout)
    /// has work, if any transaction has a timer armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((at, _))| *at);
        match (heap, self.completed.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }

    /// Transactions held as whole state machines (the rest are slim
    /// Completed records).
    #[cfg(test)]
    pub(crate) fn machines(&self) -> usize {
        self.txs.len()
    }

    /// Entries in the timer heap, live and stale (tests of the bound).
    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }

    // ---- internals -------------------------------------------------------

    fn handle_ack(&mut self, key: TransactionKey, now: Instant) -> ServerInput {
        let id = if key.is_rfc2543() {
            // §17.2.3: the ACK's To tag is the tag of our response; the INVITE
            // had either that tag (re-INVITE) or none.
            let ack_tag = key.rfc2543.as_ref().and_then(|r| r.to_tag.clone());
            let found = self
                .by_key
                .get(&key)
                .or_else(|| self.by_key.get(&key.with_to_tag(None)))
                .copied();
            found.filter(|id| self.response_to_tag(*id) == ack_tag)
        } else {
            self.by_key.get(&key).copied()
        };
        let Some(id) = id else {
            return ServerInput::Ack2xx { invite: None };
        };
        let Some(tx) = self.txs.get_mut(&id) else {
            return ServerInput::Ack2xx { invite: None };
        };
        let tx_key = tx.key.clone();
        let mut out = std::mem::take(&mut self.scratch);
        let outcome = match &mut tx.machine {
            Machine::ServerInvite(m) => Some(m.on_ack(now, &mut out)),
            _ => None,
        };
        self.scratch = out;
        self.apply(id);
        match outcome {
            Some(ServerInviteInput::AckFor2xx) => ServerInput::Ack2xx {
                invite: Some(tx_key),
            },
            Some(_) => ServerInput::AckForServerInvite { key: tx_key },
            None => ServerInput::Ack2xx { invite: None },
        }
    }

    /// To tag of the last response of server transaction `id` (RFC 2543 ACK
    /// matching only, so parsing it here is off the common path).
    fn response_to_tag(&self, id: TxId) -> Option<String> {
        let bytes = self.txs.get(&id)?.last_response.clone()?;
        let resp = Message::parse(bytes).ok()?;
        let to = resp.to().ok()?;
        to.tag().map(str::to_owned)
    }

    fn live_server_invite(&self, key: &TransactionKey) -> bool {
        self.by_key
            .get(key)
            .and_then(|id| self.txs.get(id))
            .is_some_and(|tx| matches!(tx.machine, Machine::ServerInvite(_)))
    }

    fn retransmission(&mut self, id: TxId) -> ServerInput {
        let Some(tx) = self.txs.get_mut(&id) else {
            // Unreachable by construction (by_key and txs move together);
            // treated as a duplicate rather than a panic.
            return ServerInput::Ack2xx { invite: None };
        };
        let key = tx.key.clone();
        self.stats.retransmissions_received += 1;
        let mut out = std::mem::take(&mut self.scratch);
        match &mut tx.machine {
            Machine::ServerInvite(m) => {
                m.on_invite(&mut out);
            }
            Machine::ServerNonInvite(m) => m.on_request(&mut out),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {}
        }
        self.scratch = out;
        self.apply(id);
        ServerInput::Absorbed { key }
    }

    /// A retransmitted request of a Completed non-INVITE: the final
    /// response again (§17.2.2).
    fn completed_retransmission(&mut self, key: TransactionKey) -> ServerInput {
        self.stats.retransmissions_received += 1;
        if let Some(r) = self.completed.resend(&key) {
            self.transmits.push_back(Transmit {
                dest: r.dest,
                transport: r.transport,
                bytes: r.bytes,
            });
        }
        ServerInput::Absorbed { key }
    }

    fn create_server(
        &mut self,
        key: TransactionKey,
        invite: bool,
        peer: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        debug_assert_eq!(key.role, Role::Server);
        let reliable = transport.is_reliable();
        let machine = if invite {
            Machine::ServerInvite(ServerInvite::new(self.cfg, reliable, now))
        } else {
            Machine::ServerNonInvite(ServerNonInvite::new(self.cfg, reliable, now))
        };
        let id = self.insert(key, machine, peer, transport, None);
        self.apply(id);
    }

    fn insert(
        &mut self,
        key: TransactionKey,
        machine: Machine,
        dest: SocketAddr,
        transport: Transport,
        request: Option<Box<Message>>,
    ) -> TxId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.by_key.insert(key.clone(), id);
        self.txs.insert(
            id,
            Box::new(Tx {
                key,
                machine,
                dest,
                transport,
                request,
                last_response: None,
                ack: None,
                scheduled: None,
            }),
        );
        id
    }

    /// Turns the actions in `scratch` into transmits/events, removes the
    /// transaction if it terminated, else reschedules it.
    fn apply(&mut self, id: TxId) {
        let Some(tx) = self.txs.get_mut(&id) else {
            self.scratch.clear();
            return;
        };
        let mut terminated = false;
        for action in self.scratch.drain(..) {
            let bytes = match action {
                Action::SendRequest => tx.request.as_ref().map(|r| r.as_bytes().clone()),
                Action::SendAck => tx.ack.clone(),
                Action::SendResponse => tx.last_response.clone(),
                Action::Timeout(timer) => {
                    self.events.push_back(TransactionEvent::Timeout {
                        key: tx.key.clone(),
                        timer,
                    });
                    None
                }
                Action::Terminated => {
                    terminated = true;
                    None
                }
            };
            if let Some(bytes) = bytes {
                self.transmits.push_back(Transmit {
                    dest: tx.dest,
                    transport: tx.transport,
                    bytes,
                });
            }
        }
        if terminated {
            if let Some(tx) = self.txs.remove(&id) {
                self.by_key.remove(&tx.key);
                self.events
                    .push_back(TransactionEvent::Terminated { key: tx.key });
            }
            return;
        }
        let next = tx.machine.poll_timeout();
        let completed = matches!(&tx.machine, Machine::ServerNonInvite(m)
            if m.state() == ServerNonInviteState::Completed);
        if let (true, Some(until)) = (completed, next) {
            // Timer J runs: only the response is needed until it fires.
            if let Some(tx) = self.txs.remove(&id) {
                self.by_key.remove(&tx.key);
                let response = tx.last_response.as_deref().unwrap_or_default();
                self.completed
                    .insert(tx.key, response, tx.dest, tx.transport, until);
            }
            return;
        }
        if next != tx.scheduled {
            tx.scheduled = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, id)));
            }
        }
    }

    /// Drops stale heap entries from the top (so `poll_timeout` is exact) and
    /// rebuilds the heap when stale entries dominate it.
    fn prune(&mut self) {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            let live = self.txs.get(&id).is_some_and(|tx| tx.scheduled == Some(at));
            if live {
                break;
            }
            self.heap.pop();
        }
        if self.heap.len() > 2 * self.txs.len() + 64 {
            self.heap = self
                .txs
                .iter()
                .filter_map(|(id, tx)| tx.scheduled.map(|at| Reverse((at, *id))))
                .collect();
        }
        // After a burst, give the tables' memory back (they never shrink
        // on their own).
        if self.txs.capacity() > 4 * self.txs.len() + 1024 {
            self.txs.shrink_to(2 * self.txs.len());
            self.by_key.shrink_to(2 * self.by_key.len());
        }
    }
}
