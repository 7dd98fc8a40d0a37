//! The stream connection table: (transport, remote address, TLS peer name)
//! → open connection, so responses and new requests to an address reuse the
//! connection it is on (RFC 3261 §18.2.2, §18.1.1). An outbound TLS
//! connection is found only under the name it was opened and verified for
//! (RFC 5923 §5: a TLS connection is reused for the identity it proved, not
//! for anything at the same address); a TCP connection never serves TLS.
//!
//! A plain `HashMap` behind a `std::sync::Mutex`: every operation is a short
//! lookup or insert with no `.await` inside the lock, and connection churn is
//! far below message rates, so a sharded map buys nothing yet.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::write_queue::WriteTx;
use super::ConnId;
use crate::sip::Transport;

/// What a connection is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PeerKey {
    /// TCP or TLS.
    pub(crate) transport: Transport,
    /// Remote address.
    pub(crate) addr: SocketAddr,
    /// TLS: the server name an outbound connection verified (SNI); `None`
    /// for accepted connections and TCP.
    pub(crate) name: Option<Arc<str>>,
}

impl PeerKey {
    /// A key without a peer name.
    pub(crate) fn plain(transport: Transport, addr: SocketAddr) -> PeerKey {
        PeerKey {
            transport,
            addr,
            name: None,
        }
    }
}

/// One entry: who it is and where its writer task takes bytes from.
#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    pub(crate) id: ConnId,
    pub(crate) peer: PeerKey,
    pub(crate) tx: WriteTx,
}

#[derive(Debug, Default)]
struct Inner {
    by_peer: HashMap<PeerKey, ConnId>,
    by_id: HashMap<ConnId, ConnEntry>,
    /// Connections per remote IP (per-source limit).
    per_ip: HashMap<std::net::IpAddr, usize>,
}

impl Inner {
    fn add(&mut self, entry: ConnEntry) {
        *self.per_ip.entry(entry.peer.addr.ip()).or_default() += 1;
        self.by_peer.insert(entry.peer.clone(), entry.id);
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
        if t.per_ip.get(&entry.peer.addr.ip()).copied().unwrap_or(0) >= max {
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
            let ip = e.peer.addr.ip();
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

    /// The connection to this peer.
    pub(crate) fn by_peer(&self, peer: &PeerKey) -> Option<ConnEntry> {
        let t = self.lock();
        t.by_peer.get(peer).and_then(|id| t.by_id.get(id)).cloned()
    }

    /// Looks up `peer`, or registers the entry made by `make` for it, in one
    /// critical section (so two sends to a new peer open one connection).
    /// Returns the entry and whether it is new.
    pub(crate) fn get_or_insert_with(
        &self,
        peer: &PeerKey,
        make: impl FnOnce(ConnId) -> ConnEntry,
    ) -> (ConnEntry, bool) {
        let mut t = self.lock();
        if let Some(e) = t.by_peer.get(peer).and_then(|id| t.by_id.get(id)) {
            return (e.clone(), false);
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

    fn entry(t: &ConnTable, peer: &PeerKey) -> ConnEntry {
        ConnEntry {
            id: t.next_id(),
            peer: peer.clone(),
            tx: super::super::write_queue::write_queue(1).0,
        }
    }

    #[test]
    fn tls_connections_are_found_only_under_their_name() {
        let t = ConnTable::default();
        let addr: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let a = PeerKey {
            transport: Transport::Tls,
            addr,
            name: Some("a.example".into()),
        };
        let b = PeerKey {
            name: Some("b.example".into()),
            ..a.clone()
        };
        let ea = entry(&t, &a);
        t.insert(ea.clone());
        assert_eq!(t.by_peer(&a).unwrap().id, ea.id);
        assert!(t.by_peer(&b).is_none());
        assert!(t.by_peer(&PeerKey::plain(Transport::Tls, addr)).is_none());
        assert!(t.by_peer(&PeerKey::plain(Transport::Tcp, addr)).is_none());
    }

    #[test]
    fn reuse_and_replace() {
        let t = ConnTable::default();
        let peer = PeerKey::plain(Transport::Tcp, "127.0.0.1:5070".parse().unwrap());
        let peer = &peer;
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
        let (c, new) = t.get_or_insert_with(peer, |id| ConnEntry {
            id,
            peer: peer.clone(),
            tx: super::super::write_queue::write_queue(1).0,
        });
        assert!(new);
        let (d, new) = t.get_or_insert_with(peer, |_| unreachable!());
        assert!(!new);
        assert_eq!(c.id, d.id);
        assert!(t.get(c.id).is_some());
    }
}
