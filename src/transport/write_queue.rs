//! A TCP connection's write queue: what the core sends waits here for the
//! connection's task, bounded in bytes rather than in messages.
//!
//! A burst of a few hundred messages to one connection (every call of a
//! trunk's PBX rides one connection, RFC 3261 §18.2.2) used to find a
//! 256-message queue full and fail as `WouldBlock`: a transport error for
//! every call to that peer. Now messages queue until `max` bytes are waiting
//! (a peer that stopped reading; the write timeout closes it), and the task
//! writes what has gathered in one `write` instead of one per message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

/// Most bytes gathered into one write.
const BATCH: usize = 64 * 1024;

/// The sending side (in the connection table, cloned per send).
#[derive(Debug, Clone)]
pub(crate) struct WriteTx {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    max: usize,
}

/// The connection task's side.
#[derive(Debug)]
pub(crate) struct WriteRx {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// What [`WriteTx::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; nothing was waiting before it.
    Queued,
    /// Queued behind earlier messages (the writer is behind).
    Behind,
    /// Refused: `max` bytes are already waiting.
    Full,
    /// The connection is gone.
    Closed,
}

/// A queue that holds up to `max` bytes (and always at least one message).
pub(crate) fn write_queue(max: usize) -> (WriteTx, WriteRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        WriteTx {
            tx,
            queued: queued.clone(),
            max,
        },
        WriteRx { rx, queued },
    )
}

impl WriteTx {
    /// Queues one message without waiting.
    pub(crate) fn push(&self, bytes: Bytes) -> Pushed {
        let len = bytes.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > self.max {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Pushed::Full;
        }
        if self.tx.send(bytes).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Pushed::Closed;
        }
        if before > 0 {
            Pushed::Behind
        } else {
            Pushed::Queued
        }
    }
}

impl WriteRx {
    /// The next message, waiting for one.
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The next message if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    /// `first` and whatever else is queued, up to [`BATCH`] bytes, as one
    /// buffer for one write (`scratch` is reused across calls). Returns the
    /// bytes and how many messages they hold.
    pub(crate) fn gather(&mut self, first: Bytes, scratch: &mut BytesMut) -> (Bytes, usize) {
        let Some(next) = (first.len() < BATCH).then(|| self.try_recv()).flatten() else {
            return (first, 1);
        };
        scratch.clear();
        scratch.extend_from_slice(&first);
        scratch.extend_from_slice(&next);
        let mut count = 2;
        while scratch.len() < BATCH {
            let Some(more) = self.try_recv() else { break };
            scratch.extend_from_slice(&more);
            count += 1;
        }
        (scratch.split().freeze(), count)
    }

    /// `n` bytes were written (or given up): they no longer count against
    /// the bound.
    pub(crate) fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    /// Refuses new messages; those queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.rx.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_bytes_and_freed_as_written() {
        let (tx, mut rx) = write_queue(10);
        // One message always fits, however large.
        assert_eq!(tx.push(Bytes::from_static(&[1; 30])), Pushed::Queued);
        assert_eq!(tx.push(Bytes::from_static(&[2])), Pushed::Full);
        let m = rx.try_recv().unwrap();
        assert_eq!(m.len(), 30);
        // Taken but not yet written: still counted.
        assert_eq!(tx.push(Bytes::from_static(&[2])), Pushed::Full);
        rx.written(m.len());
        assert_eq!(tx.push(Bytes::from_static(&[3; 6])), Pushed::Queued);
        assert_eq!(tx.push(Bytes::from_static(&[4; 4])), Pushed::Behind);
        assert_eq!(tx.push(Bytes::from_static(&[5])), Pushed::Full);
        rx.close();
        rx.written(10);
        assert_eq!(tx.push(Bytes::from_static(&[6])), Pushed::Closed);
    }

    /// 1,000 messages queued at once (far past the old 256-message queue)
    /// all wait, and leave in order in a few large writes.
    #[test]
    fn a_burst_queues_and_is_gathered_in_order() {
        let (tx, mut rx) = write_queue(4 << 20);
        for i in 0..1000u32 {
            let msg = Bytes::from(format!("{i:0>200}"));
            assert_ne!(tx.push(msg), Pushed::Full);
        }
        let mut scratch = BytesMut::new();
        let mut wire = Vec::new();
        let mut writes = 0;
        while let Some(first) = rx.try_recv() {
            let (bytes, _) = rx.gather(first, &mut scratch);
            rx.written(bytes.len());
            wire.extend_from_slice(&bytes);
            writes += 1;
        }
        let expected: Vec<u8> = (0..1000u32)
            .flat_map(|i| format!("{i:0>200}").into_bytes())
            .collect();
        assert_eq!(wire, expected);
        assert!(writes <= 4, "{writes} writes");
        assert_eq!(tx.push(Bytes::from_static(b"x")), Pushed::Queued);
    }
}
