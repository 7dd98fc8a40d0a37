//! Fuzz target: `Message::parse`, every accessor on whatever parses, and
//! stream framing. Any panic is a bug (ARCHITECTURE.md principle 5).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipfront::sip::framing::{self, Frame};
use sipfront::sip::Message;

// The same "call every accessor" the integration tests use.
#[path = "../../tests/common/parsing.rs"]
#[allow(dead_code)]
mod parsing;
use parsing::touch_everything;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(Bytes::copy_from_slice(data)) {
        touch_everything(&m);
        assert!(data.starts_with(m.as_bytes()));
    }
    // Framing must never claim more bytes than it was given.
    let mut rest = data;
    for _ in 0..64 {
        match framing::check(rest, 65_536) {
            Ok(Frame::KeepAlive(n)) | Ok(Frame::Message(n)) => {
                assert!(n > 0 && n <= rest.len());
                if let Some(r) = rest.get(n..) {
                    rest = r;
                }
            }
            Err(_) => break,
        }
    }
});
