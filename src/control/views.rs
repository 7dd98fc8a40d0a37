//! Live views from the core (SPEC §6): `GET /v1/calls`,
//! `DELETE /v1/calls/{call_id}`, `GET /v1/registrations`, `GET /v1/bans`,
//! `DELETE /v1/bans/{ip}`, and `GET /metrics`.

use std::net::IpAddr;
use std::sync::Arc;

use super::core::{BanView, CoreQuery};
use super::error::ApiError;
use super::schema::{Error, Items};
use super::Live;
use crate::b2bua::CallView;
use crate::registrar::RegistrationView;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

/// `GET /v1/calls`: the calls in progress, oldest first.
#[utoipa::path(get, path = "/v1/calls", operation_id = "list_calls", tag = "live",
    responses(
        (status = 200, description = "Calls in progress", body = Items<CallView>),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn calls(
    State(live): State<Arc<Live>>,
) -> Result<Json<Items<CallView>>, ApiError> {
    let items = live
        .core()
        .ask_all(CoreQuery::Calls)
        .await?
        .into_iter()
        .flatten()
        .collect();
    Ok(Json(Items { items }))
}

/// `DELETE /v1/calls/{call_id}`: ends the call on both legs (BYE, or
/// CANCEL and `487` while ringing).
#[utoipa::path(delete, path = "/v1/calls/{call_id}", operation_id = "hang_up_call", tag = "live",
    params(("call_id" = String, Path, description = "The A-leg Call-ID, as `GET /v1/calls` shows it")),
    responses(
        (status = 204, description = "Ending"),
        (status = 404, description = "No such call in progress", body = Error),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn hang_up(
    State(live): State<Arc<Live>>,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The shard that owns it ends it; the others answer false.
    let found = live
        .core()
        .ask_all(|tx| CoreQuery::HangUp(call_id.clone(), tx))
        .await?;
    if found.contains(&true) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such call in progress"))
    }
}

/// `GET /v1/registrations`: the current bindings.
#[utoipa::path(get, path = "/v1/registrations", operation_id = "list_registrations", tag = "live",
    responses(
        (status = 200, description = "Current registrations", body = Items<RegistrationView>),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn registrations(
    State(live): State<Arc<Live>>,
) -> Result<Json<Items<RegistrationView>>, ApiError> {
    let items = live.core().ask(CoreQuery::Registrations).await?;
    Ok(Json(Items { items }))
}

/// `GET /v1/bans`: the sources banned now.
#[utoipa::path(get, path = "/v1/bans", operation_id = "list_bans", tag = "live",
    responses(
        (status = 200, description = "Banned sources", body = Items<BanView>),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn bans(State(live): State<Arc<Live>>) -> Result<Json<Items<BanView>>, ApiError> {
    let items = live.core().ask(CoreQuery::Bans).await?;
    Ok(Json(Items { items }))
}

/// `DELETE /v1/bans/{ip}`: lifts a ban.
#[utoipa::path(delete, path = "/v1/bans/{ip}", operation_id = "unban", tag = "live",
    params(("ip" = String, Path, description = "The banned address")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 404, description = "That source is not banned", body = Error),
        (status = 422, description = "`ip` is not an IP address", body = Error),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn unban(
    State(live): State<Arc<Live>>,
    Path(ip): Path<String>,
) -> Result<StatusCode, ApiError> {
    let ip: IpAddr = ip.parse().map_err(|_| {
        let mut d = super::error::Details::new();
        d.insert("ip".to_owned(), "not an IP address".into());
        ApiError::invalid(d)
    })?;
    if live.core().ask(|tx| CoreQuery::Unban(ip, tx)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("that source is not banned"))
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn metrics(State(live): State<Arc<Live>>) -> Result<impl IntoResponse, ApiError> {
    let mut text = crate::endpoint::merge_metrics(&live.core().ask_all(CoreQuery::Metrics).await?);
    if let Some(sync) = live.sync() {
        sync.metrics(&mut text);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
