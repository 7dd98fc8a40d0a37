//! `GET /v1/upstreams` (SPEC §8.1): every `[[upstream]]` with the targets
//! its `uri` resolved to (RFC 3263), each target's health (OPTIONS pings,
//! INVITEs), the DNS expiry and the last DNS error, and its registration
//! state (RFC 3261 §10 client side: `registered`, `failed`, `disabled`).
//! Built on the core task from the core's own tables, so it shows exactly
//! what calls use.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Serialize;

use super::core::CoreQuery;
use super::error::ApiError;
use super::schema::{Error, Items};
use super::views::UpstreamRegistration;
use super::Live;
use crate::b2bua;
use crate::endpoint::Endpoint;
use crate::routing::Upstream;

/// One upstream as `GET /v1/upstreams` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Upstream)]
pub struct UpstreamView {
    /// `[[upstream]] name`.
    pub name: String,
    /// The configured `uri`.
    pub uri: String,
    /// Whether any target is up (calls can go through it).
    pub up: bool,
    /// Whether `uri` names a host resolved by DNS (false: an IP literal).
    pub dns: bool,
    /// The last DNS lookup error, while lookups fail (its targets are then
    /// the last good answer, kept until TTL + grace, or none).
    pub dns_error: Option<String>,
    /// Where calls may go, in SRV priority order.
    pub targets: Vec<TargetView>,
    /// The registration at this upstream (`register = true`).
    pub registration: UpstreamRegistration,
}

/// One address an upstream resolved to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = UpstreamTarget)]
pub struct TargetView {
    /// `ip:port`.
    pub address: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// SRV priority (0 without SRV).
    pub priority: u16,
    /// SRV weight (0 without SRV).
    pub weight: u16,
    /// Health from OPTIONS pings and INVITEs.
    pub up: bool,
    /// Seconds until its DNS answer expires (0: expired, being looked up
    /// again; null: an IP literal, never expires).
    pub dns_expires_in: Option<u64>,
}

/// One upstream's view at `now`, with its registration state.
fn view(u: &Upstream, registration: b2bua::UpstreamRegistration, now: Instant) -> UpstreamView {
    let mut targets: Vec<TargetView> = u
        .targets
        .iter()
        .map(|t| TargetView {
            address: t.addr.to_string(),
            transport: t.transport.as_lowercase().to_owned(),
            priority: t.priority,
            weight: t.weight,
            up: t.up,
            dns_expires_in: t
                .expires
                .map(|e| e.saturating_duration_since(now).as_secs()),
        })
        .collect();
    targets.sort_by_key(|t| t.priority);
    UpstreamView {
        name: u.name.clone(),
        uri: u.uri.clone(),
        up: u.up(),
        dns: u.resolve.is_some(),
        dns_error: u.dns_error.clone(),
        targets,
        registration: UpstreamRegistration::from(registration),
    }
}

/// The views of every upstream, in config order (on the core task).
pub(crate) fn views(ep: &Endpoint, now: Instant) -> Vec<UpstreamView> {
    let b2bua = ep.b2bua();
    b2bua
        .upstreams()
        .iter()
        .enumerate()
        .map(|(i, u)| view(u, b2bua.registration(i, now), now))
        .collect()
}

/// `GET /v1/upstreams`: upstreams, their resolved targets, health and
/// registration state.
#[utoipa::path(get, path = "/v1/upstreams", operation_id = "list_upstreams", tag = "live",
    responses(
        (status = 200, description = "Upstreams in config order", body = Items<UpstreamView>),
        (status = 503, description = "The SIP core is busy or stopping", body = Error),
    ))]
pub(crate) async fn list(
    State(live): State<Arc<Live>>,
) -> Result<Json<Items<UpstreamView>>, ApiError> {
    let items = live.core().ask(CoreQuery::Upstreams).await?;
    Ok(Json(Items { items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use crate::routing::{Target, Upstreams};
    use crate::sip::Transport;
    use std::time::Duration;

    #[test]
    fn shows_targets_expiry_and_dns_error() {
        let cfg = |name: &str, uri: &str| UpstreamConfig {
            name: name.into(),
            uri: uri.into(),
            ..Default::default()
        };
        let mut ups = Upstreams::from_config(&[
            cfg("ip", "sip:10.0.0.1:5080"),
            cfg("named", "sip:c.example"),
        ])
        .unwrap();
        let now = Instant::now();
        let t = Target {
            priority: 10,
            weight: 5,
            expires: Some(now + Duration::from_secs(30)),
            ..Target::fixed("10.0.0.2:5060".parse().unwrap(), Transport::Tcp)
        };
        ups.set_targets(1, vec![t], Some("SERVFAIL".into()));
        let v: Vec<UpstreamView> = ups
            .iter()
            .map(|u| view(u, b2bua::UpstreamRegistration::disabled(), now))
            .collect();
        assert_eq!(v[0].targets[0].dns_expires_in, None);
        assert!(!v[0].dns && v[0].up);
        assert!(v[1].dns);
        assert_eq!(v[1].dns_error.as_deref(), Some("SERVFAIL"));
        let t = &v[1].targets[0];
        assert_eq!(
            (t.address.as_str(), t.transport.as_str()),
            ("10.0.0.2:5060", "tcp")
        );
        assert_eq!((t.priority, t.weight, t.dns_expires_in), (10, 5, Some(30)));
    }
}
