//! Attended transfer (REFER with `Replaces`, RFC 3891; RFC 3725 flow I)
//! and INVITE with `Replaces`, from raw bytes to raw bytes on the fake clock.

use super::*;

const FRESH_A: &str = "v=0\r\no=a 1 2 IN IP4 10.1.1.1\r\ns=fresh-a\r\nc=IN IP4 10.1.1.1\r\nt=0 0\r\nm=audio 4100 RTP/AVP 0\r\n";
const SDP_C: &str = "v=0\r\no=c 7 8 IN IP4 10.3.3.3\r\ns=party-c\r\nc=IN IP4 10.3.3.3\r\nt=0 0\r\nm=audio 4300 RTP/AVP 0\r\n";

fn body(m: &Message) -> String {
    String::from_utf8_lossy(&m.body()).into_owned()
}

/// Call number `n` from the PBX (A) to `number`, answered by B1 and ACKed:
/// (its B-leg INVITE, our tag on its A-leg).
fn answered_n(h: &mut H, from: &str, n: u32, number: &str) -> (Message, String) {
    let out = h.feed(from, a_invite_n(n, number, &[]));
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(from) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .expect("200 relayed to the PBX");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    let out = h.feed(from, pbx_request(n, Method::Ack, 10, &tag, "z9hG4bKack"));
    assert!(out.is_empty());
    (inv, tag)
}

/// An in-dialog request from the PBX on its call `n`.
fn pbx_request(n: u32, method: Method, cseq: u32, our_tag: &str, branch: &str) -> Bytes {
    RequestBuilder::new(method, "sip:sipfront@127.0.0.1:5060")
        .via(
            Transport::Udp,
            "10.9.9.9:5071",
            &format!("{branch}-{n}-{cseq}"),
            true,
        )
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:x@sipfront.local>", Some(our_tag))
        .call_id(&format!("a-call-{n}@10.9.9.9"))
        .cseq(cseq)
        .contact("<sip:alice@10.9.9.9:5071>")
        .build()
}

/// The PBX's REFER on call `n` with `Refer-To: <sip:x@pbx?Replaces=rep>`.
fn refer_replaces(n: u32, our_tag: &str, rep: &str) -> Bytes {
    let req = pbx_request(n, Method::Refer, 20, our_tag, "z9hG4bKrefer");
    let text = String::from_utf8_lossy(&req).replace(
        "Content-Length: 0\r\n",
        &format!("Refer-To: <sip:200@10.9.9.9?Replaces={rep}>\r\nContent-Length: 0\r\n"),
    );
    Bytes::from(text)
}

/// `Replaces` (escaped) naming call `n`'s PBX dialog, tags as RFC 3891 §3.
fn names(n: u32, our_tag: &str) -> String {
    format!("a-call-{n}%4010.9.9.9%3Bto-tag%3D{our_tag}%3Bfrom-tag%3Datag")
}

fn notify_bodies(out: &[(SocketAddr, Message)], dest: &str) -> Vec<String> {
    out.iter()
        .filter(|(d, m)| *d == addr(dest) && m.method() == Some(&Method::Notify))
        .map(|(_, m)| body(m))
        .collect()
}

fn on_dialog(
    out: &[(SocketAddr, Message)],
    dest: &str,
    method: Method,
    inv: &Message,
) -> Option<Message> {
    out.iter()
        .find(|(d, m)| {
            *d == addr(dest)
                && m.method() == Some(&method)
                && m.call_id().ok() == inv.call_id().ok()
        })
        .map(|(_, m)| m.clone())
}

#[test]
fn attended_transfer_bridges_the_far_parties_and_ends_both_pbx_legs() {
    let mut h = H::new();
    let (inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (inv2, tag2) = answered_n(&mut h, A, 2, "12125550199");
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 2);

    let out = h.feed(A, refer_replaces(1, &tag1, &names(2, &tag2)));
    assert_eq!(status_to(&out, A), vec![202]);
    assert_eq!(notify_bodies(&out, A), vec!["SIP/2.0 100 Trying\r\n"]);
    let fetch = on_dialog(&out, B1, Method::Invite, &inv1).expect("re-INVITE to A");
    assert_eq!(body(&fetch), "", "offerless: A makes a fresh offer");
    assert!(on_dialog(&out, B1, Method::Invite, &inv2).is_none());

    let ok_a = b_response(&fetch, 200, FRESH_A);
    let out = h.feed(B1, ok_a.clone());
    let to_c = on_dialog(&out, B1, Method::Invite, &inv2).expect("re-INVITE to C");
    let again = h.feed(B1, ok_a.clone());
    assert!(again.is_empty(), "A's 2xx again: no ACK before C's answer");
    assert_eq!(body(&to_c), FRESH_A, "C gets A's offer");
    assert_eq!(to_c.to().unwrap().tag(), Some("btag"));
    assert!(
        on_dialog(&out, B1, Method::Ack, &inv1).is_none(),
        "A's ACK waits for C's answer"
    );
    assert_eq!(notify_bodies(&out, A), vec!["SIP/2.0 200 OK\r\n"]);
    let bye2 = request_to(&out, A, Method::Bye).expect("call 2's PBX leg BYEd");
    assert_eq!(bye2.call_id().unwrap(), b"a-call-2@10.9.9.9");
    let notify = out
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Notify))
        .unwrap()
        .1
        .clone();
    let out = h.feed(A, ResponseBuilder::new(&notify, StatusCode::OK).build());
    let bye1 = request_to(&out, A, Method::Bye).expect("call 1's PBX leg BYEd");
    assert_eq!(bye1.call_id().unwrap(), b"a-call-1@10.9.9.9");
    assert!(request_to(&out, B1, Method::Bye).is_none(), "not A or C");

    let out = h.feed(B1, b_response(&to_c, 200, SDP_C));
    assert!(
        on_dialog(&out, B1, Method::Ack, &inv2).is_some(),
        "C's 2xx ACKed"
    );
    let ack_a = on_dialog(&out, B1, Method::Ack, &inv1).expect("A's 2xx ACKed");
    assert_eq!(body(&ack_a), SDP_C, "with C's answer");
    assert_eq!(ack_a.cseq().unwrap().seq, fetch.cseq().unwrap().seq);
    let out = h.feed(B1, ok_a);
    let again = on_dialog(&out, B1, Method::Ack, &inv1).expect("A's 2xx again: ACKed again");
    assert_eq!(text(&again), text(&ack_a));

    // Calls 1 and 2 ended at the bridge; the bridged call holds one channel.
    let got = cdrs(&mut h);
    let ids: Vec<&str> = got.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{got:#?}");
    assert!(ids.contains(&"a-call-1@10.9.9.9") && ids.contains(&"a-call-2@10.9.9.9"));
    assert!(got.iter().all(|c| c.sip_code == 200));
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);
    let calls = h.ep.b2bua().calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].state, "answered");
    assert_eq!(
        (calls[0].from.as_str(), calls[0].to.as_str()),
        ("12125551234", "12125550199")
    );
    assert!(!calls[0].call_id.contains("10.9.9.9"), "its own Call-ID");
    let bridged = calls[0].call_id.clone();

    // A hangs up: C gets the BYE; the bridged call's record.
    let out = h.feed(B1, b_request(&inv1, Method::Bye, 9, "z9hG4bKb-bye"));
    assert_eq!(status_to(&out, B1), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("BYE to C");
    assert_eq!(bye.call_id().unwrap(), inv2.call_id().unwrap());
    let got = cdrs(&mut h);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].call_id, bridged);
    assert_eq!(
        (got[0].from.as_str(), got[0].to.as_str()),
        ("12125551234", "12125550199")
    );
    assert_eq!(got[0].sip_trunk, "pbx");
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
}

#[test]
fn replaces_naming_no_dialog_or_a_carrier_dialog_is_notified_and_both_calls_go_on() {
    let mut h = H::new();
    let (_inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (inv2, tag2) = answered_n(&mut h, A, 2, "12125550199");
    let carrier = {
        let from = inv2.from().unwrap();
        format!(
            "{}%3Bto-tag%3D{}%3Bfrom-tag%3Dbtag",
            String::from_utf8_lossy(inv2.call_id().unwrap()).replace('@', "%40"),
            from.tag().unwrap()
        )
    };
    let cases = [
        (names(9, &tag2), "481"),
        (
            format!("a-call-2%4010.9.9.9%3Bto-tag%3D{tag2}%3Bfrom-tag%3Dwrong"),
            "481",
        ),
        (carrier, "403"),
        (names(1, &tag1), "403"),
    ];
    for (i, (rep, status)) in cases.iter().enumerate() {
        let cseq = 20 + u32::try_from(i).unwrap();
        let req = String::from_utf8_lossy(&refer_replaces(1, &tag1, rep))
            .replace("CSeq: 20 REFER", &format!("CSeq: {cseq} REFER"))
            .replace("-1-20", &format!("-1-{cseq}"));
        let out = h.feed(A, Bytes::from(req));
        assert_eq!(status_to(&out, A), vec![202], "{rep}");
        let n = notify_bodies(&out, A);
        assert_eq!(n.len(), 2, "{rep}");
        assert!(
            n[1].starts_with(&format!("SIP/2.0 {status}")),
            "{rep}: {n:?}"
        );
        assert!(
            request_to(&out, B1, Method::Invite).is_none(),
            "no re-INVITE"
        );
        assert!(request_to(&out, A, Method::Bye).is_none());
    }
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 2, "both calls go on");
    let out = h.feed(A, pbx_request(2, Method::Bye, 30, &tag2, "z9hG4bKbye"));
    assert_eq!(status_to(&out, A), vec![200]);
    let bye = request_to(&out, B1, Method::Bye).expect("relayed as before");
    assert_eq!(bye.call_id().unwrap(), inv2.call_id().unwrap());
}

#[test]
fn replaces_naming_another_trunks_call_is_notified_403() {
    const PBX9: &str = "127.0.0.9:5071";
    let mut h = H::with(|c| {
        c.admission = admission(&format!(
            "{PBX_TRUNK}[[trunk]]\nid = 2\nname = \"other\"\nhost_request = \"127.0.0.9\"\n"
        ));
    });
    let (_inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (_inv2, tag2) = answered_n(&mut h, PBX9, 2, "12125550199");
    let out = h.feed(A, refer_replaces(1, &tag1, &names(2, &tag2)));
    assert_eq!(status_to(&out, A), vec![202]);
    assert_eq!(
        notify_bodies(&out, A).last().map(String::as_str),
        Some("SIP/2.0 403 Forbidden\r\n")
    );
    assert!(
        out.iter().all(|(d, _)| *d == addr(A)),
        "nothing to the others"
    );
    assert_eq!(h.ep.b2bua().calls_of_trunk(2), 1);
}

#[test]
fn a_far_party_refusing_the_fresh_offer_is_notified_and_both_calls_go_on() {
    let mut h = H::new();
    let (inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (inv2, tag2) = answered_n(&mut h, A, 2, "12125550199");
    let out = h.feed(A, refer_replaces(1, &tag1, &names(2, &tag2)));
    let fetch = on_dialog(&out, B1, Method::Invite, &inv1).unwrap();
    let out = h.feed(B1, b_response(&fetch, 488, ""));
    assert_eq!(
        notify_bodies(&out, A),
        vec!["SIP/2.0 488 Not Acceptable Here\r\n"]
    );
    assert!(on_dialog(&out, B1, Method::Invite, &inv2).is_none());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 2);
    // A second attempt may follow, and this time C has hung up meanwhile.
    let req = String::from_utf8_lossy(&refer_replaces(1, &tag1, &names(2, &tag2)))
        .replace("CSeq: 20 REFER", "CSeq: 21 REFER")
        .replace("-1-20", "-1-21");
    let out = h.feed(A, Bytes::from(req));
    let fetch = on_dialog(&out, B1, Method::Invite, &inv1).expect("second fresh offer asked");
    h.feed(B1, b_request(&inv2, Method::Bye, 9, "z9hG4bKc-bye"));
    let out = h.feed(B1, b_response(&fetch, 200, FRESH_A));
    let ack = on_dialog(&out, B1, Method::Ack, &inv1).expect("A's offer answered");
    assert_eq!(
        body(&ack),
        SDP,
        "with the PBX's SDP: A's media is unchanged"
    );
    assert_eq!(
        notify_bodies(&out, A),
        vec!["SIP/2.0 481 Call/Transaction Does Not Exist\r\n"]
    );
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1, "call 1 goes on");
}

#[test]
fn an_invite_with_replaces_is_refused_403_for_our_dialog_481_otherwise() {
    let mut h = H::new();
    let (_inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let ours = format!("a-call-1@10.9.9.9;to-tag={tag1};from-tag=atag");
    let out = h.feed(A, a_invite_n(5, "12125550199", &[("Replaces", &ours)]));
    assert_eq!(status_to(&out, A), vec![403]);
    let out = h.feed(
        A,
        a_invite_n(6, "12125550199", &[("Replaces", "x@h;to-tag=1;from-tag=2")]),
    );
    assert_eq!(status_to(&out, A), vec![481]);
    let out = h.feed(
        A,
        a_invite_n(7, "12125550199", &[("Replaces", "x@h;to-tag=1")]),
    );
    assert_eq!(status_to(&out, A), vec![400]);
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1);
}

#[test]
fn a_did_call_and_a_placed_call_of_one_trunk_are_joined() {
    let mut h = did_harness(
        "[[did]]\nnumber = \"12565378257\"\ndestinations = [{ transport = 5, destination = \"36465\" }]\n",
    );
    // Call 1: the carrier's caller reaches the PBX on a DID.
    let out = h.feed(CARRIER, a_invite_n(1, "+12565378257", &[]));
    let inv1 = request_to(&out, PBX2, Method::Invite).unwrap();
    let out = h.feed(PBX2, b_response(&inv1, 200, SDP));
    let ok = request_ok(&out, CARRIER);
    let tag1 = ok.to().unwrap().tag().unwrap().to_owned();
    h.feed(
        CARRIER,
        pbx_request(1, Method::Ack, 10, &tag1, "z9hG4bKc-ack"),
    );
    // Call 2: the PBX consults an outside number.
    let (inv2, tag2) = answered_via(&mut h, PBX2, CARRIER, 2, "12125550199");
    assert_eq!(h.ep.b2bua().calls_of_trunk(2), 1);
    assert_eq!(h.ep.b2bua().calls_of_did("12565378257"), 1);

    let refer = String::from_utf8_lossy(&b_request(&inv1, Method::Refer, 2, "z9hG4bKp-refer"))
        .replace(
            "Content-Length: 0\r\n",
            &format!(
                "Refer-To: <sip:x@127.0.0.8?Replaces={}>\r\nContent-Length: 0\r\n",
                names(2, &tag2)
            ),
        );
    let out = h.feed(PBX2, Bytes::from(refer));
    assert_eq!(status_to(&out, PBX2), vec![202]);
    let fetch = request_to(&out, CARRIER, Method::Invite).expect("re-INVITE to the caller");
    assert_eq!(fetch.call_id().unwrap(), b"a-call-1@10.9.9.9");
    assert_eq!(body(&fetch), "");
    let out = h.feed(CARRIER, b_response(&fetch, 200, FRESH_A));
    let to_c = on_dialog(&out, CARRIER, Method::Invite, &inv2).expect("re-INVITE to C");
    assert_eq!(body(&to_c), FRESH_A);
    assert_eq!(
        notify_bodies(&out, PBX2).last().map(String::as_str),
        Some("SIP/2.0 200 OK\r\n")
    );
    let bye = request_to(&out, PBX2, Method::Bye).expect("call 2's PBX leg BYEd");
    assert_eq!(bye.call_id().unwrap(), b"a-call-2@10.9.9.9");
    let notify = out
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Notify))
        .unwrap()
        .1
        .clone();
    let out = h.feed(PBX2, ResponseBuilder::new(&notify, StatusCode::OK).build());
    let bye = request_to(&out, PBX2, Method::Bye).expect("call 1's PBX leg BYEd");
    assert_eq!(bye.call_id().unwrap(), inv1.call_id().unwrap());
    // The bridged call holds call 2's channel (the trunk's); the DID's is free.
    assert_eq!(h.ep.b2bua().calls_of_trunk(2), 1);
    assert_eq!(h.ep.b2bua().calls_of_did("12565378257"), 0);
    let calls = h.ep.b2bua().calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].to, "12125550199");
    assert_eq!(calls[0].trunk, "36465");
}

/// The 200 sent to `dest`.
fn request_ok(out: &[(SocketAddr, Message)], dest: &str) -> Message {
    out.iter()
        .find(|(d, m)| *d == addr(dest) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .expect("a 200")
}

/// `answered_n` for a PBX at `from` whose calls go to the upstream `up`.
fn answered_via(h: &mut H, from: &str, up: &str, n: u32, number: &str) -> (Message, String) {
    let out = h.feed(from, a_invite_n(n, number, &[]));
    let inv = request_to(&out, up, Method::Invite).expect("B-leg INVITE");
    let out = h.feed(up, b_response(&inv, 200, SDP));
    let tag = request_ok(&out, from)
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    h.feed(from, pbx_request(n, Method::Ack, 10, &tag, "z9hG4bKack"));
    (inv, tag)
}

#[test]
fn a_pbx_that_hangs_up_both_legs_itself_leaves_the_bridged_call_up() {
    let mut h = H::new();
    let (inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (inv2, tag2) = answered_n(&mut h, A, 2, "12125550199");
    let out = h.feed(A, refer_replaces(1, &tag1, &names(2, &tag2)));
    let fetch = on_dialog(&out, B1, Method::Invite, &inv1).unwrap();
    let out = h.feed(B1, b_response(&fetch, 200, FRESH_A));
    let to_c = on_dialog(&out, B1, Method::Invite, &inv2).unwrap();
    // As Asterisk does after NOTIFY 200: BYE on both of its dialogs, before
    // answering the NOTIFY and crossing sipfront's BYE on call 2.
    for (n, tag) in [(1, &tag1), (2, &tag2)] {
        let out = h.feed(A, pbx_request(n, Method::Bye, 30, tag, "z9hG4bKpbx-bye"));
        assert_eq!(status_to(&out, A), vec![200], "call {n}");
        assert!(
            request_to(&out, B1, Method::Bye).is_none(),
            "call {n}: the far parties stay"
        );
    }
    let out = h.feed(B1, b_response(&to_c, 200, SDP_C));
    let ack_a = on_dialog(&out, B1, Method::Ack, &inv1).expect("A's 2xx ACKed");
    assert_eq!(body(&ack_a), SDP_C);
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1, "the bridged call");
    let calls = h.ep.b2bua().calls();
    assert_eq!((calls.len(), calls[0].state), (1, "answered"));
    let out = h.feed(B1, b_request(&inv2, Method::Bye, 9, "z9hG4bKc-bye"));
    let bye = request_to(&out, B1, Method::Bye).expect("C hangs up: A gets BYE");
    assert_eq!(bye.call_id().unwrap(), inv1.call_id().unwrap());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 0);
}

#[test]
fn the_referrer_hanging_up_before_the_fresh_offer_ends_call_1_only() {
    let mut h = H::new();
    let (inv1, tag1) = answered_n(&mut h, A, 1, "12125551234");
    let (inv2, tag2) = answered_n(&mut h, A, 2, "12125550199");
    let out = h.feed(A, refer_replaces(1, &tag1, &names(2, &tag2)));
    let fetch = on_dialog(&out, B1, Method::Invite, &inv1).unwrap();
    let out = h.feed(A, pbx_request(1, Method::Bye, 30, &tag1, "z9hG4bKpbx-bye"));
    assert_eq!(status_to(&out, A), vec![200]);
    assert!(on_dialog(&out, B1, Method::Bye, &inv1).is_some(), "A BYEd");
    let out = h.feed(B1, b_response(&fetch, 200, FRESH_A));
    let ack = on_dialog(&out, B1, Method::Ack, &inv1).expect("the late 2xx ACKed");
    assert_eq!(body(&ack), SDP, "with the SDP A had");
    assert!(
        on_dialog(&out, B1, Method::Invite, &inv2).is_none(),
        "no join"
    );
    assert!(notify_bodies(&out, A).is_empty());
    assert_eq!(h.ep.b2bua().calls_of_trunk(1), 1, "call 2 goes on");
}
