//! The OpenAPI document served at `GET /openapi.json` (no key).
//!
//! It cannot drift from the routes: the router is built from the same
//! `routes!` lists (utoipa-axum) that the document is collected from, each
//! handler's path and methods written once in its `#[utoipa::path]`. The
//! routes behind the API key get the security requirement and the `401`
//! here, from which list they are in, not by hand on each handler. Shapes
//! come from the `ToSchema` types the handlers serialize.

use std::sync::OnceLock;

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::OpenApi as _;

/// The document's fixed parts; paths and schemas are added from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "sipfront control API",
        description = "Trunks, DIDs, CDRs and live views of the sipfront SIP edge (see the README, section HTTP API). \
            Errors are `{\"error\": \"...\", \"details\": {...}}`; unknown routes `404`, \
            wrong methods `405`, bodies over 1 MiB `413`."
    ),
    tags(
        (name = "trunks", description = "Customer SIP trunks"),
        (name = "dids", description = "Inbound numbers and their destinations"),
        (name = "cdr", description = "Call detail records"),
        (name = "live", description = "Calls, registrations and bans now"),
        (name = "service", description = "Health, metrics, this document"),
    )
)]
struct Base;

/// The security schemes' names.
const APPID: &str = "appid";
const BEARER: &str = "bearer";

/// The whole document, built once.
pub(crate) fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (keyed, open) = super::routes();
        let mut keyed = keyed.into_openapi();
        for item in keyed.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                // Either scheme will do: two alternatives of one key each.
                op.security = Some(vec![
                    SecurityRequirement::new(APPID, Vec::<String>::new()),
                    SecurityRequirement::new(BEARER, Vec::<String>::new()),
                ]);
                op.responses.responses.insert(
                    "401".to_owned(),
                    ResponseBuilder::new()
                        .description("No key, a wrong or disabled key, or a key used from an address it does not allow")
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("Error")))
                                .build(),
                        )
                        .build()
                        .into(),
                );
            }
        }
        let mut doc = Base::openapi().merge_from(keyed).merge_from(open.into_openapi());
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            APPID,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "appid",
                "The API key as `?appid=KEY`",
            ))),
        );
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        doc
    })
}

/// `GET /openapi.json`: this API described (OpenAPI 3.1).
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub(crate) async fn serve() -> impl IntoResponse {
    static JSON: OnceLock<String> = OnceLock::new();
    let text = JSON.get_or_init(|| {
        // Our own types only: serialising them cannot fail.
        serde_json::to_string_pretty(document()).unwrap_or_else(|e| {
            tracing::error!("control API: OpenAPI document: {e}");
            String::from("{}")
        })
    });
    ([(CONTENT_TYPE, "application/json")], text.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_with_keyed_routes_secured_and_open_ones_not() {
        let doc = serde_json::to_value(document()).unwrap();
        std::fs::write(
            std::env::temp_dir().join("sipfront-openapi.json"),
            serde_json::to_string_pretty(&doc).unwrap(),
        )
        .unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
        let paths = doc["paths"].as_object().unwrap();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                let open = matches!(path.as_str(), "/healthz" | "/openapi.json");
                assert_eq!(op.get("security").is_none(), open, "{method} {path}");
                assert_eq!(
                    op["responses"].get("401").is_none(),
                    open,
                    "{method} {path}"
                );
            }
        }
        let schemes = &doc["components"]["securitySchemes"];
        assert_eq!(schemes["appid"]["in"], "query");
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
    }
}
