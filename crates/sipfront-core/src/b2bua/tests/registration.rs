//! Registration trunks (RFC 3261 §10.2 client side) on the fake clock:
//! challenge, refresh before expiry, 423, back-off, unregister on stop,
//! and the carrier's calls to the registered contact.

use super::*;

const QOP: &str = "Digest realm=\"carrier\", nonce=\"n1\", qop=\"auth\"";

/// One registering upstream at `CARRIER` (not trusted), the DID harness.
fn reg_harness() -> H {
    let trunks = "[[trunk]]\nid = 2\nname = \"36465\"\nhost_request = \"127.0.0.8\"\n\
                  didinfo_enabled = true\n\
                  [[did]]\nnumber = \"12565378257\"\n\
                  destinations = [{ transport = 5, destination = \"36465\" }]\n";
    H::with(move |c| {
        c.upstreams = Upstreams::from_config(&[UpstreamConfig {
            username: "acct".into(),
            password: "secret".into(),
            register: true,
            register_expires_s: 600,
            ..upstream("carrier", &format!("sip:{CARRIER}"), 1)
        }])
        .unwrap();
        c.admission = admission(trunks);
    })
}

fn first_register(h: &mut H) -> Message {
    // `H::with` ran the first handle_timeout, which sent the REGISTER.
    let out = h.take();
    request_to(&out, CARRIER, Method::Register).expect("REGISTER at start")
}

fn reply(req: &Message, status: u16, headers: &[(&str, &str)]) -> Bytes {
    let mut r = ResponseBuilder::new(req, StatusCode(status)).to_tag("rtag");
    for (n, v) in headers {
        r = r.header(n, v);
    }
    r.build()
}

fn header(m: &Message, name: HeaderName) -> String {
    String::from_utf8_lossy(m.header(&name).unwrap_or_default()).into_owned()
}

fn state(h: &H) -> UpstreamRegistration {
    h.ep.b2bua().registration(0, h.now)
}

/// Registers (401 answered, 200 with `expires`); returns the last REGISTER.
fn register(h: &mut H, expires: &str) -> Message {
    let reg = first_register(h);
    let out = h.feed(CARRIER, reply(&reg, 401, &[("WWW-Authenticate", QOP)]));
    let reg2 = request_to(&out, CARRIER, Method::Register).expect("answered");
    let contact =
        format!("<sip:acct@127.0.0.1:5060>;expires={expires}, <sip:other@10.0.0.1>;expires=5");
    h.feed(CARRIER, reply(&reg2, 200, &[("Contact", &contact)]));
    reg2
}

use super::super::UpstreamRegistration;

#[test]
fn registers_with_credentials_and_refreshes_before_expiry() {
    let mut h = reg_harness();
    let reg = first_register(&mut h);
    assert_eq!(reg.request_uri_str(), Some("sip:127.0.0.5:5060"));
    assert_eq!(reg.from().unwrap().uri.as_str(), "sip:acct@127.0.0.5:5060");
    assert_eq!(reg.to().unwrap().uri.as_str(), "sip:acct@127.0.0.5:5060");
    assert_eq!(
        header(&reg, HeaderName::Contact),
        "<sip:acct@127.0.0.1:5060>"
    );
    assert_eq!(header(&reg, HeaderName::Expires), "600");
    assert_eq!(
        state(&h).state,
        "failed",
        "not registered before the answer"
    );
    let out = h.feed(CARRIER, reply(&reg, 401, &[("WWW-Authenticate", QOP)]));
    let reg2 = request_to(&out, CARRIER, Method::Register).expect("answered");
    assert!(reg2.header(&HeaderName::Authorization).is_some());
    assert_eq!(reg2.call_id().unwrap(), reg.call_id().unwrap());
    assert_eq!(reg2.from_tag(), reg.from_tag());
    assert_eq!(reg2.cseq().unwrap().seq, reg.cseq().unwrap().seq + 1);
    // The registrar grants 300 (our Contact's expires, not the other's 5).
    let contact = "<sip:acct@127.0.0.1:5060>;expires=300, <sip:other@10.0.0.1>;expires=5";
    h.feed(CARRIER, reply(&reg2, 200, &[("Contact", contact)]));
    let v = state(&h);
    assert_eq!((v.state, v.last_error.as_deref()), ("registered", None));
    let want = h.ep.b2bua().cfg.wall.unix_secs(h.now) + 300;
    assert_eq!(v.expires, Some(want));
    // Refreshed 60 s before the granted expiry, not before.
    let out = h.advance(Duration::from_secs(239));
    assert!(request_to(&out, CARRIER, Method::Register).is_none());
    let out = h.advance(Duration::from_secs(2));
    let refresh = request_to(&out, CARRIER, Method::Register).expect("refresh");
    assert_eq!(refresh.cseq().unwrap().seq, reg2.cseq().unwrap().seq + 1);
    assert_eq!(refresh.call_id().unwrap(), reg.call_id().unwrap());
}

#[test]
fn interval_too_brief_raises_the_expiry_to_min_expires() {
    let mut h = reg_harness();
    let reg = first_register(&mut h);
    let out = h.feed(CARRIER, reply(&reg, 423, &[("Min-Expires", "1200")]));
    let again = request_to(&out, CARRIER, Method::Register).expect("at once");
    assert_eq!(header(&again, HeaderName::Expires), "1200");
    // A 423 that asks for no more than we asked is a failure, not a loop.
    let out = h.feed(CARRIER, reply(&again, 423, &[("Min-Expires", "60")]));
    assert!(request_to(&out, CARRIER, Method::Register).is_none());
    assert_eq!(state(&h).state, "failed");
}

#[test]
fn refusal_backs_off_exponentially_and_second_challenge_fails() {
    let mut h = reg_harness();
    let reg = first_register(&mut h);
    let out = h.feed(CARRIER, reply(&reg, 403, &[]));
    assert!(request_to(&out, CARRIER, Method::Register).is_none());
    let v = state(&h);
    assert_eq!(
        (v.state, v.last_error.as_deref()),
        ("failed", Some("403 Forbidden"))
    );
    // First retry 30–60 s later (RFC 5626 §4.5, base 30 s, doubled, jittered).
    let out = h.advance(Duration::from_secs(29));
    assert!(
        request_to(&out, CARRIER, Method::Register).is_none(),
        "not before 30 s"
    );
    let out = h.advance(Duration::from_secs(32));
    let retry = request_to(&out, CARRIER, Method::Register).expect("retried by 60 s");
    // Challenged twice: wrong password, a failure, the next wait doubles.
    let out = h.feed(CARRIER, reply(&retry, 401, &[("WWW-Authenticate", QOP)]));
    let authed = request_to(&out, CARRIER, Method::Register).unwrap();
    let out = h.feed(CARRIER, reply(&authed, 401, &[("WWW-Authenticate", QOP)]));
    assert!(
        request_to(&out, CARRIER, Method::Register).is_none(),
        "no loop"
    );
    let err = state(&h).last_error.unwrap();
    assert!(err.contains("wrong username/password"), "{err}");
    let out = h.advance(Duration::from_secs(59));
    assert!(
        request_to(&out, CARRIER, Method::Register).is_none(),
        "not before 60 s"
    );
    let out = h.advance(Duration::from_secs(62));
    assert!(
        request_to(&out, CARRIER, Method::Register).is_some(),
        "by 120 s"
    );
}

#[test]
fn no_answer_is_a_failure_after_timer_f() {
    let mut h = reg_harness();
    first_register(&mut h);
    h.advance(Duration::from_secs(33));
    let v = state(&h);
    assert_eq!(v.state, "failed");
    assert_eq!(
        v.last_error.as_deref(),
        Some("no response from the registrar")
    );
}

#[test]
fn stop_unregisters_answering_the_challenge() {
    let mut h = reg_harness();
    register(&mut h, "600");
    assert_eq!(state(&h).state, "registered");
    h.ep.hang_up_all(h.now);
    let out = h.take();
    let unreg = request_to(&out, CARRIER, Method::Register).expect("unregister");
    assert_eq!(header(&unreg, HeaderName::Expires), "0");
    assert!(h.ep.b2bua().unregistering(h.now));
    let out = h.feed(CARRIER, reply(&unreg, 407, &[("Proxy-Authenticate", QOP)]));
    let unreg2 = request_to(&out, CARRIER, Method::Register).expect("answered");
    assert_eq!(header(&unreg2, HeaderName::Expires), "0");
    assert!(unreg2.header(&HeaderName::ProxyAuthorization).is_some());
    h.feed(CARRIER, reply(&unreg2, 200, &[]));
    assert!(!h.ep.b2bua().unregistering(h.now));
    let out = h.advance(Duration::from_secs(3600));
    assert!(
        request_to(&out, CARRIER, Method::Register).is_none(),
        "no refresh after stop"
    );
}

#[test]
fn carrier_call_to_the_registered_contact_is_a_did_call() {
    let mut h = reg_harness();
    let call = |n: u32| {
        RequestBuilder::new(Method::Invite, "sip:acct@127.0.0.1:5060")
            .via(
                Transport::Udp,
                "127.0.0.5:5060",
                &format!("z9hG4bKc-{n}"),
                true,
            )
            .from("<sip:12125550000@127.0.0.5>", Some("ctag"))
            .to("<sip:+12565378257@127.0.0.5>", None)
            .call_id(&format!("c-{n}@127.0.0.5"))
            .cseq(1)
            .contact("<sip:c@127.0.0.5:5060>")
            .body("application/sdp", Bytes::from_static(SDP.as_bytes()))
            .build()
    };
    register(&mut h, "600");
    // The account's user from any other address is a stranger: challenged.
    let out = h.feed("127.0.0.9:5060", call(1));
    assert_eq!(status_to(&out, "127.0.0.9:5060"), vec![407]);
    let out = h.feed(CARRIER, call(2));
    assert_eq!(status_to(&out, CARRIER), vec![100]);
    let inv = request_to(&out, PBX2, Method::Invite).expect("the DID's trunk");
    assert_eq!(
        inv.to().unwrap().uri.user,
        Some("12565378257"),
        "DID = To user"
    );
}
