//! Blind transfer (RFC 3515 REFER, RFC 3420 sipfrag NOTIFY) from raw bytes
//! to raw bytes, on the fake clock.

use super::*;

const NEW_SDP: &str = "v=0\r\no=c 2 2 IN IP4 10.7.7.7\r\ns=-\r\nc=IN IP4 10.7.7.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";

/// A REFER on a leg: `to_tag` is ours on that leg, the rest as `req` built it.
fn with_refer_to(req: Bytes, refer_to: &str) -> Bytes {
    let text = String::from_utf8_lossy(&req).replace(
        "Content-Length: 0\r\n",
        &format!(
            "Refer-To: {refer_to}\r\nReferred-By: <sip:alice@10.9.9.9>\r\nContent-Length: 0\r\n"
        ),
    );
    Bytes::from(text)
}

fn a_refer(tag: &str, cseq: u32, refer_to: &str) -> Bytes {
    with_refer_to(
        a_request(Method::Refer, cseq, tag, &format!("z9hG4bKa-refer{cseq}")),
        refer_to,
    )
}

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body()).into_owned()
}

fn header(m: &Message, name: &str) -> String {
    m.header(&HeaderName::from_bytes(name.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn notifies_to(out: &[(SocketAddr, Message)], dest: &str) -> Vec<Message> {
    out.iter()
        .filter(|(d, m)| *d == addr(dest) && m.method() == Some(&Method::Notify))
        .map(|(_, m)| m.clone())
        .collect()
}

fn new_invite(out: &[(SocketAddr, Message)], dest: &str, not: &Message) -> Option<Message> {
    out.iter()
        .find(|(d, m)| {
            *d == addr(dest)
                && m.method() == Some(&Method::Invite)
                && m.call_id().ok() != not.call_id().ok()
        })
        .map(|(_, m)| m.clone())
}

/// A placed call answered, then REFERred by the PBX (A) to `number`:
/// the 202 and the first NOTIFY checked; returns (old B INVITE, A's tag,
/// what the REFER produced).
fn referred(h: &mut H, number: &str) -> (Message, String, Vec<(SocketAddr, Message)>) {
    let (inv, tag) = answered(h);
    let out = h.feed(
        A,
        a_refer(&tag, 11, &format!("<sip:{number}@10.9.9.9:5071>")),
    );
    assert_eq!(status_to(&out, A), vec![202], "REFER accepted");
    let n = notifies_to(&out, A);
    let first = n.first().expect("a NOTIFY to the referrer");
    assert_eq!(body(first), "SIP/2.0 100 Trying\r\n");
    assert_eq!(header(first, "Event"), "refer;id=11");
    assert!(header(first, "Subscription-State").starts_with("active"));
    assert_eq!(header(first, "Content-Type"), "message/sipfrag;version=2.0");
    assert_eq!(first.call_id().unwrap(), b"a-call@10.9.9.9");
    assert!(
        request_to(&out, B1, Method::Refer).is_none(),
        "the REFER is never relayed"
    );
    (inv, tag, out)
}

#[test]
fn blind_transfer_places_a_new_call_and_bridges_the_transferred_party() {
    let mut h = H::new();
    let (inv, _tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).expect("new INVITE to the upstream");
    assert_eq!(new.to().unwrap().uri.user, Some("12125550199"));
    assert_eq!(
        body(&new),
        SDP,
        "offers the transferred party's last SDP (early offer)"
    );
    let t = text(&new);
    for leak in [
        "a-call",
        "atag",
        "10.9.9.9:5071",
        "alice",
        "Referred-By",
        "Refer-To",
    ] {
        assert!(!t.contains(leak), "new INVITE leaks {leak}:\n{t}");
    }
    // The transferred party (the number the PBX dialled) is the caller,
    // as the trunk's caller-ID rules allow (fixed caller ID: not them).
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 2, "both hold a channel");

    let out = h.feed(B1, b_response(&new, 180, ""));
    assert!(status_to(&out, A).is_empty() && notifies_to(&out, A).is_empty());
    let out = h.feed(B1, b_response(&new, 200, NEW_SDP));
    let ack = out
        .iter()
        .find(|(d, m)| *d == addr(B1) && m.method() == Some(&Method::Ack))
        .map(|(_, m)| m.clone())
        .expect("new call ACKed");
    assert_eq!(ack.call_id().unwrap(), new.call_id().unwrap());
    let reinv = out
        .iter()
        .find(|(d, m)| {
            *d == addr(B1)
                && m.method() == Some(&Method::Invite)
                && m.call_id().ok() == inv.call_id().ok()
        })
        .map(|(_, m)| m.clone())
        .expect("re-INVITE to the transferred party");
    assert_eq!(body(&reinv), NEW_SDP, "carries the new party's SDP");
    assert_eq!(reinv.to().unwrap().tag(), Some("btag"));
    assert_eq!(reinv.cseq().unwrap().seq, inv.cseq().unwrap().seq + 1);
    let n = notifies_to(&out, A);
    let last = n.last().expect("final NOTIFY");
    assert_eq!(body(last), "SIP/2.0 200 OK\r\n");
    assert!(header(last, "Subscription-State").starts_with("terminated"));
    assert!(
        request_to(&out, A, Method::Bye).is_none(),
        "BYE waits for the NOTIFY's answer"
    );

    let out = h.feed(A, ResponseBuilder::new(last, StatusCode::OK).build());
    assert!(request_to(&out, A, Method::Bye).is_some(), "referrer BYEd");
    assert!(
        request_to(&out, B1, Method::Bye).is_none(),
        "not the transferred party"
    );
    let out = h.feed(B1, b_response(&reinv, 200, SDP));
    let ack = request_to(&out, B1, Method::Ack).expect("bridging re-INVITE ACKed");
    assert_eq!(ack.call_id().unwrap(), inv.call_id().unwrap());
    let bye_a = request_to(&h.advance(Duration::from_millis(1)), A, Method::Bye);
    assert!(bye_a.is_none());

    // The old call ended: its CDR; the new call holds the one channel.
    let got = cdrs(&mut h);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0].call_id, "a-call@10.9.9.9");
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);

    // The transferred party hangs up: the new party gets BYE.
    let out = h.feed(B1, b_request(&inv, Method::Bye, 9, "z9hG4bKb-bye"));
    assert_eq!(status_to(&out, B1), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("BYE to the new party");
    assert_eq!(bye.call_id().unwrap(), new.call_id().unwrap());
    let got = cdrs(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, "12125550199");
    assert_eq!(got[0].sip_trunk, "pbx");
    assert_eq!(got[0].sip_code, 200);
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
}

#[test]
fn a_transfer_the_trunk_may_not_place_is_notified_and_the_call_goes_on() {
    let mut h = H::with(|c| {
        c.admission = admission(&trunk("cost_limit = true\nmax_call_cost = 0.05"));
    });
    let (inv, tag, out) = referred(&mut h, "447700900123");
    assert!(new_invite(&out, B1, &inv).is_none(), "nothing placed");
    let n = notifies_to(&out, A);
    assert_eq!(n.len(), 2);
    assert_eq!(body(&n[1]), "SIP/2.0 403 Forbidden\r\n");
    assert!(header(&n[1], "Subscription-State").starts_with("terminated"));
    let refused = cdrs(&mut h);
    assert_eq!(refused.len(), 1, "the refused transfer's CDR");
    assert_eq!(refused[0].sip_code, 403);
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);
    // The NOTIFY's answer ends nothing; the call goes on.
    let out = h.feed(A, ResponseBuilder::new(&n[1], StatusCode::OK).build());
    assert!(out.is_empty());
    let out = h.feed(A, a_request(Method::Bye, 12, &tag, "z9hG4bKa-bye"));
    assert_eq!(status_to(&out, A), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("BYE relayed as before");
    assert_eq!(bye.call_id().unwrap(), inv.call_id().unwrap());
}

#[test]
fn a_failed_new_call_is_notified_and_a_second_refer_may_follow() {
    let mut h = H::new();
    let (inv, tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).unwrap();
    let out = h.feed(B1, b_response(&new, 486, ""));
    let n = notifies_to(&out, A);
    assert_eq!(body(&n[0]), "SIP/2.0 486 Busy Here\r\n");
    assert!(
        request_to(&out, B1, Method::Invite).is_none(),
        "no re-INVITE"
    );
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);
    let out = h.feed(A, a_refer(&tag, 12, "<sip:12125550100@10.9.9.9>"));
    assert_eq!(status_to(&out, A), vec![202]);
    assert!(new_invite(&out, B1, &inv).is_some());
}

#[test]
fn refer_refusals_carrier_side_pending_and_unknown_replaces() {
    let mut h = H::new();
    let (inv, tag) = answered(&mut h);
    let from_b = with_refer_to(
        b_request(&inv, Method::Refer, 8, "z9hG4bKb-refer"),
        "<sip:12125550199@127.0.0.3>",
    );
    let out = h.feed(B1, from_b);
    assert_eq!(status_to(&out, B1), vec![403], "carriers do not transfer");
    assert!(out.iter().all(|(d, _)| *d == addr(B1)));
    let replaces = "<sip:200@10.9.9.9?Replaces=x%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>";
    let out = h.feed(A, a_refer(&tag, 11, replaces));
    assert_eq!(status_to(&out, A), vec![202], "attended: tests/attended.rs");
    let n = notifies_to(&out, A);
    assert_eq!(
        body(&n[1]),
        "SIP/2.0 481 Call/Transaction Does Not Exist\r\n"
    );
    let out = h.feed(A, a_refer(&tag, 12, "<sip:10.9.9.9>"));
    assert_eq!(status_to(&out, A), vec![484]);
    let out = h.feed(A, a_refer(&tag, 13, "<sip:12125550199@10.9.9.9>"));
    assert_eq!(status_to(&out, A), vec![202]);
    let out = h.feed(A, a_refer(&tag, 14, "<sip:12125550199@10.9.9.9>"));
    assert_eq!(status_to(&out, A), vec![491], "one transfer at a time");
}

#[test]
fn the_referrer_may_hang_up_before_the_new_party_answers() {
    let mut h = H::new();
    let (inv, tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).unwrap();
    let out = h.feed(A, a_request(Method::Bye, 12, &tag, "z9hG4bKa-bye"));
    assert_eq!(status_to(&out, A), vec![200]);
    assert!(
        request_to(&out, B1, Method::Bye).is_none(),
        "the transferred party stays for the new call"
    );
    let out = h.feed(B1, b_response(&new, 200, NEW_SDP));
    let reinv = request_to(&out, B1, Method::Invite).expect("bridging re-INVITE");
    assert_eq!(reinv.call_id().unwrap(), inv.call_id().unwrap());
    assert!(notifies_to(&out, A).is_empty(), "nobody to NOTIFY");
}

#[test]
fn the_transferred_party_hanging_up_cancels_the_new_call() {
    let mut h = H::new();
    let (inv, _tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).unwrap();
    h.feed(B1, b_response(&new, 180, ""));
    let out = h.feed(B1, b_request(&inv, Method::Bye, 9, "z9hG4bKb-bye"));
    assert!(request_to(&out, A, Method::Bye).is_some(), "referrer BYEd");
    assert!(
        request_to(&out, B1, Method::Cancel).is_some(),
        "new call CANCELled"
    );
}

#[test]
fn a_transfer_that_rings_past_timer_c_is_notified_408() {
    let mut h = H::new();
    let (inv, _tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).unwrap();
    h.advance(Duration::from_secs(1));
    h.feed(B1, b_response(&new, 180, ""));
    let out = h.advance(Duration::from_secs(180));
    let n = notifies_to(&out, A);
    assert_eq!(
        n.last().map(body).as_deref(),
        Some("SIP/2.0 408 Request Timeout\r\n")
    );
    assert!(request_to(&out, B1, Method::Cancel).is_some());
}

#[test]
fn a_did_call_is_transferred_by_the_trunk_that_answered_it() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [{ transport = 5, destination = \"36465\" }]\n",
    );
    let out = h.feed(CARRIER, a_invite_n(1, "+12565378257", &[]));
    let inv = request_to(&out, PBX2, Method::Invite).unwrap();
    let out = h.feed(PBX2, b_response(&inv, 200, NEW_SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(CARRIER) && m.status() == Some(StatusCode::OK))
        .unwrap()
        .1
        .clone();
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    let ack = RequestBuilder::new(Method::Ack, "sip:sipfront@127.0.0.1:5060")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKc-ack", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:+12565378257@sipfront.local>", Some(&tag))
        .call_id("a-call-1@10.9.9.9")
        .cseq(10)
        .build();
    h.feed(CARRIER, ack);
    // The PBX (the B-leg) transfers the caller to an outside number.
    let refer = with_refer_to(
        b_request(&inv, Method::Refer, 2, "z9hG4bKp-refer"),
        "<sip:12125550199@127.0.0.8>",
    );
    let out = h.feed(PBX2, refer);
    assert_eq!(status_to(&out, PBX2), vec![202]);
    let new = request_to(&out, CARRIER, Method::Invite).expect("placed via the upstream");
    assert_eq!(new.to().unwrap().uri.user, Some("12125550199"));
    assert_eq!(body(&new), SDP, "the caller's SDP");
    let out = h.feed(CARRIER, b_response(&new, 200, NEW_SDP));
    let reinv = out
        .iter()
        .find(|(d, m)| {
            *d == addr(CARRIER)
                && m.method() == Some(&Method::Invite)
                && m.call_id().unwrap() == b"a-call-1@10.9.9.9"
        })
        .map(|(_, m)| m.clone())
        .expect("re-INVITE to the caller");
    assert_eq!(body(&reinv), NEW_SDP);
    let n = notifies_to(&out, PBX2);
    assert_eq!(n.last().map(body).as_deref(), Some("SIP/2.0 200 OK\r\n"));
    assert_eq!(
        h.ep.b2bua().calls_of_trunk(2),
        1,
        "the new call is the trunk's"
    );
}

#[test]
fn the_transferred_call_keeps_session_refreshes_on_both_dialogs() {
    let mut h = H::new();
    let (inv, _tag, out) = referred(&mut h, "12125550199");
    let new = new_invite(&out, B1, &inv).unwrap();
    let out = h.feed(B1, b_response(&new, 200, NEW_SDP));
    let reinv = new_invite(&out, B1, &new).expect("bridging re-INVITE");
    let last = notifies_to(&out, A).pop().unwrap();
    let out = h.feed(A, ResponseBuilder::new(&last, StatusCode::OK).build());
    let bye = request_to(&out, A, Method::Bye).unwrap();
    h.feed(A, ResponseBuilder::new(&bye, StatusCode::OK).build());
    h.feed(B1, b_response(&reinv, 200, SDP));
    // RFC 4028 reaper on each dialog, with the SDP that dialog last got.
    let out = h.advance(Duration::from_secs(1801));
    let refresh = |call_id: &[u8]| {
        out.iter()
            .find(|(d, m)| {
                *d == addr(B1)
                    && m.method() == Some(&Method::Invite)
                    && m.call_id().ok() == Some(call_id)
            })
            .map(|(_, m)| body(m))
    };
    assert_eq!(refresh(inv.call_id().unwrap()).as_deref(), Some(NEW_SDP));
    assert_eq!(refresh(new.call_id().unwrap()).as_deref(), Some(SDP));
    for m in [Method::Invite, Method::Update] {
        assert!(
            request_to(&out, A, m).is_none(),
            "the referrer's leg is over"
        );
    }
}
