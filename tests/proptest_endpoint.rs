//! Whole-message handling under hostile input: whatever bytes arrive, the
//! endpoint never panics, answers only the sender, emits only parseable SIP,
//! and forgets every transaction once its timers have run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use sipfront::endpoint::{Endpoint, EndpointConfig, Env};
use sipfront::sip::{Message, Transport};
use sipfront::transport::Inbound;

const VALID: &str = "OPTIONS sip:sipfront.local SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5062;branch=z9hG4bK-p1;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=a1\r\n\
To: <sip:sipfront.local>\r\n\
Call-ID: prop@10.0.0.7\r\n\
CSeq: 1 OPTIONS\r\n\
Require: foo\r\n\
Content-Length: 4\r\n\r\nbody";

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let base = VALID.as_bytes().to_vec();
    proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8).prop_map(
        move |edits| {
            let mut b = base.clone();
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let i = at.index(b.len());
                match op {
                    0 => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            b
        },
    )
}

fn feed(inputs: Vec<(Vec<u8>, bool)>) {
    let peer: SocketAddr = "127.0.0.9:5999".parse().unwrap();
    let start = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::new(Env::fixed(start)));
    for (i, (bytes, tcp)) in inputs.into_iter().enumerate() {
        let now = start + Duration::from_millis(i as u64 * 100);
        ep.handle(
            Inbound {
                bytes: Bytes::from(bytes),
                peer,
                local: "127.0.0.1:5060".parse().unwrap(),
                transport: if tcp { Transport::Tcp } else { Transport::Udp },
                conn: None,
                received: now,
            },
            now,
        );
        while let Some(t) = ep.poll_transmit() {
            assert_eq!(t.dest, peer, "responses go back to the sender only");
            let msg = Message::parse(t.bytes).expect("everything we send parses");
            assert!(!msg.is_request(), "only responses are originated");
        }
    }
    // Run every timer to completion: nothing may stay behind.
    let mut guard = 0;
    while let Some(deadline) = ep.poll_timeout() {
        ep.handle_timeout(deadline);
        while ep.poll_transmit().is_some() {}
        guard += 1;
        assert!(guard < 10_000, "timers must converge");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(inputs in proptest::collection::vec(
        (proptest::collection::vec(any::<u8>(), 0..600), any::<bool>()), 1..6)) {
        feed(inputs);
    }

    #[test]
    fn mutated_requests_never_panic(inputs in proptest::collection::vec(
        (mutated(), any::<bool>()), 1..6)) {
        feed(inputs);
    }
}

/// Inputs the endpoint fuzz target once failed on (`tests/fuzz_regressions/`,
/// first byte = the target's mode byte: bit 0 TCP, bit 1 sent twice).
#[test]
fn fuzz_regressions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("regression dir") {
        let data = std::fs::read(entry.expect("entry").path()).expect("read");
        let Some((&mode, msg)) = data.split_first() else {
            continue;
        };
        let copies = 1 + usize::from(mode & 2 != 0);
        feed(vec![(msg.to_vec(), mode & 1 == 1); copies]);
        seen += 1;
    }
    assert!(seen > 0, "the regression inputs are there");
}
