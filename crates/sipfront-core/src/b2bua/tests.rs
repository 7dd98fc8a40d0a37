//! The B2BUA from raw bytes to raw bytes through the endpoint and the real
//! transaction layer, with a fake clock (no sockets, no sleeping).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::UpstreamConfig;
use crate::endpoint::{Endpoint, EndpointConfig};
use crate::routing::Upstreams;
use crate::sip::build::{RequestBuilder, ResponseBuilder};
use crate::sip::{HeaderName, Message, Method, StatusCode, Transport};
use crate::transport::Inbound;

use std::sync::Arc;

use crate::config::{Config, ConfigSource};

use super::Admission;

const A: &str = "127.0.0.1:5071";
const B1: &str = "127.0.0.3:5080";
const B2: &str = "127.0.0.4:5080";
const SDP: &str = "v=0\r\no=a 1 1 IN IP4 10.9.9.9\r\ns=-\r\nc=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

struct H {
    ep: Endpoint,
    now: Instant,
}

fn upstream(name: &str, uri: &str, priority: u32) -> UpstreamConfig {
    UpstreamConfig {
        name: name.to_owned(),
        uri: uri.to_owned(),
        priority,
        weight: 1,
        ping_interval_s: 0,
        trusted: false,
        ..Default::default()
    }
}

/// The trunk of most tests: IP-authenticated from 127.0.0.1 (A's address).
const PBX_TRUNK: &str = "[[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n";

/// An admission snapshot of `trunks` (TOML) with the shipped rate table.
fn admission(trunks: &str) -> Arc<Admission> {
    let text = format!("[rates]\nfile = \"config/rates.csv\"\n{trunks}");
    let cfg = Config::parse(&text, ConfigSource::Embedded).unwrap();
    Arc::new(Admission::new(&cfg, [7; 32]))
}

impl H {
    fn new() -> H {
        H::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut EndpointConfig)) -> H {
        H {
            ep: Endpoint::new(H::config(f)),
            now: Instant::now(),
        }
        .started()
    }

    /// Another core shard of the same node: its own endpoint, sharing this
    /// one's `SharedState` (channel counters, bans, rates).
    fn shard(&self, f: impl FnOnce(&mut EndpointConfig)) -> H {
        let shared = Arc::clone(self.ep.shared());
        H {
            ep: Endpoint::with_shared(H::config(f), shared),
            now: self.now,
        }
        .started()
    }

    fn config(f: impl FnOnce(&mut EndpointConfig)) -> EndpointConfig {
        let mut cfg = EndpointConfig {
            upstreams: Upstreams::from_config(&[
                upstream("one", &format!("sip:{B1}"), 1),
                upstream("two", &format!("sip:{B2}"), 2),
            ])
            .unwrap(),
            admission: admission(PBX_TRUNK),
            ..EndpointConfig::default()
        };
        f(&mut cfg);
        cfg
    }

    /// What main.rs does before its loop: the first `handle_timeout`.
    fn started(mut self) -> H {
        self.ep.handle_timeout(self.now);
        self
    }

    fn feed(&mut self, from: &str, bytes: Bytes) -> Vec<(SocketAddr, Message)> {
        self.ep.handle(
            Inbound {
                bytes,
                peer: addr(from),
                local: addr("127.0.0.1:5060"),
                transport: Transport::Udp,
                conn: None,
                received: self.now,
            },
            self.now,
        );
        self.take()
    }

    fn take(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut out = Vec::new();
        while let Some(o) = self.ep.poll_transmit() {
            out.push((
                o.dest,
                Message::parse(o.bytes).expect("we emit parseable SIP"),
            ));
        }
        out
    }

    /// Moves the clock by `d`, firing every deadline on the way.
    fn advance(&mut self, d: Duration) -> Vec<(SocketAddr, Message)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            self.ep.handle_timeout(self.now);
            out.extend(self.take());
        }
        self.now = end;
        out
    }
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.as_bytes()).into_owned()
}

fn status_to(out: &[(SocketAddr, Message)], dest: &str) -> Vec<u16> {
    out.iter()
        .filter(|(d, m)| *d == addr(dest) && !m.is_request())
        .filter_map(|(_, m)| m.status().map(|s| s.0))
        .collect()
}

fn request_to(out: &[(SocketAddr, Message)], dest: &str, method: Method) -> Option<Message> {
    out.iter()
        .find(|(d, m)| *d == addr(dest) && m.method() == Some(&method))
        .map(|(_, m)| m.clone())
}

fn a_invite(body: &str) -> Bytes {
    let mut b = RequestBuilder::new(Method::Invite, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id("a-call@10.9.9.9")
        .cseq(10)
        .contact("<sip:alice@10.9.9.9:5071>")
        .header("Record-Route", "<sip:10.9.9.1;lr>");
    if !body.is_empty() {
        b = b.body("application/sdp", Bytes::copy_from_slice(body.as_bytes()));
    }
    b.build()
}

/// A's CANCEL of its INVITE (`a_invite`).
fn a_cancel() -> Bytes {
    RequestBuilder::new(Method::Cancel, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id("a-call@10.9.9.9")
        .cseq(10)
        .build()
}

/// An in-dialog request from A (To carries the tag we gave A).
fn a_request(method: Method, cseq: u32, our_tag: &str, branch: &str) -> Bytes {
    RequestBuilder::new(method, "sip:sipfront@127.0.0.1:5060")
        .via(Transport::Udp, "10.9.9.9:5071", branch, true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", Some(our_tag))
        .call_id("a-call@10.9.9.9")
        .cseq(cseq)
        .contact("<sip:alice@10.9.9.9:5071>")
        .build()
}

fn b_response(inv: &Message, status: u16, body: &str) -> Bytes {
    let mut r = ResponseBuilder::new(inv, StatusCode(status))
        .to_tag("btag")
        .header("Contact", "<sip:uas@127.0.0.3:5080>");
    if !body.is_empty() {
        r = r.body("application/sdp", Bytes::copy_from_slice(body.as_bytes()));
    }
    r.build()
}

/// An in-dialog request from B, built from the B-leg INVITE it answered.
fn b_request(inv: &Message, method: Method, cseq: u32, branch: &str) -> Bytes {
    let from = inv.from().unwrap();
    let to = inv.to().unwrap();
    RequestBuilder::new(method, "sip:sipfront@127.0.0.1:5060")
        .via(Transport::Udp, "127.0.0.3:5080", branch, true)
        .from(&format!("<{}>", to.uri.as_str()), Some("btag"))
        .to(&format!("<{}>", from.uri.as_str()), from.tag())
        .call_id(std::str::from_utf8(inv.call_id().unwrap()).unwrap())
        .cseq(cseq)
        .contact("<sip:uas@127.0.0.3:5080>")
        .build()
}

/// Sets up a call up to the B-leg INVITE; returns it.
fn start(h: &mut H, body: &str) -> Message {
    let out = h.feed(A, a_invite(body));
    assert_eq!(status_to(&out, A), vec![100]);
    request_to(&out, B1, Method::Invite).expect("B-leg INVITE to the first upstream")
}

/// A call up to confirmed and ACKed; returns (B INVITE, A's To tag).
fn answered(h: &mut H) -> (Message, String) {
    let inv = start(h, SDP);
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .expect("200 relayed to A");
    assert!(request_to(&out, B1, Method::Ack).is_some(), "B's 2xx ACKed");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    let out = h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));
    assert!(out.is_empty());
    (inv, tag)
}

#[test]
fn b_leg_invite_hides_the_a_side() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let t = text(&inv);
    for leak in [
        "a-call",
        "atag",
        "10.9.9.9:5071",
        "z9hG4bKa-inv",
        "10.9.9.1",
        "alice@10.9.9.9",
    ] {
        assert!(!t.contains(leak), "B-leg INVITE leaks {leak}:\n{t}");
    }
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:12125551234@127.0.0.3:5080")
    );
    let from = inv.from().unwrap();
    assert_eq!(from.display, Some("Alice A"));
    assert_eq!(from.uri.user, Some("alice"));
    assert_eq!(inv.to().unwrap().uri.user, Some("12125551234"));
    assert_eq!(&inv.body()[..], SDP.as_bytes(), "SDP unchanged");
    assert!(inv.top_via().unwrap().rport().is_some());
    let contact = String::from_utf8_lossy(inv.header(&HeaderName::Contact).unwrap()).into_owned();
    assert_eq!(contact, "<sip:sipfront@127.0.0.1:5060;transport=udp>");
    assert_eq!(inv.max_forwards().unwrap(), Some(69));
}

#[test]
fn basic_call_relays_180_200_and_bye_from_a_ends_both() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 180, ""));
    assert_eq!(status_to(&out, A), vec![180]);
    let ringing = &out[0].1;
    let t = text(ringing);
    assert!(
        !t.contains("btag") && !t.contains("127.0.0.3"),
        "A-leg 180 leaks B:\n{t}"
    );
    assert!(
        t.contains("Record-Route: <sip:10.9.9.1;lr>"),
        "A's Record-Route echoed"
    );
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let ok = out.iter().find(|(d, _)| *d == addr(A)).unwrap().1.clone();
    assert_eq!(ok.status(), Some(StatusCode::OK));
    assert_eq!(&ok.body()[..], SDP.as_bytes());
    assert_eq!(ok.cseq().unwrap().seq, 10);
    let ack = request_to(&out, B1, Method::Ack).unwrap();
    assert_eq!(ack.cseq().unwrap().seq, inv.cseq().unwrap().seq);
    assert_eq!(ack.to().unwrap().tag(), Some("btag"));
    assert_eq!(ack.request_uri_str(), Some("sip:uas@127.0.0.3:5080"));
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    assert!(h
        .feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"))
        .is_empty());
    assert_eq!(h.ep.b2bua().active_calls(), 1);

    let out = h.feed(A, a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"));
    assert_eq!(status_to(&out, A), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("BYE on the B-leg");
    assert_eq!(bye.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    assert_eq!(h.ep.b2bua().active_calls(), 0);
    let resp = ResponseBuilder::new(&bye, StatusCode::OK).build();
    assert!(h.feed(B1, resp).is_empty());
    h.advance(Duration::from_secs(6));
    assert!(
        h.ep.b2bua().is_empty(),
        "the call left the table once its BYE transaction ended (Timer K), \
         not 64·T1 later with the INVITE's"
    );
}

#[test]
fn bye_from_b_ends_both() {
    let mut h = H::new();
    let (inv, _) = answered(&mut h);
    let out = h.feed(B1, b_request(&inv, Method::Bye, 1, "z9hG4bKb-bye"));
    assert_eq!(status_to(&out, B1), vec![200]);
    let bye = request_to(&out, A, Method::Bye).expect("BYE to A");
    assert_eq!(bye.call_id().unwrap(), b"a-call@10.9.9.9");
    assert_eq!(bye.to().unwrap().tag(), Some("atag"));
    assert_eq!(bye.request_uri_str(), Some("sip:alice@10.9.9.9:5071"));
    assert_eq!(bye.routes().count(), 1, "A's route set used toward A");
    h.advance(Duration::from_secs(60));
    assert!(h.ep.b2bua().is_empty());
}

#[test]
fn two_xx_is_retransmitted_to_a_until_ack_and_b_retransmits_are_reacked() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let tag = out
        .iter()
        .find(|(d, _)| *d == addr(A))
        .and_then(|(_, m)| m.to().ok()?.tag().map(str::to_owned))
        .unwrap();
    let out = h.advance(Duration::from_millis(600));
    assert_eq!(status_to(&out, A), vec![200], "retransmitted after T1");
    let out = h.advance(Duration::from_millis(1000));
    assert_eq!(status_to(&out, A), vec![200], "again after 2·T1");
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    assert!(
        request_to(&out, B1, Method::Ack).is_some(),
        "B's retransmitted 2xx re-ACKed"
    );
    h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));
    let out = h.advance(Duration::from_secs(10));
    assert!(
        status_to(&out, A).is_empty(),
        "no retransmission after the ACK"
    );
}

#[test]
fn missing_ack_ends_the_call_with_bye_on_both_legs() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 200, SDP));
    let out = h.advance(Duration::from_secs(33));
    assert!(request_to(&out, A, Method::Bye).is_some(), "BYE to A");
    assert!(request_to(&out, B1, Method::Bye).is_some(), "BYE to B");
    h.advance(Duration::from_secs(120));
    assert!(h.ep.b2bua().is_empty());
}

#[test]
fn cancel_after_180_gives_200_and_487_and_cancels_b() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 180, ""));
    let cancel = a_cancel();
    let out = h.feed(A, cancel);
    let mut got = status_to(&out, A);
    got.sort_unstable();
    assert_eq!(got, vec![200, 487]);
    let b_cancel = request_to(&out, B1, Method::Cancel).expect("CANCEL on the B-leg");
    assert_eq!(
        b_cancel.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch()
    );
    let out = h.feed(B1, ResponseBuilder::new(&b_cancel, StatusCode::OK).build());
    assert!(out.is_empty());
    let out = h.feed(B1, b_response(&inv, 487, ""));
    assert!(
        request_to(&out, B1, Method::Ack).is_some(),
        "487 ACKed by the transaction"
    );
    assert!(status_to(&out, A).is_empty());
    h.advance(Duration::from_secs(60));
    assert!(h.ep.b2bua().is_empty());
}

#[test]
fn two_xx_crossing_cancel_is_acked_and_byed() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 183, SDP));
    let cancel = a_cancel();
    h.feed(A, cancel);
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    assert!(request_to(&out, B1, Method::Ack).is_some());
    let bye = request_to(&out, B1, Method::Bye).expect("crossing 2xx BYEd");
    assert_eq!(bye.to().unwrap().tag(), Some("btag"));
    assert!(status_to(&out, A).is_empty(), "A already has its 487");
}

#[test]
fn busy_is_relayed_and_auth_challenges_become_503() {
    for (from_b, to_a) in [
        (486, 486),
        (407, 503),
        (401, 503),
        (404, 404),
        (302, 503),
        (603, 603),
    ] {
        let mut h = H::new();
        let inv = start(&mut h, SDP);
        let out = h.feed(B1, b_response(&inv, from_b, ""));
        assert_eq!(status_to(&out, A), vec![to_a], "{from_b}");
        assert!(
            request_to(&out, B2, Method::Invite).is_none(),
            "no fail-over on {from_b}"
        );
    }
}

#[test]
fn fail_over_on_503_then_second_upstream_answers() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 503, ""));
    assert!(status_to(&out, A).is_empty(), "nothing relayed to A");
    let inv2 = request_to(&out, B2, Method::Invite).expect("second upstream tried");
    assert_eq!(
        inv2.request_uri_str(),
        Some("sip:12125551234@127.0.0.4:5080")
    );
    let out = h.feed(B2, b_response(&inv2, 200, SDP));
    assert_eq!(status_to(&out, A), vec![200]);
}

#[test]
fn fail_over_on_silence_and_last_final_when_all_fail() {
    let mut h = H::new();
    start(&mut h, SDP);
    let out = h.advance(Duration::from_millis(5100));
    let inv2 = request_to(&out, B2, Method::Invite).expect("silent first upstream skipped");
    let out = h.feed(B2, b_response(&inv2, 500, ""));
    assert_eq!(status_to(&out, A), vec![500], "last final response");

    let mut h = H::new();
    start(&mut h, SDP);
    h.advance(Duration::from_millis(5100));
    let out = h.advance(Duration::from_millis(5100));
    assert_eq!(status_to(&out, A), vec![503], "no final at all: 503");
}

#[test]
fn no_fail_over_after_a_provisional_was_relayed() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 180, ""));
    let out = h.feed(B1, b_response(&inv, 503, ""));
    assert_eq!(status_to(&out, A), vec![503]);
    assert!(request_to(&out, B2, Method::Invite).is_none());
}

#[test]
fn reinvite_from_a_is_relayed_with_its_own_cseq() {
    let mut h = H::new();
    let (inv, tag) = answered(&mut h);
    let mut reinv = a_request(Method::Invite, 20, &tag, "z9hG4bKa-re");
    let body = format!("{SDP}a=sendonly\r\n");
    reinv = Bytes::from(String::from_utf8_lossy(&reinv).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    ));
    let out = h.feed(A, reinv);
    assert_eq!(status_to(&out, A), vec![100]);
    let b_re = request_to(&out, B1, Method::Invite).expect("re-INVITE relayed");
    assert_eq!(b_re.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    assert_eq!(b_re.to().unwrap().tag(), Some("btag"));
    assert_eq!(b_re.request_uri_str(), Some("sip:uas@127.0.0.3:5080"));
    assert!(String::from_utf8_lossy(&b_re.body()).contains("a=sendonly"));
    let out = h.feed(B1, b_response(&b_re, 200, SDP));
    let ok = out.iter().find(|(d, _)| *d == addr(A)).unwrap().1.clone();
    assert_eq!(ok.cseq().unwrap().seq, 20);
    let ack = request_to(&out, B1, Method::Ack).expect("B's re-INVITE 2xx ACKed");
    assert_eq!(ack.cseq().unwrap().seq, b_re.cseq().unwrap().seq);
    h.feed(A, a_request(Method::Ack, 20, &tag, "z9hG4bKa-re-ack"));
    let out = h.advance(Duration::from_secs(5));
    assert!(status_to(&out, A).is_empty());
}

#[test]
fn reinvite_from_b_and_info_are_relayed_back() {
    let mut h = H::new();
    let (inv, _) = answered(&mut h);
    let out = h.feed(B1, b_request(&inv, Method::Invite, 7, "z9hG4bKb-re"));
    let a_re = request_to(&out, A, Method::Invite).expect("re-INVITE to A");
    assert_eq!(a_re.cseq().unwrap().seq, 1, "A-leg CSeq space of our own");
    assert_eq!(a_re.call_id().unwrap(), b"a-call@10.9.9.9");
    let resp = ResponseBuilder::new(&a_re, StatusCode::OK)
        .header("Contact", "<sip:alice@10.9.9.9:5071>")
        .build();
    let out = h.feed(A, resp);
    let ok = out.iter().find(|(d, _)| *d == addr(B1)).unwrap().1.clone();
    assert_eq!(ok.status(), Some(StatusCode::OK));
    assert_eq!(ok.cseq().unwrap().seq, 7);
    assert!(!text(&ok).contains("10.9.9.9"), "A's Contact not leaked");
    assert!(
        request_to(&out, A, Method::Ack).is_none(),
        "offerless re-INVITE: A's ACK waits for B's (it carries the answer)"
    );
    let out = h.feed(B1, b_request(&inv, Method::Ack, 7, "z9hG4bKb-re-ack"));
    assert!(request_to(&out, A, Method::Ack).is_some());

    let out = h.feed(B1, b_request(&inv, Method::Info, 8, "z9hG4bKb-info"));
    let info = request_to(&out, A, Method::Info).expect("INFO relayed");
    assert_eq!(info.cseq().unwrap().seq, 2);
    let out = h.feed(A, ResponseBuilder::new(&info, StatusCode::OK).build());
    assert_eq!(status_to(&out, B1), vec![200]);
}

#[test]
fn unknown_dialog_gets_481() {
    let mut h = H::new();
    let out = h.feed(A, a_request(Method::Bye, 2, "nosuchtag", "z9hG4bKx"));
    assert_eq!(status_to(&out, A), vec![481]);
}

#[test]
fn max_duration_ends_both_legs() {
    let mut h = H::with(|c| c.b2bua.max_call_duration = Duration::from_secs(90));
    answered(&mut h);
    let out = h.advance(Duration::from_secs(91));
    assert!(request_to(&out, A, Method::Bye).is_some());
    assert!(request_to(&out, B1, Method::Bye).is_some());
    h.advance(Duration::from_secs(120));
    assert!(h.ep.b2bua().is_empty());
}

#[test]
fn admission_challenges_strangers_and_404s_trusted_upstreams() {
    let mut h = H::with(|c| c.admission = admission(""));
    let out = h.feed(A, a_invite(SDP));
    assert_eq!(status_to(&out, A), vec![407], "no 100 before a challenge");
    let challenges: Vec<String> = out[0]
        .1
        .headers(&HeaderName::ProxyAuthenticate)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[0].contains("algorithm=MD5") && challenges[1].contains("algorithm=SHA-256"));
    let mut h = H::with(|c| {
        c.upstreams = Upstreams::from_config(&[UpstreamConfig {
            trusted: true,
            failover_codes: crate::config::default_failover_codes(),
            trusted_cidrs: Vec::new(),
            ..upstream("carrier", "sip:127.0.0.1:5090", 1)
        }])
        .unwrap();
    });
    let out = h.feed(A, a_invite(SDP));
    assert_eq!(status_to(&out, A), vec![404]);
}

#[test]
fn late_offer_ack_carries_the_answer_to_b() {
    let mut h = H::new();
    let inv = start(&mut h, "");
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    assert!(
        request_to(&out, B1, Method::Ack).is_none(),
        "B's ACK waits for A's answer"
    );
    let tag = out[0].1.to().unwrap().tag().unwrap().to_owned();
    let ack = String::from_utf8_lossy(&a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack")).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    );
    let out = h.feed(A, Bytes::from(ack));
    let b_ack = request_to(&out, B1, Method::Ack).expect("ACK to B");
    assert_eq!(&b_ack.body()[..], SDP.as_bytes());
}

#[test]
fn options_pings_mark_upstreams_down_and_up() {
    let mut h = H::with(|c| {
        c.upstreams = Upstreams::from_config(&[
            UpstreamConfig {
                ping_interval_s: 30,
                ..upstream("one", &format!("sip:{B1}"), 1)
            },
            upstream("two", &format!("sip:{B2}"), 2),
        ])
        .unwrap();
    });
    let out = h.take();
    let ping = request_to(&out, B1, Method::Options).expect("first ping at start");
    assert!(
        request_to(&out, B2, Method::Options).is_none(),
        "interval 0: not pinged"
    );
    // No answer: Timer F (32 s) marks it down.
    h.advance(Duration::from_secs(33));
    assert!(!h.ep.b2bua().upstreams().get(0).unwrap().up());
    let out = h.feed(A, a_invite(SDP));
    assert!(
        request_to(&out, B2, Method::Invite).is_some(),
        "down upstream skipped"
    );
    // The next ping is answered: up again.
    let out = h.advance(Duration::from_secs(30));
    let ping2 = request_to(&out, B1, Method::Options).expect("next ping");
    assert_ne!(
        ping2.top_via().unwrap().branch(),
        ping.top_via().unwrap().branch()
    );
    h.feed(B1, ResponseBuilder::new(&ping2, StatusCode::OK).build());
    assert!(h.ep.b2bua().upstreams().get(0).unwrap().up());
}

#[test]
fn prack_is_relayed_with_rack_mapped_to_the_b_leg_invite() {
    let mut h = H::new();
    let invite = String::from_utf8_lossy(&a_invite(SDP)).replace(
        "CSeq: 10 INVITE\r\n",
        "CSeq: 10 INVITE\r\nSupported: 100rel\r\n",
    );
    let out = h.feed(A, Bytes::from(invite));
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    assert!(text(&inv).contains("Supported: 100rel"));
    let prov = ResponseBuilder::new(&inv, StatusCode(183))
        .to_tag("btag")
        .header("Contact", "<sip:uas@127.0.0.3:5080>")
        .header("Require", "100rel")
        .header("RSeq", "1")
        .body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        .build();
    let out = h.feed(B1, prov);
    let relayed = out.iter().find(|(d, _)| *d == addr(A)).unwrap().1.clone();
    assert!(text(&relayed).contains("Require: 100rel"));
    // RFC 3262 §7.1: the A-leg has its own RSeq space.
    let a_rseq = String::from_utf8_lossy(relayed.header(&HeaderName::RSeq).unwrap()).into_owned();
    let tag = relayed.to().unwrap().tag().unwrap().to_owned();
    let prack = String::from_utf8_lossy(&a_request(Method::Prack, 11, &tag, "z9hG4bKa-prack"))
        .replace(
            "CSeq: 11 PRACK\r\n",
            &format!("CSeq: 11 PRACK\r\nRAck: {a_rseq} 10 INVITE\r\n"),
        );
    let out = h.feed(A, Bytes::from(prack));
    let b_prack = request_to(&out, B1, Method::Prack).expect("PRACK relayed");
    let rack = String::from_utf8_lossy(b_prack.header(&HeaderName::from_bytes(b"RAck")).unwrap())
        .into_owned();
    assert_eq!(rack, format!("1 {} INVITE", inv.cseq().unwrap().seq));
    assert_eq!(b_prack.to().unwrap().tag(), Some("btag"), "early dialog");
    let out = h.feed(B1, ResponseBuilder::new(&b_prack, StatusCode::OK).build());
    assert_eq!(status_to(&out, A), vec![200]);
}

#[test]
fn update_in_early_dialog_is_relayed() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 180, ""));
    let tag = out[0].1.to().unwrap().tag().unwrap().to_owned();
    let out = h.feed(A, a_request(Method::Update, 11, &tag, "z9hG4bKa-upd"));
    let upd = request_to(&out, B1, Method::Update).expect("UPDATE relayed");
    assert!(
        upd.header(&HeaderName::Contact).is_some(),
        "target refresh carries our Contact"
    );
    let out = h.feed(B1, ResponseBuilder::new(&upd, StatusCode::OK).build());
    assert_eq!(status_to(&out, A), vec![200]);
}

#[test]
fn transport_error_fails_over_at_once() {
    let mut h = H::new();
    start(&mut h, SDP);
    h.ep.handle_event(
        crate::transport::TransportEvent::SendFailed {
            dest: addr(B1),
            transport: Transport::Udp,
            conn: None,
            error: std::io::ErrorKind::ConnectionRefused,
        },
        h.now,
    );
    let out = h.take();
    assert!(request_to(&out, B2, Method::Invite).is_some());
}

#[test]
fn in_dialog_timeout_ends_both_legs() {
    let mut h = H::new();
    let (_, tag) = answered(&mut h);
    let out = h.feed(A, a_request(Method::Info, 11, &tag, "z9hG4bKa-info"));
    assert!(request_to(&out, B1, Method::Info).is_some());
    // B never answers: Timer F (32 s) ends the call, BYE to A only. (The
    // 408 to A's INFO races A's own server-transaction guard, also 64·T1.)
    let out = h.advance(Duration::from_secs(33));
    assert!(request_to(&out, A, Method::Bye).is_some());
    assert!(
        request_to(&out, B1, Method::Bye).is_none(),
        "the dead leg gets no BYE"
    );
}

#[test]
fn ringing_forever_is_cancelled_by_timer_c() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 180, ""));
    let out = h.advance(Duration::from_secs(181));
    assert!(
        request_to(&out, B1, Method::Cancel).is_some(),
        "B-leg cancelled"
    );
    h.advance(Duration::from_secs(300));
    assert!(h.ep.b2bua().is_empty(), "the call never stays forever");
}

mod random {
    //! Random call flows: whatever order messages and timers come in, the
    //! B2BUA never panics and every call leaves the table (dead-call safety).
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Invite(u8),
        BResponse(u16),
        ABye,
        ACancel,
        AAck,
        BBye,
        AReinvite,
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3).prop_map(Op::Invite),
            prop::sample::select(vec![100u16, 180, 183, 200, 200, 408, 486, 487, 503, 407])
                .prop_map(Op::BResponse),
            Just(Op::ABye),
            Just(Op::ACancel),
            Just(Op::AAck),
            Just(Op::BBye),
            Just(Op::AReinvite),
            (0u16..40_000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_flow_ends_and_leaves_the_table(ops in prop::collection::vec(op(), 1..30)) {
            let mut h = H::with(|c| c.b2bua.max_call_duration = Duration::from_secs(600));
            let mut b_inv: Option<Message> = None;
            let mut a_tag = String::from("none");
            let mut cseq = 10;
            for op in ops {
                let out = match op {
                    Op::Invite(n) => {
                        let inv = String::from_utf8_lossy(&a_invite(SDP))
                            .replace("a-call@", &format!("a-call{n}@"))
                            .replace("z9hG4bKa-inv", &format!("z9hG4bKa-inv{n}"));
                        h.feed(A, Bytes::from(inv))
                    }
                    Op::BResponse(code) => match &b_inv {
                        Some(inv) => h.feed(B1, b_response(inv, code, SDP)),
                        None => Vec::new(),
                    },
                    Op::ABye | Op::AAck | Op::AReinvite => {
                        cseq += 1;
                        let (m, s) = match op {
                            Op::ABye => (Method::Bye, cseq),
                            Op::AAck => (Method::Ack, 10),
                            _ => (Method::Invite, cseq),
                        };
                        h.feed(A, a_request(m, s, &a_tag, &format!("z9hG4bKr{cseq}")))
                    }
                    Op::ACancel => {
                        let c = RequestBuilder::new(Method::Cancel, "sip:12125551234@sipfront.local")
                            .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-inv0", true)
                            .from("<sip:alice@10.9.9.9>", Some("atag"))
                            .to("<sip:12125551234@sipfront.local>", None)
                            .call_id("a-call0@10.9.9.9")
                            .cseq(10)
                            .build();
                        h.feed(A, c)
                    }
                    Op::BBye => match &b_inv {
                        Some(inv) => h.feed(B1, b_request(inv, Method::Bye, 50, "z9hG4bKbb")),
                        None => Vec::new(),
                    },
                    Op::Advance(ms) => h.advance(Duration::from_millis(u64::from(ms))),
                };
                for (d, m) in &out {
                    if *d == addr(B1) && m.method() == Some(&Method::Invite) {
                        b_inv = Some(m.clone());
                    }
                    if *d == addr(A) && !m.is_request() {
                        if let Some(t) = m.to().ok().and_then(|t| t.tag().map(str::to_owned)) {
                            a_tag = t;
                        }
                    }
                }
            }
            // Longer than the maximum call duration plus every linger.
            for _ in 0..20 {
                h.advance(Duration::from_secs(60));
            }
            prop_assert!(h.ep.b2bua().is_empty(), "calls left: {}", h.ep.b2bua().len());
        }
    }
}

// ---- SPEC §3 admission and policy -------------------------------------

/// `a_invite` as call number `n` (its own Call-ID and branch), to `number`.
fn a_invite_n(n: u32, number: &str, extra: &[(&str, &str)]) -> Bytes {
    let ruri = format!("sip:{number}@sipfront.local");
    let mut b = RequestBuilder::new(Method::Invite, &ruri)
        .via(
            Transport::Udp,
            "10.9.9.9:5071",
            &format!("z9hG4bKa-{n}"),
            true,
        )
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to(&format!("<{ruri}>"), None)
        .call_id(&format!("a-call-{n}@10.9.9.9"))
        .cseq(10)
        .contact("<sip:alice@10.9.9.9:5071>");
    for (name, value) in extra {
        b = b.header(name, value);
    }
    b.body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        .build()
}

fn trunk(extra: &str) -> String {
    format!("{PBX_TRUNK}{extra}\n")
}

#[test]
fn a_trunks_channel_limit_holds_across_shards_sharing_state() {
    let limit = |c: &mut EndpointConfig| {
        c.admission = admission(&trunk("channels_restrict = true\nmax_channels = 2"));
    };
    let mut s1 = H::with(limit);
    let mut s2 = s1.shard(limit);
    let inv1 = request_to(
        &s1.feed(A, a_invite_n(1, "12125551234", &[])),
        B1,
        Method::Invite,
    )
    .expect("shard 1 relays its call");
    let out = s2.feed(A, a_invite_n(2, "12125551234", &[]));
    assert!(
        request_to(&out, B1, Method::Invite).is_some(),
        "shard 2 relays its call"
    );
    // Both channels are taken, one on each shard: either refuses now.
    for (n, s) in [(3, &mut s1), (4, &mut s2)] {
        let out = s.feed(A, a_invite_n(n, "12125551234", &[]));
        assert_eq!(status_to(&out, A), vec![503], "call {n}");
    }
    assert_eq!(s2.ep.b2bua().calls_of_trunk(1), 2);
    // Shard 1's call fails upstream: shard 2 gets its channel.
    s1.feed(B1, b_response(&inv1, 486, ""));
    let out = s2.feed(A, a_invite_n(5, "12125551234", &[]));
    assert!(
        request_to(&out, B1, Method::Invite).is_some(),
        "call 5 relayed"
    );
    assert_eq!(s1.ep.b2bua().calls_of_trunk(1), 2);
}

#[test]
fn channel_limit_answers_503_naming_it_and_a_failed_call_gives_its_channel_back() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("channels_restrict = true\nmax_channels = 2"));
    });
    let inv1 = request_to(
        &h.feed(A, a_invite_n(1, "12125551234", &[])),
        B1,
        Method::Invite,
    )
    .expect("first call relayed");
    let out = h.feed(A, a_invite_n(2, "12125551234", &[]));
    assert!(
        request_to(&out, B1, Method::Invite).is_some(),
        "second call relayed"
    );
    let out = h.feed(A, a_invite_n(3, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![503]);
    assert_eq!(
        out[0].1.reason(),
        Some(&b"Channel Limit Reached (max_channels 2)"[..])
    );
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 2);
    // Call 1 fails upstream: its channel is free at once.
    h.feed(B1, b_response(&inv1, 486, ""));
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);
    let out = h.feed(A, a_invite_n(4, "12125551234", &[]));
    assert!(
        request_to(&out, B1, Method::Invite).is_some(),
        "fourth call relayed"
    );
}

#[test]
fn call_limit_sends_bye_on_both_legs_at_that_second_after_answer() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("call_restrict = true\ncall_limit = 3"));
    });
    // Ringing time does not count: the limit starts at the answer.
    h.advance(Duration::from_secs(0));
    answered(&mut h);
    let out = h.advance(Duration::from_millis(2_990));
    assert!(request_to(&out, A, Method::Bye).is_none(), "too early");
    let out = h.advance(Duration::from_millis(20));
    assert!(request_to(&out, A, Method::Bye).is_some());
    assert!(request_to(&out, B1, Method::Bye).is_some());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
}

#[test]
fn rewrite_and_fixed_caller_id_shape_the_b_leg() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk(
            "rewrite_enabled = true\nrewrite_cond = \"00\"\nrewrite_prefix = \"\"\n\
             callerid = \"+12121234567\"\npassthrough = false",
        ));
    });
    let out = h.feed(A, a_invite_n(1, "00442071234567", &[]));
    let inv = request_to(&out, B1, Method::Invite).expect("relayed");
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:442071234567@127.0.0.3:5080")
    );
    assert_eq!(inv.to().unwrap().uri.user, Some("442071234567"));
    assert_eq!(inv.from().unwrap().uri.user, Some("12121234567"));
    let pai = inv.header(&HeaderName::PAssertedIdentity).expect("PAI");
    assert_eq!(pai, &b"<sip:12121234567@127.0.0.1>"[..]);
}

#[test]
fn passthrough_keeps_a_numeric_caller_and_falls_back_to_callerid() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("callerid = \"12120000000\"\npassthrough = true"));
    });
    // From is an extension; the PBX put the public number in PAI.
    let pai = [("P-Asserted-Identity", "<sip:+15551230000@10.9.9.9>")];
    let inv = request_to(
        &h.feed(A, a_invite_n(1, "12125551234", &pai)),
        B1,
        Method::Invite,
    )
    .unwrap();
    assert_eq!(inv.from().unwrap().uri.user, Some("15551230000"));
    let inv = request_to(
        &h.feed(A, a_invite_n(2, "12125551234", &[])),
        B1,
        Method::Invite,
    )
    .unwrap();
    assert_eq!(inv.from().unwrap().uri.user, Some("12120000000"));
}

#[test]
fn policy_refusals_answer_with_their_row_status() {
    let cases = [
        (
            "cost_limit = true\nmax_call_cost = 0.05",
            "447700900123",
            403,
            "cost_limit",
        ), // 0.09/min
        ("", "99999", 404, "no_rate"),
        ("", "12x34", 484, "bad_number"),
        (
            "ip_restrict = true\nallowed_ips = [\"10.0.0.0/8\"]",
            "12125551234",
            403,
            "ip_restrict",
        ),
    ];
    for (i, (extra, number, status, reason)) in cases.into_iter().enumerate() {
        let mut h = H::with(|c| c.admission = admission(&trunk(extra)));
        let out = h.feed(A, a_invite_n(1, number, &[]));
        assert_eq!(
            status_to(&out, A),
            vec![status],
            "case {i}: {extra} / {number}"
        );
        assert!(request_to(&out, B1, Method::Invite).is_none());
        assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
        // Counted under its reason, and its CDR under the trunk.
        cdrs(&mut h);
        let m = h.ep.metrics(h.now);
        let line = format!("sipfront_invites_refused_total{{reason=\"{reason}\"}} 1\n");
        assert!(m.contains(&line), "case {i}: {m}");
        assert!(
            m.contains(
                "sipfront_calls_ended_total{trunk=\"pbx\",direction=\"placed\",\
                 disposition=\"failed\"} 1\n"
            ),
            "case {i}: {m}"
        );
    }
}

#[test]
fn cost_derived_limit_ends_the_call() {
    // 0.18 USD at 0.09/min: two minutes.
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("cost_limit = true\nmax_call_cost = 0.18"));
    });
    let inv = request_to(
        &h.feed(A, a_invite_n(1, "447700900123", &[])),
        B1,
        Method::Invite,
    )
    .unwrap();
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK));
    let tag = ok
        .expect("200 to A")
        .1
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    let ack = a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack");
    let ack = String::from_utf8_lossy(&ack).replace("a-call@", "a-call-1@");
    h.feed(A, Bytes::from(ack));
    let out = h.advance(Duration::from_millis(119_900));
    assert!(request_to(&out, B1, Method::Bye).is_none());
    let out = h.advance(Duration::from_millis(200));
    assert!(request_to(&out, B1, Method::Bye).is_some());
    // Billed the two minutes, not the started second after: exactly 0.18.
    let cdr = std::iter::from_fn(|| h.ep.poll_cdr())
        .last()
        .expect("a CDR");
    assert_eq!((cdr.duration_s, cdr.charge()), (120, 0.18));
}

/// The Proxy-Authorization a UA computes for `challenge` (MD5, nc 1).
fn md5_credentials(challenge: &Message, user: &str, password: &str, uri: &str) -> String {
    use crate::auth::{ha1, response, Algorithm};
    let md5 = challenge
        .headers(&HeaderName::ProxyAuthenticate)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .find(|v| v.contains("algorithm=MD5"))
        .expect("an MD5 challenge");
    let nonce = md5
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let ha1 = ha1(false, user, "sipfront.local", password);
    let resp = response(
        Algorithm::Md5,
        &ha1,
        nonce,
        1,
        "c0ffee",
        "auth",
        "INVITE",
        uri,
    );
    format!(
        "Digest username=\"{user}\", realm=\"sipfront.local\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    )
}

#[test]
fn digest_trunk_is_challenged_then_admitted_and_a_replay_is_challenged_again() {
    let digest = "[[trunk]]\nid = 7\nname = \"pbx1\"\npassword = \"s3cret\"\n";
    let mut h = H::with(|c| c.admission = admission(digest));
    let out = h.feed(A, a_invite_n(1, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![407]);
    let uri = "sip:12125551234@sipfront.local";
    let creds = md5_credentials(&out[0].1, "pbx1", "s3cret", uri);
    let out = h.feed(
        A,
        a_invite_n(2, "12125551234", &[("Proxy-Authorization", &creds)]),
    );
    assert_eq!(status_to(&out, A), vec![100]);
    assert!(request_to(&out, B1, Method::Invite).is_some());
    assert_eq!(h.ep.b2bua().calls_of_trunk(7), 1);
    // The same header again (same nonce and nc) on a new call.
    let out = h.feed(
        A,
        a_invite_n(3, "12125551234", &[("Proxy-Authorization", &creds)]),
    );
    assert_eq!(status_to(&out, A), vec![407]);
    assert!(request_to(&out, B1, Method::Invite).is_none());
    // Wrong password: 403, and no challenge to retry with.
    let out = h.feed(A, a_invite_n(4, "12125551234", &[]));
    let wrong = md5_credentials(&out[0].1, "pbx1", "guess", uri);
    let out = h.feed(
        A,
        a_invite_n(5, "12125551234", &[("Proxy-Authorization", &wrong)]),
    );
    assert_eq!(status_to(&out, A), vec![403]);
    assert!(out[0].1.header(&HeaderName::ProxyAuthenticate).is_none());
}

#[test]
fn a_call_to_another_trunks_login_stays_on_net_without_rate_or_upstream() {
    let other = "[[trunk]]\nid = 2\nname = \"36465\"\nhost_request = \"127.0.0.9\"\n";
    let mut h =
        H::with(|c| c.admission = admission(&trunk(&format!("cost_limit = true\n{other}"))));
    let out = h.feed(A, a_invite_n(1, "36465", &[]));
    assert_eq!(status_to(&out, A), vec![100]);
    let inv = request_to(&out, "127.0.0.9:5060", Method::Invite).expect("to the other trunk");
    assert_eq!(inv.request_uri_str(), Some("sip:36465@127.0.0.9:5060"));
    // A trunk with no address yet (digest only, not registered): 480.
    let other = "[[trunk]]\nid = 3\nname = \"36466\"\npassword = \"p\"\n";
    let mut h = H::with(|c| c.admission = admission(&trunk(other)));
    let out = h.feed(A, a_invite_n(1, "36466", &[]));
    assert_eq!(status_to(&out, A), vec![480]);
}

// ---- CDRs (SPEC §6) ---------------------------------------------------

fn cdrs(h: &mut H) -> Vec<crate::b2bua::record::Cdr> {
    std::iter::from_fn(|| h.ep.poll_cdr()).collect()
}

#[test]
fn one_cdr_per_attempt_with_disposition_duration_and_charge() {
    use crate::b2bua::record::Disposition;
    let mut h = H::with(|c| {
        c.admission = admission(&trunk(
            "call_restrict = true\ncall_limit = 61\nchannels_restrict = true\nmax_channels = 1\n\
             callerid = \"12121234567\"",
        ));
    });
    // Answered, ended by call_limit after 61 s at 0.012/min (prefix 1212).
    answered(&mut h);
    let out = h.feed(A, a_invite_n(9, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![503]);
    h.advance(Duration::from_secs(62));
    let out = h.feed(A, a_invite_n(10, "12125551234", &[]));
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    h.feed(B1, b_response(&inv, 486, ""));
    let got = cdrs(&mut h);
    assert_eq!(got.len(), 3, "{got:#?}");
    let refused = &got[0];
    assert_eq!(
        (refused.disposition, refused.sip_code, refused.duration_s),
        (Disposition::Failed, 503, 0)
    );
    assert_eq!(refused.call_id, "a-call-9@10.9.9.9");
    // Refused before a callee was tried: no B-leg transport.
    assert_eq!(
        (refused.a_transport, refused.b_transport),
        (Some(Transport::Udp), None)
    );
    let ok = &got[1];
    assert_eq!(
        (ok.a_transport, ok.b_transport),
        (Some(Transport::Udp), Some(Transport::Udp))
    );
    assert_eq!(ok.call_id, "a-call@10.9.9.9");
    assert_eq!((ok.disposition, ok.sip_code), (Disposition::Answered, 200));
    assert_eq!(ok.duration_s, 61);
    assert_eq!(
        (ok.from.as_str(), ok.to.as_str()),
        ("12121234567", "12125551234")
    );
    assert_eq!(ok.per_minute, 0.012);
    assert_eq!(ok.destination, "USA New York");
    assert_eq!(ok.charge(), 0.0122);
    assert_eq!((ok.sip_trunk.as_str(), ok.trunk_id), ("pbx", Some(1)));
    let busy = &got[2];
    assert_eq!((busy.disposition, busy.sip_code), (Disposition::Busy, 486));
    // A challenge is not a call attempt of a known trunk: no CDR.
    let mut h = H::with(|c| c.admission = admission(""));
    h.feed(A, a_invite(SDP));
    assert!(cdrs(&mut h).is_empty());
}

#[test]
fn reload_applies_to_new_calls_and_keeps_nonces_already_sent() {
    let text = |max: u32| {
        format!(
            "[rates]\nfile = \"config/rates.csv\"\n{PBX_TRUNK}channels_restrict = true\n\
             max_channels = {max}\n[[trunk]]\nid = 7\nname = \"pbx1\"\npassword = \"s3cret\"\n"
        )
    };
    let cfg = |max| Config::parse(&text(max), ConfigSource::Embedded).unwrap();
    let mut h = H::with(|c| c.admission = Arc::new(Admission::new(&cfg(0), [7; 32])));
    let out = h.feed(A, a_invite_n(1, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![503]);
    // A digest client got a challenge before the reload…
    let out = h.feed("127.0.0.2:5071", a_invite_n(2, "12125551234", &[]));
    let creds = md5_credentials(&out[0].1, "pbx1", "s3cret", "sip:x@y");
    h.ep.reload(&cfg(1));
    let out = h.feed(A, a_invite_n(3, "12125551234", &[]));
    assert!(
        request_to(&out, B1, Method::Invite).is_some(),
        "new limit applies"
    );
    // …and answers it after: still accepted.
    let out = h.feed(
        "127.0.0.2:5071",
        a_invite_n(4, "12125551234", &[("Proxy-Authorization", &creds)]),
    );
    assert!(request_to(&out, B1, Method::Invite).is_some(), "{out:?}");
}

#[test]
fn hang_up_all_ends_every_call_and_records_each_at_once() {
    let mut h = H::new();
    answered(&mut h);
    let out = h.feed(A, a_invite_n(2, "12125551234", &[]));
    let ringing = request_to(&out, B1, Method::Invite).unwrap();
    h.feed(B1, b_response(&ringing, 180, ""));
    cdrs(&mut h);
    h.ep.hang_up_all(h.now);
    let out = h.take();
    assert!(request_to(&out, A, Method::Bye).is_some());
    assert!(request_to(&out, B1, Method::Bye).is_some());
    assert!(request_to(&out, B1, Method::Cancel).is_some());
    assert!(status_to(&out, A).contains(&503));
    let got = cdrs(&mut h);
    let codes: Vec<u16> = got.iter().map(|c| c.sip_code).collect();
    assert_eq!(codes.len(), 2, "{got:#?}");
    assert!(codes.contains(&200) && codes.contains(&503), "{codes:?}");
}

#[test]
fn hang_up_trunk_ends_only_that_trunks_calls_answered_and_ringing() {
    let other = "[[trunk]]\nid = 2\nname = \"office\"\nhost_request = \"127.0.0.2\"\n";
    let mut h = H::with(|c| c.admission = admission(&trunk(other)));
    answered(&mut h);
    let out = h.feed(A, a_invite_n(2, "12125551234", &[]));
    let ringing = request_to(&out, B1, Method::Invite).unwrap();
    h.feed(B1, b_response(&ringing, 180, ""));
    // Trunk 2 rings too, from its own address: it must be left alone.
    let out = h.feed("127.0.0.2:5071", a_invite_n(3, "12125551234", &[]));
    assert!(request_to(&out, B1, Method::Invite).is_some(), "{out:?}");
    cdrs(&mut h);
    assert_eq!(
        h.ep.hang_up_trunk(9, h.now),
        0,
        "no such trunk ends nothing"
    );
    assert!(h.take().is_empty());
    assert_eq!(h.ep.hang_up_trunk(1, h.now), 2);
    let out = h.take();
    assert!(
        request_to(&out, A, Method::Bye).is_some(),
        "answered: BYE to A"
    );
    assert!(
        request_to(&out, B1, Method::Bye).is_some(),
        "answered: BYE to B"
    );
    assert!(
        request_to(&out, B1, Method::Cancel).is_some(),
        "ringing: CANCEL"
    );
    assert!(status_to(&out, A).contains(&487), "ringing: 487 to A");
    let states: Vec<(String, &str)> =
        h.ep.calls()
            .into_iter()
            .map(|c| (c.trunk, c.state))
            .collect();
    assert_eq!(
        states,
        [
            ("pbx".to_owned(), "ending"),
            ("office".to_owned(), "trying")
        ],
        "the ringing call waits for B's 487; trunk 2's call goes on"
    );
    // The ended calls' records follow once their legs finish.
    let out = h.advance(Duration::from_secs(40));
    drop(out);
    let got = cdrs(&mut h);
    assert!(got.iter().any(|c| c.sip_code == 200), "{got:#?}");
}

// ---- inbound DID calls (SPEC §4) --------------------------------------

/// A trusted carrier at `CARRIER` and one upstream for PSTN destinations.
const CARRIER: &str = "127.0.0.5:5060";
const PHONE: &str = "127.0.0.7:5060";
const PBX2: &str = "127.0.0.8:5060";

fn did_harness(did: &str) -> H {
    H::with(did_setup(did))
}

/// The config of [`did_harness`], for more shards of it.
fn did_setup(did: &str) -> impl Fn(&mut EndpointConfig) {
    let trunks = format!(
        "[[trunk]]\nid = 2\nname = \"36465\"\nhost_request = \"127.0.0.8\"\ndidinfo_enabled = true\n\
         [[trunk]]\nid = 3\nname = \"36466\"\npassword = \"p\"\n{did}"
    );
    move |c| {
        c.upstreams = Upstreams::from_config(&[UpstreamConfig {
            trusted: true,
            failover_codes: crate::config::default_failover_codes(),
            trusted_cidrs: Vec::new(),
            ..upstream("carrier", &format!("sip:{CARRIER}"), 1)
        }])
        .unwrap();
        c.admission = admission(&trunks);
    }
}

#[test]
fn did_call_reaches_its_trunk_with_the_did_in_to_and_a_received_cdr() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [{ transport = 5, destination = \"36465\" }]\n",
    );
    let out = h.feed(CARRIER, a_invite_n(1, "+12565378257", &[]));
    assert_eq!(status_to(&out, CARRIER), vec![100]);
    let inv = request_to(&out, PBX2, Method::Invite).expect("to the trunk's address");
    assert_eq!(
        inv.to().unwrap().uri.user,
        Some("12565378257"),
        "didinfo_enabled"
    );
    let out = h.feed(PBX2, b_response(&inv, 486, ""));
    assert_eq!(status_to(&out, CARRIER), vec![486]);
    let cdr = cdrs(&mut h).pop().expect("a CDR");
    assert_eq!(cdr.direction, crate::b2bua::record::Direction::Received);
    assert_eq!(
        (cdr.to.as_str(), cdr.sip_trunk.as_str()),
        ("12565378257", "36465")
    );
}

#[test]
fn unknown_did_is_404_and_did_channels_give_486() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\nchannels = 1\n\
         destinations = [{ transport = 1, destination = \"sip:phone@127.0.0.7:5060\" }]\n",
    );
    let out = h.feed(CARRIER, a_invite_n(1, "19999999999", &[]));
    assert_eq!(status_to(&out, CARRIER), vec![404]);
    let out = h.feed(CARRIER, a_invite_n(2, "12565378257", &[]));
    let inv = request_to(&out, PHONE, Method::Invite).expect("to the SIP URI");
    assert_eq!(inv.request_uri_str(), Some("sip:phone@127.0.0.7:5060"));
    let out = h.feed(CARRIER, a_invite_n(3, "12565378257", &[]));
    assert_eq!(status_to(&out, CARRIER), vec![486]);
    assert_eq!(h.ep.b2bua().calls_of_did("12565378257"), 1);
}

#[test]
fn did_channels_hold_across_shards_sharing_state() {
    let setup = did_setup(
        "[[did]]\nnumber = \"12565378257\"\nchannels = 1\n\
         destinations = [{ transport = 1, destination = \"sip:phone@127.0.0.7:5060\" }]\n",
    );
    let mut s1 = H::with(&setup);
    let mut s2 = s1.shard(&setup);
    let out = s1.feed(CARRIER, a_invite_n(1, "12565378257", &[]));
    let inv = request_to(&out, PHONE, Method::Invite).expect("shard 1 rings the DID");
    let out = s2.feed(CARRIER, a_invite_n(2, "12565378257", &[]));
    assert_eq!(
        status_to(&out, CARRIER),
        vec![486],
        "shard 2 sees the channel taken"
    );
    s1.feed(PHONE, b_response(&inv, 486, ""));
    assert_eq!(s2.ep.b2bua().calls_of_did("12565378257"), 0);
    let out = s2.feed(CARRIER, a_invite_n(3, "12565378257", &[]));
    assert!(
        request_to(&out, PHONE, Method::Invite).is_some(),
        "free again"
    );
}

#[test]
fn hunting_moves_on_after_busy_after_ringing_and_after_the_ring_timeout() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [\n\
         { transport = 1, destination = \"sip:phone@127.0.0.7:5060\", priority = 1 },\n\
         { transport = 5, destination = \"36465\", priority = 2 },\n\
         { transport = 4, destination = \"+4420\", priority = 3 },\n]\n",
    );
    let out = h.feed(CARRIER, a_invite_n(1, "12565378257", &[]));
    let first = request_to(&out, PHONE, Method::Invite).unwrap();
    // Rings, then busy: the next destination, though 180 reached the caller.
    let out = h.feed(PHONE, b_response(&first, 180, ""));
    assert_eq!(status_to(&out, CARRIER), vec![180]);
    let out = h.feed(PHONE, b_response(&first, 486, ""));
    assert!(
        status_to(&out, CARRIER).is_empty(),
        "no final to the caller yet"
    );
    let second = request_to(&out, PBX2, Method::Invite).expect("second destination");
    h.feed(PBX2, b_response(&second, 180, ""));
    // No answer within the ring timeout: CANCEL, then the PSTN destination.
    let out = h.advance(Duration::from_secs(31));
    assert!(request_to(&out, PBX2, Method::Cancel).is_some());
    // The only upstream is the carrier itself: PSTN goes back out there.
    let third = request_to(&out, CARRIER, Method::Invite).expect("PSTN via the upstream");
    assert_eq!(third.request_uri_str(), Some("sip:4420@127.0.0.5:5060"));
    let out = h.feed(CARRIER, b_response(&third, 200, SDP));
    assert!(status_to(&out, CARRIER).contains(&200));
}

// ---- live views (/v1/calls, /metrics) -----------------------------------------

#[test]
fn calls_view_lists_calls_in_progress_and_hang_up_ends_one_on_both_legs() {
    let mut h = H::new();
    answered(&mut h);
    let calls = h.ep.calls();
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        (c.call_id.as_str(), c.state, c.direction),
        ("a-call@10.9.9.9", "answered", "placed")
    );
    assert_eq!((c.trunk.as_str(), c.to.as_str()), ("pbx", "12125551234"));
    assert!(c.answered.is_some());
    let m = h.ep.metrics(h.now);
    assert!(
        m.contains("sipfront_trunk_channels_in_use{trunk=\"pbx\"} 1\n"),
        "{m}"
    );
    assert!(!h.ep.hang_up("no-such-call", h.now));
    assert!(h.ep.hang_up("a-call@10.9.9.9", h.now));
    let out = h.take();
    assert!(request_to(&out, A, Method::Bye).is_some());
    assert!(request_to(&out, B1, Method::Bye).is_some());
    assert!(h.ep.calls().is_empty());
    cdrs(&mut h);
    let m = h.ep.metrics(h.now);
    assert!(m.contains("\nsipfront_calls_total 1\n"), "{m}");
    assert!(
        m.contains(
            "sipfront_calls_ended_total{trunk=\"pbx\",direction=\"placed\",\
             disposition=\"answered\"} 1\n"
        ),
        "{m}"
    );
    assert!(!m.contains("sipfront_trunk_channels_in_use{"), "{m}");
    assert!(m.contains("sipfront_calls_active 0\n"), "{m}");
    assert!(
        m.contains("sipfront_upstream_up{upstream=\"one\"} 1"),
        "{m}"
    );
    assert!(m.contains("# TYPE sipfront_transactions gauge"), "{m}");
}

// ---- call-status webhooks (SPEC §7) -------------------------------------

const HOOK: &str = "http://127.0.0.1:9/global";

/// The main harness with `[webhooks]` set (when `global`) and `trunks`, the
/// wall clock at 1_700_000_000 s when the test starts.
fn hooked(trunks: &str, global: bool) -> H {
    let hooks = if global {
        format!("[webhooks]\ncall_status_url = \"{HOOK}\"\n")
    } else {
        String::new()
    };
    let adm = admission(&format!("{hooks}{trunks}"));
    H::with(move |c| {
        c.admission = adm;
        c.b2bua.wall = super::WallClock {
            at: Instant::now(),
            unix_ms: 1_700_000_000_000,
        };
    })
}

fn call_events(h: &mut H) -> Vec<crate::b2bua::event::CallEvent> {
    std::iter::from_fn(|| h.ep.poll_call_event()).collect()
}

/// (state, sip_code, duration) of each event, in order.
fn states(evs: &[crate::b2bua::event::CallEvent]) -> Vec<(&'static str, u16, u64)> {
    evs.iter()
        .map(|e| (e.state.as_str(), e.sip_code, e.duration))
        .collect()
}

#[test]
fn an_answered_call_emits_ringing_answered_completed_once_each() {
    let mut h = hooked(PBX_TRUNK, true);
    let inv = start(&mut h, SDP);
    assert!(call_events(&mut h).is_empty(), "100 Trying is no news");
    h.feed(B1, b_response(&inv, 180, ""));
    h.feed(B1, b_response(&inv, 183, SDP));
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let tag = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .and_then(|(_, m)| m.to().ok()?.tag().map(str::to_owned))
        .expect("200 to A");
    h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));
    let early = call_events(&mut h);
    assert_eq!(states(&early), [("ringing", 180, 0), ("answered", 200, 0)]);
    h.advance(Duration::from_millis(29_500));
    h.feed(A, a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"));
    let done = call_events(&mut h);
    assert_eq!(states(&done), [("completed", 200, 30)]);
    let cdr = cdrs(&mut h).pop().expect("a CDR");
    let e = &done[0];
    assert_eq!(&*e.url, HOOK);
    assert_eq!(
        (e.call_id.as_str(), e.from.as_str(), e.to.as_str()),
        ("a-call@10.9.9.9", cdr.from.as_str(), "12125551234")
    );
    assert_eq!(
        (e.direction, e.trunk.as_deref()),
        (cdr.direction, Some("pbx"))
    );
    assert_eq!(e.duration, cdr.duration_s);
    assert_eq!(early[0].timestamp, 1_700_000_000);
    assert_eq!(
        e.timestamp, 1_700_000_029,
        "the core's wall clock, not the host's"
    );
    h.advance(Duration::from_secs(60));
    assert!(call_events(&mut h).is_empty(), "nothing after the end");
}

#[test]
fn unanswered_calls_emit_failed_with_the_callers_final_status() {
    // Busy upstream, no ringing first.
    let mut h = hooked(PBX_TRUNK, true);
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 486, ""));
    assert_eq!(states(&call_events(&mut h)), [("failed", 486, 0)]);
    // Ringing, then the call is ended from the API (CANCEL, 487).
    let mut h = hooked(PBX_TRUNK, true);
    let inv = start(&mut h, SDP);
    h.feed(B1, b_response(&inv, 180, ""));
    let now = h.now;
    assert!(h.ep.hang_up("a-call@10.9.9.9", now));
    let out = h.take();
    assert_eq!(status_to(&out, A), vec![487]);
    assert!(request_to(&out, B1, Method::Cancel).is_some());
    // Like the CDR, the end comes once the B-leg INVITE is over.
    h.feed(B1, b_response(&inv, 487, ""));
    assert_eq!(
        states(&call_events(&mut h)),
        [("ringing", 180, 0), ("failed", 487, 0)]
    );
    // Every upstream fails: the caller gets the last failure.
    let mut h = hooked(PBX_TRUNK, true);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 503, ""));
    let inv2 = request_to(&out, B2, Method::Invite).expect("fail-over");
    h.feed(B2, b_response(&inv2, 503, ""));
    assert_eq!(states(&call_events(&mut h)), [("failed", 503, 0)]);
    // Refused by the trunk's policy: failed too, like its CDR.
    let mut h = hooked(&trunk("cost_limit = true\nmax_call_cost = 0.05"), true);
    let out = h.feed(A, a_invite_n(1, "447700900123", &[]));
    assert_eq!(status_to(&out, A), vec![403]);
    let evs = call_events(&mut h);
    assert_eq!(states(&evs), [("failed", 403, 0)]);
    assert_eq!(evs[0].call_id, "a-call-1@10.9.9.9");
    assert_eq!(cdrs(&mut h).len(), 1, "one CDR for one event");
}

#[test]
fn no_url_no_events() {
    let mut h = hooked(PBX_TRUNK, false);
    let (_, tag) = answered(&mut h);
    h.feed(A, a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"));
    h.feed(A, a_invite_n(2, "12x34", &[]));
    assert_eq!(cdrs(&mut h).len(), 2);
    assert!(call_events(&mut h).is_empty());
}

#[test]
fn a_did_call_goes_to_the_dids_own_url_else_the_global_one() {
    let did = |url: &str| {
        format!(
            "[webhooks]\ncall_status_url = \"{HOOK}\"\n\
             [[did]]\nnumber = \"12565378257\"\ncall_status_url = \"{url}\"\n\
             destinations = [{{ transport = 1, destination = \"sip:phone@{PHONE}\" }}]\n"
        )
    };
    for (own, want) in [("http://10.1.1.1/did", "http://10.1.1.1/did"), ("", HOOK)] {
        let mut h = did_harness(&did(own));
        let out = h.feed(CARRIER, a_invite_n(1, "+12565378257", &[]));
        let inv = request_to(&out, PHONE, Method::Invite).expect("to the DID's URI");
        h.feed(PHONE, b_response(&inv, 180, ""));
        h.feed(PHONE, b_response(&inv, 486, ""));
        let evs = call_events(&mut h);
        assert_eq!(states(&evs), [("ringing", 180, 0), ("failed", 486, 0)]);
        for e in &evs {
            assert_eq!(&*e.url, want);
            assert_eq!(e.direction, crate::b2bua::record::Direction::Received);
            assert_eq!((e.to.as_str(), e.trunk.as_deref()), ("12565378257", None));
        }
    }
}

#[test]
fn refusal_causes_are_listed_in_declaration_order() {
    use super::RefusalCause;
    // `B2buaStats::refused` is indexed by `cause as usize`.
    for (i, c) in RefusalCause::ALL.iter().enumerate() {
        assert_eq!(*c as usize, i, "{c:?}");
    }
}

// ---- upstreams by DNS name (RFC 3263), per-target health, failover_codes --

fn srv_target(a: &str, priority: u16) -> crate::routing::Target {
    crate::routing::Target {
        priority,
        weight: 1,
        ..crate::routing::Target::fixed(addr(a), Transport::Udp)
    }
}

/// One upstream `sip:carrier.example`, resolved to B1 (SRV priority 10)
/// and B2 (priority 20).
fn named(f: impl FnOnce(&mut UpstreamConfig)) -> H {
    named_out(f).0
}

/// [`named`], with what the DNS answer made the endpoint send (pings).
fn named_out(f: impl FnOnce(&mut UpstreamConfig)) -> (H, Vec<(SocketAddr, Message)>) {
    let mut h = H::with(|c| {
        let mut u = upstream("carrier", "sip:carrier.example", 1);
        f(&mut u);
        c.upstreams = Upstreams::from_config(&[u]).unwrap();
    });
    let now = h.now;
    h.ep.set_upstream_targets(0, vec![srv_target(B1, 10), srv_target(B2, 20)], None, now);
    let out = h.take();
    (h, out)
}

#[test]
fn named_upstream_has_no_target_before_dns_and_the_call_gets_503_saying_why() {
    let mut h = H::with(|c| {
        c.upstreams =
            Upstreams::from_config(&[upstream("carrier", "sip:carrier.example", 1)]).unwrap();
    });
    let now = h.now;
    h.ep.set_upstream_targets(0, Vec::new(), Some("NXDOMAIN".into()), now);
    let out = h.feed(A, a_invite(SDP));
    assert_eq!(status_to(&out, A), vec![503]);
    assert!(
        out.iter().all(|(_, m)| !m.is_request()),
        "nothing sent upstream"
    );
    assert!(h.ep.b2bua().is_empty(), "no call left behind");
    assert!(h
        .ep
        .b2bua()
        .upstreams()
        .why_no_target()
        .contains("`carrier` (carrier.example): NXDOMAIN"));
}

#[test]
fn srv_targets_are_hops_in_priority_order_with_the_name_in_the_request_uri() {
    let mut h = named(|_| {});
    let inv = start(&mut h, SDP);
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:12125551234@carrier.example"),
        "the configured name stays in the Request-URI (RFC 3263 §4)"
    );
    let out = h.feed(B1, b_response(&inv, 503, ""));
    assert!(status_to(&out, A).is_empty());
    let inv2 = request_to(&out, B2, Method::Invite).expect("second SRV target tried");
    let out = h.feed(B2, b_response(&inv2, 200, SDP));
    assert_eq!(status_to(&out, A), vec![200]);
}

#[test]
fn failover_codes_are_per_upstream() {
    let mut h = named(|u| u.failover_codes = vec![crate::config::FailoverCode::Code(486)]);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 486, ""));
    assert!(
        request_to(&out, B2, Method::Invite).is_some(),
        "486 listed: fail over"
    );

    let mut h = named(|u| u.failover_codes = vec![crate::config::FailoverCode::Code(486)]);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, b_response(&inv, 503, ""));
    assert_eq!(status_to(&out, A), vec![503], "503 not listed: relayed");
    assert!(request_to(&out, B2, Method::Invite).is_none());
}

#[test]
fn a_target_that_never_answers_is_marked_down_alone_and_tried_last() {
    let mut h = named(|_| {});
    start(&mut h, SDP);
    // B1 silent: after the no-answer fail-over the call moves to B2.
    let out = h.advance(Duration::from_millis(5100));
    let inv2 = request_to(&out, B2, Method::Invite).expect("sibling target tried");
    h.feed(B2, b_response(&inv2, 200, SDP));
    // Timer B of B1's INVITE: B1 is down, B2 and the upstream stay up.
    h.advance(Duration::from_secs(40));
    let u = h.ep.b2bua().upstreams().get(0).unwrap().clone();
    assert!(!u.targets[0].up && u.targets[1].up && u.up(), "{u:?}");
    // The next call goes to the live target first.
    let out = h.feed(A, a_invite_n(2, "12125551234", &[]));
    assert!(
        request_to(&out, B2, Method::Invite).is_some(),
        "live target first"
    );
    assert!(request_to(&out, B1, Method::Invite).is_none());
    // A new DNS answer with the same address does not revive it.
    let now = h.now;
    h.ep.set_upstream_targets(0, vec![srv_target(B1, 10), srv_target(B2, 20)], None, now);
    assert!(!h.ep.b2bua().upstreams().get(0).unwrap().targets[0].up);
}

#[test]
fn pings_go_to_every_target_and_mark_each_alone() {
    let (mut h, out) = named_out(|u| u.ping_interval_s = 30);
    let p1 = request_to(&out, B1, Method::Options).expect("B1 pinged once resolved");
    let p2 = request_to(&out, B2, Method::Options).expect("B2 pinged once resolved");
    assert_eq!(p1.request_uri_str(), Some("sip:carrier.example"));
    h.feed(B2, ResponseBuilder::new(&p2, StatusCode::OK).build());
    h.feed(B1, ResponseBuilder::new(&p1, StatusCode(503)).build());
    let u = h.ep.b2bua().upstreams().get(0).unwrap().clone();
    assert!(!u.targets[0].up && u.targets[1].up, "{u:?}");
}

#[test]
fn trusted_upstream_is_recognised_by_resolved_addresses_and_cidrs() {
    let h = named(|u| {
        u.trusted = true;
        u.trusted_cidrs = vec!["192.0.2.0/24".parse().unwrap()];
    });
    let ups = h.ep.b2bua().upstreams();
    assert!(ups.is_trusted(addr(B1).ip()) && ups.is_trusted(addr(B2).ip()));
    assert!(ups.is_trusted("192.0.2.9".parse().unwrap()));
    assert!(!ups.is_trusted("198.51.100.1".parse().unwrap()));
}

mod attended;
mod fleet;
mod identity;
mod media;
mod overload;
mod registration;
mod seeded;
mod session;
mod shards;
mod transfer;
mod upauth;

// ---- DID SIP URI destinations with a host name (RFC 3263) -------------

fn did_named_harness() -> H {
    did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [\n\
         { transport = 1, destination = \"sip:phone@PBX.test\", priority = 1 },\n\
         { transport = 1, destination = \"sip:phone@127.0.0.7:5060\", priority = 2 },\n]\n",
    )
}

fn pbx_test() -> crate::routing::Resolve {
    crate::routing::did_hosts::resolution("sip:phone@pbx.test").unwrap()
}

#[test]
fn did_destination_with_a_resolved_name_is_one_hop_per_target_keeping_the_name() {
    let mut h = did_named_harness();
    h.ep.set_did_host_targets(
        pbx_test(),
        vec![srv_target(B2, 20), srv_target(PBX2, 10)],
        None,
    );
    let out = h.feed(CARRIER, a_invite_n(1, "12565378257", &[]));
    let inv = request_to(&out, PBX2, Method::Invite).expect("to the first SRV target");
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:phone@PBX.test"),
        "the name stays in the Request-URI (RFC 3263 §4)"
    );
    let out = h.feed(PBX2, b_response(&inv, 503, ""));
    let inv2 = request_to(&out, B2, Method::Invite).expect("then the second target");
    let out = h.feed(B2, b_response(&inv2, 503, ""));
    assert!(
        request_to(&out, PHONE, Method::Invite).is_some(),
        "then the next destination"
    );
}

#[test]
fn did_destination_with_an_unresolved_name_is_skipped() {
    let mut h = did_named_harness();
    let out = h.feed(CARRIER, a_invite_n(1, "12565378257", &[]));
    assert!(
        request_to(&out, PHONE, Method::Invite).is_some(),
        "no answer yet: the next destination"
    );
    let mut h = did_named_harness();
    h.ep.set_did_host_targets(pbx_test(), Vec::new(), Some("NXDOMAIN".into()));
    let out = h.feed(CARRIER, a_invite_n(1, "12565378257", &[]));
    assert!(
        request_to(&out, PHONE, Method::Invite).is_some(),
        "NXDOMAIN: skipped"
    );
    assert!(out.iter().all(|(to, _)| *to != addr(PBX2)));
}
