//! Registrations written behind (ARCHITECTURE principle 3): the core task
//! hands each [`BindingWrite`] to a [`BindingSink`] (a bounded queue, never
//! waiting), and one std thread ([`BindingWriter`]) applies whatever is
//! queued in one store transaction, the last write of a login winning
//! (Kamailio usrloc `db_mode = 2` flushes the same way). The shape is the
//! CDR writer's (`cdr::writer`).
//!
//! The queue is bounded and the core never waits on it: while it is full
//! ([`BindingSink::has_room`]) the shell leaves the changed logins marked
//! in the registrar (one mark per login, however often it changes), so a
//! burst of 100,000 REGISTERs costs at most one pending write per login
//! and loses none. A write offered to a full queue anyway is dropped
//! (counted, logged by the caller): the store then lags for that login
//! until its next change.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Store, StoreError};
use crate::registrar::BindingWrite;

/// Most writes one transaction takes.
const MAX_BATCH: usize = 4096;

enum Msg {
    Write(BindingWrite),
    /// Wakes an idle writer so it notices `Shared::stopping`.
    Stop,
}

#[derive(Default)]
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    stopping: AtomicBool,
    /// Writes in the queue (sent, not yet received by the writer).
    queued: AtomicUsize,
}

/// The core task's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct BindingSink {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    capacity: usize,
}

impl std::fmt::Debug for BindingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingSink")
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .field("failed", &self.failed())
            .finish()
    }
}

impl BindingSink {
    /// Queues `w` without blocking; false (and a drop counted) if the queue
    /// is full or the writer gone.
    pub fn write(&self, w: BindingWrite) -> bool {
        // Counted before the send, so the writer's decrement never comes first.
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Write(w)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether a [`write`](Self::write) now would be queued. Only the
    /// writer thread empties the queue, so for the one producer a `true`
    /// stays true until it writes.
    pub fn has_room(&self) -> bool {
        self.shared.queued.load(Ordering::Relaxed) < self.capacity
    }

    /// Queues `w`, waiting for room (at shutdown, when the last changes
    /// must reach the store); false if the writer is gone.
    pub fn write_waiting(&self, w: BindingWrite) -> bool {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.send(Msg::Write(w)) {
            Ok(()) => true,
            Err(_) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Login writes committed.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Login writes lost to a full queue or a stopped writer.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Login writes whose transaction failed (each failure is logged).
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }
}

/// The writer thread; [`BindingWriter::shutdown`] writes what is queued,
/// then joins it (dropping it does the same).
pub struct BindingWriter {
    handle: Option<JoinHandle<()>>,
    sink: BindingSink,
}

impl std::fmt::Debug for BindingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BindingWriter")
            .field("sink", &self.sink)
            .finish()
    }
}

impl BindingWriter {
    /// Starts the thread on `store`; `capacity` bounds the queue.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(
        store: Arc<dyn Store>,
        capacity: usize,
    ) -> std::io::Result<(BindingWriter, BindingSink)> {
        let capacity = capacity.max(1);
        let (tx, rx) = sync_channel(capacity);
        let sink = BindingSink {
            tx,
            shared: Arc::default(),
            capacity,
        };
        let shared = Arc::clone(&sink.shared);
        let handle = std::thread::Builder::new()
            .name("binding-writer".into())
            .spawn(move || run(&*store, &rx, &shared))?;
        Ok((
            BindingWriter {
                handle: Some(handle),
                sink: sink.clone(),
            },
            sink,
        ))
    }

    /// Writes everything queued so far, then stops and joins the thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        self.sink.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.sink.tx.try_send(Msg::Stop);
        if handle.join().is_err() {
            tracing::error!("binding writer panicked");
        }
    }
}

impl Drop for BindingWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Block for one write, take what else is queued, commit the batch (one
/// write per login, the last); until told to stop, then drain and return.
fn run(store: &dyn Store, rx: &Receiver<Msg>, shared: &Shared) {
    let mut batch: Vec<BindingWrite> = Vec::new();
    loop {
        let mut stop = shared.stopping.load(Ordering::SeqCst);
        if !stop {
            match rx.recv() {
                Ok(Msg::Write(w)) => {
                    shared.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(w);
                }
                Ok(Msg::Stop) | Err(_) => stop = true,
            }
        }
        let mut empty = false;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Write(w)) => {
                    shared.queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(w);
                }
                Ok(Msg::Stop) => stop = true,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                    empty = true;
                    break;
                }
            }
        }
        flush(store, &mut batch, shared);
        if stop && empty {
            return;
        }
    }
}

fn flush(store: &dyn Store, batch: &mut Vec<BindingWrite>, shared: &Shared) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len() as u64;
    let writes = last_per_login(std::mem::take(batch));
    match store.write_bindings(&writes) {
        Ok(()) => {
            shared.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            shared.failed.fetch_add(n, Ordering::Relaxed);
            log_failure(&e, n);
        }
    }
}

fn log_failure(e: &StoreError, n: u64) {
    tracing::error!(error = %e, writes = n, "registration store write failed; the store lags until those logins change again");
}

/// Only the last write of each login counts (each is its whole set); the
/// order of first appearance is kept.
fn last_per_login(batch: Vec<BindingWrite>) -> Vec<BindingWrite> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(batch.len());
    let mut out: Vec<BindingWrite> = Vec::with_capacity(batch.len());
    for w in batch {
        match index.get(&w.login) {
            Some(&i) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = w;
                }
            }
            None => {
                index.insert(w.login.clone(), out.len());
                out.push(w);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(login: &str, cseq: u32) -> BindingWrite {
        BindingWrite {
            login: login.to_owned(),
            bindings: vec![crate::registrar::StoredBinding {
                contact: format!("sip:{login}@h"),
                source: std::net::SocketAddr::from(([192, 0, 2, 1], 5060)),
                transport: crate::sip::Transport::Udp,
                expires_unix_ms: 1,
                instance: None,
                reg_id: None,
                call_id: "c".to_owned(),
                cseq,
                user_agent: String::new(),
            }],
        }
    }

    /// A store whose binding writes wait until the test opens the gate.
    #[derive(Default)]
    struct Gated {
        open: std::sync::Mutex<bool>,
        opened: std::sync::Condvar,
        logins: std::sync::Mutex<Vec<String>>,
    }

    impl Store for Gated {
        fn trunks(&self) -> Result<Vec<crate::config::TrunkConfig>, StoreError> {
            Ok(Vec::new())
        }
        fn put_trunk(&self, _: &crate::config::TrunkConfig) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_trunk(&self, _: u64) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn replace_trunks(&self, _: &[crate::config::TrunkConfig]) -> Result<(), StoreError> {
            Ok(())
        }
        fn dids(&self) -> Result<Vec<crate::config::DidConfig>, StoreError> {
            Ok(Vec::new())
        }
        fn put_did(&self, _: &crate::config::DidConfig) -> Result<(), StoreError> {
            Ok(())
        }
        fn put_dids(&self, _: &[crate::config::DidConfig]) -> Result<(), StoreError> {
            Ok(())
        }
        fn delete_did(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn seed_once(
            &self,
            _: &[crate::config::TrunkConfig],
            _: &[crate::config::DidConfig],
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn bindings(&self) -> Result<Vec<(String, crate::registrar::StoredBinding)>, StoreError> {
            Ok(Vec::new())
        }
        fn write_bindings(&self, writes: &[BindingWrite]) -> Result<(), StoreError> {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            while !*open {
                open = self.opened.wait(open).unwrap_or_else(|p| p.into_inner());
            }
            let mut logins = self.logins.lock().unwrap_or_else(|p| p.into_inner());
            logins.extend(writes.iter().map(|w| w.login.clone()));
            Ok(())
        }
        fn api_keys(&self) -> Result<Vec<crate::store::StoredApiKey>, StoreError> {
            Ok(Vec::new())
        }
        fn add_api_key(&self, _: &crate::store::StoredApiKey) -> Result<bool, StoreError> {
            Ok(false)
        }
        fn delete_api_key(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// The shell asks `has_room` before handing a login out: with the
    /// writer stuck, the queue fills to its bound and says so, nothing is
    /// dropped, and room comes back once the writer moves.
    #[test]
    fn full_queue_says_so_instead_of_dropping() {
        let store = Arc::new(Gated::default());
        let (writer, sink) =
            BindingWriter::start(store.clone(), 2).unwrap_or_else(|e| panic!("{e}"));
        let mut offered = 0u32;
        // The writer takes the first write and blocks in the store with it;
        // two more fill the queue.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while offered < 3 || sink.has_room() {
            assert!(std::time::Instant::now() < deadline, "queue never filled");
            if sink.has_room() {
                assert!(sink.write(w(&format!("l{offered}"), 1)));
                offered += 1;
            } else {
                std::thread::yield_now();
            }
        }
        assert!(!sink.has_room());
        assert_eq!(sink.dropped(), 0);
        *store.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        store.opened.notify_all();
        writer.shutdown();
        assert!(sink.has_room());
        assert_eq!(sink.written(), u64::from(offered));
        assert_eq!(sink.dropped(), 0);
        let logins = store
            .logins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert_eq!(logins.len(), offered as usize);
    }

    #[test]
    fn last_write_of_a_login_wins_in_first_seen_order() {
        let out = last_per_login(vec![w("a", 1), w("b", 1), w("a", 2), w("c", 1)]);
        let seen: Vec<(&str, u32)> = out
            .iter()
            .map(|w| (w.login.as_str(), w.bindings.first().map_or(0, |b| b.cseq)))
            .collect();
        assert_eq!(seen, [("a", 2), ("b", 1), ("c", 1)]);
    }
}
