//! CDR store read benchmarks on 1,000,000 rows (what `GET /v1/cdr` does).
//!
//! Setup, timed and printed once: 1,000,000 CDRs spread over 30 days (half
//! placed, half received) inserted with one `CdrStore::insert` (ONE
//! transaction) into a temp file in WAL mode.
//!
//! * `cdr/page 100 newest` — page 1 of 100, no filter (the `cdr_date`
//!   index walked backwards, no sort).
//! * `cdr/page 100 placed+day` — page 1, `type=placed` and one day (the
//!   `cdr_type_date` index).
//! * `cdr/stats placed+day` — `stats()` for that filter (one row of the
//!   per-day totals).
//! * `cdr/stats all` — `stats()` over all 1,000,000 rows (30 days × 2 types
//!   of per-day totals: what a JSON page pays when no filter narrows it).
//! * `cdr/stats all from 00:00:01` — the same with a time of day in the
//!   bound, so the rows themselves are summed (a full scan).
//! * `cdr/page 100 at page 1000` — `OFFSET 99,900`.
//!
//! Run: `cargo bench --bench cdr`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sipfront::cdr::{Cdr, CdrFilter, CdrSource, CdrStore, Direction, Disposition};
use sipfront::sip::Transport;

/// Rows under `cargo bench`; `cargo test --all-targets` runs this file
/// once as a smoke test with [`TEST_ROWS`].
const ROWS: u64 = 1_000_000;
const TEST_ROWS: u64 = 10_000;
/// 2026-11-01 00:00:00 UTC.
const START_MS: u64 = 1_793_491_200_000;
/// 30 days.
const SPAN_MS: u64 = 30 * 86_400_000;

/// How many rows this run uses (criterion passes `--bench` under `cargo bench`).
fn rows() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        ROWS
    } else {
        TEST_ROWS
    }
}

fn row(i: u64, n: u64) -> Cdr {
    Cdr {
        call_id: format!("{i:016x}-bench@10.0.0.1"),
        start_unix_ms: START_MS + i * (SPAN_MS / n),
        direction: if i % 2 == 0 {
            Direction::Placed
        } else {
            Direction::Received
        },
        from: "12121234567".into(),
        to: format!("4420794{:05}", i % 100_000),
        duration_s: i % 600,
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

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("sipfront-cdr-bench-{}", std::process::id()));
    let path = dir.join("cdr.sqlite");
    let mut store = CdrStore::open(&path).expect("open");
    let n = rows();
    let rows: Vec<Cdr> = (0..n).map(|i| row(i, n)).collect();
    let t = Instant::now();
    store.insert(&rows).expect("insert");
    println!(
        "inserted {n} CDRs in one transaction in {:.2?}",
        t.elapsed()
    );
    drop(rows);
    // The API's own connection, as in production (the writer's is `store`).
    let reader = CdrStore::open(&path).expect("reopen");

    let newest = CdrFilter {
        newest_first: true,
        limit: Some(100),
        ..CdrFilter::default()
    };
    let placed_day = CdrFilter {
        direction: Some(Direction::Placed),
        from_date: Some("2026-11-15".into()),
        to_date: Some("2026-11-15".into()),
        ..newest.clone()
    };
    let deep = CdrFilter {
        offset: 99_900,
        ..newest.clone()
    };
    // One-off: the JSON handler's whole read (page + stats), unfiltered and filtered.
    for (what, f) in [("all", &newest), ("placed+day", &placed_day)] {
        let t = Instant::now();
        let items = reader.query(f).expect("page");
        let page = t.elapsed();
        let stats = reader.stats(f).expect("stats");
        println!(
            "{what}: page of {} in {page:.2?}, stats {stats:?} in {:.2?}",
            items.len(),
            t.elapsed() - page
        );
    }

    let mut g = c.benchmark_group("cdr");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.bench_function("page 100 newest", |b| {
        b.iter(|| reader.query(&newest).expect("page"))
    });
    g.bench_function("page 100 placed+day", |b| {
        b.iter(|| reader.query(&placed_day).expect("page"))
    });
    g.bench_function("stats placed+day", |b| {
        b.iter(|| reader.stats(&placed_day).expect("stats"))
    });
    g.bench_function("stats all", |b| {
        b.iter(|| reader.stats(&newest).expect("stats"))
    });
    let timed = CdrFilter {
        from_date: Some("1970-01-01 00:00:01".into()),
        ..newest.clone()
    };
    g.bench_function("stats all from 00:00:01", |b| {
        b.iter(|| reader.stats(&timed).expect("stats"))
    });
    g.bench_function("page 100 at page 1000", |b| {
        b.iter(|| reader.query(&deep).expect("page"))
    });
    g.finish();
    drop((reader, store));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
