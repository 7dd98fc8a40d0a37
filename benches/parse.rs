//! Parser micro-benchmark: our zero-copy parser vs rsip (the test oracle) on a
//! ~1 KB INVITE with SDP. Both sides also read the top Via branch, Call-ID,
//! CSeq and From tag, so lazy parsing is not free-riding.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use sipfront::sip::Message;

const INVITE: &str = "INVITE sip:+12125550101@gw1.carrier.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK-524287-1---d8754z-;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@203.0.113.10:5060;transport=udp>\r\n\
To: <sip:+12125550101@gw1.carrier.example.net>\r\n\
From: \"Alice Example\" <sip:alice@pbx.customer.example.com>;tag=a73kszlfl\r\n\
Call-ID: 3848276298220188511@203.0.113.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: ExamplePBX 16.2.1\r\n\
Session-Expires: 1800;refresher=uac\r\n\
P-Asserted-Identity: \"Alice Example\" <sip:+13125550100@pbx.customer.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 318\r\n\
\r\n\
v=0\r\n\
o=- 3848276298 3848276298 IN IP4 203.0.113.10\r\n\
s=ExamplePBX\r\n\
c=IN IP4 203.0.113.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 9 18 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn ours(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("parses");
    let via = m.top_via().expect("via");
    let branch = via.branch().map_or(0, str::len);
    let cid = m.call_id().expect("call-id").len();
    let cseq = m.cseq().expect("cseq").seq as usize;
    let tag = m.from().expect("from").tag().map_or(0, str::len);
    branch + cid + cseq + tag
}

fn theirs(buf: &Bytes) -> usize {
    let m = rsip::SipMessage::try_from(buf.clone()).expect("rsip parses");
    let via = m.via_header().expect("via").typed().expect("typed via");
    let branch = via.branch().map_or(0, |b| b.to_string().len());
    let cid = m.call_id_header().expect("call-id").value().len();
    let cseq = m.cseq_header().expect("cseq").seq().expect("seq") as usize;
    let tag = m
        .from_header()
        .expect("from")
        .tag()
        .expect("tag")
        .map_or(0, |t| t.to_string().len());
    branch + cid + cseq + tag
}

fn bench(c: &mut Criterion) {
    let body_len = INVITE.split("\r\n\r\n").nth(1).map_or(0, str::len);
    assert_eq!(body_len, 318, "Content-Length of the bench message");
    let buf = Bytes::from_static(INVITE.as_bytes());
    assert_eq!(ours(&buf), theirs(&buf));
    let mut g = c.benchmark_group("parse_invite_1k");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sipfront", |b| b.iter(|| ours(black_box(&buf))));
    g.bench_function("rsip", |b| b.iter(|| theirs(black_box(&buf))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
