//! This node's side of the fleet's channel counters: the
//! [`ChannelCounters`] every core shard admits calls against.
//!
//! Three counts per trunk or DID, all in memory (the hot path never waits
//! on Redis):
//! - `local`: every channel held on this node, including calls still
//!   waiting for the fleet's verdict (exact across the node's shards);
//! - `gone_on`: this node's calls that went on (granted by the fleet, or
//!   let through with no verdict); this is what the node writes to Redis,
//!   as an absolute count, so a lost write or an outage heals with the
//!   next one;
//! - `others`: the other nodes' counts as the last verdicts saw them, used
//!   only while Redis is unreachable (the local view).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::b2bua::{ChannelCounters, ChannelKey, LocalChannels};

/// The fleet's counters as this node holds them; shared by the core
/// shards (as their [`ChannelCounters`]) and the cluster task.
#[derive(Debug, Default)]
pub struct FleetCounters {
    local: LocalChannels,
    gone_on: DashMap<ChannelKey, u32>,
    others: DashMap<ChannelKey, u32>,
    /// Keys whose `gone_on` count Redis has not been told yet.
    dirty: Mutex<HashSet<ChannelKey>>,
    /// Wakes the cluster task to write the dirty keys.
    pub(super) wake: Notify,
    /// Whether Redis answered the last request.
    up: AtomicBool,
    /// Writes lost to a full or gone task: healed by the next heartbeat.
    pub(super) unsent: AtomicU64,
}

impl FleetCounters {
    /// Empty counters; Redis counts as down until the first heartbeat.
    pub fn new() -> FleetCounters {
        FleetCounters::default()
    }

    /// Whether Redis answered the last request.
    pub fn redis_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Records whether Redis answered; returns the previous state.
    pub(super) fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel)
    }

    /// This node's calls of `key` that went on.
    pub(super) fn gone_on(&self, key: &ChannelKey) -> u32 {
        self.gone_on.get(key).map_or(0, |n| *n)
    }

    /// Every key this node has written or must write, with its count.
    pub(super) fn gone_on_all(&self) -> Vec<(ChannelKey, u32)> {
        self.gone_on
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect()
    }

    /// Calls holding a channel on this node.
    pub(super) fn calls(&self) -> u64 {
        self.local
            .snapshot()
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    /// The fleet counted one more call of `key` on this node (a granted
    /// verdict: Redis has it already).
    pub(super) fn granted(&self, key: &ChannelKey, others: u32) {
        *self.gone_on.entry(key.clone()).or_insert(0) += 1;
        self.saw_others(key, others);
    }

    /// The other nodes' count of `key` as a verdict saw it.
    pub(super) fn saw_others(&self, key: &ChannelKey, others: u32) {
        if others == 0 {
            self.others.remove(key);
        } else {
            self.others.insert(key.clone(), others);
        }
    }

    /// Takes the keys to write.
    pub(super) fn take_dirty(&self) -> HashSet<ChannelKey> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Marks `keys` to write again (a write failed).
    pub(super) fn redirty(&self, keys: impl IntoIterator<Item = ChannelKey>) {
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(keys);
    }

    /// Forgets `key` once its count, written as zero, is still zero.
    pub(super) fn forget_if_zero(&self, key: &ChannelKey) {
        self.gone_on.remove_if(key, |_, n| *n == 0);
    }

    fn add(&self, key: &ChannelKey, up: bool) {
        {
            let mut n = self.gone_on.entry(key.clone()).or_insert(0);
            *n = if up {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            };
        }
        self.dirty
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        self.wake.notify_one();
    }

    /// The other nodes' channels of `key` this node counts with: none
    /// while Redis answers (its verdict decides), the last seen while it
    /// does not.
    fn others_now(&self, key: &ChannelKey) -> u32 {
        if self.redis_up() {
            0
        } else {
            self.others.get(key).map_or(0, |n| *n)
        }
    }
}

impl ChannelCounters for FleetCounters {
    fn try_acquire(&self, key: &ChannelKey, limit: Option<u32>) -> Result<(), u32> {
        let others = self.others_now(key);
        self.local
            .try_acquire(key, limit.map(|max| max.saturating_sub(others)))
            .map_err(|n| n.saturating_add(others))
    }

    fn release(&self, key: &ChannelKey) {
        self.local.release(key);
    }

    fn active(&self, key: &ChannelKey) -> u32 {
        self.local.active(key).saturating_add(self.others_now(key))
    }

    fn snapshot(&self) -> Vec<(ChannelKey, u32)> {
        self.local.snapshot()
    }

    fn confirms(&self) -> bool {
        true
    }

    fn went_on(&self, key: &ChannelKey, granted: bool) {
        // A granted channel was counted by the cluster task already.
        if !granted {
            self.add(key, true);
        }
    }

    fn release_gone_on(&self, key: &ChannelKey) {
        self.local.release(key);
        self.add(key, false);
    }

    fn grant_unused(&self, key: &ChannelKey) {
        self.add(key, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b2bua::ChannelGuard;
    use std::sync::Arc;

    #[test]
    fn the_written_count_follows_calls_that_went_on_only() {
        let f = Arc::new(FleetCounters::new());
        let c: Arc<dyn ChannelCounters> = f.clone();
        let key = ChannelKey::Trunk(1);
        // Redis down: another node's 1 channel (last seen) counts.
        f.saw_others(&key, 1);
        let mut a = ChannelGuard::acquire(&c, key.clone(), Some(2)).unwrap();
        assert_eq!(
            ChannelGuard::acquire(&c, key.clone(), Some(2)).err(),
            Some(2)
        );
        // Redis up: the verdict decides, the node only checks its own.
        f.set_up(true);
        let b = ChannelGuard::acquire(&c, key.clone(), Some(2)).unwrap();
        assert_eq!(f.gone_on(&key), 0, "nothing went on yet");
        a.go_on(false);
        assert_eq!(f.gone_on(&key), 1);
        f.granted(&key, 0);
        assert_eq!(f.gone_on(&key), 2);
        assert_eq!(f.take_dirty().len(), 1);
        drop(b); // refused: never went on
        assert_eq!(f.gone_on(&key), 2);
        drop(a);
        assert_eq!(f.gone_on(&key), 1);
        c.grant_unused(&key);
        assert_eq!(f.gone_on(&key), 0);
        assert_eq!(f.calls(), 0);
        f.forget_if_zero(&key);
        assert!(f.gone_on_all().is_empty());
    }
}
