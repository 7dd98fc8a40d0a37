//! Registrar benchmarks (SPEC §5 "Registrar"):
//!
//! * `registrar/endpoint REGISTER+digest` — the whole sans-IO path of one
//!   authenticated REGISTER refresh as the shell drives it: **parse
//!   included**, server transaction, MD5 digest verify (nonce MAC, replay
//!   table), registrar §10.3, the `200` with its Contact list built and
//!   serialized. 1,000 trunks each refreshing one binding over TCP.
//! * `registrar/register refresh` — `Registrar::register` alone on an
//!   already parsed REGISTER (parse and digest excluded).
//! * A one-off measurement printed before the benches: heap bytes held by
//!   100,000 bindings (100,000 trunk logins, one binding each, realistic
//!   Contact, Call-ID and User-Agent lengths), counted by a counting global
//!   allocator, plus the wall time to register them.
//! * A one-off measurement of a restart with those 100,000 bindings stored:
//!   the time to write them to a fresh SQLite store (one batch, as the
//!   binding writer does), and the time a start takes to read them back and
//!   restore them into a new registrar (the goal is under 1 s).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sipfront::auth::{ha1, response, Algorithm, ChallengeKind};
use sipfront::b2bua::{Admission, WallClock};
use sipfront::config::{Config, ConfigSource};
use sipfront::endpoint::{Endpoint, EndpointConfig, Env};
use sipfront::registrar::{BindingWrite, Registrar, RegistrarConfig};
use sipfront::sip::random::Random;
use sipfront::sip::{Bytes, Message, StatusCode, Transport};
use sipfront::store::{SqliteStore, Store};
use sipfront::transport::Inbound;

/// Counts live heap bytes (the allocation figure for 100k bindings).
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counter is
// only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REALM: &str = "sipfront.local";
const PEER: &str = "198.51.100.20:40000";

/// CPU time of this thread and time it waited for a CPU, in ns
/// (`/proc/thread-self/schedstat`): on a shared box the wall time is their
/// sum, and only the first is the work.
fn sched_ns() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn register_text(login: u32, call_id: &str, cseq: u32, branch: u64, auth: &str) -> String {
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 192.168.12.34:5060;branch=z9hG4bK{branch:016x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{login}@{REALM}>;tag=8a4b2c\r\n\
         To: <sip:{login}@{REALM}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{login}@192.168.12.34:5060;transport=tcp;ob>;+sip.instance=\"<urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8>\";reg-id=1\r\n\
         Expires: 600\r\n\
         {auth}\
         User-Agent: baresip v1.0.0 (x86_64/linux)\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn memory_100k() -> Registrar {
    let mut r = Registrar::new(RegistrarConfig::default(), Random::from_seed([3; 32]));
    let src: SocketAddr = PEER.parse().unwrap_or_else(|e| panic!("{e}"));
    let msgs: Vec<(String, Message)> = (0..100_000u32)
        .map(|i| {
            let login = 1_000_000 + i;
            let call_id = format!("{:032x}@192.168.12.34", u128::from(i) * 7919);
            let m = Message::parse(Bytes::from(register_text(
                login,
                &call_id,
                1,
                u64::from(i),
                "",
            )))
            .unwrap_or_else(|e| panic!("{e:?}"));
            (login.to_string(), m)
        })
        .collect();
    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let rss_before = rss_kib();
    let t = Instant::now();
    for (login, m) in &msgs {
        let o = r.register(m, login, src, Transport::Udp, None, now);
        assert_eq!(o.status, StatusCode::OK);
    }
    let took = t.elapsed();
    let after = LIVE.load(Ordering::Relaxed);
    let rss_after = rss_kib();
    // The responses' header strings are freed already; what remains is the store.
    assert_eq!(r.store().len(), 100_000);
    let bytes = after - before;
    println!(
        "registrar/memory: 100000 bindings hold {:.1} MiB of heap ({} B per binding); \
         RSS grew {} KiB; registered in {:?} ({:.0} REGISTER/s, sans-IO, parsed, no digest)",
        bytes as f64 / (1024.0 * 1024.0),
        bytes / 100_000,
        rss_after
            .zip(rss_before)
            .map_or(0, |(a, b)| a.saturating_sub(b)),
        took,
        100_000.0 / took.as_secs_f64()
    );
    drop(msgs);
    r
}

/// Stores the 100k bindings of `r`, then reads and restores them as a
/// restart does, printing both times.
fn reload_100k(mut r: Registrar) {
    let dir = std::env::temp_dir().join(format!("sipfront-bench-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir.join("store.db")).unwrap_or_else(|e| panic!("{e}"));
    let now = Instant::now();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let writes: Vec<BindingWrite> = std::iter::from_fn(|| r.poll_write(now, unix_ms)).collect();
    assert_eq!(writes.len(), 100_000);
    let t = Instant::now();
    store
        .write_bindings(&writes)
        .unwrap_or_else(|e| panic!("{e}"));
    let wrote = t.elapsed();
    drop(writes);
    drop(r);

    let t = Instant::now();
    let (cpu0, wait0) = sched_ns();
    let rows = store.bindings().unwrap_or_else(|e| panic!("{e}"));
    let read = t.elapsed();
    let (cpu1, _) = sched_ns();
    let mut fresh = Registrar::new(RegistrarConfig::default(), Random::from_seed([3; 32]));
    let report = fresh.restore(rows, Instant::now(), unix_ms);
    let total = t.elapsed();
    let (cpu2, wait2) = sched_ns();
    assert_eq!(report.restored, 100_000);
    assert_eq!(fresh.store().len(), 100_000);
    let ms = |ns: u64| ns as f64 / 1e6;
    println!(
        "registrar/reload: 100000 bindings written to SQLite in {wrote:?} (one transaction); \
         a restart reads them in {read:?} and has them restored in {total:?} \
         (CPU {:.0} ms read + {:.0} ms restore; {:.0} ms waiting for a CPU on a shared box)",
        ms(cpu1 - cpu0),
        ms(cpu2 - cpu1),
        ms(wait2 - wait0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench(c: &mut Criterion) {
    reload_100k(memory_100k());

    // 1,000 digest trunks, logins 5000..5999, password pw<login>.
    let mut text = String::new();
    for i in 0..1000u32 {
        text.push_str(&format!(
            "[[trunk]]\nid = {}\nname = \"{}\"\npassword = \"pw{}\"\n",
            i + 1,
            5000 + i,
            5000 + i
        ));
    }
    let cfg = Config::parse(&text, ConfigSource::Embedded).unwrap_or_else(|e| panic!("{e}"));
    let admission = Arc::new(Admission::new(&cfg, [3; 32]));
    let peer: SocketAddr = PEER.parse().unwrap_or_else(|e| panic!("{e}"));
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The nonces below are dated by the real clock: so is the core's.
    let at = Instant::now();
    let env = Env {
        wall: WallClock {
            at,
            unix_ms: now_unix * 1000,
        },
        ..Env::fixed(at)
    };
    let mut ep = Endpoint::new(EndpointConfig {
        admission: admission.clone(),
        ..EndpointConfig::new(env)
    });
    let challenge = admission
        .auth()
        .challenge(ChallengeKind::Www, peer.ip(), now_unix, false);
    let nonce = {
        let c = &challenge[0];
        let s = c.find("nonce=\"").unwrap_or(0) + 7;
        let e = c[s..].find('"').unwrap_or(0) + s;
        c[s..e].to_owned()
    };
    let ha1s: Vec<String> = (0..1000u32)
        .map(|i| {
            ha1(
                false,
                &(5000 + i).to_string(),
                REALM,
                &format!("pw{}", 5000 + i),
            )
        })
        .collect();
    let mut n: u32 = 0;
    let mut failed = 0u32;
    let mut handled = 0u32;
    let mut now = Instant::now();
    c.bench_function("registrar/endpoint REGISTER+digest (parse included)", |b| {
        b.iter_batched(
            || {
                n += 1;
                let i = n % 1000;
                let login = 5000 + i;
                let uri = format!("sip:{REALM}");
                // One nonce for all, a fresh nc each time (replay table).
                let resp = response(
                    Algorithm::Md5,
                    &ha1s[i as usize],
                    &nonce,
                    n,
                    "c0ffee",
                    "auth",
                    "REGISTER",
                    &uri,
                );
                let auth = format!(
                    "Authorization: Digest username=\"{login}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
                     uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={n:08x}, cnonce=\"c0ffee\"\r\n"
                );
                let text = register_text(login, &format!("cid{login}"), n, u64::from(n), &auth);
                Inbound {
                    bytes: Bytes::from(text),
                    peer,
                    local: peer,
                    transport: Transport::Tcp,
                    conn: None,
                    // Set below, when the routine knows `now`.
                    received: Instant::now(),
                }
            },
            |mut inbound| {
                now += Duration::from_micros(50);
                inbound.received = now;
                ep.handle(inbound, now);
                let out = ep.poll_transmit();
                if !out
                    .as_ref()
                    .is_some_and(|o| o.bytes.starts_with(b"SIP/2.0 200"))
                {
                    failed += 1;
                }
                handled += 1;
                if handled % 256 == 0 {
                    ep.handle_timeout(now);
                }
                out
            },
            BatchSize::SmallInput,
        )
    });
    assert_eq!(failed, 0, "every REGISTER must get 200");
    // 1000 logins cycled: one binding each (fewer when run once as a test).
    let bound = ep.registrar().store().len();
    assert!((1..=1000).contains(&bound), "{bound} bindings");

    // Registrar alone: refresh of one binding per login (parsed in the
    // untimed setup, a higher CSeq each lap).
    let mut r = Registrar::new(RegistrarConfig::default(), Random::from_seed([3; 32]));
    let mut k = 0u32;
    let mut t = Instant::now();
    let mut refused = 0u32;
    c.bench_function(
        "registrar/register refresh (parse and digest excluded)",
        |b| {
            b.iter_batched(
                || {
                    k += 1;
                    let login = 5000 + k % 1000;
                    let m = Message::parse(Bytes::from(register_text(login, "x", k, 1, "")))
                        .unwrap_or_else(|e| panic!("{e:?}"));
                    (login.to_string(), m)
                },
                |(login, m)| {
                    t += Duration::from_micros(1);
                    let o = r.register(&m, &login, peer, Transport::Udp, None, t);
                    if o.status != StatusCode::OK {
                        refused += 1;
                    }
                    o
                },
                BatchSize::SmallInput,
            )
        },
    );
    assert_eq!(refused, 0, "every refresh must succeed");
}

criterion_group!(benches, bench);
criterion_main!(benches);
