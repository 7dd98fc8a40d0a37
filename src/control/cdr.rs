//! `GET /v1/cdr` (SPEC §6): the call detail records, newest first, as JSON
//! `{items, stats, pagination}` or, with `Accept: text/csv`, as CSV.
//!
//! Reads go through the API's own connection to the CDR store ([`CdrReader`],
//! opened on first use and kept), always on a blocking task. The store is in
//! WAL mode, so these reads never block the CDR writer thread. On a fleet
//! store (PostgreSQL) they use its pool and list every node's calls.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Details};
use super::schema::{page_params, Error, Pagination};
use super::Live;
use crate::cdr::{Cdr, CdrError, CdrFilter, CdrSource, CdrStore, Direction, PgCdr};
use crate::sip::Transport;

/// A CSV export stops after this many rows (1,000,000, about 150 MB), so
/// one request cannot stream an unbounded file; the response then carries
/// `x-cdr-truncated: <sent> of <total>`. Narrow `from`/`to` to get the rest.
const CSV_MAX_ROWS: u64 = 1_000_000;

/// Rows read per lock of the shared connection during a CSV export; the
/// lock is released between chunks so JSON requests are not held up.
const CSV_CHUNK: u64 = 5_000;

const CSV_HEADER: &str = "call_id,date,type,from,to,duration,disposition,sip_code,charge,\
                          per_minute,destination,sip_trunk\r\n";

/// The API's read side of the CDR store: the embedded file's own
/// connection (opened lazily on the first request, then reused), or the
/// fleet store's pool. Blocking; only used from blocking tasks.
#[derive(Debug)]
pub(crate) enum CdrReader {
    /// `[store] path`.
    File {
        path: PathBuf,
        store: Mutex<Option<CdrStore>>,
    },
    /// `[store] url`: every node's CDRs.
    Fleet(PgCdr),
}

impl CdrReader {
    pub(crate) fn new(path: PathBuf) -> CdrReader {
        CdrReader::File {
            path,
            store: Mutex::new(None),
        }
    }

    /// Runs `f` on the store, opening the file first if needed (a failed
    /// open is tried again on the next request).
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&dyn CdrSource) -> Result<T, CdrError>,
    ) -> Result<T, CdrError> {
        match self {
            CdrReader::Fleet(db) => f(db),
            CdrReader::File { path, store } => {
                // A panic while reading cannot leave the connection inconsistent.
                let mut guard = store
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let store = match guard.as_mut() {
                    Some(s) => s,
                    None => guard.insert(CdrStore::open(path)?),
                };
                f(store)
            }
        }
    }
}

/// `?type=&from=&to=&page=&per_page=`, as text so bad values get a 422
/// naming the field (other parameters, like `appid`, are ignored).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CdrQuery {
    /// `placed` (by a trunk) or `received` (on a DID).
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<String>, pattern = "^(placed|received)$")]
    kind: Option<String>,
    /// From this time on (UTC): `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS`.
    from: Option<String>,
    /// Up to this time (UTC), same shapes as `from`.
    to: Option<String>,
    /// Page number, from 1 (JSON only).
    #[param(value_type = Option<u64>, minimum = 1)]
    page: Option<String>,
    /// Records per page, 1 to 1000, default 100 (JSON only).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    per_page: Option<String>,
}

/// One call detail record.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CdrItem {
    /// The A-leg Call-ID.
    call_id: String,
    /// When the call started, `YYYY-MM-DD HH:MM:SS` UTC.
    date: String,
    /// `placed` or `received`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    kind: &'static str,
    /// Caller number.
    from: String,
    /// Dialled number or DID.
    to: String,
    /// Billed seconds.
    duration: u64,
    /// `answered`, `busy`, `failed`, `no_answer`...
    disposition: &'static str,
    /// Final SIP status of the attempt.
    sip_code: u16,
    /// What the call cost.
    charge: f64,
    /// The rate applied, per minute.
    per_minute: f64,
    /// The rate's destination name.
    destination: String,
    /// The trunk login.
    sip_trunk: String,
    /// Transport of the caller's leg: `udp`, `tcp`, `tls`, `ws` or `wss`
    /// (RFC 3261 §19.1.1, RFC 7118 §5.2); `null` on records stored before
    /// transports were kept.
    a_transport: Option<&'static str>,
    /// Transport of the callee's leg (its last attempt); `null` when the
    /// call was refused before a callee was tried.
    b_transport: Option<&'static str>,
}

impl From<&Cdr> for CdrItem {
    fn from(c: &Cdr) -> CdrItem {
        CdrItem {
            call_id: c.call_id.clone(),
            date: c.date(),
            kind: c.direction.as_str(),
            from: c.from.clone(),
            to: c.to.clone(),
            duration: c.duration_s,
            disposition: c.disposition.as_str(),
            sip_code: c.sip_code,
            charge: c.charge(),
            per_minute: c.per_minute,
            destination: c.destination.clone(),
            sip_trunk: c.sip_trunk.clone(),
            a_transport: c.a_transport.map(Transport::as_lowercase),
            b_transport: c.b_transport.map(Transport::as_lowercase),
        }
    }
}

/// Totals over every record the filter matches (not only this page).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CdrStats {
    /// Records.
    count: u64,
    /// Seconds, summed.
    duration: u64,
    /// Charges, summed, to 4 decimals.
    amount: f64,
}

/// `GET /v1/cdr` as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CdrPage {
    /// Newest first.
    items: Vec<CdrItem>,
    /// Totals of the whole match.
    stats: CdrStats,
    /// Where this page sits.
    pagination: Pagination,
}

/// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` with fields in range (the store
/// compares these as text, so the shape must be exact).
fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let day = b.len() >= 10
        && b[4] == b'-'
        && b[7] == b'-'
        && num(0..4).is_some()
        && num(5..7).is_some_and(|m| (1..=12).contains(&m))
        && num(8..10).is_some_and(|d| (1..=31).contains(&d));
    match b.len() {
        10 => day,
        19 => {
            day && b[10] == b' '
                && b[13] == b':'
                && b[16] == b':'
                && num(11..13).is_some_and(|h| h < 24)
                && num(14..16).is_some_and(|m| m < 60)
                && num(17..19).is_some_and(|s| s < 60)
        }
        _ => false,
    }
}

/// The validated request: the filter (newest first, no page) and the page.
fn parse(q: CdrQuery) -> Result<(CdrFilter, u64, u64), ApiError> {
    let mut errors = Details::new();
    let direction = match q.kind.as_deref() {
        None => None,
        Some(t) => {
            let d = Direction::parse(t);
            if d.is_none() {
                errors.insert("type".to_owned(), "must be placed or received".into());
            }
            d
        }
    };
    for (name, v) in [("from", &q.from), ("to", &q.to)] {
        if v.as_deref().is_some_and(|d| !valid_date(d)) {
            errors.insert(
                name.to_owned(),
                "must be YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (UTC)".into(),
            );
        }
    }
    let (page, per_page) = page_params(q.page.as_deref(), q.per_page.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let filter = CdrFilter {
        direction,
        from_date: q.from,
        to_date: q.to,
        newest_first: true,
        ..CdrFilter::default()
    };
    Ok((filter, page, per_page))
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// One RFC 4180 field: quoted (quotes doubled) when it holds a comma, a
/// quote, CR or LF.
fn csv_field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn csv_row(out: &mut String, c: &Cdr) {
    let fields = [
        c.call_id.clone(),
        c.date(),
        c.direction.as_str().to_owned(),
        c.from.clone(),
        c.to.clone(),
        c.duration_s.to_string(),
        c.disposition.as_str().to_owned(),
        c.sip_code.to_string(),
        c.charge().to_string(),
        c.per_minute.to_string(),
        c.destination.clone(),
        c.sip_trunk.clone(),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// `GET /v1/cdr`: newest first; with `Accept: text/csv`, every matching
/// record as CSV (up to 1,000,000 rows; `x-cdr-truncated` says when cut).
#[utoipa::path(get, path = "/v1/cdr", operation_id = "list_cdrs", tag = "cdr", params(CdrQuery),
    responses(
        (status = 200, description = "A page of records with totals, or (`Accept: text/csv`) all of them as CSV",
            content((CdrPage = "application/json"), (String = "text/csv"))),
        (status = 422, description = "Bad parameters, each named in `details`", body = Error),
    ))]
pub(crate) async fn list(
    State(live): State<Arc<Live>>,
    headers: HeaderMap,
    q: Result<Query<CdrQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let (filter, page, per_page) = parse(q)?;
    let reader = live.cdr();
    if wants_csv(&headers) {
        return csv(reader, filter).await;
    }
    let paged = CdrFilter {
        limit: Some(per_page),
        offset: (page - 1).saturating_mul(per_page),
        ..filter
    };
    let (items, stats) = tokio::task::spawn_blocking(move || {
        reader.with(|s| Ok((s.query(&paged)?, s.stats(&paged)?)))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(CdrPage {
        items: items.iter().map(CdrItem::from).collect(),
        stats: CdrStats {
            count: stats.count,
            duration: stats.duration,
            amount: round4(stats.charge),
        },
        pagination: Pagination::new(page, per_page, stats.count),
    })
    .into_response())
}

/// The body of a CSV export: chunks from the blocking producer.
struct Chunks(mpsc::Receiver<Result<Bytes, io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Every matching row (up to [`CSV_MAX_ROWS`]), newest first, streamed in
/// chunks of [`CSV_CHUNK`] walked by cursor (no `OFFSET` rescans). The
/// count comes first, so a store that cannot be read is a `500`, not a
/// cut-off body.
async fn csv(reader: Arc<CdrReader>, filter: CdrFilter) -> Result<Response, ApiError> {
    let total = {
        let (reader, filter) = (reader.clone(), filter.clone());
        tokio::task::spawn_blocking(move || reader.with(|s| s.count_matching(&filter)))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)?
    };
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let mut out = String::from(CSV_HEADER);
        let mut sent = 0u64;
        let mut before = None;
        loop {
            let n = CSV_CHUNK.min(CSV_MAX_ROWS - sent);
            let chunk = match reader.with(|s| {
                s.query_keyed(&CdrFilter {
                    limit: Some(n),
                    before: before.take(),
                    ..filter.clone()
                })
            }) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("control API: CDR export: {e}");
                    let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
                    return;
                }
            };
            let done = (chunk.len() as u64) < n;
            sent += chunk.len() as u64;
            for (_, c) in &chunk {
                csv_row(&mut out, c);
            }
            before = chunk.last().map(|(cursor, _)| cursor.clone());
            // The client hung up: stop reading.
            if tx
                .blocking_send(Ok(Bytes::from(std::mem::take(&mut out))))
                .is_err()
            {
                return;
            }
            if done || sent >= CSV_MAX_ROWS {
                break;
            }
        }
    });
    let mut resp = (StatusCode::OK, Body::from_stream(Chunks(rx))).into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if total > CSV_MAX_ROWS {
        if let Ok(v) = HeaderValue::from_str(&format!("{CSV_MAX_ROWS} of {total}")) {
            h.insert("x-cdr-truncated", v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_must_have_the_exact_shape() {
        for ok in ["2026-11-23", "2026-11-23 00:00:00", "1999-12-31 23:59:59"] {
            assert!(valid_date(ok), "{ok}");
        }
        for bad in [
            "",
            "2026-11-2",
            "2026/11/23",
            "2026-13-01",
            "2026-11-00",
            "2026-11-23T10:00:00",
            "2026-11-23 24:00:00",
            "2026-11-23 10:60:00",
            "2026-11-23 10:00",
            "2026-11-23 10:00:00Z",
            "２026-11-23",
            "+026-11-23",
        ] {
            assert!(!valid_date(bad), "{bad}");
        }
    }

    #[test]
    fn csv_quotes_per_rfc_4180() {
        let mut out = String::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", "cr\r", ""] {
            csv_field(&mut out, f);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\"||"
        );
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let q = |kind: &str, from: &str, per_page: &str| CdrQuery {
            kind: Some(kind.to_owned()),
            from: Some(from.to_owned()),
            to: None,
            page: Some("0".to_owned()),
            per_page: Some(per_page.to_owned()),
        };
        let e = parse(q("foo", "yesterday", "1001")).unwrap_err();
        let mut keys: Vec<&str> = e.details.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["from", "page", "per_page", "type"]);
        let (f, _, per_page) = parse(CdrQuery {
            page: None,
            ..q("received", "2026-11-23", "1000")
        })
        .unwrap();
        assert_eq!(
            (f.direction, f.newest_first, per_page),
            (Some(Direction::Received), true, 1000)
        );
    }
}
