//! Instruction-count harness for the parser (run under
//! `valgrind --tool=callgrind`): parses the bench INVITE `N` times with ours
//! (`ours`) or rsip (`rsip`) and reads the same fields as `benches/parse.rs`.
//!
//! `cargo build --release --example parse_count`
//! `valgrind --tool=callgrind target/release/examples/parse_count ours 1000`

use bytes::Bytes;
use rsip::prelude::*;
use sipfront::sip::Message;
use std::hint::black_box;

include!("../benches/invite.in");

#[inline(never)]
fn ours(buf: &Bytes) -> usize {
    let Ok(m) = Message::parse(buf.clone()) else {
        return 0;
    };
    let branch = m.top_branch().map_or(0, str::len);
    let cid = m.call_id().map_or(0, <[u8]>::len);
    let cseq = m.cseq().map_or(0, |c| c.seq as usize);
    let tag = m.from_tag().map_or(0, str::len);
    branch + cid + cseq + tag
}

#[inline(never)]
fn theirs(buf: &Bytes) -> usize {
    let Ok(m) = rsip::SipMessage::try_from(buf.clone()) else {
        return 0;
    };
    let branch = m
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()))
        .unwrap_or(0);
    let cid = m.call_id_header().map_or(0, |c| c.value().len());
    let cseq = m
        .cseq_header()
        .ok()
        .and_then(|c| c.seq().ok())
        .map_or(0, |s| s as usize);
    let tag = m
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map_or(0, |t| t.to_string().len());
    branch + cid + cseq + tag
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "ours".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let buf = Bytes::from_static(INVITE.as_bytes());
    let f: fn(&Bytes) -> usize = if which == "rsip" { theirs } else { ours };
    let mut acc = 0;
    for _ in 0..n {
        acc += f(black_box(&buf));
    }
    println!("{which} x{n}: {acc}");
}
