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
