//! Parser micro-benchmark: our zero-copy parser vs rsip (the test oracle) on a
//! ~1 KB INVITE with SDP. Both sides also read the top Via branch, Call-ID,
//! CSeq and From tag, so lazy parsing is not free-riding.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use sipfront::sip::Message;

include!("invite.in");

fn ours(buf: &Bytes) -> usize {
    let m = Message::parse(buf.clone()).expect("parses");
    // The hot path (transaction matching, dialog lookup) uses the cached
    // accessors `top_branch()` / `from_tag()`; they return exactly what
    // `top_via()?.branch()` / `from()?.tag()` return, without re-parsing.
    let branch = m.top_branch().map_or(0, str::len);
    let cid = m.call_id().expect("call-id").len();
    let cseq = m.cseq().expect("cseq").seq as usize;
    let tag = m.from_tag().map_or(0, str::len);
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
