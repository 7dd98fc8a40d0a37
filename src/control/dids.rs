//! `/v1/mydids` (SPEC §6, §8.5): the DIDs with their destinations: list,
//! create, read, replace, delete, and `update-destinations`.
//!
//! Our DIDs have no separate numeric id: a DID's `id` is its number, so
//! `ids` in `update-destinations` are numbers (as strings or JSON numbers).
//!
//! Every change goes through [`Live::change`], the trunks' one write path:
//! the next config is checked whole by the config file's rules (a DID's
//! number, webhook URL, destinations and the trunks they name), stored,
//! and handed to the core, which routes new calls by it at once; calls in
//! progress keep the destinations they started with.
//!
//! Destinations are read leniently, so the provider's own bodies can be
//! sent as they are: numbers as strings, its `callhunt`/`active`/`id`
//! fields ignored, and a SIP URI without its `sip:` scheme completed.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Details};
use super::live::{Change, Stored};
use super::schema::{page_params, Error, Items, Pagination};
use super::trunks::{a_string, a_u32};
use super::{JsonObject, Live};
use crate::config::{Config, DestinationConfig, DidConfig};

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

/// One destination as `POST`, `PUT` and `update-destinations` read it.
/// Documentation only: read field by field (see `parse_destination`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct DestinationInput {
    /// 1 SIP URI, 4 PSTN number, 5 trunk login (a number or a string).
    transport: u8,
    /// The URI (`sip:` is added when missing: `1000@pbx.example.net`),
    /// number or trunk login.
    destination: String,
    /// Lower rings first; default 1; unique within a DID.
    priority: Option<u32>,
    /// The provider's ring-all flag: accepted and ignored (destinations
    /// are tried one after another, by `priority`).
    callhunt: Option<bool>,
    /// The provider's enabled flag: accepted and ignored.
    active: Option<bool>,
    /// The provider's destination id: accepted and ignored.
    id: Option<u64>,
}

/// `POST /v1/mydids` and `PUT /v1/mydids/{number}` body: the whole DID
/// (a `PUT` replaces every field; omitted ones take their defaults).
/// Documentation only: read field by field so a `422` names each bad one.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub(crate) struct DidInput {
    /// Digits (E.164; a leading `+` is dropped), as a string or a JSON
    /// number. Required on `POST`; on `PUT`, if given, the URL's number.
    number: Option<String>,
    /// Same as `number` (a `GET`'s answer can be sent back as it is).
    id: Option<String>,
    /// Concurrent calls allowed (0, the default: no limit).
    channels: Option<u32>,
    /// Where its call-status webhooks go: an http(s) URL, or empty (the
    /// default) for the global `[webhooks]` one.
    call_status_url: Option<String>,
    /// Where its calls ring, by `priority` (default: none; its calls then
    /// get `480` until some are set).
    destinations: Option<Vec<DestinationInput>>,
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
    destinations: Vec<DestinationInput>,
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

/// A DID number as given (body or path): surrounding blanks and a leading
/// `+` (E.164 written with it) dropped; the rest is checked by the config
/// rules (digits only).
fn did_number(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('+').unwrap_or(s).to_owned()
}

/// A SIP URI destination written without its scheme, as the provider
/// stores them (`1000@pbx.example.net`, `pbx.example.net:5070`), gets
/// `sip:` (RFC 3261 §19.1.1). Another scheme (`tel:`, `http:`) is left as
/// it is, for the config rules to refuse by name.
fn with_sip_scheme(uri: String) -> String {
    let lower = uri.get(..5).unwrap_or(&uri).to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return uri;
    }
    // RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ),
    // then ":"; `host:5070` is a host and a port, not a scheme.
    if let Some((scheme, rest)) = uri.split_once(':') {
        let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if is_scheme && !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return uri;
        }
    }
    format!("sip:{uri}")
}

/// Fields of a destination the provider sends that mean nothing here:
/// `callhunt` (ring-all group; our destinations are tried by `priority`),
/// `active`, and its own destination `id`. Accepted and ignored, so its
/// bodies can be sent as they are; any other unknown field is a `422`.
const PROVIDER_DESTINATION_FIELDS: [&str; 3] = ["callhunt", "active", "id"];

/// One destination object; errors keyed `destinations[j].field`.
fn parse_destination(j: usize, v: &Value, errors: &mut Details) -> Option<DestinationConfig> {
    let key = |f: &str| format!("destinations[{j}].{f}");
    let Some(obj) = v.as_object() else {
        errors.insert(format!("destinations[{j}]"), "must be an object".into());
        return None;
    };
    let mut ok = true;
    for k in obj.keys() {
        if !matches!(k.as_str(), "transport" | "destination" | "priority")
            && !PROVIDER_DESTINATION_FIELDS.contains(&k.as_str())
        {
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
    let destination = obj
        .get("destination")
        .and_then(a_number_text)
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty());
    if destination.is_none() {
        errors.insert(key("destination"), "must be a non-empty string".into());
    }
    let priority = match obj.get("priority") {
        None => Some(1),
        Some(v) => a_number_text(v).and_then(|p| p.trim().parse::<u32>().ok()),
    };
    if priority.is_none() {
        errors.insert(key("priority"), "must be a whole number >= 0".into());
    }
    let transport = transport?;
    let destination = destination?;
    Some(DestinationConfig {
        transport,
        destination: if transport == 1 {
            with_sip_scheme(destination)
        } else {
            destination
        },
        priority: priority?,
    })
    .filter(|_| ok)
}

/// A `destinations` list; errors keyed `destinations` or
/// `destinations[j].field`.
fn parse_destinations(v: Option<&Value>, errors: &mut Details) -> Vec<DestinationConfig> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(j, v)| parse_destination(j, v, errors))
            .collect(),
        _ => {
            errors.insert("destinations".to_owned(), "must be a list".into());
            Vec::new()
        }
    }
}

/// Reads a `POST`/`PUT` body into a whole DID (a `PUT` replaces it all:
/// omitted fields take the config file's defaults). `path` is the number
/// the URL names (`PUT`); the body's `number` (or `id`, its alias, so a
/// `GET`'s answer can be sent back) must then be the same. Every bad field
/// goes into `errors`; the number's digits and the destinations' targets
/// are checked afterwards by the config rules, on the whole next config.
fn read_did(body: &Map<String, Value>, path: Option<&str>, errors: &mut Details) -> DidConfig {
    let mut given: Vec<(&str, String)> = Vec::new();
    let mut d = DidConfig {
        number: String::new(),
        channels: 0,
        call_status_url: String::new(),
        destinations: Vec::new(),
    };
    for (k, v) in body {
        let r: Result<(), &str> = match k.as_str() {
            "number" | "id" => a_number_text(v)
                .map(|n| given.push((k.as_str(), did_number(&n))))
                .ok_or("must be a DID number (digits, as a string or a JSON number)"),
            "channels" => a_u32(v).map(|n| d.channels = n),
            "call_status_url" => a_string(v).map(|s| d.call_status_url = s.trim().to_owned()),
            "destinations" => {
                d.destinations = parse_destinations(Some(v), errors);
                Ok(())
            }
            _ => Err("unknown field"),
        };
        if let Err(m) = r {
            errors.insert(k.clone(), m.into());
        }
    }
    match path {
        Some(number) => {
            d.number = number.to_owned();
            for (k, n) in &given {
                if n != number {
                    errors.insert(
                        (*k).to_owned(),
                        format!(
                            "cannot be changed (is `{number}`): delete the DID and create the new one"
                        )
                        .into(),
                    );
                }
            }
        }
        None => match given.as_slice() {
            [] if !errors.contains_key("number") && !errors.contains_key("id") => {
                errors.insert("number".to_owned(), "is required".into());
            }
            [] => {}
            [(_, n), rest @ ..] => {
                d.number.clone_from(n);
                if rest.iter().any(|(_, m)| m != n) {
                    errors.insert("id".to_owned(), "must be the same as number".into());
                }
            }
        },
    }
    d
}

/// `GET /v1/mydids/{number}`.
#[utoipa::path(get, path = "/v1/mydids/{number}", operation_id = "get_did", tag = "dids",
    params(("number" = String, Path, description = "The DID number (a leading `+` is ignored)")),
    responses(
        (status = 200, description = "The DID", body = Did),
        (status = 404, description = "No such DID", body = Error),
    ))]
pub(crate) async fn get(
    State(live): State<Arc<Live>>,
    Path(number): Path<String>,
) -> Result<Json<Did>, ApiError> {
    let number = did_number(&number);
    let cfg = live.current();
    cfg.did
        .iter()
        .find(|d| d.number == number)
        .map(|d| Json(Did::from(d)))
        .ok_or_else(|| ApiError::not_found(format!("no DID `{number}`")))
}

/// `POST /v1/mydids`: `201` with the DID. Its calls are taken at once.
#[utoipa::path(post, path = "/v1/mydids", operation_id = "create_did", tag = "dids",
    request_body = DidInput,
    responses(
        (status = 201, description = "Created", body = Did),
        (status = 400, description = "The body is not JSON", body = Error),
        (status = 409, description = "A DID with that number exists", body = Error),
        (status = 413, description = "Body over 1 MiB", body = Error),
        (status = 422, description = "Missing, bad or unknown fields, each named in `details`", body = Error),
    ))]
pub(crate) async fn create(
    State(live): State<Arc<Live>>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let mut errors = Details::new();
    let d = read_did(&body, None, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let did = put_one(&live, move |cur| {
        if cur.did.iter().any(|x| x.number == d.number) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "DID `{}` already exists: change it with PUT /v1/mydids/{}",
                    d.number, d.number
                ),
            ));
        }
        let mut next = (*cur).clone();
        next.did.push(d);
        let index = next.did.len() - 1;
        Ok((next, index))
    })
    .await?;
    tracing::info!(
        number = %did.number,
        destinations = did.destinations.len(),
        "API: DID created; it takes calls now"
    );
    Ok((StatusCode::CREATED, Json(Did::from(&did))).into_response())
}

/// `PUT /v1/mydids/{number}`: replaces the whole DID (omitted fields take
/// their defaults). New calls see it at once; calls in progress go on.
#[utoipa::path(put, path = "/v1/mydids/{number}", operation_id = "update_did", tag = "dids",
    params(("number" = String, Path, description = "The DID number (a leading `+` is ignored)")),
    request_body = DidInput,
    responses(
        (status = 200, description = "The DID as stored", body = Did),
        (status = 400, description = "The body is not JSON", body = Error),
        (status = 404, description = "No such DID", body = Error),
        (status = 413, description = "Body over 1 MiB", body = Error),
        (status = 422, description = "Bad or unknown fields, each named in `details`", body = Error),
    ))]
pub(crate) async fn update(
    State(live): State<Arc<Live>>,
    Path(number): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Did>, ApiError> {
    let number = did_number(&number);
    let did = put_one(&live, move |cur| {
        let index = cur
            .did
            .iter()
            .position(|d| d.number == number)
            .ok_or_else(|| ApiError::not_found(format!("no DID `{number}`")))?;
        let mut errors = Details::new();
        let d = read_did(&body, Some(&number), &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::invalid(errors));
        }
        let mut next = (*cur).clone();
        let slot = next
            .did
            .get_mut(index)
            .ok_or_else(|| ApiError::internal("DID index"))?;
        *slot = d;
        Ok((next, index))
    })
    .await?;
    tracing::info!(
        number = %did.number,
        destinations = did.destinations.len(),
        "API: DID replaced; calls in progress go on"
    );
    Ok(Json(Did::from(&did)))
}

/// `DELETE /v1/mydids/{number}`: `204`. New calls to the number get `404`
/// at once; its calls in progress go on to their end.
#[utoipa::path(delete, path = "/v1/mydids/{number}", operation_id = "delete_did", tag = "dids",
    params(("number" = String, Path, description = "The DID number (a leading `+` is ignored)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such DID", body = Error),
    ))]
pub(crate) async fn delete(
    State(live): State<Arc<Live>>,
    Path(number): Path<String>,
) -> Result<StatusCode, ApiError> {
    let number = did_number(&number);
    let n = number.clone();
    live.change(move |cur| {
        if !cur.did.iter().any(|d| d.number == n) {
            return Err(ApiError::not_found(format!("no DID `{n}`")));
        }
        let mut next = (*cur).clone();
        next.did.retain(|d| d.number != n);
        Ok((next, Change::DeleteDid { number: n }))
    })
    .await?;
    tracing::info!(
        number = %number,
        "API: DID deleted; new calls to it get 404, calls in progress go on"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// A `POST`/`PUT`: `build` gives the next config and the position of the
/// one DID it wrote; through [`Live::change`], the DID as stored.
async fn put_one(
    live: &Live,
    build: impl FnOnce(&Config) -> Result<(Config, usize), ApiError>,
) -> Result<DidConfig, ApiError> {
    let stored = live
        .change(move |cur| {
            let (next, index) = build(cur)?;
            Ok((
                next,
                Change::PutDids {
                    indexes: vec![index],
                },
            ))
        })
        .await?;
    match stored {
        Stored::Dids(dids) => dids
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("DID change stored no DID")),
        _ => Err(ApiError::internal("DID change stored no DID")),
    }
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
                let n = a_number_text(v).map(|n| did_number(&n));
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
    let dests = parse_destinations(body.get("destinations"), &mut errors);
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use utoipa::PartialSchema;

    #[test]
    fn a_sip_uri_without_its_scheme_gets_sip() {
        for (given, want) in [
            ("1000@pbx.example.net", "sip:1000@pbx.example.net"),
            ("pbx.example.net:5070", "sip:pbx.example.net:5070"),
            (
                "1000@127.0.0.1:5090;transport=tcp",
                "sip:1000@127.0.0.1:5090;transport=tcp",
            ),
            ("[::1]:5060", "sip:[::1]:5060"),
            ("sip:1000@h", "sip:1000@h"),
            ("sips:1000@h", "sips:1000@h"),
            ("SIP:1000@h", "SIP:1000@h"),
            // Another scheme stays, for the config rules to refuse.
            ("tel:+12125550000", "tel:+12125550000"),
            ("http://x", "http://x"),
        ] {
            assert_eq!(with_sip_scheme(given.to_owned()), want, "{given}");
        }
    }

    #[test]
    fn the_providers_destination_is_read_and_a_typo_is_named() {
        let mut errors = Details::new();
        let d = parse_destination(
            0,
            &json!({"id": 7, "destination": " 1000@h ", "priority": "2",
                    "callhunt": true, "active": false, "transport": "1"}),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            d,
            Some(DestinationConfig {
                transport: 1,
                destination: "sip:1000@h".to_owned(),
                priority: 2,
            })
        );
        let d = parse_destination(3, &json!({"transport": 4, "destinaton": "1"}), &mut errors);
        assert_eq!(d, None);
        assert!(
            errors.contains_key("destinations[3].destinaton"),
            "{errors:?}"
        );
        assert!(
            errors.contains_key("destinations[3].destination"),
            "{errors:?}"
        );
    }

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
    fn every_documented_field_is_read_and_a_get_answer_can_be_put_back() {
        let input = properties::<DidInput>();
        for field in &input {
            let mut body = Map::new();
            body.insert(field.clone(), json!(null));
            let mut errors = Details::new();
            read_did(&body, Some("1"), &mut errors);
            assert_ne!(
                errors.get(field),
                Some(&json!("unknown field")),
                "DidInput documents `{field}`, which read_did does not read"
            );
        }
        for field in properties::<DestinationInput>() {
            let mut errors = Details::new();
            parse_destination(0, &json!({ field.clone(): 1 }), &mut errors);
            assert!(
                !errors.contains_key(&format!("destinations[0].{field}"))
                    || errors[&format!("destinations[0].{field}")] != json!("unknown field"),
                "DestinationInput documents `{field}`, which parse_destination does not read"
            );
        }
        for field in properties::<Did>() {
            assert!(
                input.contains(&field),
                "`{field}` is shown but not accepted"
            );
        }
        // POST without a number names it; number and id must agree.
        let mut errors = Details::new();
        read_did(&Map::new(), None, &mut errors);
        assert!(errors.contains_key("number"), "{errors:?}");
        let mut errors = Details::new();
        let body = json!({"number": "+1", "id": 2});
        read_did(body.as_object().unwrap(), None, &mut errors);
        assert!(errors.contains_key("id"), "{errors:?}");
    }
}
