//! RFC 4028 session timers per leg, the dead-call reaper and RFC 3262
//! reliability per leg, on the fake clock (1,800 s intervals run in
//! microseconds).

use super::*;

/// A's INVITE with `extra` header lines (each ending in CRLF).
fn a_invite_with(extra: &str) -> Bytes {
    let text = String::from_utf8_lossy(&a_invite(SDP)).replace(
        "CSeq: 10 INVITE\r\n",
        &format!("CSeq: 10 INVITE\r\n{extra}"),
    );
    Bytes::from(text)
}

fn with_header(req: Bytes, after: &str, extra: &str) -> Bytes {
    let text = String::from_utf8_lossy(&req).replace(after, &format!("{after}{extra}"));
    Bytes::from(text)
}

fn header(m: &Message, name: HeaderName) -> Option<String> {
    m.header(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A call whose A-leg INVITE carries `extra`, answered by B with `b_extra`
/// headers in its 2xx; returns (B INVITE, A's To tag, A's 200).
fn answered_with(h: &mut H, extra: &str, b_extra: &[(&str, &str)]) -> (Message, String, Message) {
    let out = h.feed(A, a_invite_with(extra));
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    let mut r = ResponseBuilder::new(&inv, StatusCode::OK)
        .to_tag("btag")
        .header("Contact", "<sip:uas@127.0.0.3:5080>");
    for (n, v) in b_extra {
        r = r.header(n, v);
    }
    let out = h.feed(
        B1,
        r.body("application/sdp", Bytes::from_static(SDP.as_bytes()))
            .build(),
    );
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .expect("200 to A");
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    assert!(h
        .feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"))
        .is_empty());
    (inv, tag, ok)
}

#[test]
fn b_leg_invite_offers_our_own_timer_not_the_callers() {
    let mut h = H::new();
    let out = h.feed(
        A,
        a_invite_with(
            "Supported: timer, replaces\r\nSession-Expires: 600;refresher=uac\r\nMin-SE: 300\r\n",
        ),
    );
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    assert_eq!(
        header(&inv, HeaderName::SessionExpires).as_deref(),
        Some("1800")
    );
    assert_eq!(header(&inv, HeaderName::MinSe).as_deref(), Some("90"));
    assert_eq!(
        header(&inv, HeaderName::Supported).as_deref(),
        Some("100rel, timer"),
        "replaces is not claimed for the caller (b2bua/replaces.rs)"
    );
}

#[test]
fn session_expires_below_min_se_gets_422_with_min_se() {
    let mut h = H::new();
    let out = h.feed(A, a_invite_with("Session-Expires: 1\r\n"));
    assert_eq!(status_to(&out, A), vec![422]);
    let r = &out[0].1;
    assert_eq!(header(r, HeaderName::MinSe).as_deref(), Some("90"));
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(h.ep.b2bua().active_calls(), 0);
}

#[test]
fn caller_that_stops_refreshing_is_byed_on_both_legs_and_billed_to_then() {
    let mut h = H::new();
    let (_, _, ok) = answered_with(
        &mut h,
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        &[],
    );
    assert_eq!(
        header(&ok, HeaderName::SessionExpires).as_deref(),
        Some("120;refresher=uac")
    );
    assert!(text(&ok).contains("Require: timer"));
    cdrs(&mut h);
    // §10: expiry at 120 − min(32, 40) = 88 s.
    let out = h.advance(Duration::from_secs(87));
    assert!(request_to(&out, A, Method::Bye).is_none());
    let out = h.advance(Duration::from_secs(1));
    assert!(
        request_to(&out, A, Method::Bye).is_some(),
        "BYE to the caller"
    );
    assert!(request_to(&out, B1, Method::Bye).is_some(), "BYE upstream");
    assert_eq!(h.ep.b2bua().active_calls(), 0, "channel freed at once");
    let cdr = cdrs(&mut h);
    assert_eq!(cdr.len(), 1);
    assert_eq!(cdr[0].duration_s, 88, "billed to the real end");
}

#[test]
fn sdp_less_update_refreshes_only_its_own_leg_and_resets_the_interval() {
    let mut h = H::new();
    let (_, tag, _) = answered_with(
        &mut h,
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        &[],
    );
    h.advance(Duration::from_secs(60));
    let upd = with_header(
        a_request(Method::Update, 11, &tag, "z9hG4bKa-upd"),
        "CSeq: 11 UPDATE\r\n",
        "Supported: timer\r\nSession-Expires: 300;refresher=uac\r\n",
    );
    let out = h.feed(A, upd);
    assert_eq!(status_to(&out, A), vec![200], "absorbed");
    assert!(
        request_to(&out, B1, Method::Update).is_none(),
        "not relayed"
    );
    let r = &out[0].1;
    assert_eq!(
        header(r, HeaderName::SessionExpires).as_deref(),
        Some("300;refresher=uac"),
        "the new interval is taken"
    );
    // The old expiry (88 s) has passed unnoticed; the new one is 60 + 268.
    let out = h.advance(Duration::from_secs(267));
    assert!(request_to(&out, A, Method::Bye).is_none());
    let out = h.advance(Duration::from_secs(1));
    assert!(request_to(&out, A, Method::Bye).is_some());
}

#[test]
fn relayed_reinvite_refreshes_both_legs_with_their_own_values() {
    let mut h = H::new();
    let (inv, tag, _) = answered_with(
        &mut h,
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\n",
        &[("Session-Expires", "1800;refresher=uas")],
    );
    h.advance(Duration::from_secs(60));
    let re = with_header(
        a_request(Method::Invite, 11, &tag, "z9hG4bKa-re"),
        "CSeq: 11 INVITE\r\n",
        "Supported: timer\r\nSession-Expires: 120;refresher=uac\r\nContent-Type: application/sdp\r\n",
    );
    let re = Bytes::from(String::from_utf8_lossy(&re).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{SDP}", SDP.len()),
    ));
    let out = h.feed(A, re);
    let b_re = request_to(&out, B1, Method::Invite).expect("relayed");
    assert_eq!(
        header(&b_re, HeaderName::SessionExpires).as_deref(),
        Some("1800;refresher=uas"),
        "the B-leg's own interval and refresher"
    );
    let ok = ResponseBuilder::new(&b_re, StatusCode::OK)
        .header("Session-Expires", "1800;refresher=uas")
        .body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        .build();
    let out = h.feed(B1, ok);
    let a_ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .unwrap();
    assert_eq!(
        header(&a_ok, HeaderName::SessionExpires).as_deref(),
        Some("120;refresher=uac")
    );
    h.feed(A, a_request(Method::Ack, 11, &tag, "z9hG4bKa-ack2"));
    let out = h.advance(Duration::from_secs(87));
    assert!(
        request_to(&out, A, Method::Bye).is_none(),
        "A's timer was reset at 60 s"
    );
    let _ = inv;
}

#[test]
fn we_refresh_a_callee_that_made_us_refresher_with_update() {
    let mut h = H::new();
    let (_, _, _) = answered_with(
        &mut h,
        "",
        &[
            ("Session-Expires", "200;refresher=uac"),
            ("Allow", "INVITE, ACK, BYE, UPDATE"),
        ],
    );
    let out = h.advance(Duration::from_secs(100));
    let upd = request_to(&out, B1, Method::Update).expect("refresh at half the interval");
    assert!(upd.body().is_empty(), "UPDATE without SDP");
    assert_eq!(
        header(&upd, HeaderName::SessionExpires).as_deref(),
        Some("200;refresher=uac")
    );
    assert!(request_to(&out, A, Method::Update).is_none(), "per leg");
    let ok = ResponseBuilder::new(&upd, StatusCode::OK)
        .header("Session-Expires", "200;refresher=uac")
        .build();
    assert!(h.feed(B1, ok).iter().all(|(d, _)| *d != addr(A)));
    let out = h.advance(Duration::from_secs(100));
    assert!(request_to(&out, B1, Method::Update).is_some(), "and again");
}

#[test]
fn reaper_refreshes_a_call_without_timers_and_481_ends_it() {
    let mut h = H::new();
    let (inv, _, ok) = answered_with(&mut h, "", &[]);
    assert!(
        header(&ok, HeaderName::SessionExpires).is_none(),
        "caller knows no timers"
    );
    let out = h.advance(Duration::from_secs(1799));
    assert!(out.iter().all(|(_, m)| !m.is_request()));
    let out = h.advance(Duration::from_secs(1));
    let re_b = request_to(&out, B1, Method::Invite).expect("re-INVITE (no UPDATE in Allow)");
    assert_eq!(&re_b.body()[..], SDP.as_bytes(), "with the SDP B last got");
    assert!(header(&re_b, HeaderName::SessionExpires).is_none());
    let re_a = request_to(&out, A, Method::Invite).expect("A is probed too");
    assert_eq!(&re_a.body()[..], SDP.as_bytes());
    // A answers; B says the dialog is gone.
    h.feed(
        A,
        ResponseBuilder::new(&re_a, StatusCode::OK)
            .to_tag("atag")
            .build(),
    );
    let out = h.feed(B1, ResponseBuilder::new(&re_b, StatusCode(481)).build());
    assert!(
        request_to(&out, A, Method::Bye).is_some(),
        "BYE to the caller"
    );
    assert!(
        request_to(&out, B1, Method::Bye).is_none(),
        "none to the dead leg"
    );
    assert_eq!(h.ep.b2bua().active_calls(), 0);
    let _ = inv;
}

#[test]
fn unanswered_refresh_ends_the_call() {
    let mut h = H::with(|c| c.b2bua.session.expires = Duration::from_secs(100));
    answered_with(&mut h, "", &[]);
    let out = h.advance(Duration::from_secs(100));
    assert!(request_to(&out, B1, Method::Invite).is_some());
    // Nobody answers: Timer B (32 s) or the half interval, whichever first.
    let out = h.advance(Duration::from_secs(40));
    assert!(
        request_to(&out, B1, Method::Bye).is_some() || request_to(&out, A, Method::Bye).is_some()
    );
    assert_eq!(h.ep.b2bua().active_calls(), 0);
}

#[test]
fn disabled_timers_send_no_refresh() {
    let mut h = H::with(|c| c.b2bua.session.expires = Duration::ZERO);
    let (inv, _, _) = answered_with(&mut h, "", &[]);
    assert!(header(&inv, HeaderName::SessionExpires).is_none());
    let out = h.advance(Duration::from_secs(7200));
    assert!(out.iter().all(|(_, m)| m.method() != Some(&Method::Invite)));
}

// ---- RFC 3262 ----------------------------------------------------------

#[test]
fn caller_requiring_100rel_gets_our_reliable_183_retransmitted_until_prack() {
    let mut h = H::new();
    let out = h.feed(A, a_invite_with("Require: 100rel\r\n"));
    assert_eq!(status_to(&out, A), vec![100], "no 420");
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    assert!(
        header(&inv, HeaderName::Require).is_none(),
        "never required upstream"
    );
    let out = h.feed(B1, b_response(&inv, 183, SDP));
    let p = &out.iter().find(|(d, _)| *d == addr(A)).unwrap().1;
    assert_eq!(header(p, HeaderName::Require).as_deref(), Some("100rel"));
    let rseq = header(p, HeaderName::RSeq).expect("RSeq");
    let tag = p.to().unwrap().tag().unwrap().to_owned();
    let out = h.advance(Duration::from_millis(500));
    assert_eq!(status_to(&out, A), vec![183], "after T1");
    let out = h.advance(Duration::from_millis(999));
    assert!(status_to(&out, A).is_empty());
    let out = h.advance(Duration::from_millis(1));
    assert_eq!(status_to(&out, A), vec![183], "after 2·T1 more");
    // A second 18x waits for the PRACK of the first (§3).
    let out = h.feed(B1, b_response(&inv, 180, ""));
    assert!(status_to(&out, A).is_empty());
    let prack = with_header(
        a_request(Method::Prack, 11, &tag, "z9hG4bKa-prack"),
        "CSeq: 11 PRACK\r\n",
        &format!("RAck: {rseq} 10 INVITE\r\n"),
    );
    let out = h.feed(A, prack);
    assert!(
        request_to(&out, B1, Method::Prack).is_none(),
        "answered here"
    );
    let st = status_to(&out, A);
    assert!(st.contains(&200) && st.contains(&180), "{st:?}");
    let ringing = out
        .iter()
        .find(|(_, m)| m.status() == Some(StatusCode(180)))
        .unwrap();
    let next: u32 = header(&ringing.1, HeaderName::RSeq)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(next, rseq.parse::<u32>().unwrap() + 1);
    // A PRACK for nothing: 481.
    let stray = with_header(
        a_request(Method::Prack, 12, &tag, "z9hG4bKa-prack2"),
        "CSeq: 12 PRACK\r\n",
        "RAck: 999 10 INVITE\r\n",
    );
    assert_eq!(status_to(&h.feed(A, stray), A), vec![481]);
}

#[test]
fn upstream_reliable_183_to_a_caller_without_100rel_is_pracked_by_us() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let prov = ResponseBuilder::new(&inv, StatusCode(183))
        .to_tag("btag")
        .header("Contact", "<sip:uas@127.0.0.3:5080>")
        .header("Require", "100rel")
        .header("RSeq", "7")
        .build();
    let out = h.feed(B1, prov.clone());
    let prack = request_to(&out, B1, Method::Prack).expect("we PRACK");
    assert_eq!(
        header(&prack, HeaderName::RAck),
        Some(format!("7 {} INVITE", inv.cseq().unwrap().seq))
    );
    let p = &out.iter().find(|(d, _)| *d == addr(A)).unwrap().1;
    assert!(header(p, HeaderName::RSeq).is_none() && header(p, HeaderName::Require).is_none());
    // A retransmission of the same 183 is neither PRACKed nor relayed again.
    let out = h.feed(B1, prov);
    assert!(request_to(&out, B1, Method::Prack).is_none());
    assert!(status_to(&out, A).is_empty());
}

#[test]
fn upstream_422_is_retried_once_with_its_min_se() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    let too_small = ResponseBuilder::new(&inv, StatusCode(422))
        .to_tag("btag")
        .header("Min-SE", "3600")
        .build();
    let out = h.feed(B1, too_small);
    assert!(
        status_to(&out, A).is_empty(),
        "the caller sees nothing of it"
    );
    let again = request_to(&out, B1, Method::Invite).expect("retried on the same hop");
    assert_eq!(
        header(&again, HeaderName::SessionExpires).as_deref(),
        Some("3600")
    );
    assert_eq!(header(&again, HeaderName::MinSe).as_deref(), Some("3600"));
    assert_ne!(again.top_branch(), inv.top_branch());
    // A second 422 is not retried again: the caller gets the failure.
    let out = h.feed(
        B1,
        ResponseBuilder::new(&again, StatusCode(422))
            .to_tag("btag")
            .header("Min-SE", "7200")
            .build(),
    );
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(status_to(&out, A), vec![422]);
}

#[test]
fn upstream_2xx_waits_for_the_prack_of_our_reliable_183_with_sdp() {
    let mut h = H::new();
    let out = h.feed(A, a_invite_with("Require: 100rel\r\n"));
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    let out = h.feed(B1, b_response(&inv, 183, SDP));
    let p = &out.iter().find(|(d, _)| *d == addr(A)).unwrap().1;
    let rseq = header(p, HeaderName::RSeq).unwrap();
    let tag = p.to().unwrap().tag().unwrap().to_owned();
    // RFC 3262 §3: the 2xx may not overtake the unacknowledged 183 with SDP.
    let out = h.feed(B1, b_response(&inv, 200, SDP));
    assert!(status_to(&out, A).is_empty(), "held");
    let prack = with_header(
        a_request(Method::Prack, 11, &tag, "z9hG4bKa-prack"),
        "CSeq: 11 PRACK\r\n",
        &format!("RAck: {rseq} 10 INVITE\r\n"),
    );
    let out = h.feed(A, prack);
    assert_eq!(
        status_to(&out, A),
        vec![200, 200],
        "PRACK's 200, then the INVITE's"
    );
    assert!(request_to(&out, B1, Method::Ack).is_some());
}

#[test]
fn cancel_while_a_2xx_is_held_acks_and_byes_the_upstream() {
    let mut h = H::new();
    let out = h.feed(A, a_invite_with("Require: 100rel\r\n"));
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    h.feed(B1, b_response(&inv, 183, SDP));
    h.feed(B1, b_response(&inv, 200, SDP));
    let cancel = crate::sip::build::cancel_for(
        &Message::parse(a_invite_with("Require: 100rel\r\n")).unwrap(),
    );
    let out = h.feed(A, cancel);
    assert!(request_to(&out, B1, Method::Ack).is_some());
    assert!(request_to(&out, B1, Method::Bye).is_some());
    assert!(status_to(&out, A).contains(&487));
}
