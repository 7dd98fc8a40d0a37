//! Caller identity (RFC 3323/3325, identity headers per direction),
//! `number_format`, upstream redirects (RFC 3261 §8.1.3.4) and emergency
//! numbers, through the endpoint with a fake clock.

use super::*;
use crate::config::NumberFormat;

fn header(m: &Message, name: &str) -> Option<String> {
    m.header(&HeaderName::from_bytes(name.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn with_callerid() -> H {
    H::with(|c| c.admission = admission(&trunk("callerid = \"12121234567\"")))
}

#[test]
fn privacy_id_hides_the_caller_in_from_and_asserts_it_to_the_carrier() {
    let mut h = with_callerid();
    let out = h.feed(A, a_invite_n(1, "12125551234", &[("Privacy", "id")]));
    let inv = request_to(&out, B1, Method::Invite).expect("relayed");
    assert_eq!(
        header(&inv, "From").unwrap().split(";tag=").next(),
        Some("\"Anonymous\" <sip:anonymous@anonymous.invalid>")
    );
    assert_eq!(
        header(&inv, "P-Asserted-Identity").as_deref(),
        Some("<sip:12121234567@127.0.0.1>")
    );
    assert_eq!(header(&inv, "Privacy").as_deref(), Some("id"));
    assert!(!text(&inv).contains("alice"), "{}", text(&inv));
    // The CDR still names the real caller.
    h.feed(B1, b_response(&inv, 486, ""));
    assert_eq!(cdrs(&mut h).pop().unwrap().from, "12121234567");
}

#[test]
fn number_format_plus_writes_every_number_with_plus() {
    let mut h = H::with(|c| {
        c.upstreams = Upstreams::from_config(&[UpstreamConfig {
            number_format: NumberFormat::Plus,
            ..upstream("one", &format!("sip:{B1}"), 1)
        }])
        .unwrap();
        c.admission = admission(&trunk("callerid = \"12121234567\""));
    });
    let out = h.feed(A, a_invite_n(1, "12125551234", &[]));
    let inv = request_to(&out, B1, Method::Invite).expect("relayed");
    assert_eq!(
        inv.request_uri_str(),
        Some("sip:+12125551234@127.0.0.3:5080")
    );
    assert_eq!(inv.to().unwrap().uri.user, Some("+12125551234"));
    assert_eq!(inv.from().unwrap().uri.user, Some("+12121234567"));
    assert_eq!(
        header(&inv, "P-Asserted-Identity").as_deref(),
        Some("<sip:+12121234567@127.0.0.1>")
    );
}

#[test]
fn a_trunks_diversion_and_history_info_reach_the_upstream() {
    let mut h = with_callerid();
    let div = "<sip:12125550100@pbx>;reason=unconditional;counter=1";
    let hi = "<sip:12125550100@pbx>;index=1";
    let extra = [
        ("Diversion", div),
        ("History-Info", hi),
        ("Identity", "forged"),
    ];
    let out = h.feed(A, a_invite_n(1, "12125551234", &extra));
    let inv = request_to(&out, B1, Method::Invite).expect("relayed");
    assert_eq!(header(&inv, "Diversion").as_deref(), Some(div));
    assert_eq!(header(&inv, "History-Info").as_deref(), Some(hi));
    // A PBX's signature is not ours to carry.
    assert_eq!(header(&inv, "Identity"), None);
}

#[test]
fn a_carriers_identity_headers_reach_the_trunk_unchanged() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [{ transport = 5, destination = \"36465\" }]\n",
    );
    let pai = "<sip:+13055551212@carrier.example;user=phone>";
    let identity =
        "eyJhbGciOiJFUzI1NiJ9.e30.c2ln;info=<https://cert.example/c.pem>;alg=ES256;ppt=shaken";
    let extra = [
        ("P-Asserted-Identity", pai),
        ("Privacy", "id"),
        (
            "Diversion",
            "<sip:+12565378200@carrier.example>;reason=user-busy",
        ),
        ("History-Info", "<sip:+12565378200@carrier.example>;index=1"),
        ("Identity", identity),
        ("Date", "Mon, 07 Dec 2026 04:00:00 GMT"),
    ];
    let out = h.feed(CARRIER, a_invite_n(1, "+12565378257", &extra));
    let inv = request_to(&out, PBX2, Method::Invite).expect("to the trunk");
    for (name, value) in extra {
        assert_eq!(header(&inv, name).as_deref(), Some(value), "{name}");
    }
}

fn redirect_to(inv: &Message, contacts: &[&str]) -> Bytes {
    let mut r = ResponseBuilder::new(inv, StatusCode(302)).to_tag("btag");
    for c in contacts {
        r = r.header("Contact", c);
    }
    r.build()
}

#[test]
fn a_302_is_followed_by_number_through_the_upstreams_and_never_reaches_a() {
    let mut h = with_callerid();
    let inv = start(&mut h, SDP);
    // The Contact's host is not used: the number goes to our upstream.
    let out = h.feed(
        B1,
        redirect_to(&inv, &["<sip:+442071234567@198.51.100.9:5060>;q=0.9"]),
    );
    assert!(status_to(&out, A).is_empty(), "nothing to A: {out:?}");
    assert!(request_to(&out, B1, Method::Ack).is_some(), "3xx ACKed");
    let inv2 = request_to(&out, B1, Method::Invite).expect("redirected INVITE");
    assert_eq!(
        inv2.request_uri_str(),
        Some("sip:442071234567@127.0.0.3:5080")
    );
    assert!(out
        .iter()
        .all(|(d, _)| d.ip().to_string() != "198.51.100.9"));
    let out = h.feed(B1, b_response(&inv2, 200, SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .expect("200 to A");
    assert!(!text(&ok.1).contains("198.51.100.9"));
    let tag = ok.1.to().unwrap().tag().unwrap().to_owned();
    h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));
    h.feed(A, a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"));
    h.advance(Duration::from_secs(40));
    let cdr = cdrs(&mut h).pop().expect("CDR");
    // Billed at the number really called.
    assert_eq!((cdr.to.as_str(), cdr.sip_code), ("442071234567", 200));
    assert!((cdr.per_minute - 0.02).abs() < 1e-9, "{cdr:?}");
}

#[test]
fn a_redirect_loop_stops_after_five_targets_with_503_and_no_call_left() {
    let mut h = with_callerid();
    let mut inv = start(&mut h, SDP);
    let mut invites = 1;
    loop {
        let contact = format!("<sip:1212555000{invites}@127.0.0.3>");
        let out = h.feed(B1, redirect_to(&inv, &[&contact]));
        match request_to(&out, B1, Method::Invite) {
            Some(next) => {
                invites += 1;
                inv = next;
            }
            None => {
                assert_eq!(status_to(&out, A), vec![503]);
                break;
            }
        }
        assert!(invites <= 10, "never stops");
    }
    assert_eq!(invites, 6, "the dialled number and five redirect targets");
    h.advance(Duration::from_secs(40));
    assert!(h.ep.b2bua().is_empty());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
}

#[test]
fn a_redirect_back_to_a_number_already_called_is_not_followed() {
    let mut h = with_callerid();
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, redirect_to(&inv, &["<sip:12125551234@127.0.0.3>"]));
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(status_to(&out, A), vec![503]);
}

#[test]
fn a_redirect_the_trunk_may_not_call_is_not_followed() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("cost_limit = true\nmax_call_cost = 0.05"));
    });
    let inv = start(&mut h, SDP);
    // No rate for 999…; 0.05 buys under a minute of 4477… (0.09/min).
    let out = h.feed(
        B1,
        redirect_to(
            &inv,
            &["<sip:99912345@127.0.0.3>", "<sip:447700900123@127.0.0.3>"],
        ),
    );
    assert!(request_to(&out, B1, Method::Invite).is_none(), "{out:?}");
    assert!(request_to(&out, B2, Method::Invite).is_none());
    assert_eq!(status_to(&out, A), vec![403], "the policy's answer");
}

#[test]
fn the_next_contact_is_tried_when_a_redirect_target_fails() {
    let mut h = with_callerid();
    let inv = start(&mut h, SDP);
    let out = h.feed(
        B1,
        redirect_to(
            &inv,
            &["<sip:12125550001@x>;q=0.5", "<sip:12125550002@x>;q=1.0"],
        ),
    );
    let inv2 = request_to(&out, B1, Method::Invite).unwrap();
    assert_eq!(
        inv2.to().unwrap().uri.user,
        Some("12125550002"),
        "higher q first"
    );
    let out = h.feed(B1, b_response(&inv2, 486, ""));
    let inv3 = request_to(&out, B1, Method::Invite).expect("next contact");
    assert_eq!(inv3.to().unwrap().uri.user, Some("12125550001"));
    let out = h.feed(B1, b_response(&inv3, 486, ""));
    assert_eq!(status_to(&out, A), vec![486]);
}

#[test]
fn an_emergency_number_ignores_channels_rate_and_duration() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk(
            "channels_restrict = true\nmax_channels = 0\ncall_restrict = true\ncall_limit = 60\n\
             cost_limit = true\nmax_call_cost = 0\ncallerid = \"12121234567\"",
        ));
        // No session-timer refreshes to answer: only limits could end it.
        c.b2bua.session.expires = Duration::ZERO;
    });
    // An ordinary number: refused as before.
    let out = h.feed(A, a_invite_n(1, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![503]);
    // 911 has no rate and the trunk no free channel: it goes through.
    let out = h.feed(A, a_invite_n(2, "911", &[]));
    assert_eq!(status_to(&out, A), vec![100]);
    let inv = request_to(&out, B1, Method::Invite).expect("to the first upstream");
    assert_eq!(inv.request_uri_str(), Some("sip:911@127.0.0.3:5080"));
    assert_eq!(inv.from().unwrap().uri.user, Some("12121234567"));
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let tag = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .and_then(|(_, m)| m.to().ok()?.tag().map(str::to_owned))
        .expect("answered");
    let ack = String::from_utf8_lossy(&a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"))
        .replace("a-call@", "a-call-2@");
    h.feed(A, Bytes::from(ack));
    // Neither call_limit nor the 4 h bound ends it.
    let out = h.advance(Duration::from_secs(5 * 3600));
    assert!(request_to(&out, B1, Method::Bye).is_none());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1, "it holds a channel");
    // Dialled through the trunk's rewrite (9 for an outside line) too.
    let mut h = H::with(|c| {
        c.admission = admission(&trunk(
            "rewrite_enabled = true\nrewrite_cond = \"9\"\nchannels_restrict = true\nmax_channels = 0",
        ));
    });
    let out = h.feed(A, a_invite_n(1, "9112", &[]));
    let inv = request_to(&out, B1, Method::Invite).expect("112 to the upstream");
    assert_eq!(inv.request_uri_str(), Some("sip:112@127.0.0.3:5080"));
    h.feed(B1, b_response(&inv, 486, ""));
    let cdr = cdrs(&mut h).pop().expect("CDR");
    assert_eq!(
        (cdr.to.as_str(), cdr.destination.as_str()),
        ("112", "Emergency")
    );
    assert_eq!(cdr.per_minute, 0.0);
}
