//! The fleet shell (README "Fleets", `[cluster]`): several sipfront nodes
//! on one Redis share channel counters per trunk and DID, and each node's
//! heartbeat (what `GET /v1/cluster` shows).
//!
//! The core never waits on Redis. A limited call takes its channel on
//! the node's own [`FleetCounters`] and asks the fleet through a
//! [`ChannelAsk`] output; the cluster task runs one Lua script in Redis
//! (sum the live nodes' counts of the key, add this node's call if that
//! stays within the limit, atomically) and hands the verdict back to the
//! shard, which then sends the B-leg INVITE or refuses the call. A call's
//! end is one write of the node's new count. So a call costs two Redis
//! round trips, and the limit is exact across nodes: Redis runs scripts
//! one at a time.
//!
//! Keys (Redis, prefix `sipfront:`):
//! - `ch:trunk:<id>`, `ch:did:<number>`: a hash, node name → that node's
//!   calls of the trunk or DID that went on;
//! - `alive:<node>`: set by each heartbeat with a TTL of `node_ttl_s`
//!   (default 30 s). A node whose key expired is dead: the script skips
//!   and removes its counts, so its channels are given back within
//!   `node_ttl_s` of its last heartbeat;
//! - `nodes`: a hash, node name → its last heartbeat (JSON: time, SIP
//!   address, calls, registrations, channels), kept after death for
//!   `/v1/cluster`;
//! - `locs`: a hash, `<node>|<login>` → when that node's last binding of
//!   the trunk login expires (Unix seconds), rewritten by each heartbeat.
//!
//! Each heartbeat also reads the other live nodes' SIP addresses and
//! registered logins into the core's [`FleetView`]: a DID call for a
//! trunk registered only on another node goes there (an ordinary B-leg
//! INVITE to that node's SIP address, the login as Request-URI user), and
//! that node, recognising the source as a live node's address, delivers
//! it to its own contacts of the login. A registration is thus reachable
//! from the other nodes within two heartbeats.
//!
//! When Redis does not answer within `timeout_ms`, the node logs it once,
//! counts it in `/metrics`, lets new calls go on with its local view
//! (its own calls plus the other nodes' last seen counts), and keeps
//! trying with each heartbeat; the first heartbeat that succeeds rewrites
//! the node's counts (every heartbeat does), so counters reconcile.

mod counters;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::b2bua::fleet::{ChannelAnswer, ChannelAsk, ChannelVerdict};
use crate::b2bua::ChannelKey;
use crate::config::{ClusterConfig, Config};
use crate::endpoint::{FleetView, SharedState};
use crate::transport::Shutdown;

pub use counters::FleetCounters;

/// Prefix of every key sipfront writes in Redis.
const PREFIX: &str = "sipfront:";
/// Asks queued for the cluster task; beyond it a call goes on unconfirmed.
const ASK_QUEUE: usize = 8192;

/// Sum the live nodes' counts of KEYS[1]; if this node's call fits under
/// the limit, count it. ARGV: node, limit, this node's calls that went
/// on, the `alive:` key prefix. Returns {granted (0/1), other nodes' count}.
const CHECK_AND_COUNT: &str = r"
local h = redis.call('HGETALL', KEYS[1])
local others = 0
for i = 1, #h, 2 do
  local n = h[i]
  if n ~= ARGV[1] then
    if redis.call('EXISTS', ARGV[4] .. n) == 1 then
      others = others + tonumber(h[i + 1])
    else
      redis.call('HDEL', KEYS[1], n)
    end
  end
end
local mine = tonumber(ARGV[3]) + 1
if others + mine > tonumber(ARGV[2]) then
  return {0, others}
end
redis.call('HSET', KEYS[1], ARGV[1], mine)
return {1, others}
";

/// This node's name in the fleet: `[cluster] node`, else the host name.
pub fn node_name(cfg: &Config) -> String {
    cfg.cluster.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| crate::config::check_node_name(h).is_ok())
            .unwrap_or_else(|| "sipfront".to_owned())
    })
}

/// The fleet's key for digest nonces (RFC 7616 §3.3; sipfront's nonces
/// are an HMAC under it, so any node holding it verifies them): the first
/// node to start stores `proposed` in Redis (`SET NX`), every node takes
/// what Redis holds. So a `401`/`407` from one node can be answered to
/// another (a load balancer need not be sticky). The nonce-count replay
/// check stays on the node that checks.
///
/// # Errors
/// Redis did not answer within five times `timeout_ms`, or holds no key
/// of the right shape.
pub async fn fleet_nonce_key(cfg: &ClusterConfig, proposed: [u8; 32]) -> Result<[u8; 32], String> {
    let url = cfg.redis.as_deref().unwrap_or_default();
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let hex: String = proposed.iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("{PREFIX}nonce_key");
    let wait = Duration::from_millis(cfg.timeout_ms.saturating_mul(5));
    let read = tokio::time::timeout(wait, async {
        let mut c = client.get_multiplexed_async_connection().await?;
        let (held,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&hex)
            .arg("NX")
            .ignore()
            .get(&key)
            .query_async(&mut c)
            .await?;
        Ok::<_, redis::RedisError>(held)
    })
    .await
    .map_err(|_| "no answer in time".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut out = [0u8; 32];
    if read.len() != 64 {
        return Err(format!("{key} is not 64 hex digits"));
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = read
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("{key} is not 64 hex digits"))?;
    }
    Ok(out)
}

/// Where a shard's verdicts go.
pub type ReplyTo = mpsc::Sender<ChannelAnswer>;

/// Counters of the cluster task, for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests sent to Redis (a pipeline counts once).
    pub round_trips: AtomicU64,
    /// Requests that failed or timed out.
    pub errors: AtomicU64,
    /// Asks answered granted, refused, unknown.
    pub granted: AtomicU64,
    /// Asks refused at the limit.
    pub refused: AtomicU64,
    /// Asks answered with no verdict (Redis down or the queue full).
    pub unknown: AtomicU64,
}

/// The node's handle on the fleet: the counters for the core, asks and
/// `/v1/cluster` views to the cluster task.
#[derive(Clone, Debug)]
pub struct Cluster {
    node: Arc<str>,
    counters: Arc<FleetCounters>,
    asks: mpsc::Sender<(ChannelAsk, ReplyTo)>,
    views: mpsc::Sender<oneshot::Sender<ClusterView>>,
    stats: Arc<ClusterStats>,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    /// Whether that node reaches Redis now (false: it serves on its local
    /// view, and `nodes` lists only itself).
    pub redis_up: bool,
    /// Every node that ever sent a heartbeat, by name.
    pub nodes: Vec<NodeView>,
}

/// One node as its last heartbeat described it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    /// `[cluster] node`.
    pub node: String,
    /// Its heartbeat is younger than `node_ttl_s`: its channels count.
    pub alive: bool,
    /// When it last sent one (UTC, `YYYY-MM-DD HH:MM:SS` as CDR dates).
    pub last_heartbeat: String,
    /// The same, Unix seconds.
    pub last_heartbeat_unix: u64,
    /// When its process started, Unix seconds.
    pub started_unix: u64,
    /// Where other nodes relay calls to phones registered there (SIP over
    /// UDP, `ip:port`; empty: none).
    pub sip: String,
    /// Calls holding a channel there.
    pub calls: u64,
    /// Registered contacts (bindings) it holds.
    pub registrations: u64,
    /// Its calls that went on, by `trunk:<id>` / `did:<number>`.
    pub channels: HashMap<String, u32>,
}

/// The Redis key of `key`'s counts.
fn channel_key(key: &ChannelKey) -> String {
    match key {
        ChannelKey::Trunk(id) => format!("{PREFIX}ch:trunk:{id}"),
        ChannelKey::Did(n) => format!("{PREFIX}ch:did:{n}"),
    }
}

/// `key` as `/v1/cluster` names it.
fn channel_label(key: &ChannelKey) -> String {
    match key {
        ChannelKey::Trunk(id) => format!("trunk:{id}"),
        ChannelKey::Did(n) => format!("did:{n}"),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Cluster {
    /// Starts the cluster task for `cfg` (its `[cluster] redis` is set):
    /// returns the handle; the core counts channels in
    /// [`counters`](Self::counters). Redis need not be up: the task keeps
    /// trying with each heartbeat.
    ///
    /// # Errors
    /// The URL is not one the Redis client accepts.
    pub fn start(
        cfg: &ClusterConfig,
        node: String,
        sip: Option<std::net::SocketAddr>,
        shared: Arc<std::sync::OnceLock<Arc<SharedState>>>,
        shutdown: Shutdown,
    ) -> Result<Cluster, String> {
        let url = cfg.redis.as_deref().unwrap_or_default();
        let client =
            redis::Client::open(url).map_err(|e| format!("[cluster] redis = \"{url}\": {e}"))?;
        let counters = Arc::new(FleetCounters::new());
        let stats = Arc::new(ClusterStats::default());
        let (asks, asks_rx) = mpsc::channel(ASK_QUEUE);
        let (views, views_rx) = mpsc::channel(16);
        let node: Arc<str> = Arc::from(node);
        let task = Task {
            client,
            conn: None,
            cleaned: false,
            node: Arc::clone(&node),
            cfg: cfg.clone(),
            counters: Arc::clone(&counters),
            stats: Arc::clone(&stats),
            shared,
            started: unix_now(),
            script: redis::Script::new(CHECK_AND_COUNT),
            logged: None,
            sip,
            written_logins: std::collections::HashSet::new(),
        };
        tokio::spawn(task.run(asks_rx, views_rx, shutdown));
        Ok(Cluster {
            node,
            counters,
            asks,
            views,
            stats,
        })
    }

    /// The counters the core shards admit calls against.
    pub fn counters(&self) -> Arc<FleetCounters> {
        Arc::clone(&self.counters)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Asks the fleet about `ask`; the verdict goes to `reply`. Never
    /// waits: with Redis down or the queue full the verdict is `Unknown`
    /// at once.
    pub fn ask(&self, ask: ChannelAsk, reply: &ReplyTo) {
        if !self.counters.redis_up() {
            return self.unknown(ask, reply);
        }
        if let Err(e) = self.asks.try_send((ask, reply.clone())) {
            let (ask, reply) = match e {
                mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => v,
            };
            self.unknown(ask, &reply);
        }
    }

    fn unknown(&self, ask: ChannelAsk, reply: &ReplyTo) {
        self.stats.unknown.fetch_add(1, Ordering::Relaxed);
        // A full reply queue: the core's own deadline lets the call go on.
        let _ = reply.try_send(ChannelAnswer {
            id: ask.id,
            key: ask.key,
            verdict: ChannelVerdict::Unknown,
        });
    }

    /// The fleet as Redis knows it (only this node while Redis is down).
    pub async fn view(&self) -> ClusterView {
        let (tx, rx) = oneshot::channel();
        if self.views.send(tx).await.is_ok() {
            if let Ok(v) = rx.await {
                return v;
            }
        }
        ClusterView {
            node: self.node.to_string(),
            redis_up: false,
            nodes: Vec::new(),
        }
    }

    /// Appends the cluster's counters to `/metrics`.
    pub fn write_metrics(&self, m: &mut String) {
        use crate::endpoint::metric;
        let s = &self.stats;
        metric(
            m,
            "sipfront_cluster_redis_up",
            "gauge",
            "1 while Redis answers; 0: new calls are counted on this node's view.",
            u8::from(self.counters.redis_up()),
        );
        metric(
            m,
            "sipfront_cluster_redis_round_trips_total",
            "counter",
            "Requests sent to Redis (a pipeline counts once).",
            s.round_trips.load(Ordering::Relaxed),
        );
        metric(
            m,
            "sipfront_cluster_redis_errors_total",
            "counter",
            "Redis requests that failed or timed out.",
            s.errors.load(Ordering::Relaxed),
        );
        metric(
            m,
            "sipfront_cluster_channel_asks_granted_total",
            "counter",
            "Channel asks the fleet-wide count granted.",
            s.granted.load(Ordering::Relaxed),
        );
        metric(
            m,
            "sipfront_cluster_channel_asks_refused_total",
            "counter",
            "Channel asks the fleet-wide count refused (limit reached).",
            s.refused.load(Ordering::Relaxed),
        );
        metric(
            m,
            "sipfront_cluster_channel_asks_unknown_total",
            "counter",
            "Channel asks answered without Redis (down, or too many queued).",
            s.unknown.load(Ordering::Relaxed),
        );
        metric(
            m,
            "sipfront_cluster_writes_unsent_total",
            "counter",
            "Count writes not sent (healed by the next heartbeat).",
            self.counters.unsent.load(Ordering::Relaxed),
        );
    }
}

/// The cluster task: the only user of the Redis connection, one request
/// at a time (so this node's writes reach Redis in order).
struct Task {
    client: redis::Client,
    conn: Option<ConnectionManager>,
    /// This process removed its name's counts left by an earlier run.
    cleaned: bool,
    node: Arc<str>,
    cfg: ClusterConfig,
    counters: Arc<FleetCounters>,
    stats: Arc<ClusterStats>,
    /// The node's shared state (registrations), once the shards exist.
    shared: Arc<std::sync::OnceLock<Arc<SharedState>>>,
    started: u64,
    script: redis::Script,
    /// Whether Redis answered the last request, as logged (None: not
    /// asked yet).
    logged: Option<bool>,
    /// This node's SIP address for calls relayed from other nodes.
    sip: Option<std::net::SocketAddr>,
    /// Logins this node last wrote to `locs` (to remove the gone ones).
    written_logins: std::collections::HashSet<String>,
}

/// Why a Redis request gave nothing.
#[derive(Debug)]
enum Failed {
    Redis(redis::RedisError),
    Timeout,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Redis(e) => write!(f, "{e}"),
            Failed::Timeout => f.write_str("no answer in time"),
        }
    }
}

impl Task {
    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    fn alive_key(&self) -> String {
        format!("{PREFIX}alive:{}", self.node)
    }

    async fn run(
        mut self,
        mut asks: mpsc::Receiver<(ChannelAsk, ReplyTo)>,
        mut views: mpsc::Receiver<oneshot::Sender<ClusterView>>,
        mut shutdown: Shutdown,
    ) {
        let mut beat = tokio::time::interval(Duration::from_secs(self.cfg.heartbeat_s));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let counters = Arc::clone(&self.counters);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                _ = beat.tick() => self.heartbeat().await,
                Some((ask, reply)) = asks.recv() => {
                    let answer = self.check(ask).await;
                    // A full reply queue: the core's deadline decides.
                    let _ = reply.try_send(answer);
                }
                _ = counters.wake.notified() => self.flush().await,
                Some(tx) = views.recv() => {
                    let _ = tx.send(self.view().await);
                }
            }
        }
        self.goodbye().await;
    }

    /// The connection, made on first use (and after a failed start).
    async fn conn(&mut self) -> Result<ConnectionManager, Failed> {
        if let Some(c) = &self.conn {
            return Ok(c.clone());
        }
        let t = self.timeout();
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t))
            .set_number_of_retries(1);
        let made = tokio::time::timeout(
            t * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await;
        let conn = match made {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Failed::Redis(e)),
            Err(_) => return Err(Failed::Timeout),
        };
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one request with the deadline; counts it and tracks Redis's
    /// state (logged once per change).
    async fn request<T, F>(
        &mut self,
        what: &str,
        f: impl FnOnce(ConnectionManager) -> F,
    ) -> Option<T>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        let outcome = match self.conn().await {
            Ok(c) => match tokio::time::timeout(self.timeout(), f(c)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(Failed::Redis(e)),
                Err(_) => Err(Failed::Timeout),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(v) => {
                self.counters.set_up(true);
                if self.logged != Some(true) {
                    tracing::info!(
                        node = %self.node,
                        "Redis answers: channel limits are counted across the fleet"
                    );
                    self.logged = Some(true);
                }
                Some(v)
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.counters.set_up(false);
                if self.logged != Some(false) {
                    self.logged = Some(false);
                    tracing::error!(
                        node = %self.node,
                        "Redis unreachable ({what}: {e}): new calls are counted on this node's \
                         view (its calls and the other nodes' last seen counts) until it \
                         answers again; retrying every heartbeat"
                    );
                }
                None
            }
        }
    }

    /// The fleet's verdict on one ask.
    async fn check(&mut self, ask: ChannelAsk) -> ChannelAnswer {
        let verdict = if self.counters.redis_up() {
            let script = self.script.clone();
            let (key, node, limit) = (channel_key(&ask.key), self.node.to_string(), ask.limit);
            let mine = self.counters.gone_on(&ask.key);
            let got: Option<(u8, u32)> = self
                .request("channel count", |mut c| async move {
                    script
                        .key(key)
                        .arg(node)
                        .arg(limit)
                        .arg(mine)
                        .arg(format!("{PREFIX}alive:"))
                        .invoke_async(&mut c)
                        .await
                })
                .await;
            match got {
                Some((1, others)) => {
                    self.counters.granted(&ask.key, others);
                    self.stats.granted.fetch_add(1, Ordering::Relaxed);
                    ChannelVerdict::Granted
                }
                Some((_, others)) => {
                    self.counters.saw_others(&ask.key, others);
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let mine = self.counters.gone_on(&ask.key);
                    ChannelVerdict::Refused {
                        active: others.saturating_add(mine),
                    }
                }
                None => {
                    self.stats.unknown.fetch_add(1, Ordering::Relaxed);
                    ChannelVerdict::Unknown
                }
            }
        } else {
            self.stats.unknown.fetch_add(1, Ordering::Relaxed);
            ChannelVerdict::Unknown
        };
        ChannelAnswer {
            id: ask.id,
            key: ask.key,
            verdict,
        }
    }

    /// Adds the writes of this node's counts of `keys` to `pipe`.
    fn count_writes(&self, pipe: &mut redis::Pipeline, keys: &[ChannelKey]) {
        for key in keys {
            let n = self.counters.gone_on(key);
            if n > 0 {
                pipe.hset(channel_key(key), &*self.node, n).ignore();
            } else {
                pipe.hdel(channel_key(key), &*self.node).ignore();
            }
        }
    }

    /// Writes the counts that changed (while Redis is down they wait for
    /// the next heartbeat, which writes every count).
    async fn flush(&mut self) {
        if !self.counters.redis_up() {
            return;
        }
        let keys: Vec<ChannelKey> = self.counters.take_dirty().into_iter().collect();
        if keys.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        self.count_writes(&mut pipe, &keys);
        let done: Option<()> = self
            .request("count write", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await;
        self.after_write(keys, done.is_some());
    }

    fn after_write(&self, keys: Vec<ChannelKey>, ok: bool) {
        if ok {
            for k in &keys {
                self.counters.forget_if_zero(k);
            }
        } else {
            self.counters.redirty(keys);
        }
    }

    /// This node's heartbeat: alive (with the TTL), its description, and
    /// every count it holds (so Redis matches the node after an outage).
    async fn heartbeat(&mut self) {
        if !self.cleaned && self.clean_old_counts().await {
            self.cleaned = true;
        }
        let counts = self.counters.gone_on_all();
        let (registrations, now) = (self.registrations(), unix_now());
        let me = NodeView {
            node: self.node.to_string(),
            alive: true,
            last_heartbeat: crate::b2bua::record::format_date(now.saturating_mul(1000)),
            last_heartbeat_unix: now,
            started_unix: self.started,
            sip: self.sip.map(|a| a.to_string()).unwrap_or_default(),
            calls: self.counters.calls(),
            registrations,
            channels: counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (channel_label(k), *n))
                .collect(),
        };
        let json = serde_json::to_string(&me).unwrap_or_default();
        let keys: Vec<ChannelKey> = counts.into_iter().map(|(k, _)| k).collect();
        // Dirty keys are written here too.
        let dirty = self.counters.take_dirty();
        let keys: Vec<ChannelKey> = keys
            .into_iter()
            .chain(dirty)
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .collect();
        let mut pipe = redis::pipe();
        pipe.set_ex(self.alive_key(), now, self.cfg.node_ttl_s)
            .ignore()
            .hset(format!("{PREFIX}nodes"), &*self.node, json)
            .ignore();
        self.count_writes(&mut pipe, &keys);
        let logins = self.local_logins(now);
        let locs = format!("{PREFIX}locs");
        for (login, expires) in &logins {
            pipe.hset(&locs, format!("{}|{login}", self.node), expires)
                .ignore();
        }
        for gone in self
            .written_logins
            .iter()
            .filter(|l| !logins.contains_key(*l))
        {
            pipe.hdel(&locs, format!("{}|{gone}", self.node)).ignore();
        }
        let done: Option<()> = self
            .request("heartbeat", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await;
        if done.is_some() {
            self.written_logins = logins.into_keys().collect();
        }
        self.after_write(keys, done.is_some());
        if done.is_some() {
            self.read_fleet(now).await;
        }
    }

    /// This node's registered logins, each with its last binding's expiry
    /// (Unix seconds).
    fn local_logins(&self, now_unix: u64) -> HashMap<String, u64> {
        let mut out: HashMap<String, u64> = HashMap::new();
        let Some(shared) = self.shared.get() else {
            return out;
        };
        let now = tokio::time::Instant::now().into_std();
        let registrar = shared.registrar();
        for (login, b) in registrar.store().iter(now) {
            let at = now_unix.saturating_add(b.expires_in(now));
            let e = out.entry(login.to_owned()).or_insert(0);
            *e = (*e).max(at);
        }
        out
    }

    /// The other live nodes' SIP addresses and registered logins, into
    /// the core's view.
    async fn read_fleet(&mut self, now: u64) {
        let read: Option<(HashMap<String, String>, HashMap<String, u64>)> = self
            .request("fleet read", |mut c| async move {
                redis::pipe()
                    .hgetall(format!("{PREFIX}nodes"))
                    .hgetall(format!("{PREFIX}locs"))
                    .query_async(&mut c)
                    .await
            })
            .await;
        let Some((nodes, locs)) = read else { return };
        let names: Vec<String> = nodes
            .keys()
            .filter(|n| **n != *self.node)
            .cloned()
            .collect();
        let alive: Option<Vec<bool>> = if names.is_empty() {
            Some(Vec::new())
        } else {
            let mut pipe = redis::pipe();
            for n in &names {
                pipe.exists(format!("{PREFIX}alive:{n}"));
            }
            self.request("fleet read", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await
        };
        let Some(alive) = alive else { return };
        let peers: HashMap<&str, std::net::SocketAddr> = names
            .iter()
            .zip(alive)
            .filter(|(_, live)| *live)
            .filter_map(|(n, _)| {
                let v: NodeView = serde_json::from_str(nodes.get(n)?).ok()?;
                Some((n.as_str(), v.sip.parse().ok()?))
            })
            .collect();
        let mut view = FleetView {
            peers: peers.values().copied().collect(),
            registered: HashMap::new(),
        };
        let mut stale = Vec::new();
        for (field, expires) in locs {
            let Some((node, login)) = field.split_once('|') else {
                continue;
            };
            if expires <= now {
                stale.push(field.clone());
            } else if let Some(addr) = peers.get(node) {
                view.registered
                    .entry(login.to_owned())
                    .or_default()
                    .push(*addr);
            }
        }
        if let Some(shared) = self.shared.get() {
            shared.set_fleet(view);
        }
        if !stale.is_empty() {
            let locs = format!("{PREFIX}locs");
            let _: Option<()> = self
                .request("fleet read", |mut c| async move {
                    redis::AsyncCommands::hdel(&mut c, locs, stale).await
                })
                .await;
        }
    }

    /// Removes counts this node's name left in Redis from an earlier run
    /// (a restart within `node_ttl_s` would otherwise count them as live).
    async fn clean_old_counts(&mut self) -> bool {
        let node = self.node.to_string();
        let pattern = format!("{PREFIX}ch:*");
        let keys: Option<Vec<String>> = self
            .request("start-up clean", |mut c| async move {
                let mut keys = Vec::new();
                let mut iter: redis::AsyncIter<String> =
                    redis::AsyncCommands::scan_match(&mut c, &pattern).await?;
                while let Some(k) = iter.next_item().await {
                    keys.push(k?);
                }
                Ok(keys)
            })
            .await;
        let Some(keys) = keys else { return false };
        let locs = format!("{PREFIX}locs");
        let fields: Option<Vec<String>> = self
            .request("start-up clean", |mut c| {
                let locs = locs.clone();
                async move { redis::AsyncCommands::hkeys(&mut c, locs).await }
            })
            .await;
        let Some(fields) = fields else { return false };
        let mine = format!("{node}|");
        if keys.is_empty() && !fields.iter().any(|f| f.starts_with(&mine)) {
            return true;
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.hdel(k, &node).ignore();
        }
        for f in fields.iter().filter(|f| f.starts_with(&mine)) {
            pipe.hdel(&locs, f).ignore();
        }
        let done: Option<()> = self
            .request("start-up clean", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await;
        done.is_some()
    }

    fn registrations(&self) -> u64 {
        self.shared
            .get()
            .map_or(0, |s| s.registrar().store().len() as u64)
    }

    /// Every node's last heartbeat, and whether it is alive.
    async fn view(&mut self) -> ClusterView {
        let node = self.node.to_string();
        let read: Option<(HashMap<String, String>, Vec<String>)> = self
            .request("cluster view", |mut c| async move {
                let nodes: HashMap<String, String> =
                    redis::AsyncCommands::hgetall(&mut c, format!("{PREFIX}nodes")).await?;
                let mut alive = Vec::new();
                for name in nodes.keys() {
                    let live: bool =
                        redis::AsyncCommands::exists(&mut c, format!("{PREFIX}alive:{name}"))
                            .await?;
                    if live {
                        alive.push(name.clone());
                    }
                }
                Ok((nodes, alive))
            })
            .await;
        let Some((nodes, alive)) = read else {
            return ClusterView {
                node: node.clone(),
                redis_up: false,
                nodes: vec![NodeView {
                    node,
                    alive: true,
                    started_unix: self.started,
                    calls: self.counters.calls(),
                    registrations: self.registrations(),
                    ..NodeView::default()
                }],
            };
        };
        let mut out: Vec<NodeView> = nodes
            .into_iter()
            .map(|(name, json)| {
                let mut v: NodeView = serde_json::from_str(&json).unwrap_or_default();
                v.alive = alive.contains(&name);
                v.node = name;
                v
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        ClusterView {
            node,
            redis_up: true,
            nodes: out,
        }
    }

    /// At stop: this node is dead at once for the others (its calls were
    /// ended).
    async fn goodbye(&mut self) {
        if !self.counters.redis_up() {
            return;
        }
        let key = self.alive_key();
        let _: Option<()> = self
            .request("stop", |mut c| async move {
                redis::AsyncCommands::del(&mut c, key).await
            })
            .await;
    }
}
