//! Heap allocations per call through the sans-IO core (issue 17, goal 1's
//! stable figure): the endpoint driven through one whole IP-trunk call,
//! message by message as the shell would, with a fake clock:
//!
//! ```text
//! A INVITE (SDP) -> 100 to A, INVITE to B
//! B 100, B 180 (-> 180 to A), B 200 (-> 200 to A, ACK to B)
//! A ACK, A BYE (-> 200 to A, BYE to B), B 200 to the BYE
//! then the clock runs until every transaction of the call has ended
//! ```
//!
//! A counting global allocator counts only inside the core's calls
//! (`handle`, `handle_timeout`, `poll_transmit`); building the peers'
//! messages and reading ours is the test driver's cost, not the proxy's.
//! Allocation counts do not depend on machine load, unlike wall time.
//!
//! ```text
//! cargo bench -p sipfront-core --bench call_allocs           # allocations, bytes
//! cargo bench -p sipfront-core --bench call_allocs --no-run  # then instructions:
//! valgrind --tool=callgrind --toggle-collect='*counted*' \
//!     target/release/deps/call_allocs-<hash> 2000
//! ```
//! (callgrind's total `Ir` divided by the call count the bench prints,
//! warm-up included: only the core's calls are collected, as only they
//! are counted.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipfront_core::b2bua::Admission;
use sipfront_core::config::{Config, ConfigSource, UpstreamConfig};
use sipfront_core::endpoint::{Endpoint, EndpointConfig, Env};
use sipfront_core::routing::Upstreams;
use sipfront_core::sip::build::{RequestBuilder, ResponseBuilder};
use sipfront_core::sip::{Bytes, Message, Method, StatusCode, Transport};
use sipfront_core::transport::Inbound;

mod counting;

use counting::{counted, ALLOCS, BYTES};

const A: &str = "127.0.0.1:5071";
const B: &str = "127.0.0.3:5080";
const LOCAL: &str = "127.0.0.1:5060";
const SDP: &str = "v=0\r\no=- 3848276298 3848276298 IN IP4 10.9.9.9\r\ns=ExamplePBX\r\n\
c=IN IP4 10.9.9.9\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Harness {
    ep: Endpoint,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        // The shipped rate table (calls need a rate), one IP-trusted trunk.
        let rates = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/rates.csv");
        let text = format!(
            "[rates]\nfile = \"{rates}\"\n\
             [[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n"
        );
        let cfg = Config::parse(&text, ConfigSource::Embedded).expect("config");
        let upstream = UpstreamConfig {
            name: "carrier".to_owned(),
            uri: format!("sip:{B}"),
            priority: 1,
            weight: 1,
            ping_interval_s: 0,
            trusted: false,
            ..Default::default()
        };
        let now = Instant::now();
        let mut h = Harness {
            ep: Endpoint::new(EndpointConfig {
                upstreams: Upstreams::from_config(&[upstream]).expect("upstream"),
                admission: Arc::new(Admission::new(&cfg, [7; 32])),
                ..EndpointConfig::new(Env::fixed(now))
            }),
            now,
        };
        h.ep.handle_timeout(h.now);
        h
    }

    /// Feeds one datagram; returns what the core sends, parsed (uncounted).
    fn feed(&mut self, from: &str, bytes: Bytes) -> Vec<(SocketAddr, Message)> {
        let (ep, now) = (&mut self.ep, self.now);
        let inbound = Inbound {
            bytes,
            peer: addr(from),
            local: addr(LOCAL),
            transport: Transport::Udp,
            conn: None,
            received: now,
        };
        counted(|| ep.handle(inbound, now));
        self.take()
    }

    fn take(&mut self) -> Vec<(SocketAddr, Message)> {
        let mut out = Vec::new();
        while let Some(o) = counted(|| self.ep.poll_transmit()) {
            out.push((o.dest, Message::parse(o.bytes).expect("parseable")));
        }
        out
    }

    /// Moves the clock by `d`, firing every deadline on the way.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.ep.poll_timeout() {
            if t > end {
                break;
            }
            self.now = self.now.max(t);
            let (ep, now) = (&mut self.ep, self.now);
            counted(|| ep.handle_timeout(now));
            self.take();
        }
        self.now = end;
    }
}

fn find(out: &[(SocketAddr, Message)], dest: &str, pick: impl Fn(&Message) -> bool) -> Message {
    out.iter()
        .find(|(d, m)| *d == addr(dest) && pick(m))
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| {
            let got: Vec<_> = out
                .iter()
                .map(|(d, m)| format!("{d}: {}", String::from_utf8_lossy(m.as_bytes())))
                .collect();
            panic!("the call goes as scripted; to {dest} went {got:#?}")
        })
}

fn a_invite(i: u64) -> Bytes {
    RequestBuilder::new(Method::Invite, "sip:12125551234@sipfront.local")
        .via(
            Transport::Udp,
            "10.9.9.9:5071",
            &format!("z9hG4bKa-{i}"),
            true,
        )
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some(&format!("at{i}")))
        .to("<sip:12125551234@sipfront.local>", None)
        .call_id(&format!("a-call-{i}@10.9.9.9"))
        .cseq(10)
        .contact("<sip:alice@10.9.9.9:5071>")
        .header("Allow", "INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY")
        .header("Supported", "replaces, timer")
        .header("User-Agent", "ExamplePBX 16.2.1")
        .body("application/sdp", Bytes::from_static(SDP.as_bytes()))
        .build()
}

fn a_request(i: u64, method: Method, cseq: u32, our_tag: &str) -> Bytes {
    RequestBuilder::new(method.clone(), "sip:sipfront@127.0.0.1:5060")
        .via(
            Transport::Udp,
            "10.9.9.9:5071",
            &format!("z9hG4bKa-{i}-{method}"),
            true,
        )
        .from("\"Alice A\" <sip:alice@10.9.9.9>", Some(&format!("at{i}")))
        .to("<sip:12125551234@sipfront.local>", Some(our_tag))
        .call_id(&format!("a-call-{i}@10.9.9.9"))
        .cseq(cseq)
        .contact("<sip:alice@10.9.9.9:5071>")
        .build()
}

fn b_response(req: &Message, status: u16, body: bool) -> Bytes {
    let mut r = ResponseBuilder::new(req, StatusCode(status));
    if status > 100 {
        r = r
            .to_tag("btag")
            .header("Contact", "<sip:uas@127.0.0.3:5080>");
    }
    if body {
        r = r.body("application/sdp", Bytes::from_static(SDP.as_bytes()));
    }
    r.build()
}

/// One whole call; panics if any step does not happen.
fn call(h: &mut Harness, i: u64) {
    let out = h.feed(A, a_invite(i));
    let inv = find(&out, B, |m| m.method() == Some(&Method::Invite));
    h.feed(B, b_response(&inv, 100, false));
    h.feed(B, b_response(&inv, 180, false));
    let out = h.feed(B, b_response(&inv, 200, true));
    let ok = find(&out, A, |m| m.status() == Some(StatusCode::OK));
    find(&out, B, |m| m.method() == Some(&Method::Ack));
    let tag = ok.to_tag().expect("our To tag").to_owned();
    h.feed(A, a_request(i, Method::Ack, 10, &tag));
    let out = h.feed(A, a_request(i, Method::Bye, 11, &tag));
    let bye = find(&out, B, |m| m.method() == Some(&Method::Bye));
    h.feed(B, b_response(&bye, 200, false));
    // 100 calls/s of simulated time: transactions of earlier calls end
    // (Timers D, J, K) while later ones run, as under load.
    h.advance(Duration::from_millis(10));
}

#[inline(never)]
fn run_calls(h: &mut Harness, first: u64, n: u64) {
    for i in first..first + n {
        call(h, i);
    }
}

/// The counted window.
fn measured(h: &mut Harness, n: u64) {
    run_calls(h, 1_000_000, n);
    h.advance(Duration::from_secs(64));
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is a call count.
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut h = Harness::new();
    // Warm-up: tables and queues reach their steady size first.
    let warm = 5_000.min(n);
    run_calls(&mut h, 0, warm);
    ALLOCS.store(0, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
    measured(&mut h, n);
    let (a, b) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let per = |x: u64| x as f64 / n as f64;
    println!(
        "call_allocs: {n} calls (INVITE/100/180/200/ACK/BYE/200): \
         {:.1} allocations/call, {:.0} bytes allocated/call \
         (callgrind: divide Ir by {} calls, warm-up included)",
        per(a),
        per(b),
        warm + n
    );
    assert!(h.ep.b2bua().is_empty(), "every call left the table");
}
