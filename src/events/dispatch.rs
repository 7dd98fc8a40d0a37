//! The shell's side of webhooks: a bounded queue the core loop feeds with
//! `try_send` (never waits), and tokio tasks that POST each event as JSON
//! with retries. A slow or dead receiver costs queued, failed or dropped
//! events, all counted, never a delayed call (ARCHITECTURE principle 3).
//!
//! # Order and isolation
//! Events are spread over [`Settings::lanes`] lanes by a hash of the
//! call's Call-ID; each lane delivers its queue one event at a time, in
//! order. So one call's `ringing`, `answered` and `completed` arrive in that
//! order (a retried event holds back the ones after it in its lane), while
//! lanes run in parallel. A dead receiver can hold each lane for one
//! delivery's worth of attempts (4 × 5 s + 7 s of back-off) at a time, and
//! its events take their share of the queue; once the queue is full, new
//! events are dropped and counted. Chosen over one task per event (no
//! order) and one lane per receiver (a receiver's whole rate behind one
//! request at a time).
//!
//! # A dead receiver
//! Once an event to a URL is given up after all its attempts, that URL is
//! *down* for [`Settings::down_for`]: its events fail at once, untried
//! (counted as failed), and deliveries to it still retrying stop at their
//! next retry. So a dead receiver holds a lane for one delivery, not one
//! per event, and the other receivers' events behind it go out. The first
//! event after that time is tried in full again.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::CallEvent;
use crate::endpoint::metric;

/// Delivery settings; [`Settings::default`] is what the server runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events queued (all lanes together) before new ones are dropped.
    pub capacity: usize,
    /// Parallel in-order delivery queues.
    pub lanes: usize,
    /// TCP (and TLS) connect limit per attempt.
    pub connect_timeout: Duration,
    /// Whole-request limit per attempt.
    pub timeout: Duration,
    /// Attempts per event, first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled before each next one.
    pub backoff: Duration,
    /// How long a receiver that failed a whole delivery is left alone.
    pub down_for: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            capacity: 10_000,
            lanes: 16,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            attempts: 4,
            backoff: Duration::from_secs(1),
            down_for: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

/// The core loop's handle: non-blocking, cheap to clone.
#[derive(Clone, Debug)]
pub struct WebhookSink {
    lanes: Arc<[mpsc::Sender<CallEvent>]>,
    counters: Arc<Counters>,
}

impl WebhookSink {
    /// Queues `ev` on its call's lane without waiting. False (and a counted
    /// drop) when that lane is full or the dispatcher has stopped.
    pub fn send(&self, ev: CallEvent) -> bool {
        let Some(lane) = self.lanes.get(lane_of(&ev.call_id, self.lanes.len())) else {
            return false;
        };
        // Counted before the send so a fast delivery never sees it negative.
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if lane.try_send(ev).is_ok() {
            return true;
        }
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Events accepted and not yet delivered or given up (in flight included).
    pub fn queued(&self) -> u64 {
        self.counters.queued.load(Ordering::Relaxed)
    }

    /// Events the receiver accepted (2xx).
    pub fn delivered(&self) -> u64 {
        self.counters.delivered.load(Ordering::Relaxed)
    }

    /// Events given up on (a final error, or every attempt failed).
    pub fn failed(&self) -> u64 {
        self.counters.failed.load(Ordering::Relaxed)
    }

    /// Events lost to a full queue.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Attempts after the first.
    pub fn retries(&self) -> u64 {
        self.counters.retries.load(Ordering::Relaxed)
    }

    /// Appends the webhook counters to a `/metrics` text.
    pub fn write_metrics(&self, m: &mut String) {
        for (name, kind, help, value) in [
            (
                "sipfront_webhooks_queued",
                "gauge",
                "Call-status events waiting or being delivered.",
                self.queued(),
            ),
            (
                "sipfront_webhooks_delivered_total",
                "counter",
                "Call-status events the receiver accepted.",
                self.delivered(),
            ),
            (
                "sipfront_webhooks_failed_total",
                "counter",
                "Call-status events given up on after a final error or the last retry.",
                self.failed(),
            ),
            (
                "sipfront_webhooks_dropped_total",
                "counter",
                "Call-status events lost to a full queue.",
                self.dropped(),
            ),
            (
                "sipfront_webhook_retries_total",
                "counter",
                "Call-status delivery attempts after the first.",
                self.retries(),
            ),
        ] {
            metric(m, name, kind, help, value);
        }
    }
}

/// The lane of a call: the same Call-ID always lands on the same lane.
fn lane_of(call_id: &str, lanes: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    call_id.hash(&mut h);
    usize::try_from(h.finish() % lanes.max(1) as u64).unwrap_or(0)
}

/// The delivery tasks. Stop with [`Dispatcher::shutdown`].
#[derive(Debug)]
pub struct Dispatcher {
    tasks: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    sink: WebhookSink,
}

impl Dispatcher {
    /// Starts the lanes on the current tokio runtime.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots, for instance).
    pub fn start(settings: Settings) -> Result<(Dispatcher, WebhookSink), String> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            // A redirect is an answer we do not follow (a final failure).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sipfront/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        let lanes = settings.lanes.max(1);
        let per_lane = settings.capacity.div_ceil(lanes).max(1);
        let counters = Arc::new(Counters::default());
        let down = Arc::new(Down::default());
        let (stop, stop_rx) = watch::channel(false);
        let settings = Arc::new(settings);
        let mut senders = Vec::with_capacity(lanes);
        let mut tasks = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (tx, rx) = mpsc::channel(per_lane);
            senders.push(tx);
            let lane = Lane {
                client: client.clone(),
                settings: Arc::clone(&settings),
                counters: Arc::clone(&counters),
                down: Arc::clone(&down),
            };
            tasks.push(tokio::spawn(lane.run(rx, stop_rx.clone())));
        }
        let sink = WebhookSink {
            lanes: senders.into(),
            counters,
        };
        let d = Dispatcher {
            tasks,
            stop,
            sink: sink.clone(),
        };
        Ok((d, sink))
    }

    /// Stops taking events and gives those queued up to `grace` to be
    /// delivered; what is left after that is abandoned (and logged).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = async {
            for t in &mut self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                left = self.sink.queued(),
                "webhooks: stopping with call-status events still undelivered after {grace:?}"
            );
            for t in &self.tasks {
                t.abort();
            }
            // Aborted tasks end at their next await: their queues close now.
            // (A handle already awaited to completion must not be polled again.)
            for t in &mut self.tasks {
                if !t.is_finished() {
                    let _ = t.await;
                }
            }
        }
    }
}

/// One in-order delivery queue.
struct Lane {
    client: reqwest::Client,
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    down: Arc<Down>,
}

/// Receivers (by URL) that failed a whole delivery, and until when they
/// are left alone. Shared by the lanes; bounded by the configured URLs
/// (the global one and the DIDs'), entries leave on expiry or success.
#[derive(Debug, Default)]
struct Down(std::sync::Mutex<HashMap<Arc<str>, Instant>>);

impl Down {
    fn is_down(&self, url: &Arc<str>) -> bool {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(url) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                map.remove(url);
                false
            }
            None => false,
        }
    }

    fn mark(&self, url: &Arc<str>, for_: Duration) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(Arc::clone(url), Instant::now() + for_);
    }

    fn clear(&self, url: &Arc<str>) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(url);
    }
}

/// What one attempt's answer means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// Worth another attempt: the receiver may be busy or restarting.
    Retry(String),
    /// Another attempt would get the same answer.
    Final(String),
}

/// 2xx delivered; 408, 429 and 5xx retried; anything else final.
fn verdict_of_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(format!("HTTP {status}")),
        _ => Verdict::Final(format!("HTTP {status}")),
    }
}

fn verdict_of_error(e: &reqwest::Error) -> Verdict {
    if e.is_builder() {
        Verdict::Final(format!("bad URL: {e}"))
    } else if e.is_timeout() {
        Verdict::Retry("no answer in time".to_owned())
    } else if e.is_connect() {
        Verdict::Retry("cannot connect".to_owned())
    } else {
        Verdict::Retry(format!("request failed: {e}"))
    }
}

impl Lane {
    async fn run(self, mut rx: mpsc::Receiver<CallEvent>, mut stop: watch::Receiver<bool>) {
        let mut closed = false;
        loop {
            tokio::select! {
                biased;
                ev = rx.recv() => match ev {
                    Some(ev) => self.deliver(&ev).await,
                    None => return,
                },
                // Stopping: take no more; `recv` yields what is queued, then None.
                _ = stop.changed(), if !closed => {
                    closed = true;
                    rx.close();
                }
            }
        }
    }

    async fn deliver(&self, ev: &CallEvent) {
        let body = Bytes::from(super::to_json(ev));
        let mut wait = self.settings.backoff;
        let mut attempt = 1;
        let why = loop {
            if self.down.is_down(&ev.url) {
                break "receiver down (an earlier event to it was given up); not tried".to_owned();
            }
            let sent = self
                .client
                .post(&*ev.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            // The answer's body is never read: a receiver cannot make us buffer it.
            let verdict = match sent {
                Ok(resp) => verdict_of_status(resp.status().as_u16()),
                Err(e) => verdict_of_error(&e),
            };
            match verdict {
                Verdict::Delivered => {
                    self.down.clear(&ev.url);
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                Verdict::Final(why) => break why,
                Verdict::Retry(why) if attempt >= self.settings.attempts => {
                    self.down.mark(&ev.url, self.settings.down_for);
                    break format!(
                        "{why} (after {attempt} attempts); its events fail untried for {:?}",
                        self.settings.down_for
                    );
                }
                Verdict::Retry(_) => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
            }
        };
        let failed = self.counters.failed.fetch_add(1, Ordering::Relaxed) + 1;
        self.counters.queued.fetch_sub(1, Ordering::Relaxed);
        // Logged at 1, 2, 4, 8… failures: a dead receiver cannot flood the log.
        if failed.is_power_of_two() {
            let host = reqwest::Url::parse(&ev.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| ev.url.to_string());
            tracing::warn!(
                host = %host,
                call_id = %ev.call_id,
                state = ev.state.as_str(),
                failed_total = failed,
                "webhook: call-status event given up: {why}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use crate::events::CallState;

    fn event(call_id: &str) -> CallEvent {
        CallEvent {
            url: Arc::from("http://127.0.0.1:9/"),
            call_id: call_id.to_owned(),
            state: CallState::Ringing,
            direction: Direction::Placed,
            from: String::new(),
            to: String::new(),
            trunk: None,
            sip_code: 180,
            duration: 0,
            timestamp: 0,
        }
    }

    #[test]
    fn retry_on_busy_or_broken_receivers_only() {
        assert_eq!(verdict_of_status(204), Verdict::Delivered);
        for s in [408, 429, 500, 503] {
            assert!(matches!(verdict_of_status(s), Verdict::Retry(_)), "{s}");
        }
        for s in [301, 400, 403, 404, 410] {
            assert!(matches!(verdict_of_status(s), Verdict::Final(_)), "{s}");
        }
    }

    #[test]
    fn a_calls_events_share_a_lane() {
        assert_eq!(lane_of("abc@h", 16), lane_of("abc@h", 16));
        let used: std::collections::HashSet<usize> =
            (0..200).map(|i| lane_of(&format!("c{i}"), 16)).collect();
        assert_eq!(used.len(), 16, "calls spread over every lane");
        assert_eq!(lane_of("x", 0), 0);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_a_stopped_one_too() {
        let settings = Settings {
            capacity: 2,
            lanes: 1,
            // A blackholed port: the first event stays in flight.
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            ..Settings::default()
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: Arc<str> = Arc::from(format!("http://{}/", listener.local_addr().unwrap()));
        let (d, sink) = Dispatcher::start(settings).unwrap();
        let mut accepted = 0;
        for i in 0..10 {
            let ev = CallEvent {
                url: Arc::clone(&url),
                ..event(&format!("c{i}"))
            };
            accepted += u64::from(sink.send(ev));
        }
        // One in flight (maybe) plus two queued; the rest dropped.
        assert!((2..=3).contains(&accepted), "{accepted}");
        assert_eq!(sink.dropped(), 10 - accepted);
        assert_eq!(sink.queued(), accepted);
        let start = tokio::time::Instant::now();
        d.shutdown(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(2), "grace is bounded");
        assert!(!sink.send(event("late")), "stopped: not taken");
        assert_eq!(sink.dropped(), 11 - accepted);
    }

    /// A receiver that answers every request `200`, on its own thread.
    fn ok_receiver() -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = c.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Our events are small: one read holds head and body.
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            buf.clear();
                            let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                        }
                    }
                });
            }
        });
        url
    }

    #[tokio::test]
    async fn a_dead_receiver_holds_its_lane_for_one_delivery_not_one_per_event() {
        let settings = Settings {
            lanes: 1,
            connect_timeout: Duration::from_millis(300),
            timeout: Duration::from_millis(300),
            attempts: 2,
            backoff: Duration::from_millis(20),
            down_for: Duration::from_secs(60),
            ..Settings::default()
        };
        // Accepts and never answers; counts the connections it got.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url: Arc<str> = Arc::from(format!("http://{}/", dead.local_addr().unwrap()));
        let tries = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&tries);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in dead.incoming().flatten() {
                counted.fetch_add(1, Ordering::Relaxed);
                held.push(c);
            }
        });
        let ok_url: Arc<str> = Arc::from(ok_receiver());
        let (d, sink) = Dispatcher::start(settings).unwrap();
        for i in 0..5 {
            let ev = CallEvent {
                url: Arc::clone(&dead_url),
                ..event(&format!("dead{i}"))
            };
            assert!(sink.send(ev));
        }
        let ev = CallEvent {
            url: Arc::clone(&ok_url),
            ..event("alive")
        };
        assert!(sink.send(ev));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sink.delivered() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sink.delivered(), 1, "the live receiver's event went out");
        assert_eq!(sink.failed(), 5, "every dead receiver's event counted");
        // Only the first event was tried (twice); the other four failed untried.
        assert_eq!(tries.load(Ordering::Relaxed), 2);
        d.shutdown(Duration::from_millis(100)).await;
    }
}
