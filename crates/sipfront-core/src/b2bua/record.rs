//! The call detail record as a value, and the pure helpers that fill it in
//! (billing seconds, charge, disposition, the SPEC §6 `date` text).

use crate::sip::Transport;

/// Which way the call went, from the trunk's point of view (SPEC §6 `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The trunk placed the call (outbound through an upstream or on-net).
    Placed,
    /// The trunk received the call (an inbound DID).
    Received,
}

impl Direction {
    /// The text stored in the `type` column and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Placed => "placed",
            Direction::Received => "received",
        }
    }

    /// Inverse of [`Direction::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "placed" => Some(Direction::Placed),
            "received" => Some(Direction::Received),
            _ => None,
        }
    }
}

/// How the attempt ended (SPEC §6 `disposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Answered (a 2xx reached the A-leg).
    Answered,
    /// Nobody answered: timeout, unavailable, or the caller cancelled.
    NoAnswer,
    /// The callee was busy or declined.
    Busy,
    /// Any other failure, including our own refusals.
    Failed,
}

impl Disposition {
    /// From the A-leg's final status and whether the call was answered:
    /// answered → Answered; 486, 600, 603 → Busy; 408, 480, 487 → NoAnswer;
    /// anything else → Failed.
    pub fn from_final(sip_code: u16, answered: bool) -> Disposition {
        if answered {
            return Disposition::Answered;
        }
        match sip_code {
            486 | 600 | 603 => Disposition::Busy,
            408 | 480 | 487 => Disposition::NoAnswer,
            _ => Disposition::Failed,
        }
    }

    /// The text stored in the `disposition` column and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::NoAnswer => "noanswer",
            Disposition::Busy => "busy",
            Disposition::Failed => "failed",
        }
    }

    /// Inverse of [`Disposition::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Disposition> {
        match s {
            "answered" => Some(Disposition::Answered),
            "noanswer" => Some(Disposition::NoAnswer),
            "busy" => Some(Disposition::Busy),
            "failed" => Some(Disposition::Failed),
            _ => None,
        }
    }
}

/// One record per call attempt, built by the B2BUA when the call ends.
/// Serializable so a record the database could not take yet can wait in a
/// local file (the fleet store's spill file) and be read back unchanged.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cdr {
    /// The A-leg Call-ID.
    pub call_id: String,
    /// When the INVITE arrived (wall clock, ms since the Unix epoch).
    pub start_unix_ms: u64,
    /// Placed or received.
    pub direction: Direction,
    /// Caller number as sent on (caller ID after policy).
    pub from: String,
    /// Dialled number after rewrite.
    pub to: String,
    /// Billed seconds (see [`billed_seconds`]); 0 if not answered.
    pub duration_s: u64,
    /// How the attempt ended.
    pub disposition: Disposition,
    /// Final status the A-leg got (200 when answered).
    pub sip_code: u16,
    /// Rate per minute; 0 when there is none (on-net, refused before rating).
    pub per_minute: f64,
    /// The rate's destination name; may be empty.
    pub destination: String,
    /// Trunk login (name).
    pub sip_trunk: String,
    /// Trunk id, when the call belongs to a configured trunk.
    pub trunk_id: Option<u64>,
    /// Transport of the caller's leg; `None` on a record written before
    /// it was kept.
    #[serde(default)]
    pub a_transport: Option<Transport>,
    /// Transport of the callee's leg (its last attempt); `None` when the
    /// call was refused before one was tried, or on an older record.
    #[serde(default)]
    pub b_transport: Option<Transport>,
}

impl Cdr {
    /// per_minute × duration_s / 60, rounded to 4 decimals (per-second
    /// billing). Computed, not stored in the struct, so it cannot disagree
    /// with the duration and rate it comes from.
    pub fn charge(&self) -> f64 {
        let raw = self.per_minute * self.duration_s as f64 / 60.0;
        (raw * 10_000.0).round() / 10_000.0
    }

    /// The SPEC §6 `date` text for this record's start.
    pub fn date(&self) -> String {
        format_date(self.start_unix_ms)
    }
}

/// Seconds billed for an answered call of `ms` milliseconds: whole seconds
/// rounded up (per-second billing, a started second counts).
pub fn billed_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// "YYYY-MM-DD HH:MM:SS" UTC for a unix ms timestamp. Fixed width and
/// zero padded, so text order is time order (the store filters on it).
pub fn format_date(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`, restricted to days ≥ 0 so
/// it runs on unsigned integers and cannot overflow for any `u64` ms input.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}
