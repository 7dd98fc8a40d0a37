//! Calls through the back-to-back user agent (RFC 3261 §6 "B2BUA"; SPEC §5):
//! a call from a trunk (the A-leg, where we are the UAS) reaches an upstream
//! carrier (the B-leg, where we are the UAC) as two independent dialogs with
//! their own Call-ID, tags, Via, Contact and CSeq space (topology hiding).
//!
//! Sans-IO, like the transaction layer under it: every input carries `now`,
//! the outputs are [`Action`]s the endpoint executes against
//! [`Transactions`](crate::transaction::Transactions) and the transport.
//!
//! # Calling contract
//! * `handle_invite` for a new INVITE (no To tag), `handle_in_dialog` for
//!   any other request with a To tag except ACK, `handle_ack` for an ACK not
//!   absorbed by a transaction, `handle_cancel` for a new CANCEL,
//!   `handle_response` for a response delivered to a client transaction,
//!   `handle_transaction_event` for every transaction event, and
//!   `handle_timeout` when [`poll_timeout`](B2bua::poll_timeout) is reached;
//! * after each, drain [`poll_action`](B2bua::poll_action) until `None`
//!   (and `poll_cdr`, `poll_call_event`, `poll_auth_outcome`);
//! * `now` never goes backwards.
//!
//! The session table (`table.rs`) is the single owner of active calls.
//!
//! Admission (`admission.rs`) applies SPEC §3 to every new INVITE before
//! anything is sent on: identification, digest, then the trunk's policy.
//! An admitted call keeps its terms (number, caller ID, duration limit,
//! rate) to the end, whatever snapshot comes after.
//!
//! REFER from a trunk is a blind transfer (`transfer.rs`, RFC 3515): a new
//! call under the trunk's policy, to which the transferred leg is handed;
//! with `Replaces` it joins two calls of the trunk (`replaces.rs`, RFC 3891).
//!
//! # Not yet here
//! * DID routing (SPEC §4): trusted upstreams get `404`; on-net calls to
//!   another trunk or a DID wait for the registrar (`480`).
//! * RFC 4028 session timers run per leg (`session_timer.rs`) and RFC 3262
//!   reliability is mapped or terminated per leg (`reliable.rs`).
//! * Several early dialogs from a forking upstream share one A-leg tag; a
//!   second 2xx with another tag is ACKed and BYEd.

mod admission;
mod call;
mod channels;
pub mod event;
pub mod fleet;
mod health;
mod identity;
mod leg;
pub mod media;
mod plan;
pub mod quality;
pub mod record;
mod redirect;
mod registration;
mod reliable;
mod replaces;
pub mod session_timer;
mod table;
mod transfer;
mod upstream_auth;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::b2bua::event::CallEvent;
use crate::b2bua::record::{Cdr, Direction, Disposition};
use crate::config::TrunkConfig;
use crate::routing::{Locations, Upstreams};
use crate::sip::build::ResponseBuilder;
use crate::sip::random::Random;
use crate::sip::{Message, StatusCode, Transport};
use crate::transaction::{TimerConfig, TransactionEvent, TransactionKey};

pub use admission::{
    Admission, Admitted, ChannelKey, Refusal, RefusalCause, DEST_PSTN, DEST_TRUNK, DEST_URI,
};
pub use call::Phase;
pub use channels::{ChannelCounters, ChannelGuard, LocalChannels};
pub use leg::{Local, Side};
pub use registration::UpstreamRegistration;

use call::{Call, Fx, NewCall};
use health::Health;
use table::{CallId, SessionTable};

/// Settings of the B2BUA.
#[derive(Clone, Debug)]
pub struct B2buaConfig {
    /// Our addresses for Via and Contact.
    pub local: Local,
    /// T1/T2 for 2xx retransmission and the ACK wait (RFC 3261 §13.3.1.4).
    pub timers: TimerConfig,
    /// Hard upper bound of a call (default 4 h): both legs get BYE.
    pub max_call_duration: Duration,
    /// An upstream that sends no response at all within this is skipped
    /// (fail-over before Timer B's 32 s). Default 5 s.
    pub no_answer_failover: Duration,
    /// A DID destination that does not answer within this is given up for
    /// the next one (SPEC §4 "ring timeout"). Default 30 s.
    pub ring_timeout: Duration,
    /// How long an ended call may wait for its transactions before it is
    /// dropped from the table regardless (default 64·T1 + T4 + 1 s).
    pub linger: Duration,
    /// `Server` header on our responses.
    pub server_header: String,
    /// Maps `now` to wall-clock time (digest nonces, CDR dates).
    pub wall: WallClock,
    /// RFC 4028 session timers (`[server] session_expires_s`, `min_se_s`).
    pub session: session_timer::SessionConfig,
    /// How long a relayed call waits for the media client's answer before
    /// it fails with `503` (the client's own budget plus slack).
    pub media_timeout: Duration,
    /// How long a limited call on a node of a fleet waits for the fleet
    /// counter's verdict before it goes on with the node's own view
    /// (`[cluster] timeout_ms` plus slack).
    pub fleet_timeout: Duration,
}

/// Wall-clock time as a function of the monotonic `now` the core is given:
/// one reading of both clocks, taken by the shell at start. Keeps the core
/// free of clock reads (tests pass any pair).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// The monotonic instant of the reading.
    pub at: Instant,
    /// Milliseconds since the Unix epoch at `at`.
    pub unix_ms: u64,
}

impl WallClock {
    /// Milliseconds since the Unix epoch at `now`.
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at).as_millis();
        self.unix_ms
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// Seconds since the Unix epoch at `now`.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        self.unix_ms(now) / 1000
    }
}

impl B2buaConfig {
    /// Defaults around `local`, with the shell's `wall` clock.
    pub fn new(local: Local, wall: WallClock) -> B2buaConfig {
        let timers = TimerConfig::default();
        B2buaConfig {
            local,
            timers,
            max_call_duration: Duration::from_secs(4 * 3600),
            no_answer_failover: Duration::from_secs(5),
            ring_timeout: Duration::from_secs(30),
            linger: timers.t1x64() + timers.t4 + Duration::from_secs(1),
            server_header: concat!("sipfront/", env!("CARGO_PKG_VERSION")).to_owned(),
            wall,
            session: session_timer::SessionConfig::default(),
            media_timeout: Duration::from_secs(2),
            fleet_timeout: Duration::from_millis(500),
        }
    }
}

/// What the endpoint must do for the B2BUA.
// Actions live in a queue drained right after each input: boxing the request
// would add an allocation per request for no memory saving.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Action {
    /// Send this response on server transaction `key`.
    Respond {
        /// The server transaction.
        key: TransactionKey,
        /// Its status (for the transaction layer).
        status: StatusCode,
        /// The whole response.
        bytes: Bytes,
    },
    /// Send this request in a new client transaction.
    Request {
        /// The request.
        request: Message,
        /// Where to.
        dest: SocketAddr,
        /// Over what.
        transport: Transport,
    },
    /// Send these bytes outside any transaction (ACK for a 2xx, our 2xx
    /// retransmissions: RFC 3261 §13.2.2.4, §13.3.1.4).
    Send {
        /// The whole message.
        bytes: Bytes,
        /// Where to.
        dest: SocketAddr,
        /// Over what.
        transport: Transport,
    },
}

/// One call in progress, as `GET /v1/calls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CallView {
    /// The A-leg Call-ID (what `DELETE /v1/calls/{call_id}` takes).
    pub call_id: String,
    /// `placed` or `received`.
    pub direction: &'static str,
    /// The trunk login (the CDR's `sip_trunk`).
    pub trunk: String,
    /// Caller number as sent on.
    pub from: String,
    /// Dialled number after rewrite, or the DID.
    pub to: String,
    /// `trying`, `ringing`, `answered` or `ending`.
    pub state: &'static str,
    /// Unix seconds of the INVITE.
    pub started: u64,
    /// Unix seconds of the answer, if answered.
    pub answered: Option<u64>,
    /// The rtpengine (`ip:port` of its ng socket) anchoring the call's
    /// media; `None` when media flows end to end (or before the offer).
    pub relay: Option<String>,
    /// Transport of the caller's leg: `udp`, `tcp`, `tls`, `ws` or `wss`.
    pub a_transport: &'static str,
    /// Transport of the callee's leg (of the attempt in progress).
    pub b_transport: &'static str,
}

/// A failure answer to a new INVITE and why, for the log.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    /// Reason phrase other than the canonical one.
    reason: Option<String>,
    /// Extra headers (digest challenges).
    headers: Vec<(&'static str, String)>,
    why: String,
    /// What `/metrics` counts it under.
    cause: RefusalCause,
    /// A routine digest challenge (logged at debug, not info).
    challenge: bool,
}

impl Rejection {
    fn new(status: StatusCode, cause: RefusalCause, why: &dyn std::fmt::Display) -> Rejection {
        Rejection {
            status,
            reason: None,
            headers: Vec::new(),
            why: why.to_string(),
            cause,
            challenge: false,
        }
    }
}

/// Counters of the B2BUA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B2buaStats {
    /// Calls created.
    pub calls: u64,
    /// New INVITEs refused before routing, indexed by `RefusalCause as usize`.
    pub refused: [u64; RefusalCause::ALL.len()],
    /// In-dialog requests answered 481.
    pub no_dialog: u64,
    /// Final responses and post-dial delay of recorded calls, per trunk.
    pub quality: quality::TrunkQuality,
}

/// The B2BUA: routing data, the session table and the action queue.
#[derive(Debug)]
pub struct B2bua {
    cfg: B2buaConfig,
    upstreams: Upstreams,
    admission: Arc<Admission>,
    /// Channels in use per trunk and DID, shared by the node's shards.
    channels: Arc<dyn ChannelCounters>,
    table: SessionTable,
    actions: VecDeque<Action>,
    heap: BinaryHeap<Reverse<(Instant, CallId)>>,
    rng: Random,
    stats: B2buaStats,
    health: Health,
    /// Registration trunks (`register = true` upstreams).
    registrations: registration::Registrations,
    /// CDRs of calls that ended, for the shell to queue to the store.
    records: VecDeque<Cdr>,
    /// Call-status events (SPEC §7) for the shell's webhook dispatcher.
    call_events: VecDeque<CallEvent>,
    /// Stopping: new INVITEs get `503`, calls in progress go on.
    draining: bool,
    /// Digest outcomes by source, for brute-force counting.
    auth_outcomes: VecDeque<(std::net::IpAddr, Result<(), crate::auth::AuthError>)>,
    /// DNS answers for host names in DID SIP URI destinations.
    did_hosts: crate::routing::DidHosts,
    /// Whether this B2BUA pings the upstreams and registers at them (one
    /// core shard per node does; the others only know the accounts).
    node_duties: bool,
    /// Media relay requests of relayed calls (SPEC §8.4).
    media: media::MediaQueue,
    /// Channel asks to the fleet's counter (README "Fleets").
    fleet: fleet::FleetQueue,
}

impl B2bua {
    /// A B2BUA with no calls. `rng` mints its tags, branches and Call-IDs
    /// and drives the weighted upstream choice.
    pub fn new(
        cfg: B2buaConfig,
        upstreams: Upstreams,
        admission: Arc<Admission>,
        rng: Random,
    ) -> B2bua {
        B2bua {
            cfg,
            upstreams,
            admission,
            channels: Arc::new(LocalChannels::new()),
            table: SessionTable::default(),
            actions: VecDeque::new(),
            heap: BinaryHeap::new(),
            rng,
            stats: B2buaStats::default(),
            health: Health::default(),
            registrations: registration::Registrations::default(),
            records: VecDeque::new(),
            did_hosts: crate::routing::DidHosts::default(),
            call_events: VecDeque::new(),
            draining: false,
            auth_outcomes: VecDeque::new(),
            node_duties: true,
            media: media::MediaQueue::default(),
            fleet: fleet::FleetQueue::default(),
        }
    }

    /// Whether this B2BUA sends the node's upstream OPTIONS pings and
    /// registrations (true by default; false on every core shard but 0,
    /// so a node pings and registers once). Without them it still knows
    /// the registration accounts (inbound calls to them are recognised),
    /// and it reads the pings' verdicts (and every shard's B-leg INVITE
    /// outcomes) through the health board its [`Upstreams`] clone shares.
    pub fn set_node_duties(&mut self, on: bool) {
        self.node_duties = on;
    }

    /// Counts channels in `counters`, shared with the node's other shards
    /// (before the first call: calls admitted earlier keep their own).
    pub fn share_channels(&mut self, counters: Arc<dyn ChannelCounters>) {
        self.channels = counters;
    }

    /// The channel counters calls are admitted against.
    pub fn channel_counters(&self) -> &Arc<dyn ChannelCounters> {
        &self.channels
    }

    /// Calls in the table (including ended ones waiting for transactions).
    pub fn len(&self) -> usize {
        self.table.calls.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.table.calls.is_empty()
    }

    /// Calls not yet ended.
    pub fn active_calls(&self) -> usize {
        self.table
            .calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .count()
    }

    /// Channels in use per trunk login (placed calls), for `/metrics`.
    /// A trunk deleted while its calls go on shows under its id.
    pub fn trunk_channels(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .channels
            .snapshot()
            .into_iter()
            .filter_map(|(key, n)| match key {
                ChannelKey::Trunk(id) => Some((
                    self.admission
                        .trunk(id)
                        .map_or_else(|| format!("#{id}"), |t| t.login().to_owned()),
                    n,
                )),
                ChannelKey::Did(_) => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Calls not yet ended, oldest first.
    pub fn calls(&self) -> Vec<CallView> {
        let mut v: Vec<CallView> = self
            .table
            .calls
            .values()
            .filter(|c| c.phase != Phase::Ended)
            .map(|c| c.view(&self.cfg.wall))
            .collect();
        v.sort_by(|a, b| (a.started, &a.call_id).cmp(&(b.started, &b.call_id)));
        v
    }

    /// Ends the call whose A-leg Call-ID is `call_id` (BYE on both legs, or
    /// CANCEL and `487` while ringing): `DELETE /v1/calls/{call_id}`.
    /// False when no such call is in progress.
    pub fn hang_up(&mut self, call_id: &str, now: Instant) -> bool {
        let found = self
            .table
            .calls
            .iter()
            .find(|(_, c)| c.phase != Phase::Ended && c.a_call_id() == call_id)
            .map(|(id, _)| *id);
        let Some(id) = found else {
            return false;
        };
        self.terminate(id, now);
        true
    }

    /// Ends every call in progress placed by trunk `trunk` (BYE on both
    /// legs, or CANCEL and `487` while ringing), as [`B2bua::hang_up`]
    /// does for one: `DELETE /v1/trunks/{id}?force=true`. Returns how many.
    pub fn hang_up_trunk(&mut self, trunk: u64, now: Instant) -> usize {
        let ids: Vec<CallId> = self
            .table
            .calls
            .iter()
            .filter(|(_, c)| c.phase != Phase::Ended && c.terms.trunk_id() == Some(trunk))
            .map(|(id, _)| *id)
            .collect();
        for &id in &ids {
            self.terminate(id, now);
        }
        ids.len()
    }

    /// Ends one call from the API's side: BYE both legs when answered,
    /// CANCEL the B-leg and `487` the A-leg while ringing.
    fn terminate(&mut self, id: CallId, now: Instant) {
        self.with_call(id, now, |call, fx| {
            call.end_call(None, StatusCode::REQUEST_TERMINATED, fx);
        });
    }

    /// Outbound calls of one trunk holding a channel (SPEC §3 "channels"):
    /// from the INVITE until the A-leg's final failure or the call's end.
    pub fn calls_of_trunk(&self, trunk: u64) -> u32 {
        self.channels.active(&ChannelKey::Trunk(trunk))
    }

    /// Inbound calls holding a channel of DID `number` (SPEC §4).
    pub fn calls_of_did(&self, number: &str) -> u32 {
        self.channels.active(&ChannelKey::Did(Arc::from(number)))
    }

    /// Swaps in a new admission snapshot: new calls see it at once, calls
    /// in progress keep the terms they were admitted with.
    pub fn set_admission(&mut self, admission: Arc<Admission>) {
        self.admission = admission;
    }

    /// The admission snapshot in force.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// Counters.
    pub fn stats(&self) -> &B2buaStats {
        &self.stats
    }

    /// The upstreams (health marks included).
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// A DNS answer for upstream `i` from the shell (RFC 3263): its targets
    /// from now on, or none with the error when the name does not resolve
    /// (past the stale grace). Known targets keep their health; the new
    /// set is pinged at once. Calls in progress keep their hops.
    pub fn set_upstream_targets(
        &mut self,
        i: usize,
        targets: Vec<crate::routing::Target>,
        error: Option<String>,
        now: Instant,
    ) {
        if self.upstreams.set_targets(i, targets, error) {
            self.health.poke(i, now);
        }
    }

    /// A DNS answer from the shell for a host name used by DID SIP URI
    /// destinations (RFC 3263): its targets from now on, or none with the
    /// error. Calls in progress keep their hops.
    pub fn set_did_host_targets(
        &mut self,
        name: crate::routing::Resolve,
        targets: Vec<crate::routing::Target>,
        error: Option<String>,
    ) {
        self.did_hosts.set(name, targets, error);
    }

    /// Forgets answers for names no DID destination uses any more.
    pub fn retain_did_hosts(&mut self, used: &[crate::routing::Resolve]) {
        self.did_hosts.retain(used);
    }

    /// The next action to execute.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next call record (one per call attempt of a known trunk: SPEC
    /// §6). Drain after each input, like `poll_action`.
    pub fn poll_cdr(&mut self) -> Option<Cdr> {
        self.records.pop_front()
    }

    /// The next call-status event (SPEC §7: ringing, answered, completed,
    /// failed), only for calls with a webhook URL. Drain after each input.
    pub fn poll_call_event(&mut self) -> Option<CallEvent> {
        self.call_events.pop_front()
    }

    /// The next digest outcome (source, result) of a new INVITE, for the
    /// endpoint's brute-force counting. Drain after each input.
    pub fn poll_auth_outcome(
        &mut self,
    ) -> Option<(std::net::IpAddr, Result<(), crate::auth::AuthError>)> {
        self.auth_outcomes.pop_front()
    }

    /// The earliest instant `handle_timeout` has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self.heap.peek().map(|Reverse((at, _))| *at);
        let node = |t: Option<Instant>| t.filter(|_| self.node_duties);
        [
            calls,
            node(self.health.poll_timeout()),
            node(self.registrations.poll_timeout()),
            self.media_poll_timeout(),
            self.fleet_poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Registration state of upstream `i` (`GET /v1/upstreams`).
    pub fn registration(&self, i: usize, now: Instant) -> UpstreamRegistration {
        self.registrations.view(i, &self.cfg.wall, now)
    }

    /// Whether a stop still waits for unregistrations (at most
    /// 5 s after [`B2bua::unregister_all`]).
    pub fn unregistering(&self, now: Instant) -> bool {
        self.node_duties && self.registrations.unregistering(now)
    }

    /// Unregisters every registration trunk (`Expires: 0`) and stops
    /// refreshing: the start of a stop (SIGTERM).
    pub fn unregister_all(&mut self, now: Instant) {
        if !self.node_duties {
            return;
        }
        let mut ctx = registration::Ctx {
            ups: &self.upstreams,
            local: &self.cfg.local,
            now,
            rng: &mut self.rng,
            out: &mut self.actions,
        };
        self.registrations.unregister_all(&mut ctx);
    }

    /// Answers a new INVITE with a failure, counts it, and logs why, so an
    /// operator reading the log sees what happened to the call.
    fn refuse(&mut self, msg: &Message, key: &TransactionKey, source: SocketAddr, r: Rejection) {
        self.stats.refused[r.cause as usize] += 1;
        let call_id = String::from_utf8_lossy(msg.call_id().unwrap_or_default());
        let status = r.status.as_u16();
        let why = &r.why;
        if r.challenge {
            // Every digest call starts with one: not news for the log.
            tracing::debug!(%call_id, %source, status, "INVITE challenged: {why}");
        } else {
            tracing::info!(%call_id, %source, status, "INVITE refused: {why}");
        }
        let mut b = ResponseBuilder::new(msg, r.status)
            .received(source)
            .to_tag(&self.rng.tag())
            .server(&self.cfg.server_header);
        if let Some(reason) = &r.reason {
            b = b.reason(reason);
        }
        for (name, value) in &r.headers {
            b = b.header(name, value);
        }
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status: r.status,
            bytes: b.build(),
        });
    }

    /// The answer to an INVITE admission refused: a fresh digest challenge
    /// (`407`, `stale=true` after an expired nonce) or the status of the
    /// SPEC §3 row that failed, its reason phrase naming the limit.
    fn rejection(
        &self,
        msg: &Message,
        refusal: &Refusal,
        source: SocketAddr,
        now: Instant,
    ) -> Rejection {
        let mut r = Rejection::new(refusal.status(), refusal.cause(), refusal);
        match refusal {
            Refusal::Auth(e) if e.challenge_kind().is_some() => {
                let now_unix = self.cfg.wall.unix_secs(now);
                // MD5 alone for UAs that give up on a list naming SHA-256.
                r.headers =
                    self.admission
                        .auth()
                        .rejection_headers_for(e, msg, source.ip(), now_unix);
                // A first INVITE without credentials is the normal start.
                r.challenge = matches!(e, crate::auth::AuthError::Missing(_));
            }
            Refusal::Policy { denied, .. } => r.reason = Some(denied.reason_phrase().into_owned()),
            _ => {}
        }
        r
    }

    fn reply(
        &mut self,
        req: &Message,
        key: &TransactionKey,
        source: SocketAddr,
        status: StatusCode,
    ) {
        let bytes = ResponseBuilder::new(req, status)
            .received(source)
            .to_tag(&self.rng.tag())
            .server(&self.cfg.server_header)
            .build();
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status,
            bytes,
        });
    }

    fn next_seed(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A new INVITE (no To tag) on server transaction `key`: admission
    /// (SPEC §3), then `100 Trying`, routing and the B-leg INVITE.
    /// `from_fleet`: `source` is another node of the fleet relaying a call
    /// to a trunk registered here (README "Fleets"): it is delivered to
    /// this node's own contacts of the trunk its Request-URI names.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_invite(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        source: SocketAddr,
        transport: Transport,
        locations: &dyn Locations,
        from_fleet: bool,
        now: Instant,
    ) {
        if self.draining {
            let mut r = Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCause::Draining,
                &"shutting down",
            );
            r.headers.push(("Retry-After", "30".to_owned()));
            return self.refuse(msg, &key, source, r);
        }
        if let Some(r) = self.invite_replaces(msg) {
            tracing::info!(
                call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
                %source,
                status = r.status.0,
                "INVITE with Replaces refused"
            );
            return self.refuse(msg, &key, source, r);
        }
        if let Some(min) = session_timer::too_small(msg, &self.cfg.session) {
            // RFC 4028 §8: too brief an interval, before any policy work.
            let mut r = Rejection::new(
                StatusCode::SESSION_INTERVAL_TOO_SMALL,
                RefusalCause::Unrelayable,
                &"Session-Expires below min_se_s",
            );
            r.headers.push(("Min-SE", min.to_string()));
            return self.refuse(msg, &key, source, r);
        }
        let trusted = self.upstreams.is_trusted(source.ip());
        let now_unix = self.cfg.wall.unix_secs(now);
        let channels = &self.channels;
        let admitted = if from_fleet {
            self.admission.admit_relayed(msg)
        } else if self.to_registered_contact(msg, source) {
            // SPEC §8.1: a DID call of the upstream we registered at.
            self.admission.admit_to_contact(msg, |k| channels.active(k))
        } else {
            self.admission
                .admit(msg, source.ip(), trusted, now_unix, |k| channels.active(k))
        };
        let admitted = admitted.and_then(|a| Ok((a.take_channel(channels, 0)?, a)));
        let (channel, admitted) = match admitted {
            Ok(a) => {
                self.auth_outcomes.push_back((source.ip(), Ok(())));
                a
            }
            Err(refusal) => {
                if let Refusal::Auth(e) = &refusal {
                    self.auth_outcomes.push_back((source.ip(), Err(*e)));
                }
                let r = self.rejection(msg, &refusal, source, now);
                if let Refusal::Policy { trunk, .. } = &refusal {
                    self.record_refusal(msg, transport, Some(trunk), None, r.status, now);
                }
                return self.refuse(msg, &key, source, r);
            }
        };
        let local_only = crate::routing::LocalOnly(locations);
        let locations: &dyn Locations = if from_fleet { &local_only } else { locations };
        let plan = match self.plan(&admitted, locations, now) {
            Ok(p) => p,
            Err(r) => {
                let trunk = admitted.trunk.as_deref();
                self.record_refusal(msg, transport, trunk, Some(&admitted), r.status, now);
                return self.refuse(msg, &key, source, r);
            }
        };
        if admitted.emergency {
            tracing::warn!(
                call_id = %String::from_utf8_lossy(msg.call_id().unwrap_or_default()),
                %source,
                trunk = ?admitted.trunk_id(),
                caller = %admitted.decision.caller_id,
                "emergency call to {}: no channel, rate, cost or duration limit, to the upstreams",
                admitted.decision.number
            );
        }
        // A relayed call's events are the relaying node's to send.
        let status_url = self
            .admission
            .status_url(admitted.direction, admitted.did.as_deref())
            .filter(|_| !from_fleet);
        // On a node of a fleet the channel just taken is the node's view;
        // a limited one is confirmed by the fleet's counter.
        let confirm = admitted
            .channel_limit()
            .filter(|_| self.channels.confirms())
            .map(|limit| {
                (
                    channel.key().clone(),
                    limit,
                    admitted.channel_refusal(limit),
                )
            });
        let new = NewCall {
            invite: msg,
            key: key.clone(),
            source,
            transport,
            plan,
            admitted,
            channel,
            status_url,
        };
        let trunk = new.admitted.trunk.clone();
        // SPEC §8.4: anchored when the trunk, the upstream it came from or
        // the upstream/trunk of any hop says `relay`.
        let relay = trunk.as_ref().is_some_and(|t| t.media.relays())
            || new.plan.iter().any(|h| h.media.relays())
            || self
                .upstreams
                .iter()
                .any(|u| u.media.relays() && u.owns(source.ip()));
        // A trunk's phone may sit behind NAT; a carrier's SDP is trusted.
        let nat = [
            new.admitted.direction == Direction::Placed,
            new.plan.first().is_some_and(|h| h.carrier.is_none()),
        ];
        let mut call = match Call::new(new, &self.cfg, now, &mut self.rng) {
            Ok(c) => c,
            Err(status) => {
                self.record_refusal(msg, transport, trunk.as_deref(), None, status, now);
                let r = Rejection::new(
                    status,
                    RefusalCause::Unrelayable,
                    &"the INVITE cannot be relayed",
                );
                return self.refuse(msg, &key, source, r);
            }
        };
        let trying = ResponseBuilder::new(msg, StatusCode::TRYING)
            .received(source)
            .build();
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status: StatusCode::TRYING,
            bytes: trying,
        });
        self.stats.calls += 1;
        if relay {
            call.anchor_media(nat);
        }
        let id = self.table.insert(call);
        if let Some((key, limit, refusal)) = confirm {
            // A fleet's counter has the last word before the B-leg goes.
            return self.ask_channel(id, key, limit, refusal, now);
        }
        self.start_b_leg(id, false, now);
    }

    /// Sends call `id`'s first B-leg INVITE, or for a relayed call asks
    /// the relay for its offer first (the INVITE waits for it). The call
    /// goes on with its channel (`granted`: the fleet's counter counted it).
    fn start_b_leg(&mut self, id: CallId, granted: bool, now: Instant) {
        if let Some(channel) = self
            .table
            .calls
            .get_mut(&id)
            .and_then(|c| c.channel.as_mut())
        {
            channel.go_on(granted);
        }
        if self.relays(id) {
            return self.media_input(id, call::Held::Invite, now);
        }
        self.with_call(id, now, |call, fx| {
            if !call.send_attempt(fx) {
                call.end_call(None, StatusCode::SERVICE_UNAVAILABLE, fx);
            }
        });
    }

    /// Whether `msg` from `source` is a call from a registration trunk's
    /// upstream to the contact we registered there: its Request-URI user is
    /// the account. Recognised by source address whether or not the
    /// upstream is `trusted` (registering there is trusting it).
    fn to_registered_contact(&self, msg: &Message, source: SocketAddr) -> bool {
        let Some(user) = msg.request_uri().and_then(|u| u.user) else {
            return false;
        };
        self.upstreams.iter().enumerate().any(|(i, u)| {
            u.owns(source.ip())
                && self
                    .registrations
                    .is_registered_user(&self.upstreams, i, user)
        })
    }

    /// The hops of an admitted call (a new INVITE or a transfer's new
    /// call), each plan with its own seed for the weighted choice.
    fn plan(
        &mut self,
        admitted: &Admitted,
        locations: &dyn Locations,
        now: Instant,
    ) -> Result<Vec<crate::routing::Hop>, Rejection> {
        // What the node's other shards learned of upstream health.
        self.upstreams.sync_health();
        let seed = self.next_seed();
        plan::Planner {
            upstreams: &self.upstreams,
            admission: &self.admission,
            locations,
            domain: &self.cfg.local.public_address,
            did_hosts: &self.did_hosts,
            seed,
            now,
        }
        .plan(admitted)
    }

    /// The CDR of an INVITE refused after its trunk was identified: failed,
    /// no duration, no charge (SPEC §6; issue #4 "incl. policy rejections").
    /// `transport`: the caller's; the record has no B-leg transport.
    fn record_refusal(
        &mut self,
        msg: &Message,
        transport: Transport,
        trunk: Option<&TrunkConfig>,
        admitted: Option<&Admitted>,
        status: StatusCode,
        now: Instant,
    ) {
        let user = |na: Option<crate::sip::NameAddr<'_>>| {
            na.and_then(|n| n.uri.user.map(str::to_owned))
                .unwrap_or_default()
        };
        let (from, to) = match admitted {
            Some(a) => (a.decision.caller_id.clone(), a.decision.number.clone()),
            None => (
                // The caller ID the call would have carried, as on answered calls.
                match trunk {
                    Some(t) => crate::policy::caller_id(t, Some(&user(msg.from().ok()))),
                    None => user(msg.from().ok()),
                },
                msg.request_uri()
                    .and_then(|u| u.user.map(str::to_owned))
                    .unwrap_or_else(|| user(msg.to().ok())),
            ),
        };
        let rate = admitted.and_then(|a| a.decision.rate());
        let cdr = Cdr {
            call_id: String::from_utf8_lossy(msg.call_id().unwrap_or_default()).into_owned(),
            start_unix_ms: self.cfg.wall.unix_ms(now),
            direction: admitted.map_or(Direction::Placed, |a| a.direction),
            from,
            to,
            duration_s: 0,
            disposition: Disposition::from_final(status.0, false),
            sip_code: status.0,
            per_minute: rate.map_or(0.0, |r| r.per_minute),
            destination: rate.map_or_else(String::new, |r| r.name.clone()),
            sip_trunk: admitted.map_or_else(
                || trunk.map_or("", |t| t.login()).to_owned(),
                |a| a.sip_trunk().to_owned(),
            ),
            trunk_id: trunk.map(|t| t.id()),
            a_transport: Some(transport),
            b_transport: None,
        };
        let did = admitted.and_then(|a| a.did.as_deref());
        let url = self.admission.status_url(cdr.direction, did);
        push_final_event(&mut self.call_events, &cdr, url, &self.cfg.wall, now);
        self.records.push_back(cdr);
    }

    /// Starts a graceful stop: from now on new INVITEs are answered `503`
    /// with `Retry-After`, while calls in progress continue (SPEC §2
    /// `drain_s`; the shell ends the rest with [`B2bua::hang_up_all`]).
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// Ends every call now (process stop): confirmed calls get BYE on both
    /// legs, ringing ones `503` on the A-leg and CANCEL on the B-leg. Each
    /// call's CDR is queued at once, without waiting for the B-leg INVITE
    /// to finish, so a graceful stop loses no record.
    pub fn hang_up_all(&mut self, now: Instant) {
        self.unregister_all(now);
        let ids: Vec<CallId> = self.table.calls.keys().copied().collect();
        for id in ids {
            self.with_call(id, now, |call, fx| {
                call.end_call(None, StatusCode::SERVICE_UNAVAILABLE, fx);
                call.end(fx);
            });
        }
    }

    /// An in-dialog request (To tag present, not ACK) on server
    /// transaction `key`; `481` when it matches no call (RFC 3261 §12.2.2).
    pub fn handle_in_dialog(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some((id, side)) = self.find_dialog(msg) else {
            self.stats.no_dialog += 1;
            return self.reply(
                msg,
                &key,
                source,
                StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST,
            );
        };
        self.before_in_dialog(id, side, msg);
        if msg.method() != Some(&crate::sip::Method::Bye) && self.relays(id) {
            let held = call::Held::Request {
                side,
                msg: msg.detached(),
                key,
            };
            return self.media_input(id, held, now);
        }
        self.with_call(id, now, |call, fx| call.on_request(side, msg, &key, fx));
    }

    /// An ACK that no transaction absorbed: the ACK for a 2xx (§13.2.2.4).
    /// ACKs matching no call are dropped (§17.2.3).
    pub fn handle_ack(&mut self, msg: &Message, now: Instant) {
        if let Some((id, side)) = self.find_dialog(msg) {
            if self.relays(id) {
                let msg = msg.detached();
                return self.media_input(id, call::Held::Ack { side, msg }, now);
            }
            self.with_call(id, now, |call, fx| call.on_ack(side, msg, fx));
        }
    }

    /// A new CANCEL on its own server transaction `cancel`, for the INVITE
    /// server transaction `invite`. Returns false when no call has that
    /// INVITE: the caller answers `481` (§9.2).
    pub fn handle_cancel(
        &mut self,
        msg: &Message,
        cancel: &TransactionKey,
        invite: &TransactionKey,
        now: Instant,
    ) -> bool {
        let Some(&id) = self.table.invites.get(invite) else {
            return false;
        };
        self.with_call(id, now, |call, fx| call.on_cancel(msg, cancel, fx));
        true
    }

    /// A response the transaction layer delivered for client transaction `key`.
    pub fn handle_response(&mut self, msg: &Message, key: &TransactionKey, now: Instant) {
        if let Some(status) = msg.status() {
            if self.health.on_response(key, status, &mut self.upstreams) {
                return;
            }
        }
        let mut ctx = registration::Ctx {
            ups: &self.upstreams,
            local: &self.cfg.local,
            now,
            rng: &mut self.rng,
            out: &mut self.actions,
        };
        if self.registrations.on_response(key, msg, &mut ctx) {
            return;
        }
        let Some((id, purpose)) = self.table.clients.get(key).cloned() else {
            return;
        };
        if let (table::Purpose::Invite { attempt }, Some(status)) = (&purpose, msg.status()) {
            if status.0 < 500 && status.0 != 408 {
                self.passive_health(id, *attempt, true);
            }
        }
        if self.relays(id) {
            let msg = msg.detached();
            return self.media_input(id, call::Held::Response { purpose, msg }, now);
        }
        self.with_call(id, now, |call, fx| call.on_response(&purpose, msg, fx));
    }

    /// A transaction event: client timeouts and transport errors are "no
    /// response" (fail-over, 408 on relays); terminations release the call.
    pub fn handle_transaction_event(&mut self, ev: &TransactionEvent, now: Instant) {
        match ev {
            TransactionEvent::Timeout { key, .. } | TransactionEvent::TransportError { key } => {
                if self.health.on_failure(key, &mut self.upstreams) {
                    return;
                }
                let mut ctx = registration::Ctx {
                    ups: &self.upstreams,
                    local: &self.cfg.local,
                    now,
                    rng: &mut self.rng,
                    out: &mut self.actions,
                };
                if self.registrations.on_failure(key, &mut ctx) {
                    return;
                }
                if let Some((id, purpose)) = self.table.clients.get(key).cloned() {
                    if let table::Purpose::Invite { attempt } = &purpose {
                        self.passive_health(id, *attempt, false);
                    }
                    self.with_call(id, now, |call, fx| call.on_no_response(&purpose, fx));
                } else if let Some(&id) = self.table.invites.get(key) {
                    // The A-leg INVITE's Timer C guard: ringing too long.
                    // The B-leg is cancelled; the call cannot outlive it.
                    self.with_call(id, now, |call, fx| {
                        call.end_call(None, StatusCode::REQUEST_TIMEOUT, fx);
                    });
                }
            }
            TransactionEvent::Terminated { key } => {
                if self.health.on_terminated(key) || self.registrations.on_terminated(key) {
                    return;
                }
                if let Some((id, purpose)) = self.table.clients.remove(key) {
                    let invite = matches!(purpose, table::Purpose::Invite { .. });
                    self.with_call(id, now, |call, _| {
                        call.open = call.open.saturating_sub(1);
                        if invite {
                            call.open_invites = call.open_invites.saturating_sub(1);
                        }
                    });
                }
            }
        }
    }

    /// Client transactions whose requests went to `dest` over `transport`
    /// while their call waits for them (a failed send is then reported to
    /// the transaction layer, which fails them over). O(calls): only on
    /// send failures.
    pub fn clients_to(&self, dest: SocketAddr, transport: Transport) -> Vec<TransactionKey> {
        self.table
            .clients
            .iter()
            .filter(|(_, (id, p))| {
                matches!(p, table::Purpose::Invite { .. })
                    && self
                        .table
                        .calls
                        .get(id)
                        .is_some_and(|c| c.b_dest() == (dest, transport))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Fires call timers and upstream pings due at `now`. The first call
    /// starts the OPTIONS pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.upstreams.sync_health();
        self.registrations
            .arm(&self.upstreams, &self.cfg.local, now, &mut self.rng);
        if self.node_duties {
            self.health.arm(&self.upstreams, now);
            self.health.handle_timeout(
                &self.upstreams,
                &self.cfg.local,
                now,
                &mut self.rng,
                &mut self.actions,
            );
            let mut ctx = registration::Ctx {
                ups: &self.upstreams,
                local: &self.cfg.local,
                now,
                rng: &mut self.rng,
                out: &mut self.actions,
            };
            self.registrations.handle_timeout(&mut ctx);
        }
        self.media_timeouts(now);
        self.fleet_timeouts(now);
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            let due = self.table.calls.get_mut(&id).is_some_and(|c| {
                c.scheduled == Some(at) && {
                    c.scheduled = None;
                    true
                }
            });
            if due {
                self.with_call(id, now, |call, fx| call.on_timeout(fx));
            }
        }
    }

    /// An upstream target answered (or never answered) B-leg INVITE
    /// `attempt` of call `id`: its health follows.
    fn passive_health(&mut self, id: CallId, attempt: usize, alive: bool) {
        if let Some(dest) = self
            .table
            .calls
            .get(&id)
            .and_then(|c| c.attempt_dest(attempt))
        {
            health::call_outcome(&mut self.upstreams, dest, alive);
        }
    }

    /// Whether call `id`'s media is anchored (its SDP goes through the
    /// relay, SPEC §8.4).
    fn relays(&self, id: CallId) -> bool {
        self.table.calls.get(&id).is_some_and(Call::relays)
    }

    fn find_dialog(&self, msg: &Message) -> Option<(CallId, Side)> {
        let call_id = msg.call_id().ok()?;
        // Borrowed unless the Call-ID is not UTF-8 (legs store it lossily).
        let call_id = String::from_utf8_lossy(call_id);
        self.table.find_dialog(&call_id, msg.to_tag()?)
    }

    /// Runs `f` on call `id` (see `run_call`), then what it means for the
    /// other call of a transfer (`transfer.rs`).
    fn with_call(&mut self, id: CallId, now: Instant, f: impl FnOnce(&mut Call, &mut Fx<'_>)) {
        if let Some(followup) = self.run_call(id, now, f) {
            self.transfer_followup(id, followup, now);
        }
    }

    /// Runs `f` on call `id`, then indexes its new client transactions,
    /// removes it if finished, else reschedules its timer.
    fn run_call(
        &mut self,
        id: CallId,
        now: Instant,
        f: impl FnOnce(&mut Call, &mut Fx<'_>),
    ) -> Option<call::Followup> {
        let call = self.table.calls.get_mut(&id)?;
        let mut fx = Fx {
            actions: &mut self.actions,
            new_clients: Vec::new(),
            cfg: &self.cfg,
            now,
            reroute: redirect::Reroute {
                upstreams: &self.upstreams,
                admission: &self.admission,
                seed: self.rng.next_u64(),
            },
            rng: &mut self.rng,
        };
        f(call, &mut fx);
        B2bua::media_queue_delete(&mut self.media, call, id, now);
        let followup = call.xfer.followup(call.phase);
        if !call.holds_channel() {
            // A failure answered or the end: the channel is free again.
            call.channel = None;
        }
        while let Some(ev) = call.poll_status(&self.cfg.wall, now) {
            self.call_events.push_back(ev);
        }
        if !call.recorded {
            // A call relayed here by another node of the fleet is
            // recorded (and reported) by that node, once.
            let cdr = call.cdr(&self.cfg.wall);
            if cdr.is_some() && call.terms.relayed() {
                call.recorded = true;
            } else if let Some(cdr) = cdr {
                call.recorded = true;
                quality::count(
                    &mut self.stats.quality,
                    &cdr.sip_trunk,
                    cdr.sip_code,
                    call.post_dial_delay(),
                );
                let url = call.status_url.clone();
                push_final_event(&mut self.call_events, &cdr, url, &self.cfg.wall, now);
                self.records.push_back(cdr);
            }
        }
        let new = std::mem::take(&mut fx.new_clients);
        call.open += new.len();
        for (key, purpose) in new {
            if matches!(purpose, table::Purpose::Invite { .. }) {
                call.open_invites += 1;
            }
            self.table.clients.insert(key, (id, purpose));
        }
        if call.finished(now, &self.cfg) {
            self.table.remove(id);
            return followup;
        }
        let next = call
            .next_deadline(&self.cfg)
            .map(|d| d.max(now + Duration::from_millis(1)));
        if next != call.scheduled {
            call.scheduled = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, id)));
            }
        }
        if self.heap.len() > 2 * self.table.calls.len() + 64 {
            let calls = &self.table.calls;
            self.heap = calls
                .iter()
                .filter_map(|(id, c)| c.scheduled.map(|at| Reverse((at, *id))))
                .collect();
        }
        followup
    }
}

/// Queues a call's `completed`/`failed` event (SPEC §7), built from its
/// CDR so the two agree, when the call has a webhook `url`.
fn push_final_event(
    events: &mut VecDeque<CallEvent>,
    cdr: &Cdr,
    url: Option<Arc<str>>,
    wall: &WallClock,
    now: Instant,
) {
    if let Some(url) = url {
        events.push_back(CallEvent::from_cdr(cdr, url, wall.unix_secs(now)));
    }
}

#[cfg(test)]
mod tests;
