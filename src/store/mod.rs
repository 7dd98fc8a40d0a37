//! Persistence of the provisioning data (trunks, DIDs) and of the
//! registrations (bindings, written behind by [`BindingWriter`]) behind one
//! trait.
//!
//! The running policy is always the in-memory config snapshot; the store is
//! where API changes go so they survive a restart. Two implementations:
//! [`SqliteStore`], the embedded default for one node (`[store] path`), and
//! [`PgStore`], shared by the nodes of a fleet (`[store] url`). Every
//! method blocks (SQLite file I/O, a PostgreSQL round trip), so callers on
//! the runtime use `tokio::task::spawn_blocking`; the core task never
//! calls it.
//!
//! Who wins: the TOML `[[trunk]]`/`[[did]]` entries seed an empty store once
//! ([`seed_if_new`]); from then on the store is the source of truth for
//! trunks and DIDs, and a file's entries are ignored (SIGHUP still re-reads
//! everything else: rates, registrar, API keys…).

mod binding_writer;
pub mod pg;
mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{DidConfig, TrunkConfig};
use crate::registrar::{BindingWrite, StoredBinding};

pub use binding_writer::{BindingSink, BindingWriter};

pub use pg::{PgPool, PgStore};
pub(crate) use sqlite::{open_connection, OpenFailure};
pub use sqlite::{SqliteStore, SCHEMA_VERSION};

/// Everything that can go wrong with a store; each names where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The parent directory could not be created.
    #[error("store {}: creating directory: {source}", path.display())]
    Io {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database refused an open, a pragma, a migration or a statement.
    #[error("store {}: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer build with a schema we do not know.
    #[error("store {}: schema version {found} is newer than this build's {SCHEMA_VERSION}", path.display())]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// PostgreSQL (or the pool in front of it) refused or could not be
    /// reached; `url` has no password.
    #[error("store {url}: {message}")]
    Postgres {
        /// The database URL, password hidden.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A row holds a value no writer of ours would have stored.
    #[error("store {}: {table} row {key}: {message}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Table of the row.
        table: &'static str,
        /// Its key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Trunks and DIDs, persisted. Implementations are blocking and must be
/// safe to share between threads (`spawn_blocking` tasks).
pub trait Store: Send + Sync {
    /// All trunks, by id.
    ///
    /// # Errors
    /// The store cannot be read or holds a bad row.
    fn trunks(&self) -> Result<Vec<TrunkConfig>, StoreError>;
    /// Inserts or replaces the trunk with `t.id()`.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn put_trunk(&self, t: &TrunkConfig) -> Result<(), StoreError>;
    /// Writes a new trunk; `false` (nothing written) if a trunk with its id
    /// exists in the store, as when another node of a fleet created one
    /// a moment ago. The embedded store serves one node, whose config
    /// already knows every trunk: it writes as [`Store::put_trunk`].
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn create_trunk(&self, t: &TrunkConfig) -> Result<bool, StoreError> {
        self.put_trunk(t).map(|()| true)
    }
    /// Deletes a trunk; whether it existed.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn delete_trunk(&self, id: u64) -> Result<bool, StoreError>;
    /// Replaces every trunk with `trunks` in one transaction: all or none
    /// (trunk sync swaps the whole set).
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn replace_trunks(&self, trunks: &[TrunkConfig]) -> Result<(), StoreError>;
    /// All DIDs, by number.
    ///
    /// # Errors
    /// The store cannot be read or holds a bad row.
    fn dids(&self) -> Result<Vec<DidConfig>, StoreError>;
    /// Inserts or replaces the DID with `d.number`.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn put_did(&self, d: &DidConfig) -> Result<(), StoreError>;
    /// Inserts or replaces several DIDs in one transaction: all or none.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn put_dids(&self, dids: &[DidConfig]) -> Result<(), StoreError>;
    /// Deletes a DID; whether it existed.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn delete_did(&self, number: &str) -> Result<bool, StoreError>;
    /// Writes `trunks` and `dids` in one transaction if this store was never
    /// seeded, and marks it seeded; whether it did. A store whose trunks
    /// were all deleted over the API stays empty: seeding happens once.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn seed_once(&self, trunks: &[TrunkConfig], dids: &[DidConfig]) -> Result<bool, StoreError>;
    /// Every stored binding with its login, a login's rows together and
    /// oldest first (read once at start).
    ///
    /// # Errors
    /// The store cannot be read or holds a bad row.
    fn bindings(&self) -> Result<Vec<(String, StoredBinding)>, StoreError>;
    /// Applies `writes` in one transaction, in order: each replaces every
    /// binding of its login (an empty one deletes them).
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn write_bindings(&self, writes: &[BindingWrite]) -> Result<(), StoreError>;
    /// The HTTP API keys kept in the store, by name.
    ///
    /// # Errors
    /// The store cannot be read or holds a bad row.
    fn api_keys(&self) -> Result<Vec<StoredApiKey>, StoreError>;
    /// Adds `key`; `false` (nothing written) if one of that name exists.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn add_api_key(&self, key: &StoredApiKey) -> Result<bool, StoreError>;
    /// Deletes the key `name`; whether it existed.
    ///
    /// # Errors
    /// The write failed; nothing changed.
    fn delete_api_key(&self, name: &str) -> Result<bool, StoreError>;
    /// Takes or renews the lease `name` for `holder` for `ttl`; whether
    /// `holder` has it now. A fleet runs a job such as the trunk sync on
    /// the one node holding its lease; the embedded store serves one node,
    /// which always has it.
    ///
    /// # Errors
    /// The store cannot be reached: nobody can be sure to hold the lease.
    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let _ = (name, holder, ttl);
        Ok(true)
    }
}

/// An HTTP API key kept in the store (made at first start, or by
/// `sipfront key create`): its name and SHA-256, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// Its name, unique in the store (shown in logs).
    pub name: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    /// Made by sipfront at a first start without any key, not by an operator.
    pub generated: bool,
    /// When it was made, Unix milliseconds.
    pub created_ms: i64,
}

/// Seeds `store` from a file's `[[trunk]]`/`[[did]]` entries the first
/// time, then returns the store's trunks and DIDs (the ones that count).
///
/// An empty file leaves an empty store unseeded, so a newcomer who starts
/// on the built-in config and then writes trunks into the file still gets
/// them. A store that already holds trunks or DIDs (made over the API) is
/// marked seeded without taking the file's, so nothing it holds is
/// overwritten.
///
/// # Errors
/// As [`Store::seed_once`], [`Store::trunks`], [`Store::dids`].
pub fn seed_if_new(
    store: &dyn Store,
    trunks: &[TrunkConfig],
    dids: &[DidConfig],
) -> Result<(bool, Vec<TrunkConfig>, Vec<DidConfig>), StoreError> {
    let stored_empty = store.trunks()?.is_empty() && store.dids()?.is_empty();
    let seeded = match (stored_empty, trunks.is_empty() && dids.is_empty()) {
        (true, true) => false,
        (true, false) => store.seed_once(trunks, dids)?,
        (false, _) => {
            store.seed_once(&[], &[])?;
            false
        }
    };
    Ok((seeded, store.trunks()?, store.dids()?))
}

#[cfg(test)]
mod tests;
