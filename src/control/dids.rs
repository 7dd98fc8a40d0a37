//! `/v1/mydids` (SPEC §6): the DIDs with their destinations, and
//! `update-destinations`.
//!
//! Our DIDs have no separate numeric id: a DID's `id` is its number, so
//! `ids` in `update-destinations` are numbers (as strings or JSON numbers).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Details};
use super::live::{Change, Stored};
use super::schema::{page_params, Error, Items, Pagination};
use super::{JsonObject, Live};
use crate::config::{DestinationConfig, DidConfig};

/// A DID as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Did {
    /// Same as `number` (our DIDs have no other id).
    id: String,
    /// The number, as dialled in.
    number: String,
    /// Concurrent calls allowed (0: no limit).
    channels: u32,
    /// Where its call-status webhooks go (empty: the global URL).
    call_status_url: String,
    /// Where its calls ring, by `priority`.
    destinations: Vec<Destination>,
}

/// Where a DID's calls go.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Destination {
    /// 1 SIP URI, 4 PSTN number, 5 trunk login (numbers or strings accepted).
    transport: u8,
    /// The URI, number or trunk login.
    destination: String,
    /// Lower rings first; default 1.
    priority: u32,
}

/// `POST /v1/mydids/update-destinations` body. Documentation only: read
/// field by field so a `422` names each bad one (`ids[2]`,
/// `destinations[0].transport`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct UpdateDestinations {
    /// The DIDs to change (numbers, as strings or JSON numbers).
    ids: Vec<String>,
    /// Their new destinations, replacing the old ones.
    destinations: Vec<Destination>,
}

/// A page of DIDs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DidPage {
    /// The DIDs, by number.
    items: Vec<Did>,
    /// Where this page sits.
    pagination: Pagination,
}

impl From<&DidConfig> for Did {
    fn from(d: &DidConfig) -> Did {
        let mut dests: Vec<&DestinationConfig> = d.destinations.iter().collect();
        dests.sort_by_key(|x| x.priority);
        Did {
            id: d.number.clone(),
            number: d.number.clone(),
            channels: d.channels,
            call_status_url: d.call_status_url.clone(),
            destinations: dests
                .into_iter()
                .map(|x| Destination {
                    transport: x.transport,
                    destination: x.destination.clone(),
                    priority: x.priority,
                })
                .collect(),
        }
    }
}

/// `?page=&per_page=` (1-based), leniently parsed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Page {
    /// Page number, from 1.
    #[param(value_type = Option<u64>, minimum = 1)]
    page: Option<String>,
    /// Records per page, 1 to 1000 (default 100).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    per_page: Option<String>,
}

/// `GET /v1/mydids`: `{"items": [...], "pagination": {...}}` by number.
#[utoipa::path(get, path = "/v1/mydids", operation_id = "list_dids", tag = "dids", params(Page),
    responses(
        (status = 200, description = "A page of DIDs", body = DidPage),
        (status = 422, description = "Bad `page` or `per_page`, named in `details`", body = Error),
    ))]
pub(crate) async fn list(
    State(live): State<Arc<Live>>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Json<DidPage>, ApiError> {
    let Query(q) = q?;
    let mut errors = Details::new();
    let (page, per_page) = page_params(q.page.as_deref(), q.per_page.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let cfg = live.current();
    let mut all: Vec<&DidConfig> = cfg.did.iter().collect();
    all.sort_by(|a, b| a.number.cmp(&b.number));
    let total = all.len() as u64;
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    Ok(Json(DidPage {
        items: all
            .into_iter()
            .skip(skip)
            .take(take)
            .map(Did::from)
            .collect(),
        pagination: Pagination::new(page, per_page, total),
    }))
}

fn a_number_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One destination object; errors keyed `destinations[j].field`.
fn parse_destination(j: usize, v: &Value, errors: &mut Details) -> Option<DestinationConfig> {
    let key = |f: &str| format!("destinations[{j}].{f}");
    let Some(obj) = v.as_object() else {
        errors.insert(format!("destinations[{j}]"), "must be an object".into());
        return None;
    };
    let mut ok = true;
    for k in obj.keys() {
        if !matches!(k.as_str(), "transport" | "destination" | "priority") {
            errors.insert(key(k), "unknown field".into());
            ok = false;
        }
    }
    let transport = match obj.get("transport").and_then(a_number_text) {
        Some(t) => t.trim().parse::<u8>().ok(),
        None => None,
    };
    if transport.is_none() {
        errors.insert(
            key("transport"),
            "must be 1 (SIP URI), 4 (PSTN) or 5 (trunk)".into(),
        );
    }
    let destination = obj.get("destination").and_then(a_number_text);
    if destination.as_deref().map_or(true, str::is_empty) {
        errors.insert(key("destination"), "must be a non-empty string".into());
    }
    let priority = match obj.get("priority") {
        None => Some(1),
        Some(v) => a_number_text(v).and_then(|p| p.trim().parse::<u32>().ok()),
    };
    if priority.is_none() {
        errors.insert(key("priority"), "must be a whole number >= 0".into());
    }
    Some(DestinationConfig {
        transport: transport?,
        destination: destination?,
        priority: priority?,
    })
    .filter(|_| ok)
}

/// `POST /v1/mydids/update-destinations`: `{ids, destinations}` sets the
/// destinations of every listed DID; answers `{"items": [...]}`.
#[utoipa::path(post, path = "/v1/mydids/update-destinations", operation_id = "update_destinations", tag = "dids",
    request_body = UpdateDestinations,
    responses(
        (status = 200, description = "The DIDs as changed", body = Items<Did>),
        (status = 400, description = "The body is not JSON", body = Error),
        (status = 413, description = "Body over 1 MiB", body = Error),
        (status = 422, description = "Bad or unknown fields or DIDs, each named in `details`", body = Error),
    ))]
pub(crate) async fn update_destinations(
    State(live): State<Arc<Live>>,
    JsonObject(body): JsonObject,
) -> Result<Json<Items<Did>>, ApiError> {
    let mut errors = Details::new();
    for k in body.keys() {
        if k != "ids" && k != "destinations" {
            errors.insert(k.clone(), "unknown field".into());
        }
    }
    let ids: Vec<String> = match body.get("ids") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let n = a_number_text(v);
                if n.is_none() {
                    errors.insert(format!("ids[{i}]"), "must be a DID number".into());
                }
                n
            })
            .collect(),
        _ => {
            errors.insert("ids".to_owned(), "must be a non-empty list of DIDs".into());
            Vec::new()
        }
    };
    let dests: Vec<DestinationConfig> = match body.get("destinations") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(j, v)| parse_destination(j, v, &mut errors))
            .collect(),
        _ => {
            errors.insert("destinations".to_owned(), "must be a list".into());
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let stored = live
        .change(move |cur| {
            let mut next = (*cur).clone();
            let mut missing = Map::new();
            let mut indexes = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                match next.did.iter().position(|d| &d.number == id) {
                    Some(k) if !indexes.contains(&k) => indexes.push(k),
                    Some(_) => {}
                    None => {
                        missing.insert(format!("ids[{i}]"), format!("no DID `{id}`").into());
                    }
                }
            }
            if !missing.is_empty() {
                return Err(ApiError::invalid(missing));
            }
            for &k in &indexes {
                if let Some(d) = next.did.get_mut(k) {
                    d.destinations.clone_from(&dests);
                }
            }
            Ok((next, Change::PutDids { indexes }))
        })
        .await?;
    let Stored::Dids(dids) = stored else {
        return Err(ApiError::internal("update-destinations stored no DIDs"));
    };
    tracing::info!(dids = dids.len(), "API: DID destinations updated");
    Ok(Json(Items {
        items: dids.iter().map(Did::from).collect(),
    }))
}
