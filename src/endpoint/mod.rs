//! The sans-IO SIP endpoint: one parsed message in, transmissions out.
//!
//! `Endpoint` is the single place where a datagram or TCP frame becomes a SIP
//! message (parse once, at the edge), meets its transaction (RFC 3261 §17) and
//! gets the answers every SIP element owes without any policy: `OPTIONS` to us
//! (`200`), `Max-Forwards: 0` (`483`, §16.3), unsupported `Require` /
//! `Proxy-Require` (`420`, §8.2.2.3), unknown or not-yet-offered methods
//! (`501`/`405`, §8.2.1), `CANCEL` without its INVITE (`481`, §9.2), malformed
//! requests (`400`/`413`/`416`/`505` with the reason when a response can be
//! addressed, else dropped and counted).
//!
//! Responses go back over the transport the request came in on, to the
//! packet's *source* address and port (symmetric response routing, as
//! Kamailio's `force_rport` does: the only address that reliably reaches a UA
//! behind NAT). The top Via of every response carries `received`/`rport`
//! (RFC 3581 §4, RFC 3261 §18.2.1) so the UA learns its public address.
//!
//! The calling contract is quinn's: after every `handle`/`handle_timeout`,
//! drain `poll_transmit` until `None`, then re-arm one timer at
//! `poll_timeout`. Time only moves forward and is always passed in.

mod answer;
mod stats;

use std::collections::VecDeque;
use std::time::Instant;

use crate::sip::{Message, ParseError};
use crate::transaction::{ClientInput, ServerInput, TimerConfig, Transactions, Transmit};
use crate::transport::{Inbound, Outbound, TransportEvent};

pub use answer::{ALLOW, SUPPORTED};
pub use stats::Stats;

/// Settings of the endpoint that do not change per message.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// RFC 3261 timer values.
    pub timers: TimerConfig,
    /// Value of the `Server` header on responses we originate.
    pub server_header: String,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            server_header: concat!("sipfront/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The sans-IO core of one SIP node.
///
/// # Calling contract
/// * `handle(inbound, now)` for every message from the network,
///   `handle_timeout(now)` when the deadline from `poll_timeout` is reached;
/// * after each of them, drain `poll_transmit` until it returns `None`;
/// * `now` never goes backwards.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    txns: Transactions,
    outbox: VecDeque<Outbound>,
    stats: Stats,
}

impl Endpoint {
    /// A new endpoint with no transactions.
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpoint {
            txns: Transactions::new(cfg.timers),
            cfg,
            outbox: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Counters for metrics and tests.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Feeds one event from the transport.
    pub fn handle_event(&mut self, event: TransportEvent, now: Instant) {
        match event {
            TransportEvent::Inbound(inbound) => self.handle(inbound, now),
            TransportEvent::SendFailed { dest, error, .. } => {
                // Transactions retransmit over UDP or time out (Timer B/F);
                // mapping a failure to its transaction comes with the B2BUA.
                self.stats.send_failures += 1;
                tracing::debug!(%dest, ?error, "send failed");
            }
            TransportEvent::Closed { .. } => {}
        }
    }

    /// Feeds one message from the network.
    pub fn handle(&mut self, inbound: Inbound, now: Instant) {
        self.stats.received += 1;
        match Message::parse(inbound.bytes.clone()) {
            Ok(msg) if msg.is_request() => self.handle_request(msg, &inbound, now),
            Ok(msg) => self.handle_response(msg, now),
            Err(err) => self.reject_malformed(&inbound, &err),
        }
        self.drain_transactions();
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        self.drain_transactions();
    }

    /// The earliest instant at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.txns.poll_timeout()
    }

    /// The next message to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<Outbound> {
        self.outbox.pop_front()
    }

    fn handle_request(&mut self, msg: Message, inbound: &Inbound, now: Instant) {
        let key = match self
            .txns
            .handle_request(&msg, inbound.peer, inbound.transport, now)
        {
            ServerInput::NewRequest { key } => key,
            ServerInput::CancelFor { cancel, .. } => cancel,
            ServerInput::Invalid(err) => {
                // `Message::parse` validated every header a key needs, so
                // this is a bug, not traffic: count it, never crash.
                self.stats.parse_errors += 1;
                tracing::debug!(peer = %inbound.peer, error = ?err, "request not keyable");
                return;
            }
            // A retransmission (answered by its transaction) or an ACK
            // that a transaction absorbed or whose dialog we do not have.
            ServerInput::Absorbed { .. }
            | ServerInput::AckForServerInvite { .. }
            | ServerInput::Ack2xx { .. } => return,
        };
        let response = answer::answer(&msg, inbound, &self.cfg);
        self.stats.count_answer(response.status);
        self.txns
            .respond(&key, response.bytes, response.status, now);
    }

    fn handle_response(&mut self, msg: Message, now: Instant) {
        if !matches!(
            self.txns.handle_response(&msg, now),
            ClientInput::Response { .. } | ClientInput::Absorbed { .. }
        ) {
            // A B2BUA never forwards stray responses (RFC 3261 §17.1.3).
            self.stats.unmatched_responses += 1;
        }
    }

    fn reject_malformed(&mut self, inbound: &Inbound, err: &ParseError) {
        self.stats.parse_errors += 1;
        match answer::reject(&inbound.bytes, err, inbound, &self.cfg) {
            Some(bytes) => self.outbox.push_back(Outbound {
                bytes,
                dest: inbound.peer,
                transport: inbound.transport,
                conn: inbound.conn,
            }),
            None => self.stats.dropped += 1,
        }
        tracing::debug!(peer = %inbound.peer, error = %err, "malformed message");
    }

    fn drain_transactions(&mut self) {
        while let Some(Transmit {
            dest,
            transport,
            bytes,
        }) = self.txns.poll_transmit()
        {
            // TCP: the transport reuses the connection to `dest` (RFC 3261 §18).
            self.outbox.push_back(Outbound {
                bytes,
                dest,
                transport,
                conn: None,
            });
        }
        // Transaction events (timeouts, terminations) have no consumer until
        // the B2BUA lands; draining keeps the queue bounded.
        while self.txns.poll_event().is_some() {}
    }
}

#[cfg(test)]
mod tests;
