//! The SQLite file behind the CDRs. Blocking: only the writer thread (and,
//! later, the API on a blocking task) touches it, never the hot path.

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{params, Connection};

use crate::b2bua::record::{format_date, Cdr, Direction, Disposition};
use crate::sip::Transport;
use crate::store::{open_connection, OpenFailure};

/// `PRAGMA user_version` of a current file; bumped, with a migration
/// step, whenever the schema changes.
pub const SCHEMA_VERSION: i64 = 3;

pub(super) const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS cdr (
    id          INTEGER PRIMARY KEY,
    call_id     TEXT NOT NULL,
    date        TEXT NOT NULL,
    ts_ms       INTEGER NOT NULL,
    type        TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    duration    INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    sip_code    INTEGER NOT NULL,
    charge      REAL NOT NULL,
    per_minute  REAL NOT NULL,
    destination TEXT NOT NULL,
    sip_trunk   TEXT NOT NULL,
    trunk_id    INTEGER NULL
);
CREATE INDEX IF NOT EXISTS cdr_date ON cdr (date);
CREATE INDEX IF NOT EXISTS cdr_type_date ON cdr (type, date);
";

/// Version 2: per-day running totals, kept by a trigger in the same
/// transaction as each insert, so stats over whole days read one row per
/// day and type instead of scanning every call (1M rows: ~140 ms → < 1 ms).
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS cdr_day (
    day      TEXT NOT NULL,
    type     TEXT NOT NULL,
    count    INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    charge   REAL NOT NULL,
    PRIMARY KEY (day, type)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS cdr_day_count AFTER INSERT ON cdr BEGIN
    INSERT INTO cdr_day (day, type, count, duration, charge)
    VALUES (substr(NEW.date, 1, 10), NEW.type, 1, NEW.duration, NEW.charge)
    ON CONFLICT (day, type) DO UPDATE SET
        count = count + 1,
        duration = duration + excluded.duration,
        charge = charge + excluded.charge;
END;
";

/// Version 3: the transport of each leg (`udp`, `tcp`, `tls`, `ws`,
/// `wss`); rows written before it read as empty. Not idempotent (SQLite
/// has no `ADD COLUMN IF NOT EXISTS`): run once, from versions below 3.
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE cdr ADD COLUMN a_transport TEXT NOT NULL DEFAULT '';
ALTER TABLE cdr ADD COLUMN b_transport TEXT NOT NULL DEFAULT '';
";

/// Fills `cdr_day` from the rows a version-1 file already holds.
const BACKFILL_V2: &str = "INSERT OR REPLACE INTO cdr_day (day, type, count, duration, charge) \
     SELECT substr(date, 1, 10), type, COUNT(*), SUM(duration), SUM(charge) FROM cdr GROUP BY 1, 2";

const INSERT: &str = "INSERT INTO cdr (call_id, date, ts_ms, type, from_number, to_number, \
     duration, disposition, sip_code, charge, per_minute, destination, sip_trunk, trunk_id, \
     a_transport, b_transport) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

pub(crate) const SELECT: &str =
    "SELECT id, call_id, ts_ms, type, from_number, to_number, duration, \
     disposition, sip_code, per_minute, destination, sip_trunk, trunk_id, \
     a_transport, b_transport FROM cdr";

/// Everything that can go wrong with the store; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// The parent directory could not be created.
    #[error("CDR store {}: creating directory: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite refused an open, a pragma, the migration or a statement.
    #[error("CDR store {}: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer build with a schema we do not know.
    #[error("CDR store {}: schema version {found} is newer than this build's {SCHEMA_VERSION}", path.display())]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
    },
    /// A row holds a value no writer of ours would have stored.
    #[error("CDR store {}: row {row_id}: bad {column} {value:?}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Primary key of the row.
        row_id: i64,
        /// Column holding the bad value.
        column: &'static str,
        /// The value, as text.
        value: String,
    },
    /// The writer thread could not be started.
    #[error("CDR store {}: starting the writer thread: {source}", path.display())]
    Spawn {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The fleet store (PostgreSQL) refused or could not be reached;
    /// `url` has no password.
    #[error("CDR store {url}: {message}")]
    Postgres {
        /// The database URL, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The spill file (CDRs waiting for the fleet store) could not be
    /// written or read.
    #[error("CDR spill file {}: {source}", path.display())]
    Spill {
        /// The spill file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread panicked (a bug); records still queued are lost.
    #[error("CDR store {}: the writer thread panicked", path.display())]
    WriterPanicked {
        /// The store file.
        path: PathBuf,
    },
}

/// Which rows [`CdrStore::query`] returns. The default is all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    /// Only placed or only received calls.
    pub direction: Option<Direction>,
    /// Inclusive lower bound on `date`, compared as text: "2026-11-01" or
    /// "2026-11-01 08:00:00".
    pub from_date: Option<String>,
    /// Inclusive upper bound on `date`; a bare day ("2026-11-23") includes
    /// that whole day.
    pub to_date: Option<String>,
    /// At most this many rows.
    pub limit: Option<u64>,
    /// Skip this many rows first (for pages).
    pub offset: u64,
    /// Newest first (by `date`, then insertion order), which the `cdr_date`
    /// and `cdr_type_date` indexes deliver without a sort; the default is
    /// oldest first (by `ts_ms`).
    pub newest_first: bool,
    /// With `newest_first`: only rows older than this one (keyset paging,
    /// for exports that walk the whole set in chunks without `OFFSET`).
    pub before: Option<CdrCursor>,
}

/// A row's place in newest-first order: its `date` text and row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdrCursor {
    /// The row's `date` ("YYYY-MM-DD HH:MM:SS").
    pub date: String,
    /// The row's primary key.
    pub id: i64,
}

/// Totals over every row a filter selects (limit and offset ignored).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CdrStats {
    /// Number of rows.
    pub count: u64,
    /// Sum of `duration` (billed seconds).
    pub duration: u64,
    /// Sum of the stored (per-row rounded) `charge`.
    pub charge: f64,
}

impl CdrStats {
    /// From the three sums a totals query returns.
    pub(crate) fn from_sums(count: i64, duration: i64, charge: f64) -> CdrStats {
        CdrStats {
            count: u64::try_from(count).unwrap_or(0),
            duration: u64::try_from(duration).unwrap_or(0),
            charge,
        }
    }
}

/// What the API reads CDRs through: the embedded file ([`CdrStore`]) or
/// the fleet store (`PgCdr`). Blocking; used on blocking tasks.
pub trait CdrSource {
    /// Like [`CdrStore::query_keyed`].
    ///
    /// # Errors
    /// The store cannot be read or holds a bad row.
    fn query_keyed(&self, filter: &CdrFilter) -> Result<Vec<(CdrCursor, Cdr)>, CdrError>;
    /// Like [`CdrStore::stats`].
    ///
    /// # Errors
    /// The store cannot be read.
    fn stats(&self, filter: &CdrFilter) -> Result<CdrStats, CdrError>;
    /// Like [`CdrStore::count_matching`].
    ///
    /// # Errors
    /// The store cannot be read.
    fn count_matching(&self, filter: &CdrFilter) -> Result<u64, CdrError>;
    /// The rows `filter` selects, oldest first (newest first if it says
    /// so), without their cursors.
    ///
    /// # Errors
    /// As [`CdrSource::query_keyed`].
    fn query(&self, filter: &CdrFilter) -> Result<Vec<Cdr>, CdrError> {
        Ok(self
            .query_keyed(filter)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }
}

impl CdrSource for CdrStore {
    fn query_keyed(&self, filter: &CdrFilter) -> Result<Vec<(CdrCursor, Cdr)>, CdrError> {
        CdrStore::query_keyed(self, filter)
    }
    fn stats(&self, filter: &CdrFilter) -> Result<CdrStats, CdrError> {
        CdrStore::stats(self, filter)
    }
    fn count_matching(&self, filter: &CdrFilter) -> Result<u64, CdrError> {
        CdrStore::count_matching(self, filter)
    }
}

/// An open CDR database.
#[derive(Debug)]
pub struct CdrStore {
    conn: Connection,
    path: PathBuf,
}

impl CdrStore {
    /// Opens or creates the SQLite file (and its parent directories), sets
    /// WAL (readers never block the writer), synchronous=NORMAL (safe with
    /// WAL; a power cut may lose the last commits, not the file), a busy
    /// timeout, and migrates the schema.
    pub fn open(path: &Path) -> Result<CdrStore, CdrError> {
        let owned = path.to_path_buf();
        let conn = open_connection(path).map_err(|e| match e {
            OpenFailure::Io(source) => CdrError::Io {
                path: owned.clone(),
                source,
            },
            OpenFailure::Sqlite(source) => CdrError::Sqlite {
                path: owned.clone(),
                source,
            },
        })?;
        let mut store = CdrStore { conn, path: owned };
        store.migrate()?;
        Ok(store)
    }

    /// Brings the schema to [`SCHEMA_VERSION`]. Every step is idempotent,
    /// so reopening a current file only reads `user_version`.
    fn migrate(&mut self) -> Result<(), CdrError> {
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if found > SCHEMA_VERSION {
            return Err(CdrError::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self.conn.transaction().map_err(|e| sqlite(&self.path, e))?;
        tx.execute_batch(SCHEMA_V1)
            .and_then(|()| tx.execute_batch(SCHEMA_V2))
            .and_then(|()| {
                if found == 1 {
                    tx.execute_batch(BACKFILL_V2)?;
                }
                if found < 3 {
                    tx.execute_batch(SCHEMA_V3)?;
                }
                Ok(())
            })
            .and_then(|()| tx.pragma_update(None, "user_version", SCHEMA_VERSION))
            .and_then(|()| tx.commit())
            .map_err(|e| sqlite(&self.path, e))
    }

    /// The file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts many records in ONE transaction: all or none.
    pub fn insert(&mut self, cdrs: &[Cdr]) -> Result<(), CdrError> {
        let tx = self.conn.transaction().map_err(|e| sqlite(&self.path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(INSERT)
                .map_err(|e| sqlite(&self.path, e))?;
            for c in cdrs {
                stmt.execute(params![
                    c.call_id,
                    format_date(c.start_unix_ms),
                    to_i64(c.start_unix_ms),
                    c.direction.as_str(),
                    c.from,
                    c.to,
                    to_i64(c.duration_s),
                    c.disposition.as_str(),
                    c.sip_code,
                    finite(c.charge()),
                    finite(c.per_minute),
                    c.destination,
                    c.sip_trunk,
                    c.trunk_id.map(to_i64),
                    leg_text(c.a_transport),
                    leg_text(c.b_transport),
                ])
                .map_err(|e| sqlite(&self.path, e))?;
            }
        }
        tx.commit().map_err(|e| sqlite(&self.path, e))
    }

    /// All rows, oldest first.
    pub fn all(&self) -> Result<Vec<Cdr>, CdrError> {
        self.query(&CdrFilter::default())
    }

    /// Like [`CdrStore::query`], each row with its cursor (to continue a
    /// newest-first walk after it with [`CdrFilter::before`]).
    pub fn query_keyed(&self, filter: &CdrFilter) -> Result<Vec<(CdrCursor, Cdr)>, CdrError> {
        let (sql, args) = select_sql(filter, Dialect::Sqlite);
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values(args)), RawRow::read)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let row = row.map_err(|e| self.err(e))?;
            out.push(row.into_keyed(&self.path)?);
        }
        Ok(out)
    }

    /// Count, duration and charge totals of every row `filter` selects
    /// (limit, offset and cursor ignored): one aggregate over the stored
    /// `charge` column, so the amount is the sum of the rounded charges.
    /// Bounds that are whole days (or none) read the per-day totals; a
    /// bound with a time of day scans the rows it selects.
    pub fn stats(&self, filter: &CdrFilter) -> Result<CdrStats, CdrError> {
        let (sql, args) = stats_sql(filter, Dialect::Sqlite);
        let (count, duration, charge): (i64, i64, f64) = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut st| {
                st.query_row(rusqlite::params_from_iter(values(args)), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(|e| self.err(e))?;
        Ok(CdrStats::from_sums(count, duration, charge))
    }

    /// SQLite's plan for the row query `filter` makes (`EXPLAIN QUERY
    /// PLAN` detail lines), to check that it uses the indexes.
    pub fn query_plan(&self, filter: &CdrFilter) -> Result<Vec<String>, CdrError> {
        let (sql, args) = select_sql(filter, Dialect::Sqlite);
        let mut stmt = self
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values(args)), |r| {
                r.get::<_, String>(3)
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Number of rows.
    pub fn count(&self) -> Result<u64, CdrError> {
        self.count_matching(&CdrFilter::default())
    }

    /// Number of rows `filter` selects, ignoring its limit and offset (the
    /// total a paginated listing reports).
    pub fn count_matching(&self, filter: &CdrFilter) -> Result<u64, CdrError> {
        let (sql, args) = count_sql(filter, Dialect::Sqlite);
        let n: i64 = self
            .conn
            .query_row(&sql, rusqlite::params_from_iter(values(args)), |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn err(&self, source: rusqlite::Error) -> CdrError {
        sqlite(&self.path, source)
    }
}

fn sqlite(path: &Path, source: rusqlite::Error) -> CdrError {
    CdrError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// SQLite integers are i64; values past that are not real timestamps,
/// durations or ids, so saturate rather than fail a whole batch over one.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// SQLite stores NaN as NULL, which the NOT NULL columns would refuse and so
/// fail the whole batch: a bad rate is stored as 0 instead.
pub(crate) fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Which SQL the shared query builders write: the placeholders and the
/// "no limit" spelling differ, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The embedded file: `?` placeholders, `LIMIT -1`.
    Sqlite,
    /// The fleet store: `$1, $2, …` placeholders, `LIMIT ALL`.
    Postgres,
}

/// One bound argument of a built query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// A text parameter.
    Text(String),
    /// An integer parameter.
    Int(i64),
}

impl From<Arg> for Value {
    fn from(a: Arg) -> Value {
        match a {
            Arg::Text(t) => Value::Text(t),
            Arg::Int(i) => Value::Integer(i),
        }
    }
}

/// `sql` (written with `?`) with the dialect's placeholders.
fn placeholders(sql: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Sqlite => sql.to_owned(),
        Dialect::Postgres => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for ch in sql.chars() {
                if ch == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(ch);
                }
            }
            out
        }
    }
}

/// The row query for `filter` and its arguments.
pub(crate) fn select_sql(filter: &CdrFilter, dialect: Dialect) -> (String, Vec<Arg>) {
    let (clause, mut args) = where_clause(filter);
    let order = if filter.newest_first {
        // `id` is the rowid every index ends with, so the index order is
        // (date, id) and needs no sort.
        "date DESC, id DESC"
    } else {
        "ts_ms, id"
    };
    let mut sql = format!("{SELECT}{clause} ORDER BY {order}");
    match filter.limit {
        Some(n) => {
            sql.push_str(" LIMIT ?");
            args.push(Arg::Int(to_i64(n)));
        }
        // SQLite takes OFFSET only after a LIMIT.
        None if filter.offset > 0 => sql.push_str(match dialect {
            Dialect::Sqlite => " LIMIT -1",
            Dialect::Postgres => " LIMIT ALL",
        }),
        None => {}
    }
    if filter.offset > 0 {
        sql.push_str(" OFFSET ?");
        args.push(Arg::Int(to_i64(filter.offset)));
    }
    (placeholders(&sql, dialect), args)
}

/// The totals query for `filter`: over the per-day table when the bounds
/// are whole days (or none), else over the rows.
pub(crate) fn stats_sql(filter: &CdrFilter, dialect: Dialect) -> (String, Vec<Arg>) {
    let whole_day = |d: &Option<String>| d.as_ref().map_or(true, |d| d.len() == 10);
    let (sql, args) = if whole_day(&filter.from_date) && whole_day(&filter.to_date) {
        let (clause, args) = day_clause(filter);
        (
            format!(
                "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(duration), 0) AS BIGINT), \
                 COALESCE(SUM(charge), 0.0) FROM cdr_day{clause}"
            ),
            args,
        )
    } else {
        let (clause, args) = where_clause(&CdrFilter {
            before: None,
            ..filter.clone()
        });
        (
            format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(duration), 0) AS BIGINT), \
                 COALESCE(SUM(charge), 0.0) FROM cdr{clause}"
            ),
            args,
        )
    };
    (placeholders(&sql, dialect), args)
}

/// The count query for `filter` (limit and offset ignored).
pub(crate) fn count_sql(filter: &CdrFilter, dialect: Dialect) -> (String, Vec<Arg>) {
    let (clause, args) = where_clause(filter);
    (
        placeholders(&format!("SELECT COUNT(*) FROM cdr{clause}"), dialect),
        args,
    )
}

fn where_clause(f: &CdrFilter) -> (String, Vec<Arg>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(d) = f.direction {
        conds.push("type = ?");
        args.push(Arg::Text(d.as_str().to_owned()));
    }
    if let Some(from) = &f.from_date {
        conds.push("date >= ?");
        args.push(Arg::Text(from.clone()));
    }
    if let Some(to) = &f.to_date {
        conds.push("date <= ?");
        // A bare day means through its last second.
        let to = if to.len() == 10 {
            format!("{to} 23:59:59")
        } else {
            to.clone()
        };
        args.push(Arg::Text(to));
    }
    if let Some(c) = &f.before {
        // `date <= ?` is the index range; the rest drops the cursor's own
        // second down to the rows inserted before it.
        conds.push("date <= ? AND (date < ? OR id < ?)");
        args.push(Arg::Text(c.date.clone()));
        args.push(Arg::Text(c.date.clone()));
        args.push(Arg::Int(c.id));
    }
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

/// The `WHERE` of `filter` over `cdr_day` (whole-day bounds only).
fn day_clause(f: &CdrFilter) -> (String, Vec<Arg>) {
    let bounds = [
        f.direction.map(|d| ("type = ?", d.as_str().to_owned())),
        f.from_date.clone().map(|d| ("day >= ?", d)),
        f.to_date.clone().map(|d| ("day <= ?", d)),
    ];
    let (conds, args): (Vec<&str>, Vec<Arg>) = bounds
        .into_iter()
        .flatten()
        .map(|(c, v)| (c, Arg::Text(v)))
        .unzip();
    if conds.is_empty() {
        (String::new(), args)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), args)
    }
}

fn values(args: Vec<Arg>) -> Vec<Value> {
    args.into_iter().map(Value::from).collect()
}

/// A leg transport as both stores hold it: its `transport=` text, empty
/// when unknown (records from before it was kept, or no B-leg).
pub(crate) fn leg_text(t: Option<Transport>) -> &'static str {
    t.map_or("", Transport::as_lowercase)
}

/// A row as the database holds it, converted to a [`Cdr`] outside the
/// driver's callback so bad values become [`CdrError::Corrupt`] naming the
/// column. Both stores select the columns of `SELECT`, in its order.
pub(crate) struct RawRow {
    pub(crate) id: i64,
    pub(crate) call_id: String,
    pub(crate) ts_ms: i64,
    pub(crate) direction: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) duration: i64,
    pub(crate) disposition: String,
    pub(crate) sip_code: i64,
    pub(crate) per_minute: f64,
    pub(crate) destination: String,
    pub(crate) sip_trunk: String,
    pub(crate) trunk_id: Option<i64>,
    pub(crate) a_transport: String,
    pub(crate) b_transport: String,
}

impl RawRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            id: r.get(0)?,
            call_id: r.get(1)?,
            ts_ms: r.get(2)?,
            direction: r.get(3)?,
            from: r.get(4)?,
            to: r.get(5)?,
            duration: r.get(6)?,
            disposition: r.get(7)?,
            sip_code: r.get(8)?,
            per_minute: r.get(9)?,
            destination: r.get(10)?,
            sip_trunk: r.get(11)?,
            trunk_id: r.get(12)?,
            a_transport: r.get(13)?,
            b_transport: r.get(14)?,
        })
    }

    /// The record with its place in newest-first order.
    pub(crate) fn into_keyed(self, path: &Path) -> Result<(CdrCursor, Cdr), CdrError> {
        let id = self.id;
        let cdr = self.into_cdr(path)?;
        Ok((
            CdrCursor {
                date: cdr.date(),
                id,
            },
            cdr,
        ))
    }

    fn into_cdr(self, path: &Path) -> Result<Cdr, CdrError> {
        let bad = |column: &'static str, value: String| CdrError::Corrupt {
            path: path.to_path_buf(),
            row_id: self.id,
            column,
            value,
        };
        let direction =
            Direction::parse(&self.direction).ok_or_else(|| bad("type", self.direction.clone()))?;
        let disposition = Disposition::parse(&self.disposition)
            .ok_or_else(|| bad("disposition", self.disposition.clone()))?;
        let unsigned = |column, v: i64| u64::try_from(v).map_err(|_| bad(column, v.to_string()));
        let leg = |column, text: &str| match text {
            "" => Ok(None),
            t => Transport::from_token(t)
                .map(Some)
                .ok_or_else(|| bad(column, t.to_owned())),
        };
        let a_transport = leg("a_transport", &self.a_transport)?;
        let b_transport = leg("b_transport", &self.b_transport)?;
        Ok(Cdr {
            start_unix_ms: unsigned("ts_ms", self.ts_ms)?,
            duration_s: unsigned("duration", self.duration)?,
            sip_code: u16::try_from(self.sip_code)
                .map_err(|_| bad("sip_code", self.sip_code.to_string()))?,
            trunk_id: self.trunk_id.map(|v| unsigned("trunk_id", v)).transpose()?,
            call_id: self.call_id,
            direction,
            from: self.from,
            to: self.to,
            disposition,
            per_minute: self.per_minute,
            destination: self.destination,
            sip_trunk: self.sip_trunk,
            a_transport,
            b_transport,
        })
    }
}
