//! The fleet [`Store`] (`[store] url = "postgres://…"`): trunks, DIDs,
//! stored registrations, CDRs and the trunk sync's lease in one PostgreSQL
//! database that every node of a fleet shares.
//!
//! The rows have the embedded store's shape (key columns plus the whole
//! record as JSON in `data`, see `sqlite.rs`), so both stores read and
//! write trunks and DIDs the same way. What a fleet adds:
//!
//! - every trunk, DID or API key write sends `NOTIFY sipfront_config` in its own
//!   transaction (delivered on commit); each node `LISTEN`s
//!   ([`listen_changes`]) and re-reads the store through the one write
//!   path of the control API (`Live::refresh_from_store`), so a change
//!   made on any node is in force on every node within about a second;
//! - registrations are stored per node (the node holds the connection and
//!   the NAT binding they were made over): a node loads and replaces only
//!   its own rows;
//! - a lease row per named job ([`Store::lease`]): the trunk sync runs on
//!   the one node that holds it, and another takes over when it expires;
//! - migrations run under an advisory lock, so nodes starting together
//!   migrate once.
//!
//! The trait is blocking (callers are on blocking tasks or the writer
//! threads); each call runs its queries on the runtime it was opened on.
//! The pool waits at most [`POOL_WAIT`] for a connection and connecting
//! at most [`CONNECT_TIMEOUT`], so a database that is down fails a call
//! quickly instead of holding its caller.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, NoTls};

use super::{Store, StoreError, StoredApiKey};
use crate::config::{DidConfig, TrunkConfig};
use crate::registrar::{BindingWrite, StoredBinding};
use crate::sip::Transport;
use crate::transport::Shutdown;

/// Schema version of a current database (`store_meta.schema_version`);
/// bumped, with a step in `migrate`, whenever the schema changes.
pub const PG_SCHEMA_VERSION: i64 = 3;

/// The channel trunk and DID writes notify on.
pub const CHANGE_CHANNEL: &str = "sipfront_config";

/// Longest wait for a pooled connection.
pub const POOL_WAIT: Duration = Duration::from_secs(3);
/// Longest wait to open a new connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections per node: API writes, registration and CDR writers, reads.
const POOL_SIZE: usize = 8;

/// Key of the advisory lock migrations take (any constant of our own).
const MIGRATE_LOCK: i64 = 0x5349_5046_524f_4e54; // "SIPFRONT"

const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS trunk (
    id   BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS did (
    number TEXT PRIMARY KEY,
    data   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS binding (
    node        TEXT NOT NULL,
    login       TEXT NOT NULL,
    contact     TEXT NOT NULL,
    source      TEXT NOT NULL,
    transport   TEXT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    instance    TEXT,
    reg_id      BIGINT,
    call_id     TEXT NOT NULL,
    cseq        BIGINT NOT NULL,
    user_agent  TEXT NOT NULL,
    seq         BIGSERIAL
);
CREATE INDEX IF NOT EXISTS binding_node_login ON binding (node, login);
CREATE TABLE IF NOT EXISTS cdr (
    id          BIGSERIAL PRIMARY KEY,
    uid         TEXT NOT NULL UNIQUE,
    call_id     TEXT NOT NULL,
    date        TEXT COLLATE "C" NOT NULL,
    ts_ms       BIGINT NOT NULL,
    type        TEXT NOT NULL,
    from_number TEXT NOT NULL,
    to_number   TEXT NOT NULL,
    duration    BIGINT NOT NULL,
    disposition TEXT NOT NULL,
    sip_code    BIGINT NOT NULL,
    charge      DOUBLE PRECISION NOT NULL,
    per_minute  DOUBLE PRECISION NOT NULL,
    destination TEXT NOT NULL,
    sip_trunk   TEXT NOT NULL,
    trunk_id    BIGINT NULL
);
CREATE INDEX IF NOT EXISTS cdr_date ON cdr (date, id);
CREATE INDEX IF NOT EXISTS cdr_type_date ON cdr (type, date, id);
CREATE TABLE IF NOT EXISTS api_key (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    generated  BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
"#;

/// Version 2: per-day CDR totals, so `/v1/cdr` stats over whole days read
/// one row per day and type instead of summing every call. Kept by the CDR
/// insert itself (one statement), from the rows it really inserted.
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS cdr_day (
    day      TEXT COLLATE \"C\" NOT NULL,
    type     TEXT NOT NULL,
    count    BIGINT NOT NULL,
    duration BIGINT NOT NULL,
    charge   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, type)
);
INSERT INTO cdr_day (day, type, count, duration, charge)
    SELECT substr(date, 1, 10), type, COUNT(*), SUM(duration), SUM(charge) FROM cdr GROUP BY 1, 2
    ON CONFLICT (day, type) DO NOTHING;
";

/// Version 3: the transport of each CDR's legs; older rows read as empty.
const SCHEMA_V3: &str = "
ALTER TABLE cdr ADD COLUMN IF NOT EXISTS a_transport TEXT NOT NULL DEFAULT '';
ALTER TABLE cdr ADD COLUMN IF NOT EXISTS b_transport TEXT NOT NULL DEFAULT '';
";

/// A pool on one database and the runtime its queries run on. Shared by
/// the trunk/DID store and the CDR writer and reader.
#[derive(Clone)]
pub struct PgPool {
    pool: Pool,
    rt: Handle,
    config: tokio_postgres::Config,
    shown: String,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

/// `url` without its password, for logs and errors.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "postgres://(unparsable URL)".to_owned(),
    }
}

impl PgPool {
    /// A pool on `url` whose queries run on `rt`. Connects lazily: a
    /// database that is down is an error of the first query, not here.
    ///
    /// # Errors
    /// `url` is not a connection URL the driver understands.
    pub fn new(url: &str, rt: Handle) -> Result<PgPool, StoreError> {
        let shown = shown_url(url);
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Postgres {
                url: shown.clone(),
                message: format!("bad URL: {e}"),
            })?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("sipfront");
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Postgres {
                url: shown.clone(),
                message: e.to_string(),
            })?;
        Ok(PgPool {
            pool,
            rt,
            config,
            shown,
        })
    }

    /// The URL, password hidden.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// An error of this database.
    pub fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Postgres {
            url: self.shown.clone(),
            message: e.to_string(),
        }
    }

    /// Runs `f` with a pooled connection, blocking this (non-runtime)
    /// thread until it is done.
    pub fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.rt.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.err(e))?;
            f(client).await
        })
    }

    /// The rows of one statement (prepared once per connection).
    ///
    /// # Errors
    /// No connection, or the database refused the statement.
    pub fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run(|c| async move {
            let stmt = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
            c.query(&stmt, params).await.map_err(|e| self.err(e))
        })
    }

    /// The driver's connection settings (the change listener opens its
    /// own connection outside the pool).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

/// Trunks, DIDs, registrations and leases in PostgreSQL.
#[derive(Debug)]
pub struct PgStore {
    db: PgPool,
    /// Whose registration rows this node reads and writes.
    node: String,
    /// Sent with every change notification, so the listener skips this
    /// process's own.
    instance: String,
}

impl PgStore {
    /// Connects, migrates the schema to [`PG_SCHEMA_VERSION`] and returns
    /// the store. Blocking: call it off the runtime's threads.
    ///
    /// # Errors
    /// The database cannot be reached or migrated, or is from a newer build.
    pub fn open(db: PgPool, node: String, instance: String) -> Result<PgStore, StoreError> {
        let store = PgStore { db, node, instance };
        store.migrate()?;
        Ok(store)
    }

    /// The pool (shared with the CDR writer and reader).
    pub fn pool(&self) -> &PgPool {
        &self.db
    }

    /// This process's id in change notifications.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let db = &self.db;
        db.run(|mut c| async move {
            let tx = c.transaction().await.map_err(|e| db.err(e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                .await
                .map_err(|e| db.err(e))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            )
            .await
            .map_err(|e| db.err(e))?;
            let found: i64 = tx
                .query_opt(
                    "SELECT value FROM store_meta WHERE key = 'schema_version'",
                    &[],
                )
                .await
                .map_err(|e| db.err(e))?
                .map_or(0, |r| r.get(0));
            if found > PG_SCHEMA_VERSION {
                return Err(db.err(format!(
                    "schema version {found} is newer than this build's {PG_SCHEMA_VERSION}"
                )));
            }
            if found < 1 {
                tx.batch_execute(SCHEMA_V1).await.map_err(|e| db.err(e))?;
            }
            if found < 2 {
                tx.batch_execute(SCHEMA_V2).await.map_err(|e| db.err(e))?;
            }
            if found < 3 {
                tx.batch_execute(SCHEMA_V3).await.map_err(|e| db.err(e))?;
            }
            tx.execute(
                "INSERT INTO store_meta (key, value) VALUES ('schema_version', $1) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&PG_SCHEMA_VERSION],
            )
            .await
            .map_err(|e| db.err(e))?;
            tx.commit().await.map_err(|e| db.err(e))
        })
    }

    fn trunk_id(&self, id: u64) -> Result<i64, StoreError> {
        i64::try_from(id).map_err(|_| self.corrupt("trunk", id.to_string(), "id out of range"))
    }

    fn corrupt(&self, table: &'static str, key: String, message: &str) -> StoreError {
        StoreError::Corrupt {
            path: self.db.shown().into(),
            table,
            key,
            message: message.to_owned(),
        }
    }

    fn trunk_row(&self, t: &TrunkConfig) -> Result<(i64, String), StoreError> {
        let data = serde_json::to_string(t)
            .map_err(|e| self.corrupt("trunk", t.id().to_string(), &e.to_string()))?;
        Ok((self.trunk_id(t.id())?, data))
    }

    fn did_row(&self, d: &DidConfig) -> Result<String, StoreError> {
        serde_json::to_string(d).map_err(|e| self.corrupt("did", d.number.clone(), &e.to_string()))
    }

    /// Runs `f` in one transaction that also notifies the other nodes.
    fn changing<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'a> FnOnce(
            &'a tokio_postgres::Transaction<'a>,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'a>,
        >,
    {
        let db = &self.db;
        let instance = self.instance.clone();
        db.run(|mut c| async move {
            let tx = c.transaction().await.map_err(|e| db.err(e))?;
            let out = f(&tx).await.map_err(|e| db.err(e))?;
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANGE_CHANNEL, &instance])
                .await
                .map_err(|e| db.err(e))?;
            tx.commit().await.map_err(|e| db.err(e))?;
            Ok(out)
        })
    }
}

const PUT_TRUNK: &str = "INSERT INTO trunk (id, name, data) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, data = excluded.data";
const PUT_DID: &str = "INSERT INTO did (number, data) VALUES ($1, $2) \
     ON CONFLICT (number) DO UPDATE SET data = excluded.data";

async fn put_trunks(
    c: &impl GenericClient,
    rows: &[(i64, String, String)],
) -> Result<(), tokio_postgres::Error> {
    let stmt = c.prepare(PUT_TRUNK).await?;
    for (id, name, data) in rows {
        c.execute(&stmt, &[id, name, data]).await?;
    }
    Ok(())
}

async fn put_dids(
    c: &impl GenericClient,
    rows: &[(String, String)],
) -> Result<(), tokio_postgres::Error> {
    let stmt = c.prepare(PUT_DID).await?;
    for (number, data) in rows {
        c.execute(&stmt, &[number, data]).await?;
    }
    Ok(())
}

impl Store for PgStore {
    fn trunks(&self) -> Result<Vec<TrunkConfig>, StoreError> {
        let rows = self
            .db
            .query("SELECT id, data FROM trunk ORDER BY id", &[])?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let (id, data): (i64, String) = (r.get(0), r.get(1));
            let t: TrunkConfig = serde_json::from_str(&data)
                .map_err(|e| self.corrupt("trunk", id.to_string(), &e.to_string()))?;
            if u64::try_from(id).ok() != t.id {
                return Err(self.corrupt("trunk", id.to_string(), "id column and data differ"));
            }
            out.push(t);
        }
        Ok(out)
    }

    fn put_trunk(&self, t: &TrunkConfig) -> Result<(), StoreError> {
        let (id, data) = self.trunk_row(t)?;
        let rows = [(id, t.login().to_owned(), data)];
        self.changing(|tx| Box::pin(async move { put_trunks(tx, &rows).await }))
    }

    fn create_trunk(&self, t: &TrunkConfig) -> Result<bool, StoreError> {
        let (id, data) = self.trunk_row(t)?;
        let name = t.login().to_owned();
        self.changing(|tx| {
            Box::pin(async move {
                let n = tx
                    .execute(
                        "INSERT INTO trunk (id, name, data) VALUES ($1, $2, $3) \
                         ON CONFLICT (id) DO NOTHING",
                        &[&id, &name, &data],
                    )
                    .await?;
                Ok(n == 1)
            })
        })
    }

    fn delete_trunk(&self, id: u64) -> Result<bool, StoreError> {
        let id = self.trunk_id(id)?;
        self.changing(|tx| {
            Box::pin(async move {
                let n = tx
                    .execute("DELETE FROM trunk WHERE id = $1", &[&id])
                    .await?;
                Ok(n > 0)
            })
        })
    }

    fn replace_trunks(&self, trunks: &[TrunkConfig]) -> Result<(), StoreError> {
        let rows = trunks
            .iter()
            .map(|t| {
                self.trunk_row(t)
                    .map(|(id, d)| (id, t.login().to_owned(), d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.changing(|tx| {
            Box::pin(async move {
                tx.execute("DELETE FROM trunk", &[]).await?;
                put_trunks(tx, &rows).await
            })
        })
    }

    fn dids(&self) -> Result<Vec<DidConfig>, StoreError> {
        let rows = self
            .db
            .query("SELECT number, data FROM did ORDER BY number", &[])?;
        rows.into_iter()
            .map(|r| {
                let (number, data): (String, String) = (r.get(0), r.get(1));
                serde_json::from_str(&data).map_err(|e| self.corrupt("did", number, &e.to_string()))
            })
            .collect()
    }

    fn put_did(&self, d: &DidConfig) -> Result<(), StoreError> {
        self.put_dids(std::slice::from_ref(d))
    }

    fn put_dids(&self, dids: &[DidConfig]) -> Result<(), StoreError> {
        let rows = dids
            .iter()
            .map(|d| self.did_row(d).map(|data| (d.number.clone(), data)))
            .collect::<Result<Vec<_>, _>>()?;
        self.changing(|tx| Box::pin(async move { put_dids(tx, &rows).await }))
    }

    fn delete_did(&self, number: &str) -> Result<bool, StoreError> {
        let number = number.to_owned();
        self.changing(|tx| {
            Box::pin(async move {
                let n = tx
                    .execute("DELETE FROM did WHERE number = $1", &[&number])
                    .await?;
                Ok(n > 0)
            })
        })
    }

    fn seed_once(&self, trunks: &[TrunkConfig], dids: &[DidConfig]) -> Result<bool, StoreError> {
        let trunk_rows = trunks
            .iter()
            .map(|t| {
                self.trunk_row(t)
                    .map(|(id, d)| (id, t.login().to_owned(), d))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let did_rows = dids
            .iter()
            .map(|d| self.did_row(d).map(|data| (d.number.clone(), data)))
            .collect::<Result<Vec<_>, _>>()?;
        self.changing(|tx| {
            Box::pin(async move {
                // The marker row decides: of nodes seeding at once, one wins.
                let won = tx
                    .execute(
                        "INSERT INTO store_meta (key, value) VALUES ('seeded', 1) \
                         ON CONFLICT (key) DO NOTHING",
                        &[],
                    )
                    .await?
                    == 1;
                if won {
                    put_trunks(tx, &trunk_rows).await?;
                    put_dids(tx, &did_rows).await?;
                }
                Ok(won)
            })
        })
    }

    fn bindings(&self) -> Result<Vec<(String, StoredBinding)>, StoreError> {
        let rows = self.db.query(
            "SELECT login, contact, source, transport, expires_ms, instance, reg_id, \
             call_id, cseq, user_agent FROM binding WHERE node = $1 ORDER BY login, seq",
            &[&self.node],
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let login: String = r.get(0);
            let contact: String = r.get(1);
            let bad = |what: &str| self.corrupt("binding", format!("{login} {contact}"), what);
            let source: SocketAddr = r
                .get::<_, &str>(2)
                .parse()
                .map_err(|_| bad("bad source address"))?;
            let transport = Transport::from_token(r.get::<_, &str>(3))
                .ok_or_else(|| bad("unknown transport"))?;
            let expires_ms: i64 = r.get(4);
            let reg_id: Option<i64> = r.get(6);
            let cseq: i64 = r.get(8);
            let binding = StoredBinding {
                source,
                transport,
                expires_unix_ms: u64::try_from(expires_ms).map_err(|_| bad("negative expiry"))?,
                instance: r.get(5),
                reg_id: reg_id
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| bad("reg-id out of range"))?,
                call_id: r.get(7),
                cseq: u32::try_from(cseq).map_err(|_| bad("CSeq out of range"))?,
                user_agent: r.get(9),
                contact,
            };
            out.push((login, binding));
        }
        Ok(out)
    }

    fn write_bindings(&self, writes: &[BindingWrite]) -> Result<(), StoreError> {
        let db = &self.db;
        let node = self.node.clone();
        db.run(|mut c| async move {
            let tx = c.transaction().await.map_err(|e| db.err(e))?;
            let delete = tx
                .prepare("DELETE FROM binding WHERE node = $1 AND login = $2")
                .await
                .map_err(|e| db.err(e))?;
            let insert = tx
                .prepare(
                    "INSERT INTO binding (node, login, contact, source, transport, expires_ms, \
                     instance, reg_id, call_id, cseq, user_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .await
                .map_err(|e| db.err(e))?;
            for w in writes {
                tx.execute(&delete, &[&node, &w.login])
                    .await
                    .map_err(|e| db.err(e))?;
                for b in &w.bindings {
                    let expires = i64::try_from(b.expires_unix_ms).unwrap_or(i64::MAX);
                    let reg_id = b.reg_id.map(i64::from);
                    let cseq = i64::from(b.cseq);
                    tx.execute(
                        &insert,
                        &[
                            &node,
                            &w.login,
                            &b.contact,
                            &b.source.to_string(),
                            &b.transport.as_str(),
                            &expires,
                            &b.instance,
                            &reg_id,
                            &b.call_id,
                            &cseq,
                            &b.user_agent,
                        ],
                    )
                    .await
                    .map_err(|e| db.err(e))?;
                }
            }
            tx.commit().await.map_err(|e| db.err(e))
        })
    }

    fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows = self.db.query(
            "SELECT name, sha256, generated, created_ms FROM api_key ORDER BY name",
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|r| StoredApiKey {
                name: r.get(0),
                sha256: r.get(1),
                generated: r.get(2),
                created_ms: r.get(3),
            })
            .collect())
    }

    fn add_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError> {
        let key = key.clone();
        self.changing(|tx| {
            Box::pin(async move {
                let added = tx
                    .execute(
                        "INSERT INTO api_key (name, sha256, generated, created_ms) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                        &[&key.name, &key.sha256, &key.generated, &key.created_ms],
                    )
                    .await?;
                Ok(added == 1)
            })
        })
    }

    fn delete_api_key(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.changing(|tx| {
            Box::pin(async move {
                let gone = tx
                    .execute("DELETE FROM api_key WHERE name = $1", &[&name])
                    .await?;
                Ok(gone == 1)
            })
        })
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let db = &self.db;
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        db.run(|c| async move {
            // Taken when free, expired or already ours; the database's
            // clock decides expiry, so nodes' clocks need not agree.
            let row = c
                .query_opt(
                    "INSERT INTO lease (name, holder, expires_at) \
                     VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE lease.holder = excluded.holder OR lease.expires_at < now() \
                     RETURNING holder",
                    &[&name, &holder, &ttl_ms],
                )
                .await
                .map_err(|e| db.err(e))?;
            Ok(row.is_some())
        })
    }
}

/// Opens the fleet store at `url` outside a running sipfront (the `key`
/// command): a one-thread runtime of its own for the queries, returned so
/// it outlives the store.
///
/// # Errors
/// As [`PgPool::new`] and [`PgStore::open`], or the runtime cannot start.
pub fn open_standalone(
    url: &str,
    node: String,
) -> Result<(tokio::runtime::Runtime, PgStore), StoreError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| StoreError::Postgres {
            url: shown_url(url),
            message: format!("starting a runtime: {e}"),
        })?;
    let pool = PgPool::new(url, rt.handle().clone())?;
    let instance = format!("{:016x}", rand::random::<u64>());
    let store = PgStore::open(pool, node, instance)?;
    Ok((rt, store))
}

/// Listens for trunk and DID changes made by other nodes and sends `()`
/// on `changed` for each (coalesced: a full queue already means "re-read").
/// Also sends one after every (re)connect, since notifications sent while
/// this node was not listening are lost. Reconnects with back-off
/// (1 s doubling to 5 s) until `shutdown`.
pub async fn listen_changes(
    db: PgPool,
    instance: String,
    changed: mpsc::Sender<()>,
    mut shutdown: Shutdown,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let outcome = tokio::select! {
            () = shutdown.recv() => return,
            r = listen_once(&db, &instance, &changed) => r,
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(
                    store = %db.shown(),
                    "change feed: {e}; changes made on other nodes reach this one when it \
                     reconnects (retrying in {} s)",
                    backoff.as_secs()
                );
            }
        }
        tokio::select! {
            () = shutdown.recv() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One connection's life: `LISTEN`, then forward notifications until the
/// connection ends (an error) or nobody reads `changed` (`Ok`).
async fn listen_once(
    db: &PgPool,
    instance: &str,
    changed: &mpsc::Sender<()>,
) -> Result<(), String> {
    use futures_util::StreamExt;
    use tokio_postgres::AsyncMessage;

    let (client, mut conn) = db
        .config()
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (tx, mut messages) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            match m {
                Ok(m) => {
                    if tx.send(Ok(m)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANGE_CHANNEL}"))
        .await;
    let result = match listening {
        Err(e) => Err(format!("LISTEN: {e}")),
        Ok(()) => {
            tracing::info!(store = %db.shown(), "change feed: listening for changes made on other nodes");
            // Whatever changed while this node was not listening.
            if changed.send(()).await.is_err() {
                driver.abort();
                return Ok(());
            }
            loop {
                match messages.recv().await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if n.payload() == instance {
                            continue;
                        }
                        match changed.try_send(()) {
                            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                            Err(mpsc::error::TrySendError::Closed(())) => break Ok(()),
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break Err(format!("connection lost: {e}")),
                    None => break Err("connection closed".to_owned()),
                }
            }
        }
    };
    driver.abort();
    result
}
