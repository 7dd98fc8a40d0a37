//! Issue 17 "Must show": the shell's dispatch ([`of_message`], a pure
//! function of the raw bytes) sends every request and response of a call,
//! on both legs, to the core shard that owns the call: the INVITE, 100,
//! 180, 200 and ACK, re-INVITEs from either side with their answers and
//! ACKs, BYE and its 200, and CANCEL with its 200 and 487. Four shards
//! share one `SharedState`; a call is run on each of them, and every
//! message sipfront sends must come back to the shard that sent it.

use super::*;
use crate::endpoint::shard::of_message;

const SHARDS: usize = 4;

/// A node of [`SHARDS`] core shards.
struct Node {
    shards: Vec<H>,
}

impl Node {
    fn new() -> Node {
        let mark = |i: usize| {
            move |c: &mut EndpointConfig| {
                c.shard = i;
                c.shards = SHARDS;
                c.seed = [u8::try_from(i).unwrap() + 1; 32];
            }
        };
        let first = H::with(mark(0));
        let mut shards: Vec<H> = (1..SHARDS).map(|i| first.shard(mark(i))).collect();
        shards.insert(0, first);
        Node { shards }
    }

    /// Dispatches `bytes` as the shell does, checks it reaches `owner`,
    /// and checks everything that shard sends in turn maps back to it.
    fn feed(&mut self, owner: usize, from: &str, bytes: Bytes) -> Vec<(SocketAddr, Message)> {
        let what = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
        assert_eq!(
            of_message(&bytes, SHARDS),
            owner,
            "{what:?} from {from} dispatched away from its call's shard"
        );
        let out = self.shards[owner].feed(from, bytes);
        for (dest, m) in &out {
            assert_eq!(
                of_message(m.as_bytes(), SHARDS),
                owner,
                "what shard {owner} sent to {dest} would be answered elsewhere:\n{}",
                text(m)
            );
        }
        out
    }
}

/// `bytes` with the A-leg Call-ID of the helpers replaced by `id`.
fn with_call_id(bytes: Bytes, id: &str) -> Bytes {
    Bytes::from(String::from_utf8_lossy(&bytes).replace("a-call@10.9.9.9", id))
}

/// An A-leg Call-ID that hashes to `shard`.
fn call_id_on(shard: usize, salt: &str) -> String {
    (0..)
        .map(|n| format!("{salt}{n}@10.9.9.9"))
        .find(|id| {
            of_message(
                format!("BYE x SIP/2.0\r\ni: {id}\r\n\r\n").as_bytes(),
                SHARDS,
            ) == shard
        })
        .unwrap()
}

fn answered_call(node: &mut Node, o: usize) {
    let id = call_id_on(o, "a-");
    let a = |b: Bytes| with_call_id(b, &id);
    let out = node.feed(o, A, a(a_invite(SDP)));
    assert_eq!(status_to(&out, A), vec![100]);
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    for status in [100, 180] {
        node.feed(o, B1, b_response(&inv, status, ""));
    }
    let out = node.feed(o, B1, b_response(&inv, 200, SDP));
    let ok = out
        .iter()
        .find(|(d, m)| *d == addr(A) && m.status() == Some(StatusCode::OK))
        .expect("200 relayed to A")
        .1
        .clone();
    assert!(request_to(&out, B1, Method::Ack).is_some());
    let tag = ok.to().unwrap().tag().unwrap().to_owned();
    node.feed(o, A, a(a_request(Method::Ack, 10, &tag, "z9hG4bKa-ack")));

    // re-INVITE from A.
    let out = node.feed(o, A, a(a_request(Method::Invite, 20, &tag, "z9hG4bKa-re")));
    let b_re = request_to(&out, B1, Method::Invite).expect("re-INVITE relayed to B");
    // Offerless: B's 200 offers, A's ACK answers and is relayed.
    node.feed(o, B1, b_response(&b_re, 200, SDP));
    let out = node.feed(o, A, a(a_request(Method::Ack, 20, &tag, "z9hG4bKa-re-ack")));
    assert!(request_to(&out, B1, Method::Ack).is_some());

    // re-INVITE from B.
    let out = node.feed(o, B1, b_request(&inv, Method::Invite, 7, "z9hG4bKb-re"));
    let a_re = request_to(&out, A, Method::Invite).expect("re-INVITE relayed to A");
    let resp = ResponseBuilder::new(&a_re, StatusCode::OK)
        .header("Contact", "<sip:alice@10.9.9.9:5071>")
        .build();
    assert_eq!(status_to(&node.feed(o, A, resp), B1), vec![200]);
    node.feed(o, B1, b_request(&inv, Method::Ack, 7, "z9hG4bKb-re-ack"));

    // BYE from B, answered by A.
    let out = node.feed(o, B1, b_request(&inv, Method::Bye, 8, "z9hG4bKb-bye"));
    assert_eq!(status_to(&out, B1), vec![200]);
    let bye = request_to(&out, A, Method::Bye).expect("BYE relayed to A");
    node.feed(o, A, ResponseBuilder::new(&bye, StatusCode::OK).build());
    assert_eq!(node.shards[o].ep.b2bua().active_calls(), 0);
}

fn cancelled_call(node: &mut Node, o: usize) {
    let id = call_id_on(o, "c-");
    // Its own branch: the answered call's INVITE transaction is still there.
    let invite = String::from_utf8_lossy(&with_call_id(a_invite(SDP), &id))
        .replace("z9hG4bKa-inv", "z9hG4bKc-inv");
    let out = node.feed(o, A, Bytes::from(invite));
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    node.feed(o, B1, b_response(&inv, 180, ""));
    let cancel = RequestBuilder::new(Method::Cancel, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKc-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id(&id)
        .cseq(10)
        .build();
    let out = node.feed(o, A, cancel);
    let mut got = status_to(&out, A);
    got.sort_unstable();
    assert_eq!(got, vec![200, 487]);
    let b_cancel = request_to(&out, B1, Method::Cancel).expect("CANCEL on the B-leg");
    node.feed(
        o,
        B1,
        ResponseBuilder::new(&b_cancel, StatusCode::OK).build(),
    );
    let out = node.feed(o, B1, b_response(&inv, 487, ""));
    assert!(request_to(&out, B1, Method::Ack).is_some(), "487 ACKed");
    // The ACK for the 487 A got.
    let ack = RequestBuilder::new(Method::Ack, "sip:12125551234@sipfront.local")
        .via(Transport::Udp, "10.9.9.9:5071", "z9hG4bKc-inv", true)
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some("atag"))
        .to("<sip:12125551234@sipfront.local>", Some("x"))
        .call_id(&id)
        .cseq(10)
        .build();
    node.feed(o, A, ack);
}

#[test]
fn every_message_of_a_call_on_both_legs_reaches_the_shard_that_owns_it() {
    let mut node = Node::new();
    for o in 0..SHARDS {
        answered_call(&mut node, o);
        cancelled_call(&mut node, o);
    }
    for (i, s) in node.shards.iter().enumerate() {
        assert_eq!(s.ep.b2bua().stats().calls, 2, "shard {i} ran its two calls");
        assert_eq!(s.ep.b2bua().active_calls(), 0, "shard {i}");
    }
}
