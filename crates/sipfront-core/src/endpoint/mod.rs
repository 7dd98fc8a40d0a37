//! The sans-IO SIP endpoint: one parsed message in, transmissions out.
//!
//! `Endpoint` is the single place where a datagram or TCP frame becomes a SIP
//! message (parse once, at the edge), meets its transaction (RFC 3261 §17) and
//! gets the answers every SIP element owes without any policy: `OPTIONS` to us
//! (`200`), `Max-Forwards: 0` (`483`, §16.3), unsupported `Require` /
//! `Proxy-Require` (`420`, §8.2.2.3), unknown or not-yet-offered methods
//! (`501`/`405`, §8.2.1), `CANCEL` without its INVITE (`481`, §9.2), malformed
//! requests (`400`/`413`/`416`/`505` with the reason when a response can be
//! addressed, else dropped and counted).
//!
//! Responses go back over the transport the request came in on, to the
//! packet's *source* address and port (symmetric response routing, as
//! Kamailio's `force_rport` does: the only address that reliably reaches a UA
//! behind NAT). The top Via of every response carries `received`/`rport`
//! (RFC 3581 §4, RFC 3261 §18.2.1) so the UA learns its public address.
//!
//! REGISTER (with or without a To tag: it has no dialog) is digest-checked
//! (`401` challenge, `403`) and handed to the [`Registrar`], which owns the
//! location store; its expiry timer is part of `poll_timeout`, and a closed
//! TCP connection drops the bindings that came over it. Its keep-alive pings
//! leave through `poll_transmit`, their answers (responses no transaction
//! claims) come back to it, and every binding change leaves through
//! `poll_binding_write` for the store (`restore_bindings` puts them back at
//! start).
//!
//! Calls go to the [`B2bua`]: a new INVITE, every request with a To tag
//! (in-dialog), the ACK for a 2xx, CANCEL, the responses and events of its
//! client transactions, and transport send failures. The endpoint executes
//! the B2BUA's actions against the transactions (RFC 3261 §17: the B2BUA is
//! the TU of both sides).
//!
//! The calling contract is quinn's: after every `handle`/`handle_timeout`,
//! drain `poll_transmit` (and `poll_cdr`, `poll_call_event`) until `None`, then re-arm one
//! timer at `poll_timeout`. Time only moves forward and is always passed in.

mod answer;
mod challenges;
mod env;
mod guard;
mod metrics;
mod overload;
mod register;
pub mod shard;
mod shared;
mod stats;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use std::sync::Arc;

use crate::auth::Ban;
use crate::b2bua::record::Cdr;
use crate::b2bua::{Action, Admission, B2bua, B2buaConfig, Local};
use crate::config::Config;
use crate::registrar::{BindingWrite, Registrar, RegistrarConfig, RestoreReport, StoredBinding};
use crate::routing::{UpstreamError, Upstreams};
use crate::sip::random::Random;
use crate::sip::{Message, Method, ParseError, Transport};
use crate::transaction::{ClientInput, ServerInput, TimerConfig, Transactions, Transmit};
use crate::transport::{Inbound, Outbound, TransportEvent};

pub use answer::{ALLOW, SUPPORTED};
pub use env::Env;
pub use guard::{GuardConfig, RateLimiter};
pub use metrics::{family, merge as merge_metrics, metric};
pub use overload::OverloadConfig;
pub use shared::{FleetView, SharedState};
pub use stats::{EndedCalls, Stats};

/// Settings of the endpoint that do not change per message.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// RFC 3261 timer values.
    pub timers: TimerConfig,
    /// Value of the `Server` header on responses we originate.
    pub server_header: String,
    /// The B2BUA's settings (our addresses, call limits).
    pub b2bua: B2buaConfig,
    /// Upstream gateways for calls.
    pub upstreams: Upstreams,
    /// Who may call and on what terms (SPEC §3).
    pub admission: Arc<Admission>,
    /// REGISTER expiry bounds and contacts per trunk (`[registrar]`).
    pub registrar: RegistrarConfig,
    /// Bans and scanner rules (`[security]`).
    pub guard: GuardConfig,
    /// When queued messages are shed (`[server] overload_*`).
    pub overload: OverloadConfig,
    /// Seed of the identifiers the core mints ([`Env::seed`]); each shard
    /// needs its own.
    pub seed: [u8; 32],
    /// This core shard's index (below `shards`); shard 0 also runs what
    /// is node-wide (registrar timers and store writes, upstream pings and
    /// registrations).
    pub shard: usize,
    /// Core shards of the node (`[server] workers`); above 1, Call-IDs the
    /// core mints carry the shard's mark ([`shard`]).
    pub shards: usize,
}

/// Unit tests' defaults: [`Env::fixed`] at the time of the call.
#[cfg(test)]
impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig::new(Env::fixed(Instant::now()))
    }
}

impl EndpointConfig {
    /// Defaults (no trunks, no upstreams) around the shell's `env`.
    pub fn new(env: Env) -> Self {
        let local = Local {
            public_address: "127.0.0.1".to_owned(),
            ports: vec![(Transport::Udp, 5060), (Transport::Tcp, 5060)],
        };
        EndpointConfig {
            timers: TimerConfig::default(),
            server_header: concat!("sipfront/", env!("CARGO_PKG_VERSION")).to_owned(),
            b2bua: B2buaConfig::new(local, env.wall),
            upstreams: Upstreams::default(),
            admission: Arc::new(Admission::empty("sipfront.local", env.nonce_secret)),
            registrar: RegistrarConfig::default(),
            guard: GuardConfig::from(&crate::config::SecuritySettings::default()),
            overload: OverloadConfig::from(&crate::config::ServerConfig::default()),
            seed: env.seed,
            shard: 0,
            shards: 1,
        }
    }

    /// The config of core shard `index` of `shards`, minting from `seed`.
    pub fn for_shard(&self, index: usize, shards: usize, seed: [u8; 32]) -> EndpointConfig {
        EndpointConfig {
            shard: index,
            shards,
            seed,
            ..self.clone()
        }
    }

    /// From the config file, the bound listen sockets with their transports
    /// (the first port of each goes in Via and Contact; with port 0 in the
    /// file only the bound one is known) and the shell's `env`.
    ///
    /// # Errors
    /// [`UpstreamError`] for an `[[upstream]]` the B2BUA cannot use.
    pub fn from_config(
        cfg: &Config,
        bound: &[(Transport, SocketAddr)],
        env: Env,
    ) -> Result<EndpointConfig, UpstreamError> {
        let mut out = EndpointConfig::new(env);
        let mut ports: Vec<(Transport, u16)> = Vec::new();
        for (t, a) in bound {
            if !ports.iter().any(|(x, _)| x == t) {
                ports.push((*t, a.port()));
            }
        }
        let local = Local {
            public_address: cfg.server.public_address.clone(),
            ports,
        };
        out.b2bua = B2buaConfig::new(local, env.wall);
        out.b2bua.ring_timeout = std::time::Duration::from_secs(cfg.server.ring_timeout_s);
        out.b2bua.session = crate::b2bua::session_timer::SessionConfig {
            expires: std::time::Duration::from_secs(cfg.server.session_expires_s),
            min_se: std::time::Duration::from_secs(cfg.server.min_se_s),
        };
        out.b2bua.server_header.clone_from(&out.server_header);
        // The client fails a request after its whole budget; the core
        // waits a little longer so the client's answer (and reason) wins.
        out.b2bua.media_timeout = cfg.media.budget() + std::time::Duration::from_millis(500);
        // The shell answers `Unknown` after its own timeout; the core's
        // deadline is the backstop for a shell that never answers.
        out.b2bua.fleet_timeout =
            std::time::Duration::from_millis(cfg.cluster.timeout_ms.saturating_mul(2));
        out.upstreams = Upstreams::from_config(&cfg.upstream)?;
        out.admission = Arc::new(Admission::new(cfg, env.nonce_secret));
        out.registrar = RegistrarConfig::from(&cfg.registrar);
        out.guard = GuardConfig::from(&cfg.security);
        out.overload = OverloadConfig::from(&cfg.server);
        Ok(out)
    }
}

/// The sans-IO core of one SIP node.
///
/// # Calling contract
/// * `handle(inbound, now)` for every message from the network,
///   `handle_timeout(now)` when the deadline from `poll_timeout` is reached;
/// * after each of them, drain `poll_transmit` until it returns `None`;
/// * `now` never goes backwards.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    txns: Transactions,
    b2bua: B2bua,
    outbox: VecDeque<Outbound>,
    stats: Stats,
    /// What crosses calls: channel counters, bans, rate limiter, the
    /// registrar.
    shared: Arc<SharedState>,
    /// Shard 0: runs the registrar's timers and writes.
    owner: bool,
    /// A REGISTER or a closed connection changed the registrar on this
    /// (non-owner) shard: shard 0 should look at its timers and writes.
    nudge_owner: bool,
    next_sweep: Instant,
    /// Mints the To tags of the endpoint's own answers.
    rng: Random,
    /// REGISTER challenges sent without a transaction, for answering
    /// retransmissions with the same bytes.
    challenges: challenges::Challenges,
}

impl Endpoint {
    /// A new endpoint with no transactions and state of its own.
    pub fn new(cfg: EndpointConfig) -> Self {
        let shared = Arc::new(SharedState::new(&cfg.guard));
        Endpoint::with_shared(cfg, shared)
    }

    /// A new endpoint (core shard `cfg.shard`) counting channels, bans
    /// and rates and keeping registrations in `shared`, which the node's
    /// other shards share. Shard 0 installs the registrar there (build it
    /// first); the others use it.
    pub fn with_shared(cfg: EndpointConfig, shared: Arc<SharedState>) -> Self {
        let mut b2cfg = cfg.b2bua.clone();
        b2cfg.timers = cfg.timers;
        let mut rng = Random::from_seed(cfg.seed);
        if cfg.shards > 1 {
            rng = rng.with_shard(u8::try_from(cfg.shard).unwrap_or(u8::MAX));
        }
        let owner = cfg.shard == 0;
        if owner {
            let mut registrar = Registrar::new(cfg.registrar, rng.fork());
            registrar.set_local(cfg.b2bua.local.sent_by(crate::sip::Transport::Udp));
            *shared.registrar() = registrar;
        }
        let mut b2bua = B2bua::new(
            b2cfg,
            cfg.upstreams.clone(),
            cfg.admission.clone(),
            rng.fork(),
        );
        b2bua.share_channels(Arc::clone(shared.channels()));
        b2bua.set_node_duties(owner);
        let challenges = challenges::Challenges::new(cfg.timers.t1x64(), rng.next_u64());
        Endpoint {
            challenges,
            txns: Transactions::new(cfg.timers),
            b2bua,
            shared,
            owner,
            nudge_owner: false,
            next_sweep: cfg.b2bua.wall.at,
            cfg,
            outbox: VecDeque::new(),
            stats: Stats::default(),
            rng,
        }
    }

    /// Counters for metrics and tests.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The B2BUA (session table, counters).
    pub fn b2bua(&self) -> &B2bua {
        &self.b2bua
    }

    /// The registrar and its location store (inbound calls to trunks,
    /// `/v1/registrations`), shared by the node's shards: locked while
    /// the guard lives.
    pub fn registrar(&self) -> std::sync::MutexGuard<'_, Registrar> {
        self.shared.registrar()
    }

    /// Whether this shard runs the node-wide work (shard 0).
    pub fn is_owner(&self) -> bool {
        self.owner
    }

    /// True once after this (non-owner) shard changed the shared
    /// registrar: the shell then wakes shard 0, whose timers and store
    /// writes may have changed.
    pub fn take_owner_nudge(&mut self) -> bool {
        std::mem::take(&mut self.nudge_owner)
    }

    /// A registrar change made on this shard (shard 0 must look).
    fn registrar_changed(&mut self) {
        self.nudge_owner |= !self.owner;
    }

    /// Feeds one event from the transport.
    pub fn handle_event(&mut self, event: TransportEvent, now: Instant) {
        match event {
            TransportEvent::Inbound(inbound) => self.handle(inbound, now),
            TransportEvent::SendFailed {
                dest,
                error,
                transport,
                conn,
            } => {
                // RFC 3261 §17.1.4: a transport error ends the client
                // transactions sent there (the B-leg INVITE fails over).
                // Every shard hears it (it may hold such transactions);
                // shard 0 counts it and owns the registrar's part.
                if self.owner {
                    self.stats.send_failures += 1;
                }
                tracing::debug!(%dest, ?error, "send failed");
                for key in self.b2bua.clients_to(dest, transport) {
                    self.txns.transport_error(&key, now);
                }
                self.drain_transactions(now);
                // The named connection is gone (a keep-alive found it so):
                // its bindings go, as on close.
                if let (
                    true,
                    Some(conn),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::NotConnected,
                ) = (self.owner, conn, error)
                {
                    self.shared.registrar().connection_closed(conn);
                }
            }
            // Every shard hears it; the shared registrar once.
            TransportEvent::Closed { conn, .. } => {
                if self.owner {
                    self.shared.registrar().connection_closed(conn);
                }
            }
        }
    }

    /// Feeds one message from the network.
    pub fn handle(&mut self, inbound: Inbound, now: Instant) {
        self.stats.received += 1;
        if self.banned(inbound.peer.ip(), now) {
            return;
        }
        match Message::parse(inbound.bytes.clone()) {
            Ok(msg) if msg.is_request() => {
                if !self.scanner(&msg) {
                    self.handle_request(msg, &inbound, now);
                }
            }
            Ok(msg) => self.handle_response(msg, now),
            Err(err) => self.reject_malformed(&inbound, &err),
        }
        self.drain_transactions(now);
    }

    /// Advances timers to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.challenges.expire(now);
        self.txns.handle_timeout(now);
        self.drain_transactions(now);
        self.b2bua.handle_timeout(now);
        self.drain_transactions(now);
        if self.owner {
            self.shared.registrar().handle_timeout(now);
        }
    }

    /// Puts the bindings read from the store back (once, at start, before
    /// the first message); see [`Registrar::restore`].
    pub fn restore_bindings(
        &mut self,
        stored: Vec<(String, StoredBinding)>,
        now: Instant,
    ) -> RestoreReport {
        let now_unix_ms = self.cfg.b2bua.wall.unix_ms(now);
        self.shared.registrar().restore(stored, now, now_unix_ms)
    }

    /// The next login whose bindings the store must be told about (drain
    /// after each input, with `poll_cdr`). Only shard 0 hands them out.
    pub fn poll_binding_write(&mut self, now: Instant) -> Option<BindingWrite> {
        if !self.owner {
            return None;
        }
        let now_unix_ms = self.cfg.b2bua.wall.unix_ms(now);
        self.shared.registrar().poll_write(now, now_unix_ms)
    }

    /// Logins whose bindings changed and are not yet handed out by
    /// [`poll_binding_write`](Self::poll_binding_write) (0 on shards but 0).
    pub fn pending_binding_writes(&self) -> usize {
        if !self.owner {
            return 0;
        }
        self.shared.registrar().pending_writes()
    }

    /// The earliest instant at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.txns.poll_timeout(),
            self.b2bua.poll_timeout(),
            self.owner
                .then(|| self.shared.registrar().poll_timeout())
                .flatten(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next call record to queue to the store (drain after each input,
    /// with `poll_transmit`).
    pub fn poll_cdr(&mut self) -> Option<Cdr> {
        let cdr = self.b2bua.poll_cdr()?;
        self.stats.count_ended(&cdr);
        Some(cdr)
    }

    /// The next call-status event for the webhook dispatcher (SPEC §7);
    /// drain after each input, with `poll_cdr`.
    pub fn poll_call_event(&mut self) -> Option<crate::b2bua::event::CallEvent> {
        self.b2bua.poll_call_event()
    }

    /// Starts a graceful stop: new INVITEs get `503`, calls go on.
    pub fn drain(&mut self) {
        self.b2bua.drain();
    }

    /// Unregisters the registration trunks (`Expires: 0`, challenges
    /// answered) at the start of a stop; drain `poll_transmit` after it.
    pub fn unregister_all(&mut self, now: Instant) {
        self.b2bua.unregister_all(now);
        self.drain_transactions(now);
    }

    /// Ends every call now (process stop) and unregisters the registration
    /// trunks; drain `poll_transmit` and `poll_cdr` after it.
    pub fn hang_up_all(&mut self, now: Instant) {
        self.b2bua.hang_up_all(now);
        self.drain_transactions(now);
    }

    /// Applies a new configuration to new calls: trunks, DIDs and rates
    /// (SPEC §2). Calls in progress keep their terms; nonces already sent
    /// stay valid. Listen sockets and upstreams need a restart.
    pub fn reload(&mut self, cfg: &Config) {
        let admission = self.b2bua.admission().reload(cfg);
        self.b2bua.set_admission(Arc::new(admission));
        self.b2bua
            .retain_did_hosts(&crate::routing::did_hosts::collect(&cfg.did));
        if self.owner {
            self.shared
                .registrar()
                .set_config(RegistrarConfig::from(&cfg.registrar));
        }
        self.cfg.guard = GuardConfig::from(&cfg.security);
        self.cfg.overload = OverloadConfig::from(&cfg.server);
        self.shared.bans().set_policy(self.cfg.guard.bans.clone());
    }

    /// A DNS answer for upstream `index` from the shell (RFC 3263): its
    /// targets from now on (none, with `error`, when the name does not
    /// resolve). Drain `poll_transmit` after it (new targets are pinged).
    pub fn set_upstream_targets(
        &mut self,
        index: usize,
        targets: Vec<crate::routing::Target>,
        error: Option<String>,
        now: Instant,
    ) {
        self.b2bua.set_upstream_targets(index, targets, error, now);
        self.handle_timeout(now);
    }

    /// A DNS answer from the shell for a host name of DID SIP URI
    /// destinations (RFC 3263): its targets from now on (none, with
    /// `error`, when it does not resolve).
    pub fn set_did_host_targets(
        &mut self,
        name: crate::routing::Resolve,
        targets: Vec<crate::routing::Target>,
        error: Option<String>,
    ) {
        self.b2bua.set_did_host_targets(name, targets, error);
    }

    /// The next media relay request of a relayed call (SPEC §8.4) for the
    /// shell's rtpengine client; drain after each input, with
    /// `poll_transmit`. Its answer comes back through
    /// [`handle_media`](Self::handle_media) on this same endpoint.
    pub fn poll_media(&mut self) -> Option<crate::b2bua::media::MediaRequest> {
        self.b2bua.poll_media()
    }

    /// The next channel ask for the fleet's counter (README "Fleets"):
    /// only when the shared channel counters
    /// [`confirm`](crate::b2bua::ChannelCounters::confirms). Drain after
    /// each input, with `poll_transmit`.
    pub fn poll_channel_ask(&mut self) -> Option<crate::b2bua::fleet::ChannelAsk> {
        self.b2bua.poll_channel_ask()
    }

    /// The fleet counter's verdict on an ask from
    /// [`poll_channel_ask`](Self::poll_channel_ask): the call goes on or
    /// is refused. Drain `poll_transmit` after it.
    pub fn handle_channel_answer(
        &mut self,
        answer: crate::b2bua::fleet::ChannelAnswer,
        now: Instant,
    ) {
        self.b2bua.handle_channel_answer(answer, now);
        self.drain_transactions(now);
    }

    /// The media relay's answer to a request from
    /// [`poll_media`](Self::poll_media): the call it held goes on (or
    /// fails with `503`). Drain `poll_transmit` and `poll_media` after it.
    pub fn handle_media(&mut self, result: crate::b2bua::media::MediaResult, now: Instant) {
        self.b2bua.handle_media(result, now);
        self.drain_transactions(now);
    }

    /// Calls in progress (`GET /v1/calls`).
    pub fn calls(&self) -> Vec<crate::b2bua::CallView> {
        self.b2bua.calls()
    }

    /// Ends a call by its A-leg Call-ID (`DELETE /v1/calls/{call_id}`);
    /// drain `poll_transmit` and `poll_cdr` after it. False: no such call.
    pub fn hang_up(&mut self, call_id: &str, now: Instant) -> bool {
        let found = self.b2bua.hang_up(call_id, now);
        self.drain_transactions(now);
        found
    }

    /// Ends every call in progress placed by trunk `trunk`
    /// (`DELETE /v1/trunks/{id}?force=true`); drain `poll_transmit` and
    /// `poll_cdr` after it. Returns how many calls were ended.
    pub fn hang_up_trunk(&mut self, trunk: u64, now: Instant) -> usize {
        let n = self.b2bua.hang_up_trunk(trunk, now);
        self.drain_transactions(now);
        n
    }

    /// Sources banned now, with when each ban ends (`/v1/bans`, metrics).
    pub fn bans(&self, now: Instant) -> Vec<(std::net::IpAddr, Ban)> {
        self.shared.bans().list(now)
    }

    /// Lifts a ban; false if `ip` was not banned.
    pub fn unban(&mut self, ip: std::net::IpAddr) -> bool {
        self.shared.bans().unban(ip)
    }

    /// Packets dropped because their source was banned.
    pub fn banned_drops(&self) -> u64 {
        self.shared.bans().dropped()
    }

    /// The state this endpoint shares with the node's other shards.
    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// The next message to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<Outbound> {
        // One choke point: nothing we send may be larger than what we accept
        // (an answer echoing a huge request's headers would be), so such a
        // message is dropped and counted instead of sent.
        while let Some(out) = self.outbox.pop_front().or_else(|| {
            self.owner
                .then(|| self.shared.registrar().poll_transmit())
                .flatten()
        }) {
            if out.bytes.len() <= crate::sip::MAX_MESSAGE_SIZE {
                return Some(out);
            }
            self.stats.dropped += 1;
            tracing::debug!(dest = %out.dest, len = out.bytes.len(), "oversize message not sent");
        }
        None
    }

    fn handle_request(&mut self, msg: Message, inbound: &Inbound, now: Instant) {
        let waited = now.saturating_duration_since(inbound.received);
        if self.stale_request(&msg, inbound.transport, waited) {
            return;
        }
        let key = match self
            .txns
            .handle_request(&msg, inbound.peer, inbound.transport, now)
        {
            ServerInput::NewRequest { key } => key,
            ServerInput::CancelFor {
                cancel,
                invite: Some(invite),
            } => {
                if self.b2bua.handle_cancel(&msg, &cancel, &invite, now) {
                    return;
                }
                cancel
            }
            ServerInput::CancelFor { cancel, .. } => cancel,
            ServerInput::Ack2xx { .. } => {
                self.b2bua.handle_ack(&msg, now);
                return;
            }
            ServerInput::Invalid(err) => {
                // `Message::parse` validated every header a key needs, so
                // this is a bug, not traffic: count it, never crash.
                self.stats.parse_errors += 1;
                tracing::debug!(peer = %inbound.peer, error = ?err, "request not keyable");
                return;
            }
            // A retransmission (answered by its transaction) or an ACK
            // that a transaction absorbed or whose dialog we do not have.
            ServerInput::Absorbed { .. } | ServerInput::AckForServerInvite { .. } => return,
        };
        let is_cancel = msg.method() == Some(&Method::Cancel);
        let in_dialog = msg.to().is_ok_and(|t| t.tag().is_some());
        let is_invite = msg.method() == Some(&Method::Invite);
        if !is_cancel && (!in_dialog || msg.method() == Some(&Method::Register)) {
            let ip = inbound.peer.ip();
            let why = if !self.within_rate(ip, now) {
                Some("rate limit")
            } else if is_invite && self.overloaded() {
                Some("overload")
            } else if is_invite && self.shed_invite(waited) {
                Some("queued too long")
            } else {
                None
            };
            if let Some(why) = why {
                tracing::debug!(peer = %inbound.peer, waited_ms = waited.as_millis(),
                    "request refused 503: {why}");
                let response = answer::unavailable(&msg, inbound, &self.cfg, &mut self.rng);
                self.stats.count_answer(response.status);
                self.txns
                    .respond(&key, response.bytes, response.status, now);
                return;
            }
        }
        if !is_cancel {
            if let Some(response) = answer::precheck(&msg, inbound, &self.cfg, &mut self.rng) {
                self.stats.count_answer(response.status);
                self.txns
                    .respond(&key, response.bytes, response.status, now);
                return;
            }
            // REGISTER has no dialog, whatever its To tag says.
            if msg.method() == Some(&Method::Register) {
                self.handle_register(&msg, key, inbound, now);
                return;
            }
            if in_dialog && msg.method() == Some(&Method::Refer) {
                self.b2bua
                    .handle_refer(&msg, key, inbound.peer, &*self.shared, now);
                return;
            }
            if in_dialog {
                self.b2bua.handle_in_dialog(&msg, key, inbound.peer, now);
                return;
            }
            if msg.method() == Some(&Method::Invite) {
                let from_fleet = self.shared.is_fleet_peer(inbound.peer);
                self.b2bua.handle_invite(
                    &msg,
                    key,
                    inbound.peer,
                    inbound.transport,
                    &*self.shared,
                    from_fleet,
                    now,
                );
                while let Some((ip, outcome)) = self.b2bua.poll_auth_outcome() {
                    self.auth_outcome(ip, outcome, now);
                }
                return;
            }
        }
        let response = answer::answer(&msg, inbound, &self.cfg, &mut self.rng);
        self.stats.count_answer(response.status);
        self.txns
            .respond(&key, response.bytes, response.status, now);
    }

    fn handle_response(&mut self, msg: Message, now: Instant) {
        match self.txns.handle_response(&msg, now) {
            ClientInput::Response { key } => self.b2bua.handle_response(&msg, &key, now),
            ClientInput::Absorbed { .. } => {}
            // A B2BUA never forwards stray responses (RFC 3261 §17.1.3).
            // Keep-alive OPTIONS go without a transaction: the registrar
            // knows their branches.
            ClientInput::Stray if self.shared.registrar().on_response(&msg) => {}
            ClientInput::Stray | ClientInput::Invalid(_) => self.stats.unmatched_responses += 1,
        }
    }

    fn reject_malformed(&mut self, inbound: &Inbound, err: &ParseError) {
        self.stats.parse_errors += 1;
        match answer::reject(&inbound.bytes, err, inbound, &self.cfg, &mut self.rng) {
            Some(bytes) => self.outbox.push_back(Outbound {
                bytes,
                dest: inbound.peer,
                transport: inbound.transport,
                conn: inbound.conn,
            }),
            None => self.stats.dropped += 1,
        }
        tracing::debug!(peer = %inbound.peer, error = %err, "malformed message");
    }

    /// Runs B2BUA actions and transaction outputs until both are quiet:
    /// an action may create a transaction whose events feed the B2BUA again.
    fn drain_transactions(&mut self, now: Instant) {
        loop {
            let mut progress = false;
            while let Some(action) = self.b2bua.poll_action() {
                progress = true;
                self.execute(action, now);
            }
            while let Some(Transmit {
                dest,
                transport,
                bytes,
            }) = self.txns.poll_transmit()
            {
                // TCP: the transport reuses the connection to `dest` (RFC 3261 §18).
                self.outbox.push_back(Outbound {
                    bytes,
                    dest,
                    transport,
                    conn: None,
                });
            }
            while let Some(ev) = self.txns.poll_event() {
                progress = true;
                self.b2bua.handle_transaction_event(&ev, now);
            }
            if !progress {
                break;
            }
        }
    }

    fn execute(&mut self, action: Action, now: Instant) {
        match action {
            Action::Respond { key, status, bytes } => {
                self.stats.count_answer(status);
                self.txns.respond(&key, bytes, status, now);
            }
            Action::Request {
                request,
                dest,
                transport,
            } => {
                if let Err(e) = self.txns.send_request(request, dest, transport, now) {
                    tracing::debug!(%dest, error = %e, "request refused by the transaction layer");
                }
            }
            Action::Send {
                bytes,
                dest,
                transport,
            } => self.outbox.push_back(Outbound {
                bytes,
                dest,
                transport,
                conn: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
