//! Endpoint behaviour from raw bytes to raw bytes, with a fake clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Endpoint, EndpointConfig, GuardConfig};
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

fn inbound(text: &str, transport: Transport, received: Instant) -> Inbound {
    Inbound {
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        peer: PEER.parse().unwrap(),
        local: LOCAL.parse().unwrap(),
        transport,
        conn: None,
        received,
    }
}

/// Feeds one message and returns every response sent, parsed.
fn exchange(ep: &mut Endpoint, text: &str, now: Instant) -> Vec<Message> {
    ep.handle(inbound(text, Transport::Udp, now), now);
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

// ---- REGISTER (digest, then the registrar) ---------------------------------

fn register_ep() -> Endpoint {
    use crate::b2bua::Admission;
    use crate::config::{Config, ConfigSource};
    let text = "[[trunk]]\nid = 3\nname = \"100\"\npassword = \"pw\"\n";
    let cfg = Config::parse(text, ConfigSource::Embedded).unwrap();
    Endpoint::new(EndpointConfig {
        admission: std::sync::Arc::new(Admission::new(&cfg, [9; 32])),
        ..EndpointConfig::default()
    })
}

fn register_req(cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:sipfront.local SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-reg-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:100@sipfront.local>;tag=r1\r\n\
         To: <sip:100@sipfront.local>\r\n\
         Call-ID: reg@10.0.0.7\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:100@10.0.0.7:5062>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// The Authorization a UA computes for a 401 (MD5, nc 1).
fn www_credentials(challenge: &Message, password: &str) -> String {
    use crate::auth::{ha1, response, Algorithm};
    let md5 = challenge
        .headers(&HeaderName::WwwAuthenticate)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .find(|v| v.contains("algorithm=MD5"))
        .expect("an MD5 challenge");
    let nonce = md5
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    let uri = "sip:sipfront.local";
    let ha1 = ha1(false, "100", "sipfront.local", password);
    let resp = response(
        Algorithm::Md5,
        &ha1,
        nonce,
        1,
        "c0ffee",
        "auth",
        "REGISTER",
        uri,
    );
    format!(
        "Authorization: Digest username=\"100\", realm=\"sipfront.local\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    )
}

#[test]
fn register_is_challenged_401_then_bound_to_the_packet_source() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    let r = exchange(&mut ep, &register_req(1, "Expires: 120\r\n"), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(r.headers(&HeaderName::WwwAuthenticate).count(), 2);
    let creds = www_credentials(&r, "pw");
    let r = exchange(
        &mut ep,
        &register_req(2, &format!("Expires: 120\r\n{creds}")),
        t0,
    )
    .remove(0);
    assert_eq!(r.status(), Some(StatusCode::OK));
    assert_eq!(
        header(&r, HeaderName::Contact),
        "<sip:100@10.0.0.7:5062>;expires=120"
    );
    assert!(r.to_tag().is_some());
    let reg = ep.registrar();
    let b = reg.store().lookup("100", t0);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, PEER.parse::<SocketAddr>().unwrap());
    drop(reg);
    // The endpoint's timer covers the expiry.
    assert!(ep
        .poll_timeout()
        .is_some_and(|t| t <= t0 + Duration::from_secs(120)));
    ep.handle_timeout(t0 + Duration::from_secs(121));
    assert!(ep.registrar().store().is_empty());
}

/// A retransmitted REGISTER, first or second, gets the very same bytes
/// again (RFC 3261 §17.2.2; a UA, or SIPp, takes a different 401 for an
/// unexpected response), and the second is not registered twice. The 401
/// holds no transaction (RFC 3261 §26.3.2.4), only its nonce seed and To
/// tag; the 200 is a slim Completed record.
#[test]
fn register_retransmissions_get_the_same_401_and_200_bytes() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    let first = register_req(1, "Expires: 120\r\n");
    let r = exchange(&mut ep, &first, t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(ep.txns.len(), 0, "the 401 holds no transaction");
    assert_eq!(ep.challenges.len(), 1);
    // A second later: the wall clock moved, the nonce must not.
    let again = exchange(&mut ep, &first, t0 + Duration::from_secs(1)).remove(0);
    assert_eq!(
        again.as_bytes(),
        r.as_bytes(),
        "the same 401, byte for byte"
    );
    assert_eq!(ep.challenges.len(), 1);

    let creds = www_credentials(&r, "pw");
    let second = register_req(2, &format!("Expires: 120\r\n{creds}"));
    let ok = exchange(&mut ep, &second, t0).remove(0);
    assert_eq!(ok.status(), Some(StatusCode::OK));
    assert_eq!(ep.txns.len(), 1);
    let resent = exchange(&mut ep, &second, t0 + Duration::from_secs(2)).remove(0);
    assert_eq!(
        resent.as_bytes(),
        ok.as_bytes(),
        "the same 200, byte for byte"
    );
    let reg = ep.registrar();
    let b = reg.store().lookup("100", t0);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].cseq, 2);
    drop(reg);

    // Past 64·T1 the challenge is forgotten: the same request now is a
    // new one and gets a new nonce and To tag.
    let late = t0 + Duration::from_secs(33);
    ep.handle_timeout(late);
    assert_eq!(ep.challenges.len(), 0);
    let fresh = exchange(&mut ep, &first, late).remove(0);
    assert_eq!(fresh.status(), Some(StatusCode::UNAUTHORIZED));
    assert_ne!(fresh.to_tag(), r.to_tag());
    assert_ne!(www_credentials(&fresh, "pw"), creds);
}

#[test]
fn register_with_wrong_password_is_403_and_binds_nothing() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    let r = exchange(&mut ep, &register_req(1, ""), t0).remove(0);
    let creds = www_credentials(&r, "wrong");
    let r = exchange(&mut ep, &register_req(2, &creds), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(r.headers(&HeaderName::WwwAuthenticate).count(), 0);
    assert!(ep.registrar().store().is_empty());
}

#[test]
fn register_too_brief_is_423_with_min_expires() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    let r = exchange(&mut ep, &register_req(1, "Expires: 10\r\n"), t0).remove(0);
    let creds = www_credentials(&r, "pw");
    let r = exchange(
        &mut ep,
        &register_req(2, &format!("Expires: 10\r\n{creds}")),
        t0,
    )
    .remove(0);
    assert_eq!(r.status(), Some(StatusCode::INTERVAL_TOO_BRIEF));
    assert_eq!(header(&r, HeaderName::MinExpires), "60");
}

#[test]
fn register_from_old_baresip_is_offered_md5_only() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    let ua = "User-Agent: baresip v1.0.0 (x86_64/linux)\r\n";
    let r = exchange(&mut ep, &register_req(1, ua), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::UNAUTHORIZED));
    let ch: Vec<_> = r.headers(&HeaderName::WwwAuthenticate).collect();
    assert_eq!(ch.len(), 1);
    assert!(String::from_utf8_lossy(ch[0]).contains("algorithm=MD5"));
    assert!(crate::auth::md5_only_user_agent(b"baresip v0.6.5"));
    assert!(!crate::auth::md5_only_user_agent(b"baresip v3.10.1"));
    assert!(!crate::auth::md5_only_user_agent(b"Linphone/5.0"));
    assert!(!crate::auth::md5_only_user_agent(b"baresip v1"));
}

/// An endpoint with trunk login `100` (password `pw`), DID 12565378257
/// routed to it, and a trusted carrier at `CARRIER`.
fn did_ep() -> Endpoint {
    Endpoint::new(did_cfg())
}

fn did_cfg() -> EndpointConfig {
    use crate::b2bua::Admission;
    use crate::config::{Config, ConfigSource, UpstreamConfig};
    use crate::routing::Upstreams;
    let text = "[[trunk]]\nid = 3\nname = \"100\"\npassword = \"pw\"\n\
                [[trunk]]\nid = 4\nname = \"pbx\"\nhost_request = \"127.0.0.9\"\n\
                [[did]]\nnumber = \"12565378257\"\n\
                destinations = [{ transport = 5, destination = \"100\" }]\n";
    let cfg = Config::parse(text, ConfigSource::Embedded).unwrap();
    EndpointConfig {
        admission: std::sync::Arc::new(Admission::new(&cfg, [9; 32])),
        upstreams: Upstreams::from_config(&[UpstreamConfig {
            name: "carrier".to_owned(),
            uri: format!("sip:{CARRIER}"),
            priority: 1,
            weight: 1,
            ping_interval_s: 0,
            trusted: true,
            ..Default::default()
        }])
        .unwrap(),
        ..EndpointConfig::default()
    }
}

const CARRIER: &str = "127.0.0.5:5060";

/// Registers `contact` for login 100 from PEER (digest included).
fn register_phone(ep: &mut Endpoint, contact: &str, cseq: u32, t0: Instant) {
    let req =
        |cseq, extra: &str| register_req(cseq, extra).replace("<sip:100@10.0.0.7:5062>", contact);
    let r = exchange(ep, &req(cseq, ""), t0).remove(0);
    let creds = www_credentials(&r, "pw");
    let r = exchange(ep, &req(cseq + 1, &creds), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::OK));
}

/// Feeds `text` from `from`; returns what goes out, with its destination.
fn feed(ep: &mut Endpoint, text: &str, from: &str, now: Instant) -> Vec<(SocketAddr, Message)> {
    ep.handle(
        Inbound {
            bytes: Bytes::copy_from_slice(text.as_bytes()),
            peer: from.parse().unwrap(),
            local: LOCAL.parse().unwrap(),
            transport: Transport::Udp,
            conn: None,
            received: now,
        },
        now,
    );
    std::iter::from_fn(|| ep.poll_transmit())
        .map(|t| (t.dest, Message::parse(t.bytes).unwrap()))
        .collect()
}

const DID_INVITE: &str = "INVITE sip:12565378257@sipfront.local SIP/2.0\r\n\
    Via: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-did-1;rport\r\n\
    Max-Forwards: 70\r\n\
    From: <sip:12125550100@127.0.0.5>;tag=c1\r\n\
    To: <sip:12565378257@sipfront.local>\r\n\
    Call-ID: did-1@127.0.0.5\r\n\
    CSeq: 1 INVITE\r\n\
    Contact: <sip:carrier@127.0.0.5:5060>\r\n\
    Content-Length: 0\r\n\r\n";

fn invites(out: &[(SocketAddr, Message)]) -> Vec<(SocketAddr, Message)> {
    out.iter()
        .filter(|(_, m)| m.method() == Some(&crate::sip::Method::Invite))
        .cloned()
        .collect()
}

#[test]
fn did_call_to_a_registered_trunk_goes_to_its_nat_source() {
    let mut ep = did_ep();
    let t0 = Instant::now();
    // The phone behind NAT: Contact names its private address, the
    // packets come from PEER.
    register_phone(&mut ep, "<sip:100@10.0.0.7:5062>", 1, t0);
    let out = feed(&mut ep, DID_INVITE, CARRIER, t0);
    let (dest, inv) = invites(&out)
        .pop()
        .expect("an INVITE toward the registered trunk");
    assert_eq!(dest, PEER.parse::<SocketAddr>().unwrap(), "the NAT source");
    assert_eq!(inv.request_uri_str(), Some("sip:100@10.0.0.7:5062"));
}

#[test]
fn did_call_forks_to_every_contact_and_the_first_2xx_cancels_the_others() {
    use crate::sip::build::ResponseBuilder;
    let mut ep = did_ep();
    let t0 = Instant::now();
    register_phone(&mut ep, "<sip:100@10.0.0.7:5062>", 1, t0);
    register_phone(&mut ep, "<sip:100@10.0.0.8:5062>", 3, t0);
    let out = feed(&mut ep, DID_INVITE, CARRIER, t0);
    let forks = invites(&out);
    let uris: Vec<_> = forks
        .iter()
        .map(|(_, m)| m.request_uri_str().unwrap())
        .collect();
    assert_eq!(uris.len(), 2, "both contacts ring at once: {uris:?}");
    let reply = |m: &Message, status: u16, tag: &str| {
        let b = ResponseBuilder::new(m, StatusCode(status)).to_tag(tag);
        String::from_utf8(b.build().to_vec()).unwrap()
    };
    feed(&mut ep, &reply(&forks[0].1, 180, "p1"), PEER, t0);
    let out = feed(&mut ep, &reply(&forks[1].1, 200, "p2"), PEER, t0);
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some(&crate::sip::Method::Cancel))
        .expect("the ringing fork is cancelled");
    assert_eq!(cancel.1.request_uri_str(), forks[0].1.request_uri_str());
    assert!(out
        .iter()
        .any(|(d, m)| d.to_string() == CARRIER && m.status() == Some(StatusCode::OK)));
}

#[test]
fn a_trunk_dialling_another_trunks_login_rings_its_registered_contact() {
    let mut ep = did_ep();
    let t0 = Instant::now();
    register_phone(&mut ep, "<sip:100@10.0.0.7:5062>", 1, t0);
    let invite = DID_INVITE
        .replace("12565378257", "100")
        .replace("127.0.0.5", "127.0.0.9");
    let out = feed(&mut ep, &invite, "127.0.0.9:5060", t0);
    let (dest, inv) = invites(&out).pop().expect("on-net INVITE to the phone");
    assert_eq!(dest, PEER.parse::<SocketAddr>().unwrap());
    assert_eq!(inv.request_uri_str(), Some("sip:100@10.0.0.7:5062"));
}

#[test]
fn a_phone_registered_through_one_shard_is_rung_by_a_call_on_another() {
    // Two shards of one node: the challenge comes from shard 0, the
    // answer to it lands on shard 1 (one nonce key), the DID call on 0.
    let cfg = did_cfg();
    let mut s0 = Endpoint::new(cfg.for_shard(0, 2, [1; 32]));
    let mut s1 = Endpoint::with_shared(cfg.for_shard(1, 2, [2; 32]), s0.shared().clone());
    let t0 = Instant::now();
    let r = exchange(&mut s0, &register_req(1, ""), t0).remove(0);
    let creds = www_credentials(&r, "pw");
    let r = exchange(&mut s1, &register_req(2, &creds), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::OK));
    assert!(s1.take_owner_nudge(), "shard 0 is told to look");
    assert!(!s1.take_owner_nudge(), "once");
    // Shard 0 owns the store writes and the expiry timer.
    assert!(s1.poll_binding_write(t0).is_none());
    assert_eq!(
        s0.poll_binding_write(t0).map(|w| w.login),
        Some("100".to_owned())
    );
    assert!(s0
        .poll_timeout()
        .is_some_and(|t| t <= t0 + Duration::from_secs(3600)));
    let out = feed(&mut s0, DID_INVITE, CARRIER, t0);
    let (dest, inv) = invites(&out).pop().expect("the DID call rings the phone");
    assert_eq!(dest, PEER.parse::<SocketAddr>().unwrap());
    assert_eq!(inv.request_uri_str(), Some("sip:100@10.0.0.7:5062"));
    // The same credentials again, on either shard: a replayed nonce count.
    for s in [&mut s0, &mut s1] {
        let r = exchange(s, &register_req(3, &creds), t0).remove(0);
        assert_eq!(r.status(), Some(StatusCode::UNAUTHORIZED), "replay refused");
    }
    // Expiry runs on shard 0 and is seen from shard 1.
    s0.handle_timeout(t0 + Duration::from_secs(3601));
    assert!(s1.registrar().store().is_empty());
}

// ---- [security]: bans and scanners ------------------------------------------

#[test]
fn ten_wrong_passwords_ban_the_source_but_not_another_one() {
    let mut ep = register_ep();
    let t0 = Instant::now();
    for i in 0..10 {
        let r = exchange(&mut ep, &register_req(2 * i + 1, ""), t0).remove(0);
        let creds = www_credentials(&r, "guess");
        let r = exchange(&mut ep, &register_req(2 * i + 2, &creds), t0).remove(0);
        assert_eq!(r.status(), Some(StatusCode::FORBIDDEN), "attempt {i}");
    }
    // Banned: not even a challenge now, and the right password is no help.
    assert!(exchange(&mut ep, &register_req(100, ""), t0).is_empty());
    assert_eq!(ep.banned_drops(), 1);
    assert_eq!(ep.bans(t0).len(), 1);
    // Another source with the right password registers (new branches:
    // transactions match on Via, not on the packet source).
    let out = feed(&mut ep, &register_req(200, ""), "127.0.0.3:5071", t0);
    let creds = www_credentials(&out[0].1, "pw");
    let out = feed(&mut ep, &register_req(201, &creds), "127.0.0.3:5071", t0);
    assert_eq!(out[0].1.status(), Some(StatusCode::OK));
    // The ban ends after 15 minutes (or when lifted).
    assert!(!exchange(
        &mut ep,
        &register_req(101, ""),
        t0 + Duration::from_secs(901)
    )
    .is_empty());
}

#[test]
fn scanners_get_no_answer() {
    let mut ep = register_ep();
    for ua in ["friendly-scanner", "sipvicious 0.3.4", "SIPCLI/v1.8"] {
        let opts = format!(
            "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-s\r\n\
             From: <sip:100@x>;tag=s\r\nTo: <sip:100@x>\r\nCall-ID: s\r\nCSeq: 1 OPTIONS\r\n\
             User-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
        );
        assert!(exchange(&mut ep, &opts, Instant::now()).is_empty(), "{ua}");
    }
    assert_eq!(ep.stats().scanners_dropped, 3);
}

fn options_n(n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-o{n}\r\n\
         From: <sip:a@x>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o{n}\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn a_source_over_its_rate_gets_503_with_retry_after_and_recovers() {
    let mut ep = Endpoint::new(EndpointConfig {
        guard: GuardConfig {
            rate_limit: 2,
            ..EndpointConfig::default().guard
        },
        ..EndpointConfig::default()
    });
    let t0 = Instant::now();
    let codes: Vec<u16> = (0..6)
        .map(|n| exchange(&mut ep, &options_n(n), t0)[0].status().unwrap().0)
        .collect();
    assert_eq!(
        codes,
        [200, 200, 200, 200, 503, 503],
        "burst of twice the rate"
    );
    let r = exchange(&mut ep, &options_n(6), t0);
    assert_eq!(header(&r[0], HeaderName::RetryAfter), "5");
    // Retransmissions cost nothing: the answer is the transaction's.
    assert_eq!(
        exchange(&mut ep, &options_n(0), t0)[0].status().unwrap().0,
        200
    );
    let later = t0 + Duration::from_secs(1);
    assert_eq!(
        exchange(&mut ep, &options_n(7), later)[0]
            .status()
            .unwrap()
            .0,
        200
    );
}

#[test]
fn past_the_transaction_bound_new_invites_get_503() {
    let mut ep = Endpoint::new(EndpointConfig {
        guard: GuardConfig {
            max_transactions: 1,
            ..EndpointConfig::default().guard
        },
        ..EndpointConfig::default()
    });
    let t0 = Instant::now();
    exchange(&mut ep, &options_n(1), t0);
    let invite = "INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-i\r\n\
                  From: <sip:a@x>;tag=i\r\nTo: <sip:1@127.0.0.1>\r\nCall-ID: i\r\nCSeq: 1 INVITE\r\n\
                  Content-Length: 0\r\n\r\n";
    let r = exchange(&mut ep, invite, t0);
    assert_eq!(r[0].status(), Some(StatusCode::SERVICE_UNAVAILABLE));
}

#[test]
fn a_source_that_authenticated_is_not_rate_limited() {
    let mut ep = register_ep();
    ep.cfg.guard.rate_limit = 1;
    let t0 = Instant::now();
    let r = exchange(&mut ep, &register_req(1, ""), t0).remove(0);
    let creds = www_credentials(&r, "pw");
    let r = exchange(&mut ep, &register_req(2, &creds), t0).remove(0);
    assert_eq!(r.status(), Some(StatusCode::OK));
    let codes: Vec<u16> = (0..10)
        .map(|n| exchange(&mut ep, &options_n(n), t0)[0].status().unwrap().0)
        .collect();
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
}

/// RFC 7118 §5: a WebSocket client's REGISTER (no Content-Length: the
/// WebSocket message is the frame; Via and Contact hosts `.invalid`) is
/// challenged and bound like any other, answered on its transport, keyed to
/// its connection, and dropped when that connection closes.
#[test]
fn websocket_register_binds_to_its_connection_and_ends_with_it() {
    use crate::transport::{ConnId, TransportEvent};
    let mut ep = register_ep();
    let t0 = Instant::now();
    let conn = ConnId(7);
    let req = |cseq: u32, extra: &str| {
        format!(
            "REGISTER sip:sipfront.local SIP/2.0\r\n\
             Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-ws-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:100@sipfront.local>;tag=w1\r\n\
             To: <sip:100@sipfront.local>\r\n\
             Call-ID: ws-reg@invalid\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:k3j4@df7jal23ls0d.invalid;transport=ws>;expires=600\r\n\
             {extra}\r\n"
        )
    };
    let mut send = |text: String| {
        ep.handle(
            Inbound {
                conn: Some(conn),
                ..inbound(&text, Transport::Ws, t0)
            },
            t0,
        );
        let t = ep.poll_transmit().expect("an answer");
        assert_eq!(t.transport, Transport::Ws);
        assert_eq!(t.dest, PEER.parse::<SocketAddr>().unwrap());
        let m = Message::parse(t.bytes).expect("parseable");
        assert!(header(&m, HeaderName::Via).starts_with("SIP/2.0/WS df7jal23ls0d.invalid"));
        m
    };
    let r = send(req(1, ""));
    assert_eq!(r.status(), Some(StatusCode::UNAUTHORIZED));
    let r = send(req(2, &www_credentials(&r, "pw")));
    assert_eq!(r.status(), Some(StatusCode::OK));
    let reg = ep.registrar();
    let b = reg.store().lookup("100", t0);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].transport, b[0].conn, b[0].contact.as_str()),
        (
            Transport::Ws,
            Some(conn),
            "sip:k3j4@df7jal23ls0d.invalid;transport=ws"
        )
    );
    drop(reg);
    ep.handle_event(
        TransportEvent::Closed {
            conn,
            peer: PEER.parse().unwrap(),
        },
        t0,
    );
    assert!(ep.registrar().store().is_empty());
}
