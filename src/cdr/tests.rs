//! Pure helpers by table, then the store and the writer on real temp files.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::writer::Msg;
use super::*;
use crate::sip::Transport;

/// A fresh path under the temp dir; removes the file and its WAL on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(name: &str) -> TempDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sipfront-cdr-{}-{n}", std::process::id()));
        TempDb(dir.join(format!("{name}.sqlite")))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn cdr(i: u64) -> Cdr {
    Cdr {
        call_id: format!("call-{i}@10.0.0.1"),
        start_unix_ms: 1_795_425_300_000 + i,
        direction: if i % 2 == 0 {
            Direction::Placed
        } else {
            Direction::Received
        },
        from: "12121234567".into(),
        to: format!("4420794600{i:02}"),
        duration_s: i % 100,
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

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn charge_is_per_second_rounded_to_4_decimals() {
    let with = |per_minute, duration_s| Cdr {
        per_minute,
        duration_s,
        ..cdr(0)
    };
    assert_eq!(with(0.012, 61).charge(), 0.0122);
    assert_eq!(with(0.09, 3).charge(), 0.0045);
    assert_eq!(with(0.012, 1).charge(), 0.0002); // 0.0002 exactly
    assert_eq!(with(0.01, 1).charge(), 0.0002); // 0.000166… rounds up
    assert_eq!(with(0.001, 1).charge(), 0.0); // 0.0000166… rounds down
    assert_eq!(with(0.5, 0).charge(), 0.0);
    assert_eq!(with(0.0, 600).charge(), 0.0);
    assert_eq!(with(1.2345, 3600).charge(), 74.07);
}

#[test]
fn billed_seconds_rounds_up_started_seconds() {
    for (ms, s) in [
        (0, 0),
        (1, 1),
        (999, 1),
        (1000, 1),
        (1001, 2),
        (2999, 3),
        (3000, 3),
    ] {
        assert_eq!(billed_seconds(ms), s, "{ms} ms");
    }
    assert_eq!(billed_seconds(u64::MAX), u64::MAX / 1000 + 1);
}

#[test]
fn format_date_is_utc_civil_time() {
    assert_eq!(format_date(0), "1970-01-01 00:00:00");
    assert_eq!(format_date(999), "1970-01-01 00:00:00");
    assert_eq!(format_date(1_709_210_096_000), "2024-02-29 12:34:56");
    assert_eq!(format_date(1_709_251_199_999), "2024-02-29 23:59:59");
    assert_eq!(format_date(1_709_251_200_000), "2024-03-01 00:00:00");
    assert_eq!(format_date(1_795_425_300_000), "2026-11-23 09:15:00");
    assert_eq!(format_date(951_782_400_000), "2000-02-29 00:00:00");
    assert_eq!(format_date(4_107_542_400_000), "2100-03-01 00:00:00"); // 2100 is not leap
    assert_eq!(format_date(1_735_689_599_000), "2024-12-31 23:59:59");
    // No panic or overflow at the far end.
    assert!(!format_date(u64::MAX).is_empty());
}

#[test]
fn disposition_from_final_status() {
    use Disposition::*;
    let table = [
        (200, true, Answered),
        (487, true, Answered),
        (486, false, Busy),
        (600, false, Busy),
        (603, false, Busy),
        (408, false, NoAnswer),
        (480, false, NoAnswer),
        (487, false, NoAnswer),
        (200, false, Failed),
        (403, false, Failed),
        (404, false, Failed),
        (503, false, Failed),
        (0, false, Failed),
    ];
    for (code, answered, want) in table {
        assert_eq!(
            Disposition::from_final(code, answered),
            want,
            "{code} {answered}"
        );
    }
    for d in [Answered, NoAnswer, Busy, Failed] {
        assert_eq!(Disposition::parse(d.as_str()), Some(d));
    }
    assert_eq!(
        [Answered, NoAnswer, Busy, Failed].map(Disposition::as_str),
        ["answered", "noanswer", "busy", "failed"]
    );
    assert_eq!(Direction::Placed.as_str(), "placed");
    assert_eq!(Direction::Received.as_str(), "received");
}

#[test]
fn store_round_trips_every_field_and_uses_wal() {
    let db = TempDb::new("roundtrip");
    let mut store = CdrStore::open(&db.0).unwrap();
    let mut a = cdr(1);
    a.trunk_id = None;
    a.destination = String::new();
    a.disposition = Disposition::Busy;
    a.sip_code = 486;
    a.duration_s = 0;
    a.per_minute = 0.0;
    let b = Cdr {
        call_id: "b'\"; DROP TABLE cdr; --".into(),
        start_unix_ms: 1_709_210_096_000,
        trunk_id: Some(u64::from(u32::MAX) + 1),
        ..cdr(2)
    };
    store.insert(&[a.clone(), b.clone()]).unwrap();
    // Oldest first, regardless of insert order.
    assert_eq!(store.all().unwrap(), vec![b.clone(), a.clone()]);
    assert_eq!(store.count().unwrap(), 2);

    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // The columns the API and the lead's tests read directly.
    let row: (String, String, i64, String, String, i64, f64, Option<i64>) = conn
        .query_row(
            "SELECT date, type, duration, disposition, to_number, sip_code, charge, trunk_id \
             FROM cdr WHERE call_id = ?1",
            [&b.call_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "2024-02-29 12:34:56".into(),
            "placed".into(),
            2,
            "answered".into(),
            b.to.clone(),
            200,
            0.0004,
            Some(4_294_967_296)
        )
    );
}

#[test]
fn reopening_keeps_rows_and_schema() {
    let db = TempDb::new("reopen");
    CdrStore::open(&db.0).unwrap().insert(&[cdr(1)]).unwrap();
    let mut again = CdrStore::open(&db.0).unwrap();
    again.insert(&[cdr(2)]).unwrap();
    assert_eq!(again.all().unwrap(), vec![cdr(1), cdr(2)]);
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let idx: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'cdr_date'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(idx, 1);
}

#[test]
fn newer_schema_is_refused_with_the_path() {
    let db = TempDb::new("newer");
    drop(CdrStore::open(&db.0).unwrap());
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = CdrStore::open(&db.0).unwrap_err();
    assert!(matches!(err, CdrError::NewerSchema { .. }), "{err}");
    assert!(err.to_string().contains("newer.sqlite"), "{err}");
}

#[test]
fn corrupt_row_is_an_error_not_a_panic() {
    let db = TempDb::new("corrupt");
    let mut store = CdrStore::open(&db.0).unwrap();
    store.insert(&[cdr(1)]).unwrap();
    let conn = rusqlite::Connection::open(&db.0).unwrap();
    conn.execute("UPDATE cdr SET type = 'sideways'", [])
        .unwrap();
    let err = store.all().unwrap_err();
    assert!(
        matches!(err, CdrError::Corrupt { column: "type", .. }),
        "{err}"
    );
    conn.execute(
        "UPDATE cdr SET type = 'placed', b_transport = 'carrier-pigeon'",
        [],
    )
    .unwrap();
    let err = store.all().unwrap_err();
    assert!(
        matches!(err, CdrError::Corrupt { column: "b_transport", ref value, .. } if value == "carrier-pigeon"),
        "{err}"
    );
}

#[test]
fn filter_by_direction_dates_and_page() {
    let db = TempDb::new("filter");
    let mut store = CdrStore::open(&db.0).unwrap();
    let day = 86_400_000;
    let base = 1_795_392_000_000; // 2026-11-23 00:00:00
    let rows: Vec<Cdr> = (0..6)
        .map(|i| Cdr {
            start_unix_ms: base + (i / 2) * day + 3_600_000,
            ..cdr(i)
        })
        .collect();
    store.insert(&rows).unwrap();
    let placed = CdrFilter {
        direction: Some(Direction::Placed),
        ..CdrFilter::default()
    };
    assert_eq!(
        store.query(&placed).unwrap(),
        vec![rows[0].clone(), rows[2].clone(), rows[4].clone()]
    );
    let one_day = CdrFilter {
        from_date: Some("2026-11-24".into()),
        to_date: Some("2026-11-24".into()),
        ..CdrFilter::default()
    };
    assert_eq!(store.query(&one_day).unwrap(), rows[2..4].to_vec());
    let page = CdrFilter {
        limit: Some(2),
        offset: 3,
        ..CdrFilter::default()
    };
    assert_eq!(store.query(&page).unwrap(), rows[3..5].to_vec());
    assert_eq!(store.count_matching(&page).unwrap(), 6);
    assert_eq!(store.count_matching(&placed).unwrap(), 3);
    let offset_only = CdrFilter {
        offset: 5,
        ..CdrFilter::default()
    };
    assert_eq!(store.query(&offset_only).unwrap(), rows[5..].to_vec());
}

#[test]
fn open_creates_parent_dirs_and_reports_the_path() {
    let db = TempDb::new("dirs");
    let nested = db.0.with_file_name("a/b/c.sqlite");
    CdrStore::open(&nested).unwrap();
    assert!(nested.exists());
    // A directory where the file should be cannot be opened.
    let err = CdrStore::open(nested.parent().unwrap()).unwrap_err();
    assert!(err.to_string().contains("a/b"), "{err}");
}

#[test]
fn writer_commits_everything_from_four_threads() {
    let db = TempDb::new("writer");
    let (writer, sink) = CdrWriter::start(&db.0, 65_536).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..2_500 {
                    assert!(sink.record(cdr(t * 2_500 + i)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    writer.shutdown().unwrap();
    assert_eq!(sink.written(), 10_000);
    assert_eq!(sink.dropped(), 0);
    assert_eq!(sink.failed(), 0);
    assert_eq!(CdrStore::open(&db.0).unwrap().count().unwrap(), 10_000);
    // The writer is gone: further records are refused and counted.
    assert!(!sink.record(cdr(1)));
    assert_eq!(sink.dropped(), 1);
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    // No thread drains this queue, so "full" is deterministic.
    let (sink, rx) = CdrSink::channel(1);
    assert!(sink.record(cdr(1)));
    assert!(!sink.record(cdr(2)));
    assert!(!sink.clone().record(cdr(3)));
    assert_eq!(sink.dropped(), 2);
    assert!(matches!(rx.try_recv(), Ok(Msg::Record(c)) if c == cdr(1)));
    assert!(sink.record(cdr(4)));
    drop(rx); // the writer died
    assert!(!sink.record(cdr(5)));
    assert_eq!(sink.dropped(), 3);
    assert_eq!(sink.written(), 0);
}

#[test]
fn disabled_sink_discards_quietly() {
    let sink = CdrSink::disabled();
    assert!(!sink.record(cdr(1)));
    assert_eq!((sink.dropped(), sink.written(), sink.failed()), (0, 0, 0));
}

#[test]
fn sink_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<CdrSink>();
}

#[test]
fn insert_failure_is_counted_and_the_writer_keeps_going() {
    let db = TempDb::new("failure");
    let (writer, sink) = CdrWriter::start(&db.0, 16).unwrap();
    let other = rusqlite::Connection::open(&db.0).unwrap();
    other.execute_batch("DROP TABLE cdr").unwrap();
    assert!(sink.record(cdr(1)));
    wait_until("the failed insert", || sink.failed() == 1);
    other.execute_batch(super::store::SCHEMA_V1).unwrap();
    other.execute_batch(super::store::SCHEMA_V3).unwrap();
    assert!(sink.record(cdr(2)));
    wait_until("the next insert", || sink.written() == 1);
    writer.shutdown().unwrap();
    assert_eq!((sink.failed(), sink.written(), sink.dropped()), (1, 1, 0));
    assert_eq!(CdrStore::open(&db.0).unwrap().all().unwrap(), vec![cdr(2)]);
}

#[test]
fn shutdown_flushes_a_full_queue_and_drop_stops_too() {
    let db = TempDb::new("flush");
    let (writer, sink) = CdrWriter::start(&db.0, 4).unwrap();
    let mut queued = 0;
    for i in 0..2_000 {
        queued += u64::from(sink.record(cdr(i)));
    }
    writer.shutdown().unwrap();
    assert_eq!(sink.written(), queued);
    assert_eq!(sink.dropped(), 2_000 - queued);

    let (writer, sink) = CdrWriter::start(&db.0, 64).unwrap();
    for i in 0..50 {
        assert!(sink.record(cdr(i)));
    }
    drop(writer);
    assert_eq!(sink.written(), 50);
    assert_eq!(CdrStore::open(&db.0).unwrap().count().unwrap(), queued + 50);
}

#[test]
fn newest_first_stats_and_keyset_cursor() {
    let db = TempDb::new("newest");
    let mut store = CdrStore::open(&db.0).unwrap();
    // Two rows in the same second: insertion order breaks the tie.
    let rows: Vec<Cdr> = (0..7)
        .map(|i| Cdr {
            start_unix_ms: 1_795_392_000_000 + (i / 2) * 1000,
            per_minute: 0.0133,
            ..cdr(i)
        })
        .collect();
    store.insert(&rows).unwrap();
    let newest = CdrFilter {
        newest_first: true,
        ..CdrFilter::default()
    };
    let mut want: Vec<Cdr> = rows.clone();
    want.reverse();
    assert_eq!(store.query(&newest).unwrap(), want);
    let page = CdrFilter {
        limit: Some(3),
        offset: 2,
        ..newest.clone()
    };
    assert_eq!(store.query(&page).unwrap(), want[2..5].to_vec());

    // Walking in chunks of 2 with the cursor gives the same rows.
    let mut walked = Vec::new();
    let mut before = None;
    loop {
        let chunk = store
            .query_keyed(&CdrFilter {
                limit: Some(2),
                before: before.clone(),
                ..newest.clone()
            })
            .unwrap();
        let Some((last, _)) = chunk.last() else { break };
        before = Some(last.clone());
        walked.extend(chunk.into_iter().map(|(_, c)| c));
    }
    assert_eq!(walked, want);

    // Stats over the whole filtered set, summing the stored (rounded) charge.
    let placed = CdrFilter {
        direction: Some(Direction::Placed),
        limit: Some(1),
        ..newest.clone()
    };
    let s = store.stats(&placed).unwrap();
    let mine: Vec<&Cdr> = rows
        .iter()
        .filter(|c| c.direction == Direction::Placed)
        .collect();
    assert_eq!(s.count, mine.len() as u64);
    assert_eq!(s.duration, mine.iter().map(|c| c.duration_s).sum::<u64>());
    let sum: f64 = mine.iter().map(|c| c.charge()).sum();
    assert!((s.charge - sum).abs() < 1e-9, "{s:?} vs {sum}");
    let none = CdrFilter {
        from_date: Some("2030-01-01".into()),
        ..CdrFilter::default()
    };
    assert_eq!(store.stats(&none).unwrap(), CdrStats::default());
}

#[test]
fn queries_use_the_date_indexes_without_a_sort() {
    let db = TempDb::new("plan");
    let store = CdrStore::open(&db.0).unwrap();
    let by_type = CdrFilter {
        direction: Some(Direction::Received),
        from_date: Some("2026-11-01".into()),
        to_date: Some("2026-11-30".into()),
        limit: Some(100),
        newest_first: true,
        ..CdrFilter::default()
    };
    let plan = store.query_plan(&by_type).unwrap().join("\n");
    assert!(plan.contains("cdr_type_date"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    let by_date = CdrFilter {
        direction: None,
        before: Some(CdrCursor {
            date: "2026-11-23 10:00:00".into(),
            id: 5,
        }),
        ..by_type.clone()
    };
    let plan = store.query_plan(&by_date).unwrap().join("\n");
    assert!(plan.contains("cdr_date"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    let all = CdrFilter {
        newest_first: true,
        limit: Some(100),
        ..CdrFilter::default()
    };
    let plan = store.query_plan(&all).unwrap().join("\n");
    assert!(plan.contains("cdr_date"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
}

/// Rows spread over five days, both directions.
/// Turns a current file into one as version `to` (1 or 2) wrote it: no
/// leg transports, and for 1 no day totals either.
fn downgrade(path: &std::path::Path, to: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "ALTER TABLE cdr DROP COLUMN a_transport; ALTER TABLE cdr DROP COLUMN b_transport;",
    )
    .unwrap();
    if to == 1 {
        conn.execute_batch("DROP TRIGGER cdr_day_count; DROP TABLE cdr_day;")
            .unwrap();
    }
    conn.pragma_update(None, "user_version", to).unwrap();
}

#[test]
fn a_version_2_file_gets_leg_transports_empty_on_old_rows() {
    let db = TempDb::new("v2");
    let old: Vec<Cdr> = (0..3).map(cdr).collect();
    CdrStore::open(&db.0).unwrap().insert(&old).unwrap();
    downgrade(&db.0, 2);
    let mut store = CdrStore::open(&db.0).unwrap();
    let new = Cdr {
        call_id: "after-migration".into(),
        a_transport: Some(Transport::Wss),
        b_transport: None,
        ..cdr(3)
    };
    store.insert(std::slice::from_ref(&new)).unwrap();
    let got = store.all().unwrap();
    let transports: Vec<_> = got.iter().map(|c| (c.a_transport, c.b_transport)).collect();
    assert_eq!(
        transports,
        [
            (None, None),
            (None, None),
            (None, None),
            (Some(Transport::Wss), None)
        ]
    );
    // Everything else of the old rows is as it was.
    let blank = |c: &Cdr| Cdr {
        a_transport: None,
        b_transport: None,
        ..c.clone()
    };
    assert_eq!(got[..3], old.iter().map(blank).collect::<Vec<_>>()[..]);
    assert_eq!(store.stats(&CdrFilter::default()).unwrap().count, 4);
    drop(store);
    // Reopening a version-3 file runs no step again.
    assert_eq!(CdrStore::open(&db.0).unwrap().all().unwrap(), got);
}

#[test]
fn a_spill_line_without_leg_transports_still_reads() {
    let line = serde_json::to_string(&Keyed {
        uid: "u-1".into(),
        cdr: cdr(1),
    })
    .unwrap()
    .replace(r#","a_transport":"tls","b_transport":"udp""#, "");
    assert!(!line.contains("transport"), "{line}");
    let back: Keyed = serde_json::from_str(&line).unwrap();
    assert_eq!((back.cdr.a_transport, back.cdr.b_transport), (None, None));
    assert_eq!(back.cdr.call_id, cdr(1).call_id);
}

fn days_of_rows() -> Vec<Cdr> {
    (0..50)
        .map(|i| Cdr {
            start_unix_ms: 1_795_425_300_000 + i * 9_000_000, // 2.5 h apart
            ..cdr(i)
        })
        .collect()
}

/// What `stats` must say for `keep`, summed here row by row.
fn expected(rows: &[Cdr], keep: impl Fn(&Cdr) -> bool) -> (u64, u64, f64) {
    let mine: Vec<&Cdr> = rows.iter().filter(|c| keep(c)).collect();
    (
        mine.len() as u64,
        mine.iter().map(|c| c.duration_s).sum(),
        mine.iter().map(|c| c.charge()).sum(),
    )
}

#[test]
fn stats_from_day_totals_match_a_row_by_row_sum() {
    let db = TempDb::new("day-totals");
    let mut store = CdrStore::open(&db.0).unwrap();
    let rows = days_of_rows();
    store.insert(&rows[..20]).unwrap();
    store.insert(&rows[20..]).unwrap();
    let day = |c: &Cdr| c.date()[..10].to_owned();
    let (first, last) = (day(&rows[0]), day(&rows[49]));
    assert_ne!(first, last, "the rows span several days");
    type Keep<'a> = Box<dyn Fn(&Cdr) -> bool + 'a>;
    let cases: Vec<(CdrFilter, Keep<'_>)> = vec![
        (CdrFilter::default(), Box::new(|_| true)),
        (
            CdrFilter {
                direction: Some(Direction::Received),
                from_date: Some(day(&rows[10])),
                ..CdrFilter::default()
            },
            Box::new(|c| c.direction == Direction::Received && day(c) >= day(&rows[10])),
        ),
        (
            CdrFilter {
                to_date: Some(day(&rows[30])),
                ..CdrFilter::default()
            },
            Box::new(|c| day(c) <= day(&rows[30])),
        ),
        // A time of day in a bound: the rows themselves are summed.
        (
            CdrFilter {
                from_date: Some(rows[25].date()),
                ..CdrFilter::default()
            },
            Box::new(|c| c.date() >= rows[25].date()),
        ),
    ];
    for (i, (filter, keep)) in cases.iter().enumerate() {
        let s = store.stats(filter).unwrap();
        let (count, duration, charge) = expected(&rows, keep);
        assert_eq!((s.count, s.duration), (count, duration), "case {i}");
        assert!(
            (s.charge - charge).abs() < 1e-9,
            "case {i}: {s:?} vs {charge}"
        );
    }
}

#[test]
fn a_version_1_file_gets_its_day_totals_backfilled() {
    let db = TempDb::new("v1");
    let rows = days_of_rows();
    CdrStore::open(&db.0).unwrap().insert(&rows).unwrap();
    // Make it a version-1 file: no day totals yet.
    downgrade(&db.0, 1);
    let mut store = CdrStore::open(&db.0).unwrap();
    let more = Cdr {
        call_id: "after-migration".into(),
        ..rows[49].clone()
    };
    store.insert(std::slice::from_ref(&more)).unwrap();
    let s = store.stats(&CdrFilter::default()).unwrap();
    let (count, duration, _) = expected(&rows, |_| true);
    assert_eq!(
        (s.count, s.duration),
        (count + 1, duration + more.duration_s)
    );
}
