//! Property tests: no input makes `Message::parse`, `framing::check` or any
//! accessor panic. Three generators: arbitrary bytes, SIP-flavoured token
//! soup, and corpus messages mutated byte-wise and line-wise.

mod common;

use bytes::Bytes;
use common::{corpus, exercise};
use proptest::prelude::*;
use sipfront::sip::framing::{self, Frame};
use sipfront::sip::Message;

/// Fragments that steer random input into the parser's interesting paths.
const PIECES: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "FOO",
    "SIP/2.0",
    "SIP/3.0",
    "sip/2.0",
    " ",
    "  ",
    "\t",
    "\r\n",
    "\n",
    "\r\n\r\n",
    "\r\n ",
    ":",
    ";",
    ",",
    "=",
    "\"",
    "\\",
    "<",
    ">",
    "[",
    "]",
    "@",
    "?",
    "/",
    "sip:",
    "sips:",
    "tel:",
    "im:",
    "alice",
    "example.com",
    "192.0.2.1",
    "::1",
    "2001:db8::1",
    "5060",
    "99999",
    "0",
    "-1",
    "4294967296",
    "Via",
    "v",
    "From",
    "f",
    "To",
    "t",
    "Call-ID",
    "i",
    "CSeq",
    "Contact",
    "m",
    "*",
    "Max-Forwards",
    "Content-Length",
    "l",
    "Route",
    "Record-Route",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Digest",
    "username=",
    "nc=",
    "0000000a",
    "qop=auth",
    "branch=",
    "z9hG4bK",
    "rport",
    "received=",
    "tag=",
    "expires=",
    "q=0.5",
    "+sip.instance=",
    "lr",
    "Expires",
    "200",
    "OK",
    "\u{0}",
    "\u{7f}",
    "é",
    "\u{FFFD}",
];

fn soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(PIECES), 0..120)
        .prop_map(|v| v.concat().into_bytes())
}

/// A well-formed skeleton that the soup is spliced into, so generated input
/// gets past the start line and mandatory-header checks.
fn framed_soup() -> impl Strategy<Value = Vec<u8>> {
    (soup(), soup(), any::<bool>()).prop_map(|(a, b, req)| {
        let start = if req { "INVITE sip:a@b SIP/2.0\r\n" } else { "SIP/2.0 200 OK\r\n" };
        let mut out = start.as_bytes().to_vec();
        out.extend_from_slice(b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n");
        out.extend_from_slice(&a);
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&b);
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    DupLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), prop::sample::select(PIECES))
            .prop_map(|(p, s)| Mutation::Insert(p, s.as_bytes().to_vec())),
        (any::<usize>(), 0usize..40).prop_map(|(p, n)| Mutation::Delete(p, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DupLine),
    ]
}

fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(p, b) => {
                if let Some(x) = v.get_mut(p % len) {
                    *x = *b;
                }
            }
            Mutation::Insert(p, s) => {
                let at = (p % len).min(v.len());
                v.splice(at..at, s.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let at = (p % len).min(v.len());
                let end = (at + n).min(v.len());
                v.drain(at..end);
            }
            Mutation::Truncate(p) => v.truncate(p % len),
            Mutation::DupLine(p) => {
                let lines: Vec<Vec<u8>> = v
                    .split_inclusive(|&b| b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                if let Some(l) = lines.get(p % lines.len().max(1)).cloned() {
                    let at = (p % len).min(v.len());
                    v.splice(at..at, l);
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn token_soup_never_panics(bytes in soup()) {
        exercise(&bytes);
    }

    #[test]
    fn framed_soup_never_panics(bytes in framed_soup()) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_corpus_never_panics(idx in any::<prop::sample::Index>(), muts in prop::collection::vec(mutation(), 1..6)) {
        let files = corpus();
        let (_, msg) = &files[idx.index(files.len())];
        let mutated = apply(msg.clone(), &muts);
        exercise(&mutated);
    }

    /// Pipelined stream: framing cuts exactly the concatenated messages back out.
    #[test]
    fn framing_splits_pipelined_corpus(picks in prop::collection::vec(any::<prop::sample::Index>(), 1..5), split in any::<prop::sample::Index>()) {
        let files = corpus();
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for p in &picks {
            let (_, msg) = &files[p.index(files.len())];
            let Ok(m) = Message::parse(Bytes::copy_from_slice(msg)) else { continue };
            if m.content_length().is_none() || msg.len() != m.as_bytes().len() || msg.starts_with(b"\r\n") {
                continue;
            }
            stream.extend_from_slice(msg);
            expected.push(msg.len());
        }
        // feed in two chunks: partial reads must report Incomplete, never a wrong length
        let cut = split.index(stream.len() + 1);
        let mut got = Vec::new();
        let mut buf: Vec<u8> = stream[..cut].to_vec();
        let mut rest = &stream[cut..];
        loop {
            match framing::check(&buf, 1 << 20) {
                Ok(Frame::Message(n)) => { got.push(n); buf.drain(..n); }
                Ok(Frame::KeepAlive(n)) => { buf.drain(..n); }
                Err(framing::FrameError::Incomplete) if !rest.is_empty() => { buf.extend_from_slice(rest); rest = &[]; }
                Err(framing::FrameError::Incomplete) => break,
                Err(e) => panic!("framing error {e:?}"),
            }
        }
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }
}
