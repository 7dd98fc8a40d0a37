//! CDRs in the fleet store (`[store] url`): every node inserts into one
//! PostgreSQL `cdr` table, so any node's `/v1/cdr` lists every node's calls.
//!
//! The hot path's side is the same [`CdrSink`] queue as on the embedded
//! store; only the writer thread differs. It inserts batches of up to
//! [`MAX_BATCH`] records as one statement (`INSERT … SELECT FROM UNNEST`
//! of one array per column, and the per-day totals of what it inserted:
//! one round trip per batch). When the database
//! cannot take them, nothing is lost:
//!
//! 1. records wait in the writer's memory, up to [`MEMORY_MAX`];
//! 2. beyond that, and at shutdown, they are appended to the spill file
//!    ([`SPILL_FILE`] beside `[store] path`), one JSON line each, synced;
//! 3. the writer retries every 1 s (backing off to 5 s) and, once the
//!    database answers, writes what is in memory, then replays the spill
//!    file and deletes it. A node restarted with a spill file replays it.
//!
//! Each record carries a unique id (`uid`: this process's random id and a
//! sequence number) and the insert skips ids already stored, so a batch
//! whose commit was lost in transit and is sent again is stored once.
//! `/metrics` counts written, spilled, replayed and pending records.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;

use super::store::{
    count_sql, finite, leg_text, select_sql, stats_sql, to_i64, Arg, CdrCursor, CdrError,
    CdrFilter, CdrSource, CdrStats, Dialect, RawRow,
};
use super::writer::{CdrSink, CdrWriter, Msg, Shared};
use crate::b2bua::record::{format_date, Cdr};
use crate::store::{PgPool, StoreError};

/// The spill file's name, in the directory of `[store] path`.
pub const SPILL_FILE: &str = "cdr-spill.jsonl";

/// Most records one insert statement takes.
pub const MAX_BATCH: usize = 1_000;

/// Records held in the writer's memory while the database is away; more
/// go to the spill file.
const MEMORY_MAX: usize = 10_000;

/// If the spill file cannot be written either, memory holds this many
/// before the oldest are given up (counted as failed, logged).
const MEMORY_HARD_MAX: usize = 4 * MEMORY_MAX;

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One statement: the rows (ids already stored skipped), then the per-day
/// totals of the rows really inserted, taken in (day, type) order so two
/// nodes' batches lock those rows in the same order.
const INSERT: &str = "WITH ins AS (INSERT INTO cdr (uid, call_id, date, ts_ms, type, \
     from_number, to_number, duration, disposition, sip_code, charge, per_minute, destination, \
     sip_trunk, trunk_id, a_transport, b_transport) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], \
     $6::text[], $7::text[], $8::int8[], $9::text[], $10::int8[], $11::float8[], \
     $12::float8[], $13::text[], $14::text[], $15::int8[], $16::text[], $17::text[]) \
     ON CONFLICT (uid) DO NOTHING RETURNING date, type, duration, charge), \
     days AS (INSERT INTO cdr_day (day, type, count, duration, charge) \
     SELECT substr(date, 1, 10), type, COUNT(*), SUM(duration), SUM(charge) FROM ins \
     GROUP BY 1, 2 ORDER BY 1, 2 \
     ON CONFLICT (day, type) DO UPDATE SET count = cdr_day.count + excluded.count, \
     duration = cdr_day.duration + excluded.duration, \
     charge = cdr_day.charge + excluded.charge) \
     SELECT COUNT(*) FROM ins";

/// A record with its unique id: what the spill file holds, one per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keyed {
    /// Unique per record across the fleet and restarts.
    pub uid: String,
    /// The record.
    pub cdr: Cdr,
}

/// The `cdr` table of a fleet store: the writer's inserts and the API's
/// reads. Blocking, like [`super::CdrStore`].
#[derive(Debug, Clone)]
pub struct PgCdr {
    db: PgPool,
}

fn pg_err(e: StoreError) -> CdrError {
    match e {
        StoreError::Postgres { url, message } => CdrError::Postgres { url, message },
        other => CdrError::Postgres {
            url: String::new(),
            message: other.to_string(),
        },
    }
}

impl PgCdr {
    /// The CDR side of a fleet store opened with [`crate::store::PgStore`]
    /// (which created the table).
    pub fn new(db: PgPool) -> PgCdr {
        PgCdr { db }
    }

    /// Inserts `rows` in one statement (all or none), skipping ids already
    /// stored; how many rows are new.
    ///
    /// # Errors
    /// The database could not be reached or refused the statement.
    pub fn insert(&self, rows: &[Keyed]) -> Result<u64, CdrError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut uid = Vec::with_capacity(rows.len());
        let mut call_id = Vec::with_capacity(rows.len());
        let mut date = Vec::with_capacity(rows.len());
        let mut ts_ms = Vec::with_capacity(rows.len());
        let mut kind = Vec::with_capacity(rows.len());
        let mut from = Vec::with_capacity(rows.len());
        let mut to = Vec::with_capacity(rows.len());
        let mut duration = Vec::with_capacity(rows.len());
        let mut disposition = Vec::with_capacity(rows.len());
        let mut sip_code = Vec::with_capacity(rows.len());
        let mut charge = Vec::with_capacity(rows.len());
        let mut per_minute = Vec::with_capacity(rows.len());
        let mut destination = Vec::with_capacity(rows.len());
        let mut sip_trunk = Vec::with_capacity(rows.len());
        let mut trunk_id = Vec::with_capacity(rows.len());
        let mut a_transport = Vec::with_capacity(rows.len());
        let mut b_transport = Vec::with_capacity(rows.len());
        for Keyed { uid: u, cdr: c } in rows {
            uid.push(u.as_str());
            call_id.push(c.call_id.as_str());
            date.push(format_date(c.start_unix_ms));
            ts_ms.push(to_i64(c.start_unix_ms));
            kind.push(c.direction.as_str());
            from.push(c.from.as_str());
            to.push(c.to.as_str());
            duration.push(to_i64(c.duration_s));
            disposition.push(c.disposition.as_str());
            sip_code.push(i64::from(c.sip_code));
            charge.push(finite(c.charge()));
            per_minute.push(finite(c.per_minute));
            destination.push(c.destination.as_str());
            sip_trunk.push(c.sip_trunk.as_str());
            trunk_id.push(c.trunk_id.map(to_i64));
            a_transport.push(leg_text(c.a_transport));
            b_transport.push(leg_text(c.b_transport));
        }
        let params: [&(dyn ToSql + Sync); 17] = [
            &uid,
            &call_id,
            &date,
            &ts_ms,
            &kind,
            &from,
            &to,
            &duration,
            &disposition,
            &sip_code,
            &charge,
            &per_minute,
            &destination,
            &sip_trunk,
            &trunk_id,
            &a_transport,
            &b_transport,
        ];
        let db = &self.db;
        let rows = db.query(INSERT, &params).map_err(pg_err)?;
        Ok(rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }

    /// Starts the writer thread: a queue of `capacity` records, spilling
    /// to `spill` while the database is away (and replaying a spill file
    /// left by an earlier run).
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start_writer(
        self,
        spill: PathBuf,
        capacity: usize,
    ) -> Result<(CdrWriter, CdrSink), CdrError> {
        let path = spill.clone();
        CdrWriter::spawn(path, capacity, move |rx, shared| {
            Writer::new(self, spill, shared).run(rx)
        })
    }

    fn rows(&self, sql: &str, args: &[Arg]) -> Result<Vec<tokio_postgres::Row>, CdrError> {
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| match a {
                Arg::Text(t) => t as &(dyn ToSql + Sync),
                Arg::Int(i) => i as &(dyn ToSql + Sync),
            })
            .collect();
        self.db.query(sql, &params).map_err(pg_err)
    }

    fn where_(&self) -> &Path {
        Path::new(self.db.shown())
    }
}

impl CdrSource for PgCdr {
    fn query_keyed(&self, filter: &CdrFilter) -> Result<Vec<(CdrCursor, Cdr)>, CdrError> {
        let (sql, args) = select_sql(filter, Dialect::Postgres);
        let mut out = Vec::new();
        for r in self.rows(&sql, &args)? {
            let raw = RawRow {
                id: r.get(0),
                call_id: r.get(1),
                ts_ms: r.get(2),
                direction: r.get(3),
                from: r.get(4),
                to: r.get(5),
                duration: r.get(6),
                disposition: r.get(7),
                sip_code: r.get(8),
                per_minute: r.get(9),
                destination: r.get(10),
                sip_trunk: r.get(11),
                trunk_id: r.get(12),
                a_transport: r.get(13),
                b_transport: r.get(14),
            };
            out.push(raw.into_keyed(self.where_())?);
        }
        Ok(out)
    }

    fn stats(&self, filter: &CdrFilter) -> Result<CdrStats, CdrError> {
        let (sql, args) = stats_sql(filter, Dialect::Postgres);
        let rows = self.rows(&sql, &args)?;
        Ok(rows.first().map_or_else(CdrStats::default, |r| {
            CdrStats::from_sums(r.get(0), r.get(1), r.get(2))
        }))
    }

    fn count_matching(&self, filter: &CdrFilter) -> Result<u64, CdrError> {
        let (sql, args) = count_sql(filter, Dialect::Postgres);
        let rows = self.rows(&sql, &args)?;
        Ok(rows
            .first()
            .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
    }
}

/// The writer thread's state.
struct Writer<'a> {
    db: PgCdr,
    spill: PathBuf,
    shared: &'a Shared,
    /// This process's part of every `uid`.
    instance: String,
    seq: u64,
    /// Taken from the queue, not yet stored.
    memory: Vec<Keyed>,
    /// Lines in the spill file not yet replayed.
    on_disk: u64,
    /// While the database is away: when to try again.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl<'a> Writer<'a> {
    fn new(db: PgCdr, spill: PathBuf, shared: &'a Shared) -> Writer<'a> {
        let on_disk = match File::open(&spill) {
            Ok(f) => BufReader::new(f).lines().count() as u64,
            Err(_) => 0,
        };
        if on_disk > 0 {
            tracing::info!(
                spill = %spill.display(),
                records = on_disk,
                "CDR spill file found: its records are written to the store when it answers"
            );
        }
        let writer = Writer {
            db,
            spill,
            shared,
            instance: format!("{:016x}", rand::random::<u64>()),
            seq: 0,
            memory: Vec::new(),
            on_disk,
            retry_at: None,
            backoff: RETRY_MIN,
        };
        writer.gauge();
        writer
    }

    fn gauge(&self) {
        self.shared
            .pending
            .store(self.memory.len() as u64 + self.on_disk, Ordering::Relaxed);
    }

    fn take(&mut self, cdr: Cdr) {
        self.seq += 1;
        self.memory.push(Keyed {
            uid: format!("{}-{}", self.instance, self.seq),
            cdr,
        });
    }

    /// Waits for records (or the next retry), stores what it can, spills
    /// beyond [`MEMORY_MAX`]; at stop, spills what the store did not take.
    fn run(mut self, rx: &Receiver<Msg>) -> Result<(), CdrError> {
        loop {
            let mut stop = self.shared.stopping.load(Ordering::SeqCst);
            if !stop {
                let got = match self.retry_at {
                    _ if self.memory.is_empty() && self.on_disk == 0 => {
                        rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
                    }
                    Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                    None => rx.recv_timeout(Duration::ZERO),
                };
                match got {
                    Ok(Msg::Record(c)) => self.take(c),
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
                    Err(RecvTimeoutError::Timeout) => {}
                }
            }
            let mut empty = false;
            for _ in 0..MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Record(c)) => self.take(c),
                    Ok(Msg::Stop) => stop = true,
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                        empty = true;
                        break;
                    }
                }
            }
            if self.retry_at.map_or(true, |at| Instant::now() >= at) {
                self.store();
            }
            if self.memory.len() > MEMORY_MAX {
                self.spill_memory();
            }
            self.gauge();
            if stop && empty {
                if !self.memory.is_empty() {
                    self.spill_memory();
                    self.gauge();
                }
                if self.memory.is_empty() && self.on_disk > 0 {
                    tracing::warn!(
                        spill = %self.spill.display(),
                        records = self.on_disk,
                        "stopping with CDRs the store has not taken: they stay in the spill \
                         file and are written when a node starts with it and the store answers"
                    );
                }
                return Ok(());
            }
        }
    }

    /// Writes memory, then the spill file; on failure, schedules a retry.
    fn store(&mut self) {
        let was_down = self.retry_at.is_some();
        match self.store_all() {
            Ok(()) => {
                if was_down {
                    tracing::info!(
                        store = %self.db.db.shown(),
                        "CDR store reachable again: waiting CDRs written"
                    );
                }
                self.retry_at = None;
                self.backoff = RETRY_MIN;
            }
            Err(e) => {
                if !was_down {
                    tracing::warn!(
                        "CDRs wait for the store (in memory up to {MEMORY_MAX}, then in {}): {e}",
                        self.spill.display()
                    );
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(RETRY_MAX);
            }
        }
    }

    fn store_all(&mut self) -> Result<(), CdrError> {
        while !self.memory.is_empty() {
            let n = self.memory.len().min(MAX_BATCH);
            let new = self.db.insert(&self.memory[..n])?;
            self.memory.drain(..n);
            self.shared.written.fetch_add(new, Ordering::Relaxed);
            self.gauge();
        }
        if self.on_disk > 0 {
            self.replay()?;
        }
        Ok(())
    }

    /// Inserts every line of the spill file, then deletes it. A failure
    /// part way leaves the file whole: the lines already stored are
    /// skipped by their ids next time.
    fn replay(&mut self) -> Result<(), CdrError> {
        let spill_err = |source| CdrError::Spill {
            path: self.spill.clone(),
            source,
        };
        let file = File::open(&self.spill).map_err(spill_err)?;
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut lines = BufReader::new(file).lines();
        loop {
            let line = lines.next().transpose().map_err(spill_err)?;
            let done = line.is_none();
            if let Some(line) = line {
                match serde_json::from_str::<Keyed>(&line) {
                    Ok(k) => batch.push(k),
                    Err(e) => {
                        // Only a torn last line (a crash mid-write) gets here.
                        self.shared.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(spill = %self.spill.display(), "unreadable spill line skipped: {e}");
                    }
                }
            }
            if batch.len() >= MAX_BATCH || (done && !batch.is_empty()) {
                let new = self.db.insert(&batch)?;
                self.shared.written.fetch_add(new, Ordering::Relaxed);
                self.shared.replayed.fetch_add(new, Ordering::Relaxed);
                batch.clear();
            }
            if done {
                break;
            }
        }
        std::fs::remove_file(&self.spill).map_err(spill_err)?;
        tracing::info!(
            spill = %self.spill.display(),
            records = self.on_disk,
            "CDR spill file replayed into the store"
        );
        self.on_disk = 0;
        Ok(())
    }

    /// Appends memory to the spill file (synced). If that fails too, keeps
    /// them, up to [`MEMORY_HARD_MAX`].
    fn spill_memory(&mut self) {
        match append(&self.spill, &self.memory) {
            Ok(()) => {
                let n = self.memory.len() as u64;
                self.on_disk += n;
                self.shared.spilled.fetch_add(n, Ordering::Relaxed);
                self.memory.clear();
            }
            Err(e) => {
                tracing::error!("CDRs cannot be spilled: {e}");
                if self.memory.len() > MEMORY_HARD_MAX {
                    let lost = self.memory.len() - MEMORY_HARD_MAX;
                    self.memory.drain(..lost);
                    self.shared.failed.fetch_add(lost as u64, Ordering::Relaxed);
                    tracing::error!(
                        records = lost,
                        "CDRs lost: neither the store nor the spill file takes them"
                    );
                }
            }
        }
    }
}

/// Appends `rows` to `path` as JSON lines and syncs.
fn append(path: &Path, rows: &[Keyed]) -> Result<(), CdrError> {
    let spill_err = |source| CdrError::Spill {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(spill_err)?;
    }
    let mut text = String::new();
    for r in rows {
        // A record of strings and numbers always serializes.
        if let Ok(line) = serde_json::to_string(r) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(spill_err)?;
    f.write_all(text.as_bytes()).map_err(spill_err)?;
    f.sync_data().map_err(spill_err)
}
