//! Media anchoring (SPEC §8.4) on the fake clock: a relayed call's SDP
//! waits for the relay (an output) and goes on with its answer (an input);
//! no answer in time is `503`; however the call ends, its session is
//! deleted once.

use super::*;
use crate::b2bua::media::{MediaAnswer, MediaCommand, MediaError, MediaRequest, MediaResult};

const RELAYED: &str = "v=0\r\no=- 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

/// A harness whose trunk says `media = "relay"`.
fn relayed() -> H {
    H::with(|c| {
        let text = format!(
            "[rates]\nfile = \"config/rates.csv\"\n[media]\nrtpengine = [\"127.0.0.1:2223\"]\n\
             {PBX_TRUNK}media = \"relay\"\n"
        );
        let cfg = Config::parse(&text, ConfigSource::Embedded).unwrap();
        c.admission = Arc::new(Admission::new(&cfg, [7; 32]));
    })
}

fn media(h: &mut H) -> Vec<MediaRequest> {
    std::iter::from_fn(|| h.ep.poll_media()).collect()
}

fn answer(h: &mut H, req: &MediaRequest, sdp: &str) -> Vec<(SocketAddr, Message)> {
    let result = MediaResult {
        id: req.id,
        outcome: Ok(MediaAnswer {
            sdp: Bytes::copy_from_slice(sdp.as_bytes()),
            relay: "127.0.0.1:2223".into(),
        }),
    };
    h.ep.handle_media(result, h.now);
    h.take()
}

#[test]
fn a_relayed_call_offers_and_answers_through_the_relay_and_deletes_at_bye() {
    let mut h = relayed();
    let out = h.feed(A, a_invite(SDP));
    assert_eq!(status_to(&out, A), vec![100]);
    assert!(
        request_to(&out, B1, Method::Invite).is_none(),
        "waits for the relay"
    );
    let reqs = media(&mut h);
    assert_eq!(reqs.len(), 1);
    let offer = &reqs[0];
    assert_eq!(offer.command, MediaCommand::Offer);
    assert_eq!(offer.call_id, "a-call@10.9.9.9");
    assert_eq!(offer.from_tag, "atag");
    assert_eq!(offer.to_tag, None);
    assert_eq!(&offer.sdp[..], SDP.as_bytes());
    assert_eq!(
        offer.nat_source,
        Some(addr(A).ip()),
        "a trunk may sit behind NAT"
    );
    assert!(offer.new_session);
    let out = answer(&mut h, offer, RELAYED);
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE after the offer");
    assert_eq!(&inv.body()[..], RELAYED.as_bytes());
    // Early media: the 183's SDP is an answer; it reaches A rewritten.
    h.feed(B1, b_response(&inv, 183, SDP));
    let reqs = media(&mut h);
    let early = &reqs[0];
    assert_eq!(early.command, MediaCommand::Answer);
    assert_eq!(early.from_tag, "atag");
    assert!(early.to_tag.as_deref().is_some_and(|t| t.starts_with("b-")));
    assert_eq!(early.nat_source, None, "the carrier's SDP is trusted");
    assert!(!early.new_session);
    let out = answer(&mut h, early, RELAYED);
    let p = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode(183)))
        .expect("183 to A");
    assert_eq!(&p.1.body()[..], RELAYED.as_bytes());
    // The 2xx's SDP is the final answer.
    h.feed(B1, b_response(&inv, 200, SDP));
    let reqs = media(&mut h);
    assert_eq!(reqs[0].command, MediaCommand::Answer);
    let out = answer(&mut h, &reqs[0], RELAYED);
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .map(|(_, m)| m.clone())
        .expect("200 to A");
    assert_eq!(&ok.body()[..], RELAYED.as_bytes());
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    h.feed(A, a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack"));
    assert_eq!(h.ep.calls()[0].relay.as_deref(), Some("127.0.0.1:2223"));
    // A re-INVITE from B is a new offer from the B side.
    let reinv = Message::parse(b_request(&inv, Method::Invite, 2, "z9hG4bKb-re")).unwrap();
    let reinv = reinv.with_body(SDP.as_bytes()).unwrap();
    h.feed(B1, reinv.to_bytes());
    let reqs = media(&mut h);
    assert_eq!(reqs[0].command, MediaCommand::Offer);
    assert_eq!(reqs[0].to_tag.as_deref(), Some("atag"));
    assert!(reqs[0].from_tag.starts_with("b-"));
    let out = answer(&mut h, &reqs[0], RELAYED);
    let a_re = request_to(&out, A, Method::Invite).expect("re-INVITE relayed to A");
    assert_eq!(&a_re.body()[..], RELAYED.as_bytes());
    // BYE: one delete.
    let out = h.feed(A, a_request(Method::Bye, 11, &tag, "z9hG4bKa-bye"));
    assert_eq!(status_to(&out, A), vec![200]);
    let reqs = media(&mut h);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].command, MediaCommand::Delete);
    assert_eq!(reqs[0].from_tag, "atag");
    h.advance(Duration::from_secs(40));
    assert!(media(&mut h).is_empty(), "deleted once");
}

#[test]
fn no_answer_from_the_relay_in_time_is_503_and_nothing_half_anchored() {
    let mut h = relayed();
    h.feed(A, a_invite(SDP));
    assert_eq!(media(&mut h).len(), 1);
    let out = h.advance(Duration::from_millis(1900));
    assert!(status_to(&out, A).is_empty(), "still waiting");
    let out = h.advance(Duration::from_millis(200));
    assert_eq!(status_to(&out, A), vec![503]);
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert!(media(&mut h).is_empty(), "no session to delete");
}

#[test]
fn a_refused_answer_ends_an_answered_b_leg_and_deletes_the_session() {
    let mut h = relayed();
    h.feed(A, a_invite(SDP));
    let offer = media(&mut h).remove(0);
    let out = answer(&mut h, &offer, RELAYED);
    let inv = request_to(&out, B1, Method::Invite).unwrap();
    h.feed(B1, b_response(&inv, 200, SDP));
    let req = media(&mut h).remove(0);
    h.ep.handle_media(
        MediaResult {
            id: req.id,
            outcome: Err(MediaError::Refused("error: no such call".into())),
        },
        h.now,
    );
    let out = h.take();
    assert_eq!(status_to(&out, A), vec![503]);
    assert!(request_to(&out, B1, Method::Ack).is_some(), "B's 2xx ACKed");
    assert!(request_to(&out, B1, Method::Bye).is_some(), "and BYEd");
    let reqs = media(&mut h);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].command, MediaCommand::Delete);
}

#[test]
fn cancel_while_the_offer_is_out_deletes_the_session_it_made() {
    let mut h = relayed();
    h.feed(A, a_invite(SDP));
    let offer = media(&mut h).remove(0);
    let cancel = a_cancel();
    let out = h.feed(A, cancel);
    let mut got = status_to(&out, A);
    got.sort_unstable();
    assert_eq!(got, vec![200, 487]);
    let out = answer(&mut h, &offer, RELAYED);
    assert!(
        request_to(&out, B1, Method::Invite).is_none(),
        "never sent on"
    );
    let reqs = media(&mut h);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].command, MediaCommand::Delete);
}

#[test]
fn a_passthrough_call_asks_nothing_and_keeps_its_sdp() {
    let mut h = H::new();
    let inv = start(&mut h, SDP);
    assert_eq!(&inv.body()[..], SDP.as_bytes());
    assert!(media(&mut h).is_empty());
}
