//! Fuzz target: whole-message handling. Bytes go through `Endpoint::handle`
//! as a UDP datagram, a TCP frame or a WebSocket message, possibly twice (a
//! retransmission), then every timer runs out. Any panic, any unparseable message we emit,
//! or a transaction left behind is a bug (ARCHITECTURE.md principle 5).
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipfront::endpoint::{Endpoint, EndpointConfig, Env};
use sipfront::sip::{Message, Transport};
use sipfront::transport::Inbound;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, msg)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut ep = Endpoint::new(EndpointConfig::new(Env::fixed(start)));
    // Bits 0 and 2: UDP, TCP, or a WebSocket message (RFC 7118: no
    // Content-Length framing, `.invalid` Via hosts).
    let transport = match mode & 0b101 {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        4 => Transport::Ws,
        _ => Transport::Wss,
    };
    let copies = 1 + usize::from(mode & 2 != 0);
    for i in 0..copies {
        ep.handle(
            Inbound {
                bytes: Bytes::copy_from_slice(msg),
                peer: "127.0.0.9:5999".parse().unwrap(),
                local: "127.0.0.1:5060".parse().unwrap(),
                transport,
                conn: None,
                // Read at the start: the second copy has queued 500 ms.
                received: start,
            },
            start + Duration::from_millis(i as u64 * 500),
        );
        while let Some(out) = ep.poll_transmit() {
            assert!(Message::parse(out.bytes).is_ok(), "we emit parseable SIP");
        }
    }
    let mut rounds = 0;
    while let Some(deadline) = ep.poll_timeout() {
        ep.handle_timeout(deadline);
        while ep.poll_transmit().is_some() {}
        rounds += 1;
        assert!(rounds < 1000, "timers converge");
    }
});
