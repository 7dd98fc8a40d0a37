//! Endpoint behaviour from raw bytes to raw bytes, with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Endpoint, EndpointConfig};
use crate::sip::{HeaderName, Message, StatusCode, Transport};
use crate::transport::Inbound;

const PEER: &str = "127.0.0.2:5071";
const LOCAL: &str = "127.0.0.1:5060";

fn request(method: &str, extra: &str) -> String {
    format!(
        "{method} sip:sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-{method}-1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:sipfront.local>\r\n\
         Call-ID: call-{method}@10.0.0.7\r\n\
         CSeq: 1 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn inbound(text: &str, transport: Transport) -> Inbound {
    Inbound {
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        peer: PEER.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
        transport,
        conn: None,
    }
}

/// Feeds one message and returns every response sent, parsed.
fn exchange(ep: &mut Endpoint, text: &str, now: Instant) -> Vec<Message> {
    ep.handle(inbound(text, Transport::Udp), now);
    let mut out = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        assert_eq!(
            t.dest,
            PEER.parse::<SocketAddr>().unwrap(),
            "symmetric response"
        );
        out.push(Message::parse(t.bytes).expect("we emit parseable SIP"));
    }
    out
}

fn single(ep: &mut Endpoint, text: &str) -> Message {
    let mut out = exchange(ep, text, Instant::now());
    assert_eq!(out.len(), 1, "exactly one response to {text}");
    out.remove(0)
}

fn header(msg: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(msg.header(&name).unwrap_or_default()).into_owned()
}

#[test]
fn options_gets_200_with_capabilities_and_nat_params() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let r = single(&mut ep, &request("OPTIONS", ""));
    assert_eq!(r.status(), Some(StatusCode::OK));
    assert_eq!(header(&r, HeaderName::Allow), super::ALLOW);
    assert_eq!(header(&r, HeaderName::Accept), "application/sdp");
    assert!(r.header(&HeaderName::Supported).is_some());
    let via = r.top_via().unwrap();
    assert_eq!(
        via.received(),
        Some("127.0.0.2"),
        "RFC 3261 §18.2.1 received"
    );
    assert_eq!(via.rport(), Some(Some(5071)), "RFC 3581 rport filled in");
    assert!(r.to().unwrap().tag().is_some(), "UAS adds a To tag");
    assert_eq!(r.call_id().unwrap(), b"call-OPTIONS@10.0.0.7");
    assert_eq!(ep.stats().answered[0], 1);
}

#[test]
fn max_forwards_zero_is_483() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = request("OPTIONS", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(
        single(&mut ep, &text).status(),
        Some(StatusCode::TOO_MANY_HOPS)
    );
}

#[test]
fn unsupported_require_is_420_listing_the_tags() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let r = single(
        &mut ep,
        &request("OPTIONS", "Require: foo, bar\r\nProxy-Require: baz\r\n"),
    );
    assert_eq!(r.status(), Some(StatusCode::BAD_EXTENSION));
    assert_eq!(header(&r, HeaderName::Unsupported), "foo, bar, baz");
}

#[test]
fn unknown_method_is_501_and_known_unoffered_is_405_with_allow() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let r = single(&mut ep, &request("FROBNICATE", ""));
    assert_eq!(r.status(), Some(StatusCode::NOT_IMPLEMENTED));
    let r = single(&mut ep, &request("SUBSCRIBE", ""));
    assert_eq!(r.status(), Some(StatusCode::METHOD_NOT_ALLOWED));
    assert_eq!(header(&r, HeaderName::Allow), super::ALLOW);
}

#[test]
fn cancel_without_invite_is_481() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let r = single(&mut ep, &request("CANCEL", ""));
    assert_eq!(
        r.status(),
        Some(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST)
    );
}

#[test]
fn ack_is_never_answered() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    assert!(exchange(&mut ep, &request("ACK", ""), Instant::now()).is_empty());
}

#[test]
fn retransmitted_request_gets_the_same_response_once_more() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let now = Instant::now();
    let text = request("OPTIONS", "");
    let first = exchange(&mut ep, &text, now);
    let again = exchange(&mut ep, &text, now + Duration::from_millis(500));
    assert_eq!(first.len(), 1);
    assert_eq!(again.len(), 1);
    assert_eq!(
        first[0].as_bytes(),
        again[0].as_bytes(),
        "same To tag: absorbed by the server transaction, not re-answered"
    );
    assert_eq!(ep.stats().answered[0], 1);
}

#[test]
fn transactions_are_forgotten_after_timer_j() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let now = Instant::now();
    exchange(&mut ep, &request("OPTIONS", ""), now);
    let deadline = ep.poll_timeout().expect("Timer J armed over UDP");
    assert!(deadline <= now + Duration::from_secs(33));
    ep.handle_timeout(deadline);
    assert_eq!(ep.poll_timeout(), None, "nothing left to time");
}

#[test]
fn wrong_version_is_505_with_reason() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = request("OPTIONS", "").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    let r = single(&mut ep, &text);
    assert_eq!(r.status(), Some(StatusCode::VERSION_NOT_SUPPORTED));
    assert_eq!(ep.stats().parse_errors, 1);
}

#[test]
fn malformed_max_forwards_is_400_naming_the_fault() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = request("OPTIONS", "").replace("Max-Forwards: 70", "Max-Forwards: many");
    let r = single(&mut ep, &text);
    assert_eq!(r.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(r.reason(), Some(&b"Malformed Max-Forwards"[..]));
}

#[test]
fn request_whose_cseq_cannot_be_copied_is_dropped() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = request("OPTIONS", "").replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS");
    assert!(exchange(&mut ep, &text, Instant::now()).is_empty());
    assert_eq!(ep.stats().dropped, 1);
}

#[test]
fn unaddressable_garbage_is_dropped_and_counted() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    for junk in ["", "\r\n\r\n", "hello", "INVITE sip:x SIP/2.0\r\n\r\n"] {
        assert!(
            exchange(&mut ep, junk, Instant::now()).is_empty(),
            "{junk:?}"
        );
    }
    assert_eq!(ep.stats().dropped, 4);
}

#[test]
fn malformed_responses_are_never_answered() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK1\r\nCSeq: x\r\n\r\n";
    assert!(exchange(&mut ep, text, Instant::now()).is_empty());
}

#[test]
fn stray_response_is_counted_not_forwarded() {
    let mut ep = Endpoint::new(EndpointConfig::default());
    let text = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKnope\r\n\
                From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\n\
                CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    assert!(exchange(&mut ep, text, Instant::now()).is_empty());
    assert_eq!(ep.stats().unmatched_responses, 1);
}
