//! `[media]` and the per-trunk / per-upstream `media` key (SPEC §8.4):
//! which calls are anchored through rtpengine, and how its ng control
//! sockets are reached.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[media]`: the rtpengine ng control sockets relayed calls use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// `"ip:port"` ng control sockets (rtpengine `--listen-ng`), tried in
    /// order for a new call; a call stays on the one that holds it.
    #[serde(default)]
    pub rtpengine: Vec<SocketAddr>,
    /// How long one ng request waits for its answer before it is sent
    /// again (or the next rtpengine is tried).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Sends of one request to one rtpengine (the first and its
    /// retransmissions, same cookie) before it counts as not answering.
    #[serde(default = "default_tries")]
    pub tries: u32,
    /// `ping` health check of every rtpengine; 0 disables. One that does
    /// not answer is tried last for new calls until it answers again.
    #[serde(default = "default_ping_interval_s")]
    pub ping_interval_s: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtpengine: Vec::new(),
            timeout_ms: default_timeout_ms(),
            tries: default_tries(),
            ping_interval_s: default_ping_interval_s(),
        }
    }
}

impl MediaConfig {
    /// The longest one request may take in the client before it fails:
    /// every try on every rtpengine. The core waits a little longer.
    pub fn budget(&self) -> std::time::Duration {
        let per = self.timeout_ms.saturating_mul(u64::from(self.tries.max(1)));
        let engines = u64::try_from(self.rtpengine.len().max(1)).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(per.saturating_mul(engines))
    }
}

fn default_timeout_ms() -> u64 {
    500
}

fn default_tries() -> u32 {
    2
}

fn default_ping_interval_s() -> u64 {
    10
}

/// Per trunk and per upstream: whether a call's media flows directly
/// between the endpoints or through rtpengine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// SDP passes unchanged (byte for byte); media flows end to end.
    #[default]
    Passthrough,
    /// Every offer and answer is rewritten by rtpengine, so media flows
    /// through it (phones behind NAT, hiding the far end's addresses).
    Relay,
}

impl MediaMode {
    /// Whether this is `relay`.
    pub fn relays(self) -> bool {
        self == MediaMode::Relay
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaMode::Passthrough => "passthrough",
            MediaMode::Relay => "relay",
        }
    }
}
