//! The Completed state of non-INVITE server transactions over UDP, kept as
//! a slim record (RFC 3261 §17.2.2).
//!
//! In Completed the transaction's only job until Timer J (64·T1, 32 s) is
//! to answer a retransmitted request with the final response again. That
//! needs the key, the encoded response and where to send it; not the state
//! machine, its timer table or a heap entry. Under a REGISTER load most
//! live transactions are in this state (6,000 registrations/s hold
//! 192,000 `200`s; their `401`s hold none, see the endpoint's challenge
//! memory), so each is moved here when its final response is sent.
//!
//! Timer J is the same for every record, so deadlines arrive in insertion
//! order and a FIFO queue replaces the timer heap: expiry is O(1) per
//! record. (If `now` went backwards, a record is kept a little longer,
//! never dropped early.)

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::sip::{Bytes, Transport};

use super::key::TransactionKey;

/// What answering a retransmission needs.
#[derive(Debug)]
struct Record {
    /// The final response, copied to its exact size (the builder's buffer
    /// has room for the request's headers too).
    response: Bytes,
    dest: SocketAddr,
    transport: Transport,
}

/// Completed non-INVITE server transactions, by key, expiring in order.
#[derive(Debug, Default)]
pub(super) struct Completed {
    /// The key is shared with its queue entry: one allocation per record.
    by_key: HashMap<Arc<TransactionKey>, Record>,
    /// Timer J deadlines, oldest first.
    expiry: VecDeque<(Instant, Arc<TransactionKey>)>,
}

/// A response to send again.
pub(super) struct Resend {
    pub(super) dest: SocketAddr,
    pub(super) transport: Transport,
    pub(super) bytes: Bytes,
}

impl Completed {
    /// Records that `key` sent `response` to `dest` and is Completed until
    /// `until` (Timer J).
    pub(super) fn insert(
        &mut self,
        key: TransactionKey,
        response: &[u8],
        dest: SocketAddr,
        transport: Transport,
        until: Instant,
    ) {
        let key = Arc::new(key);
        let record = Record {
            response: Bytes::copy_from_slice(response),
            dest,
            transport,
        };
        self.by_key.insert(Arc::clone(&key), record);
        self.expiry.push_back((until, key));
    }

    /// Whether `key` is a Completed transaction.
    pub(super) fn contains(&self, key: &TransactionKey) -> bool {
        self.by_key.contains_key(key)
    }

    /// The response to send again for a retransmission of `key`'s request.
    pub(super) fn resend(&self, key: &TransactionKey) -> Option<Resend> {
        self.by_key.get(key).map(|r| Resend {
            dest: r.dest,
            transport: r.transport,
            bytes: r.response.clone(),
        })
    }

    /// Forgets `key` before Timer J (the transport failed); whether it was
    /// here. Its queue entry is skipped when it comes due.
    pub(super) fn remove(&mut self, key: &TransactionKey) -> bool {
        self.by_key.remove(key).is_some()
    }

    /// Number of Completed transactions.
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The next Timer J deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.expiry.front().map(|(at, _)| *at)
    }

    /// Removes the next record whose Timer J is due at `now`, returning its
    /// key (the transaction is Terminated).
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<TransactionKey> {
        while let Some((at, _)) = self.expiry.front() {
            if *at > now {
                return None;
            }
            let (_, key) = self.expiry.pop_front()?;
            // Only if the record is this entry's: a key removed early and
            // completed again has a newer entry further back.
            let current = self
                .by_key
                .get_key_value(&*key)
                .is_some_and(|(k, _)| Arc::ptr_eq(k, &key));
            if current {
                self.by_key.remove(&*key);
                self.shrink_after_burst();
                return Some(Arc::unwrap_or_clone(key));
            }
        }
        None
    }

    /// After a burst, give the tables' memory back (they never shrink on
    /// their own).
    fn shrink_after_burst(&mut self) {
        if self.by_key.capacity() > 4 * self.by_key.len() + 1024 {
            self.by_key.shrink_to(2 * self.by_key.len());
        }
        if self.expiry.capacity() > 4 * self.expiry.len() + 1024 {
            self.expiry.shrink_to(2 * self.expiry.len());
        }
    }
}
