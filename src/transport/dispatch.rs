//! The dispatch point between the sockets and the core shards
//! (`[server] workers`): each received message goes to the one shard that
//! owns its call, chosen from its raw bytes by
//! [`endpoint::shard::of_message`](crate::endpoint::shard::of_message)
//! (its Call-ID, no parse); what concerns every shard (a send failure, a
//! closed connection) goes to all of them.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::TransportEvent;
use crate::endpoint::shard;

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// A shard's queue is full (`try_send`).
    Full,
    /// A shard's task has stopped.
    Closed,
}

/// The sockets' handle on the core shards' inbound queues. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EventSink {
    /// One bounded queue per shard, shard 0 first (never empty).
    shards: Arc<[mpsc::Sender<TransportEvent>]>,
}

impl From<mpsc::Sender<TransportEvent>> for EventSink {
    /// One core: everything to it.
    fn from(tx: mpsc::Sender<TransportEvent>) -> EventSink {
        EventSink {
            shards: Arc::new([tx]),
        }
    }
}

impl EventSink {
    /// Events to `shards` (shard 0 first); `None` when the list is empty.
    pub fn new(shards: Vec<mpsc::Sender<TransportEvent>>) -> Option<EventSink> {
        (!shards.is_empty()).then(|| EventSink {
            shards: shards.into(),
        })
    }

    /// The shard that takes `ev`, or `None` for every shard.
    fn owner(&self, ev: &TransportEvent) -> Option<&mpsc::Sender<TransportEvent>> {
        match ev {
            TransportEvent::Inbound(inbound) => {
                let i = shard::of_message(&inbound.bytes, self.shards.len());
                self.shards.get(i).or_else(|| self.shards.first())
            }
            TransportEvent::SendFailed { .. } | TransportEvent::Closed { .. } => None,
        }
    }

    /// Queues `ev` without waiting (a full queue is the caller's drop to
    /// count). An event for every shard is queued wherever there is room.
    ///
    /// # Errors
    /// [`SinkError::Full`] or [`SinkError::Closed`] when a queue did not
    /// take it.
    pub fn try_send(&self, ev: TransportEvent) -> Result<(), SinkError> {
        let map = |e: mpsc::error::TrySendError<TransportEvent>| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::Full,
            mpsc::error::TrySendError::Closed(_) => SinkError::Closed,
        };
        if let Some(tx) = self.owner(&ev) {
            return tx.try_send(ev).map_err(map);
        }
        let mut result = Ok(());
        for tx in self.shards.iter() {
            if let Err(e) = tx.try_send(ev.clone()) {
                result = Err(map(e));
            }
        }
        result
    }

    /// Queues `ev`, waiting for room (backpressure on a stream).
    ///
    /// # Errors
    /// [`SinkError::Closed`] when a shard's task has stopped.
    pub async fn send(&self, ev: TransportEvent) -> Result<(), SinkError> {
        if let Some(tx) = self.owner(&ev) {
            return tx.send(ev).await.map_err(|_| SinkError::Closed);
        }
        for tx in self.shards.iter() {
            tx.send(ev.clone()).await.map_err(|_| SinkError::Closed)?;
        }
        Ok(())
    }
}
