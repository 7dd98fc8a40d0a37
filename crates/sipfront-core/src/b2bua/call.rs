//! The call state machine (RFC 3261 §13–15 on each leg, §9 CANCEL,
//! RFC 6026 2xx/ACK, RFC 3262 PRACK relay): one A-leg dialog where we are
//! the UAS, one B-leg dialog where we are the UAC, and the rules that relay
//! between them. Sans-IO: inputs carry `now`, outputs go to [`Fx`].
//!
//! Choices where the issue is silent (what FreeSWITCH / Kamailio+topos do):
//! * BYE is answered `200` locally and a new BYE is sent on the other leg.
//! * Each leg ACKs its own 2xx (per-leg ACK); for an offerless INVITE (late
//!   offer) the B-leg ACK waits for the A-leg ACK so the SDP answer in it
//!   reaches B.
//! * A re-INVITE while another INVITE is in progress gets `491`.
//! * 3xx from upstream is never relayed (its Contact would leak): a placed
//!   off-net call follows its Contacts' numbers through the upstreams
//!   (redirect.rs); otherwise, or when none may be followed, `503` (like
//!   401/407), or the trunk policy's refusal of the redirect target.
//! * An attempt with no response at all within `no_answer_failover` is
//!   abandoned and the next upstream is tried (Kamailio's `fr_timer` for
//!   fail-over); a late 2xx from it is ACKed and BYEd, a late 1xx CANCELled.

mod anchor;
mod attended;
mod refer;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::identity;
use super::leg::{is_target_refresh, Leg, Side};
use super::redirect::{self, Redirects, Reroute};
use super::reliable::{self, Reliable};
use super::session_timer;
use super::table::{DialogKey, Purpose, Relay};
use super::upstream_auth::{self, Answered, Step};
use super::{Action, Admitted, B2buaConfig, WallClock};
use crate::auth::{ChallengeAnswer, Credentials};
use crate::b2bua::event::{CallEvent, CallState};
use crate::b2bua::record::{billed_seconds, Cdr, Disposition};
use crate::policy::Route;
use crate::routing::Hop;
use crate::sip::build::{self, RequestBuilder, ResponseBuilder};
use crate::sip::random::Random;
use crate::sip::{HeaderName, Message, Method, NameAddr, StatusCode, Transport};
use crate::transaction::TransactionKey;

pub(crate) use anchor::{delete_request, Anchor, Held};
pub(crate) use refer::{Followup, Xfer};

/// Headers copied from a relayed request (their content is end-to-end
/// application data, not routing).
const REQUEST_PASS: &[&[u8]] = &[
    b"Event",
    b"Subscription-State",
    b"Info-Package",
    b"Recv-Info",
    b"Allow",
    b"Accept",
    b"Subject",
    b"Privacy",
];

/// Headers copied from a relayed response. `Supported`, `Require`, `RSeq`,
/// `Session-Expires` and `Min-SE` are written per leg (`reliable.rs`,
/// `session_timer.rs`), never copied.
const RESPONSE_PASS: &[&[u8]] = &[b"Allow", b"Accept", b"Unsupported", b"Retry-After"];

mod prack;
mod refresh;

/// "Never" for an emergency call's end (a century).
const NO_END: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Effects of one input on a call.
pub(crate) struct Fx<'a> {
    pub(crate) actions: &'a mut std::collections::VecDeque<Action>,
    /// Client transactions to index: (key, purpose).
    pub(crate) new_clients: Vec<(TransactionKey, Purpose)>,
    pub(crate) cfg: &'a B2buaConfig,
    pub(crate) now: Instant,
    /// Routing for redirect targets.
    pub(crate) reroute: Reroute<'a>,
    /// The core's seeded generator (digest cnonces).
    pub(crate) rng: &'a mut Random,
}

impl Fx<'_> {
    fn respond(&mut self, key: &TransactionKey, status: StatusCode, bytes: Bytes) {
        self.actions.push_back(Action::Respond {
            key: key.clone(),
            status,
            bytes,
        });
    }

    /// A digest cnonce from the core's seeded generator.
    fn cnonce(&mut self) -> String {
        upstream_auth::cnonce(self.rng)
    }

    fn raw(&mut self, bytes: Bytes, dest: SocketAddr, transport: Transport) {
        self.actions.push_back(Action::Send {
            bytes,
            dest,
            transport,
        });
    }

    /// Sends a request in a new client transaction; false if it did not build.
    fn request(&mut self, b: RequestBuilder, leg: &Leg, purpose: Purpose) -> Option<Message> {
        let msg = Message::parse(b.build()).ok()?;
        self.request_msg(msg.clone(), leg.dest, leg.transport, purpose);
        Some(msg)
    }

    fn request_msg(
        &mut self,
        msg: Message,
        dest: SocketAddr,
        transport: Transport,
        purpose: Purpose,
    ) {
        let Ok(key) = TransactionKey::client(&msg) else {
            return;
        };
        self.new_clients.push((key, purpose));
        self.actions.push_back(Action::Request {
            request: msg,
            dest,
            transport,
        });
    }
}

/// Where a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// B-leg INVITE sent, nothing relayed to A beyond `100`: fail-over allowed.
    Trying,
    /// A provisional was relayed to A.
    Early,
    /// A cancelled; waiting for the B-leg INVITE to end.
    Cancelled,
    /// 2xx relayed: both dialogs confirmed.
    Confirmed,
    /// Over; waiting for transactions to end before leaving the table.
    Ended,
}

/// A 2xx we sent and retransmit until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct PendingOk {
    side: Side,
    bytes: Bytes,
    cseq: u32,
    next: Option<Instant>,
    interval: Duration,
    give_up: Instant,
    /// Late offer: the ACK owed to the other leg, sent with this ACK's body.
    deferred_ack: Option<(Side, u32)>,
}

/// One B-leg INVITE we sent.
#[derive(Debug)]
struct Attempt {
    invite: Message,
    /// Its hop in the plan.
    hop: usize,
    /// No final response yet, and not given up on.
    live: bool,
    /// A provisional came: it may be cancelled now (RFC 3261 §9.1).
    responded: bool,
    /// To be cancelled when its first provisional comes.
    cancel_pending: bool,
    /// Its CANCEL was sent.
    cancelled: bool,
    /// It carried credentials (a challenge to it is not answered again).
    authed: bool,
}

/// One call: both legs and the state that ties them.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) phase: Phase,
    a: Leg,
    b: Leg,
    a_invite: Message,
    a_invite_key: TransactionKey,
    /// The final status the A-leg INVITE got, once sent.
    a_final: Option<StatusCode>,
    /// Every B-leg INVITE sent so far (Purpose::Invite indexes this).
    attempts: Vec<Attempt>,
    plan: Vec<Hop>,
    /// The next plan index to try.
    step: usize,
    /// Attempts from this index on are the fork ringing now.
    fork_start: usize,
    /// The attempt whose 2xx made the B-leg dialog.
    winner: Option<usize>,
    /// No response at all from the fork by then: next fork.
    attempt_deadline: Option<Instant>,
    /// Hunting (DID destinations): no answer by then: next fork.
    ring_deadline: Option<Instant>,
    last_final: Option<(StatusCode, String)>,
    /// Last ACK sent on each leg for a 2xx: (CSeq, bytes), resent on 2xx retransmits.
    ack_a: Option<(u32, Bytes)>,
    ack_b: Option<(u32, Bytes)>,
    ok: Option<PendingOk>,
    reinvite: bool,
    max_end: Instant,
    ended_at: Option<Instant>,
    /// Client transactions of this call still alive.
    pub(crate) open: usize,
    /// Of those, B-leg INVITE attempts.
    pub(crate) open_invites: usize,
    pub(crate) scheduled: Option<Instant>,
    /// The trunk the call came from and the terms it was admitted with.
    pub(crate) terms: Admitted,
    /// The channel of its trunk or DID the call holds, until the A-leg
    /// gets a failure or the call ends (dropping it gives it back).
    pub(crate) channel: Option<super::ChannelGuard>,
    /// When the INVITE arrived.
    started_at: Instant,
    /// When the B-leg answered (the duration limit and billing start here).
    answered_at: Option<Instant>,
    /// Whether this call's CDR was queued.
    pub(crate) recorded: bool,
    /// SPEC §7: where this call's status events go; `None`: no events.
    pub(crate) status_url: Option<Arc<str>>,
    /// The first provisional relayed to the caller (the `ringing` event).
    rang: Option<StatusCode>,
    /// When it was relayed (the post-dial delay ends there).
    rang_at: Option<Instant>,
    /// Status events emitted so far (the final one goes with the CDR).
    notified: Notified,
    /// Numbers called and upstream redirects followed.
    redirects: Redirects,
    /// Blind transfer (REFER) state, and each leg's last SDP.
    pub(crate) xfer: Xfer,
    /// Credentials for the B-leg's upstream (its hop's account).
    b_auth: Option<Arc<Credentials>>,
    /// B-leg in-dialog requests that carried credentials.
    b_answered: Answered,
    /// RFC 4028 timers and the last SDP sent, per leg.
    sessions: refresh::Sessions,
    /// RFC 3262 state of the A-leg.
    rel: Reliable,
    /// The media relay session of a relayed call (SPEC §8.4).
    pub(crate) media: Option<Anchor>,
}

/// How far the call's status events have gone (SPEC §7), in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Notified {
    #[default]
    Nothing,
    Ringing,
    Answered,
}

/// `"display" <uri>;params` without the tag parameter.
fn addr_without_tag(na: &NameAddr<'_>) -> String {
    let mut s = String::new();
    if let Some(d) = na.display {
        s.push('"');
        s.push_str(d);
        s.push_str("\" ");
    }
    s.push('<');
    s.push_str(na.uri.as_str());
    s.push('>');
    for (name, value) in na.params.iter() {
        if name.eq_ignore_ascii_case("tag") {
            continue;
        }
        s.push(';');
        s.push_str(name);
        if let Some(v) = value {
            s.push('=');
            s.push_str(v);
        }
    }
    s
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What a failure from upstream becomes on the A-leg.
fn map_failure(status: StatusCode) -> StatusCode {
    match status.0 {
        // Never leak upstream credentials challenges or redirect targets.
        401 | 407 | 300..=399 => StatusCode::SERVICE_UNAVAILABLE,
        _ => status,
    }
}

/// The input needed to create a call.
pub(crate) struct NewCall<'m> {
    pub(crate) invite: &'m Message,
    pub(crate) key: TransactionKey,
    pub(crate) source: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) plan: Vec<Hop>,
    pub(crate) admitted: Admitted,
    /// The channel taken at admission (every new call holds one).
    pub(crate) channel: super::ChannelGuard,
    pub(crate) status_url: Option<Arc<str>>,
}

impl Call {
    /// A call for a new INVITE, or the status to refuse it with.
    pub(crate) fn new(
        n: NewCall<'_>,
        cfg: &B2buaConfig,
        now: Instant,
        rng: &mut Random,
    ) -> Result<Call, StatusCode> {
        let inv = n.invite;
        let bad = StatusCode::BAD_REQUEST;
        let from = inv.from().map_err(|_| bad)?;
        let to = inv.to().map_err(|_| bad)?;
        let call_id = lossy(inv.call_id().map_err(|_| bad)?);
        // SPEC §3: the trunk's caller ID (the number goes in per attempt).
        let remote_target = match inv.contacts().next() {
            Some(Ok(c)) => c.addr().map(|a| a.uri.as_str().to_owned()),
            _ => None,
        }
        .unwrap_or_else(|| format!("sip:{}", n.source));
        let a = Leg {
            call_id,
            local_tag: rng.tag(),
            remote_tag: from.tag().map(str::to_owned),
            local_addr: addr_without_tag(&to),
            remote_addr: addr_without_tag(&from),
            remote_target,
            route_set: inv
                .headers(&HeaderName::RecordRoute)
                .flat_map(super::leg::split_commas)
                .collect(),
            dest: n.source,
            transport: n.transport,
            local_cseq: 0,
            invite_cseq: 0,
        };
        let redirects = Redirects::new(&n.admitted.decision.number);
        let local = &cfg.local;
        let b = Leg {
            call_id: rng.call_id(&local.public_address),
            local_tag: rng.tag(),
            remote_tag: None,
            // Set per attempt (send_invite): the caller's identity
            // depends on the hop (identity.rs).
            local_addr: String::new(),
            remote_addr: String::new(),
            remote_target: String::new(),
            route_set: Vec::new(),
            dest: n.source,
            transport: Transport::Udp,
            local_cseq: 0,
            invite_cseq: 0,
        };
        let mut xfer = Xfer::default();
        xfer.note_sdp(Side::A, inv);
        // RFC 3262 §7.1: a random first RSeq; our tag is random already.
        let rseq_seed = a
            .local_tag
            .bytes()
            .fold(0u32, |h, c| h.wrapping_mul(31).wrapping_add(u32::from(c)));
        Ok(Call {
            phase: Phase::Trying,
            a,
            b,
            a_invite: inv.detached(),
            a_invite_key: n.key,
            a_final: None,
            attempts: Vec::new(),
            plan: n.plan,
            step: 0,
            fork_start: 0,
            winner: None,
            attempt_deadline: None,
            ring_deadline: None,
            last_final: None,
            ack_a: None,
            ack_b: None,
            ok: None,
            reinvite: false,
            max_end: match n.admitted.emergency {
                // Emergency calls have no duration limit at all.
                true => now
                    .checked_add(NO_END)
                    .unwrap_or(now + cfg.max_call_duration),
                false => now + cfg.max_call_duration,
            },
            ended_at: None,
            open: 0,
            open_invites: 0,
            scheduled: None,
            terms: n.admitted,
            channel: Some(n.channel),
            started_at: now,
            answered_at: None,
            recorded: false,
            status_url: n.status_url,
            rang: None,
            rang_at: None,
            notified: Notified::Nothing,
            redirects,
            xfer,
            b_auth: None,
            b_answered: Answered::default(),
            sessions: refresh::Sessions::default(),
            rel: Reliable::new(inv, rseq_seed),
            media: None,
        })
    }

    /// The A-leg Call-ID.
    pub(crate) fn a_call_id(&self) -> &str {
        self.record_id()
    }

    pub(crate) fn dialog_key(&self, side: Side) -> DialogKey {
        let leg = self.leg(side);
        DialogKey::new(&leg.call_id, &leg.local_tag)
    }

    /// Whether `side`'s dialog is (`call_id`, our `local_tag`).
    pub(crate) fn is_dialog(&self, side: Side, call_id: &str, local_tag: &str) -> bool {
        let leg = self.leg(side);
        leg.call_id == call_id && leg.local_tag == local_tag
    }

    pub(crate) fn a_invite_key(&self) -> &TransactionKey {
        &self.a_invite_key
    }

    fn leg(&self, side: Side) -> &Leg {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn leg_mut(&mut self, side: Side) -> &mut Leg {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Whether the call can leave the table.
    pub(crate) fn finished(&self, now: Instant, cfg: &B2buaConfig) -> bool {
        match (self.phase, self.ended_at) {
            // INVITE client transactions left in Accepted (RFC 6026, 64·T1)
            // do not keep an ended call: its BYE has been answered, so the
            // peer stops retransmitting its 2xx. This keeps ended calls in
            // the table for about T4 instead of 32 s.
            (Phase::Ended, Some(at)) => {
                (self.open <= self.open_invites && self.ok.is_none()) || now >= at + cfg.linger
            }
            _ => false,
        }
    }

    /// The next instant `on_timeout` has work.
    pub(crate) fn next_deadline(&self, cfg: &B2buaConfig) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut add = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        if matches!(self.phase, Phase::Trying | Phase::Early) {
            if !self.fork_responded() {
                add(self.attempt_deadline);
            }
            add(self.ring_deadline);
        }
        if let Some(ok) = &self.ok {
            add(ok.next);
            add(Some(ok.give_up));
        }
        match self.ended_at {
            Some(at) => add(Some(at + cfg.linger)),
            None => add(Some(self.max_end)),
        }
        if self.phase == Phase::Confirmed {
            add(self.sessions.next());
        }
        if matches!(self.phase, Phase::Trying | Phase::Early) {
            add(self.rel.next());
        }
        d
    }

    // ---- responses we originate --------------------------------------

    /// A response on `side` to `req`, built from our values; `relayed` is
    /// the response from the other leg whose status, body and end-to-end
    /// headers are carried over.
    fn response(
        &self,
        side: Side,
        req: &Message,
        status: StatusCode,
        relayed: Option<&Message>,
        cfg: &B2buaConfig,
    ) -> Bytes {
        self.response_ext(side, req, status, relayed, &[], cfg)
    }

    /// [`Call::response`] with `extra` headers of this leg (RFC 3262 RSeq,
    /// RFC 4028 Session-Expires); `Supported` and `Require` are ours plus
    /// the relayed side's other option tags.
    fn response_ext(
        &self,
        side: Side,
        req: &Message,
        status: StatusCode,
        relayed: Option<&Message>,
        extra: &[(&'static str, String)],
        cfg: &B2buaConfig,
    ) -> Bytes {
        let leg = self.leg(side);
        let mut b = ResponseBuilder::new(req, status)
            .received(leg.dest)
            .to_tag(&leg.local_tag)
            .server(&cfg.server_header);
        let method = req.method();
        let is_initial = side == Side::A && req.to().is_ok_and(|t| t.tag().is_none());
        if status.0 > 100 && status.0 < 300 {
            if is_initial {
                for rr in req.headers(&HeaderName::RecordRoute) {
                    b = b.header("Record-Route", &lossy(rr));
                }
            }
            if method.is_some_and(is_target_refresh) {
                b = b.header("Contact", &cfg.local.contact(leg.transport));
            }
        }
        if let Some(r) = relayed {
            if let Some(reason) = r.reason() {
                if status == r.status().unwrap_or(status) {
                    b = b.reason(&lossy(reason));
                }
            }
            for name in RESPONSE_PASS {
                for v in r.headers(&HeaderName::from_bytes(name)) {
                    b = b.header(&lossy(name), &lossy(v));
                }
            }
            let require = reliable::foreign_tags(r, &HeaderName::Require);
            if !require.is_empty() {
                b = b.header("Require", &require.join(", "));
            }
        }
        let invite_or_update = matches!(method, Some(Method::Invite | Method::Update));
        if relayed.is_some() || (invite_or_update && status.is_success()) {
            b = b.header("Supported", &reliable::supported(relayed));
        }
        for (name, value) in extra {
            b = b.header(name, value);
        }
        if let Some(r) = relayed {
            let body = r.body();
            if !body.is_empty() {
                let ct = r
                    .content_type()
                    .map_or_else(|| "application/sdp".to_owned(), lossy);
                b = b.body(&ct, body);
            }
        }
        b.build()
    }

    /// Refuses the call before any B-leg INVITE went out (the fleet's
    /// channel counter said no): `status` with `reason` to the caller, and
    /// the call is over.
    pub(crate) fn refuse(&mut self, status: StatusCode, reason: Option<&str>, fx: &mut Fx<'_>) {
        if self.a_final.is_none() && !self.xfer.is_transferee() {
            self.a_final = Some(status);
            let mut b = ResponseBuilder::new(&self.a_invite, status)
                .received(self.a.dest)
                .to_tag(&self.a.local_tag)
                .server(&fx.cfg.server_header);
            if let Some(reason) = reason {
                b = b.reason(reason);
            }
            let key = self.a_invite_key.clone();
            fx.respond(&key, status, b.build());
        }
        self.last_final = Some((status, reason.unwrap_or_default().to_owned()));
        self.phase = Phase::Cancelled;
        self.end(fx);
    }

    /// Final response on the A-leg INVITE.
    fn answer_a(&mut self, status: StatusCode, relayed: Option<&Message>, fx: &mut Fx<'_>) {
        if self.a_final.is_some() {
            return;
        }
        if self.xfer.is_transferee() {
            // No A-leg INVITE: a transfer's new call reports instead.
            if status.is_final() {
                self.transferee_final(status, fx);
            }
            return;
        }
        if status.0 >= 200 {
            self.a_final = Some(status);
        }
        let bytes = self.response(Side::A, &self.a_invite, status, relayed, fx.cfg);
        let key = self.a_invite_key.clone();
        fx.respond(&key, status, bytes);
    }

    // ---- B-leg INVITE attempts ---------------------------------------

    /// Whether the call hunts through destinations (a DID's): busy, any
    /// failure or no answer within the ring timeout moves to the next step,
    /// even after a provisional was relayed (SPEC §4).
    fn hunts(&self) -> bool {
        self.terms.did.is_some()
    }

    /// The attempts of the fork ringing now.
    fn fork(&self) -> &[Attempt] {
        self.attempts.get(self.fork_start..).unwrap_or_default()
    }

    fn fork_live(&self) -> bool {
        self.fork().iter().any(|a| a.live)
    }

    fn fork_responded(&self) -> bool {
        self.fork().iter().any(|a| a.responded)
    }

    /// Points the B-leg at attempt `k`'s hop (its requests go there).
    fn aim(&mut self, hop: usize) {
        if let Some(hop) = self.plan.get(hop) {
            self.b.remote_addr = format!("<{}>", hop.to);
            self.b.remote_target.clone_from(&hop.uri);
            self.b.dest = hop.addr;
            self.b.transport = hop.transport;
            self.b_auth.clone_from(&hop.auth);
        }
        self.b.remote_tag = None;
        self.b.route_set.clear();
    }

    /// Where B-leg INVITE attempt `k` went (passive upstream health).
    pub(crate) fn attempt_dest(&self, k: usize) -> Option<(SocketAddr, Transport)> {
        let hop = self.plan.get(self.attempts.get(k)?.hop)?;
        Some((hop.addr, hop.transport))
    }

    /// Starts the next step of the plan: every hop of the next fork gets an
    /// INVITE at once. False when no hop is left.
    pub(crate) fn send_attempt(&mut self, fx: &mut Fx<'_>) -> bool {
        while let Some(fork) = self.plan.get(self.step).map(|h| h.fork) {
            self.fork_start = self.attempts.len();
            while self.plan.get(self.step).is_some_and(|h| h.fork == fork) {
                self.send_invite(self.step, fx);
                self.step += 1;
            }
            if self.attempts.len() > self.fork_start {
                self.attempt_deadline = Some(fx.now + fx.cfg.no_answer_failover);
                self.ring_deadline = self.hunts().then(|| fx.now + fx.cfg.ring_timeout);
                return true;
            }
        }
        false
    }

    /// Whether a 3xx is followed: placed off-net calls only (a DID's
    /// destinations hunt on instead).
    fn follows_redirects(&self) -> bool {
        self.terms.trunk.is_some()
            && !self.hunts()
            && matches!(self.terms.decision.route, Route::OffNet(_))
    }

    /// RFC 3261 §8.1.3.4: the numbers of a 3xx's Contacts that the trunk's
    /// policy allows replace the rest of the plan (the carrier answered for
    /// the dialled number), each through the upstreams. True when one is
    /// followed; otherwise `last_final` is the 3xx, or the policy's refusal
    /// of a target.
    fn redirect(&mut self, resp: &Message, fx: &mut Fx<'_>) -> bool {
        let Some(trunk) = self.terms.trunk.clone() else {
            return false;
        };
        let mut hops: Vec<Hop> = Vec::new();
        for number in redirect::contact_numbers(resp) {
            let first_hop = self.step + hops.len();
            let caller_id = &self.terms.decision.caller_id;
            let admission = fx.reroute.admission;
            match self
                .redirects
                .follow(&trunk, &number, caller_id, admission, first_hop)
            {
                Ok(terms) => {
                    tracing::info!(
                        call_id = %self.a.call_id,
                        trunk = trunk.id(),
                        "upstream redirect: calling {} instead",
                        terms.number
                    );
                    let last_fork = hops.last().or(self.plan.last()).map_or(0, |h| h.fork);
                    hops.extend(fx.reroute.hops(&terms.number, last_fork));
                }
                Err(skip) => {
                    tracing::info!(
                        call_id = %self.a.call_id,
                        trunk = trunk.id(),
                        "upstream redirect to `{number}` not followed: {skip}"
                    );
                    if let redirect::Skip::Denied(d) = skip {
                        self.last_final = Some((d.status(), d.reason_phrase().into_owned()));
                    }
                }
            }
        }
        if hops.is_empty() {
            return false;
        }
        self.plan.truncate(self.step);
        self.plan.extend(hops);
        true
    }

    /// The B-leg INVITE to plan hop `hop`.
    fn send_invite(&mut self, hop: usize, fx: &mut Fx<'_>) {
        let req = self.invite_request(hop, fx);
        let attempt = self.attempts.len();
        if let Some(invite) = fx.request(req, &self.b, Purpose::Invite { attempt }) {
            self.attempts.push(Attempt {
                invite,
                hop,
                live: true,
                responded: false,
                cancel_pending: false,
                cancelled: false,
                authed: false,
            });
        }
    }

    /// The B-leg INVITE toward plan hop `hop` (aims the B-leg there; the
    /// next CSeq).
    fn invite_request(&mut self, hop: usize, fx: &mut Fx<'_>) -> RequestBuilder {
        self.aim(hop);
        let caller = match self.a_invite.from() {
            Ok(a_from) => identity::b_leg_caller(&identity::CallerFacts {
                direction: self.terms.direction,
                caller_id: &self.terms.decision.caller_id,
                a_from: &a_from,
                private: identity::hides_caller(&self.a_invite),
                carrier: self.plan.get(hop).and_then(|h| h.carrier),
                host: &fx.cfg.local.public_address,
            }),
            // Cannot happen: `Call::new` refuses an INVITE without From.
            Err(_) => identity::Caller {
                from: self.b.local_addr.clone(),
                pai: None,
            },
        };
        self.b.local_addr = caller.from;
        let mf = self
            .a_invite
            .max_forwards()
            .ok()
            .flatten()
            .unwrap_or(70)
            .clamp(1, 71)
            - 1;
        let mut req = self
            .b
            .request(Method::Invite, &fx.cfg.local, None, fx.rng)
            .max_forwards(mf);
        let passed = identity::passed(self.terms.direction);
        for name in REQUEST_PASS.iter().chain(passed) {
            for v in self.a_invite.headers(&HeaderName::from_bytes(name)) {
                req = req.header(&lossy(name), &lossy(v));
            }
        }
        req = req.header("Supported", &reliable::supported(Some(&self.a_invite)));
        for (name, value) in session_timer::invite_headers(&fx.cfg.session, self.sessions.b_min_se)
        {
            req = req.header(name, &value);
        }
        if let Some(pai) = caller.pai {
            req = req.header("P-Asserted-Identity", &pai);
        }
        let body = self.a_invite.body();
        if !body.is_empty() {
            let ct = self
                .a_invite
                .content_type()
                .map_or_else(|| "application/sdp".to_owned(), lossy);
            req = req.body(&ct, body);
        }
        req
    }

    /// A `401`/`407` to attempt `k` (RFC 3261 §22.2): sent again once with
    /// credentials as a new transaction that replaces the attempt's INVITE
    /// (so a later CANCEL matches it). `Pass` when the upstream has no
    /// credentials (the challenge fails the attempt as before).
    fn answer_invite_challenge(&mut self, k: usize, resp: &Message, fx: &mut Fx<'_>) -> Step {
        let Some(a) = self.attempts.get(k) else {
            return Step::Pass;
        };
        let (hop, authed) = (a.hop, a.authed);
        let uri = a.invite.request_uri_str().unwrap_or("").to_owned();
        let creds = self.plan.get(hop).and_then(|h| h.auth.clone());
        let cnonce = fx.cnonce();
        let step = upstream_auth::decide(
            resp,
            creds.as_deref(),
            authed,
            &Method::Invite,
            &uri,
            &cnonce,
            &self.a.call_id,
        );
        if let Step::Retry(answer) = &step {
            let req = self
                .invite_request(hop, fx)
                .header(answer.header, &answer.value);
            match fx.request(req, &self.b, Purpose::Invite { attempt: k }) {
                Some(invite) => {
                    if let Some(a) = self.attempts.get_mut(k) {
                        a.invite = invite;
                        a.live = true;
                        a.responded = false;
                        a.authed = true;
                    }
                    self.attempt_deadline = Some(fx.now + fx.cfg.no_answer_failover);
                }
                None => return Step::Fail,
            }
        }
        step
    }

    /// Cancels every live attempt but `keep`: at once if it has answered
    /// provisionally, else when it does (RFC 3261 §9.1).
    fn cancel_attempts(&mut self, keep: Option<usize>, fx: &mut Fx<'_>) {
        for k in 0..self.attempts.len() {
            if Some(k) == keep || !self.attempts[k].live {
                continue;
            }
            if self.attempts[k].responded {
                self.cancel_attempt(k, fx);
            } else {
                self.attempts[k].cancel_pending = true;
            }
        }
    }

    fn cancel_attempt(&mut self, k: usize, fx: &mut Fx<'_>) {
        let Some(a) = self.attempts.get_mut(k) else {
            return;
        };
        if a.cancelled {
            return;
        }
        a.cancelled = true;
        a.cancel_pending = false;
        let Some(hop) = self.plan.get(a.hop) else {
            return;
        };
        if let Ok(msg) = Message::parse(build::cancel_for(&a.invite)) {
            fx.request_msg(msg, hop.addr, hop.transport, Purpose::Cancel);
        }
    }

    /// The fork ringing now is over (all failed, no response, or the ring
    /// timeout): the next step, or the last failure to A.
    fn fail_over(&mut self, status: Option<(StatusCode, String)>, fx: &mut Fx<'_>) {
        if status.is_some() {
            self.last_final = status;
        }
        self.cancel_attempts(None, fx);
        if self.send_attempt(fx) {
            return;
        }
        let status = self
            .last_final
            .as_ref()
            .map_or(StatusCode::SERVICE_UNAVAILABLE, |(s, _)| map_failure(*s));
        self.answer_a(status, None, fx);
        self.end(fx);
    }

    /// ACK for a 2xx on `side` to the INVITE with CSeq `cseq` (§13.2.2.4).
    fn send_ack(&mut self, side: Side, cseq: u32, body: Option<(String, Bytes)>, fx: &mut Fx<'_>) {
        let cfg = fx.cfg;
        let leg = self.leg_mut(side);
        let mut b = leg.request(Method::Ack, &cfg.local, Some(cseq), fx.rng);
        if let Some((ct, body)) = body {
            self.sessions
                .sent_sdp(side, Some((ct.clone(), body.clone())));
            b = b.body(&ct, body);
        }
        let leg = self.leg(side);
        let bytes = b.build();
        fx.raw(bytes.clone(), leg.dest, leg.transport);
        match side {
            Side::A => self.ack_a = Some((cseq, bytes)),
            Side::B => self.ack_b = Some((cseq, bytes)),
        }
    }

    fn stored_ack(&self, side: Side) -> Option<&(u32, Bytes)> {
        match side {
            Side::A => self.ack_a.as_ref(),
            Side::B => self.ack_b.as_ref(),
        }
    }

    /// ACK and BYE a 2xx to attempt `k` that opened a dialog we do not
    /// want (a crossing CANCEL, an abandoned attempt, a losing fork).
    fn ack_and_bye(&mut self, resp: &Message, k: usize, fx: &mut Fx<'_>) {
        let Some(a) = self.attempts.get(k) else {
            return;
        };
        let invite = a.invite.clone();
        let mut leg = self.b.clone();
        if let Some(hop) = self.plan.get(a.hop) {
            leg.dest = hop.addr;
            leg.transport = hop.transport;
        }
        leg.remote_tag = None;
        leg.route_set.clear();
        leg.learn_from_response(resp);
        let seq = invite.cseq().map_or(leg.invite_cseq, |c| c.seq);
        let ack = leg
            .request(Method::Ack, &fx.cfg.local, Some(seq), fx.rng)
            .build();
        fx.raw(ack, leg.dest, leg.transport);
        let bye = leg.request(Method::Bye, &fx.cfg.local, None, fx.rng);
        fx.request(bye, &leg, Purpose::Bye);
        if leg.call_id == self.b.call_id {
            self.b.local_cseq = leg.local_cseq;
        }
    }

    /// A response to B-leg INVITE attempt `k`.
    fn on_invite_response(&mut self, k: usize, resp: &Message, fx: &mut Fx<'_>) {
        let Some(status) = resp.status() else { return };
        let Some(a) = self.attempts.get_mut(k) else {
            return;
        };
        let seq = a.invite.cseq().map_or(0, |c| c.seq);
        let hop = a.hop;
        if status.is_provisional() {
            a.responded = true;
            if a.cancel_pending {
                return self.cancel_attempt(k, fx);
            }
        } else {
            a.live = false;
        }
        let current = self.winner.is_none()
            && k >= self.fork_start
            && matches!(self.phase, Phase::Trying | Phase::Early);
        if current && matches!(status.0, 401 | 407) {
            match self.answer_invite_challenge(k, resp, fx) {
                Step::Pass => {}
                Step::Retry(_) => return,
                Step::Fail => return self.invite_auth_failed(fx),
            }
        }
        if self.winner.is_some_and(|w| w != k)
            || (k < self.fork_start && self.phase != Phase::Confirmed)
        {
            // A losing or abandoned attempt answering late.
            if status.is_success() {
                self.ack_and_bye(resp, k, fx);
            } else if status.is_provisional() {
                self.cancel_attempt(k, fx);
            }
            return;
        }
        match self.phase {
            Phase::Trying | Phase::Early => {
                if status.is_provisional() {
                    if status.0 == 100 {
                        return;
                    }
                    self.aim(hop);
                    self.b.learn_from_response(resp);
                    self.phase = Phase::Early;
                    self.rang.get_or_insert(status);
                    self.rang_at.get_or_insert(fx.now);
                    self.relay_provisional(k, status, resp, fx);
                } else if status.is_success() {
                    if self.hold_2xx(k, resp) {
                        return;
                    }
                    if let Some(terms) = self.redirects.terms_of(hop) {
                        // A redirect target answered: its rate and limits.
                        self.terms.decision = terms.clone();
                    }
                    self.winner = Some(k);
                    self.aim(hop);
                    self.b.invite_cseq = seq;
                    self.b.learn_from_response(resp);
                    self.cancel_attempts(Some(k), fx);
                    self.phase = Phase::Confirmed;
                    if self.xfer.is_transferee() {
                        // Its ringing was bounded by Timer C (transfer.rs).
                        self.max_end = fx.now + fx.cfg.max_call_duration;
                    }
                    self.answered_at = Some(fx.now);
                    if let Some(limit) = self.terms.decision.max_duration {
                        // SPEC §3 "duration": BYE on both legs at that second.
                        self.max_end = self.max_end.min(fx.now + limit);
                    }
                    if self.xfer.is_transferee() {
                        return self.transferee_answered(seq, status, resp, fx);
                    }
                    self.xfer.note_sdp(Side::B, resp);
                    let late_offer = self.a_invite.body().is_empty();
                    let deferred = if late_offer {
                        Some((Side::B, seq))
                    } else {
                        self.send_ack(Side::B, seq, None, fx);
                        None
                    };
                    let a_seq = self.a_invite.cseq().map_or(0, |c| c.seq);
                    let extra = self.start_sessions(resp, fx);
                    let bytes = self.response_ext(
                        Side::A,
                        &self.a_invite,
                        status,
                        Some(resp),
                        &extra,
                        fx.cfg,
                    );
                    self.a_final = Some(status);
                    let key = self.a_invite_key.clone();
                    fx.respond(&key, status, bytes.clone());
                    self.start_ok(Side::A, bytes, a_seq, deferred, fx);
                } else {
                    if status.0 == 422 && self.retry_422(hop, resp, fx) {
                        return;
                    }
                    let reason = resp.reason().map(lossy).unwrap_or_default();
                    self.last_final = Some((status, reason));
                    if self.fork_live() {
                        return; // other contacts of this fork still ring
                    }
                    // The hop's `failover_codes` (default 408, 5xx; SPEC §3 "route").
                    let fails_over = self
                        .plan
                        .get(hop)
                        .is_some_and(|h| h.failover.contains(status));
                    if (300..=399).contains(&status.0) && self.follows_redirects() {
                        if self.redirect(resp, fx) {
                            return self.fail_over(None, fx);
                        }
                        let status = self
                            .last_final
                            .as_ref()
                            .map_or(StatusCode::SERVICE_UNAVAILABLE, |(s, _)| map_failure(*s));
                        self.answer_a(status, None, fx);
                        return self.end(fx);
                    }
                    // A redirect target refusing (486, 404, …): the next
                    // target, skipping its other upstreams; 408/5xx fail
                    // over to them as usual.
                    let next_target = self.redirects.terms_of(hop).is_some() && status.0 < 600;
                    if next_target && !fails_over {
                        self.step = self.redirects.next_target(hop).unwrap_or(self.plan.len());
                    }
                    if self.hunts() || next_target || (self.phase == Phase::Trying && fails_over) {
                        return self.fail_over(None, fx);
                    }
                    self.answer_a(
                        map_failure(status),
                        Some(resp).filter(|_| !matches!(status.0, 300..=399 | 401 | 407)),
                        fx,
                    );
                    self.end(fx);
                }
            }
            Phase::Cancelled => {
                if status.is_success() {
                    // §9.1 race: the 2xx crossed our CANCEL.
                    self.ack_and_bye(resp, k, fx);
                } else if status.is_provisional() {
                    self.cancel_attempt(k, fx);
                }
                if !self.attempts.iter().any(|a| a.live) {
                    self.end(fx);
                }
            }
            Phase::Confirmed | Phase::Ended => {
                if status.is_success() {
                    let same_dialog = resp.to().ok().and_then(|t| t.tag().map(str::to_owned))
                        == self.b.remote_tag;
                    match self.stored_ack(Side::B) {
                        Some((s, bytes)) if *s == seq && same_dialog => {
                            let bytes = bytes.clone();
                            fx.raw(bytes, self.b.dest, self.b.transport);
                        }
                        _ if !same_dialog => self.ack_and_bye(resp, k, fx),
                        _ => {}
                    }
                }
            }
        }
    }

    /// An attempt's challenge could not be answered: like a `503` from
    /// it, the next upstream is tried while nothing was relayed yet, else
    /// the caller gets `503` (never the challenge).
    fn invite_auth_failed(&mut self, fx: &mut Fx<'_>) {
        let failed = (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream authentication failed".to_owned(),
        );
        self.last_final = Some(failed);
        if self.fork_live() {
            return;
        }
        if self.phase == Phase::Trying || self.hunts() {
            return self.fail_over(None, fx);
        }
        self.answer_a(StatusCode::SERVICE_UNAVAILABLE, None, fx);
        self.end(fx);
    }

    fn start_ok(
        &mut self,
        side: Side,
        bytes: Bytes,
        cseq: u32,
        deferred_ack: Option<(Side, u32)>,
        fx: &mut Fx<'_>,
    ) {
        let t1 = fx.cfg.timers.t1;
        let reliable = self.leg(side).transport.is_reliable();
        self.ok = Some(PendingOk {
            side,
            bytes,
            cseq,
            next: (!reliable).then(|| fx.now + t1),
            interval: t1,
            give_up: fx.now + fx.cfg.timers.t1x64(),
            deferred_ack,
        });
    }

    /// No response to attempt `k`: timeout or transport error.
    fn on_invite_no_response(&mut self, k: usize, fx: &mut Fx<'_>) {
        let Some(a) = self.attempts.get_mut(k) else {
            return;
        };
        a.live = false;
        match self.phase {
            Phase::Trying | Phase::Early if k >= self.fork_start => {
                if self.fork_live() {
                    return;
                }
                if self.phase == Phase::Trying || self.hunts() {
                    self.fail_over(None, fx);
                } else {
                    self.answer_a(StatusCode::REQUEST_TIMEOUT, None, fx);
                    self.end(fx);
                }
            }
            Phase::Cancelled if !self.attempts.iter().any(|a| a.live) => self.end(fx),
            _ => {}
        }
    }

    // ---- inputs --------------------------------------------------------

    /// A response on a client transaction of this call.
    pub(crate) fn on_response(&mut self, purpose: &Purpose, resp: &Message, fx: &mut Fx<'_>) {
        match purpose {
            Purpose::Invite { attempt } => self.on_invite_response(*attempt, resp, fx),
            Purpose::Bye => self.on_bye_response(resp, fx),
            Purpose::Refresh(side) => self.on_refresh_response(*side, Some(resp), fx),
            Purpose::Cancel | Purpose::Prack => {}
            Purpose::Relay(r) => {
                self.on_relay_response(r.from, &r.server, &r.request, Some(resp), fx)
            }
            Purpose::Notify if resp.status().is_some_and(|s| s.is_final()) => {
                self.on_notify_done(fx)
            }
            Purpose::Notify => {}
            Purpose::Bridge => self.on_bridge_response(Some(resp), fx),
            Purpose::Offer => self.on_offer_response(Some(resp), fx),
        }
    }

    /// A client transaction of this call timed out or failed to send.
    pub(crate) fn on_no_response(&mut self, purpose: &Purpose, fx: &mut Fx<'_>) {
        match purpose {
            Purpose::Invite { attempt } => self.on_invite_no_response(*attempt, fx),
            Purpose::Refresh(side) => self.on_refresh_response(*side, None, fx),
            Purpose::Cancel | Purpose::Bye | Purpose::Prack => {}
            Purpose::Relay(r) => self.on_relay_response(r.from, &r.server, &r.request, None, fx),
            Purpose::Notify => self.on_notify_done(fx),
            Purpose::Bridge => self.on_bridge_response(None, fx),
            Purpose::Offer => self.on_offer_response(None, fx),
        }
    }

    /// Whether `resp` answers a request on the B-leg's own dialog (not a
    /// losing fork's), where our upstream credentials apply.
    fn on_b_dialog(&self, resp: &Message) -> bool {
        resp.call_id().is_ok_and(|c| c == self.b.call_id.as_bytes())
            && resp.to_tag() == self.b.remote_tag.as_deref()
    }

    /// A challenge to a B-leg request we sent with `cseq` (BYE or a relay):
    /// the decision, the answered CSeq forgotten either way.
    fn b_challenge(&mut self, resp: &Message, method: &Method, fx: &mut Fx<'_>) -> Step {
        if !self.on_b_dialog(resp) {
            return Step::Pass;
        }
        let cseq = resp.cseq().map_or(0, |c| c.seq);
        let answered = self.b_answered.take(cseq);
        let cnonce = fx.cnonce();
        let uri = self.b.remote_target.clone();
        upstream_auth::decide(
            resp,
            self.b_auth.as_deref(),
            answered,
            method,
            &uri,
            &cnonce,
            &self.a.call_id,
        )
    }

    /// Sends `b` on the B-leg with the answer to a challenge, remembering
    /// that its CSeq carried credentials.
    fn send_b_with_auth(
        &mut self,
        b: RequestBuilder,
        answer: &ChallengeAnswer,
        purpose: Purpose,
        fx: &mut Fx<'_>,
    ) -> bool {
        self.b_answered.insert(self.b.local_cseq);
        fx.request(b.header(answer.header, &answer.value), &self.b, purpose)
            .is_some()
    }

    /// A response to a BYE we originated: an upstream's challenge to the
    /// B-leg BYE is answered once (else the carrier keeps billing).
    fn on_bye_response(&mut self, resp: &Message, fx: &mut Fx<'_>) {
        if !resp.status().is_some_and(|s| matches!(s.0, 401 | 407)) {
            return;
        }
        if let Step::Retry(answer) = self.b_challenge(resp, &Method::Bye, fx) {
            let local = fx.cfg.local.clone();
            let bye = self.b.request(Method::Bye, &local, None, fx.rng);
            self.send_b_with_auth(bye, &answer, Purpose::Bye, fx);
        }
    }

    fn on_relay_response(
        &mut self,
        from: Side,
        server: &TransactionKey,
        request: &Message,
        resp: Option<&Message>,
        fx: &mut Fx<'_>,
    ) {
        // A PRACK's RAck belongs to the exchange that sent it: not re-sent.
        let prack = request.method() == Some(&Method::Prack);
        if let Some(r) = resp.filter(|r| {
            from == Side::A && !prack && r.status().is_some_and(|s| matches!(s.0, 401 | 407))
        }) {
            let method = request.method().cloned().unwrap_or(Method::Invite);
            match self.b_challenge(r, &method, fx) {
                Step::Pass => {}
                Step::Retry(answer) => {
                    let b = self.relayed_request(Side::A, request, &method, None, fx);
                    let purpose = Purpose::Relay(Box::new(Relay {
                        from,
                        server: server.clone(),
                        request: request.detached(),
                    }));
                    if self.send_b_with_auth(b, &answer, purpose, fx) {
                        return;
                    }
                    return self.on_relay_response(from, server, request, None, fx);
                }
                Step::Fail => {
                    // The caller never sees the upstream's challenge.
                    if method == Method::Invite {
                        self.reinvite = false;
                    }
                    let status = StatusCode::SERVICE_UNAVAILABLE;
                    let bytes = self.response(from, request, status, None, fx.cfg);
                    fx.respond(server, status, bytes);
                    return;
                }
            }
        }
        let status = match resp {
            Some(r) => match r.status() {
                Some(s) => s,
                None => return,
            },
            None => StatusCode::REQUEST_TIMEOUT,
        };
        if status.0 == 100 {
            return;
        }
        let to = from.other();
        let is_invite = request.method() == Some(&Method::Invite);
        if is_invite && status.is_success() {
            let Some(r) = resp else { return };
            let seq = r.cseq().map_or(0, |c| c.seq);
            if let Some((s, bytes)) = self.stored_ack(to) {
                if *s == seq {
                    let bytes = bytes.clone();
                    let leg = self.leg(to);
                    fx.raw(bytes, leg.dest, leg.transport);
                    return;
                }
            }
            if !self.reinvite {
                return; // already relayed
            }
            self.reinvite = false;
            self.leg_mut(to).learn_target(r);
            self.xfer.note_sdp(to, r);
            let deferred = if request.body().is_empty() {
                Some((to, seq))
            } else {
                self.send_ack(to, seq, None, fx);
                None
            };
            let extra = self.relayed_refresh(from, request, r, fx);
            let bytes = self.response_ext(from, request, status, resp, &extra, fx.cfg);
            fx.respond(server, status, bytes.clone());
            let own_seq = request.cseq().map_or(0, |c| c.seq);
            self.start_ok(from, bytes, own_seq, deferred, fx);
            return;
        }
        if is_invite && status.is_final() {
            self.reinvite = false;
        }
        let extra = match resp {
            Some(r) if status.is_success() && request.method() == Some(&Method::Update) => {
                self.relayed_refresh(from, request, r, fx)
            }
            _ => Vec::new(),
        };
        let bytes = self.response_ext(from, request, status, resp, &extra, fx.cfg);
        fx.respond(server, status, bytes);
        // §12.2.1.2: 408 or 481 to an in-dialog request ends the dialog;
        // the leg that failed gets no BYE, the other one does.
        if matches!(status.0, 408 | 481) && request.method() != Some(&Method::Bye) {
            self.end_call(Some(to), StatusCode::REQUEST_TIMEOUT, fx);
        }
    }

    /// An in-dialog request (not ACK) from leg `side`.
    pub(crate) fn on_request(
        &mut self,
        side: Side,
        req: &Message,
        key: &TransactionKey,
        fx: &mut Fx<'_>,
    ) {
        let Some(method) = req.method().cloned() else {
            return;
        };
        if method == Method::Bye {
            let bytes = self.response(side, req, StatusCode::OK, None, fx.cfg);
            fx.respond(key, StatusCode::OK, bytes);
            if self.phase != Phase::Ended {
                self.end_call(Some(side), StatusCode::REQUEST_TERMINATED, fx);
            }
            return;
        }
        let refuse = |this: &Self, status: StatusCode, fx: &mut Fx<'_>| {
            let bytes = this.response(side, req, status, None, fx.cfg);
            fx.respond(key, status, bytes);
        };
        if matches!(self.phase, Phase::Ended | Phase::Cancelled) {
            return refuse(self, StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST, fx);
        }
        if matches!(method, Method::Invite | Method::Update) {
            if let Some(min) = session_timer::too_small(req, &fx.cfg.session) {
                // RFC 4028 §8 holds for refreshes too.
                let status = StatusCode::SESSION_INTERVAL_TOO_SMALL;
                let extra = [("Min-SE", min.to_string())];
                let bytes = self.response_ext(side, req, status, None, &extra, fx.cfg);
                return fx.respond(key, status, bytes);
            }
        }
        let mut rack = None;
        if method == Method::Prack {
            rack = self.on_prack(side, req, key, fx);
            if rack.is_none() {
                return; // answered here
            }
        }
        if method == Method::Invite {
            if self.phase != Phase::Confirmed {
                return refuse(self, StatusCode::REQUEST_PENDING, fx);
            }
            if self.reinvite || self.ok.is_some() || self.sessions.inviting() {
                return refuse(self, StatusCode::REQUEST_PENDING, fx);
            }
            refuse(self, StatusCode::TRYING, fx);
            self.reinvite = true;
        }
        if is_target_refresh(&method) {
            self.leg_mut(side).learn_target(req);
        }
        if matches!(method, Method::Invite | Method::Update) {
            self.xfer.note_sdp(side, req);
        }
        if method == Method::Update && req.body().is_empty() && self.phase == Phase::Confirmed {
            return self.absorb_refresh(side, req, key, fx);
        }
        let b = self.relayed_request(side, req, &method, rack, fx);
        let purpose = Purpose::Relay(Box::new(Relay {
            from: side,
            server: key.clone(),
            request: req.detached(),
        }));
        if fx.request(b, self.leg(side.other()), purpose).is_none() {
            if method == Method::Invite {
                self.reinvite = false;
            }
            refuse(self, StatusCode::SERVER_INTERNAL_ERROR, fx);
        }
    }

    /// The copy of in-dialog request `req` from leg `side` for the other
    /// leg: its dialog values, the next CSeq, end-to-end headers, session
    /// timer headers and body. `rack`: the PRACK's RAck in that leg's spaces.
    fn relayed_request(
        &mut self,
        side: Side,
        req: &Message,
        method: &Method,
        rack: Option<String>,
        fx: &mut Fx<'_>,
    ) -> RequestBuilder {
        let to = side.other();
        let cfg = fx.cfg;
        let leg = self.leg_mut(to);
        let mut b = leg.request(method.clone(), &cfg.local, None, fx.rng);
        for name in REQUEST_PASS {
            for v in req.headers(&HeaderName::from_bytes(name)) {
                b = b.header(&lossy(name), &lossy(v));
            }
        }
        if let Some(rack) = rack {
            // RFC 3262 §7.2: RAck in the B-leg's RSeq and CSeq spaces.
            b = b.header("RAck", &rack);
        }
        let session = matches!(method, Method::Invite | Method::Update);
        if session || req.header(&HeaderName::Supported).is_some() {
            b = b.header("Supported", &reliable::supported(Some(req)));
        }
        if session {
            for (name, value) in self.sessions.get(to).request_headers(&fx.cfg.session) {
                b = b.header(name, &value);
            }
        }
        let body = req.body();
        if !body.is_empty() {
            let ct = req
                .content_type()
                .map_or_else(|| "application/sdp".to_owned(), lossy);
            if session {
                self.sessions.sent_sdp(to, Some((ct.clone(), body.clone())));
            }
            b = b.body(&ct, body);
        }
        b
    }

    /// An ACK for a 2xx, from leg `side`.
    pub(crate) fn on_ack(&mut self, side: Side, ack: &Message, fx: &mut Fx<'_>) {
        let seq = ack.cseq().map_or(0, |c| c.seq);
        let matches = self
            .ok
            .as_ref()
            .is_some_and(|ok| ok.side == side && ok.cseq == seq);
        if !matches {
            return;
        }
        self.xfer.note_sdp(side, ack);
        if let Some(ok) = self.ok.take() {
            if let Some((to, cseq)) = ok.deferred_ack {
                let body = ack.body();
                let body = (!body.is_empty()).then(|| {
                    let ct = ack
                        .content_type()
                        .map_or_else(|| "application/sdp".to_owned(), lossy);
                    (ct, body)
                });
                self.send_ack(to, cseq, body, fx);
            }
        }
    }

    /// A CANCEL for the A-leg INVITE (§9.2): 200 to it, 487 to the INVITE,
    /// CANCEL on the B-leg once it may be sent (after a provisional, §9.1).
    pub(crate) fn on_cancel(&mut self, cancel: &Message, key: &TransactionKey, fx: &mut Fx<'_>) {
        let bytes = self.response(Side::A, cancel, StatusCode::OK, None, fx.cfg);
        fx.respond(key, StatusCode::OK, bytes);
        if self.a_final.is_some() {
            return;
        }
        self.end_call(None, StatusCode::REQUEST_TERMINATED, fx);
    }

    /// Ends the call from wherever it is: the A-leg INVITE gets `status` if
    /// still unanswered, a pending B-leg INVITE is cancelled, confirmed legs
    /// get BYE (except `skip`, which hung up itself).
    pub(crate) fn end_call(&mut self, skip: Option<Side>, status: StatusCode, fx: &mut Fx<'_>) {
        if let Some((k, resp)) = self.rel.held.take() {
            // A 2xx held for the caller's PRACK (RFC 3262 §3) is not wanted now.
            self.ack_and_bye(&resp, k, fx);
        }
        match self.phase {
            Phase::Trying | Phase::Early => {
                self.answer_a(status, None, fx);
                self.phase = Phase::Cancelled;
                self.cancel_attempts(None, fx);
                // Each B-leg INVITE ends with 487, a crossing 2xx or Timer B.
                if !self.attempts.iter().any(|a| a.live) {
                    self.end(fx);
                }
            }
            Phase::Cancelled | Phase::Ended => {}
            Phase::Confirmed => {
                if let Some(ok) = self.ok.take() {
                    if let Some((to, cseq)) = ok.deferred_ack {
                        self.send_ack(to, cseq, None, fx);
                    }
                }
                for side in [Side::A, Side::B] {
                    if Some(side) == skip || self.xfer.handed(side) {
                        continue;
                    }
                    let cfg = fx.cfg;
                    let leg = self.leg_mut(side);
                    let bye = leg.request(Method::Bye, &cfg.local, None, fx.rng);
                    fx.request(bye, leg, Purpose::Bye);
                }
                self.end(fx);
            }
        }
    }

    /// Marks the call over (also while a B-leg INVITE is still pending:
    /// process stop).
    pub(crate) fn end(&mut self, fx: &mut Fx<'_>) {
        self.phase = Phase::Ended;
        for a in &mut self.attempts {
            a.cancel_pending = false;
        }
        if self.ended_at.is_none() {
            self.ended_at = Some(fx.now);
        }
    }

    /// Timers: attempt fail-over, 2xx retransmission and ACK give-up,
    /// maximum duration.
    pub(crate) fn on_timeout(&mut self, fx: &mut Fx<'_>) {
        let now = fx.now;
        let ringing = matches!(self.phase, Phase::Trying | Phase::Early);
        if ringing
            && (self.phase == Phase::Trying || self.hunts())
            && !self.fork_responded()
            && self.attempt_deadline.is_some_and(|d| d <= now)
        {
            // Nobody in this fork answered at all: the next step.
            self.attempt_deadline = None;
            self.fail_over(None, fx);
        } else if ringing && self.ring_deadline.is_some_and(|d| d <= now) {
            // SPEC §4: no answer within the ring timeout.
            self.ring_deadline = None;
            let no_answer = (StatusCode::TEMPORARILY_UNAVAILABLE, String::new());
            self.fail_over(Some(no_answer), fx);
        }
        self.reliable_timeout(fx);
        if self.phase == Phase::Confirmed {
            self.session_timeout(fx);
        }
        let mut give_up = false;
        if let Some(ok) = &mut self.ok {
            if ok.give_up <= now {
                give_up = true;
            } else if ok.next.is_some_and(|n| n <= now) {
                ok.interval = (ok.interval * 2).min(fx.cfg.timers.t2);
                ok.next = Some(now + ok.interval);
                let leg = match ok.side {
                    Side::A => &self.a,
                    Side::B => &self.b,
                };
                fx.actions.push_back(Action::Send {
                    bytes: ok.bytes.clone(),
                    dest: leg.dest,
                    transport: leg.transport,
                });
            }
        }
        if give_up {
            // §13.3.1.4: no ACK within 64·T1: the dialog is over.
            self.end_call(None, StatusCode::REQUEST_TIMEOUT, fx);
            self.ok = None;
        }
        if self.ended_at.is_none() && self.max_end <= now {
            if self.phase == Phase::Confirmed {
                tracing::info!(
                    call_id = %self.a_call_id(),
                    trunk = ?self.terms.trunk_id(),
                    "call ended by sipfront: maximum duration reached, BYE on both legs"
                );
            }
            self.end_call(None, StatusCode::REQUEST_TIMEOUT, fx);
            if self.phase == Phase::Cancelled {
                // A B-leg INVITE that never ends must not keep the call.
                self.end(fx);
            }
        }
    }
}

impl Call {
    /// The call's record (SPEC §6), once it has ended.
    pub(crate) fn cdr(&self, wall: &WallClock) -> Option<Cdr> {
        let ended = self.ended_at?;
        let billed = self.answered_at.map_or(0, |at| {
            let ms = ended.saturating_duration_since(at).as_millis();
            let secs = billed_seconds(u64::try_from(ms).unwrap_or(u64::MAX));
            // A call we end at its limit is billed the limit, not the
            // started second after it: max_call_cost is never exceeded.
            match self.terms.decision.max_duration {
                Some(limit) => secs.min(limit.as_secs()),
                None => secs,
            }
        });
        let answered = self.answered_at.is_some();
        let code = match self.a_final {
            Some(s) => s.0,
            None => 500,
        };
        let rate = self.terms.decision.rate();
        Some(Cdr {
            call_id: self.a_call_id().to_owned(),
            start_unix_ms: wall.unix_ms(self.started_at),
            direction: self.terms.direction,
            from: self.caller(),
            to: self.terms.decision.number.clone(),
            duration_s: billed,
            disposition: Disposition::from_final(code, answered),
            sip_code: code,
            per_minute: rate.map_or(0.0, |r| r.per_minute),
            destination: rate.map_or_else(String::new, |r| r.name.clone()),
            sip_trunk: self.terms.sip_trunk().to_owned(),
            trunk_id: self.terms.trunk_id(),
            a_transport: Some(self.a.transport),
            b_transport: Some(self.b.transport),
        })
    }

    /// RFC 6076 §4.1 post-dial delay: INVITE to the first ringing
    /// provisional, else to the answer; `None` if neither happened.
    pub(crate) fn post_dial_delay(&self) -> Option<std::time::Duration> {
        let to = self.rang_at.or(self.answered_at)?;
        Some(to.saturating_duration_since(self.started_at))
    }

    /// The caller number as sent on: the caller ID the policy chose, else
    /// the B-leg From user.
    fn caller(&self) -> String {
        let caller = &self.terms.decision.caller_id;
        if caller.is_empty() {
            crate::sip::NameAddr::parse(self.b.local_addr.as_bytes())
                .and_then(|n| n.uri.user.map(str::to_owned))
                .unwrap_or_default()
        } else {
            caller.clone()
        }
    }

    /// The next `ringing` or `answered` event due (SPEC §7), in that order,
    /// if the call has a webhook. The final one is built from the CDR.
    pub(crate) fn poll_status(&mut self, wall: &WallClock, now: Instant) -> Option<CallEvent> {
        let url = self.status_url.as_ref()?;
        let (next, state, status) = match (self.notified, self.rang, self.a_final) {
            (Notified::Nothing, Some(s), _) => (Notified::Ringing, CallState::Ringing, s),
            (Notified::Nothing | Notified::Ringing, _, Some(s)) if self.answered_at.is_some() => {
                (Notified::Answered, CallState::Answered, s)
            }
            _ => return None,
        };
        self.notified = next;
        let trunk = self.terms.sip_trunk();
        Some(CallEvent {
            url: Arc::clone(url),
            call_id: self.a_call_id().to_owned(),
            state,
            direction: self.terms.direction,
            from: self.caller(),
            to: self.terms.decision.number.clone(),
            trunk: (!trunk.is_empty()).then(|| trunk.to_owned()),
            sip_code: status.0,
            duration: 0,
            timestamp: wall.unix_secs(now),
        })
    }

    /// The live view of the call (`GET /v1/calls`).
    pub(crate) fn view(&self, wall: &WallClock) -> super::CallView {
        super::CallView {
            call_id: self.a_call_id().to_owned(),
            direction: self.terms.direction.as_str(),
            trunk: self.terms.sip_trunk().to_owned(),
            from: self.terms.decision.caller_id.clone(),
            to: self.terms.decision.number.clone(),
            state: match self.phase {
                Phase::Trying => "trying",
                Phase::Early => "ringing",
                Phase::Confirmed => "answered",
                Phase::Cancelled | Phase::Ended => "ending",
            },
            started: wall.unix_ms(self.started_at) / 1000,
            answered: self.answered_at.map(|at| wall.unix_ms(at) / 1000),
            relay: self.relay().map(str::to_owned),
            a_transport: self.a.transport.as_lowercase(),
            b_transport: self.b.transport.as_lowercase(),
        }
    }

    /// Whether the call holds a channel of its trunk: until the A-leg gets
    /// a failure or the call ends.
    pub(crate) fn holds_channel(&self) -> bool {
        matches!(self.phase, Phase::Trying | Phase::Early | Phase::Confirmed)
    }

    /// Where and how the current B-leg attempt goes.
    pub(crate) fn b_dest(&self) -> (SocketAddr, Transport) {
        (self.b.dest, self.b.transport)
    }
}
