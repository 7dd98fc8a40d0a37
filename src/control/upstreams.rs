//! `GET /v1/upstreams` (README "Carriers"): every `[[upstream]]` with its
//! OPTIONS health and its registration state (RFC 3261 §10 client side:
//! `registered`, `failed`, `disabled`), read from the core.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::core::CoreQuery;
use super::error::ApiError;
use super::schema::{Error, Items};
use super::Live;
use crate::b2bua::UpstreamRegistration;
use crate::endpoint::Endpoint;

/// One upstream as `GET /v1/upstreams` shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[schema(as = Upstream)]
pub struct UpstreamView {
    /// `[[upstream]] name`.
    pub name: String,
    /// Health from OPTIONS pings (`false` after failed pings).
    pub up: bool,
    /// The registration at this upstream (`register = true`).
    pub registration: UpstreamRegistration,
}

/// The views of every upstream, in config order (on the core task).
pub(crate) fn views(ep: &Endpoint, now: std::time::Instant) -> Vec<UpstreamView> {
    let b2bua = ep.b2bua();
    b2bua
        .upstreams()
        .iter()
        .enumerate()
        .map(|(i, u)| UpstreamView {
            name: u.name.clone(),
            up: u.up,
            registration: b2bua.registration(i, now),
        })
        .collect()
}

/// `GET /v1/upstreams`: upstreams, health and registration state.
#[utoipa::path(get, path = "/v1/upstreams", operation_id = "list_upstreams", tag = "live",
    responses(
        (status = 200, description = "Upstreams in config order", body = Items<UpstreamView>),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn list(
    State(live): State<Arc<Live>>,
) -> Result<Json<Items<UpstreamView>>, ApiError> {
    let items = live.core().ask(CoreQuery::Upstreams).await?;
    Ok(Json(Items { items }))
}
