//! Channel limits across a fleet (README "Fleets", issue 16): the question
//! a new call asks the fleet's counter, and the verdict the shell hands
//! back.
//!
//! The core never talks to Redis. On a node of a fleet its
//! [`ChannelCounters`](super::ChannelCounters) say they
//! [`confirm`](super::ChannelCounters::confirms): a limited call takes its
//! channel on the node's own view first (this node's calls plus the other
//! nodes' last known counts), is created, answered `100 Trying`, and then
//! holds its B-leg INVITE until the [`ChannelVerdict`] for its
//! [`ChannelAsk`] comes back as an input, exactly as a relayed call waits
//! for rtpengine. The shell runs one atomic check-and-count in Redis per
//! ask. A refusal answers the caller as a local limit would (`503` naming
//! `max_channels`, `486` for a DID); no verdict in time (Redis down or
//! slow) lets the call go on with the local view, counted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use super::admission::{ChannelKey, Refusal};
use super::table::CallId;

/// Identifies one ask within a core shard: the verdict carries it back.
pub type ChannelAskId = u64;

/// A limited call's channel, to be counted against the fleet-wide limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelAsk {
    /// Echoed in the [`ChannelAnswer`].
    pub id: ChannelAskId,
    /// The trunk or DID.
    pub key: ChannelKey,
    /// Its limit (`max_channels`, a DID's `channels`).
    pub limit: u32,
}

/// What the fleet's counter said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelVerdict {
    /// Under the limit across the fleet: counted there; the call goes on.
    Granted,
    /// The fleet already holds `active` channels of the key: the call is
    /// refused.
    Refused {
        /// Channels of the key in use across the fleet.
        active: u32,
    },
    /// The counter could not be asked (Redis down or slow): the call goes
    /// on with this node's view, and the shell reconciles later.
    Unknown,
}

/// The shell's answer to a [`ChannelAsk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelAnswer {
    /// The ask's id.
    pub id: ChannelAskId,
    /// The ask's key.
    pub key: ChannelKey,
    /// The verdict.
    pub verdict: ChannelVerdict,
}

/// Asks out to the shell and those waiting for their verdict, each with
/// the core's own deadline (a shell that never answers lets the call go
/// on, never holds it).
#[derive(Debug, Default)]
pub(crate) struct FleetQueue {
    out: VecDeque<ChannelAsk>,
    next_id: ChannelAskId,
    pending: HashMap<ChannelAskId, Waiting>,
    heap: BinaryHeap<Reverse<(Instant, ChannelAskId)>>,
    /// Calls that went on without a verdict (`Unknown` or the deadline).
    pub(crate) unconfirmed: u64,
    /// Calls the fleet refused.
    pub(crate) refused: u64,
}

/// A call waiting for its verdict.
#[derive(Debug)]
struct Waiting {
    call: CallId,
    key: ChannelKey,
    deadline: Instant,
    /// What the caller gets if the fleet refuses.
    refusal: Refusal,
}

impl FleetQueue {
    /// Queues the ask of `call` for `key` within `limit`.
    fn push(
        &mut self,
        call: CallId,
        key: ChannelKey,
        limit: u32,
        refusal: Refusal,
        deadline: Instant,
    ) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.insert(
            id,
            Waiting {
                call,
                key: key.clone(),
                deadline,
                refusal,
            },
        );
        self.heap.push(Reverse((deadline, id)));
        self.out.push_back(ChannelAsk { id, key, limit });
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Asks still waiting past their deadline at `now`.
    fn expired(&mut self, now: Instant) -> Vec<ChannelAskId> {
        let mut out = Vec::new();
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.pending.get(&id).is_some_and(|w| w.deadline == at) {
                out.push(id);
            }
        }
        out
    }
}

impl super::B2bua {
    /// The next channel ask for the shell's fleet counter (drain after
    /// each input, with `poll_action`). Only on a node of a fleet.
    pub fn poll_channel_ask(&mut self) -> Option<ChannelAsk> {
        self.fleet.out.pop_front()
    }

    /// Calls waiting for the fleet's verdict.
    pub fn channel_asks_in_flight(&self) -> usize {
        self.fleet.pending.len()
    }

    /// Calls that went on without the fleet's verdict (Redis down or
    /// slow), and calls the fleet refused.
    pub fn fleet_counts(&self) -> (u64, u64) {
        (self.fleet.unconfirmed, self.fleet.refused)
    }

    /// The fleet counter's verdict on an ask from
    /// [`poll_channel_ask`](Self::poll_channel_ask): the call it holds
    /// goes on or is refused.
    pub fn handle_channel_answer(&mut self, answer: ChannelAnswer, now: Instant) {
        let granted = answer.verdict == ChannelVerdict::Granted;
        let waiting = self.fleet.pending.remove(&answer.id).filter(|w| {
            // Still holding its channel: not cancelled meanwhile.
            self.table
                .calls
                .get(&w.call)
                .is_some_and(|c| c.channel.is_some() && c.holds_channel())
        });
        let Some(w) = waiting else {
            // Answered after the core's deadline (the call went on without
            // it), or the call was cancelled meanwhile: a channel the fleet
            // counted for it is given back.
            if granted {
                self.channels.grant_unused(&answer.key);
            }
            return;
        };
        match answer.verdict {
            ChannelVerdict::Granted => self.start_b_leg(w.call, true, now),
            ChannelVerdict::Unknown => {
                self.fleet.unconfirmed += 1;
                self.start_b_leg(w.call, false, now);
            }
            ChannelVerdict::Refused { active } => {
                self.fleet.refused += 1;
                let refusal = w.refusal;
                let status = refusal.status();
                self.stats.refused[refusal.cause() as usize] += 1;
                let reason = match &refusal {
                    Refusal::Policy { denied, .. } => Some(denied.reason_phrase().into_owned()),
                    _ => None,
                };
                self.with_call(w.call, now, |call, fx| {
                    tracing::info!(
                        call_id = %call.a_call_id(),
                        status = status.as_u16(),
                        fleet_active = active,
                        "INVITE refused: {refusal} (across the fleet)"
                    );
                    call.refuse(status, reason.as_deref(), fx);
                });
            }
        }
    }

    /// Lets the calls whose verdict did not come in time go on.
    pub(crate) fn fleet_timeouts(&mut self, now: Instant) {
        for id in self.fleet.expired(now) {
            let Some(key) = self.fleet.pending.get(&id).map(|w| w.key.clone()) else {
                continue;
            };
            let answer = ChannelAnswer {
                id,
                key,
                verdict: ChannelVerdict::Unknown,
            };
            self.handle_channel_answer(answer, now);
        }
    }

    /// The earliest fleet deadline.
    pub(crate) fn fleet_poll_timeout(&self) -> Option<Instant> {
        self.fleet.poll_timeout()
    }

    /// Holds call `id`'s B-leg INVITE until the fleet counts its channel
    /// of `key` within `limit` (`refusal` if it does not).
    pub(crate) fn ask_channel(
        &mut self,
        id: CallId,
        key: ChannelKey,
        limit: u32,
        refusal: Refusal,
        now: Instant,
    ) {
        let deadline = now + self.cfg.fleet_timeout;
        self.fleet.push(id, key, limit, refusal, deadline);
    }
}
