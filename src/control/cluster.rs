//! `GET /v1/cluster` (README "Fleets"): the nodes of the fleet as Redis
//! knows them: name, last heartbeat, whether it is alive, the calls and
//! registrations it holds. Asked of the cluster task (it owns the Redis
//! connection), never of the SIP core.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::error::ApiError;
use super::schema::Error;
use super::Live;
use crate::cluster::ClusterView;

/// `GET /v1/cluster`: every node that sent a heartbeat. `404` on a node
/// with no `[cluster] redis`.
#[utoipa::path(get, path = "/v1/cluster", operation_id = "cluster", tag = "live",
    responses(
        (status = 200, description = "The fleet's nodes; `redis_up` false: this node does \
            not reach Redis now and lists only itself", body = ClusterView),
        (status = 404, description = "This node is not part of a fleet (no `[cluster] redis`)",
            body = Error),
    ))]
pub(crate) async fn view(State(live): State<Arc<Live>>) -> Result<Json<ClusterView>, ApiError> {
    let cluster = live
        .cluster()
        .ok_or_else(|| ApiError::not_found("this node is not part of a fleet ([cluster] redis)"))?;
    Ok(Json(cluster.view().await))
}
