//! The API's error body: `{"error": "...", "details": {...}}` (SPEC §6).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

/// Field (or key path) → what is wrong with it.
pub(crate) type Details = Map<String, Value>;

/// An error answer. Built by handlers and middleware; never a panic.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) details: Details,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            details: Details::new(),
        }
    }

    /// `422` naming each bad field.
    pub(crate) fn invalid(details: Details) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: "validation failed".to_owned(),
            details,
        }
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid API key")
    }

    pub(crate) fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, what)
    }

    pub(crate) fn too_large(limit: usize) -> ApiError {
        let mut e = ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        e.details.insert("limit_bytes".to_owned(), json!(limit));
        e
    }

    pub(crate) fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!("control API: {what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::schema::Error {
            error: self.error,
            details: self.details,
        };
        (self.status, Json(body)).into_response()
    }
}

/// A query string axum could not read (`?page=x` where a number is due is
/// read as text and checked by the handler; this is for malformed ones).
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(r.status(), r.body_text())
    }
}
