//! The location store (RFC 3261 §10.3, "one owner per fact"): every binding
//! of every trunk login, with the packet source, transport and TCP
//! connection each REGISTER came from, so calls reach a UA behind NAT at
//! the address its REGISTER came from, not the private address its Contact
//! names.
//!
//! Expiry is lazy: readers filter by `now`, and [`Registrar::handle_timeout`]
//! (crate::registrar::Registrar::handle_timeout) sweeps what a min-heap of
//! deadlines says is due (stale heap entries of refreshed bindings are
//! skipped, as in the transaction and call timers).
//!
//! Every change (new, refreshed, removed, expired, dropped binding) marks
//! its login dirty once; [`Registrar::poll_write`]
//! (crate::registrar::Registrar::poll_write) turns each dirty login into
//! one write of its current bindings (write-back, as Kamailio's usrloc
//! `db_mode = 2` flushes dirty records): the dirty set holds each login at
//! most once, so it is bounded by the logins, however often they change.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::routing::{Locations, Reach};
use crate::sip::Transport;
use crate::transport::ConnId;

/// One registered contact of a trunk login.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The Contact URI as registered, e.g. `sip:100@10.0.0.5:5060;ob`.
    pub contact: String,
    /// Packet source of the REGISTER (the NAT's public address): calls go here.
    pub source: SocketAddr,
    /// Transport the REGISTER came over.
    pub transport: Transport,
    /// The TCP connection it came on (calls reuse it).
    pub conn: Option<ConnId>,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// `+sip.instance` (RFC 5626 §4.1), quotes removed.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626 §4.2).
    pub reg_id: Option<u32>,
    /// Call-ID of the REGISTER that made or last refreshed it.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// The User-Agent header of that REGISTER (empty if none).
    pub user_agent: String,
    /// Keep-alive state: the unanswered ping, misses in a row.
    pub(super) ping: super::keepalive::PingState,
}

impl Binding {
    /// Whole seconds left at `now`, rounded up (0 once expired).
    pub fn expires_in(&self, now: Instant) -> u64 {
        let left = self.expires_at.saturating_duration_since(now);
        left.as_secs() + u64::from(left.subsec_nanos() > 0)
    }
}

/// One binding as `GET /v1/registrations` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistrationView {
    /// The trunk login (the AOR user part).
    pub login: String,
    /// The Contact URI as registered.
    pub contact: String,
    /// Where the REGISTER came from (`ip:port`).
    pub source: String,
    /// `UDP`, `TCP`, `WS` or `WSS` (RFC 7118).
    pub transport: String,
    /// Seconds until it lapses.
    pub expires: u64,
    /// `+sip.instance`, if any.
    pub instance: Option<String>,
    /// `reg-id`, if any.
    pub reg_id: Option<u32>,
    /// User-Agent of the registering UA.
    pub user_agent: String,
}

/// Every binding, keyed by trunk login. Owned by the [`Registrar`]
/// (crate::registrar::Registrar); read by the B2BUA (inbound calls) and the
/// HTTP API.
#[derive(Debug, Default)]
pub struct LocationStore {
    /// Login → its bindings, oldest registration first.
    by_login: HashMap<Arc<str>, Vec<Binding>>,
    /// Deadlines; an entry may be stale (binding refreshed or removed).
    heap: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    /// TCP connection → logins that registered over it (may be stale).
    by_conn: HashMap<ConnId, Vec<Arc<str>>>,
    /// Bindings stored (expired ones not yet swept included).
    count: usize,
    /// Logins changed since their last write, each once, oldest first.
    dirty: VecDeque<Arc<str>>,
    dirty_set: HashSet<Arc<str>>,
    /// Off (`[registrar] persist = false`): nothing is marked.
    no_persist: bool,
}

impl LocationStore {
    /// Unexpired bindings of a trunk login, most recently registered first.
    pub fn lookup(&self, login: &str, now: Instant) -> Vec<&Binding> {
        self.by_login.get(login).map_or_else(Vec::new, |v| {
            v.iter().rev().filter(|b| b.expires_at > now).collect()
        })
    }

    /// Number of bindings stored (expired ones are dropped at the next
    /// `handle_timeout`).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no binding is stored.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of logins with at least one binding stored.
    pub fn logins(&self) -> usize {
        self.by_login.len()
    }

    /// `(login, binding)` for every unexpired binding (for `/v1/registrations`).
    pub fn iter(&self, now: Instant) -> impl Iterator<Item = (&str, &Binding)> {
        self.by_login.iter().flat_map(move |(login, v)| {
            v.iter()
                .rev()
                .filter(move |b| b.expires_at > now)
                .map(move |b| (&**login, b))
        })
    }

    /// The `/v1/registrations` view: every unexpired binding, sorted by
    /// login, most recent first within a login.
    pub fn snapshot(&self, now: Instant) -> Vec<RegistrationView> {
        let mut out: Vec<RegistrationView> = self
            .iter(now)
            .map(|(login, b)| RegistrationView {
                login: login.to_owned(),
                contact: b.contact.clone(),
                source: b.source.to_string(),
                transport: b.transport.to_string(),
                expires: b.expires_in(now),
                instance: b.instance.clone(),
                reg_id: b.reg_id,
                user_agent: b.user_agent.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.login.cmp(&b.login));
        out
    }

    /// The earliest deadline in the heap (may be a stale one: waking early
    /// is harmless).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// All bindings of `login` (expired ones included), oldest first.
    pub(super) fn raw(&self, login: &str) -> &[Binding] {
        self.by_login.get(login).map_or(&[], Vec::as_slice)
    }

    /// Mutable bindings of `login` (keep-alive state only: callers must not
    /// change what is stored).
    pub(super) fn raw_mut(&mut self, login: &str) -> Option<&mut Vec<Binding>> {
        self.by_login.get_mut(login)
    }

    /// The next login whose bindings changed since its last write.
    pub(super) fn take_dirty(&mut self) -> Option<Arc<str>> {
        let login = self.dirty.pop_front()?;
        self.dirty_set.remove(&login);
        Some(login)
    }

    /// Logins waiting to be written.
    pub(super) fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether changes are marked for the store; off forgets the marks.
    pub(super) fn set_persist(&mut self, on: bool) {
        self.no_persist = !on;
        if !on {
            self.dirty.clear();
            self.dirty_set.clear();
        }
    }

    fn mark_dirty(&mut self, login: &Arc<str>) {
        if self.no_persist {
            return;
        }
        if self.dirty_set.insert(Arc::clone(login)) {
            self.dirty.push_back(Arc::clone(login));
        }
    }

    /// Replaces the bindings of `login` with `bindings` (oldest first),
    /// scheduling their expiry and indexing their connections; the login
    /// is dirty (to be written).
    pub(super) fn replace(&mut self, login: &str, bindings: Vec<Binding>) -> Arc<str> {
        let key = self.install(login, bindings);
        self.mark_dirty(&key);
        key
    }

    /// [`LocationStore::replace`] for bindings read back from the store
    /// (already written: not dirty).
    pub(super) fn restore(&mut self, login: &str, bindings: Vec<Binding>) -> Arc<str> {
        self.install(login, bindings)
    }

    fn install(&mut self, login: &str, mut bindings: Vec<Binding>) -> Arc<str> {
        // Most logins hold one binding: do not keep a growth reserve of
        // several per login (it tripled the store's memory at 100k).
        bindings.shrink_to_fit();
        let key: Arc<str> = match self.by_login.get_key_value(login) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(login),
        };
        let old = if bindings.is_empty() {
            self.by_login.remove(login).map_or(0, |v| v.len())
        } else {
            for b in &bindings {
                self.heap.push(Reverse((b.expires_at, Arc::clone(&key))));
                if let Some(c) = b.conn {
                    let logins = self.by_conn.entry(c).or_default();
                    if !logins.iter().any(|l| **l == *login) {
                        logins.push(Arc::clone(&key));
                    }
                }
            }
            let n = bindings.len();
            let old = self
                .by_login
                .insert(Arc::clone(&key), bindings)
                .map_or(0, |v| v.len());
            self.count += n;
            old
        };
        self.count = self.count.saturating_sub(old);
        self.compact();
        key
    }

    /// Drops every binding expired at `now`; returns them with their login
    /// (for the log).
    pub(super) fn expire(&mut self, now: Instant) -> Vec<(Arc<str>, Binding)> {
        let mut gone = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, login))) = self.heap.pop() else {
                break;
            };
            let Some(v) = self.by_login.get_mut(&login) else {
                continue;
            };
            let before = v.len();
            let mut kept = Vec::with_capacity(before);
            for b in v.drain(..) {
                if b.expires_at > now {
                    kept.push(b);
                } else {
                    gone.push((Arc::clone(&login), b));
                }
            }
            *v = kept;
            let removed = before - v.len();
            self.count = self.count.saturating_sub(removed);
            if v.is_empty() {
                self.by_login.remove(&login);
            }
            if removed > 0 {
                self.mark_dirty(&login);
            }
        }
        gone
    }

    /// Drops the bindings that came over TCP connection `conn` (it closed:
    /// nothing can reach those UAs through their NAT any more).
    pub(super) fn drop_conn(&mut self, conn: ConnId) -> Vec<(Arc<str>, Binding)> {
        let mut gone = Vec::new();
        for login in self.by_conn.remove(&conn).unwrap_or_default() {
            let Some(v) = self.by_login.get_mut(&login) else {
                continue;
            };
            let before = v.len();
            let mut kept = Vec::with_capacity(before);
            for b in v.drain(..) {
                if b.conn == Some(conn) {
                    gone.push((Arc::clone(&login), b));
                } else {
                    kept.push(b);
                }
            }
            *v = kept;
            let removed = before - v.len();
            self.count = self.count.saturating_sub(removed);
            if v.is_empty() {
                self.by_login.remove(&login);
            }
            if removed > 0 {
                self.mark_dirty(&login);
            }
        }
        gone
    }

    /// Rebuilds the heap when stale entries (refreshes) outnumber live ones.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.count + 64 {
            self.heap = self
                .by_login
                .iter()
                .flat_map(|(k, v)| {
                    v.iter()
                        .map(move |b| Reverse((b.expires_at, Arc::clone(k))))
                })
                .collect();
        }
    }
}

/// What routing needs to reach a registered trunk (SPEC §4 transport 5):
/// the Contact URI as Request-URI, sent to the REGISTER's source address
/// over its transport.
impl Locations for LocationStore {
    fn reach(&self, login: &str, now: Instant) -> Vec<Reach> {
        self.lookup(login, now)
            .into_iter()
            .map(|b| Reach {
                uri: b.contact.clone(),
                addr: b.source,
                transport: b.transport,
            })
            .collect()
    }
}
