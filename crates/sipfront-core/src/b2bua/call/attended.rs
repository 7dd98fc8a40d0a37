//! A call's part in an attended transfer (RFC 3891 `Replaces` in a REFER's
//! `Refer-To`; RFC 3725 flow I): the *referring* call asks its far party
//! for a fresh offer with an offerless re-INVITE, the *replaced* call gives
//! up its far leg, and the *bridged* call holds both far legs and finishes
//! the offer/answer (its re-INVITE and the owed ACK are `refer.rs`'s
//! `bridge` and `on_bridge_response`, shared with blind transfer).
//!
//! The orchestration between the calls is `b2bua/replaces.rs`.

use super::refer::{Handed, Role, Transferee};
use super::{Call, Fx, Phase};
use crate::b2bua::admission::Admitted;
use crate::b2bua::leg::Side;
use crate::b2bua::record::Direction;
use crate::b2bua::session_timer;
use crate::b2bua::table::{CallId, Purpose};
use crate::b2bua::B2buaConfig;
use crate::sip::{Message, Method, StatusCode};

impl Call {
    /// The PBX trunk the call belongs to (its login): what "the same
    /// trunk" means for an attended transfer. Empty when none.
    pub(crate) fn pbx_trunk(&self) -> &str {
        self.terms.sip_trunk()
    }

    /// The remote tag of `side`'s dialog.
    pub(crate) fn remote_tag(&self, side: Side) -> Option<&str> {
        self.leg(side).remote_tag.as_deref()
    }

    /// The far party's number: the callee of a placed call, the caller of
    /// a received one.
    pub(crate) fn far_number(&self) -> String {
        match self.terms.direction {
            Direction::Placed => self.terms.decision.number.clone(),
            Direction::Received => self.terms.decision.caller_id.clone(),
        }
    }

    /// Whether the call's far leg may join an attended transfer now:
    /// confirmed (`481`, RFC 3891 §3) and not in another transfer or
    /// offer/answer exchange (`491`).
    pub(crate) fn joinable(&self) -> Result<(), StatusCode> {
        if self.phase != Phase::Confirmed || self.xfer.is_transferee() {
            return Err(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST);
        }
        if self.reinvite || self.ok.is_some() || !matches!(self.xfer.role, Role::None) {
            return Err(StatusCode::REQUEST_PENDING);
        }
        Ok(())
    }

    /// This call's terms for the bridged call: its far party keeps its
    /// place (callee of a placed call, caller of a received one) and
    /// `other` (the referring call's far party) takes the PBX's.
    pub(crate) fn joined_terms(&self, other: &str) -> Admitted {
        let mut terms = self.terms.clone();
        match terms.direction {
            Direction::Placed => terms.decision.caller_id = other.to_owned(),
            Direction::Received => terms.decision.number = other.to_owned(),
        }
        terms
    }

    // ---- the referring call ---------------------------------------------

    /// Asks the far party for a fresh offer (offerless re-INVITE, RFC 3725
    /// §4.1) before joining it with call `with`'s far party.
    pub(crate) fn fetch_offer(&mut self, with: CallId, fx: &mut Fx<'_>) {
        let Role::Referrer(r) = &mut self.xfer.role else {
            return;
        };
        r.joining = Some((with, None));
        let far = r.side.other();
        let local = fx.cfg.local.clone();
        let mut b = self
            .leg_mut(far)
            .request(Method::Invite, &local, None, fx.rng);
        for (name, value) in self.sessions.get(far).request_headers(&fx.cfg.session) {
            b = b.header(name, &value);
        }
        let leg = self.leg(far).clone();
        self.reinvite = true;
        if fx.request(b, &leg, Purpose::Offer).is_none() {
            self.reinvite = false;
            self.transfer_failed(StatusCode::SERVER_INTERNAL_ERROR, fx);
        }
    }

    /// The far party's answer to the offerless re-INVITE (`None`: none
    /// came). A 2xx with SDP is held (its ACK must carry the answer) for
    /// the join; anything else NOTIFYs the failure and the call goes on,
    /// unless the far dialog is gone (`408`/`481`, RFC 3261 §12.2.1.2).
    pub(crate) fn on_offer_response(&mut self, resp: Option<&Message>, fx: &mut Fx<'_>) {
        let status = resp.and_then(Message::status);
        let Role::Referrer(r) = &mut self.xfer.role else {
            return;
        };
        let (far, waiting) = (r.side.other(), r.joining);
        if r.handed {
            // A 2xx retransmission: the ACK is the bridged call's.
            if status.is_some_and(|s| s.is_success()) {
                r.reack = resp.and_then(|m| m.cseq().ok()).map(|c| c.seq);
            }
            return;
        }
        let Some((with, None)) = waiting else {
            return;
        };
        match (status, resp) {
            (Some(s), _) if s.is_provisional() => {}
            (Some(s), Some(ok)) if s.is_success() => {
                self.reinvite = false;
                let seq = ok.cseq().map_or(0, |c| c.seq);
                let offer = !ok.body().is_empty();
                if self.phase != Phase::Confirmed || !offer {
                    // Ending, or no offer to pass on: answer with what the
                    // far party has now (RFC 3725 §4.1 fallback).
                    return self.abort_join(seq, StatusCode::NOT_ACCEPTABLE_HERE, fx);
                }
                self.leg_mut(far).learn_target(ok);
                self.xfer.note_sdp(far, ok);
                let n = session_timer::as_uac(ok, &fx.cfg.session);
                self.sessions.get_mut(far).refreshed(n, fx.now);
                if let Role::Referrer(r) = &mut self.xfer.role {
                    r.joining = Some((with, Some(seq)));
                }
            }
            _ => {
                self.reinvite = false;
                let status = status.unwrap_or(StatusCode::REQUEST_TIMEOUT);
                self.transfer_failed(status, fx);
                if matches!(status.0, 408 | 481) {
                    self.end_call(Some(far), StatusCode::REQUEST_TIMEOUT, fx);
                }
            }
        }
    }

    /// The join cannot happen (`status`): the far party's fresh offer
    /// (2xx CSeq `seq`) is answered with the SDP it was already getting
    /// (the PBX's last), the referrer NOTIFYed, the call goes on.
    pub(crate) fn abort_join(&mut self, seq: u32, status: StatusCode, fx: &mut Fx<'_>) {
        let Role::Referrer(r) = &self.xfer.role else {
            return;
        };
        let (trunk, far) = (r.side, r.side.other());
        let body = self
            .xfer
            .sdp(trunk)
            .map(|s| ("application/sdp".to_owned(), s.clone()));
        self.send_ack(far, seq, body, fx);
        if self.phase == Phase::Confirmed {
            self.transfer_failed(status, fx);
        } else {
            self.xfer.role = Role::None;
        }
    }

    /// A retransmitted 2xx with CSeq `seq` from `side`'s peer: the ACK
    /// already sent for it, again (RFC 3261 §13.2.2.4).
    pub(crate) fn reack(&mut self, side: Side, seq: u32, fx: &mut Fx<'_>) {
        if let Some((stored, bytes)) = self.stored_ack(side) {
            if *stored == seq {
                let (bytes, leg) = (bytes.clone(), self.leg(side));
                fx.raw(bytes, leg.dest, leg.transport);
            }
        }
    }

    // ---- the replaced call ----------------------------------------------

    /// Gives the far leg to an attended transfer's bridged call; the call
    /// keeps only its trunk leg, which it then ends. `None` if it may not
    /// ([`Call::joinable`]).
    pub(crate) fn give_far_leg(&mut self) -> Option<Handed> {
        self.joinable().ok()?;
        let trunk = self.trunk_side();
        self.xfer.role = Role::Replaced { trunk };
        Some(self.handed_leg(trunk.other()))
    }

    // ---- the bridged call -----------------------------------------------

    /// Installs both far parties: `c` (the replaced call's) as the A-leg,
    /// which gets the re-INVITE with `a`'s offer, and `a` (the referring
    /// call's) as the B-leg, whose 2xx CSeq `ack` waits for the answer.
    /// Answered now: billing and the duration limits start at the bridge.
    pub(crate) fn join_legs(
        &mut self,
        c: Handed,
        a: Handed,
        ack: u32,
        cfg: &B2buaConfig,
        now: std::time::Instant,
    ) {
        self.receive(Side::A, c);
        self.receive(Side::B, a);
        self.phase = Phase::Confirmed;
        self.a_final = Some(StatusCode::OK);
        self.answered_at = Some(now);
        if !self.terms.emergency {
            self.max_end = now + cfg.max_call_duration;
        }
        if let Some(limit) = self.terms.decision.max_duration {
            self.max_end = self.max_end.min(now + limit);
        }
        let record_id = self.a_invite_call_id();
        self.xfer.role = Role::Transferee(Transferee {
            referrer: None,
            owned: true,
            record_id,
            report: None,
            b_ack: Some(ack),
        });
    }

    /// The Call-ID of the call's own INVITE (a bridged call's is minted).
    fn a_invite_call_id(&self) -> String {
        String::from_utf8_lossy(self.a_invite.call_id().unwrap_or_default()).into_owned()
    }
}
