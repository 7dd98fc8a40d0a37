//! Overload control through the endpoint with the fake clock: a new INVITE
//! that queued too long is refused `503` at once, one past the hard bound is
//! dropped, while requests and responses of calls in progress are processed
//! however long they waited.

use super::*;
use crate::endpoint::OverloadConfig;

impl H {
    /// Feeds `bytes` from `from` as read off the UDP socket `queued` ago.
    fn feed_queued(
        &mut self,
        from: &str,
        bytes: Bytes,
        queued: Duration,
    ) -> Vec<(SocketAddr, Message)> {
        self.feed_queued_over(Transport::Udp, from, bytes, queued)
    }

    /// [`H::feed_queued`] over `transport`.
    fn feed_queued_over(
        &mut self,
        transport: Transport,
        from: &str,
        bytes: Bytes,
        queued: Duration,
    ) -> Vec<(SocketAddr, Message)> {
        self.ep.handle(
            Inbound {
                bytes,
                peer: addr(from),
                local: addr("127.0.0.1:5060"),
                transport,
                conn: None,
                received: self.now - queued,
            },
            self.now,
        );
        self.take()
    }
}

const DIALLED: &str = "12125551234";

#[test]
fn an_aged_new_invite_gets_503_at_once_while_an_aged_bye_ends_its_call() {
    let mut h = H::new();
    let (_, tag) = answered(&mut h);

    // Queued 300 ms (> overload_queue_ms 200): 503 + Retry-After, no B-leg.
    let out = h.feed_queued(A, a_invite_n(2, DIALLED, &[]), Duration::from_millis(300));
    assert_eq!(status_to(&out, A), vec![503]);
    assert_eq!(out[0].1.header(&HeaderName::RetryAfter), Some(&b"5"[..]));
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert!(request_to(&out, B2, Method::Invite).is_none());
    assert_eq!(h.ep.stats().overload_refused, 1);
    assert_eq!(
        h.ep.b2bua().stats().calls,
        1,
        "only the first call admitted"
    );
    // Its retransmission, read at once, is absorbed by the transaction: the
    // same 503 again (RFC 3261 §17.2.1), not a call.
    let out = h.feed(A, a_invite_n(2, DIALLED, &[]));
    assert_eq!(status_to(&out, A), vec![503]);
    assert_eq!(h.ep.stats().overload_refused, 1);

    // A BYE that queued 1.5 s still ends the call on both legs.
    let out = h.feed_queued(
        A,
        a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"),
        Duration::from_millis(1500),
    );
    assert_eq!(status_to(&out, A), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("BYE on the B-leg");
    assert_eq!(h.ep.b2bua().active_calls(), 0);
    // B's 200 to it, 3 s old (past overload_drop_ms): processed all the
    // same, so the BYE is never retransmitted.
    let ok = ResponseBuilder::new(&bye, StatusCode::OK).build();
    assert!(h.feed_queued(B1, ok, Duration::from_secs(3)).is_empty());
    let later = h.advance(Duration::from_secs(6));
    assert!(request_to(&later, B1, Method::Bye).is_none());
    assert_eq!(h.ep.stats().unmatched_responses, 0);

    // A new INVITE 2.5 s old (> overload_drop_ms 2000): dropped unanswered.
    let out = h.feed_queued(A, a_invite_n(3, DIALLED, &[]), Duration::from_millis(2500));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.ep.stats().overload_dropped, 1);

    // Fresh, a new INVITE is a call again.
    let out = h.feed_queued(A, a_invite_n(4, DIALLED, &[]), Duration::from_millis(150));
    assert_eq!(status_to(&out, A), vec![100]);
    assert!(request_to(&out, B1, Method::Invite).is_some());

    let m = h.ep.metrics(h.now);
    assert!(m.contains("\nsipfront_overload_refused_total 1\n"), "{m}");
    assert!(m.contains("\nsipfront_overload_dropped_total 1\n"), "{m}");
}

#[test]
fn an_aged_cancel_and_reinvite_are_processed() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 180, ""));
    // CANCEL has no To tag but ends a call attempt: never shed.
    let cancel = RequestBuilder::new(Method::Cancel, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id("a-call@10.9.9.9")
        .cseq(10)
        .build();
    let out = h.feed_queued(A, cancel, Duration::from_secs(5));
    assert_eq!(status_to(&out, A), vec![200, 487]);
    assert!(request_to(&out, B1, Method::Cancel).is_some());

    // A re-INVITE (To tag: in-dialog) that queued 1 s is relayed, not 503.
    let mut h = H::new();
    let (_, tag) = answered(&mut h);
    let reinvite = a_request(Method::Invite, 11, &tag, "z9hG4bKa-re");
    let out = h.feed_queued(A, reinvite, Duration::from_secs(1));
    assert!(request_to(&out, B1, Method::Invite).is_some(), "{out:?}");
    assert_eq!(h.ep.stats().overload_refused, 0);
}

#[test]
fn over_tcp_nothing_is_dropped_an_aged_new_invite_gets_503() {
    let mut h = H::new();
    let invite = a_invite_n(2, DIALLED, &[]);
    let out = h.feed_queued_over(Transport::Tcp, A, invite, Duration::from_secs(5));
    assert_eq!(status_to(&out, A), vec![503], "no retransmission will come");
    assert_eq!(
        (h.ep.stats().overload_refused, h.ep.stats().overload_dropped),
        (1, 0)
    );
}

#[test]
fn zero_turns_overload_shedding_off() {
    let mut h = H::with(|c| c.overload = OverloadConfig::default());
    let out = h.feed_queued(A, a_invite(SDP), Duration::from_secs(5));
    assert_eq!(status_to(&out, A), vec![100]);
    assert!(request_to(&out, B1, Method::Invite).is_some());
    assert_eq!(
        (h.ep.stats().overload_refused, h.ep.stats().overload_dropped),
        (0, 0)
    );
}
