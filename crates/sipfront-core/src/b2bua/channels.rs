//! Channel counters per trunk and DID (SPEC §3 "channels", §4 `channels`),
//! shared by every core shard of a node so a limit holds exactly however
//! the calls are spread (issue 17 goal 2; Kamailio's `dialog` profiles in
//! shared memory do the same job).
//!
//! A call takes its channel with one atomic try-acquire against the limit
//! and holds a [`ChannelGuard`]; dropping the guard gives the channel back,
//! so every path that ends a call (a failure answered, BYE, removal from the
//! session table, a panic unwinding the call) frees it, and none can free it
//! twice. [`ChannelCounters`] is the seam for a fleet: a Redis implementation
//! (per-node keys with a TTL, issue 16) slots in behind the same trait.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::ChannelKey;

/// Where a node counts the channels in use.
///
/// Implementations must make `try_acquire` exact under concurrency: with
/// limit `n`, at most `n` acquisitions succeed until one is released.
pub trait ChannelCounters: fmt::Debug + Send + Sync {
    /// Takes one channel of `key` if fewer than `limit` are in use (`None`:
    /// no limit, the call is only counted).
    ///
    /// # Errors
    /// The number in use when the limit is reached.
    fn try_acquire(&self, key: &ChannelKey, limit: Option<u32>) -> Result<(), u32>;
    /// Gives back one channel of `key` taken by `try_acquire`.
    fn release(&self, key: &ChannelKey);
    /// Channels of `key` in use now.
    fn active(&self, key: &ChannelKey) -> u32;
    /// Every key with channels in use (`/metrics`).
    fn snapshot(&self) -> Vec<(ChannelKey, u32)>;
    /// Whether a limited channel taken here is only this node's view and
    /// the fleet's counter must confirm it before the call goes on (see
    /// [`ChannelAsk`](super::fleet::ChannelAsk)). False for one node.
    fn confirms(&self) -> bool {
        false
    }
    /// The call holding a channel of `key` goes on (its B-leg starts):
    /// a fleet counts it from now on. `granted`: the fleet's counter
    /// counted it already (its verdict was
    /// [`Granted`](super::fleet::ChannelVerdict::Granted)).
    fn went_on(&self, _key: &ChannelKey, _granted: bool) {}
    /// Gives back a channel whose call went on (see
    /// [`went_on`](Self::went_on)).
    fn release_gone_on(&self, key: &ChannelKey) {
        self.release(key);
    }
    /// The fleet's counter counted a channel of `key` that no call uses:
    /// the call was cancelled meanwhile, or went on without the verdict,
    /// which came late.
    fn grant_unused(&self, _key: &ChannelKey) {}
}

/// One node's counters: a sharded map of atomics. Acquiring is a
/// compare-and-swap under the map shard's *read* lock, so shards contend
/// only on the counter of the same trunk; a key whose count drops to zero
/// is removed (under the write lock, re-checked), so the map holds only the
/// trunks and DIDs with calls.
#[derive(Debug, Default)]
pub struct LocalChannels {
    counts: DashMap<ChannelKey, AtomicU32>,
}

impl LocalChannels {
    /// No channels in use.
    pub fn new() -> LocalChannels {
        LocalChannels::default()
    }
}

impl ChannelCounters for LocalChannels {
    fn try_acquire(&self, key: &ChannelKey, limit: Option<u32>) -> Result<(), u32> {
        loop {
            if let Some(count) = self.counts.get(key) {
                // Holding the read guard keeps the entry from being removed
                // between the load and the swap.
                let mut n = count.load(Ordering::Acquire);
                loop {
                    if limit.is_some_and(|max| n >= max) {
                        return Err(n);
                    }
                    match count.compare_exchange_weak(
                        n,
                        n.saturating_add(1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Ok(()),
                        Err(now) => n = now,
                    }
                }
            }
            if limit == Some(0) {
                return Err(0);
            }
            // First channel of `key`: insert 1 unless another shard got
            // there first, in which case go round and count on its entry.
            match self.counts.entry(key.clone()) {
                dashmap::Entry::Vacant(v) => {
                    v.insert(AtomicU32::new(1));
                    return Ok(());
                }
                dashmap::Entry::Occupied(_) => continue,
            }
        }
    }

    fn release(&self, key: &ChannelKey) {
        let last = match self.counts.get(key) {
            Some(count) => {
                let prev = count
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .unwrap_or(0);
                prev <= 1
            }
            None => false,
        };
        if last {
            self.counts
                .remove_if(key, |_, c| c.load(Ordering::Acquire) == 0);
        }
    }

    fn active(&self, key: &ChannelKey) -> u32 {
        self.counts
            .get(key)
            .map_or(0, |c| c.load(Ordering::Acquire))
    }

    fn snapshot(&self) -> Vec<(ChannelKey, u32)> {
        self.counts
            .iter()
            .map(|e| (e.key().clone(), e.value().load(Ordering::Acquire)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// One channel held by a call; dropping it gives the channel back.
pub struct ChannelGuard {
    counters: Arc<dyn ChannelCounters>,
    key: ChannelKey,
    /// The call went on ([`ChannelCounters::went_on`]).
    gone_on: bool,
}

impl ChannelGuard {
    /// Takes a channel of `key` within `limit` (see
    /// [`ChannelCounters::try_acquire`]).
    ///
    /// # Errors
    /// The number in use when the limit is reached.
    pub fn acquire(
        counters: &Arc<dyn ChannelCounters>,
        key: ChannelKey,
        limit: Option<u32>,
    ) -> Result<ChannelGuard, u32> {
        counters.try_acquire(&key, limit)?;
        Ok(ChannelGuard {
            counters: Arc::clone(counters),
            key,
            gone_on: false,
        })
    }

    /// The call goes on with this channel (see
    /// [`ChannelCounters::went_on`]); once.
    pub fn go_on(&mut self, granted: bool) {
        if !self.gone_on {
            self.gone_on = true;
            self.counters.went_on(&self.key, granted);
        }
    }

    /// The trunk or DID this channel belongs to.
    pub fn key(&self) -> &ChannelKey {
        &self.key
    }
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if self.gone_on {
            self.counters.release_gone_on(&self.key);
        } else {
            self.counters.release(&self.key);
        }
    }
}

impl fmt::Debug for ChannelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ChannelGuard").field(&self.key).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::thread;

    use super::*;

    fn local() -> Arc<dyn ChannelCounters> {
        Arc::new(LocalChannels::new())
    }

    #[test]
    fn a_limit_of_seven_holds_exactly_with_twenty_concurrent_acquirers() {
        for _round in 0..50 {
            let counters = local();
            let barrier = Arc::new(Barrier::new(20));
            let handles: Vec<_> = (0..20)
                .map(|_| {
                    let (c, b) = (Arc::clone(&counters), Arc::clone(&barrier));
                    thread::spawn(move || {
                        b.wait();
                        ChannelGuard::acquire(&c, ChannelKey::Trunk(7), Some(7)).ok()
                    })
                })
                .collect();
            let guards: Vec<ChannelGuard> = handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect();
            assert_eq!(guards.len(), 7, "exactly the limit is granted");
            assert_eq!(counters.active(&ChannelKey::Trunk(7)), 7);
            drop(guards);
            assert_eq!(
                counters.active(&ChannelKey::Trunk(7)),
                0,
                "every guard gave back"
            );
            assert!(counters.snapshot().is_empty(), "no entry left behind");
        }
    }

    #[test]
    fn churn_from_several_threads_never_exceeds_the_limit_nor_leaks() {
        let counters = local();
        let key = ChannelKey::Did(Arc::from("12565378257"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (c, k) = (Arc::clone(&counters), key.clone());
                thread::spawn(move || {
                    let mut most = 0;
                    for _ in 0..2_000 {
                        if let Ok(g) = ChannelGuard::acquire(&c, k.clone(), Some(3)) {
                            most = most.max(c.active(&k));
                            drop(g);
                        }
                    }
                    most
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap_or(u32::MAX) <= 3);
        }
        assert_eq!(counters.active(&key), 0);
        assert!(counters.snapshot().is_empty());
    }

    #[test]
    fn no_limit_counts_and_zero_refuses_and_keys_are_apart() {
        let counters = local();
        let a = ChannelGuard::acquire(&counters, ChannelKey::Trunk(1), None).unwrap();
        let b = ChannelGuard::acquire(&counters, ChannelKey::Trunk(1), None).unwrap();
        assert_eq!(
            ChannelGuard::acquire(&counters, ChannelKey::Trunk(2), Some(0)).err(),
            Some(0)
        );
        assert_eq!(
            ChannelGuard::acquire(&counters, ChannelKey::Trunk(1), Some(2)).err(),
            Some(2)
        );
        assert_eq!(counters.snapshot(), vec![(ChannelKey::Trunk(1), 2)]);
        drop((a, b));
        assert_eq!(counters.active(&ChannelKey::Trunk(1)), 0);
    }
}
