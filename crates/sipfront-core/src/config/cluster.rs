//! `[cluster]`: several sipfront nodes sharing per-call state through
//! Redis (README "Fleets"): channel counters per trunk and DID that hold
//! across the fleet, each node's heartbeat, and what `/v1/cluster` shows.
//! Absent (no `redis`): one node, everything in memory.

use serde::Deserialize;

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`, `rediss://…` (TLS) or
    /// `redis+unix:///path/to/socket`. Absent: a single node.
    #[serde(default)]
    pub redis: Option<String>,
    /// This node's name, unique in the fleet. Absent: the host name.
    #[serde(default)]
    pub node: Option<String>,
    /// Seconds between this node's heartbeats (each one also rewrites the
    /// node's channel counts, which is how they reconcile after a Redis
    /// outage).
    #[serde(default = "default_heartbeat_s")]
    pub heartbeat_s: u64,
    /// A node not heard from for this long is dead: its channels are given
    /// back to the fleet. At most 30 s by default.
    #[serde(default = "default_node_ttl_s")]
    pub node_ttl_s: u64,
    /// The longest a new call with a channel limit waits for Redis's
    /// verdict; past it the call goes on, counted on this node's view.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node: None,
            heartbeat_s: default_heartbeat_s(),
            node_ttl_s: default_node_ttl_s(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a fleet (`redis` is set).
    pub fn enabled(&self) -> bool {
        self.redis.is_some()
    }
}

fn default_heartbeat_s() -> u64 {
    10
}

fn default_node_ttl_s() -> u64 {
    30
}

fn default_timeout_ms() -> u64 {
    200
}

/// A node name: 1 to 64 letters, digits, `.`, `-` or `_` (it is part of
/// Redis keys and of `/v1/cluster`).
pub fn check_node_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1 to 64 letters, digits, `.`, `-` or `_`"
        ))
    }
}

/// A Redis URL the client accepts: `redis://`, `rediss://` with a host, or
/// `redis+unix://`/`unix://` with a socket path.
pub fn check_redis_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match parsed.scheme() {
        "redis" | "rediss" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "redis+unix" | "unix" if !parsed.path().is_empty() && parsed.path() != "/" => Ok(()),
        _ => Err(format!(
            "`{url}` must be redis://host:port, rediss://host:port or redis+unix:///path"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_and_urls() {
        for ok in ["node-1", "a", "sbc.eu_1"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "n:1", &"x".repeat(65)] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
        for ok in [
            "redis://127.0.0.1:6379",
            "redis://:pw@h/2",
            "rediss://r.example.net",
            "redis+unix:///run/redis.sock",
        ] {
            assert!(check_redis_url(ok).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1:6379", "http://h", "redis+unix://", "redis://"] {
            assert!(check_redis_url(bad).is_err(), "{bad}");
        }
    }
}
