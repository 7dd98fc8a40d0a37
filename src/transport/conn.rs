//! The stream connection table (TCP and WebSocket): remote address → open
//! connection, so responses and new requests to an address reuse the
//! connection it is on (RFC 3261 §18.2.2, §18.1.1; RFC 7118 §5), with the
//! per-source count behind the per-IP cap.
//!
//! A plain `HashMap` behind a `std::sync::Mutex`: every operation is a short
//! lookup or insert with no `.await` inside the lock, and connection churn is
//! far below message rates, so a sharded map buys nothing yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::write_queue::WriteTx;
use super::ConnId;
use crate::sip::Transport;

/// One entry: who it is, what it speaks and where its writer task takes
/// bytes from.
#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    /// `Tcp`, `Ws` or `Wss`: a message is only queued on a connection of
    /// its own transport (the writer frames it accordingly).
    pub(crate) transport: Transport,
    pub(crate) tx: WriteTx,
}

#[derive(Debug, Default)]
struct Inner {
    by_peer: HashMap<SocketAddr, ConnId>,
    by_id: HashMap<ConnId, ConnEntry>,
    /// Connections per remote IP (per-source limit).
    per_ip: HashMap<std::net::IpAddr, usize>,
}

impl Inner {
    fn add(&mut self, entry: ConnEntry) {
        *self.per_ip.entry(entry.peer.ip()).or_default() += 1;
        self.by_peer.insert(entry.peer, entry.id);
        self.by_id.insert(entry.id, entry);
    }
}

/// Open connections by id and by remote address.
#[derive(Debug, Default)]
pub(crate) struct ConnTable {
    next: AtomicU64,
    inner: Mutex<Inner>,
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a way that matters (each operation is one or two inserts), so a
        // poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id.
    pub(crate) fn next_id(&self) -> ConnId {
        ConnId(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Registers a connection; it becomes the one used for its peer.
    #[cfg(test)]
    pub(crate) fn insert(&self, entry: ConnEntry) {
        self.lock().add(entry);
    }

    /// Registers an accepted connection unless its IP already has `max`.
    pub(crate) fn insert_within(&self, entry: ConnEntry, max: usize) -> bool {
        let mut t = self.lock();
        if t.per_ip.get(&entry.peer.ip()).copied().unwrap_or(0) >= max {
            return false;
        }
        t.add(entry);
        true
    }

    /// Removes a connection (the peer mapping only if it still points to it).
    pub(crate) fn remove(&self, id: ConnId) {
        let mut t = self.lock();
        if let Some(e) = t.by_id.remove(&id) {
            if t.by_peer.get(&e.peer) == Some(&id) {
                t.by_peer.remove(&e.peer);
            }
            let ip = e.peer.ip();
            if let Some(n) = t.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.per_ip.remove(&ip);
                }
            }
        }
    }

    /// The connection with this id.
    pub(crate) fn get(&self, id: ConnId) -> Option<ConnEntry> {
        self.lock().by_id.get(&id).cloned()
    }

    /// The connection to this remote address.
    pub(crate) fn by_peer(&self, peer: SocketAddr) -> Option<ConnEntry> {
        let t = self.lock();
        t.by_peer.get(&peer).and_then(|id| t.by_id.get(id)).cloned()
    }

    /// Looks up a `transport` connection to `peer`, or registers the entry
    /// made by `make` for it, in one critical section (so two sends to a new
    /// peer open one connection). Returns the entry and whether it is new.
    pub(crate) fn get_or_insert_with(
        &self,
        peer: SocketAddr,
        transport: Transport,
        make: impl FnOnce(ConnId) -> ConnEntry,
    ) -> (ConnEntry, bool) {
        let mut t = self.lock();
        if let Some(e) = t.by_peer.get(&peer).and_then(|id| t.by_id.get(id)) {
            if e.transport == transport {
                return (e.clone(), false);
            }
        }
        let e = make(self.next_id());
        t.add(e.clone());
        (e, true)
    }

    /// Number of connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(t: &ConnTable, peer: SocketAddr) -> ConnEntry {
        ConnEntry {
            id: t.next_id(),
            peer,
            transport: Transport::Tcp,
            tx: super::super::write_queue::write_queue(1).0,
        }
    }

    #[test]
    fn reuse_and_replace() {
        let t = ConnTable::default();
        let peer: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let a = entry(&t, peer);
        t.insert(a.clone());
        assert_eq!(t.by_peer(peer).unwrap().id, a.id);
        let b = entry(&t, peer);
        t.insert(b.clone());
        assert_eq!(t.by_peer(peer).unwrap().id, b.id);
        // Removing the older one keeps the peer mapping of the newer.
        t.remove(a.id);
        assert_eq!(t.by_peer(peer).unwrap().id, b.id);
        t.remove(b.id);
        assert!(t.by_peer(peer).is_none());
        assert_eq!(t.len(), 0);
        let (c, new) = t.get_or_insert_with(peer, Transport::Tcp, |id| ConnEntry {
            id,
            peer,
            transport: Transport::Tcp,
            tx: super::super::write_queue::write_queue(1).0,
        });
        assert!(new);
        let (d, new) = t.get_or_insert_with(peer, Transport::Tcp, |_| unreachable!());
        assert!(!new);
        assert_eq!(c.id, d.id);
        assert!(t.get(c.id).is_some());
    }
}
