//! What the API asks the core tasks, which alone own the session tables,
//! the location store and the bans (ARCHITECTURE.md "one owner per fact"):
//! each question travels with a oneshot for its answer through a bounded
//! queue the core drains between packets, so the API never locks the hot
//! path and a slow API client never slows it.
//!
//! With several core shards (`[server] workers`), questions about calls go
//! to every shard and the answers are merged ([`Core::ask_all`]: the call
//! list concatenated, hang-ups counted, metrics summed); questions about
//! node-wide state (registrations, bans, upstreams) go to shard 0.

use std::net::IpAddr;
use std::time::Instant;

use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use crate::b2bua::CallView;
use crate::endpoint::Endpoint;
use crate::registrar::RegistrationView;

/// Questions queued for the core at most.
const QUERY_QUEUE: usize = 64;

/// One question for the core.
#[derive(Debug)]
pub enum CoreQuery {
    /// Calls in progress.
    Calls(oneshot::Sender<Vec<CallView>>),
    /// End a call by its A-leg Call-ID; false when none.
    HangUp(String, oneshot::Sender<bool>),
    /// End every call in progress placed by a trunk (by id); how many.
    HangUpTrunk(u64, oneshot::Sender<usize>),
    /// Current registrations.
    Registrations(oneshot::Sender<Vec<RegistrationView>>),
    /// Sources banned now.
    Bans(oneshot::Sender<Vec<BanView>>),
    /// Lift a ban; false when the source was not banned.
    Unban(IpAddr, oneshot::Sender<bool>),
    /// The core's metrics as Prometheus text.
    Metrics(oneshot::Sender<String>),
    /// Upstreams with health and registration state.
    Upstreams(oneshot::Sender<Vec<super::upstreams::UpstreamView>>),
}

/// A banned source as `GET /v1/bans` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = Ban)]
pub struct BanView {
    /// The source address.
    pub ip: String,
    /// Seconds until the ban ends.
    pub expires_in: u64,
    /// How many times it has been banned.
    pub strikes: u32,
}

/// Answers one question on the core task (cheap: no I/O).
pub fn answer(ep: &mut Endpoint, q: CoreQuery, now: Instant) {
    // A dropped receiver (client gone) is not an error.
    match q {
        CoreQuery::Calls(tx) => {
            let _ = tx.send(ep.calls());
        }
        CoreQuery::HangUp(call_id, tx) => {
            let _ = tx.send(ep.hang_up(&call_id, now));
        }
        CoreQuery::HangUpTrunk(id, tx) => {
            let _ = tx.send(ep.hang_up_trunk(id, now));
        }
        CoreQuery::Registrations(tx) => {
            let _ = tx.send(ep.registrar().store().snapshot(now));
        }
        CoreQuery::Bans(tx) => {
            let bans = ep
                .bans(now)
                .into_iter()
                .map(|(ip, b)| BanView {
                    ip: ip.to_string(),
                    expires_in: b.until.saturating_duration_since(now).as_secs(),
                    strikes: b.strikes,
                })
                .collect();
            let _ = tx.send(bans);
        }
        CoreQuery::Unban(ip, tx) => {
            let _ = tx.send(ep.unban(ip));
        }
        CoreQuery::Metrics(tx) => {
            let _ = tx.send(ep.metrics(now));
        }
        CoreQuery::Upstreams(tx) => {
            let _ = tx.send(super::upstreams::views(ep, now));
        }
    }
}

/// The API's handle on the core shards.
#[derive(Clone, Debug)]
pub struct Core {
    /// One queue per shard; shard 0 first.
    shards: std::sync::Arc<[mpsc::Sender<CoreQuery>]>,
}

impl Core {
    /// A handle on one core and the receiving end its task drains.
    pub fn channel() -> (Core, mpsc::Receiver<CoreQuery>) {
        let (core, mut rx) = Core::channels(1);
        (core, rx.remove(0))
    }

    /// A handle on `shards` cores (at least one) and the receiving end
    /// each shard's task drains, shard 0 first.
    pub fn channels(shards: usize) -> (Core, Vec<mpsc::Receiver<CoreQuery>>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..shards.max(1))
            .map(|_| mpsc::channel(QUERY_QUEUE))
            .unzip();
        (Core { shards: tx.into() }, rx)
    }

    /// Asks shard 0 (node-wide state); `503` when it is busy past the
    /// queue or stopping.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> CoreQuery,
    ) -> Result<T, ApiError> {
        let shard = self.shards.first().ok_or_else(busy)?;
        let (tx, rx) = oneshot::channel();
        shard.try_send(make(tx)).map_err(|_| busy())?;
        rx.await.map_err(|_| busy())
    }

    /// Asks every shard the same question (their calls, their counters):
    /// the answers in shard order; `503` when any is busy or stopping.
    pub(crate) async fn ask_all<T>(
        &self,
        make: impl Fn(oneshot::Sender<T>) -> CoreQuery,
    ) -> Result<Vec<T>, ApiError> {
        let mut waiting = Vec::with_capacity(self.shards.len());
        for shard in self.shards.iter() {
            let (tx, rx) = oneshot::channel();
            shard.try_send(make(tx)).map_err(|_| busy())?;
            waiting.push(rx);
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(rx.await.map_err(|_| busy())?);
        }
        Ok(out)
    }
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the SIP core is busy or stopping",
    )
}
