//! Tests of the RFC 3261 §17 transaction manager, driven by a fake clock.
//!
//! [`Harness`] owns a [`Transactions`] and a current time and, like quinn's
//! `Pair`, jumps straight to the next `poll_timeout()`, so a 32 s timer path
//! runs in microseconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::sip::build::{self, RequestBuilder, ResponseBuilder};
use crate::sip::{Bytes, Message, Method, StatusCode, Transport};

/// The fake clock's origin. The only clock read in this module: tests need
/// one real `Instant` to add durations to; time never advances by itself.
pub(crate) fn origin() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const PEER: &str = "192.0.2.10:5060";

fn peer() -> SocketAddr {
    PEER.parse()
        .unwrap_or_else(|_| SocketAddr::from(([192, 0, 2, 10], 5060)))
}

/// A request as a UA at 192.0.2.10 would send it.
fn request(method: Method, branch: &str, cseq: u32, transport: Transport) -> Message {
    let raw = RequestBuilder::new(method, "sip:bob@example.com")
        .via(transport, "192.0.2.10:5060", branch, true)
        .from("<sip:alice@example.net>", Some("fromtag"))
        .to("<sip:bob@example.com>", None)
        .call_id("call-1@192.0.2.10")
        .cseq(cseq)
        .build();
    parse(raw)
}

fn parse(raw: Bytes) -> Message {
    match Message::parse(raw) {
        Ok(m) => m,
        Err(e) => panic!("test message does not parse: {e}"),
    }
}

fn parse_str(s: &str) -> Message {
    parse(Bytes::copy_from_slice(s.replace('\n', "\r\n").as_bytes()))
}

fn response(req: &Message, code: u16) -> Message {
    parse(
        ResponseBuilder::new(req, StatusCode(code))
            .to_tag("totag")
            .build(),
    )
}

/// quinn-`Pair`-style driver: a manager plus a fake clock.
struct Harness {
    txs: Transactions,
    t0: Instant,
    now: Instant,
    /// (time since t0, transmit), in order.
    sent: Vec<(Duration, Transmit)>,
    events: Vec<(Duration, TransactionEvent)>,
}

impl Harness {
    fn new() -> Self {
        let t0 = origin();
        Harness {
            txs: Transactions::new(TimerConfig::default()),
            t0,
            now: t0,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Drains transmits and events (the contract after every input).
    fn drain(&mut self) {
        let at = self.elapsed();
        while let Some(t) = self.txs.poll_transmit() {
            self.sent.push((at, t));
        }
        while let Some(e) = self.txs.poll_event() {
            self.events.push((at, e));
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Jumps to the next deadline if it is not after `limit` (since t0).
    fn step(&mut self, limit: Duration) -> bool {
        match self.txs.poll_timeout() {
            Some(at) if at - self.t0 <= limit => {
                self.now = self.now.max(at);
                self.txs.handle_timeout(self.now);
                self.drain();
                true
            }
            _ => false,
        }
    }

    /// Runs every timer up to `limit` since t0, then sets the clock there.
    fn run_until(&mut self, limit: Duration) {
        while self.step(limit) {}
        self.now = self.now.max(self.t0 + limit);
    }

    fn run_to_idle(&mut self) {
        while self.step(Duration::MAX) {}
    }

    fn req_in(&mut self, msg: &Message, transport: Transport) -> ServerInput {
        let r = self.txs.handle_request(msg, peer(), transport, self.now);
        self.drain();
        r
    }

    fn resp_in(&mut self, msg: &Message) -> ClientInput {
        let r = self.txs.handle_response(msg, self.now);
        self.drain();
        r
    }

    fn respond(&mut self, key: &TransactionKey, resp: &Message) -> Result<(), RespondError> {
        let status = resp.status().unwrap_or(StatusCode(0));
        let r = self
            .txs
            .try_respond(key, resp.as_bytes().clone(), status, self.now);
        self.drain();
        r
    }

    fn send(&mut self, msg: Message, transport: Transport) -> TransactionKey {
        let r = self.txs.send_request(msg, peer(), transport, self.now);
        self.drain();
        match r {
            Ok(k) => k,
            Err(e) => panic!("send_request refused: {e}"),
        }
    }

    fn take_sent(&mut self) -> Vec<(Duration, Transmit)> {
        std::mem::take(&mut self.sent)
    }

    fn sent_times_ms(&mut self) -> Vec<u128> {
        self.take_sent()
            .iter()
            .map(|(t, _)| t.as_millis())
            .collect()
    }

    fn take_events(&mut self) -> Vec<TransactionEvent> {
        std::mem::take(&mut self.events)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }
}

fn new_key(input: ServerInput) -> TransactionKey {
    match input {
        ServerInput::NewRequest { key } => key,
        other => panic!("expected NewRequest, got {other:?}"),
    }
}

// ---- client INVITE ------------------------------------------------------

#[test]
fn client_invite_timer_a_doubles_uncapped_then_b_times_out() {
    let mut h = Harness::new();
    let key = h.send(
        request(Method::Invite, "z9hG4bKa1", 1, Transport::Udp),
        Transport::Udp,
    );
    h.run_to_idle();
    // First send at 0, then A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 (intervals
    // 0.5, 1, 2, 4, 8, 16 s: no T2 cap), then B at 64·T1 = 32 s.
    assert_eq!(h.sent_times_ms(), [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(
        h.events,
        [
            (
                ms(32_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::B
                }
            ),
            (ms(32_000), TransactionEvent::Terminated { key }),
        ]
    );
    assert!(h.txs.is_empty());
    assert_eq!(h.txs.poll_timeout(), None);
}

#[test]
fn client_invite_1xx_stops_timer_a_and_non_2xx_is_acked() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKa2", 1, Transport::Udp);
    let key = h.send(invite.clone(), Transport::Udp);
    h.run_until(ms(1600)); // two retransmissions
    assert_eq!(h.sent_times_ms(), [0, 500, 1500]);
    assert_eq!(h.txs.stats().retransmissions_sent, 2);
    assert_eq!(
        h.resp_in(&response(&invite, 180)),
        ClientInput::Response { key: key.clone() }
    );
    assert_eq!(
        h.txs.state(&key),
        Some(TransactionState::ClientInvite(
            ClientInviteState::Proceeding
        ))
    );
    h.run_until(ms(100_000));
    assert!(h.take_sent().is_empty(), "no retransmission after a 1xx");
    assert!(h.txs.contains(&key), "B does not run in Proceeding");

    let busy = response(&invite, 486);
    assert_eq!(h.resp_in(&busy), ClientInput::Response { key: key.clone() });
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    let ack = parse(sent[0].1.bytes.clone());
    assert_eq!(ack.method(), Some(&Method::Ack));
    assert_eq!(ack.cseq().map(|c| (c.seq, c.method)), Ok((1, Method::Ack)));
    assert_eq!(
        ack.top_via().ok().and_then(|v| v.branch()),
        Some("z9hG4bKa2")
    );
    assert_eq!(ack.to().ok().and_then(|t| t.tag()), Some("totag"));

    // D absorbs retransmitted finals, re-ACKing each.
    h.advance(ms(1000));
    assert_eq!(h.resp_in(&busy), ClientInput::Absorbed { key: key.clone() });
    assert_eq!(h.take_sent().len(), 1);
    let d_start = ms(100_000);
    h.run_to_idle();
    assert_eq!(
        h.events,
        [(d_start + ms(32_000), TransactionEvent::Terminated { key })]
    );
    assert!(h.txs.is_empty());
}

#[test]
fn client_invite_2xx_accepted_passes_retransmissions_up() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKa3", 1, Transport::Udp);
    let key = h.send(invite.clone(), Transport::Udp);
    h.take_sent();
    let ok = response(&invite, 200);
    assert_eq!(h.resp_in(&ok), ClientInput::Response { key: key.clone() });
    assert!(
        h.take_sent().is_empty(),
        "the transaction does not ACK a 2xx"
    );
    assert_eq!(
        h.txs.state(&key),
        Some(TransactionState::ClientInvite(ClientInviteState::Accepted))
    );
    h.advance(ms(500));
    assert_eq!(h.resp_in(&ok), ClientInput::Response { key: key.clone() });
    // M = 64·T1 from the first 2xx, not restarted by retransmissions.
    h.run_to_idle();
    assert!(h.take_sent().is_empty());
    assert_eq!(
        h.events,
        [(ms(32_000), TransactionEvent::Terminated { key })]
    );
    assert_eq!(h.resp_in(&ok), ClientInput::Stray);
}

#[test]
fn client_invite_tcp_never_retransmits_and_d_is_zero() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKa4", 1, Transport::Tcp);
    let key = h.send(invite.clone(), Transport::Tcp);
    h.run_until(ms(20_000));
    assert_eq!(h.sent_times_ms(), [0]);
    assert_eq!(
        h.resp_in(&response(&invite, 500)),
        ClientInput::Response { key: key.clone() }
    );
    assert_eq!(h.take_sent().len(), 1, "the ACK");
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
    assert!(h.txs.is_empty());
}

#[test]
fn client_invite_tcp_b_still_times_out() {
    let mut h = Harness::new();
    let key = h.send(
        request(Method::Invite, "z9hG4bKa5", 1, Transport::Tcp),
        Transport::Tcp,
    );
    h.run_to_idle();
    assert_eq!(h.sent_times_ms(), [0]);
    assert_eq!(
        h.take_events(),
        [
            TransactionEvent::Timeout {
                key: key.clone(),
                timer: Timer::B
            },
            TransactionEvent::Terminated { key }
        ]
    );
}

// ---- client non-INVITE --------------------------------------------------

#[test]
fn client_non_invite_timer_e_capped_at_t2_then_f() {
    let mut h = Harness::new();
    let key = h.send(
        request(Method::Options, "z9hG4bKn1", 1, Transport::Udp),
        Transport::Udp,
    );
    h.run_to_idle();
    assert_eq!(
        h.sent_times_ms(),
        [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
    assert_eq!(
        h.events,
        [
            (
                ms(32_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::F
                }
            ),
            (ms(32_000), TransactionEvent::Terminated { key }),
        ]
    );
}

#[test]
fn client_non_invite_final_then_k_absorbs() {
    let mut h = Harness::new();
    let req = request(Method::Register, "z9hG4bKn2", 7, Transport::Udp);
    let key = h.send(req.clone(), Transport::Udp);
    h.advance(ms(200));
    assert_eq!(
        h.resp_in(&response(&req, 100)),
        ClientInput::Response { key: key.clone() }
    );
    assert_eq!(
        h.resp_in(&response(&req, 200)),
        ClientInput::Response { key: key.clone() }
    );
    assert_eq!(
        h.resp_in(&response(&req, 200)),
        ClientInput::Absorbed { key: key.clone() }
    );
    h.take_sent();
    h.run_to_idle();
    assert!(h.take_sent().is_empty());
    assert_eq!(h.events, [(ms(5200), TransactionEvent::Terminated { key })]);
}

#[test]
fn client_non_invite_tcp_no_retransmit_zero_k() {
    let mut h = Harness::new();
    let req = request(Method::Options, "z9hG4bKn3", 1, Transport::Tcp);
    let key = h.send(req.clone(), Transport::Tcp);
    h.run_until(ms(31_000));
    assert_eq!(h.sent_times_ms(), [0]);
    assert_eq!(
        h.resp_in(&response(&req, 200)),
        ClientInput::Response { key: key.clone() }
    );
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
}

#[test]
fn client_response_matching_uses_branch_and_cseq_method() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKm1", 1, Transport::Udp);
    let key = h.send(invite.clone(), Transport::Udp);
    // Same branch, other CSeq method: a CANCEL's response is not the INVITE's.
    let cancel = parse(build::cancel_for(&invite));
    assert_eq!(h.resp_in(&response(&cancel, 200)), ClientInput::Stray);
    assert!(h.txs.accepts(&response(&invite, 180)));
    assert!(!h.txs.accepts(&response(&cancel, 200)));
    assert!(
        !h.txs.accepts(&invite),
        "a request is matched against server transactions"
    );
    let cancel_key = h.send(cancel.clone(), Transport::Udp);
    assert_ne!(cancel_key, key);
    assert_eq!(
        h.resp_in(&response(&cancel, 200)),
        ClientInput::Response { key: cancel_key }
    );
    assert_eq!(
        h.resp_in(&response(&invite, 487)),
        ClientInput::Response { key }
    );
    let other = request(Method::Invite, "z9hG4bKother", 1, Transport::Udp);
    assert_eq!(h.resp_in(&response(&other, 200)), ClientInput::Stray);
    assert!(matches!(
        h.resp_in(&invite),
        ClientInput::Invalid(KeyError::WrongKind)
    ));
}

#[test]
fn send_request_refuses_ack_and_duplicates() {
    let mut h = Harness::new();
    let inv = request(Method::Invite, "z9hG4bKd1", 1, Transport::Udp);
    h.send(inv.clone(), Transport::Udp);
    assert_eq!(
        h.txs
            .send_request(inv.clone(), peer(), Transport::Udp, h.now),
        Err(RequestError::Duplicate)
    );
    let ack = request(Method::Ack, "z9hG4bKd2", 1, Transport::Udp);
    assert_eq!(
        h.txs.send_request(ack, peer(), Transport::Udp, h.now),
        Err(RequestError::Ack)
    );
    let resp = response(&inv, 200);
    assert!(matches!(
        h.txs.send_request(resp, peer(), Transport::Udp, h.now),
        Err(RequestError::Key(KeyError::WrongKind))
    ));
}

#[test]
fn transport_error_terminates_with_event() {
    let mut h = Harness::new();
    let key = h.send(
        request(Method::Invite, "z9hG4bKe1", 1, Transport::Tcp),
        Transport::Tcp,
    );
    h.txs.transport_error(&key, h.now);
    h.drain();
    assert_eq!(
        h.take_events(),
        [
            TransactionEvent::TransportError { key: key.clone() },
            TransactionEvent::Terminated { key: key.clone() }
        ]
    );
    h.txs.transport_error(&key, h.now); // unknown key: ignored
    assert!(h.txs.is_empty());
}

// ---- server non-INVITE --------------------------------------------------

#[test]
fn server_non_invite_absorbs_and_resends_last_response_then_j() {
    let mut h = Harness::new();
    let req = request(Method::Options, "z9hG4bKs1", 1, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    assert!(h.take_sent().is_empty(), "nothing to resend yet");
    let ok = response(&req, 200);
    assert_eq!(h.respond(&key, &ok), Ok(()));
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.dest, peer());
    assert_eq!(&sent[0].1.bytes, ok.as_bytes());
    h.advance(ms(2000));
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    assert_eq!(
        h.take_sent()
            .iter()
            .map(|(_, t)| t.bytes.clone())
            .collect::<Vec<_>>(),
        [ok.as_bytes().clone()]
    );
    assert_eq!(
        h.respond(&key, &response(&req, 500)),
        Err(RespondError::InvalidState)
    );
    h.run_to_idle();
    assert!(
        h.take_sent().is_empty(),
        "no retransmission of non-INVITE responses"
    );
    assert_eq!(
        h.events,
        [(
            ms(32_000),
            TransactionEvent::Terminated { key: key.clone() }
        )]
    );
    assert_eq!(h.respond(&key, &ok), Err(RespondError::UnknownTransaction));
}

/// A REGISTER's 200 over UDP leaves only the slim Completed record: a
/// retransmission within Timer J gets the very same bytes, to the same
/// place, and nothing else of the transaction is held.
#[test]
fn completed_register_is_a_slim_record_resending_the_same_bytes() {
    let mut h = Harness::new();
    let req = request(Method::Register, "z9hG4bKreg1", 7, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    let ok = parse_str(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKreg1\n\
         From: <sip:alice@example.net>;tag=fromtag\nTo: <sip:bob@example.com>;tag=t1\n\
         Call-ID: call-1@192.0.2.10\nCSeq: 7 REGISTER\n\
         Contact: <sip:alice@10.0.0.5:5060>;expires=600\nContent-Length: 0\n\n",
    );
    assert_eq!(h.respond(&key, &ok), Ok(()));
    let first = h.take_sent();
    assert_eq!(first.len(), 1);
    assert_eq!(&first[0].1.bytes, ok.as_bytes());
    assert_eq!(h.txs.machines(), 0, "no state machine held in Completed");
    assert_eq!(h.txs.len(), 1);
    assert_eq!(
        h.txs.state(&key),
        Some(TransactionState::ServerNonInvite(
            ServerNonInviteState::Completed
        ))
    );

    h.advance(ms(31_999));
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    let again = h.take_sent();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].1, first[0].1,
        "same bytes, destination and transport"
    );
    assert_eq!(h.txs.stats().retransmissions_received, 1);
    assert_eq!(h.respond(&key, &ok), Err(RespondError::InvalidState));

    h.run_to_idle();
    assert_eq!(
        h.take_events(),
        [TransactionEvent::Terminated { key: key.clone() }]
    );
    assert!(h.txs.is_empty());
    assert_eq!(h.txs.poll_timeout(), None);
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::NewRequest { key },
        "after Timer J a retransmission is a new request"
    );
}

#[test]
fn completed_record_expires_at_timer_j_exactly() {
    let mut h = Harness::new();
    let req = request(Method::Options, "z9hG4bKj1", 1, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    h.advance(ms(10));
    assert_eq!(h.respond(&key, &response(&req, 200)), Ok(()));
    assert_eq!(h.txs.poll_timeout(), Some(h.t0 + ms(32_010)));
    h.run_until(ms(32_009));
    assert!(h.take_events().is_empty());
    h.run_until(ms(32_010));
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
}

#[test]
fn completed_record_transport_error_terminates_it() {
    let mut h = Harness::new();
    let req = request(Method::Register, "z9hG4bKte", 1, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    assert_eq!(h.respond(&key, &response(&req, 200)), Ok(()));
    h.txs.transport_error(&key, h.now);
    h.drain();
    assert_eq!(
        h.take_events(),
        [
            TransactionEvent::TransportError { key: key.clone() },
            TransactionEvent::Terminated { key: key.clone() }
        ]
    );
    assert!(h.txs.is_empty());
    // Its queue entry, now stale, never ends a newer transaction of the key.
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::NewRequest { key: key.clone() }
    );
    h.advance(ms(100));
    assert_eq!(h.respond(&key, &response(&req, 200)), Ok(()));
    h.run_until(ms(32_050));
    assert!(
        h.take_events().is_empty(),
        "the stale deadline ends nothing"
    );
    h.run_to_idle();
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
}

/// RFC 3261 §26.3.2.4: a challenge is sent once; the retransmission opens
/// a new transaction (and is challenged again by the TU).
#[test]
fn stateless_challenge_holds_nothing() {
    let mut h = Harness::new();
    let req = request(Method::Register, "z9hG4bKch", 1, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    let challenge = response(&req, 401);
    h.txs
        .respond_stateless(&key, challenge.as_bytes().clone(), StatusCode(401), h.now);
    h.drain();
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(
        h.take_events(),
        [TransactionEvent::Terminated { key: key.clone() }]
    );
    assert!(h.txs.is_empty());
    assert_eq!(h.txs.poll_timeout(), None);
    assert_eq!(
        h.req_in(&req, Transport::Udp),
        ServerInput::NewRequest { key }
    );
}

#[test]
fn server_non_invite_tcp_zero_j() {
    let mut h = Harness::new();
    let req = request(Method::Bye, "z9hG4bKs2", 2, Transport::Tcp);
    let key = new_key(h.req_in(&req, Transport::Tcp));
    assert_eq!(h.respond(&key, &response(&req, 200)), Ok(()));
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
    assert!(h.txs.is_empty());
}

#[test]
fn server_non_invite_silent_tu_is_guarded() {
    let mut h = Harness::new();
    let req = request(Method::Message, "z9hG4bKs3", 1, Transport::Udp);
    let key = new_key(h.req_in(&req, Transport::Udp));
    h.run_to_idle();
    assert_eq!(
        h.events,
        [
            (
                ms(32_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::C
                }
            ),
            (ms(32_000), TransactionEvent::Terminated { key }),
        ]
    );
}

// ---- server INVITE ------------------------------------------------------

#[test]
fn server_invite_g_capped_at_t2_until_ack_then_i() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi1", 1, Transport::Udp);
    let key = new_key(h.req_in(&invite, Transport::Udp));
    let trying = response(&invite, 100);
    h.respond(&key, &trying).ok();
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(
        h.req_in(&invite, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    assert_eq!(
        h.take_sent()[0].1.bytes,
        trying.as_bytes().clone(),
        "last provisional resent"
    );

    let busy = response(&invite, 486);
    h.respond(&key, &busy).ok();
    h.run_until(ms(12_000));
    // G: 0.5, 1.5, 3.5, 7.5, 11.5 (interval capped at T2 = 4 s).
    assert_eq!(h.sent_times_ms(), [0, 500, 1500, 3500, 7500, 11500]);
    let before = h.txs.stats();
    // A retransmitted INVITE gets the final response again.
    assert_eq!(
        h.req_in(&invite, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    assert_eq!(
        h.txs.stats().retransmissions_received,
        before.retransmissions_received + 1
    );
    assert_eq!(h.take_sent()[0].1.bytes, busy.as_bytes().clone());

    let ack = parse(build::ack_for_non_2xx(&invite, &busy));
    assert_eq!(
        h.req_in(&ack, Transport::Udp),
        ServerInput::AckForServerInvite { key: key.clone() }
    );
    assert_eq!(
        h.txs.state(&key),
        Some(TransactionState::ServerInvite(ServerInviteState::Confirmed))
    );
    // Confirmed absorbs ACK retransmissions; I = T4 later it terminates.
    assert_eq!(
        h.req_in(&ack, Transport::Udp),
        ServerInput::AckForServerInvite { key: key.clone() }
    );
    h.run_to_idle();
    assert!(h.take_sent().is_empty(), "G stopped by the ACK");
    assert_eq!(
        h.events,
        [(ms(17_000), TransactionEvent::Terminated { key })]
    );
}

#[test]
fn server_invite_h_fires_when_ack_never_arrives() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi2", 1, Transport::Udp);
    let key = new_key(h.req_in(&invite, Transport::Udp));
    h.advance(ms(1000));
    h.respond(&key, &response(&invite, 603)).ok();
    h.run_to_idle();
    assert_eq!(
        h.sent_times_ms(),
        [1000, 1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500]
    );
    assert_eq!(
        h.events,
        [
            (
                ms(33_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::H
                }
            ),
            (ms(33_000), TransactionEvent::Terminated { key }),
        ]
    );
}

#[test]
fn server_invite_tcp_no_g_and_zero_i() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi3", 1, Transport::Tcp);
    let key = new_key(h.req_in(&invite, Transport::Tcp));
    let busy = response(&invite, 486);
    h.respond(&key, &busy).ok();
    h.run_until(ms(20_000));
    assert_eq!(h.sent_times_ms(), [0]);
    assert_eq!(h.sent.len(), 0);
    let ack = parse(build::ack_for_non_2xx(&invite, &busy));
    assert_eq!(
        h.req_in(&ack, Transport::Tcp),
        ServerInput::AckForServerInvite { key: key.clone() }
    );
    assert_eq!(h.take_events(), [TransactionEvent::Terminated { key }]);
}

#[test]
fn server_invite_tcp_h_still_fires() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi4", 1, Transport::Tcp);
    let key = new_key(h.req_in(&invite, Transport::Tcp));
    h.respond(&key, &response(&invite, 480)).ok();
    h.run_to_idle();
    assert_eq!(h.sent_times_ms(), [0]);
    assert_eq!(
        h.take_events(),
        [
            TransactionEvent::Timeout {
                key: key.clone(),
                timer: Timer::H
            },
            TransactionEvent::Terminated { key }
        ]
    );
}

#[test]
fn server_invite_2xx_accepted_absorbs_invite_and_passes_ack() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi5", 1, Transport::Udp);
    let key = new_key(h.req_in(&invite, Transport::Udp));
    let ok = response(&invite, 200);
    h.respond(&key, &ok).ok();
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(
        h.req_in(&invite, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    assert!(
        h.take_sent().is_empty(),
        "Accepted absorbs without resending"
    );
    // The TU retransmits its 2xx through the transaction (§13.3.1.4).
    assert_eq!(h.respond(&key, &ok), Ok(()));
    assert_eq!(h.take_sent().len(), 1);
    assert_eq!(
        h.respond(&key, &response(&invite, 404)),
        Err(RespondError::InvalidState)
    );
    // ACK for a 2xx: new branch, no transaction: passed to the TU.
    let ack = request(Method::Ack, "z9hG4bKack2xx", 1, Transport::Udp);
    assert_eq!(
        h.req_in(&ack, Transport::Udp),
        ServerInput::Ack2xx { invite: None }
    );
    // A peer reusing the INVITE's branch for the 2xx ACK matches Accepted.
    let ack_same = request(Method::Ack, "z9hG4bKi5", 1, Transport::Udp);
    assert_eq!(
        h.req_in(&ack_same, Transport::Udp),
        ServerInput::Ack2xx {
            invite: Some(key.clone())
        }
    );
    h.run_to_idle();
    assert_eq!(
        h.events,
        [(ms(32_000), TransactionEvent::Terminated { key })]
    );
}

#[test]
fn server_invite_silent_tu_guarded_by_c() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi6", 1, Transport::Udp);
    let key = new_key(h.req_in(&invite, Transport::Udp));
    h.advance(ms(60_000));
    h.respond(&key, &response(&invite, 180)).ok(); // restarts C
    h.run_to_idle();
    assert_eq!(
        h.events,
        [
            (
                ms(240_000),
                TransactionEvent::Timeout {
                    key: key.clone(),
                    timer: Timer::C
                }
            ),
            (ms(240_000), TransactionEvent::Terminated { key }),
        ]
    );
}

#[test]
fn timer_heap_stays_bounded_under_rescheduling() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKi7", 1, Transport::Udp);
    let key = new_key(h.req_in(&invite, Transport::Udp));
    let ringing = response(&invite, 180);
    for _ in 0..10_000 {
        h.advance(ms(1));
        // Each provisional restarts C: one new heap entry, one stale.
        assert_eq!(h.respond(&key, &ringing), Ok(()));
    }
    assert!(
        h.txs.heap_len() <= 2 * h.txs.len() + 65,
        "{}",
        h.txs.heap_len()
    );
    assert_eq!(
        h.txs.poll_timeout(),
        Some(h.now + TimerConfig::default().timer_c)
    );
}

// ---- matching: CANCEL, RFC 2543, invalid --------------------------------

#[test]
fn cancel_matches_its_invite_server_transaction() {
    let mut h = Harness::new();
    let invite = request(Method::Invite, "z9hG4bKc1", 1, Transport::Udp);
    let inv_key = new_key(h.req_in(&invite, Transport::Udp));
    h.respond(&inv_key, &response(&invite, 180)).ok();
    let cancel = parse(build::cancel_for(&invite));
    let cancel_key = match h.req_in(&cancel, Transport::Udp) {
        ServerInput::CancelFor {
            cancel,
            invite: Some(i),
        } => {
            assert_eq!(i, inv_key);
            cancel
        }
        other => panic!("expected CancelFor, got {other:?}"),
    };
    assert_eq!(cancel_key.method, Method::Cancel);
    assert_eq!(
        h.req_in(&cancel, Transport::Udp),
        ServerInput::Absorbed {
            key: cancel_key.clone()
        }
    );
    assert_eq!(h.respond(&cancel_key, &response(&cancel, 200)), Ok(()));
    assert_eq!(h.respond(&inv_key, &response(&invite, 487)), Ok(()));
    assert_eq!(h.txs.len(), 2);

    // A CANCEL for an unknown INVITE still gets its own transaction (for 481).
    let stray = parse(build::cancel_for(&request(
        Method::Invite,
        "z9hG4bKc2",
        1,
        Transport::Udp,
    )));
    assert!(matches!(
        h.req_in(&stray, Transport::Udp),
        ServerInput::CancelFor { invite: None, .. }
    ));
    // Different sent-by does not match (§17.2.3).
    let other_host = parse_str(
        "CANCEL sip:bob@example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKc1\n\
         From: <sip:alice@example.net>;tag=fromtag\n\
         To: <sip:bob@example.com>\n\
         Call-ID: call-1@192.0.2.10\n\
         CSeq: 1 CANCEL\n\
         Content-Length: 0\n\n",
    );
    assert!(matches!(
        h.req_in(&other_host, Transport::Udp),
        ServerInput::CancelFor { invite: None, .. }
    ));
}

fn rfc2543_invite(cseq: u32, to_tag: &str) -> String {
    format!(
        "INVITE sip:bob@example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.20:5060\n\
         From: <sip:carol@example.org>;tag=ft2543\n\
         To: <sip:bob@example.com>{to_tag}\n\
         Call-ID: old-2543@192.0.2.20\n\
         CSeq: {cseq} INVITE\n\
         Content-Length: 0\n\n"
    )
}

#[test]
fn rfc2543_fallback_matching() {
    let mut h = Harness::new();
    let invite = parse_str(&rfc2543_invite(1, ""));
    let key = new_key(h.req_in(&invite, Transport::Udp));
    assert!(key.is_rfc2543());
    assert_eq!(
        h.req_in(&invite, Transport::Udp),
        ServerInput::Absorbed { key: key.clone() }
    );
    // Another CSeq is another transaction.
    let next = parse_str(&rfc2543_invite(2, ""));
    let key2 = new_key(h.req_in(&next, Transport::Udp));
    assert_ne!(key, key2);

    let busy = response(&invite, 486);
    h.respond(&key, &busy).ok();
    // ACK with the wrong To tag does not match.
    let wrong = parse_str(
        &rfc2543_invite(1, ";tag=nottheone")
            .replacen("INVITE sip", "ACK sip", 1)
            .replace("1 INVITE", "1 ACK"),
    );
    assert_eq!(
        h.req_in(&wrong, Transport::Udp),
        ServerInput::Ack2xx { invite: None }
    );
    // ACK carrying our response's To tag matches (Request-URI, From tag,
    // Call-ID, CSeq number, top Via).
    let ack = parse_str(
        &rfc2543_invite(1, ";tag=totag")
            .replacen("INVITE sip", "ACK sip", 1)
            .replace("1 INVITE", "1 ACK"),
    );
    assert_eq!(
        h.req_in(&ack, Transport::Udp),
        ServerInput::AckForServerInvite { key: key.clone() }
    );

    // CANCEL by RFC 2543 rules finds the INVITE (second one, still Proceeding).
    let cancel = parse_str(
        &rfc2543_invite(2, "")
            .replacen("INVITE sip", "CANCEL sip", 1)
            .replace("2 INVITE", "2 CANCEL"),
    );
    assert!(matches!(
        h.req_in(&cancel, Transport::Udp),
        ServerInput::CancelFor { invite: Some(k), .. } if k == key2
    ));
}

#[test]
fn responses_fed_as_requests_are_invalid() {
    // The parser already rejects messages without a usable Via or CSeq, so
    // the only key error left on this path is the wrong kind of message.
    let mut h = Harness::new();
    let resp = response(
        &request(Method::Options, "z9hG4bKv", 1, Transport::Udp),
        200,
    );
    match h.req_in(&resp, Transport::Udp) {
        ServerInput::Invalid(e) => {
            assert_eq!(e, KeyError::WrongKind);
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(h.txs.is_empty());
}

// ---- randomised sequences ------------------------------------------------

/// Deterministic xorshift64* generator: the randomised tests below are
/// reproducible bit for bit and need no seed from the environment.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

const METHODS: [Method; 5] = [
    Method::Invite,
    Method::Options,
    Method::Bye,
    Method::Ack,
    Method::Cancel,
];
const CODES: [u16; 12] = [100, 180, 183, 200, 202, 302, 401, 404, 486, 487, 500, 603];

fn random_request(rng: &mut Rng, tcp: bool) -> Message {
    let method = rng.pick(&METHODS).cloned().unwrap_or(Method::Options);
    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
    let cseq = 1 + rng.below(3) as u32;
    match rng.below(4) {
        // RFC 2543 peer: no magic cookie.
        0 => {
            let raw = rfc2543_invite(cseq, "")
                .replacen("INVITE sip", &format!("{} sip", method.as_str()), 1)
                .replace(
                    &format!("{cseq} INVITE"),
                    &format!("{cseq} {}", method.as_str()),
                );
            parse_str(&raw)
        }
        b => request(method, &format!("z9hG4bKr{b}"), cseq, transport),
    }
}

/// Random inputs from both sides and random clock jumps never panic, keep
/// `poll_timeout` ahead of the clock after `handle_timeout`, and always end
/// with every transaction terminated (nothing leaks).
#[test]
fn random_sequences_never_panic_and_always_drain() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _round in 0..60 {
        let mut h = Harness::new();
        let mut server: Vec<(TransactionKey, Message)> = Vec::new();
        let mut client: Vec<(TransactionKey, Message)> = Vec::new();
        for _ in 0..60 {
            match rng.below(8) {
                0 | 1 => {
                    let tcp = rng.below(4) == 0;
                    let msg = random_request(&mut rng, tcp);
                    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                    match h.req_in(&msg, transport) {
                        ServerInput::NewRequest { key } => server.push((key, msg)),
                        ServerInput::CancelFor { cancel, .. } => server.push((cancel, msg)),
                        _ => {}
                    }
                }
                2 | 3 => {
                    if let Some((key, req)) = rng.pick(&server).cloned() {
                        let code = rng.pick(&CODES).copied().unwrap_or(200);
                        let _ = h.respond(&key, &response(&req, code));
                    }
                }
                4 => {
                    let method = rng.pick(&METHODS).cloned().unwrap_or(Method::Invite);
                    let tcp = rng.below(3) == 0;
                    let transport = if tcp { Transport::Tcp } else { Transport::Udp };
                    let branch = format!("z9hG4bKc{}", rng.below(6));
                    let msg = request(method, &branch, 1, transport);
                    if let Ok(key) = h.txs.send_request(msg.clone(), peer(), transport, h.now) {
                        client.push((key, msg));
                    }
                    h.drain();
                }
                5 => {
                    if let Some((_, req)) = rng.pick(&client).cloned() {
                        let code = rng.pick(&CODES).copied().unwrap_or(200);
                        h.resp_in(&response(&req, code));
                    }
                }
                6 => {
                    let d = ms(rng.below(40_000));
                    h.advance(d);
                    h.txs.handle_timeout(h.now);
                    h.drain();
                    if let Some(at) = h.txs.poll_timeout() {
                        assert!(at > h.now, "poll_timeout not ahead of the clock");
                    }
                }
                _ => {
                    let pool = if rng.below(2) == 0 { &server } else { &client };
                    if let Some((key, _)) = rng.pick(pool).cloned() {
                        h.txs.transport_error(&key, h.now);
                        h.drain();
                    }
                }
            }
        }
        // Let time run: every state has a timer, so everything terminates.
        let mut steps = 0;
        while h.step(Duration::MAX) {
            steps += 1;
            assert!(steps < 10_000, "timers keep firing forever");
        }
        assert_eq!(h.txs.len(), 0, "leaked transactions");
        assert_eq!(h.txs.poll_timeout(), None);
        // Every transaction created was terminated exactly once per creation.
        let terminated = h
            .events
            .iter()
            .filter(|(_, e)| matches!(e, TransactionEvent::Terminated { .. }))
            .count();
        assert!(terminated >= server.len() + client.len());
    }
}

/// str0m-style malformed input: mutated messages that still parse are fed to
/// both sides; nothing may panic.
#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let base_invite = request(Method::Invite, "z9hG4bKmut", 1, Transport::Udp);
    let bases = [
        base_invite.as_bytes().clone(),
        response(&base_invite, 486).as_bytes().clone(),
        build::cancel_for(&base_invite),
        Bytes::copy_from_slice(rfc2543_invite(1, ";tag=x").replace('\n', "\r\n").as_bytes()),
    ];
    let mut h = Harness::new();
    h.send(base_invite.clone(), Transport::Udp);
    let mut fed = 0;
    for _ in 0..3000 {
        let Some(base) = rng.pick(&bases) else {
            continue;
        };
        let mut bytes = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len() as u64) as usize;
            if let Some(b) = bytes.get_mut(i) {
                let alphabet = b" :;=,<>\r\nz9hG4bK0aZ@";
                *b = rng.pick(alphabet).copied().unwrap_or(b' ');
            }
        }
        if let Ok(msg) = Message::parse(Bytes::from(bytes)) {
            fed += 1;
            h.req_in(&msg, Transport::Udp);
            h.resp_in(&msg);
            h.advance(ms(rng.below(2000)));
            h.txs.handle_timeout(h.now);
            h.drain();
        }
    }
    assert!(fed > 100, "mutations should mostly still parse ({fed})");
    h.run_to_idle();
    assert!(h.txs.is_empty());
}
