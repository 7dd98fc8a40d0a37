//! Live views from the core (SPEC §6): `GET /v1/calls`,
//! `DELETE /v1/calls/{call_id}`, `GET /v1/registrations`, `GET /v1/bans`,
//! `DELETE /v1/bans/{ip}`, and `GET /metrics`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::core::CoreQuery;
use super::error::ApiError;
use super::Live;

pub(crate) async fn calls(State(live): State<Arc<Live>>) -> Result<Json<Value>, ApiError> {
    let items = live.core().ask(CoreQuery::Calls).await?;
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn hang_up(
    State(live): State<Arc<Live>>,
    Path(call_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = live.core().ask(|tx| CoreQuery::HangUp(call_id, tx)).await?;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such call in progress"))
    }
}

pub(crate) async fn registrations(State(live): State<Arc<Live>>) -> Result<Json<Value>, ApiError> {
    let items = live.core().ask(CoreQuery::Registrations).await?;
    Ok(Json(json!({ "items": items })))
}

pub(crate) async fn bans(State(live): State<Arc<Live>>) -> Result<Json<Value>, ApiError> {
    let items = live.core().ask(CoreQuery::Bans).await?;
    Ok(Json(json!({ "items": items })))
}

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

pub(crate) async fn metrics(State(live): State<Arc<Live>>) -> Result<impl IntoResponse, ApiError> {
    let mut text = live.core().ask(CoreQuery::Metrics).await?;
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
