//! Fuzz target: an rtpengine ng reply datagram (`cookie SP bencode`).
//! Replies come from the network: any panic or stack overflow is a bug
//! (ARCHITECTURE.md principle 5); `check` must agree with the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipfront::media::ng;

fuzz_target!(|data: &[u8]| {
    if let Ok((cookie, reply)) = ng::decode(data) {
        assert!(data.starts_with(cookie.as_bytes()));
        let _ = (reply.ok(), reply.why());
    }
    // Whatever the checker accepts is one whole value the decoder can read.
    if ng::check(data).is_ok() {
        let _ = serde_bencode::from_bytes::<serde_bencode::value::Value>(data);
    }
});
