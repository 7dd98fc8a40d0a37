//! The embedded SQLite [`Store`]: the `[store] path` file, shared with the
//! CDR tables (separate tables, WAL so readers never block the writer).
//!
//! Schema versions live in our own `store_meta` table, not in
//! `PRAGMA user_version`: that pragma is one number per file and the CDR
//! store in the same file already owns it.
//!
//! Rows keep the key columns (`id`, `name`, `number`) for uniqueness and
//! lookups, and the whole record as JSON in `data`, so adding a trunk
//! field needs no column migration (serde defaults fill old rows).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use std::net::SocketAddr;

use super::{Store, StoreError, StoredApiKey};
use crate::config::{DidConfig, TrunkConfig};
use crate::registrar::{BindingWrite, StoredBinding};
use crate::sip::Transport;

/// Schema version of a current file (`store_meta.schema_version`); bumped,
/// with a step in `migrate`, whenever the schema changes.
pub const SCHEMA_VERSION: i64 = 3;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS trunk (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS did (
    number TEXT PRIMARY KEY,
    data   TEXT NOT NULL
);
";

/// Version 2: registrations (one row per binding, typed columns: 100k rows
/// load in well under a second; rows of a login are replaced together).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS binding (
    login       TEXT NOT NULL,
    contact     TEXT NOT NULL,
    source      TEXT NOT NULL,
    transport   TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL,
    instance    TEXT,
    reg_id      INTEGER,
    call_id     TEXT NOT NULL,
    cseq        INTEGER NOT NULL,
    user_agent  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS binding_login ON binding (login);
";

/// Version 3: HTTP API keys made at first start or by `sipfront key
/// create`, as SHA-256 only (the key is shown once, never stored).
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS api_key (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    generated  INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
";

/// Trunks and DIDs in a SQLite file. One connection behind a mutex: writes
/// are rare (API calls), and SQLite serializes writers anyway.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens or creates the file (and its directories), sets WAL,
    /// synchronous=NORMAL and a busy timeout, and migrates the schema.
    ///
    /// # Errors
    /// The file cannot be opened or migrated, or is from a newer build.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let owned = path.to_path_buf();
        let conn = open_connection(path).map_err(|e| match e {
            OpenFailure::Io(source) => StoreError::Io {
                path: owned.clone(),
                source,
            },
            OpenFailure::Sqlite(source) => StoreError::Sqlite {
                path: owned.clone(),
                source,
            },
        })?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: owned,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file this store was opened on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done SQLite
        // transaction (it rolls back on drop), so a poisoned lock is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the schema to [`SCHEMA_VERSION`] in one transaction.
    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(|e| self.err(e))?;
        let found: i64 = tx
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        if found < 1 {
            tx.execute_batch(SCHEMA_V1).map_err(|e| self.err(e))?;
        }
        if found < 2 {
            tx.execute_batch(SCHEMA_V2).map_err(|e| self.err(e))?;
        }
        if found < 3 {
            tx.execute_batch(SCHEMA_V3).map_err(|e| self.err(e))?;
        }
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![SCHEMA_VERSION],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    fn corrupt(&self, table: &'static str, key: String, message: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            table,
            key,
            message,
        }
    }

    fn trunk_id(&self, id: u64) -> Result<i64, StoreError> {
        i64::try_from(id).map_err(|_| {
            self.corrupt(
                "trunk",
                id.to_string(),
                "id does not fit a 64-bit signed integer".to_owned(),
            )
        })
    }

    fn put_trunk_in(&self, tx: &Connection, t: &TrunkConfig) -> Result<(), StoreError> {
        let data = serde_json::to_string(t)
            .map_err(|e| self.corrupt("trunk", t.id().to_string(), e.to_string()))?;
        tx.execute(
            "INSERT INTO trunk (id, name, data) VALUES (?1, ?2, ?3) \
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, data = excluded.data",
            params![self.trunk_id(t.id())?, t.login(), data],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn put_did_in(&self, tx: &Connection, d: &DidConfig) -> Result<(), StoreError> {
        let data = serde_json::to_string(d)
            .map_err(|e| self.corrupt("did", d.number.clone(), e.to_string()))?;
        tx.execute(
            "INSERT INTO did (number, data) VALUES (?1, ?2) \
             ON CONFLICT(number) DO UPDATE SET data = excluded.data",
            params![d.number, data],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn trunks(&self) -> Result<Vec<TrunkConfig>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, data FROM trunk ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, data) = row.map_err(|e| self.err(e))?;
            let t: TrunkConfig = serde_json::from_str(&data)
                .map_err(|e| self.corrupt("trunk", id.to_string(), e.to_string()))?;
            if u64::try_from(id).ok() != t.id {
                return Err(self.corrupt(
                    "trunk",
                    id.to_string(),
                    "id column and data differ".into(),
                ));
            }
            out.push(t);
        }
        Ok(out)
    }

    fn put_trunk(&self, t: &TrunkConfig) -> Result<(), StoreError> {
        let conn = self.conn();
        self.put_trunk_in(&conn, t)
    }

    fn delete_trunk(&self, id: u64) -> Result<bool, StoreError> {
        let id = self.trunk_id(id)?;
        let n = self
            .conn()
            .execute("DELETE FROM trunk WHERE id = ?1", params![id])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    fn replace_trunks(&self, trunks: &[TrunkConfig]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM trunk", [])
            .map_err(|e| self.err(e))?;
        for t in trunks {
            self.put_trunk_in(&tx, t)?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn dids(&self) -> Result<Vec<DidConfig>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT number, data FROM did ORDER BY number")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (number, data) = row.map_err(|e| self.err(e))?;
            let d: DidConfig = serde_json::from_str(&data)
                .map_err(|e| self.corrupt("did", number.clone(), e.to_string()))?;
            out.push(d);
        }
        Ok(out)
    }

    fn put_did(&self, d: &DidConfig) -> Result<(), StoreError> {
        let conn = self.conn();
        self.put_did_in(&conn, d)
    }

    fn put_dids(&self, dids: &[DidConfig]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for d in dids {
            self.put_did_in(&tx, d)?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn delete_did(&self, number: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM did WHERE number = ?1", params![number])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    fn bindings(&self) -> Result<Vec<(String, StoredBinding)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT login, contact, source, transport, expires_ms, instance, reg_id, \
                 call_id, cseq, user_agent FROM binding ORDER BY login, rowid",
            )
            .map_err(|e| self.err(e))?;
        // Read once at start, 100k rows in well under a second: the address
        // and transport are parsed from the row's own text (no copy), and
        // nothing is allocated but the strings a binding keeps.
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let text = |i: usize| -> Result<&str, StoreError> {
                r.get_ref(i)
                    .and_then(|v| v.as_str().map_err(Into::into))
                    .map_err(|e| self.err(e))
            };
            let login: String = r.get(0).map_err(|e| self.err(e))?;
            let contact: String = r.get(1).map_err(|e| self.err(e))?;
            let bad =
                |what: &str| self.corrupt("binding", format!("{login} {contact}"), what.to_owned());
            let source: SocketAddr = text(2)?.parse().map_err(|_| bad("bad source address"))?;
            let transport =
                Transport::from_token(text(3)?).ok_or_else(|| bad("unknown transport"))?;
            let get_i64 = |i: usize| r.get::<_, i64>(i).map_err(|e| self.err(e));
            let expires_ms = get_i64(4)?;
            let instance: Option<String> = r.get(5).map_err(|e| self.err(e))?;
            let reg_id: Option<i64> = r.get(6).map_err(|e| self.err(e))?;
            let call_id: String = r.get(7).map_err(|e| self.err(e))?;
            let cseq = get_i64(8)?;
            let ua: String = r.get(9).map_err(|e| self.err(e))?;
            let binding = StoredBinding {
                source,
                transport,
                expires_unix_ms: u64::try_from(expires_ms).map_err(|_| bad("negative expiry"))?,
                instance,
                reg_id: reg_id
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| bad("reg-id out of range"))?,
                call_id,
                cseq: u32::try_from(cseq).map_err(|_| bad("CSeq out of range"))?,
                user_agent: ua,
                contact,
            };
            out.push((login, binding));
        }
        Ok(out)
    }

    fn write_bindings(&self, writes: &[BindingWrite]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM binding WHERE login = ?1")
                .map_err(|e| self.err(e))?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO binding (login, contact, source, transport, expires_ms, \
                     instance, reg_id, call_id, cseq, user_agent) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(|e| self.err(e))?;
            for w in writes {
                delete.execute(params![w.login]).map_err(|e| self.err(e))?;
                for b in &w.bindings {
                    insert
                        .execute(params![
                            w.login,
                            b.contact,
                            b.source.to_string(),
                            b.transport.as_str(),
                            i64::try_from(b.expires_unix_ms).unwrap_or(i64::MAX),
                            b.instance,
                            b.reg_id,
                            b.call_id,
                            b.cseq,
                            b.user_agent,
                        ])
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn seed_once(&self, trunks: &[TrunkConfig], dids: &[DidConfig]) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let seeded = tx
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'seeded'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .is_some();
        if seeded {
            return Ok(false);
        }
        for t in trunks {
            self.put_trunk_in(&tx, t)?;
        }
        for d in dids {
            self.put_did_in(&tx, d)?;
        }
        tx.execute(
            "INSERT INTO store_meta (key, value) VALUES ('seeded', 1)",
            [],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(true)
    }

    fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, sha256, generated, created_ms FROM api_key ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredApiKey {
                    name: r.get(0)?,
                    sha256: r.get(1)?,
                    generated: r.get(2)?,
                    created_ms: r.get(3)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.map(|r| r.map_err(|e| self.err(e))).collect()
    }

    fn add_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        let conn = self.conn();
        let added = conn
            .execute(
                "INSERT INTO api_key (name, sha256, generated, created_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO NOTHING",
                params![key.name, key.sha256, key.generated, key.created_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(added == 1)
    }

    fn delete_api_key(&self, name: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let gone = conn
            .execute("DELETE FROM api_key WHERE name = ?1", params![name])
            .map_err(|e| self.err(e))?;
        Ok(gone == 1)
    }
}

/// Why [`open_connection`] failed.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// Creating the parent directories.
    Io(std::io::Error),
    /// Opening the file or setting it up.
    Sqlite(rusqlite::Error),
}

/// Opens or creates an SQLite file the way every sipfront store does: parent
/// directories created, WAL (readers never block the writer),
/// synchronous=NORMAL (safe with WAL: a power cut may lose the last
/// commits, not the file) and a busy timeout. The CDR store and the
/// trunk/DID store share the file and this setup.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, OpenFailure> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(OpenFailure::Io)?;
    }
    let conn = Connection::open(path).map_err(OpenFailure::Sqlite)?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(OpenFailure::Sqlite)?;
    // journal_mode answers with the mode now in force; read it as a row.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(OpenFailure::Sqlite)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(OpenFailure::Sqlite)?;
    Ok(conn)
}
