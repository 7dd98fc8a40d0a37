//! The TOML schema of SPEC §2, as plain serde types.
//!
//! Every table is `deny_unknown_fields` so a typo (`max_chanels`) is an error
//! with a line number instead of a silently ignored setting. Every field that
//! has a sensible value has a default, so a minimal file (even an empty one)
//! gives a working single-node setup. Checks that need more than one field
//! live in `validate.rs`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::rates::RateTable;

/// The whole configuration: the file's tables plus what loading resolved
/// (the rate table, where it came from).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`: identity and process behaviour.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[log]`: how log lines are written.
    #[serde(default)]
    pub log: LogConfig,
    /// `[capture]`: copies of the SIP messages for a collector.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// `[[listen]]`: SIP sockets. Default: UDP and TCP on `127.0.0.1:5060`.
    #[serde(default = "default_listen")]
    pub listen: Vec<ListenConfig>,
    /// `[http]`: the control API.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[store]`: persistence.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[rates]`: the rate table file. Absent: empty table (off-net calls get 404).
    #[serde(default)]
    pub rates: Option<RatesConfig>,
    /// `[[upstream]]`: carriers and outbound proxies.
    #[serde(default)]
    pub upstream: Vec<UpstreamConfig>,
    /// `[dns]`: how upstream host names are resolved (RFC 3263).
    #[serde(default)]
    pub dns: super::dns::DnsConfig,
    /// `[[trunk]]`: customer trunks.
    #[serde(default)]
    pub trunk: Vec<TrunkConfig>,
    /// `[[did]]`: inbound numbers.
    #[serde(default)]
    pub did: Vec<DidConfig>,
    /// `[sync]` (SPEC §7): pull trunks from a remote API.
    #[serde(default)]
    pub sync: Option<SyncConfig>,
    /// `[webhooks]` (SPEC §7): global call-status webhook.
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    /// `[registrar]`: REGISTER expiry bounds and contacts per trunk.
    #[serde(default)]
    pub registrar: RegistrarSettings,
    /// `[security]`: brute-force bans and scanner rules.
    #[serde(default)]
    pub security: SecuritySettings,
    /// `[transport]`: socket buffers and send queues.
    #[serde(default)]
    pub transport: super::TransportSettings,
    /// `[media]`: rtpengine ng sockets for relayed calls (SPEC §8.4).
    #[serde(default)]
    pub media: super::MediaConfig,
    /// `[cluster]`: the fleet's shared state in Redis (README "Fleets").
    #[serde(default)]
    pub cluster: super::ClusterConfig,
    /// The parsed `[rates]` file (empty without `[rates]`).
    #[serde(skip)]
    pub rate_table: RateTable,
    /// Where this configuration was read from.
    #[serde(skip)]
    pub source: ConfigSource,
}

/// Where a configuration came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ConfigSource {
    /// The copy of `config/sipfront.toml` built into the binary.
    #[default]
    Embedded,
    /// A file on disk.
    File(PathBuf),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Embedded => f.write_str("<embedded>/config/sipfront.toml"),
            ConfigSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Digest realm.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Host or IP written in Via/Contact toward peers.
    #[serde(default = "default_public_address")]
    pub public_address: String,
    /// Seconds calls may continue after SIGTERM before both legs get BYE.
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
    /// Seconds a DID destination may ring before the next one is tried
    /// (SPEC §4 "ring timeout"; Kamailio's `fr_inv_timer`).
    #[serde(default = "default_ring_timeout_s")]
    pub ring_timeout_s: u64,
    /// Numbers that are never refused for channels, rate, cost or duration
    /// and always go to the upstreams (emergency services).
    #[serde(default = "default_emergency_numbers")]
    pub emergency_numbers: Vec<String>,
    /// RFC 4028 session interval sipfront asks for on each leg, and the
    /// period of its refresh toward peers without timers; 0 disables.
    #[serde(default = "default_session_expires_s")]
    pub session_expires_s: u64,
    /// Smallest `Session-Expires` accepted (`422` with `Min-SE` below).
    #[serde(default = "default_min_se_s")]
    pub min_se_s: u64,
    /// Milliseconds a new INVITE may wait between the socket and the core
    /// before it is answered `503` with `Retry-After` unprocessed; 0 off.
    #[serde(default = "default_overload_queue_ms")]
    pub overload_queue_ms: u64,
    /// Milliseconds after which a new out-of-dialog UDP request is dropped
    /// unanswered (the caller has retransmitted it by then); 0 off.
    #[serde(default = "default_overload_drop_ms")]
    pub overload_drop_ms: u64,
    /// Core shards (threads of SIP work), 1..=64; default: the machine's
    /// CPUs (at most 64). 1 runs every call on one core task.
    #[serde(default = "default_workers")]
    pub workers: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            realm: default_realm(),
            public_address: default_public_address(),
            drain_s: default_drain_s(),
            ring_timeout_s: default_ring_timeout_s(),
            emergency_numbers: default_emergency_numbers(),
            session_expires_s: default_session_expires_s(),
            min_se_s: default_min_se_s(),
            overload_queue_ms: default_overload_queue_ms(),
            overload_drop_ms: default_overload_drop_ms(),
            workers: default_workers(),
        }
    }
}

/// Transport of a `[[listen]]` entry (`udp` | `tcp` | `tls` | `ws` | `wss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenTransport {
    /// Datagrams.
    Udp,
    /// Streams with Content-Length framing.
    Tcp,
    /// TCP streams inside TLS 1.2/1.3 (RFC 3261 §26.2, RFC 5630).
    Tls,
    /// SIP over WebSocket (RFC 7118): clients upgrade with subprotocol `sip`.
    Ws,
    /// SIP over secure WebSocket: `ws` inside TLS (RFC 7118, `cert`/`key`
    /// as for `tls`).
    Wss,
}

impl ListenTransport {
    /// Whether the listener terminates TLS, so it needs `cert` and `key`.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenTransport::Tls | ListenTransport::Wss)
    }
}

impl fmt::Display for ListenTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListenTransport::Udp => "udp",
            ListenTransport::Tcp => "tcp",
            ListenTransport::Tls => "tls",
            ListenTransport::Ws => "ws",
            ListenTransport::Wss => "wss",
        })
    }
}

/// `[[listen]]`: one SIP socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub transport: ListenTransport,
    /// `IP:port` to bind.
    pub address: SocketAddr,
    /// TLS: PEM certificate chain, leaf first; re-read on SIGHUP.
    #[serde(default, deserialize_with = "optional_path")]
    pub cert: Option<PathBuf>,
    /// TLS: PEM private key of the leaf; re-read on SIGHUP.
    #[serde(default, deserialize_with = "optional_path")]
    pub key: Option<PathBuf>,
    /// TLS: ask clients for a certificate and refuse those that do not
    /// verify against `ca` (mutual TLS with carriers).
    #[serde(default)]
    pub verify_client: bool,
    /// TLS with `verify_client`: PEM trust roots for client certificates.
    #[serde(default, deserialize_with = "optional_path")]
    pub ca: Option<PathBuf>,
}

impl ListenConfig {
    /// A listener with no TLS settings.
    pub fn plain(transport: ListenTransport, address: SocketAddr) -> ListenConfig {
        ListenConfig {
            transport,
            address,
            cert: None,
            key: None,
            verify_client: false,
            ca: None,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `IP:port` of the control API.
    #[serde(default = "default_http_address")]
    pub address: SocketAddr,
    /// `[[http.api_key]]`: who may call the API.
    #[serde(default)]
    pub api_key: Vec<ApiKeyConfig>,
    /// Connections served at once; more are closed as they are accepted.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: u32,
    /// A connection with nothing read or written for this long is closed
    /// (slow or stalled clients, idle keep-alives).
    #[serde(default = "default_http_idle_timeout")]
    pub idle_timeout_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            address: default_http_address(),
            api_key: Vec::new(),
            max_connections: default_http_max_connections(),
            idle_timeout_s: default_http_idle_timeout(),
        }
    }
}

/// `[[http.api_key]]`: one API key (plain or as SHA-256 hex).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Label shown in logs.
    pub name: String,
    /// The key in clear.
    #[serde(default)]
    pub key: Option<String>,
    /// Hex SHA-256 of the key, so the file need not hold the secret.
    #[serde(default)]
    pub key_sha256: Option<String>,
    /// Allowed source addresses or networks; empty: any source.
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    /// A disabled key answers 401.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[capture]`: a HEPv3 copy of every SIP message sent and received, to
/// a Homer (or any HEP) collector. A change needs a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// `IP:port` of the collector (UDP); absent: no capture.
    #[serde(default)]
    pub hep: Option<SocketAddr>,
    /// The capture agent id in every packet (Homer's "capture id").
    #[serde(default = "default_capture_id")]
    pub capture_id: u32,
}

fn default_capture_id() -> u32 {
    2001
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            hep: None,
            capture_id: default_capture_id(),
        }
    }
}

/// `[log]`: how log lines are written to stderr (what is logged is
/// `RUST_LOG`'s filter, default `info`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`,
    /// `message` and the event's fields (`call_id`, `trunk`, …) beside them.
    Json,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file (relative to the working directory). With `url`, only
    /// its directory is used: the CDR spill file goes there.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// `postgres://…`: the store shared by the nodes of a fleet (trunks,
    /// DIDs, registrations, CDRs) instead of the SQLite file.
    #[serde(default)]
    pub url: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: default_store_path(),
            url: None,
        }
    }
}

/// `[rates]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesConfig {
    /// CSV `prefix,per_minute[,name]` (relative to the working directory).
    pub file: PathBuf,
}

/// `[[upstream]]`: a carrier or outbound proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name.
    pub name: String,
    /// `sip:host[:port][;transport=udp|tcp]`.
    pub uri: String,
    /// Lower is tried first.
    #[serde(default = "one_u32")]
    pub priority: u32,
    /// Share among equal priorities.
    #[serde(default = "one_u32")]
    pub weight: u32,
    /// OPTIONS health-check interval; 0 disables.
    #[serde(default = "default_ping_interval")]
    pub ping_interval_s: u32,
    /// Requests from its IP (any port) are inbound DID calls.
    #[serde(default)]
    pub trusted: bool,
    /// `sips:`/`transport=tls`: PEM trust roots for this upstream's
    /// certificate instead of the system's (a private carrier CA).
    #[serde(default, deserialize_with = "optional_path")]
    pub ca: Option<PathBuf>,
    /// Final responses that move a call to the next hop (timeouts and
    /// transport errors always do). Default `[408, "5xx"]`.
    #[serde(default = "super::dns::default_failover_codes")]
    pub failover_codes: Vec<super::dns::FailoverCode>,
    /// More source networks whose requests are this upstream's.
    #[serde(default)]
    pub trusted_cidrs: Vec<IpNet>,
    /// Account at this upstream: its `401`/`407` are answered with
    /// `username`/`password` (RFC 3261 §22.2); empty: never answered.
    #[serde(default)]
    pub username: String,
    /// Digest password of `username`.
    #[serde(default)]
    pub password: String,
    /// Digest username when it differs from `username` (empty: `username`).
    #[serde(default)]
    pub auth_username: String,
    /// Keep `username` registered at this upstream (RFC 3261 §10).
    #[serde(default)]
    pub register: bool,
    /// Expires asked for in our REGISTER.
    #[serde(default = "default_register_expires")]
    pub register_expires_s: u32,
    /// How numbers are written in calls sent to it.
    #[serde(default)]
    pub number_format: NumberFormat,
    /// `relay`: calls through this upstream are anchored by rtpengine.
    #[serde(default)]
    pub media: super::MediaMode,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: String::new(),
            uri: String::new(),
            priority: 1,
            weight: 1,
            ping_interval_s: default_ping_interval(),
            trusted: false,
            ca: None,
            username: String::new(),
            password: String::new(),
            auth_username: String::new(),
            register: false,
            register_expires_s: default_register_expires(),
            failover_codes: super::dns::default_failover_codes(),
            trusted_cidrs: Vec::new(),
            number_format: NumberFormat::Digits,
            media: super::MediaMode::Passthrough,
        }
    }
}

/// How an upstream wants numbers in Request-URI, To, From and
/// P-Asserted-Identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberFormat {
    /// E.164 digits without `+` (`12125551234`).
    #[default]
    Digits,
    /// E.164 with `+` (`+12125551234`, RFC 3966 §5.1.4 global number).
    Plus,
}

impl NumberFormat {
    /// `number` (digits) written in this format.
    pub fn write(self, number: &str) -> String {
        match self {
            NumberFormat::Digits => number.to_owned(),
            NumberFormat::Plus => format!("+{number}"),
        }
    }
}

/// `[[trunk]]`: a customer trunk (PBX or softphone account).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    /// Numeric id; omitted: one more than the largest id before it.
    #[serde(default)]
    pub id: Option<u64>,
    /// SIP login (digest username); omitted: generated from the id.
    #[serde(default)]
    pub name: Option<String>,
    /// Free text.
    #[serde(default)]
    pub label: String,
    /// Digest password; may be empty for IP-authenticated trunks.
    #[serde(default)]
    pub password: String,
    /// Caller ID put on calls when `passthrough` is false.
    #[serde(default)]
    pub callerid: String,
    /// Only `allowed_ips` may use the trunk.
    #[serde(default)]
    pub ip_restrict: bool,
    /// Addresses or networks for `ip_restrict`.
    #[serde(default)]
    pub allowed_ips: Vec<IpNet>,
    /// Non-empty IP: IP authentication, no digest.
    #[serde(default)]
    pub host_request: String,
    /// Put the DID in the To header of inbound B-legs.
    #[serde(default)]
    pub didinfo_enabled: bool,
    /// Enforce `call_limit`.
    #[serde(default)]
    pub call_restrict: bool,
    /// Maximum call duration in seconds.
    #[serde(default = "default_call_limit")]
    pub call_limit: u64,
    /// Enforce `max_call_cost`.
    #[serde(default)]
    pub cost_limit: bool,
    /// USD per call.
    #[serde(default)]
    pub max_call_cost: f64,
    /// Enforce `max_channels`.
    #[serde(default)]
    pub channels_restrict: bool,
    /// Concurrent outbound calls.
    #[serde(default)]
    pub max_channels: u32,
    /// Apply `rewrite_cond`/`rewrite_prefix`.
    #[serde(default)]
    pub rewrite_enabled: bool,
    /// Leading digits deleted from the dialled number.
    #[serde(default)]
    pub rewrite_cond: String,
    /// Digits then added in front.
    #[serde(default)]
    pub rewrite_prefix: String,
    /// Keep the caller's own number (alias `multiple_numbers`).
    #[serde(default, alias = "multiple_numbers")]
    pub passthrough: bool,
    /// `relay`: this trunk's calls are anchored by rtpengine (its phones
    /// may sit behind NAT).
    #[serde(default)]
    pub media: super::MediaMode,
}

impl TrunkConfig {
    /// The trunk id (resolved by loading; 0 only on an unvalidated value).
    pub fn id(&self) -> u64 {
        self.id.unwrap_or(0)
    }

    /// The SIP login (resolved by loading; empty only on an unvalidated value).
    pub fn login(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// `[[did]]`: an inbound number.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DidConfig {
    /// E.164 digits without `+`.
    pub number: String,
    /// Concurrent inbound calls; 0: no limit.
    #[serde(default)]
    pub channels: u32,
    /// Webhook for this DID's calls; empty: none.
    #[serde(default)]
    pub call_status_url: String,
    /// Where calls go, tried by priority.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

/// One DID destination.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// 1 = SIP URI, 4 = PSTN number (via upstreams), 5 = trunk by its login.
    pub transport: u8,
    /// The URI, number or trunk login.
    pub destination: String,
    /// Lower is tried first.
    #[serde(default = "one_u32")]
    pub priority: u32,
}

/// `[sync]` (SPEC §7).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Remote `/v1/trunks`-shaped endpoint.
    pub url: String,
    /// API key for it.
    #[serde(default)]
    pub appid: String,
    /// Pull interval.
    #[serde(default = "default_sync_interval")]
    pub interval_s: u64,
}

/// `[webhooks]` (SPEC §7).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Global call-status webhook; empty: none.
    #[serde(default)]
    pub call_status_url: String,
}

/// `[registrar]`: bounds on REGISTER (SPEC §5 "Registrar").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSettings {
    /// Shorter requested intervals get `423` with `Min-Expires` (seconds).
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// Longer requested intervals are cut to this (seconds).
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Interval when the REGISTER names none (seconds).
    #[serde(default = "default_max_expires")]
    pub default_expires: u32,
    /// Bindings per trunk; beyond it the oldest is evicted.
    #[serde(default = "default_max_contacts")]
    pub max_contacts: usize,
    /// Keep-alive toward registered contacts (seconds): OPTIONS over UDP,
    /// a CRLF ping over TCP; 0 disables.
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u32,
    /// Bindings written behind to the `[store]` and reloaded at start, so
    /// registrations survive a restart; false keeps them in memory only.
    #[serde(default = "default_persist")]
    pub persist: bool,
}

impl Default for RegistrarSettings {
    fn default() -> Self {
        RegistrarSettings {
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            default_expires: default_max_expires(),
            max_contacts: default_max_contacts(),
            keepalive_s: default_keepalive_s(),
            persist: default_persist(),
        }
    }
}

fn default_persist() -> bool {
    true
}

/// `[security]`: on by default, like the rest of the front door.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Wrong credentials from one source within `failure_window_s` that
    /// ban it; 0 disables banning.
    #[serde(default = "default_max_auth_failures")]
    pub max_auth_failures: u32,
    /// The counting window (seconds).
    #[serde(default = "default_failure_window_s")]
    pub failure_window_s: u64,
    /// First ban (seconds); each repeat doubles it, up to a day.
    #[serde(default = "default_ban_s")]
    pub ban_s: u64,
    /// Sources never banned (upstreams never are either).
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Requests whose User-Agent contains one of these (any case) are
    /// dropped unanswered: SIP scanners.
    #[serde(default = "default_user_agent_block")]
    pub user_agent_block: Vec<String>,
    /// New out-of-dialog requests per second from one source (token bucket,
    /// bursts of twice that); 0: no limit. Beyond it they get `503` +
    /// `Retry-After` (retransmissions are absorbed first and cost nothing).
    /// Only strangers are limited: not upstreams, `allow` sources, IP trunks,
    /// or sources that authenticated in the last hour.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: u32,
    /// Past this many live transactions new INVITEs get `503` +
    /// `Retry-After`, so calls in progress keep working (overload guard).
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            max_auth_failures: default_max_auth_failures(),
            failure_window_s: default_failure_window_s(),
            ban_s: default_ban_s(),
            allow: Vec::new(),
            user_agent_block: default_user_agent_block(),
            rate_limit: default_rate_limit(),
            max_transactions: default_max_transactions(),
        }
    }
}

fn default_rate_limit() -> u32 {
    200
}

fn default_max_transactions() -> usize {
    500_000
}

fn default_max_auth_failures() -> u32 {
    10
}

fn default_failure_window_s() -> u64 {
    60
}

fn default_ban_s() -> u64 {
    900
}

fn default_user_agent_block() -> Vec<String> {
    [
        "friendly-scanner",
        "sipvicious",
        "sipcli",
        "VaxSIPUserAgent",
        "sundayddr",
        "sip-scan",
        "iWar",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// An IP address or CIDR network (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length (32/128 for a single address).
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("`{s}`: prefix length must be 0..={max}")),
            },
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNet {
    /// A single address as `192.0.2.7`, a network as `10.0.0.0/8`: the
    /// spelling an operator would write.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let max = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == max {
            s.collect_str(&self.addr)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A file path where `""` means none (as the shipped examples write it).
fn optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(PathBuf::from))
}

fn default_listen() -> Vec<ListenConfig> {
    let address = SocketAddr::from(([127, 0, 0, 1], 5060));
    vec![
        ListenConfig::plain(ListenTransport::Udp, address),
        ListenConfig::plain(ListenTransport::Tcp, address),
    ]
}

fn default_realm() -> String {
    "sipfront.local".to_owned()
}
fn default_public_address() -> String {
    "127.0.0.1".to_owned()
}
fn default_session_expires_s() -> u64 {
    1800
}

fn default_min_se_s() -> u64 {
    90
}

/// Most core shards `[server] workers` accepts.
pub(crate) const MAX_WORKERS: u32 = 64;

/// One core shard per CPU the process may use (at most [`MAX_WORKERS`]).
fn default_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(MAX_WORKERS))
        .clamp(1, MAX_WORKERS)
}

/// Well under T1 (500 ms, RFC 3261 §17.1.1.2): the `503` reaches the
/// caller before its first INVITE retransmission, so refusing does not
/// itself add retransmissions to the queue.
fn default_overload_queue_ms() -> u64 {
    200
}

/// Past the caller's first two Timer A retransmissions (0.5 s and 1.5 s
/// after sending): a newer copy of the request is already queued behind it.
fn default_overload_drop_ms() -> u64 {
    2000
}

fn default_ring_timeout_s() -> u64 {
    30
}
/// North America, the EU and most of the world, the UK, US TTY/relay.
fn default_emergency_numbers() -> Vec<String> {
    ["911", "112", "999", "933"].map(str::to_owned).to_vec()
}

fn default_drain_s() -> u64 {
    30
}
fn default_http_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_http_max_connections() -> u32 {
    256
}
fn default_http_idle_timeout() -> u64 {
    30
}
fn default_store_path() -> PathBuf {
    PathBuf::from("data/sipfront.db")
}
fn default_ping_interval() -> u32 {
    30
}
fn default_register_expires() -> u32 {
    600
}
fn default_call_limit() -> u64 {
    3600
}
fn default_sync_interval() -> u64 {
    60
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_max_contacts() -> usize {
    10
}
fn default_keepalive_s() -> u32 {
    30
}
fn one_u32() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipnet_parse_and_contains() {
        let n: IpNet = "10.1.0.0/16".parse().unwrap_or(IpNet {
            addr: IpAddr::from([0, 0, 0, 0]),
            prefix: 32,
        });
        assert!(n.contains("10.1.2.3".parse().unwrap_or(n.addr)));
        assert!(!n.contains(IpAddr::from([10, 2, 0, 1])));
        assert!("1.2.3.4/33".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
        let all: IpNet = "0.0.0.0/0".parse().unwrap_or(n);
        assert!(all.contains(IpAddr::from([8, 8, 8, 8])));
        let v6: IpNet = "2001:db8::/32".parse().unwrap_or(n);
        assert!(v6.contains("2001:db8::1".parse().unwrap_or(n.addr)));
    }
}
