//! Live views from the core (SPEC §6): `GET /v1/calls`,
//! `DELETE /v1/calls/{call_id}`, `GET /v1/registrations`, `GET /v1/bans`,
//! `DELETE /v1/bans/{ip}`, and `GET /metrics`.

use std::net::IpAddr;
use std::sync::Arc;

use super::core::{BanView, CoreQuery};
use super::error::ApiError;
use super::schema::{Error, Items};
use super::Live;
use crate::{b2bua, registrar};
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
        .map(CallView::from)
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
    let bindings = live.core().ask(CoreQuery::Registrations).await?;
    let items = bindings.into_iter().map(RegistrationView::from).collect();
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

// The API's own shapes of the core's views. The core crate carries no HTTP
// or OpenAPI dependency, so the schema derive lives here; each `From`
// destructures the core type completely, so a field added there fails to
// compile here until the API decides how to show it.

/// One call in progress, as `GET /v1/calls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Call)]
pub struct CallView {
    /// The A-leg Call-ID (what `DELETE /v1/calls/{call_id}` takes).
    pub call_id: String,
    /// `placed` or `received`.
    pub direction: &'static str,
    /// The trunk login (the CDR's `sip_trunk`).
    pub trunk: String,
    /// Caller number as sent on.
    pub from: String,
    /// Dialled number after rewrite, or the DID.
    pub to: String,
    /// `trying`, `ringing`, `answered` or `ending`.
    pub state: &'static str,
    /// Unix seconds of the INVITE.
    pub started: u64,
    /// Unix seconds of the answer, if answered.
    pub answered: Option<u64>,
    /// The rtpengine (`ip:port` of its ng socket) anchoring the call's
    /// media (`media = "relay"`); null when media flows end to end.
    pub relay: Option<String>,
    /// Transport of the caller's leg: `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub a_transport: &'static str,
    /// Transport of the callee's leg (of the attempt in progress).
    pub b_transport: &'static str,
}

impl From<b2bua::CallView> for CallView {
    fn from(v: b2bua::CallView) -> CallView {
        let b2bua::CallView {
            call_id,
            direction,
            trunk,
            from,
            to,
            state,
            started,
            answered,
            relay,
            a_transport,
            b_transport,
        } = v;
        CallView {
            call_id,
            direction,
            trunk,
            from,
            to,
            state,
            started,
            answered,
            relay,
            a_transport,
            b_transport,
        }
    }
}

/// One binding as `GET /v1/registrations` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Registration)]
pub struct RegistrationView {
    /// The trunk login (the AOR user part).
    pub login: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Where the REGISTER came from (`ip:port`).
    pub source: String,
    /// `UDP`, `TCP`, `WS` or `WSS` (RFC 7118).
    pub transport: String,
    /// Seconds until it lapses.
    pub expires: u64,
    /// `+sip.instance`, if any.
    pub instance: Option<String>,
    /// `reg-id`, if any.
    pub reg_id: Option<u32>,
    /// User-Agent of the registering UA.
    pub user_agent: String,
}

impl From<registrar::RegistrationView> for RegistrationView {
    fn from(v: registrar::RegistrationView) -> RegistrationView {
        let registrar::RegistrationView {
            login,
            contact,
            source,
            transport,
            expires,
            instance,
            reg_id,
            user_agent,
        } = v;
        RegistrationView {
            login,
            contact,
            source,
            transport,
            expires,
            instance,
            reg_id,
            user_agent,
        }
    }
}

/// Registration state of one upstream, as `GET /v1/upstreams` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = UpstreamRegistration)]
pub struct UpstreamRegistration {
    /// `registered`, `failed` (not registered: refused, no answer, or not
    /// yet answered) or `disabled` (`register = false`).
    pub state: &'static str,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Unix seconds when the registration runs out, while registered.
    pub expires: Option<u64>,
}

impl From<b2bua::UpstreamRegistration> for UpstreamRegistration {
    fn from(v: b2bua::UpstreamRegistration) -> UpstreamRegistration {
        let b2bua::UpstreamRegistration {
            state,
            last_error,
            expires,
        } = v;
        UpstreamRegistration {
            state,
            last_error,
            expires,
        }
    }
}
