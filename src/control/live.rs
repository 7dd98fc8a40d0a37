//! The running configuration as one immutable value, and the single path
//! every change takes (API call or SIGHUP): build the next `Config`,
//! validate it whole, persist it, swap it in, hand it to the core.
//!
//! Readers (`current`) never wait: an `ArcSwap` load. Writers queue on one
//! async mutex, held only while building, checking and persisting the next
//! value, so two API calls cannot both start from the same snapshot and
//! lose one's change.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use tokio::sync::{mpsc, Mutex};

use super::error::{ApiError, Details};
use crate::config::{Config, ConfigErrors, TrunkConfig};
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
    /// Remove a trunk.
    DeleteTrunk {
        /// Its id.
        id: u64,
    },
}

/// The shared control-side state: current config, store, the core's inbox.
pub struct Live {
    current: ArcSwap<Config>,
    store: Arc<dyn Store>,
    reloads: mpsc::Sender<Arc<Config>>,
    write: Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl Live {
    /// `cfg` is what the core runs now (trunks and DIDs already from the store).
    pub fn new(
        cfg: Arc<Config>,
        store: Arc<dyn Store>,
        reloads: mpsc::Sender<Arc<Config>>,
    ) -> Live {
        Live {
            current: ArcSwap::new(cfg),
            store,
            reloads,
            write: Mutex::new(()),
        }
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
        file.trunk.clone_from(&cur.trunk);
        file.did.clone_from(&cur.did);
        file.validate_value(&file.source.to_string())?;
        self.publish(Arc::new(file)).await;
        Ok(())
    }

    /// An API change: `build` makes the next config from the current one
    /// and says what to persist. Returns the stored trunk for a put.
    ///
    /// # Errors
    /// `build`'s own error; `422` if the whole next config is invalid
    /// (fields of the changed trunk by their JSON name, others by key
    /// path); `500` if the store write fails. On any error nothing changed.
    pub(crate) async fn change(
        &self,
        build: impl FnOnce(&Config) -> Result<(Config, Change), ApiError>,
    ) -> Result<Option<TrunkConfig>, ApiError> {
        let _guard = self.write.lock().await;
        let cur = self.current();
        let (mut next, change) = build(&cur)?;
        if let Err(errors) = next.validate_value("api") {
            let own = match change {
                Change::PutTrunk { index } => Some(format!("trunk[{index}].")),
                Change::DeleteTrunk { .. } => None,
            };
            let mut details = Details::new();
            for e in errors.0 {
                let key = match own.as_deref().and_then(|p| e.key.strip_prefix(p)) {
                    Some(field) => field.to_owned(),
                    None => e.key,
                };
                details.insert(key, e.message.into());
            }
            return Err(ApiError::invalid(details));
        }
        let store = self.store.clone();
        let (put, out) = match change {
            Change::PutTrunk { index } => {
                let t = next
                    .trunk
                    .get(index)
                    .cloned()
                    .ok_or_else(|| ApiError::internal("changed trunk index out of range"))?;
                (Some(t.clone()), Some(t))
            }
            Change::DeleteTrunk { .. } => (None, None),
        };
        let persisted = tokio::task::spawn_blocking(move || match (put, change) {
            (Some(t), _) => store.put_trunk(&t).map(|_| true),
            (None, Change::DeleteTrunk { id }) => store.delete_trunk(id),
            (None, Change::PutTrunk { .. }) => Ok(true),
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        if !persisted {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "trunk not found"));
        }
        self.publish(Arc::new(next)).await;
        Ok(out)
    }

    /// Swaps `next` in and sends it to the core (which applies it to new
    /// calls; calls in progress keep their terms).
    async fn publish(&self, next: Arc<Config>) {
        self.current.store(next.clone());
        if self.reloads.send(next).await.is_err() {
            tracing::warn!("config change not applied: the core task has stopped");
        }
    }
}
