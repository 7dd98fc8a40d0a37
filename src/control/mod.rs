//! The HTTP control API, axum on the shell's tokio runtime.
//!
//! Everything here is off the hot path: handlers read the config snapshot
//! ([`Live::current`], an `ArcSwap` load), and changes go through
//! [`Live`]'s one write path (validate whole → persist on a blocking task →
//! swap → send to the core through the same channel SIGHUP uses).
//!
//! Routes: `GET /healthz` (no key; with the trunk sync's status when
//! `[sync]` is set, see [`sync_trunks`]) and `GET /openapi.json` (no key);
//! `/v1/trunks`, `/v1/trunks/{id}`,
//! `/v1/mydids`, `/v1/mydids/{number}`, `POST /v1/mydids/update-destinations`, `GET /v1/cdr`
//! (JSON or CSV, from the CDR store on a blocking task), and the live
//! views from the core (`/v1/calls`, `/v1/registrations`, `/v1/bans`,
//! `/metrics`, see [`CoreQuery`]), `GET /v1/cluster` (the fleet, from the
//! cluster task) (key required, see [`auth`]). Bodies over [`BODY_LIMIT`] get `413`,
//! unknown routes `404`, wrong methods `405`, all as
//! `{"error": "...", "details": {...}}`.

mod auth;
mod cdr;
mod cluster;
mod core;
mod dids;
mod error;
pub mod keys;
mod listener;
mod live;
mod openapi;
mod schema;
mod sync;
mod trunks;
mod upstreams;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::transport::Shutdown;
use error::ApiError;

pub use self::core::{answer, BanView, Core, CoreQuery};
pub use live::Live;
pub use sync::run as sync_trunks;
pub use upstreams::{TargetView, UpstreamView};
pub use views::{CallView, RegistrationView, UpstreamRegistration};

/// Largest request body accepted (1 MiB).
pub const BODY_LIMIT: usize = 1 << 20;

/// A declared body up to this size that is over [`BODY_LIMIT`] is read and
/// discarded before the `413`, so the client (still sending) reads the
/// answer instead of a connection reset; anything larger is cut off.
const DRAIN_LIMIT: usize = 8 << 20;

/// Every route, as the two lists the router and the OpenAPI document are
/// both built from (see [`openapi`]): behind the API key, and open.
fn routes() -> (OpenApiRouter<Arc<Live>>, OpenApiRouter<Arc<Live>>) {
    let keyed = OpenApiRouter::new()
        .routes(routes!(trunks::list, trunks::create))
        .routes(routes!(trunks::get, trunks::update, trunks::delete))
        .routes(routes!(dids::list, dids::create))
        .routes(routes!(dids::get, dids::update, dids::delete))
        .routes(routes!(dids::update_destinations))
        .routes(routes!(cdr::list))
        .routes(routes!(views::calls))
        .routes(routes!(views::hang_up))
        .routes(routes!(views::registrations))
        .routes(routes!(views::bans))
        .routes(routes!(views::unban))
        .routes(routes!(views::metrics))
        .routes(routes!(upstreams::list))
        .routes(routes!(cluster::view));
    let open = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(openapi::serve));
    (keyed, open)
}

/// The router with its state.
pub fn router(live: Arc<Live>) -> Router {
    let (keyed, open) = routes();
    let keyed = keyed.route_layer(middleware::from_fn_with_state(
        live.clone(),
        auth::require_key,
    ));
    let (app, _doc) = open.merge(keyed).split_for_parts();
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(limit_body))
        .with_state(live)
}

/// Binds the API's listener (port 0 picks one).
///
/// # Errors
/// The address cannot be bound.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the API until `shutdown` fires, then lets requests in flight finish.
pub async fn serve(listener: TcpListener, live: Arc<Live>, mut shutdown: Shutdown) {
    let http = live.current().http.clone();
    let idle = std::time::Duration::from_secs(http.idle_timeout_s);
    // `tap_io` only so `ConnectInfo<SocketAddr>` works on our listener type.
    let listener = listener::Guarded::new(listener, http.max_connections, idle).tap_io(|_| {});
    let app = router(live).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.recv().await })
        .await;
    if let Err(e) = result {
        tracing::error!("HTTP API stopped: {e}");
    }
}

/// `GET /healthz`: the process serves (no key); plus `"sync": {...}` (last
/// pull, result, ETag, trunk count) when `[sync]` is configured.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "service",
    responses((status = 200, description = "`{\"status\": \"ok\"}`, plus `\"sync\": {interval_s, \
    last_attempt, last_success, last_result, etag, trunks, failures}` when `[sync]` is configured",
    body = Object)))]
async fn healthz(State(live): State<Arc<Live>>) -> Json<Value> {
    let mut body = json!({ "status": "ok" });
    if let Some(sync) = live.sync() {
        body["sync"] = sync.to_json(live.current().trunk.len());
    }
    Json(body)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// `413` as soon as a declared `Content-Length` is over the limit (bodies
/// without one are cut by `DefaultBodyLimit` while reading).
async fn limit_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > BODY_LIMIT as u64 => {
            if n <= DRAIN_LIMIT as u64 {
                let _ = axum::body::to_bytes(req.into_body(), DRAIN_LIMIT).await;
            }
            ApiError::too_large(BODY_LIMIT).into_response()
        }
        _ => next.run(req).await,
    }
}

/// A JSON object body. Wrong or unreadable bodies get a JSON error: `413`
/// over the limit, `400` when not JSON, `422` when not an object.
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(BODY_LIMIT)
            } else {
                ApiError::new(r.status(), r.body_text())
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(JsonObject(m)),
            Ok(_) => {
                let mut d = Map::new();
                d.insert("body".to_owned(), "must be a JSON object".into());
                Err(ApiError::invalid(d))
            }
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {e}"),
            )),
        }
    }
}
