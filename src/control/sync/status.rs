//! What the trunk sync last did, for `/healthz` and `/metrics`. Plain data:
//! the shell records each pull's outcome with the wall-clock time it read.

use serde_json::{json, Value};

use super::remote::{Diff, SyncError};
use crate::cdr::format_date;
use crate::endpoint::metric;

/// How a pull that changed nothing learned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Same {
    /// `304 Not Modified` to our `If-None-Match`.
    NotModified,
    /// A full list equal to the set in force.
    Equal,
}

/// A pull that went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// A new set is in force.
    Applied {
        /// What changed.
        diff: Diff,
        /// The response's `ETag`, if any.
        etag: Option<String>,
    },
    /// The set in force stays.
    Unchanged {
        /// How we know.
        how: Same,
        /// The response's `ETag` (for [`Same::Equal`]).
        etag: Option<String>,
    },
}

/// The sync's record of its pulls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyncStatus {
    /// Unix ms of the last pull's end.
    pub(crate) last_attempt_ms: Option<u64>,
    /// Unix ms of the last pull that applied or confirmed the set.
    pub(crate) last_success_ms: Option<u64>,
    /// `"ok"`, `"unchanged"`, or why the last pull failed.
    pub(crate) last_result: Option<String>,
    /// The `ETag` of the set in force (sent as `If-None-Match`).
    pub(crate) etag: Option<String>,
    /// Pulls that failed, since start.
    pub(crate) failures: u64,
    /// Whether the last pull went through (`ok` or `unchanged`).
    pub(crate) up: bool,
}

impl SyncStatus {
    /// Notes one pull's outcome at `now_ms`. The `ETag` only moves with a
    /// set that is in force, so a `304` always means "what runs now".
    pub(crate) fn record(&mut self, now_ms: u64, outcome: &Result<Pulled, SyncError>) {
        self.last_attempt_ms = Some(now_ms);
        self.up = outcome.is_ok();
        match outcome {
            Ok(pulled) => {
                self.last_success_ms = Some(now_ms);
                let (result, etag) = match pulled {
                    Pulled::Applied { etag, .. } => ("ok", Some(etag)),
                    Pulled::Unchanged {
                        how: Same::Equal,
                        etag,
                    } => ("unchanged", Some(etag)),
                    Pulled::Unchanged {
                        how: Same::NotModified,
                        ..
                    } => ("unchanged", None),
                };
                self.last_result = Some(result.to_owned());
                if let Some(etag) = etag {
                    self.etag.clone_from(etag);
                }
            }
            Err(e) => {
                self.failures += 1;
                self.last_result = Some(e.to_string());
            }
        }
    }

    /// The `"sync"` object of `/healthz`; `trunks` is the count in force.
    /// Times are UTC `YYYY-MM-DD HH:MM:SS`, like CDR dates.
    pub(crate) fn to_json(&self, interval_s: u64, trunks: usize) -> Value {
        json!({
            "interval_s": interval_s,
            "last_attempt": self.last_attempt_ms.map(format_date),
            "last_success": self.last_success_ms.map(format_date),
            "last_result": self.last_result,
            "etag": self.etag,
            "trunks": trunks,
            "failures": self.failures,
        })
    }

    /// Appends the sync's Prometheus metrics to `out`.
    pub(crate) fn metrics(&self, out: &mut String) {
        metric(
            out,
            "sipfront_sync_up",
            "gauge",
            "1 if the last trunk sync pull succeeded (applied or unchanged), else 0.",
            u8::from(self.up),
        );
        let ms = self.last_success_ms.unwrap_or(0);
        metric(
            out,
            "sipfront_sync_last_success_timestamp_seconds",
            "gauge",
            "Unix time of the last successful trunk sync pull (0: none yet).",
            format_args!("{}.{:03}", ms / 1000, ms % 1000),
        );
        metric(
            out,
            "sipfront_sync_failures_total",
            "counter",
            "Trunk sync pulls that failed (the last good set stayed in force).",
            self.failures,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(etag: &str) -> Result<Pulled, SyncError> {
        Ok(Pulled::Applied {
            diff: Diff {
                total: 1,
                added: vec![1],
                removed: vec![],
                changed: vec![],
            },
            etag: Some(etag.to_owned()),
        })
    }

    #[test]
    fn failures_keep_the_etag_and_the_last_success() {
        let mut s = SyncStatus::default();
        assert!(!s.up);
        s.record(1_000, &applied("\"v1\""));
        assert!(s.up);
        s.record(
            2_000,
            &Err(SyncError::Status("500 Internal Server Error".into())),
        );
        assert!(!s.up);
        assert_eq!(s.etag.as_deref(), Some("\"v1\""));
        assert_eq!(
            (s.last_attempt_ms, s.last_success_ms),
            (Some(2_000), Some(1_000))
        );
        assert_eq!(
            s.last_result.as_deref(),
            Some("remote answered HTTP 500 Internal Server Error")
        );
        s.record(
            3_000,
            &Ok(Pulled::Unchanged {
                how: Same::NotModified,
                etag: None,
            }),
        );
        assert!(s.up);
        assert_eq!(s.etag.as_deref(), Some("\"v1\""), "a 304 keeps the ETag");
        assert_eq!(s.last_result.as_deref(), Some("unchanged"));
        // A full equal list without an ETag clears it: nothing to send next time.
        s.record(
            4_000,
            &Ok(Pulled::Unchanged {
                how: Same::Equal,
                etag: None,
            }),
        );
        assert_eq!(s.etag, None);
        assert_eq!(s.failures, 1);

        let mut m = String::new();
        s.metrics(&mut m);
        assert!(m.contains("\nsipfront_sync_up 1\n"), "{m}");
        assert!(
            m.contains("\nsipfront_sync_last_success_timestamp_seconds 4.000\n"),
            "{m}"
        );
        assert!(m.contains("\nsipfront_sync_failures_total 1\n"), "{m}");
        let j = s.to_json(60, 3);
        assert_eq!(j["last_success"], "1970-01-01 00:00:04");
        assert_eq!(
            (j["trunks"].as_u64(), j["failures"].as_u64()),
            (Some(3), Some(1))
        );
    }
}
