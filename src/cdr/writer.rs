//! The hot path's side ([`CdrSink`]: a non-blocking bounded queue) and the
//! disk's side ([`CdrWriter`]: one std thread batching inserts). A full
//! queue or a failing disk costs records, counted, never a stalled call
//! (ARCHITECTURE principle 3).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::store::{CdrError, CdrStore};
use crate::b2bua::record::Cdr;

/// Most records one transaction takes: big enough to amortise the commit,
/// small enough that a failed batch loses little.
const MAX_BATCH: usize = 512;

pub(super) enum Msg {
    Record(Cdr),
    /// Wakes an idle writer so it notices `Shared::stopping`.
    Stop,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) dropped: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) failed: AtomicU64,
    /// Records put in the spill file (fleet store unreachable).
    pub(super) spilled: AtomicU64,
    /// Records read back from the spill file and committed.
    pub(super) replayed: AtomicU64,
    /// Records taken from the queue and not yet committed (held in memory
    /// or in the spill file): the backlog while the database is away.
    pub(super) pending: AtomicU64,
    /// Set by shutdown/drop; the writer drains what is queued and exits.
    pub(super) stopping: AtomicBool,
}

/// Handle the hot path holds. Cheap to clone, Send + Sync; never blocks.
#[derive(Clone)]
pub struct CdrSink {
    tx: Option<SyncSender<Msg>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CdrSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CdrSink")
            .field("enabled", &self.tx.is_some())
            .field("dropped", &self.dropped())
            .field("written", &self.written())
            .field("failed", &self.failed())
            .finish()
    }
}

impl CdrSink {
    /// Queues a record without blocking. Returns false (and counts a drop)
    /// if the queue is full or the writer is gone. A [`CdrSink::disabled`]
    /// sink returns false without counting: there is no store to lose to.
    pub fn record(&self, cdr: Cdr) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        match tx.try_send(Msg::Record(cdr)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records lost to a full queue or a stopped writer.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records committed to the store.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Records whose insert failed (each failure is logged).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Records written to the spill file because the fleet store could not
    /// take them (0 on the embedded store).
    pub fn spilled(&self) -> u64 {
        self.shared.spilled.load(Ordering::Relaxed)
    }

    /// Records replayed from the spill file into the fleet store.
    pub fn replayed(&self) -> u64 {
        self.shared.replayed.load(Ordering::Relaxed)
    }

    /// Records waiting for the fleet store (in memory or spilled).
    pub fn pending(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// A sink that discards everything (for tests, or no store configured).
    pub fn disabled() -> CdrSink {
        CdrSink {
            tx: None,
            shared: Arc::default(),
        }
    }

    /// A sink and the receiving end of its queue, unconnected to any thread:
    /// the writer's building block, and lets tests fill the queue at will.
    pub(super) fn channel(capacity: usize) -> (CdrSink, Receiver<Msg>) {
        let (tx, rx) = sync_channel(capacity);
        let sink = CdrSink {
            tx: Some(tx),
            shared: Arc::default(),
        };
        (sink, rx)
    }
}

/// The writer thread (std, not tokio: rusqlite blocks). Stop it with
/// [`CdrWriter::shutdown`] to learn how the last flush went; dropping it
/// also stops and joins it.
#[derive(Debug)]
pub struct CdrWriter {
    handle: Option<JoinHandle<Result<(), CdrError>>>,
    sink: CdrSink,
    path: PathBuf,
}

impl CdrWriter {
    /// Opens the store at `path` (an error comes back here, so startup can
    /// fail with a clear message) and starts the thread; `capacity` bounds
    /// the queue (e.g. 65_536; slots are allocated up front, ~160 bytes each).
    pub fn start(path: &Path, capacity: usize) -> Result<(CdrWriter, CdrSink), CdrError> {
        let store = CdrStore::open(path)?;
        Self::start_with(store, capacity)
    }

    /// Starts the thread on an already open store.
    pub fn start_with(store: CdrStore, capacity: usize) -> Result<(CdrWriter, CdrSink), CdrError> {
        let path = store.path().to_path_buf();
        Self::spawn(path, capacity, move |rx, shared| run(store, rx, shared))
    }

    /// A queue of `capacity` and the thread `body` draining it; `path`
    /// names the store in errors.
    pub(super) fn spawn(
        path: PathBuf,
        capacity: usize,
        body: impl FnOnce(&Receiver<Msg>, &Shared) -> Result<(), CdrError> + Send + 'static,
    ) -> Result<(CdrWriter, CdrSink), CdrError> {
        // Capacity 0 would be a rendezvous channel: every try_send would fail.
        let (sink, rx) = CdrSink::channel(capacity.max(1));
        let shared = Arc::clone(&sink.shared);
        let handle = std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || body(&rx, &shared))
            .map_err(|source| CdrError::Spawn {
                path: path.clone(),
                source,
            })?;
        let writer = CdrWriter {
            handle: Some(handle),
            sink: sink.clone(),
            path,
        };
        Ok((writer, sink))
    }

    /// Writes everything queued so far, then stops the thread and joins it.
    /// Nothing queued before this call is lost; records offered afterwards
    /// are refused and counted as dropped. The error, if any, is the final
    /// flush's (already counted in `failed`) or a panicked thread.
    pub fn shutdown(mut self) -> Result<(), CdrError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), CdrError> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        self.sink.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(tx) = &self.sink.tx {
            // If the queue is full the writer is busy and will see the flag
            // after this batch; no need to wait for room.
            let _ = tx.try_send(Msg::Stop);
        }
        handle.join().unwrap_or_else(|_| {
            Err(CdrError::WriterPanicked {
                path: self.path.clone(),
            })
        })
    }
}

impl Drop for CdrWriter {
    /// Best effort: flush what is queued and join. Bounded by that work,
    /// since the stop flag does not need queue room to be seen.
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "CDR writer stopped with an error");
        }
    }
}

/// The thread body: block for one record, take what else is already
/// queued, insert the batch; until told to stop, then flush and return.
fn run(mut store: CdrStore, rx: &Receiver<Msg>, shared: &Shared) -> Result<(), CdrError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let mut stop = shared.stopping.load(Ordering::SeqCst);
        if !stop {
            match rx.recv() {
                Ok(Msg::Record(c)) => batch.push(c),
                Ok(Msg::Stop) => stop = true,
                // Every sender gone: nothing more can arrive.
                Err(_) => stop = true,
            }
        }
        // Once stopping, keep draining until the queue is empty: those
        // records were queued before shutdown was asked for.
        let mut empty = false;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Record(c)) => batch.push(c),
                Ok(Msg::Stop) => stop = true,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    empty = true;
                    break;
                }
            }
        }
        let result = flush(&mut store, &mut batch, shared);
        if stop && empty {
            return result;
        }
    }
}

fn flush(store: &mut CdrStore, batch: &mut Vec<Cdr>, shared: &Shared) -> Result<(), CdrError> {
    if batch.is_empty() {
        return Ok(());
    }
    let n = batch.len() as u64;
    let result = store.insert(batch);
    batch.clear();
    match result {
        Ok(()) => {
            shared.written.fetch_add(n, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => {
            shared.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(path = %store.path().display(), error = %e, records = n, "CDR insert failed; records lost");
            Err(e)
        }
    }
}
