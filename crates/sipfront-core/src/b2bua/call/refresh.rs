//! RFC 4028 session refreshes of a call, per leg: the glue between
//! [`session_timer`](crate::b2bua::session_timer) and the call's dialogs.
//!
//! Refreshes from a peer: an UPDATE without SDP is absorbed on its own leg
//! (answered `200` with that leg's `Session-Expires`): relaying it would tie
//! the other leg's timer to this one's and show this leg's interval and
//! refresher to a dialog that negotiated its own (SEMS SBC and FreeSWITCH
//! answer such refreshes locally too). Anything carrying SDP, and every
//! re-INVITE (an SDP-less one asks the far side for a new offer), is
//! relayed as before; its success refreshes both legs, each with its own
//! values.

use std::time::Duration;

use bytes::Bytes;

use super::{lossy, Call, Fx, Phase};
use crate::b2bua::leg::Side;
use crate::b2bua::reliable;
use crate::b2bua::session_timer::{self, Due, LegTimer};
use crate::b2bua::table::Purpose;
use crate::sip::{HeaderName, Message, Method, StatusCode};
use crate::transaction::TransactionKey;

/// A refresh that cannot go now (an INVITE transaction is in progress on
/// the call) is retried after this.
const GLARE_RETRY: Duration = Duration::from_secs(2);

/// Per leg: its session timer and the last SDP we sent on it (re-sent
/// unchanged in a refresh re-INVITE, RFC 3264 §8).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    a: LegTimer,
    b: LegTimer,
    sdp_a: Option<(String, Bytes)>,
    sdp_b: Option<(String, Bytes)>,
    /// Our refresh re-INVITE is in progress on that leg (A, B).
    inviting: [bool; 2],
    /// The upstream's `Min-SE` from a `422` (§7.4): the retry's floor.
    pub(crate) b_min_se: Option<u64>,
}

impl Sessions {
    pub(crate) fn get(&self, side: Side) -> &LegTimer {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    pub(crate) fn get_mut(&mut self, side: Side) -> &mut LegTimer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Whether one of our refresh re-INVITEs is in progress (a peer's
    /// re-INVITE meanwhile gets `491`, RFC 3261 §14.2).
    pub(crate) fn inviting(&self) -> bool {
        self.inviting.iter().any(|&i| i)
    }

    fn set_inviting(&mut self, side: Side, on: bool) {
        let i = usize::from(side == Side::B);
        if let Some(slot) = self.inviting.get_mut(i) {
            *slot = on;
        }
    }

    /// Records the SDP just sent on `side` (ignored when `None`).
    pub(crate) fn sent_sdp(&mut self, side: Side, sdp: Option<(String, Bytes)>) {
        if sdp.is_none() {
            return;
        }
        match side {
            Side::A => self.sdp_a = sdp,
            Side::B => self.sdp_b = sdp,
        }
    }

    fn sdp(&self, side: Side) -> Option<&(String, Bytes)> {
        match side {
            Side::A => self.sdp_a.as_ref(),
            Side::B => self.sdp_b.as_ref(),
        }
    }

    /// The earliest timer of either leg.
    pub(crate) fn next(&self) -> Option<std::time::Instant> {
        match (self.a.next(), self.b.next()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        }
    }
}

/// A message's body with its type, if it has one.
fn sdp_of(m: &Message) -> Option<(String, Bytes)> {
    let body = m.body();
    if body.is_empty() {
        return None;
    }
    let ct = m
        .content_type()
        .map_or_else(|| "application/sdp".to_owned(), lossy);
    Some((ct, body))
}

fn allows_update(m: &Message) -> bool {
    session_timer::lists(m, &HeaderName::Allow, "UPDATE")
}

impl Call {
    /// The B-leg 2xx `resp` confirmed the call: both legs' timers start.
    /// Returns the headers of the A-leg 2xx (§9).
    pub(super) fn start_sessions(
        &mut self,
        resp: &Message,
        fx: &mut Fx<'_>,
    ) -> Vec<(&'static str, String)> {
        let cfg = &fx.cfg.session;
        let a = session_timer::as_uas(&self.a_invite, cfg);
        let b = session_timer::as_uac(resp, cfg);
        self.sessions.a.refreshed(a, fx.now);
        self.sessions.a.update = allows_update(&self.a_invite);
        self.sessions.b.refreshed(b, fx.now);
        self.sessions.b.update = allows_update(resp);
        self.sessions.sent_sdp(Side::A, sdp_of(resp));
        self.sessions.sent_sdp(Side::B, sdp_of(&self.a_invite));
        self.rel.finish();
        a.map(|n| n.response_headers()).unwrap_or_default()
    }

    /// A re-INVITE/UPDATE from `from` was relayed and answered 2xx (`resp`):
    /// both legs are refreshed, each with its own values. Returns the
    /// headers of the 2xx to `from`.
    pub(super) fn relayed_refresh(
        &mut self,
        from: Side,
        request: &Message,
        resp: &Message,
        fx: &mut Fx<'_>,
    ) -> Vec<(&'static str, String)> {
        let cfg = &fx.cfg.session;
        let theirs = session_timer::as_uas(request, cfg);
        let to = from.other();
        let ours = session_timer::as_uac(resp, cfg);
        self.sessions.get_mut(from).refreshed(theirs, fx.now);
        self.sessions.get_mut(to).refreshed(ours, fx.now);
        self.sessions.sent_sdp(from, sdp_of(resp));
        theirs.map(|n| n.response_headers()).unwrap_or_default()
    }

    /// An SDP-less UPDATE from `side` in a confirmed call: a refresh of that
    /// leg only, answered here.
    pub(super) fn absorb_refresh(
        &mut self,
        side: Side,
        req: &Message,
        key: &TransactionKey,
        fx: &mut Fx<'_>,
    ) {
        let n = session_timer::as_uas(req, &fx.cfg.session);
        self.sessions.get_mut(side).refreshed(n, fx.now);
        let extra = n.map(|n| n.response_headers()).unwrap_or_default();
        let bytes = self.response_ext(side, req, StatusCode::OK, None, &extra, fx.cfg);
        fx.respond(key, StatusCode::OK, bytes);
    }

    /// §7.4: the upstream found our interval too small (`422`): the same
    /// hop is tried once more with its `Min-SE`. False when not retried.
    pub(super) fn retry_422(&mut self, hop: usize, resp: &Message, fx: &mut Fx<'_>) -> bool {
        let Some(min) = session_timer::min_se(resp) else {
            return false;
        };
        let ours = fx.cfg.session.expires.as_secs();
        if ours == 0 || self.sessions.b_min_se.is_some() || !(1..=86_400).contains(&min) {
            return false;
        }
        self.sessions.b_min_se = Some(min);
        self.send_invite(hop, fx);
        true
    }

    /// Fires the legs' session timers: refresh where we refresh, BYE both
    /// legs where a session expired.
    pub(super) fn session_timeout(&mut self, fx: &mut Fx<'_>) {
        for side in [Side::A, Side::B] {
            if self.phase != Phase::Confirmed {
                return;
            }
            match self.sessions.get_mut(side).poll(fx.now) {
                Some(Due::Refresh) => self.send_refresh(side, fx),
                Some(Due::Expired) => {
                    tracing::info!(
                        call_id = %self.a.call_id,
                        trunk = ?self.terms.trunk_id(),
                        leg = ?side,
                        "session expired (RFC 4028): no refresh, BYE on both legs"
                    );
                    self.end_call(None, StatusCode::REQUEST_TIMEOUT, fx);
                }
                None => {}
            }
        }
    }

    /// Our refresh on `side` (§10): UPDATE without SDP if the peer allows
    /// UPDATE, else re-INVITE with the last SDP we sent it.
    fn send_refresh(&mut self, side: Side, fx: &mut Fx<'_>) {
        let timer = self.sessions.get(side);
        let update = timer.update;
        if !update && (self.reinvite || self.ok.is_some()) {
            self.sessions.get_mut(side).postpone(fx.now, GLARE_RETRY);
            return;
        }
        let headers = timer.request_headers(&fx.cfg.session);
        let method = if update {
            Method::Update
        } else {
            Method::Invite
        };
        let local = fx.cfg.local.clone();
        let mut b = self
            .leg_mut(side)
            .request(method.clone(), &local, None, fx.rng)
            .header("Supported", &reliable::supported(None));
        for (name, value) in headers {
            b = b.header(name, &value);
        }
        if method == Method::Invite {
            if let Some((ct, body)) = self.sessions.sdp(side) {
                b = b.body(ct, body.clone());
            }
            self.sessions.set_inviting(side, true);
        }
        tracing::debug!(call_id = %self.a.call_id, leg = ?side, %method, "session refresh");
        let leg = self.leg(side).clone();
        if fx.request(b, &leg, Purpose::Refresh(side)).is_none() {
            self.sessions.set_inviting(side, false);
        }
    }

    /// The answer to our refresh on `side` (`None`: no answer at all).
    pub(super) fn on_refresh_response(
        &mut self,
        side: Side,
        resp: Option<&Message>,
        fx: &mut Fx<'_>,
    ) {
        let status = resp
            .and_then(Message::status)
            .unwrap_or(StatusCode::REQUEST_TIMEOUT);
        if status.is_provisional() {
            return;
        }
        let cseq = resp.and_then(|r| r.cseq().ok());
        let invite = cseq.as_ref().map_or(!self.sessions.get(side).update, |c| {
            c.method == Method::Invite
        });
        if invite && status.is_success() {
            let seq = cseq.map_or(0, |c| c.seq);
            if let Some((s, bytes)) = self.stored_ack(side) {
                if *s == seq {
                    // A retransmitted 2xx: the same ACK again.
                    let (bytes, leg) = (bytes.clone(), self.leg(side));
                    fx.raw(bytes, leg.dest, leg.transport);
                    return;
                }
            }
            self.send_ack(side, seq, None, fx);
        }
        if invite {
            self.sessions.set_inviting(side, false);
        }
        if self.phase != Phase::Confirmed {
            return;
        }
        match (status.0, resp) {
            (200..=299, Some(r)) => {
                let n = session_timer::as_uac(r, &fx.cfg.session);
                let timer = self.sessions.get_mut(side);
                timer.refreshed(n, fx.now);
                if r.header(&HeaderName::Allow).is_some() {
                    timer.update = allows_update(r);
                }
            }
            // §10: the session is gone on that leg; BYE the other one.
            (408 | 481, _) | (_, None) => {
                tracing::info!(
                    call_id = %self.a.call_id,
                    leg = ?side,
                    status = status.0,
                    "session refresh failed: call ended"
                );
                self.end_call(Some(side), StatusCode::REQUEST_TIMEOUT, fx);
            }
            // The peer does not take UPDATE after all: re-INVITE at once.
            (405 | 501, _) if !invite => {
                let timer = self.sessions.get_mut(side);
                timer.update = false;
                timer.postpone(fx.now, Duration::ZERO);
            }
            _ => self.sessions.get_mut(side).retry_later(fx.now),
        }
    }
}
