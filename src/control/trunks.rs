//! `/v1/trunks` (SPEC §6): list, create, read, update, delete, with the
//! provider's field names (SPEC §2).
//!
//! Input is read field by field so a `422` can name every bad field at
//! once. Lenient where provisioning tools differ: numbers may come as
//! strings (`"max_call_cost": "0.18"`, `"max_channels": "10"`), booleans as
//! `0`/`1` or `"true"`/`"false"`, `multiple_numbers` is `passthrough`.
//! `PUT` updates only the fields it names. Output: `max_call_cost` as a
//! string (as the provider returns it), `passthrough` and
//! `multiple_numbers` both, and the password never in clear: `"********"`
//! when set, `""` when not; sending `"********"` back keeps the password.
//!
//! While `[sync]` is configured the remote list owns the trunks (see
//! [`super::sync`]): `POST`, `PUT` and `DELETE` answer `409`, `GET` works.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::core::CoreQuery;
use super::error::{ApiError, Details};
use super::live::{Change, Stored};
use super::schema::{Error, Items};
use super::{JsonObject, Live};
use crate::config::{check_trunk, IpNet, TrunkConfig};

/// What a set password reads as.
pub(crate) const MASK: &str = "********";

/// A trunk as the API shows it (the `[[trunk]]` key names of the config file).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Trunk {
    /// Unique id (generated when omitted on create).
    id: u64,
    /// The SIP login (`10000 + id` when omitted on create).
    name: String,
    /// Free text for people.
    label: String,
    /// `********` when set, `""` when not: never in clear.
    password: String,
    /// Caller ID sent on when the caller's is not passed through.
    callerid: String,
    /// Calls only from `allowed_ips`.
    ip_restrict: bool,
    /// Addresses or networks, e.g. `192.0.2.7`, `10.0.0.0/8`.
    #[schema(value_type = Vec<String>)]
    allowed_ips: Vec<IpNet>,
    /// IP authentication: calls from this host need no digest.
    host_request: String,
    /// Received calls carry the DID in `To`.
    didinfo_enabled: bool,
    /// Cap each call's duration at `call_limit`.
    call_restrict: bool,
    /// Seconds a call may last when `call_restrict`.
    call_limit: u64,
    /// Cap each call's cost at `max_call_cost`.
    cost_limit: bool,
    /// Decimal, as a string (as the provider returns it), e.g. `"0.18"`.
    max_call_cost: String,
    /// Cap concurrent calls at `max_channels`.
    channels_restrict: bool,
    /// Concurrent calls allowed when `channels_restrict`.
    max_channels: u32,
    /// Rewrite dialled numbers matching `rewrite_cond`.
    rewrite_enabled: bool,
    /// The prefix to replace.
    rewrite_cond: String,
    /// What replaces it.
    rewrite_prefix: String,
    /// Send the caller's own number on when it is numeric.
    passthrough: bool,
    /// The provider's other name for `passthrough` (always equal).
    multiple_numbers: bool,
    /// `passthrough` (SDP unchanged) or `relay` (media anchored by
    /// rtpengine, for phones behind NAT).
    media: &'static str,
}

impl From<&TrunkConfig> for Trunk {
    fn from(t: &TrunkConfig) -> Trunk {
        Trunk {
            id: t.id(),
            name: t.login().to_owned(),
            label: t.label.clone(),
            password: if t.password.is_empty() { "" } else { MASK }.to_owned(),
            callerid: t.callerid.clone(),
            ip_restrict: t.ip_restrict,
            allowed_ips: t.allowed_ips.clone(),
            host_request: t.host_request.clone(),
            didinfo_enabled: t.didinfo_enabled,
            call_restrict: t.call_restrict,
            call_limit: t.call_limit,
            cost_limit: t.cost_limit,
            max_call_cost: format!("{}", t.max_call_cost),
            channels_restrict: t.channels_restrict,
            max_channels: t.max_channels,
            rewrite_enabled: t.rewrite_enabled,
            rewrite_cond: t.rewrite_cond.clone(),
            rewrite_prefix: t.rewrite_prefix.clone(),
            passthrough: t.passthrough,
            multiple_numbers: t.passthrough,
            media: t.media.as_str(),
        }
    }
}

/// What `POST` and `PUT` accept: any of [`Trunk`]'s fields (a `PUT`
/// changes only those it names). Documentation only: bodies are read
/// field by field (see `apply_fields`) so a `422` names every bad one, and
/// leniently: numbers may come as strings, booleans as `0`/`1` or
/// `"true"`/`"false"`, `allowed_ips` as a comma-separated string.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct TrunkInput {
    /// Unique id, 1 to 2^63-1; generated when omitted; cannot change.
    id: Option<u64>,
    /// The SIP login; `10000 + id` when omitted.
    name: Option<String>,
    /// Free text for people.
    label: Option<String>,
    /// Digest password; `********` keeps the one set.
    password: Option<String>,
    /// Caller ID sent on when the caller's is not passed through.
    callerid: Option<String>,
    /// Calls only from `allowed_ips`.
    ip_restrict: Option<bool>,
    /// Addresses or networks (a list, or one comma-separated string).
    allowed_ips: Option<Vec<String>>,
    /// IP authentication host.
    host_request: Option<String>,
    /// Received calls carry the DID in `To`.
    didinfo_enabled: Option<bool>,
    /// Cap each call's duration at `call_limit`.
    call_restrict: Option<bool>,
    /// Seconds.
    call_limit: Option<u64>,
    /// Cap each call's cost at `max_call_cost`.
    cost_limit: Option<bool>,
    /// A number >= 0, or a string holding one.
    max_call_cost: Option<f64>,
    /// Cap concurrent calls at `max_channels`.
    channels_restrict: Option<bool>,
    /// Concurrent calls allowed.
    max_channels: Option<u32>,
    /// Rewrite dialled numbers matching `rewrite_cond`.
    rewrite_enabled: Option<bool>,
    /// The prefix to replace.
    rewrite_cond: Option<String>,
    /// What replaces it.
    rewrite_prefix: Option<String>,
    /// Send the caller's own number on when it is numeric.
    passthrough: Option<bool>,
    /// Same as `passthrough`.
    multiple_numbers: Option<bool>,
    /// `passthrough` or `relay` (needs `[media] rtpengine` in the config).
    media: Option<String>,
}

pub(crate) fn a_string(v: &Value) -> Result<String, &'static str> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err("must be a string"),
    }
}

fn a_bool(v: &Value) -> Result<bool, &'static str> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) => match s.as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err("must be a boolean"),
        },
        _ => Err("must be a boolean"),
    }
}

fn a_u64(v: &Value) -> Result<u64, &'static str> {
    match v {
        Value::Number(n) => n.as_u64().ok_or("must be a whole number >= 0"),
        Value::String(s) => s.trim().parse().map_err(|_| "must be a whole number >= 0"),
        _ => Err("must be a whole number >= 0"),
    }
}

pub(crate) fn a_u32(v: &Value) -> Result<u32, &'static str> {
    a_u64(v).and_then(|n| u32::try_from(n).map_err(|_| "is too large"))
}

fn a_cost(v: &Value) -> Result<f64, &'static str> {
    let f = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    f.filter(|f| f.is_finite() && *f >= 0.0)
        .ok_or("must be a number >= 0 (or a string holding one)")
}

fn a_ip_list(v: &Value) -> Result<Vec<IpNet>, String> {
    let items: Vec<String> = match v {
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or("must be a list of IP addresses or networks".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Value::Null => Vec::new(),
        _ => return Err("must be a list of IP addresses or networks".to_owned()),
    };
    items.iter().map(|s| s.parse::<IpNet>()).collect()
}

/// What [`apply_fields`] does with a field it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnknownFields {
    /// Name it as a bad field (`422`): the API's own clients get told.
    Reject,
    /// Skip it: a remote list (trunk sync) may carry provider fields
    /// (`created_at`, `status`…) that mean nothing here.
    Ignore,
}

/// Writes the fields `body` names into `t`; every bad field into `errors`.
/// The one reader of the provider's trunk fields: `POST`/`PUT` here and the
/// trunk sync both use it.
pub(crate) fn apply_fields(
    t: &mut TrunkConfig,
    body: &Map<String, Value>,
    unknown: UnknownFields,
    errors: &mut Details,
) {
    for (k, v) in body {
        let r: Result<(), String> = match k.as_str() {
            "id" => a_u64(v).map(|id| t.id = Some(id)).map_err(Into::into),
            "name" => a_string(v)
                .map(|s| t.name = (!s.is_empty()).then_some(s))
                .map_err(Into::into),
            "label" => a_string(v).map(|s| t.label = s).map_err(Into::into),
            "password" => a_string(v)
                .map(|s| {
                    if s != MASK {
                        t.password = s;
                    }
                })
                .map_err(Into::into),
            "callerid" => a_string(v).map(|s| t.callerid = s).map_err(Into::into),
            "host_request" => a_string(v).map(|s| t.host_request = s).map_err(Into::into),
            "rewrite_cond" => a_string(v).map(|s| t.rewrite_cond = s).map_err(Into::into),
            "rewrite_prefix" => a_string(v)
                .map(|s| t.rewrite_prefix = s)
                .map_err(Into::into),
            "ip_restrict" => a_bool(v).map(|b| t.ip_restrict = b).map_err(Into::into),
            "didinfo_enabled" => a_bool(v).map(|b| t.didinfo_enabled = b).map_err(Into::into),
            "call_restrict" => a_bool(v).map(|b| t.call_restrict = b).map_err(Into::into),
            "cost_limit" => a_bool(v).map(|b| t.cost_limit = b).map_err(Into::into),
            "channels_restrict" => a_bool(v)
                .map(|b| t.channels_restrict = b)
                .map_err(Into::into),
            "rewrite_enabled" => a_bool(v).map(|b| t.rewrite_enabled = b).map_err(Into::into),
            "passthrough" | "multiple_numbers" => {
                a_bool(v).map(|b| t.passthrough = b).map_err(Into::into)
            }
            "media" => match v.as_str() {
                Some("passthrough") => {
                    t.media = crate::config::MediaMode::Passthrough;
                    Ok(())
                }
                Some("relay") => {
                    t.media = crate::config::MediaMode::Relay;
                    Ok(())
                }
                _ => Err("must be \"passthrough\" or \"relay\"".to_owned()),
            },
            "call_limit" => a_u64(v).map(|n| t.call_limit = n).map_err(Into::into),
            "max_channels" => a_u32(v).map(|n| t.max_channels = n).map_err(Into::into),
            "max_call_cost" => a_cost(v).map(|f| t.max_call_cost = f).map_err(Into::into),
            "allowed_ips" => a_ip_list(v).map(|l| t.allowed_ips = l),
            _ if unknown == UnknownFields::Ignore => Ok(()),
            _ => Err("unknown field".to_owned()),
        };
        if let Err(m) = r {
            errors.insert(k.clone(), m.into());
        }
    }
}

/// A trunk with the loader's defaults (what an empty `[[trunk]]` gives).
pub(crate) fn blank() -> Result<TrunkConfig, ApiError> {
    serde_json::from_value(json!({})).map_err(ApiError::internal)
}

/// The single-trunk rules, by field name; `422` if any is broken.
pub(crate) fn check(t: &TrunkConfig, mut errors: Details) -> Result<(), ApiError> {
    for (field, message) in check_trunk(t) {
        errors.entry(field.to_owned()).or_insert(message.into());
    }
    if let Some(id) = t.id {
        if id == 0 || i64::try_from(id).is_err() {
            errors.insert("id".to_owned(), "must be between 1 and 2^63-1".into());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(errors))
    }
}

/// `409` while `[sync]` is configured: the remote list is the source of
/// truth for trunks, and a local edit would be undone by the next pull.
fn refuse_when_synced(live: &Live) -> Result<(), ApiError> {
    let Some(sync) = live.sync() else {
        return Ok(());
    };
    let url = sync.url();
    let mut e = ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "trunks are managed by [sync] url {url}: change them there (reading them here \
             still works; DIDs stay editable)"
        ),
    );
    e.details.insert("sync_url".to_owned(), url.into());
    Err(e)
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no trunk with id `{id}`")))
}

/// `GET /v1/trunks`: `{"items": [...]}` by id.
#[utoipa::path(get, path = "/v1/trunks", operation_id = "list_trunks", tag = "trunks",
    responses((status = 200, description = "Every trunk, by id", body = Items<Trunk>)))]
pub(crate) async fn list(State(live): State<Arc<Live>>) -> Json<Items<Trunk>> {
    let cfg = live.current();
    let mut items: Vec<&TrunkConfig> = cfg.trunk.iter().collect();
    items.sort_by_key(|t| t.id());
    Json(Items {
        items: items.into_iter().map(Trunk::from).collect(),
    })
}

/// `GET /v1/trunks/{id}`.
#[utoipa::path(get, path = "/v1/trunks/{id}", operation_id = "get_trunk", tag = "trunks",
    params(("id" = u64, Path, description = "The trunk's id")),
    responses(
        (status = 200, description = "The trunk", body = Trunk),
        (status = 404, description = "No such trunk", body = Error),
    ))]
pub(crate) async fn get(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
) -> Result<Json<Trunk>, ApiError> {
    let id = parse_id(&id)?;
    let cfg = live.current();
    cfg.trunk
        .iter()
        .find(|t| t.id() == id)
        .map(|t| Json(Trunk::from(t)))
        .ok_or_else(|| ApiError::not_found(format!("no trunk with id {id}")))
}

/// `POST /v1/trunks`: `201` with the trunk, its `id` and `name` generated
/// when omitted (as the config loader does: one more than the largest id;
/// login `10000 + id`).
#[utoipa::path(post, path = "/v1/trunks", operation_id = "create_trunk", tag = "trunks",
    request_body = TrunkInput,
    responses(
        (status = 201, description = "Created", body = Trunk),
        (status = 400, description = "The body is not JSON", body = Error),
        (status = 409, description = "A trunk with that id exists, or trunks are managed by `[sync]`", body = Error),
        (status = 413, description = "Body over 1 MiB", body = Error),
        (status = 422, description = "Bad fields, each named in `details`", body = Error),
    ))]
pub(crate) async fn create(
    State(live): State<Arc<Live>>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    refuse_when_synced(&live)?;
    let mut t = blank()?;
    let mut errors = Details::new();
    apply_fields(&mut t, &body, UnknownFields::Reject, &mut errors);
    check(&t, errors)?;
    let stored = live
        .change(move |cur| {
            if let Some(id) = t.id {
                if cur.trunk.iter().any(|x| x.id() == id) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("trunk {id} already exists"),
                    ));
                }
            }
            // Appended last with no id, the loader's rule gives max + 1.
            let mut next = (*cur).clone();
            next.trunk.push(t);
            let index = next.trunk.len() - 1;
            Ok((next, Change::CreateTrunk { index }))
        })
        .await?;
    let Stored::Trunk(t) = stored else {
        return Err(ApiError::internal("create stored no trunk"));
    };
    tracing::info!(id = t.id(), name = t.login(), "API: trunk created");
    Ok((StatusCode::CREATED, Json(Trunk::from(&*t))).into_response())
}

/// `PUT /v1/trunks/{id}`: changes the fields the body names. New calls
/// see the change at once; calls in progress keep their terms.
#[utoipa::path(put, path = "/v1/trunks/{id}", operation_id = "update_trunk", tag = "trunks",
    params(("id" = u64, Path, description = "The trunk's id")),
    request_body = TrunkInput,
    responses(
        (status = 200, description = "The trunk as changed", body = Trunk),
        (status = 400, description = "The body is not JSON", body = Error),
        (status = 404, description = "No such trunk", body = Error),
        (status = 409, description = "Trunks are managed by `[sync]`", body = Error),
        (status = 413, description = "Body over 1 MiB", body = Error),
        (status = 422, description = "Bad fields, each named in `details`", body = Error),
    ))]
pub(crate) async fn update(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Trunk>, ApiError> {
    refuse_when_synced(&live)?;
    let id = parse_id(&id)?;
    let stored = live
        .change(move |cur| {
            let index = cur
                .trunk
                .iter()
                .position(|t| t.id() == id)
                .ok_or_else(|| ApiError::not_found(format!("no trunk with id {id}")))?;
            let mut next = (*cur).clone();
            let t = next
                .trunk
                .get_mut(index)
                .ok_or_else(|| ApiError::internal("trunk index"))?;
            let mut errors = Details::new();
            apply_fields(t, &body, UnknownFields::Reject, &mut errors);
            if t.id != Some(id) {
                errors.insert("id".to_owned(), "cannot be changed".into());
            }
            check(t, errors)?;
            Ok((next, Change::PutTrunk { index }))
        })
        .await?;
    let Stored::Trunk(t) = stored else {
        return Err(ApiError::internal("update stored no trunk"));
    };
    tracing::info!(id = t.id(), name = t.login(), "API: trunk updated");
    Ok(Json(Trunk::from(&*t)))
}

/// `?force=` of `DELETE /v1/trunks/{id}`, as text so a bad value gets a
/// `422` naming it.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteQuery {
    force: Option<String>,
}

/// `DELETE /v1/trunks/{id}[?force=true]`: `204`. Refused (`422`) while a
/// DID routes to it. The trunk leaves the hot path at once (its new calls
/// are refused); its calls in progress go on to their end with their
/// terms, or with `force=true` are ended now on both legs.
#[utoipa::path(delete, path = "/v1/trunks/{id}", operation_id = "delete_trunk", tag = "trunks",
    params(
        ("id" = u64, Path, description = "The trunk's id"),
        ("force" = Option<bool>, Query, description = "End the trunk's calls in progress now \
            (BYE on both legs; CANCEL and 487 while ringing) instead of letting them finish. \
            `true`/`false`/`1`/`0`."),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such trunk", body = Error),
        (status = 409, description = "Trunks are managed by `[sync]`", body = Error),
        (status = 422, description = "A DID still routes to the trunk, or `force` is not a boolean", body = Error),
        (status = 503, description = "Deleted, but `force` could not reach the SIP core", body = Error),
    ))]
pub(crate) async fn delete(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    refuse_when_synced(&live)?;
    let Query(q) = q?;
    let force = match q.force.as_deref() {
        None => false,
        Some(v) => a_bool(&Value::String(v.to_owned())).map_err(|m| {
            let mut d = Details::new();
            d.insert("force".to_owned(), m.into());
            ApiError::invalid(d)
        })?,
    };
    let id = parse_id(&id)?;
    live.change(move |cur| {
        if !cur.trunk.iter().any(|t| t.id() == id) {
            return Err(ApiError::not_found(format!("no trunk with id {id}")));
        }
        let mut next = (*cur).clone();
        next.trunk.retain(|t| t.id() != id);
        Ok((next, Change::DeleteTrunk { id }))
    })
    .await?;
    if !force {
        tracing::info!(
            id,
            "API: trunk deleted; its calls in progress go on to their end"
        );
        return Ok(StatusCode::NO_CONTENT);
    }
    // The new config went to the core before this question, and the core
    // takes config changes first: no new call of this trunk slips in after.
    match live
        .core()
        .ask_all(|tx| CoreQuery::HangUpTrunk(id, tx))
        .await
        .map(|n| n.into_iter().sum::<usize>())
    {
        Ok(ended) => tracing::info!(
            id,
            ended,
            "API: trunk deleted; force ended its {ended} calls in progress"
        ),
        Err(e) => {
            tracing::warn!(
                id,
                "API: trunk deleted, but force could not end its calls in progress: {}",
                e.error
            );
            return Err(ApiError::new(
                e.status,
                "trunk deleted, but its calls in progress were not ended (the SIP core is busy); \
                 end them with DELETE /v1/calls/{call_id}",
            ));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    fn properties<T: PartialSchema>() -> Vec<String> {
        let v = serde_json::to_value(T::schema()).unwrap();
        v["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_documented_input_field_is_read_and_every_output_field_is_input() {
        let input = properties::<TrunkInput>();
        let mut t = blank().unwrap();
        for field in &input {
            let mut body = Map::new();
            body.insert(field.clone(), json!(null));
            let mut errors = Details::new();
            apply_fields(&mut t, &body, UnknownFields::Reject, &mut errors);
            assert_ne!(
                errors.get(field),
                Some(&json!("unknown field")),
                "TrunkInput documents `{field}`, which apply_fields does not read"
            );
        }
        // A GET's answer can be sent back as a PUT.
        for field in properties::<Trunk>() {
            assert!(
                input.contains(&field),
                "`{field}` is shown but not accepted"
            );
        }
    }
}
