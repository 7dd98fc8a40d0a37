//! Answering an upstream's 401/407 (RFC 3261 §22.2) on the B-leg: once per
//! request, new transaction, never a loop, never relayed to the caller.

use super::*;
use crate::auth::{self, Algorithm};
use crate::sip::DigestCredentials;

/// Both upstreams with an account; B2 too unless `only_first`.
fn h_with_credentials(only_first: bool) -> H {
    H::with(|c| {
        let second = if only_first {
            upstream("two", &format!("sip:{B2}"), 2)
        } else {
            UpstreamConfig {
                username: "acct2".into(),
                password: "pw2".into(),
                ..upstream("two", &format!("sip:{B2}"), 2)
            }
        };
        c.upstreams = Upstreams::from_config(&[
            UpstreamConfig {
                username: "acct".into(),
                password: "secret".into(),
                auth_username: "authuser".into(),
                ..upstream("one", &format!("sip:{B1}"), 1)
            },
            second,
        ])
        .unwrap();
    })
}

fn challenge(req: &Message, status: u16, params: &str) -> Bytes {
    let name = if status == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    ResponseBuilder::new(req, StatusCode(status))
        .to_tag("btag")
        .header(name, &format!("Digest {params}"))
        .build()
}

const QOP: &str = "realm=\"carrier\", nonce=\"n1\", qop=\"auth\", algorithm=MD5";

/// Checks `req` carries a valid answer to the `carrier`/`n1` challenge.
fn assert_answers(req: &Message, name: &HeaderName, user: &str, password: &str) {
    let raw = req.header(name).expect("credentials sent");
    let c = DigestCredentials::parse(raw).unwrap();
    assert_eq!(c.username.as_deref(), Some(user));
    assert_eq!(c.realm.as_deref(), Some("carrier"));
    let uri = req.request_uri_str().unwrap();
    assert_eq!(c.uri.as_deref(), Some(uri));
    let ha1 = auth::ha1(false, user, "carrier", password);
    let want = auth::response(
        Algorithm::Md5,
        &ha1,
        "n1",
        c.nc.unwrap(),
        c.cnonce.as_deref().unwrap(),
        "auth",
        req.method().unwrap().as_str(),
        uri,
    );
    assert_eq!(c.response.as_deref(), Some(want.as_str()));
}

#[test]
fn invite_407_is_answered_once_as_a_new_transaction_and_cancel_matches_it() {
    let mut h = h_with_credentials(false);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, challenge(&inv, 407, QOP));
    assert!(
        status_to(&out, A).is_empty(),
        "the challenge never reaches A"
    );
    assert!(request_to(&out, B1, Method::Ack).is_some(), "407 ACKed");
    let inv2 = request_to(&out, B1, Method::Invite).expect("INVITE again");
    assert_answers(&inv2, &HeaderName::ProxyAuthorization, "authuser", "secret");
    assert_eq!(inv2.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    assert_eq!(inv2.call_id().unwrap(), inv.call_id().unwrap());
    assert_eq!(inv2.from_tag(), inv.from_tag());
    assert_ne!(inv2.top_branch(), inv.top_branch(), "new transaction");
    assert_eq!(&inv2.body()[..], SDP.as_bytes());
    let out = h.feed(B1, b_response(&inv2, 180, ""));
    assert_eq!(status_to(&out, A), vec![180]);
    let cancel = RequestBuilder::new(Method::Cancel, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id("a-call@10.9.9.9")
        .cseq(10)
        .build();
    let out = h.feed(A, cancel);
    let b_cancel = request_to(&out, B1, Method::Cancel).expect("CANCEL on the B-leg");
    assert_eq!(
        b_cancel.top_branch(),
        inv2.top_branch(),
        "matches the retry"
    );
    assert_eq!(b_cancel.cseq().unwrap().seq, inv2.cseq().unwrap().seq);
    h.feed(B1, ResponseBuilder::new(&b_cancel, StatusCode::OK).build());
    h.feed(B1, b_response(&inv2, 487, ""));
    h.advance(Duration::from_secs(60));
    assert!(h.ep.b2bua().is_empty(), "no call left behind");
}

#[test]
fn second_challenge_fails_over_and_then_the_caller_gets_503() {
    let mut h = h_with_credentials(false);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, challenge(&inv, 407, QOP));
    let inv2 = request_to(&out, B1, Method::Invite).unwrap();
    let out = h.feed(B1, challenge(&inv2, 407, QOP));
    assert!(request_to(&out, B1, Method::Invite).is_none(), "no loop");
    assert!(status_to(&out, A).is_empty());
    let b2 = request_to(&out, B2, Method::Invite).expect("next upstream");
    assert!(b2.header(&HeaderName::ProxyAuthorization).is_none());
    let out = h.feed(B2, challenge(&b2, 401, QOP));
    let b2b = request_to(&out, B2, Method::Invite).expect("B2's own account");
    assert_answers(&b2b, &HeaderName::Authorization, "acct2", "pw2");
    let out = h.feed(B2, challenge(&b2b, 401, QOP));
    assert_eq!(status_to(&out, A), vec![503]);
    h.advance(Duration::from_secs(60));
    assert!(h.ep.b2bua().is_empty());
}

#[test]
fn unknown_algorithm_fails_over_and_no_credentials_behaves_as_before() {
    let mut h = h_with_credentials(true);
    let inv = start(&mut h, SDP);
    let out = h.feed(
        B1,
        challenge(&inv, 407, "realm=\"c\", nonce=\"n\", algorithm=SHA-512-256"),
    );
    assert!(request_to(&out, B1, Method::Invite).is_none());
    let b2 = request_to(&out, B2, Method::Invite).expect("fail-over");
    // B2 has no account: its challenge is a 503 for A, as before.
    let out = h.feed(B2, challenge(&b2, 407, QOP));
    assert!(request_to(&out, B2, Method::Invite).is_none());
    assert_eq!(status_to(&out, A), vec![503]);
}

#[test]
fn bye_and_reinvite_toward_the_upstream_are_answered_once() {
    let mut h = h_with_credentials(false);
    let inv = start(&mut h, SDP);
    let out = h.feed(B1, challenge(&inv, 407, QOP));
    let inv2 = request_to(&out, B1, Method::Invite).unwrap();
    let out = h.feed(B1, b_response(&inv2, 200, SDP));
    let tag = out
        .iter()
        .find(|(d, _)| *d == addr(A))
        .and_then(|(_, m)| m.to().ok()?.tag().map(str::to_owned))
        .unwrap();
    h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));

    // re-INVITE from A: challenged by B, answered, its 200 reaches A.
    let reinv = RequestBuilder::new(Method::Invite, "sip:sipfront@127.0.0.1:5060")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKa-re", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", Some(&tag))
        .call_id("a-call@10.9.9.9")
        .cseq(11)
        .contact("<sip:alice@10.9.9.9:5071>")
        .body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        .build();
    let out = h.feed(A, reinv);
    let b_re = request_to(&out, B1, Method::Invite).expect("re-INVITE relayed");
    let out = h.feed(B1, challenge(&b_re, 407, QOP));
    assert_eq!(status_to(&out, A), Vec::<u16>::new(), "challenge hidden");
    let b_re2 = request_to(&out, B1, Method::Invite).expect("re-INVITE again");
    assert_answers(
        &b_re2,
        &HeaderName::ProxyAuthorization,
        "authuser",
        "secret",
    );
    assert_eq!(b_re2.cseq().unwrap().seq, b_re.cseq().unwrap().seq + 1);
    assert_eq!(&b_re2.body()[..], SDP.as_bytes());
    let out = h.feed(B1, b_response(&b_re2, 200, SDP));
    assert_eq!(status_to(&out, A), vec![200]);
    h.feed(A, a_request(Method::Ack, 11, &tag, "z9hG4bKa-ack2"));

    // BYE from A: the upstream's 401 to our BYE is answered, once.
    let out = h.feed(A, a_request(Method::Bye, 12, &tag, "z9hG4bKa-bye"));
    let bye = request_to(&out, B1, Method::Bye).expect("BYE on the B-leg");
    let out = h.feed(B1, challenge(&bye, 401, QOP));
    let bye2 = request_to(&out, B1, Method::Bye).expect("BYE again");
    assert_answers(&bye2, &HeaderName::Authorization, "authuser", "secret");
    assert_eq!(bye2.cseq().unwrap().seq, bye.cseq().unwrap().seq + 1);
    let out = h.feed(B1, challenge(&bye2, 401, QOP));
    assert!(request_to(&out, B1, Method::Bye).is_none(), "no loop");
    h.advance(Duration::from_secs(60));
    assert!(h.ep.b2bua().is_empty());
}
