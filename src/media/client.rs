//! The ng client task: one UDP socket to every `[media] rtpengine`,
//! requests in from the core shards, answers back to the shard that asked.
//!
//! Each request gets a cookie and waits `timeout_ms` for its reply; it is
//! sent again (same cookie: rtpengine answers a repeated cookie from its
//! cache without doing the work twice) up to `tries` times. A new
//! session's offer then moves on to the next rtpengine (healthy ones
//! first, in config order); a later request of a session goes only to the
//! rtpengine that holds it. `ping` checks each rtpengine every
//! `ping_interval_s`; one that misses a ping or a request is tried last
//! until it answers a ping again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::ng::{self, Request};
use crate::b2bua::media::{MediaAnswer, MediaCommand, MediaError, MediaRequest, MediaResult};
use crate::config::MediaConfig;

/// Requests queued for the client task before new ones fail at once.
const QUEUE: usize = 4096;

/// Largest ng reply read (an SDP with many codecs fits many times over).
const MAX_REPLY: usize = 65_535;

/// Requests in flight before new ones fail at once (bounded memory).
const MAX_PENDING: usize = 65_536;

/// Where a shard wants its answers: each shard passes its own sender, so
/// an answer always reaches the shard that asked.
pub type ReplyTo = mpsc::Sender<MediaResult>;

struct Job {
    req: MediaRequest,
    reply: ReplyTo,
}

/// Handle of the client task (cheap to clone: one per shard).
#[derive(Clone)]
pub struct MediaClient {
    jobs: mpsc::Sender<Job>,
    stats: Arc<MediaStats>,
}

impl std::fmt::Debug for MediaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaClient").finish_non_exhaustive()
    }
}

impl MediaClient {
    /// Binds the client socket and starts the task. It ends when every
    /// handle is dropped and its requests in flight are done.
    ///
    /// # Errors
    /// The socket cannot be bound.
    pub async fn start(
        cfg: &MediaConfig,
    ) -> std::io::Result<(MediaClient, tokio::task::JoinHandle<()>)> {
        let v6 = cfg.rtpengine.first().is_some_and(SocketAddr::is_ipv6);
        let bind: SocketAddr = if v6 {
            "[::]:0".parse().map_err(std::io::Error::other)?
        } else {
            "0.0.0.0:0".parse().map_err(std::io::Error::other)?
        };
        let sock = UdpSocket::bind(bind).await?;
        let stats = Arc::new(MediaStats::new(&cfg.rtpengine));
        let (jobs, rx) = mpsc::channel(QUEUE);
        let task = Task {
            sock,
            engines: cfg.rtpengine.clone(),
            timeout: Duration::from_millis(cfg.timeout_ms.max(1)),
            tries: cfg.tries.max(1),
            ping_every: (cfg.ping_interval_s > 0).then(|| Duration::from_secs(cfg.ping_interval_s)),
            stats: stats.clone(),
            pending: HashMap::new(),
            heap: BinaryHeap::new(),
            sticky: HashMap::new(),
            next_cookie: 0,
            prefix: format!("{:x}", rand::random::<u32>()),
        };
        let handle = tokio::spawn(task.run(rx));
        Ok((MediaClient { jobs, stats }, handle))
    }

    /// Hands `req` to the task; its [`MediaResult`] goes to `reply`. A full
    /// queue answers a failure at once (the call gets `503`).
    pub fn request(&self, req: MediaRequest, reply: &ReplyTo) {
        let id = req.id;
        if let Err(e) = self.jobs.try_send(Job {
            req,
            reply: reply.clone(),
        }) {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "media request queue full",
                mpsc::error::TrySendError::Closed(_) => "media client stopped",
            };
            let _ = reply.try_send(MediaResult {
                id,
                outcome: Err(MediaError::Unreachable(why.into())),
            });
        }
    }

    /// Its counters, for `/metrics`.
    pub fn stats(&self) -> &Arc<MediaStats> {
        &self.stats
    }
}

/// The client's counters (`/metrics`).
#[derive(Debug)]
pub struct MediaStats {
    engines: Vec<(SocketAddr, AtomicBool)>,
    requests: [AtomicU64; 3],
    failures: AtomicU64,
    retransmits: AtomicU64,
    pings_failed: AtomicU64,
    /// Answered requests by latency bucket (upper bounds in `BUCKETS_MS`).
    latency: [AtomicU64; BUCKETS_MS.len()],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

/// Latency histogram bucket bounds, milliseconds.
const BUCKETS_MS: [u64; 10] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000];

fn command_index(c: MediaCommand) -> usize {
    match c {
        MediaCommand::Offer => 0,
        MediaCommand::Answer => 1,
        MediaCommand::Delete => 2,
    }
}

impl MediaStats {
    fn new(engines: &[SocketAddr]) -> MediaStats {
        MediaStats {
            // Healthy until a ping or a request says otherwise.
            engines: engines
                .iter()
                .map(|&a| (a, AtomicBool::new(true)))
                .collect(),
            requests: Default::default(),
            failures: AtomicU64::new(0),
            retransmits: AtomicU64::new(0),
            pings_failed: AtomicU64::new(0),
            latency: Default::default(),
            latency_sum_us: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
        }
    }

    fn healthy(&self, i: usize) -> bool {
        self.engines
            .get(i)
            .is_some_and(|(_, h)| h.load(Ordering::Relaxed))
    }

    fn set_health(&self, i: usize, up: bool) {
        if let Some((addr, h)) = self.engines.get(i) {
            if h.swap(up, Ordering::Relaxed) != up {
                if up {
                    tracing::info!(rtpengine = %addr, "rtpengine answers again");
                } else {
                    tracing::warn!(rtpengine = %addr, "rtpengine does not answer: tried last for new calls");
                }
            }
        }
    }

    fn observe(&self, took: Duration) {
        let ms = took.as_millis();
        for (b, n) in BUCKETS_MS.iter().zip(&self.latency) {
            if ms <= u128::from(*b) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the ng metrics in Prometheus text format.
    pub fn write_metrics(&self, m: &mut String) {
        use crate::endpoint::{family, metric};
        use std::fmt::Write;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            m,
            "sipfront_rtpengine_requests_total",
            "counter",
            "ng requests sent to rtpengine (retransmissions not counted), by command.",
        );
        for c in [
            MediaCommand::Offer,
            MediaCommand::Answer,
            MediaCommand::Delete,
        ] {
            let n = get(&self.requests[command_index(c)]);
            let _ = writeln!(
                m,
                "sipfront_rtpengine_requests_total{{command=\"{}\"}} {n}",
                c.as_str()
            );
        }
        metric(
            m,
            "sipfront_rtpengine_failures_total",
            "counter",
            "ng requests that failed: no rtpengine answered, or it answered an error.",
            get(&self.failures),
        );
        metric(
            m,
            "sipfront_rtpengine_retransmissions_total",
            "counter",
            "ng requests sent again after timeout_ms without a reply.",
            get(&self.retransmits),
        );
        metric(
            m,
            "sipfront_rtpengine_pings_failed_total",
            "counter",
            "ng pings without a reply.",
            get(&self.pings_failed),
        );
        family(
            m,
            "sipfront_rtpengine_up",
            "gauge",
            "1 when the rtpengine answered its last ping or request.",
        );
        for (addr, up) in &self.engines {
            let _ = writeln!(
                m,
                "sipfront_rtpengine_up{{rtpengine=\"{addr}\"}} {}",
                u8::from(up.load(Ordering::Relaxed))
            );
        }
        family(
            m,
            "sipfront_rtpengine_latency_seconds",
            "histogram",
            "Time from an ng request to its answer.",
        );
        for (b, n) in BUCKETS_MS.iter().zip(&self.latency) {
            let le = *b as f64 / 1000.0;
            let _ = writeln!(
                m,
                "sipfront_rtpengine_latency_seconds_bucket{{le=\"{le}\"}} {}",
                get(n)
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            m,
            "sipfront_rtpengine_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = get(&self.latency_sum_us) as f64 / 1e6;
        let _ = writeln!(m, "sipfront_rtpengine_latency_seconds_sum {sum}");
        let _ = writeln!(m, "sipfront_rtpengine_latency_seconds_count {count}");
    }
}

/// What a cookie in flight is.
enum Kind {
    Media {
        req: MediaRequest,
        reply: ReplyTo,
        /// Engines to try, in order, and where we are.
        order: Vec<usize>,
        pos: usize,
    },
    Ping(usize),
}

struct Pending {
    kind: Kind,
    bytes: Vec<u8>,
    /// The engine it was last sent to.
    engine: usize,
    tries_left: u32,
    deadline: Instant,
    started: Instant,
}

struct Task {
    sock: UdpSocket,
    engines: Vec<SocketAddr>,
    timeout: Duration,
    tries: u32,
    ping_every: Option<Duration>,
    stats: Arc<MediaStats>,
    pending: HashMap<String, Pending>,
    heap: BinaryHeap<Reverse<(Instant, String)>>,
    /// Which rtpengine holds each call's session.
    sticky: HashMap<String, usize>,
    next_cookie: u64,
    prefix: String,
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut buf = vec![0u8; MAX_REPLY];
        let far = Instant::now() + Duration::from_secs(86_400);
        let mut next_ping = self.ping_every.map(|_| Instant::now());
        let mut open = true;
        while open || !self.pending.is_empty() {
            let deadline = self
                .heap
                .peek()
                .map(|Reverse((at, _))| *at)
                .into_iter()
                .chain(next_ping)
                .min()
                .unwrap_or(far);
            tokio::select! {
                biased;
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.on_datagram(buf.get(..n).unwrap_or_default(), from),
                    Err(e) => {
                        // ICMP port unreachable on Linux: the timeout handles it.
                        tracing::debug!("rtpengine socket: {e}");
                    }
                },
                job = jobs.recv(), if open => match job {
                    Some(job) => self.start(job),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if next_ping.is_some_and(|p| p <= now) {
                        next_ping = self.ping_every.map(|d| now + d);
                        if open {
                            self.ping_all(now);
                        }
                    }
                    self.expire(now);
                }
            }
        }
        tracing::debug!("rtpengine client stopped");
    }

    fn cookie(&mut self) -> String {
        self.next_cookie += 1;
        format!("{}_{}", self.prefix, self.next_cookie)
    }

    fn start(&mut self, job: Job) {
        let Job { req, reply } = job;
        self.stats.requests[command_index(req.command)].fetch_add(1, Ordering::Relaxed);
        let fail = |stats: &MediaStats, e: MediaError| {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            let _ = reply.try_send(MediaResult {
                id: req.id,
                outcome: Err(e),
            });
        };
        if self.engines.is_empty() {
            return fail(&self.stats, MediaError::NotConfigured);
        }
        if self.pending.len() >= MAX_PENDING {
            return fail(
                &self.stats,
                MediaError::Unreachable("too many ng requests in flight".into()),
            );
        }
        let order = match self.sticky.get(&req.call_id) {
            Some(&i) if !req.new_session => vec![i],
            _ => {
                let (mut up, down): (Vec<usize>, Vec<usize>) =
                    (0..self.engines.len()).partition(|&i| self.stats.healthy(i));
                up.extend(down);
                up
            }
        };
        let Some(&engine) = order.first() else {
            return fail(&self.stats, MediaError::NotConfigured);
        };
        let r = Request::media(
            req.command,
            &req.call_id,
            &req.from_tag,
            req.to_tag.as_deref(),
            &req.sdp,
            req.nat_source,
        );
        let cookie = self.cookie();
        let bytes = match r.encode(&cookie) {
            Ok(b) => b,
            Err(e) => return fail(&self.stats, MediaError::Refused(e.to_string())),
        };
        let now = Instant::now();
        self.send(
            cookie,
            Pending {
                kind: Kind::Media {
                    req,
                    reply,
                    order,
                    pos: 0,
                },
                bytes,
                engine,
                tries_left: self.tries,
                deadline: now,
                started: now,
            },
            now,
        );
    }

    fn ping_all(&mut self, now: Instant) {
        for i in 0..self.engines.len() {
            let cookie = self.cookie();
            let Ok(bytes) = Request::bare("ping").encode(&cookie) else {
                continue;
            };
            self.send(
                cookie,
                Pending {
                    kind: Kind::Ping(i),
                    bytes,
                    engine: i,
                    tries_left: 1,
                    deadline: now,
                    started: now,
                },
                now,
            );
        }
    }

    /// Sends (or sends again) `p` to its engine and arms its timeout.
    fn send(&mut self, cookie: String, mut p: Pending, now: Instant) {
        if let Some(&addr) = self.engines.get(p.engine) {
            // UDP: a full buffer or an unreachable port shows as a timeout.
            let _ = self.sock.try_send_to(&p.bytes, addr);
        }
        p.deadline = now + self.timeout;
        self.heap.push(Reverse((p.deadline, cookie.clone())));
        self.pending.insert(cookie, p);
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        let (cookie, reply) = match ng::decode(bytes) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(%from, "rtpengine reply dropped: {e}");
                return;
            }
        };
        // Only the rtpengine the request went to may answer it.
        let ours = self
            .pending
            .get(cookie)
            .is_some_and(|p| self.engines.get(p.engine) == Some(&from));
        if !ours {
            return;
        }
        let Some(p) = self.pending.remove(cookie) else {
            return;
        };
        let now = Instant::now();
        match p.kind {
            Kind::Ping(i) => self.stats.set_health(i, reply.ok()),
            Kind::Media {
                req,
                reply: to,
                order,
                pos,
            } => {
                self.stats.set_health(p.engine, true);
                self.stats.observe(now.saturating_duration_since(p.started));
                let relay = from.to_string();
                let outcome = if reply.ok() {
                    Ok(MediaAnswer {
                        sdp: reply.sdp.map(Bytes::from).unwrap_or_default(),
                        relay,
                    })
                } else if reply.result == "load limit" && req.new_session && pos + 1 < order.len() {
                    // Busy: a new session may go to the next one.
                    let next = Pending {
                        engine: order[pos + 1],
                        kind: Kind::Media {
                            req,
                            reply: to,
                            order,
                            pos: pos + 1,
                        },
                        tries_left: self.tries,
                        ..p
                    };
                    let cookie = self.cookie();
                    return self.send(cookie, next, now);
                } else {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    Err(MediaError::Refused(reply.why()))
                };
                self.finish(req, p.engine, outcome, &to);
            }
        }
    }

    /// Records where the session lives (or that it is gone) and answers.
    fn finish(
        &mut self,
        req: MediaRequest,
        engine: usize,
        outcome: Result<MediaAnswer, MediaError>,
        to: &ReplyTo,
    ) {
        if req.command == MediaCommand::Delete {
            self.sticky.remove(&req.call_id);
        } else if outcome.is_ok() {
            self.sticky.insert(req.call_id.clone(), engine);
        }
        if to
            .try_send(MediaResult {
                id: req.id,
                outcome,
            })
            .is_err()
        {
            tracing::debug!(call_id = %req.call_id, "media answer dropped: the core queue is full or gone");
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, cookie))) = self.heap.pop() else {
                break;
            };
            // A reply already came, or it was re-armed later.
            if self.pending.get(&cookie).map_or(true, |p| p.deadline != at) {
                continue;
            }
            let Some(mut p) = self.pending.remove(&cookie) else {
                continue;
            };
            p.tries_left = p.tries_left.saturating_sub(1);
            if p.tries_left > 0 {
                self.stats.retransmits.fetch_add(1, Ordering::Relaxed);
                self.send(cookie, p, now);
                continue;
            }
            self.stats.set_health(p.engine, false);
            match p.kind {
                Kind::Ping(_) => {
                    self.stats.pings_failed.fetch_add(1, Ordering::Relaxed);
                }
                Kind::Media {
                    req,
                    reply,
                    order,
                    pos,
                } => {
                    let addr = self
                        .engines
                        .get(p.engine)
                        .map_or_else(String::new, ToString::to_string);
                    if req.new_session && pos + 1 < order.len() {
                        tracing::warn!(call_id = %req.call_id, rtpengine = %addr, "rtpengine did not answer: trying the next one");
                        let next = Pending {
                            engine: order[pos + 1],
                            kind: Kind::Media {
                                req,
                                reply,
                                order,
                                pos: pos + 1,
                            },
                            tries_left: self.tries,
                            ..p
                        };
                        self.send(cookie, next, now);
                        continue;
                    }
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    let tried = order
                        .iter()
                        .filter_map(|&i| self.engines.get(i))
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ");
                    let e = MediaError::Unreachable(format!("tried {tried}"));
                    self.finish(req, p.engine, Err(e), &reply);
                }
            }
        }
    }
}

/// A bounded request: datagram, cookie and timeout for one-off ng
/// commands outside calls (`list`, `query` in tests and tools).
///
/// # Errors
/// Socket errors, no reply within `timeout`, or a malformed reply.
pub async fn call_once(
    engine: SocketAddr,
    request: &Request<'_>,
    timeout: Duration,
) -> Result<ng::Reply, String> {
    let bind = if engine.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    let cookie = format!("{:x}", rand::random::<u64>());
    let bytes = request.encode(&cookie).map_err(|e| e.to_string())?;
    sock.send_to(&bytes, engine)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; MAX_REPLY];
    let deadline = Instant::now() + timeout;
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .map_err(|_| format!("no reply from {engine}"))?
            .map_err(|e| e.to_string())?;
        if from != engine {
            continue;
        }
        let (c, reply) = ng::decode(buf.get(..n).unwrap_or_default()).map_err(|e| e.to_string())?;
        if c == cookie {
            return Ok(reply);
        }
    }
}

/// Builds a `query` for one call (tests check a session is gone).
pub fn query(call_id: &str) -> Request<'_> {
    Request {
        command: "query",
        call_id: Some(call_id),
        ..Request::default()
    }
}
