//! Fuzz target: the WebSocket input path of a `ws`/`wss` listener (RFC 7118):
//! the HTTP upgrade with sipfront's `sip` subprotocol rule, then WebSocket
//! framing with the live limits, each received message sorted as SIP,
//! keep-alive or control, and every SIP message then parsed. Any panic, an
//! upgrade accepted without `sip`, or a message over the limit is a bug
//! (ARCHITECTURE.md principle 5).
//!
//! The first byte picks a mode: bit 0 set puts a valid upgrade request in
//! front of the rest, so the fuzzer reaches the frame parser at once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipfront::sip::{Message, MAX_MESSAGE_SIZE};
use sipfront::transport::ws::{replay, Incoming};

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Protocol: sip\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 1 {
        [UPGRADE, rest].concat()
    } else {
        rest.to_vec()
    };
    let r = replay(&input, MAX_MESSAGE_SIZE);
    assert!(!(r.upgraded && r.refused.is_some()), "accepted and refused: {r:?}");
    assert!(r.upgraded || r.incoming.is_empty());
    for m in r.incoming {
        if let Incoming::Sip(bytes) = m {
            assert!(bytes.len() <= MAX_MESSAGE_SIZE, "over the limit");
            let _ = Message::parse(bytes);
        }
    }
});
