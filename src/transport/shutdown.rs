//! Shutdown signalling for the socket tasks, as in mini-redis `shutdown.rs`.
//!
//! One `broadcast` channel tells every task to stop; every task also holds a
//! clone of an `mpsc::Sender<()>` it never sends on, so the owner learns that
//! all tasks have ended when `recv()` on the matching receiver returns `None`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

/// A task's view of the shutdown signal.
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
    /// Dropped when the task ends; see the module doc.
    _done: mpsc::Sender<()>,
}

impl Shutdown {
    /// Wraps a subscription and a completion token.
    pub fn new(notify: broadcast::Receiver<()>, done: mpsc::Sender<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
            _done: done,
        }
    }

    /// Whether the signal has been received.
    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Waits for the signal (returns at once if already received). A dropped
    /// sender counts as the signal.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// The owner's side: broadcast the signal, then wait for every task to end.
#[derive(Debug)]
pub struct ShutdownController {
    notify: broadcast::Sender<()>,
    stopped: Arc<AtomicBool>,
    done_tx: Option<mpsc::Sender<()>>,
    done_rx: mpsc::Receiver<()>,
}

/// A cloneable way to hand [`Shutdown`]s to tasks spawned later (outbound
/// connections). Holding one delays [`ShutdownController::shutdown`] until
/// it is dropped, like any task's `Shutdown`.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    notify: broadcast::Sender<()>,
    stopped: Arc<AtomicBool>,
    done: mpsc::Sender<()>,
}

impl ShutdownHandle {
    /// A handle for one more task; already shut down if the signal was sent.
    pub fn subscribe(&self) -> Shutdown {
        let mut s = Shutdown::new(self.notify.subscribe(), self.done.clone());
        // Subscribe first, then check: a signal sent in between is seen either way.
        s.is_shutdown = self.stopped.load(Ordering::Acquire);
        s
    }
}

impl Default for ShutdownController {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownController {
    /// A fresh controller.
    pub fn new() -> ShutdownController {
        let (notify, _) = broadcast::channel(1);
        let (done_tx, done_rx) = mpsc::channel(1);
        ShutdownController {
            notify,
            stopped: Arc::new(AtomicBool::new(false)),
            done_tx: Some(done_tx),
            done_rx,
        }
    }

    /// A handle for one more task.
    pub fn subscribe(&self) -> Shutdown {
        self.handle().subscribe()
    }

    /// A cloneable subscriber factory.
    pub fn handle(&self) -> ShutdownHandle {
        let done = match &self.done_tx {
            Some(d) => d.clone(),
            None => mpsc::channel(1).0,
        };
        ShutdownHandle {
            notify: self.notify.clone(),
            stopped: self.stopped.clone(),
            done,
        }
    }

    /// Sends the signal without waiting (see [`ShutdownController::shutdown`]).
    pub fn signal(&self) {
        self.stopped.store(true, Ordering::Release);
        let _ = self.notify.send(());
    }

    /// Signals every task and waits until all have dropped their handles.
    pub async fn shutdown(mut self) {
        self.signal();
        self.done_tx = None;
        let _ = self.done_rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_all_tasks() {
        let ctl = ShutdownController::new();
        let mut a = ctl.subscribe();
        let mut b = ctl.subscribe();
        let ta = tokio::spawn(async move { a.recv().await });
        let tb = tokio::spawn(async move {
            b.recv().await;
            assert!(b.is_shutdown());
        });
        let late = ctl.handle();
        ctl.signal();
        assert!(late.subscribe().is_shutdown());
        drop(late);
        ctl.shutdown().await;
        ta.await.unwrap();
        tb.await.unwrap();
    }
}
