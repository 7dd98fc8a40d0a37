//! Response shapes shared by several routes, as types: the handlers build
//! these and serde writes them, so the OpenAPI document (generated from the
//! same types) cannot drift from what is sent.

use serde::Serialize;

use super::error::Details;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Items<T> {
    /// The records.
    pub(crate) items: Vec<T>,
}

/// Where a page sits in the whole list (1-based).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pagination {
    /// This page's number, from 1.
    pub(crate) page: u64,
    /// Records per page.
    pub(crate) per_page: u64,
    /// Records in the whole list.
    pub(crate) total: u64,
    /// Pages in the whole list.
    pub(crate) pages: u64,
}

/// Records per page when the query names none, and the most it may name.
pub(crate) const PER_PAGE: u64 = 100;
/// See [`PER_PAGE`].
pub(crate) const MAX_PER_PAGE: u64 = 1000;

/// `page` and `per_page` from a query string: `(page, per_page)`, with
/// each bad one named in `errors` (and its default returned).
pub(crate) fn page_params(
    page: Option<&str>,
    per_page: Option<&str>,
    errors: &mut Details,
) -> (u64, u64) {
    let page = match page.map(str::parse::<u64>) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        Some(_) => {
            errors.insert("page".to_owned(), "must be a whole number >= 1".into());
            1
        }
    };
    let per_page = match per_page.map(str::parse::<u64>) {
        None => PER_PAGE,
        Some(Ok(p)) if (1..=MAX_PER_PAGE).contains(&p) => p,
        Some(_) => {
            errors.insert(
                "per_page".to_owned(),
                format!("must be between 1 and {MAX_PER_PAGE}").into(),
            );
            PER_PAGE
        }
    };
    (page, per_page)
}

impl Pagination {
    pub(crate) fn new(page: u64, per_page: u64, total: u64) -> Pagination {
        Pagination {
            page,
            per_page,
            total,
            pages: total.div_ceil(per_page.max(1)),
        }
    }
}

/// Every error answer: what went wrong, and per field (or key path) why.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Error {
    /// One line for people, e.g. `validation failed`.
    pub(crate) error: String,
    /// Field name → what is wrong with it (on `422`); other details
    /// (`limit_bytes` on `413`); empty otherwise.
    #[schema(value_type = Object)]
    pub(crate) details: Map<String, Value>,
}
