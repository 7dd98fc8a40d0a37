//! The sans-IO half of trunk sync: a remote `/v1/trunks` body becomes the
//! next trunk set, read with the same field rules as `POST /v1/trunks`
//! ([`trunks::apply_fields`], [`trunks::check`]), and what changed is
//! summed up in one line. No I/O, no clock: the shell in `super` fetches
//! and applies.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use super::super::error::Details;
use super::super::trunks::{self, UnknownFields, MASK};
use crate::config::{Config, ConfigErrors, TrunkConfig};

/// How many problems (or ids) one line names before "… and N more".
const LISTED: usize = 3;

/// Longest error text kept: remote values end up in messages, and a
/// hostile list must not make a megabyte log line or `/healthz` answer.
const TEXT_LIMIT: usize = 600;

/// Why a pull left the trunks as they were. The text is what `/healthz`
/// shows as `last_result` and the log line says; it never holds the appid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SyncError {
    /// Connecting, sending or reading failed (timeout, refused, reset…).
    #[error("{0}")]
    Http(String),
    /// The remote answered with a status other than 2xx or 304.
    #[error("remote answered HTTP {0}")]
    Status(String),
    /// The body is over the limit (declared or read so far).
    #[error("remote body is over the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body does not parse as JSON.
    #[error("remote body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a trunk list.
    #[error(
        "remote body is {0}; want a JSON array of trunks, or an object with the array under \
         `items`, `data` or `trunks`"
    )]
    Shape(&'static str),
    /// One or more trunks (or the config they would make) break a rule.
    #[error("remote trunk list rejected: {0}")]
    Invalid(String),
    /// The store refused the write.
    #[error("store write failed: {0}")]
    Store(String),
}

impl SyncError {
    /// The whole next config's rule breaks, with each trunk's position in
    /// the remote list and id (`trunk[3] (id 7): name: duplicate …`).
    pub(crate) fn invalid(errors: &ConfigErrors, trunks: &[TrunkConfig]) -> SyncError {
        let lines = errors.0.iter().map(|e| {
            let who = e
                .key
                .strip_prefix("trunk[")
                .and_then(|r| r.split_once("]."))
                .and_then(|(i, field)| {
                    let t = trunks.get(i.parse::<usize>().ok()?)?;
                    Some(format!("trunk[{i}] (id {}): {field}", t.id()))
                })
                .unwrap_or_else(|| e.key.clone());
            format!("{who}: {}", e.message)
        });
        SyncError::Invalid(listing(lines, "; "))
    }
}

/// `a; b; c; … and 4 more`, cut at [`TEXT_LIMIT`] bytes.
fn listing(items: impl ExactSizeIterator<Item = String>, sep: &str) -> String {
    let n = items.len();
    let mut out: Vec<String> = items.take(LISTED).collect();
    if n > LISTED {
        out.push(format!("… and {} more", n - LISTED));
    }
    let mut text = out.join(sep);
    if text.len() > TEXT_LIMIT {
        let mut end = TEXT_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The trunk objects of a remote body: a JSON array, or an object holding
/// it under `items` (our own `GET /v1/trunks`), `data` or `trunks`.
///
/// # Errors
/// [`SyncError::NotJson`] or [`SyncError::Shape`].
pub(crate) fn items(body: &[u8]) -> Result<Vec<Value>, SyncError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| SyncError::NotJson(e.to_string()))?;
    match v {
        Value::Array(a) => Ok(a),
        Value::Object(mut m) => ["items", "data", "trunks"]
            .iter()
            .find_map(|k| match m.remove(*k) {
                Some(Value::Array(a)) => Some(a),
                _ => None,
            })
            .ok_or(SyncError::Shape(
                "an object without an `items`, `data` or `trunks` array",
            )),
        _ => Err(SyncError::Shape("neither an array nor an object")),
    }
}

/// One remote trunk, read like a `POST /v1/trunks` body except that
/// unknown fields are skipped, `id` and `name` are required (the trunk's
/// identity from one pull to the next), and a masked password keeps the
/// one the trunk with that id has in `cur`.
fn remote_trunk(body: &Map<String, Value>, cur: &Config) -> Result<TrunkConfig, String> {
    let mut t = trunks::blank().map_err(|e| e.error)?;
    let mut errors = Details::new();
    trunks::apply_fields(&mut t, body, UnknownFields::Ignore, &mut errors);
    for (field, missing) in [("id", t.id.is_none()), ("name", t.name.is_none())] {
        if missing && !errors.contains_key(field) {
            errors.insert(
                field.to_owned(),
                "is required: sync knows a trunk by its id and name".into(),
            );
        }
    }
    if body.get("password").and_then(Value::as_str) == Some(MASK) {
        match t.id.and_then(|id| cur.trunk.iter().find(|c| c.id() == id)) {
            Some(old) => t.password.clone_from(&old.password),
            None => {
                errors.insert(
                    "password".to_owned(),
                    "is masked (\"********\") but no trunk here has this id to keep it from".into(),
                );
            }
        }
    }
    trunks::check(&t, errors).map_err(|e| {
        e.details
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", ")
    })?;
    Ok(t)
}

/// Every remote trunk, in the remote's order; all or none.
///
/// # Errors
/// [`SyncError::Invalid`] naming the first few bad items by position and id.
pub(crate) fn remote_trunks(items: &[Value], cur: &Config) -> Result<Vec<TrunkConfig>, SyncError> {
    let mut out = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let read = match item {
            Value::Object(body) => remote_trunk(body, cur),
            _ => Err("is not a JSON object".to_owned()),
        };
        match read {
            Ok(t) => out.push(t),
            Err(why) => {
                let id = match item.get("id") {
                    Some(Value::Number(n)) => format!(" (id {n})"),
                    Some(Value::String(s)) if s.len() <= 20 => format!(" (id {s})"),
                    _ => String::new(),
                };
                bad.push(format!("trunk[{i}]{id}: {why}"));
            }
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(SyncError::Invalid(listing(bad.into_iter(), "; ")))
    }
}

/// The next trunk set and what it changes, or `None` when it is the set in
/// force (same ids, same fields).
///
/// # Errors
/// As [`remote_trunks`].
pub(crate) fn plan(
    items: &[Value],
    cur: &Config,
) -> Result<Option<(Vec<TrunkConfig>, Diff)>, SyncError> {
    let next = remote_trunks(items, cur)?;
    let diff = Diff::between(&cur.trunk, &next);
    Ok((!diff.is_empty()).then_some((next, diff)))
}

/// What a new trunk set changes, by id; its `Display` is the one-line log
/// summary: `trunks: 12 (+2 added: 7, 9; -1 removed: 3; ~1 changed: 5)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diff {
    /// Trunks in the new set.
    pub(crate) total: usize,
    /// Ids only in the new set, ascending.
    pub(crate) added: Vec<u64>,
    /// Ids only in the old set, ascending.
    pub(crate) removed: Vec<u64>,
    /// Ids in both whose fields differ, ascending.
    pub(crate) changed: Vec<u64>,
}

impl Diff {
    /// Compares two sets by trunk id (order does not matter).
    pub(crate) fn between(old: &[TrunkConfig], new: &[TrunkConfig]) -> Diff {
        let before: HashMap<u64, &TrunkConfig> = old.iter().map(|t| (t.id(), t)).collect();
        let after: HashMap<u64, &TrunkConfig> = new.iter().map(|t| (t.id(), t)).collect();
        let mut added: Vec<u64> = after
            .keys()
            .filter(|id| !before.contains_key(id))
            .copied()
            .collect();
        let mut removed: Vec<u64> = before
            .keys()
            .filter(|id| !after.contains_key(id))
            .copied()
            .collect();
        let mut changed: Vec<u64> = after
            .iter()
            .filter(|(id, t)| before.get(id).is_some_and(|o| o != *t))
            .map(|(id, _)| *id)
            .collect();
        added.sort_unstable();
        removed.sort_unstable();
        changed.sort_unstable();
        Diff {
            total: new.len(),
            added,
            removed,
            changed,
        }
    }

    /// Nothing added, removed or changed.
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trunks: {}", self.total)?;
        if self.is_empty() {
            return write!(f, " (no change)");
        }
        let parts: Vec<String> = [
            ('+', "added", &self.added),
            ('-', "removed", &self.removed),
            ('~', "changed", &self.changed),
        ]
        .into_iter()
        .filter(|(_, _, ids)| !ids.is_empty())
        .map(|(sign, what, ids)| {
            format!(
                "{sign}{} {what}: {}",
                ids.len(),
                listing(ids.iter().map(u64::to_string), ", ")
            )
        })
        .collect();
        write!(f, " ({})", parts.join("; "))
    }
}

#[cfg(test)]
#[path = "remote_tests.rs"]
mod tests;
