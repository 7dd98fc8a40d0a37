//! Call detail records: one per call attempt (SPEC §6), written to SQLite
//! (or, in a fleet, to PostgreSQL: [`PgCdr`]) off the hot path.
//!
//! The B2BUA builds a [`Cdr`] when a call ends and hands it to a
//! [`CdrSink`], which never blocks: a bounded queue feeds one
//! [`CdrWriter`] thread that inserts in batches, one transaction each. If
//! the disk falls behind, records are dropped and counted rather than
//! calls delayed (ARCHITECTURE principle 3). [`CdrStore`] is the file
//! itself, also what the API reads from.

mod pg;
mod store;
mod writer;

#[cfg(test)]
mod tests;

pub use crate::b2bua::record::{billed_seconds, format_date, Cdr, Direction, Disposition};
pub use pg::{Keyed, PgCdr, MAX_BATCH as PG_MAX_BATCH, SPILL_FILE};
pub use store::{CdrCursor, CdrError, CdrFilter, CdrSource, CdrStats, CdrStore, SCHEMA_VERSION};
pub use writer::{CdrSink, CdrWriter};

/// The one log line of every call attempt, at its end: what happened,
/// with the fields an operator filters on (`call_id`, `trunk`) as fields,
/// so `[log] format = "json"` gives them as keys of their own.
pub fn log_ended(cdr: &Cdr) {
    tracing::info!(
        call_id = %cdr.call_id,
        trunk = %cdr.sip_trunk,
        trunk_id = cdr.trunk_id,
        direction = cdr.direction.as_str(),
        to = %cdr.to,
        status = cdr.sip_code,
        disposition = cdr.disposition.as_str(),
        duration_s = cdr.duration_s,
        "call ended: {} ({})",
        cdr.disposition.as_str(),
        cdr.sip_code
    );
}
