//! Call quality per trunk, counted once per call record (no clock or I/O:
//! the instants come from the call): the final response the caller got,
//! bucketed so the label set stays bounded, and the post-dial delay
//! (RFC 6076 §4.1: from the INVITE to the first ringing provisional, or to
//! the answer when nothing rang). ASR and NER are ratios of the final
//! response counters (README, HTTP API `/metrics`).

use std::collections::BTreeMap;
use std::time::Duration;

/// Upper bounds of the post-dial delay histogram, seconds.
pub const PDD_BUCKETS_S: [f64; 7] = [0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0];

/// Final responses an operator tells apart; any other is its class.
const CODES: [(u16, &str); 13] = [
    (200, "200"),
    (403, "403"),
    (404, "404"),
    (408, "408"),
    (480, "480"),
    (484, "484"),
    (486, "486"),
    (487, "487"),
    (488, "488"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (603, "603"),
];

/// The `code` label of a final response: one of [`CODES`], else its class
/// (`2xx`…`6xx`), else `other`. At most 19 values.
pub fn code_label(code: u16) -> &'static str {
    if let Some((_, l)) = CODES.iter().find(|(c, _)| *c == code) {
        return l;
    }
    match code / 100 {
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        6 => "6xx",
        _ => "other",
    }
}

/// One trunk's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quality {
    /// Calls by the `code` label of their final response.
    pub finals: BTreeMap<&'static str, u64>,
    /// Post-dial delays at or under each [`PDD_BUCKETS_S`] bound (not
    /// cumulative: the exposition adds them up).
    pub pdd_buckets: [u64; PDD_BUCKETS_S.len()],
    /// Post-dial delays measured (calls that rang or were answered).
    pub pdd_count: u64,
    /// Their sum, milliseconds.
    pub pdd_sum_ms: u64,
}

/// Per trunk login; bounded by the configured trunks.
pub type TrunkQuality = BTreeMap<String, Quality>;

/// Counts one ended call of `trunk`: its final `code` and, when it rang or
/// was answered, its post-dial delay.
pub(crate) fn count(q: &mut TrunkQuality, trunk: &str, code: u16, pdd: Option<Duration>) {
    let t = match q.get_mut(trunk) {
        Some(t) => t,
        None => q.entry(trunk.to_owned()).or_default(),
    };
    *t.finals.entry(code_label(code)).or_default() += 1;
    if let Some(d) = pdd {
        let secs = d.as_secs_f64();
        if let Some(i) = PDD_BUCKETS_S.iter().position(|b| secs <= *b) {
            if let Some(n) = t.pdd_buckets.get_mut(i) {
                *n += 1;
            }
        }
        t.pdd_count += 1;
        t.pdd_sum_ms = t
            .pdd_sum_ms
            .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_bucketed_and_delays_binned() {
        assert_eq!(code_label(486), "486");
        assert_eq!(code_label(481), "4xx");
        assert_eq!(code_label(699), "6xx");
        assert_eq!(code_label(99), "other");
        let mut q = TrunkQuality::new();
        count(&mut q, "pbx", 200, Some(Duration::from_millis(700)));
        count(&mut q, "pbx", 486, Some(Duration::from_millis(500)));
        count(&mut q, "pbx", 503, None);
        count(&mut q, "pbx", 200, Some(Duration::from_secs(60)));
        let t = &q["pbx"];
        assert_eq!(t.finals["200"], 2);
        assert_eq!(t.finals["486"], 1);
        assert_eq!(t.finals["503"], 1);
        // 0.5 s is in the 0.5 bucket, 0.7 s in 1; 60 s only in +Inf.
        assert_eq!(t.pdd_buckets, [1, 1, 0, 0, 0, 0, 0]);
        assert_eq!((t.pdd_count, t.pdd_sum_ms), (3, 61_200));
    }
}
