//! The running configuration as one immutable value, and the single path
//! every change takes (API call, SIGHUP, trunk sync): build the next `Config`,
//! validate it whole, persist it, swap it in, hand it to the core.
//!
//! Readers (`current`) never wait: an `ArcSwap` load. Writers queue on one
//! async mutex, held only while building, checking and persisting the next
//! value, so two API calls cannot both start from the same snapshot and
//! lose one's change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, Mutex, OwnedMutexGuard};

use super::cdr::CdrReader;
use super::core::Core;
use super::error::{ApiError, Details};
use super::sync::{SyncError, SyncState};
use crate::cdr::PgCdr;
use crate::config::{ApiKeyConfig, Config, ConfigErrors, DidConfig, TrunkConfig};
use crate::store::Store;

/// What a change does to the store (the config change itself is the new
/// value).
#[derive(Debug)]
pub(crate) enum Change {
    /// Write `next.trunk[index]` (after validation resolved its id/name).
    PutTrunk {
        /// Position in the new config's trunk list.
        index: usize,
    },
    /// Write `next.trunk[index]`, a new trunk: refused if another node of a
    /// fleet stored a trunk with the same id meanwhile.
    CreateTrunk {
        /// Position in the new config's trunk list.
        index: usize,
    },
    /// Remove a trunk.
    DeleteTrunk {
        /// Its id.
        id: u64,
    },
    /// Write `next.did[i]` for each index, in one transaction.
    PutDids {
        /// Positions in the new config's DID list.
        indexes: Vec<usize>,
    },
    /// Remove a DID.
    DeleteDid {
        /// Its number.
        number: String,
    },
}

impl Change {
    /// Key-path prefixes of the changed records: errors under them are
    /// reported by field name alone (`trunk[3].name` → `name`).
    fn own_prefixes(&self) -> Vec<String> {
        match self {
            Change::PutTrunk { index } | Change::CreateTrunk { index } => {
                vec![format!("trunk[{index}].")]
            }
            Change::DeleteTrunk { .. } | Change::DeleteDid { .. } => Vec::new(),
            Change::PutDids { indexes } => indexes.iter().map(|i| format!("did[{i}].")).collect(),
        }
    }
}

/// What a change stored, for the answer.
#[derive(Debug)]
pub(crate) enum Stored {
    /// The trunk as stored (id and login resolved).
    Trunk(Box<TrunkConfig>),
    /// A trunk or a DID was deleted.
    Deleted,
    /// The DIDs as stored.
    Dids(Vec<DidConfig>),
}

/// One store write, moved to a blocking task.
enum Write {
    Trunk(Box<TrunkConfig>),
    /// A new trunk: `false` from the store if its id was taken meanwhile.
    NewTrunk(Box<TrunkConfig>),
    DeleteTrunk(u64),
    Dids(Vec<DidConfig>),
    DeleteDid(String),
    /// The whole trunk set, in one transaction (trunk sync).
    ReplaceTrunks(Vec<TrunkConfig>),
}

/// Why [`Live::commit`] stored nothing.
enum CommitError {
    /// The record to delete was already gone.
    NotFound,
    /// The store (or its task) failed.
    Failed(String),
}

/// The shared control-side state: current config, store, the core's inbox.
pub struct Live {
    current: Arc<ArcSwap<Config>>,
    store: Arc<dyn Store>,
    /// One queue per core shard.
    reloads: Arc<[mpsc::Sender<Arc<Config>>]>,
    write: Arc<Mutex<()>>,
    core: Core,
    cdr: Arc<CdrReader>,
    sync: Option<Arc<SyncState>>,
    /// Who this process is when it takes a lease in a fleet store.
    holder: String,
    /// The fleet, when `[cluster] redis` is set (`/v1/cluster`).
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// The API keys kept in the store (read at start and on SIGHUP), as
    /// the verifier takes them; the config's own are in `current`.
    stored_keys: ArcSwap<Vec<ApiKeyConfig>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    /// `cfg` is what the core runs now (trunks and DIDs already from the
    /// store); `reloads` takes every change to each core shard.
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        reloads: Vec<mpsc::Sender<Arc<Config>>>,
        core: Core,
    ) -> Live {
        let cdr = Arc::new(CdrReader::new(cfg.store.path.clone()));
        // The sync runs on the settings it started with ([sync] changes
        // need a restart), so its state is made once, here.
        let sync = cfg.sync.clone().map(|s| Arc::new(SyncState::new(s)));
        Live {
            cdr,
            sync,
            current: Arc::new(ArcSwap::new(cfg)),
            store,
            reloads: reloads.into(),
            write: Arc::new(Mutex::new(())),
            core,
            holder: "local".to_owned(),
            cluster: std::sync::OnceLock::new(),
            stored_keys: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// On a fleet store: the API lists every node's CDRs from `cdrs`, and
    /// this process takes leases as `holder` (unique in the fleet).
    pub fn on_fleet(mut self, cdrs: PgCdr, holder: String) -> Live {
        self.cdr = Arc::new(CdrReader::Fleet(cdrs));
        self.holder = holder;
        self
    }

    /// Takes or renews the lease `name` for `ttl`: whether this node may
    /// run the job it guards. A store that cannot be reached answers no
    /// (logged), so two nodes never both run it.
    pub(crate) async fn hold_lease(&self, name: &'static str, ttl: std::time::Duration) -> bool {
        let (store, holder) = (self.store.clone(), self.holder.clone());
        match tokio::task::spawn_blocking(move || store.lease(name, &holder, ttl)).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!("lease `{name}`: {e}; not taken");
                false
            }
            Err(e) => {
                tracing::warn!("lease `{name}`: {e}; not taken");
                false
            }
        }
    }

    /// Another node changed trunks or DIDs in the shared store: re-reads
    /// both and, if they differ from those in force, validates the next
    /// config whole and publishes it, under the same lock and to the same
    /// shards as [`Live::change`] (the store already holds the change, so
    /// nothing is written). Whether anything changed.
    ///
    /// # Errors
    /// The store cannot be read, or its trunks and DIDs do not validate
    /// with the rest of this node's config; the running config stays.
    pub async fn refresh_from_store(&self) -> Result<bool, String> {
        let _guard = self.write.lock().await;
        let store = self.store.clone();
        let (trunks, dids) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::StoreError>((store.trunks()?, store.dids()?))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let cur = self.current();
        if cur.trunk == trunks && cur.did == dids {
            return Ok(false);
        }
        let mut next = (*cur).clone();
        next.trunk = trunks;
        next.did = dids;
        next.validate_value("store")
            .map_err(|errors| errors.to_string())?;
        publish(&self.current, &self.reloads, Arc::new(next)).await;
        Ok(true)
    }

    /// Joins the fleet's handle (once, at start).
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.cluster.set(cluster);
    }

    /// The fleet's handle, when this node is part of one.
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.get()
    }

    /// The handle for questions to the core (live calls, bans, metrics).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The API's own read connection to the CDR store (blocking; use it on
    /// a blocking task).
    pub(crate) fn cdr(&self) -> Arc<CdrReader> {
        self.cdr.clone()
    }

    /// The trunk sync's settings and status, when `[sync]` was configured
    /// at start-up.
    pub(crate) fn sync(&self) -> Option<&Arc<SyncState>> {
        self.sync.as_ref()
    }

    /// The store (blocking; use it on a blocking task).
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The API keys kept in the store. Never waits.
    pub(crate) fn stored_keys(&self) -> Arc<Vec<ApiKeyConfig>> {
        self.stored_keys.load_full()
    }

    /// Replaces the API keys kept in the store (start, SIGHUP).
    pub(crate) fn set_stored_keys(&self, keys: Vec<ApiKeyConfig>) {
        self.stored_keys.store(Arc::new(keys));
    }

    /// The snapshot in force. Never waits.
    pub fn current(&self) -> Arc<Config> {
        self.current.load_full()
    }

    /// SIGHUP: `file` is the re-read config file. Trunks and DIDs stay the
    /// store's (the store wins once seeded); everything else comes from the
    /// file. The merged value is validated whole before it replaces anything.
    ///
    /// # Errors
    /// The merged config breaks a rule; the running config stays.
    pub async fn reload_file(&self, mut file: Config) -> Result<(), ConfigErrors> {
        let _guard = self.write.lock().await;
        let cur = self.current();
        // The file was validated with its own trunks (ids resolved), so
        // equal lists mean the file agrees with the store.
        if file.trunk != cur.trunk || file.did != cur.did {
            tracing::warn!(
                "SIGHUP: the file's [[trunk]]/[[did]] entries differ from the store's and are \
                 ignored; change trunks and DIDs over the HTTP API"
            );
        }
        if file.sync.as_ref() != self.sync.as_ref().map(|s| s.config()) {
            tracing::warn!(
                "SIGHUP: [sync] changed; the trunk sync keeps its start-up settings until a restart"
            );
        }
        if file.log != cur.log {
            tracing::warn!("SIGHUP: [log] changed; the log format changes at the next restart");
            file.log = cur.log;
        }
        file.trunk.clone_from(&cur.trunk);
        file.did.clone_from(&cur.did);
        file.validate_value(&file.source.to_string())?;
        publish(&self.current, &self.reloads, Arc::new(file)).await;
        Ok(())
    }

    /// An API change: `build` makes the next config from the current one
    /// and says what to persist. Returns what was stored.
    ///
    /// # Errors
    /// `build`'s own error; `422` if the whole next config is invalid
    /// (fields of the changed records by their JSON name, others by key
    /// path); `500` if the store write fails. On any error nothing changed.
    pub(crate) async fn change(
        &self,
        build: impl FnOnce(&Config) -> Result<(Config, Change), ApiError>,
    ) -> Result<Stored, ApiError> {
        let guard = self.write.clone().lock_owned().await;
        let cur = self.current();
        let (mut next, change) = build(&cur)?;
        if let Err(errors) = next.validate_value("api") {
            let own = change.own_prefixes();
            let mut details = Details::new();
            for e in errors.0 {
                let key = own
                    .iter()
                    .find_map(|p| e.key.strip_prefix(p.as_str()))
                    .map_or_else(|| e.key.clone(), str::to_owned);
                details.insert(key, e.message.into());
            }
            return Err(ApiError::invalid(details));
        }
        let stored = match &change {
            Change::PutTrunk { index } | Change::CreateTrunk { index } => Stored::Trunk(
                next.trunk
                    .get(*index)
                    .cloned()
                    .map(Box::new)
                    .ok_or_else(|| ApiError::internal("changed trunk index out of range"))?,
            ),
            Change::DeleteTrunk { .. } | Change::DeleteDid { .. } => Stored::Deleted,
            Change::PutDids { indexes } => Stored::Dids(
                indexes
                    .iter()
                    .map(|i| next.did.get(*i).cloned())
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ApiError::internal("changed DID index out of range"))?,
            ),
        };
        let write = match (&stored, &change) {
            (Stored::Trunk(t), Change::CreateTrunk { .. }) => Write::NewTrunk(t.clone()),
            (Stored::Trunk(t), _) => Write::Trunk(t.clone()),
            (Stored::Dids(d), _) => Write::Dids(d.clone()),
            (Stored::Deleted, Change::DeleteTrunk { id }) => Write::DeleteTrunk(*id),
            (Stored::Deleted, Change::DeleteDid { number }) => Write::DeleteDid(number.clone()),
            (Stored::Deleted, _) => return Err(ApiError::internal("delete without an id")),
        };
        let gone = match &change {
            Change::DeleteDid { number } => format!("no DID `{number}`"),
            _ => "trunk not found".to_owned(),
        };
        self.commit(guard, write, next).await.map_err(|e| match e {
            CommitError::NotFound if matches!(change, Change::CreateTrunk { .. }) => ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "another node created a trunk with this id a moment ago; send the \
                     request again (it gets the next id)",
            ),
            CommitError::NotFound => ApiError::not_found(gone),
            CommitError::Failed(e) => ApiError::internal(e),
        })?;
        Ok(stored)
    }

    /// The trunk sync's change: `plan` gets the config in force and gives
    /// the whole next trunk set (with what the caller wants back), or
    /// `None` when nothing changed. The set replaces every trunk, with the
    /// rest of the config in force, validated whole, stored in one
    /// transaction and swapped in; DIDs and everything else stay.
    ///
    /// # Errors
    /// `plan`'s own error; [`SyncError::Invalid`] if the next config breaks
    /// a rule; [`SyncError::Store`] if the write fails. On any error
    /// nothing changed.
    pub(crate) async fn replace_trunks<T>(
        &self,
        plan: impl FnOnce(&Config) -> Result<Option<(Vec<TrunkConfig>, T)>, SyncError>,
    ) -> Result<Option<T>, SyncError> {
        let guard = self.write.clone().lock_owned().await;
        let cur = self.current();
        let Some((trunks, out)) = plan(&cur)? else {
            return Ok(None);
        };
        let mut next = (*cur).clone();
        next.trunk = trunks;
        if let Err(errors) = next.validate_value("sync") {
            return Err(SyncError::invalid(&errors, &next.trunk));
        }
        let write = Write::ReplaceTrunks(next.trunk.clone());
        self.commit(guard, write, next).await.map_err(|e| match e {
            CommitError::NotFound => SyncError::Store("nothing to replace".to_owned()),
            CommitError::Failed(e) => SyncError::Store(e),
        })?;
        Ok(Some(out))
    }

    /// Persists `write`, then publishes `next`, holding `guard` (the write
    /// lock) throughout. Both run on a task of their own: a caller that
    /// goes away (an API client hanging up drops its future) must not
    /// leave the store changed and the running config not.
    async fn commit(
        &self,
        guard: OwnedMutexGuard<()>,
        write: Write,
        next: Config,
    ) -> Result<(), CommitError> {
        let store = self.store.clone();
        let (current, reloads) = (self.current.clone(), self.reloads.clone());
        let commit = tokio::spawn(async move {
            let _guard = guard;
            let existed = tokio::task::spawn_blocking(move || match write {
                Write::Trunk(t) => store.put_trunk(&t).map(|()| true),
                Write::NewTrunk(t) => store.create_trunk(&t),
                Write::DeleteTrunk(id) => store.delete_trunk(id),
                Write::Dids(d) => store.put_dids(&d).map(|()| true),
                Write::DeleteDid(n) => store.delete_did(&n),
                Write::ReplaceTrunks(t) => store.replace_trunks(&t).map(|()| true),
            })
            .await
            .map_err(|e| CommitError::Failed(e.to_string()))?
            .map_err(|e| CommitError::Failed(e.to_string()))?;
            if !existed {
                return Err(CommitError::NotFound);
            }
            publish(&current, &reloads, Arc::new(next)).await;
            Ok(())
        });
        commit
            .await
            .map_err(|e| CommitError::Failed(e.to_string()))?
    }
}

/// Swaps `next` in and sends it to every core shard (which applies it to
/// new calls; calls in progress keep their terms). Each shard has it
/// queued before the caller's next question to the core: shards take
/// config changes before questions.
async fn publish(
    current: &ArcSwap<Config>,
    reloads: &[mpsc::Sender<Arc<Config>>],
    next: Arc<Config>,
) {
    current.store(next.clone());
    for shard in reloads {
        if shard.send(next.clone()).await.is_err() {
            tracing::warn!("config change not applied: a core task has stopped");
        }
    }
}
