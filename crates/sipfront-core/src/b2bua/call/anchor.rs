//! Media anchoring of one relayed call (SPEC §8.4): which messages carry
//! an SDP offer or answer (RFC 3264), the request for the relay, and what
//! the call does with the rewritten SDP or a failure.
//!
//! While a request is with the relay, every later message of the call
//! that may carry SDP (responses, in-dialog requests, ACKs) waits in a
//! queue behind it, so the call sees them in arrival order. BYE and CANCEL
//! do not wait: they end the call at once (its session is deleted when
//! the answer in flight is back).
//!
//! Offer or answer is told by the dialog's offer/answer state, not by the
//! method: SDP from one side while the other side's offer is open is the
//! answer (an 18x keeps the offer open for the final answer, RFC 3261
//! §13.2.1 / RFC 3262), anything else is a new offer (an initial INVITE,
//! a re-INVITE or UPDATE, or a 2xx to an offerless INVITE).

use std::collections::VecDeque;
use std::net::IpAddr;

use super::{Call, Fx, Phase};
use crate::b2bua::leg::Side;
use crate::b2bua::media::{MediaCommand, MediaError, MediaRequest, MediaRequestId, MediaResult};
use crate::b2bua::table::Purpose;
use crate::sip::{Message, Method, StatusCode};
use crate::transaction::TransactionKey;

/// A relayed call's media session and the messages waiting for it.
#[derive(Debug)]
pub(crate) struct Anchor {
    /// The relay's call-id: the A-leg Call-ID.
    call_id: String,
    /// Each side's label (`from-tag`/`to-tag`): A, then B.
    tags: [String; 2],
    /// Whether each side may sit behind NAT (a trunk's phone or PBX): its
    /// media address is then its SIP source.
    nat: [bool; 2],
    /// The side whose offer waits for its final answer.
    offer_from: Option<Side>,
    /// An offer succeeded: the relay holds a session to delete.
    session: bool,
    /// The session's delete was sent.
    deleted: bool,
    /// The request with the relay, the message it holds, and what it is.
    busy: Option<(MediaRequestId, Held, Role)>,
    queue: VecDeque<Held>,
    /// The relay that holds the session (`/v1/calls`).
    pub(crate) relay: Option<String>,
}

/// A message of the call waiting for the relay.
#[derive(Debug)]
pub(crate) enum Held {
    /// The A-leg INVITE: its B-leg INVITEs wait for the rewritten offer.
    Invite,
    /// A response to one of the call's client transactions.
    Response { purpose: Purpose, msg: Message },
    /// An in-dialog request from `side` on server transaction `key`.
    Request {
        side: Side,
        msg: Message,
        key: TransactionKey,
    },
    /// An ACK for a 2xx from `side`.
    Ack { side: Side, msg: Message },
}

/// What a held message's SDP is.
#[derive(Clone, Copy, Debug)]
struct Role {
    command: MediaCommand,
    /// The side that wrote the SDP.
    from: Side,
    /// An answer that closes the offer (not an 18x).
    closes: bool,
}

fn index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Anchor {
    /// The session of a call whose A-leg has Call-ID `call_id`, labelled
    /// `a_tag` and `b_tag`; `nat`: which sides may sit behind NAT.
    fn new(call_id: &str, a_tag: String, b_tag: String, nat: [bool; 2]) -> Anchor {
        Anchor {
            call_id: call_id.to_owned(),
            tags: [a_tag, b_tag],
            nat,
            offer_from: None,
            session: false,
            deleted: false,
            busy: None,
            queue: VecDeque::new(),
            relay: None,
        }
    }

    fn tag(&self, side: Side) -> &str {
        self.tags.get(index(side)).map_or("", String::as_str)
    }
}

impl Call {
    /// Anchors the call's media from now on (before its first offer).
    /// `nat`: whether the A and B sides may sit behind NAT.
    pub(crate) fn anchor_media(&mut self, nat: [bool; 2]) {
        // The caller's From tag labels side A, our own B-leg tag side B
        // (known before the far end answers, the same for every fork).
        let a_tag = match &self.a.remote_tag {
            Some(t) if !t.is_empty() => t.clone(),
            _ => format!("a-{}", self.a.local_tag),
        };
        let b_tag = format!("b-{}", self.b.local_tag);
        self.media = Some(Anchor::new(&self.a.call_id, a_tag, b_tag, nat));
    }

    /// Whether the call's media is anchored.
    pub(crate) fn relays(&self) -> bool {
        self.media.is_some()
    }

    /// The relay holding the call's session, if any.
    pub(crate) fn relay(&self) -> Option<&str> {
        self.media.as_ref().and_then(|m| m.relay.as_deref())
    }

    /// Queues `held` behind the request with the relay (if any); the
    /// caller then runs [`Call::media_pump`].
    pub(crate) fn media_hold(&mut self, held: Held) {
        if let Some(m) = &mut self.media {
            m.queue.push_back(held);
        }
    }

    /// Hands queued messages to the call until one needs the relay: that
    /// one's request (with id `next_id`) is returned and the rest wait.
    pub(crate) fn media_pump(
        &mut self,
        next_id: MediaRequestId,
        fx: &mut Fx<'_>,
    ) -> Option<MediaRequest> {
        loop {
            let m = self.media.as_mut()?;
            if m.busy.is_some() {
                return None;
            }
            let held = m.queue.pop_front()?;
            let Some((role, sdp)) = self.sdp_role(&held) else {
                self.media_dispatch(held, None, fx);
                continue;
            };
            let source: IpAddr = match role.from {
                Side::A => self.a.dest.ip(),
                Side::B => self.b.dest.ip(),
            };
            let m = self.media.as_mut()?;
            // rtpengine's from-tag is the offering side, to-tag the
            // answering one; a first offer has no to-tag yet.
            let (offerer, answerer) = match role.command {
                MediaCommand::Answer => (role.from.other(), role.from),
                _ => (role.from, role.from.other()),
            };
            let from_tag = m.tag(offerer).to_owned();
            let to_tag = (role.command == MediaCommand::Answer || m.session)
                .then(|| m.tag(answerer).to_owned());
            let req = MediaRequest {
                id: next_id,
                command: role.command,
                call_id: m.call_id.clone(),
                from_tag,
                to_tag,
                sdp,
                nat_source: m
                    .nat
                    .get(index(role.from))
                    .copied()
                    .unwrap_or(false)
                    .then_some(source),
                new_session: !m.session,
            };
            m.busy = Some((next_id, held, role));
            return Some(req);
        }
    }

    /// The relay's answer to request `id`: the held message goes on with
    /// the rewritten SDP, or the call fails (`503`) so its media is never
    /// half anchored.
    pub(crate) fn media_result(&mut self, result: MediaResult, fx: &mut Fx<'_>) {
        let Some(m) = self.media.as_mut() else { return };
        let Some((id, held, role)) = m.busy.take() else {
            return;
        };
        if id != result.id {
            m.busy = Some((id, held, role));
            return;
        }
        match result.outcome {
            Ok(answer) => {
                m.session = true;
                m.relay = Some(answer.relay);
                match role.command {
                    MediaCommand::Offer => m.offer_from = Some(role.from),
                    _ if role.closes => m.offer_from = None,
                    _ => {}
                }
                self.media_dispatch(held, Some(&answer.sdp), fx);
            }
            Err(e) => self.media_failed(held, &e, fx),
        }
    }

    /// The session's `delete` (id `next_id`) once the call is over, the
    /// relay holds it, and no request is with the relay; at most once.
    pub(crate) fn media_delete(&mut self, next_id: MediaRequestId) -> Option<MediaRequest> {
        if self.phase != Phase::Ended {
            return None;
        }
        let m = self.media.as_mut()?;
        if !m.session || m.deleted || m.busy.is_some() {
            return None;
        }
        m.deleted = true;
        Some(delete_request(next_id, &m.call_id, m.tag(Side::A)))
    }

    /// The relay session's key (call-id, A tag), to delete it when the
    /// call is gone before its offer's answer came.
    pub(crate) fn media_key(&self) -> Option<(String, String)> {
        let m = self.media.as_ref()?;
        Some((m.call_id.clone(), m.tag(Side::A).to_owned()))
    }

    /// Whether `held` carries SDP the call will act on, and what it is.
    fn sdp_role(&self, held: &Held) -> Option<(Role, bytes::Bytes)> {
        let m = self.media.as_ref()?;
        let (from, msg, closes) = match held {
            Held::Invite => (Side::A, &self.a_invite, false),
            Held::Response { purpose, msg } => {
                let status = msg.status()?;
                if !(101..=299).contains(&status.0) {
                    return None;
                }
                let from = match purpose {
                    Purpose::Invite { attempt } => {
                        let current = *attempt >= self.fork_start
                            && self.winner.is_none()
                            && matches!(self.phase, Phase::Trying | Phase::Early);
                        if !current {
                            return None;
                        }
                        Side::B
                    }
                    Purpose::Relay(r) => {
                        let method = r.request.method();
                        let live = match method {
                            Some(Method::Invite) => self.reinvite,
                            Some(Method::Update | Method::Prack) => true,
                            _ => false,
                        };
                        if !live {
                            return None;
                        }
                        r.from.other()
                    }
                    _ => return None,
                };
                (from, msg, status.is_success())
            }
            Held::Request { side, msg, .. } => {
                let ok = match msg.method() {
                    Some(Method::Invite) => {
                        self.phase == Phase::Confirmed
                            && !self.reinvite
                            && self.ok.is_none()
                            && !self.sessions.inviting()
                    }
                    Some(Method::Update | Method::Prack) => {
                        matches!(self.phase, Phase::Early | Phase::Confirmed)
                    }
                    _ => false,
                };
                if !ok {
                    return None;
                }
                (*side, msg, true)
            }
            Held::Ack { side, msg } => {
                let seq = msg.cseq().map_or(0, |c| c.seq);
                let waits = self
                    .ok
                    .as_ref()
                    .is_some_and(|ok| ok.side == *side && ok.cseq == seq);
                if !waits {
                    return None;
                }
                (*side, msg, true)
            }
        };
        let sdp = msg.body();
        if sdp.is_empty() {
            return None;
        }
        let command = if m.offer_from == Some(from.other()) {
            MediaCommand::Answer
        } else {
            MediaCommand::Offer
        };
        Some((
            Role {
                command,
                from,
                closes,
            },
            sdp,
        ))
    }

    /// Hands `held` to the call, its body replaced by `sdp` when given.
    fn media_dispatch(&mut self, held: Held, sdp: Option<&bytes::Bytes>, fx: &mut Fx<'_>) {
        let rewrite = |msg: &Message| match sdp {
            Some(sdp) => msg.with_body(sdp).ok(),
            None => Some(msg.clone()),
        };
        match held {
            Held::Invite => {
                if let Some(inv) = rewrite(&self.a_invite) {
                    self.a_invite = inv;
                }
                if self.phase == Phase::Trying && self.attempts.is_empty() && !self.send_attempt(fx)
                {
                    self.end_call(None, StatusCode::SERVICE_UNAVAILABLE, fx);
                }
            }
            Held::Response { purpose, msg } => {
                if let Some(msg) = rewrite(&msg) {
                    self.on_response(&purpose, &msg, fx);
                }
            }
            Held::Request { side, msg, key } => {
                if let Some(msg) = rewrite(&msg) {
                    self.on_request(side, &msg, &key, fx);
                }
            }
            Held::Ack { side, msg } => {
                if let Some(msg) = rewrite(&msg) {
                    self.on_ack(side, &msg, fx);
                }
            }
        }
    }

    /// No relay rewrote `held`'s SDP: the call cannot go on with half its
    /// media anchored. A new call or an answer gets `503` and the call
    /// ends; a re-offer is refused `503` and the call keeps its media.
    fn media_failed(&mut self, held: Held, e: &MediaError, fx: &mut Fx<'_>) {
        let call_id = self.a_call_id().to_owned();
        let status = StatusCode::SERVICE_UNAVAILABLE;
        match held {
            Held::Request { side, msg, key } => {
                tracing::info!(%call_id, "media relay failed ({e}): re-offer refused with 503, the call keeps its media");
                let bytes = self.response(side, &msg, status, None, fx.cfg);
                fx.respond(&key, status, bytes);
                return;
            }
            Held::Response { purpose, msg } => match purpose {
                Purpose::Invite { attempt } => {
                    // What the attempt's response means for its INVITE
                    // transaction, though the call never saw it: a
                    // provisional may be cancelled now, a final ended it.
                    let provisional = msg.status().is_some_and(|s| s.is_provisional());
                    if let Some(a) = self.attempts.get_mut(attempt) {
                        if provisional {
                            a.responded = true;
                        } else {
                            a.live = false;
                        }
                    }
                    if msg.status().is_some_and(|s| s.is_success()) {
                        self.ack_and_bye(&msg, attempt, fx);
                    }
                }
                Purpose::Relay(r) => {
                    if r.request.method() == Some(&Method::Invite) {
                        self.reinvite = false;
                        if msg.status().is_some_and(|s| s.is_success()) {
                            let seq = msg.cseq().map_or(0, |c| c.seq);
                            self.send_ack(r.from.other(), seq, None, fx);
                        }
                    }
                    let bytes = self.response(r.from, &r.request, status, None, fx.cfg);
                    fx.respond(&r.server, status, bytes);
                }
                _ => {}
            },
            Held::Invite | Held::Ack { .. } => {}
        }
        tracing::info!(%call_id, trunk = ?self.terms.trunk_id(), "media relay failed ({e}): call ended, 503 to the caller if unanswered");
        self.end_call(None, status, fx);
        if self.phase == Phase::Cancelled && !self.attempts.iter().any(|a| a.live) {
            self.end(fx);
        }
    }
}

/// A `delete` of the relay session `call_id` (A tag `a_tag`).
pub(crate) fn delete_request(id: MediaRequestId, call_id: &str, a_tag: &str) -> MediaRequest {
    MediaRequest {
        id,
        command: MediaCommand::Delete,
        call_id: call_id.to_owned(),
        from_tag: a_tag.to_owned(),
        to_tag: None,
        sdp: bytes::Bytes::new(),
        nat_source: None,
        new_session: false,
    }
}
