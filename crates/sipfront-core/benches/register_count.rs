//! Cost of one digest registration in the sans-IO core, the shared bench's
//! `reg-users.xml` flow (issue 17, goal 4's stable figures): every user
//! sends REGISTER, gets `401`, sends REGISTER with MD5 credentials and gets
//! `200`, over UDP, at 6,000 registrations/s of simulated time.
//!
//! Printed, for `N` users (default 20,000, the shared bench's count):
//! * heap allocations and bytes allocated per registration, counted only
//!   inside the core's calls (`handle`, `handle_timeout`, `poll_transmit`);
//!   building the UA's messages and its digest is the driver's work;
//! * heap held per registration right after the last one (bindings plus
//!   whatever the transactions keep for Timer J: what the 6,000/s load run
//!   holds at its end), and after Timer J (bindings alone).
//!
//! Counts do not depend on machine load, unlike wall time.
//!
//! ```text
//! cargo bench -p sipfront-core --bench register_count           # allocations, heap
//! cargo bench -p sipfront-core --bench register_count --no-run  # then instructions:
//! valgrind --tool=callgrind --toggle-collect='*counted*' \
//!     target/release/deps/register_count-<hash> 2000
//! ```
//! (callgrind's total `Ir` divided by the registration count: only the
//! core's calls are collected.)

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sipfront_core::auth::{ha1, response, Algorithm};
use sipfront_core::config::{Config, ConfigSource};
use sipfront_core::endpoint::{Endpoint, EndpointConfig, Env};
use sipfront_core::sip::{Bytes, Message, StatusCode, Transport};
use sipfront_core::transport::Inbound;

mod counting;

use counting::{counted, ALLOCS, BYTES, LIVE};

const PEER: &str = "127.0.0.1:16071";
const LOCAL: &str = "127.0.0.1:16060";
const REALM: &str = "sipfront.local";
const FIRST_USER: u32 = 100_000;
const PASSWORD: &str = "s3cret";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// What SIPp sends for `reg-users.xml` (same headers, same order).
fn register(user: u32, cseq: u32, branch: u64, auth: &str) -> Bytes {
    Bytes::from(format!(
        "REGISTER sip:127.0.0.1:16060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:16071;rport;branch=z9hG4bK-4242-{branch}-0\r\n\
         From: <sip:u{user}@127.0.0.1:16060>;tag=4242R{user}\r\n\
         To: <sip:u{user}@127.0.0.1:16060>\r\n\
         Call-ID: {user}-4242@127.0.0.1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:u{user}@10.9.8.7:5099;transport=udp>\r\n\
         Expires: 3600\r\n\
         {auth}\
         Max-Forwards: 70\r\n\
         User-Agent: Zoiper rv2.10.20.4\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// The MD5 challenge's nonce of a 401.
fn md5_nonce(m: &Message) -> String {
    let text = String::from_utf8_lossy(m.as_bytes());
    let line = text
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
        .unwrap_or_else(|| panic!("an MD5 challenge in {text}"));
    let s = line.find("nonce=\"").expect("nonce") + 7;
    let e = line[s..].find('"').expect("nonce end") + s;
    line[s..e].to_owned()
}

struct Harness {
    ep: Endpoint,
    now: Instant,
    ha1s: Vec<String>,
}

impl Harness {
    fn new(users: u32) -> Harness {
        let mut text = String::new();
        for i in 0..users {
            let u = FIRST_USER + i;
            text.push_str(&format!(
                "[[trunk]]\nid = {}\nname = \"u{u}\"\npassword = \"{PASSWORD}\"\n",
                i + 1
            ));
        }
        text.push_str("[registrar]\nkeepalive_s = 0\npersist = false\n");
        text.push_str("[security]\nrate_limit = 0\n");
        let cfg = Config::parse(&text, ConfigSource::Embedded).expect("config");
        let now = Instant::now();
        // As `sipfront run` builds it, on one UDP listener.
        let ep_cfg =
            EndpointConfig::from_config(&cfg, &[(Transport::Udp, addr(LOCAL))], Env::fixed(now))
                .expect("endpoint config");
        let mut ep = Endpoint::new(ep_cfg);
        ep.handle_timeout(now);
        let ha1s = (0..users)
            .map(|i| ha1(false, &format!("u{}", FIRST_USER + i), REALM, PASSWORD))
            .collect();
        Harness { ep, now, ha1s }
    }

    /// Feeds one datagram; returns the one response, parsed (uncounted).
    fn feed(&mut self, bytes: Bytes) -> Message {
        let (ep, now) = (&mut self.ep, self.now);
        let inbound = Inbound {
            bytes,
            peer: addr(PEER),
            local: addr(LOCAL),
            transport: Transport::Udp,
            conn: None,
            received: now,
        };
        counted(|| ep.handle(inbound, now));
        let mut out = Vec::new();
        while let Some(o) = counted(|| self.ep.poll_transmit()) {
            out.push(Message::parse(o.bytes).expect("parseable"));
        }
        assert_eq!(out.len(), 1, "one answer per REGISTER");
        out.pop().expect("one")
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
            while counted(|| self.ep.poll_transmit()).is_some() {}
        }
        self.now = end;
    }

    /// One user's registration; panics unless it ends in 200.
    fn registration(&mut self, i: u32) {
        let user = FIRST_USER + i;
        let branch = u64::from(i) * 2;
        let challenge = self.feed(register(user, 1, branch, ""));
        assert_eq!(challenge.status(), Some(StatusCode::UNAUTHORIZED));
        let nonce = md5_nonce(&challenge);
        let uri = "sip:127.0.0.1:16060";
        let resp = response(
            Algorithm::Md5,
            &self.ha1s[i as usize],
            &nonce,
            1,
            "6b8b4567",
            "auth",
            "REGISTER",
            uri,
        );
        let auth = format!(
            "Authorization: Digest username=\"u{user}\",realm=\"{REALM}\",\
             cnonce=\"6b8b4567\",nc=00000001,qop=auth,uri=\"{uri}\",\
             nonce=\"{nonce}\",response=\"{resp}\",algorithm=MD5\r\n"
        );
        let ok = self.feed(register(user, 2, branch + 1, &auth));
        assert_eq!(
            ok.status(),
            Some(StatusCode::OK),
            "{}",
            String::from_utf8_lossy(ok.as_bytes())
        );
        // 6,000 registrations/s of simulated time.
        self.advance(Duration::from_micros(166));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the user count.
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut h = Harness::new(n);
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..n {
        h.registration(i);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    let (a, b) = (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    assert_eq!(h.ep.registrar().store().len(), n as usize);
    h.advance(Duration::from_secs(40));
    let bound = LIVE.load(Ordering::Relaxed) - before;
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let per = |x: f64| x / f64::from(n);
    println!(
        "register_count: {n} registrations (REGISTER/401/REGISTER+MD5/200, UDP, 6,000/s): \
         {:.1} allocations and {:.0} bytes allocated per registration; \
         heap held {:.0} B per registration at the end of the run, \
         {:.0} B after Timer J (bindings)",
        per(a as f64),
        per(b as f64),
        per(held as f64),
        per(bound as f64),
    );
}
