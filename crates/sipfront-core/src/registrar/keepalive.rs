//! Keep-alive toward registered contacts behind NAT (`[registrar]
//! keepalive_s`), the way Kamailio's nathelper pings (`natping_interval`,
//! `sipping_method = OPTIONS`, `keepalive_timeout`):
//!
//! * **UDP**: an `OPTIONS` (RFC 3261 §11) sent once per interval, without a
//!   transaction (the next ping is the retransmission), to the binding's
//!   packet source, so the NAT mapping stays open. Any response (even
//!   `404`/`405`) proves the phone is alive. A binding whose last **two**
//!   pings in a row went unanswered is dropped at once, so DID calls hunt
//!   on instead of ringing a dead address until the binding expires.
//! * **TCP**: a double-CRLF ping (RFC 5626 §4.4.1, §3.5.1) over the
//!   registered connection itself, never a new one. A connection that is
//!   gone or fails the write takes its bindings with it (the transport
//!   reports it; see `Registrar::connection_closed`).
//!
//! Pings are scheduled per login. The first one is due one interval after
//! the login's first binding plus an offset derived from the login
//! (0..interval), so logins registering together, or 100k bindings
//! restored at start, are spread over the whole interval; and no tick
//! sends more than [`MAX_LOGINS_PER_TICK`] logins' pings (the rest are due
//! at once, after the shell has served its other inputs).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::store::LocationStore;
use super::Binding;
use crate::sip::build::RequestBuilder;
use crate::sip::random::Random;
use crate::sip::{Message, Method, Transport};
use crate::transport::Outbound;

/// Unanswered UDP pings in a row that end a binding.
pub const MISSES_TO_DROP: u8 = 2;

/// Most logins pinged by one `handle_timeout` (bounded work per wake).
pub const MAX_LOGINS_PER_TICK: usize = 2048;

/// The RFC 5626 §4.4.1 "ping".
const CRLF_PING: &[u8] = b"\r\n\r\n";

/// Per-binding keep-alive state.
#[derive(Clone, Debug, Default)]
pub(crate) struct PingState {
    /// Branch of the ping sent and not answered yet.
    branch: Option<Box<str>>,
    /// Pings in a row that got no answer.
    misses: u8,
}

/// The ping schedule and the pings awaiting an answer.
#[derive(Debug)]
pub(super) struct Keepalive {
    interval: Duration,
    /// `host:port` for the Via and From of our OPTIONS.
    sent_by: String,
    /// Login → when its bindings are pinged next; one live entry per login
    /// (`scheduled`), stale ones (login gone) are skipped.
    due: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    scheduled: HashSet<Arc<str>>,
    /// Branch of an outstanding OPTIONS → its login and contact.
    outstanding: HashMap<Box<str>, (Arc<str>, Box<str>)>,
    cseq: u32,
    pub(super) out: VecDeque<Outbound>,
    /// Counters: OPTIONS sent, answered; CRLF pings sent; bindings dropped.
    pub(super) stats: KeepaliveStats,
    /// Mints the OPTIONS' branches, tags and Call-IDs.
    rng: Random,
}

/// Keep-alive counters (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeepaliveStats {
    /// OPTIONS pings sent to UDP contacts.
    pub options_sent: u64,
    /// Responses to them.
    pub options_answered: u64,
    /// Double-CRLF pings written to TCP connections.
    pub crlf_sent: u64,
    /// Bindings dropped after [`MISSES_TO_DROP`] unanswered pings.
    pub dropped: u64,
}

impl Keepalive {
    pub(super) fn new(interval_s: u32, rng: Random) -> Keepalive {
        Keepalive {
            interval: Duration::from_secs(u64::from(interval_s)),
            sent_by: "127.0.0.1:5060".to_owned(),
            due: BinaryHeap::new(),
            scheduled: HashSet::new(),
            outstanding: HashMap::new(),
            cseq: 0,
            out: VecDeque::new(),
            stats: KeepaliveStats::default(),
            rng,
        }
    }

    /// Our address for the OPTIONS' Via and From (`host:port`).
    pub(super) fn set_sent_by(&mut self, sent_by: String) {
        self.sent_by = sent_by;
    }

    /// A new interval (SIGHUP); 0 stops pinging. Scheduled logins keep
    /// their next ping time.
    pub(super) fn set_interval(&mut self, interval_s: u32) {
        self.interval = Duration::from_secs(u64::from(interval_s));
    }

    fn enabled(&self) -> bool {
        !self.interval.is_zero()
    }

    /// Makes sure `login` (which has bindings now) gets pinged.
    pub(super) fn schedule(&mut self, login: &str, now: Instant) {
        if !self.enabled() || self.scheduled.contains(login) {
            return;
        }
        let key: Arc<str> = Arc::from(login);
        let at = now + self.interval + spread(login, self.interval);
        self.scheduled.insert(Arc::clone(&key));
        self.due.push(Reverse((at, key)));
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if !self.enabled() {
            return None;
        }
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Pings the logins that are due (at most [`MAX_LOGINS_PER_TICK`]);
    /// returns the bindings dropped for missing [`MISSES_TO_DROP`] pings.
    pub(super) fn handle_timeout(
        &mut self,
        store: &mut LocationStore,
        now: Instant,
    ) -> Vec<(Arc<str>, Binding)> {
        let mut gone = Vec::new();
        if !self.enabled() {
            return gone;
        }
        for _ in 0..MAX_LOGINS_PER_TICK {
            match self.due.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((at, login))) = self.due.pop() else {
                break;
            };
            if self.ping_login(store, &login, now, &mut gone) {
                // Keep the phase (spread) rather than drift with late wakes.
                let mut next = at + self.interval;
                if next <= now {
                    next = now + self.interval;
                }
                self.due.push(Reverse((next, login)));
            } else {
                self.scheduled.remove(&login);
            }
        }
        self.forget_stale(store);
        gone
    }

    /// Pings every live binding of `login`; false when it has none left.
    fn ping_login(
        &mut self,
        store: &mut LocationStore,
        login: &Arc<str>,
        now: Instant,
        gone: &mut Vec<(Arc<str>, Binding)>,
    ) -> bool {
        let Some(bindings) = store.raw_mut(login) else {
            return false;
        };
        let mut dead = false;
        for b in bindings.iter_mut().filter(|b| b.expires_at > now) {
            match (b.transport, b.conn) {
                (Transport::Udp, _) => {
                    if let Some(branch) = b.ping.branch.take() {
                        self.outstanding.remove(&branch);
                        b.ping.misses = b.ping.misses.saturating_add(1);
                    }
                    if b.ping.misses >= MISSES_TO_DROP {
                        dead = true;
                        continue;
                    }
                    let branch = self.rng.branch();
                    self.cseq = self.cseq.wrapping_add(1);
                    self.out.push_back(options(
                        &self.sent_by,
                        &b.contact,
                        b.source,
                        &branch,
                        self.cseq,
                        &mut self.rng,
                    ));
                    self.stats.options_sent += 1;
                    let branch: Box<str> = branch.into();
                    self.outstanding.insert(
                        branch.clone(),
                        (Arc::clone(login), b.contact.as_str().into()),
                    );
                    b.ping.branch = Some(branch);
                }
                (transport @ (Transport::Tcp | Transport::Tls), Some(conn)) => {
                    self.out.push_back(Outbound {
                        bytes: Bytes::from_static(CRLF_PING),
                        dest: b.source,
                        transport,
                        conn: Some(conn),
                    });
                    self.stats.crlf_sent += 1;
                }
                // A TCP/TLS binding without its connection cannot be
                // reached; it is dropped when the connection closes.
                (Transport::Tcp | Transport::Tls, None) => {}
                // WebSocket connections are kept alive by the transport's
                // own Ping/Pong (RFC 6455 §5.5.2); a dead one idles out and
                // its close drops the binding.
                (Transport::Ws | Transport::Wss, _) => {}
            }
        }
        if dead {
            let (kept, lost): (Vec<Binding>, Vec<Binding>) = bindings
                .iter()
                .cloned()
                .partition(|b| b.ping.misses < MISSES_TO_DROP);
            self.stats.dropped += lost.len() as u64;
            let key = store.replace(login, kept);
            gone.extend(lost.into_iter().map(|b| (Arc::clone(&key), b)));
        }
        !store.raw(login).is_empty()
    }

    /// A response that may answer one of our OPTIONS: true if it was ours
    /// (the binding is alive again), false for anything else.
    pub(super) fn on_response(&mut self, msg: &Message, store: &mut LocationStore) -> bool {
        let Ok(via) = msg.top_via() else {
            return false;
        };
        let Some(branch) = via.branch() else {
            return false;
        };
        let Some((login, contact)) = self.outstanding.remove(branch) else {
            return false;
        };
        self.stats.options_answered += 1;
        if let Some(bindings) = store.raw_mut(&login) {
            for b in bindings.iter_mut() {
                if *b.contact == *contact && b.ping.branch.as_deref() == Some(branch) {
                    b.ping = PingState::default();
                }
            }
        }
        true
    }

    /// Bounds `outstanding`: entries whose binding went away (unregistered,
    /// expired) without an answer are forgotten once they pile up.
    fn forget_stale(&mut self, store: &LocationStore) {
        if self.outstanding.len() <= store.len() + 1024 {
            return;
        }
        self.outstanding.retain(|branch, (login, contact)| {
            store
                .raw(login)
                .iter()
                .any(|b| *b.contact == **contact && b.ping.branch.as_deref() == Some(&**branch))
        });
    }

    /// Pings waiting for an answer.
    pub(super) fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

/// Where in `interval` `login`'s pings fall (FNV-1a of the login): the same
/// login keeps its phase, different logins spread evenly.
fn spread(login: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in login.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(h % ms)
}

/// The OPTIONS ping to `contact`, sent to the NAT address `dest` (the
/// Request-URI is the Contact as registered, as nathelper does).
fn options(
    sent_by: &str,
    contact: &str,
    dest: SocketAddr,
    branch: &str,
    cseq: u32,
    rng: &mut Random,
) -> Outbound {
    let host = sent_by.rsplit_once(':').map_or(sent_by, |(h, _)| h);
    let bytes = RequestBuilder::new(Method::Options, contact)
        .via(Transport::Udp, sent_by, branch, true)
        .from(&format!("<sip:sipfront@{host}>"), Some(&rng.tag()))
        .to(&format!("<{contact}>"), None)
        .call_id(&rng.call_id(host))
        .cseq(cseq)
        .max_forwards(70)
        .build();
    Outbound {
        bytes,
        dest,
        transport: Transport::Udp,
        conn: None,
    }
}
