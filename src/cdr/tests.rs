//! Pure helpers by table, then the store and the writer on real temp files.

use super::*;

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
