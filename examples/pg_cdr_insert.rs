//! CDR insert throughput into the fleet store (PostgreSQL), the way a node
//! writes them: `N` records offered to the `CdrSink` at once, the writer
//! thread inserting them in batches (one `INSERT … SELECT FROM UNNEST`
//! statement per 1,000), until all are committed. Also the insert call
//! alone (batches built in advance, no queue), to see the driver's share.
//!
//! Run against a database you can write to (the tables are created):
//! `cargo run --release --example pg_cdr_insert -- postgres://user@127.0.0.1:5432/db [N]`
//! Prints records per second (wall clock) and the process's CPU time.

use std::time::{Duration, Instant};

use sipfront::cdr::{Cdr, Direction, Disposition, Keyed, PgCdr, PG_MAX_BATCH};
use sipfront::sip::Transport;
use sipfront::store::{PgPool, PgStore};

fn cdr(i: u64) -> Cdr {
    Cdr {
        call_id: format!("bench-{i}@10.0.0.1"),
        start_unix_ms: 1_795_425_300_000 + i * 37,
        direction: if i % 2 == 0 {
            Direction::Placed
        } else {
            Direction::Received
        },
        from: "12121234567".into(),
        to: format!("4420794600{:02}", i % 100),
        duration_s: i % 300,
        disposition: Disposition::Answered,
        sip_code: 200,
        per_minute: 0.012,
        destination: "United Kingdom - London".into(),
        sip_trunk: "36465".into(),
        trunk_id: Some(7),
        a_transport: Some(Transport::Tls),
        b_transport: Some(Transport::Udp),
    }
}

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime, in 1/100 s) are the 12th and 13th
    // after ")" (which ends field 2).
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: pg_cdr_insert postgres://user@host:port/db [N]");
        std::process::exit(2);
    };
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pool = PgPool::new(&url, rt.handle().clone()).unwrap_or_else(|e| panic!("{e}"));
    let store = PgStore::open(pool.clone(), "bench".into(), "bench".into())
        .unwrap_or_else(|e| panic!("{e}"));
    drop(store);
    let db = PgCdr::new(pool);

    // 1. Through the queue and the writer thread, as a node does.
    let spill = std::env::temp_dir().join(format!("pg-cdr-bench-{}.jsonl", std::process::id()));
    let capacity = usize::try_from(n).unwrap_or(usize::MAX);
    let (writer, sink) = db
        .clone()
        .start_writer(spill, capacity)
        .unwrap_or_else(|e| panic!("{e}"));
    let (t0, c0) = (Instant::now(), cpu());
    for i in 0..n {
        assert!(sink.record(cdr(i)), "queue full");
    }
    writer.shutdown().unwrap_or_else(|e| panic!("{e}"));
    let (wall, used) = (t0.elapsed(), cpu() - c0);
    assert_eq!(sink.written(), n, "every record committed");
    println!(
        "writer: {n} CDRs in {:.3} s = {:.0} CDRs/s (sipfront CPU {:.3} s = {:.1} us/CDR)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        used.as_secs_f64(),
        used.as_secs_f64() * 1e6 / n as f64
    );

    // 2. The insert statement alone, batches built in advance.
    let batches: Vec<Vec<Keyed>> = (0..n)
        .map(|i| Keyed {
            uid: format!("direct-{}-{i}", std::process::id()),
            cdr: cdr(i),
        })
        .collect::<Vec<_>>()
        .chunks(PG_MAX_BATCH)
        .map(<[Keyed]>::to_vec)
        .collect();
    let (t0, c0) = (Instant::now(), cpu());
    let mut stored = 0;
    for b in &batches {
        stored += db.insert(b).unwrap_or_else(|e| panic!("{e}"));
    }
    let (wall, used) = (t0.elapsed(), cpu() - c0);
    assert_eq!(stored, n);
    println!(
        "insert: {n} CDRs in {:.3} s = {:.0} CDRs/s (sipfront CPU {:.3} s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        used.as_secs_f64()
    );
}
