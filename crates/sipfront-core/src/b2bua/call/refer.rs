//! A call's part in a blind transfer (RFC 3515 REFER, RFC 3420 sipfrag
//! NOTIFY, RFC 5589 §6): the *referring* call answers the REFER, reports
//! the new call's progress to the referrer and, once its other leg has been
//! handed over, ends the referrer's leg; the *new* call places the INVITE to
//! the `Refer-To` target and, once answered, re-INVITEs the transferred
//! party with the new party's SDP so media flows between them.
//!
//! The orchestration between the two calls (admission, hand-over of the
//! dialog) is `b2bua/transfer.rs`; here is only what one call does.
//!
//! Choices (what FreeSWITCH and SEMS SBC do where RFC 3515 leaves room):
//! * the REFER is never relayed: its `Refer-To` names the referrer's side;
//! * NOTIFYs carry `100 Trying`, then the final status line only;
//! * the referrer's leg gets BYE once the final NOTIFY is answered;
//! * the new INVITE offers the transferred party's last SDP (early offer,
//!   no re-INVITE round trip before the new party rings); without one it
//!   goes offerless and its ACK carries the transferred party's answer.

use bytes::Bytes;

use super::{Call, Fx, Phase};
use crate::b2bua::leg::{Leg, Side};
use crate::b2bua::record::Direction;
use crate::b2bua::session_timer::{self, LegTimer};
use crate::b2bua::table::{CallId, Purpose};
use crate::sip::{HeaderName, Message, Method, StatusCode};

/// The sipfrag content type (RFC 3420, RFC 3515 §2.4.5).
const SIPFRAG: &str = "message/sipfrag;version=2.0";

/// How long the referrer may keep the implicit subscription (RFC 3515
/// §2.4.4 lets the notifier choose); a transfer's new call cannot ring
/// longer than Timer C anyway.
const SUBSCRIPTION_S: u32 = 180;

/// Transfer state of one call, with the last SDP each leg's peer sent.
#[derive(Debug, Default)]
pub(crate) struct Xfer {
    pub(super) sdp_a: Option<Bytes>,
    pub(super) sdp_b: Option<Bytes>,
    pub(crate) role: Role,
}

/// What the call is in a transfer.
#[derive(Debug, Default)]
pub(crate) enum Role {
    /// Not part of one.
    #[default]
    None,
    /// Its trunk's leg sent a REFER.
    Referrer(Referral),
    /// It is the new call of a transfer (or the bridged call of an
    /// attended one, `call/attended.rs`).
    Transferee(Transferee),
    /// Its far leg went to an attended transfer's bridged call; `trunk`
    /// is the leg it still ends.
    Replaced {
        /// The trunk's leg.
        trunk: Side,
    },
}

/// The referring call's side of a transfer.
#[derive(Debug)]
pub(crate) struct Referral {
    /// The referrer's leg (the trunk's).
    pub(crate) side: Side,
    /// The new call while it is set up (after an attended transfer's
    /// join: the bridged call).
    pub(crate) child: Option<CallId>,
    /// `Event: refer;id=<REFER CSeq>` (RFC 3515 §2.4.4).
    event: String,
    /// The other leg now belongs to the new call: never BYE it from here.
    pub(crate) handed: bool,
    /// Attended transfer (`Replaces`): the call to join, and once the far
    /// party's fresh offer came, the CSeq of the 2xx its ACK answers.
    pub(super) joining: Option<(CallId, Option<u32>)>,
    /// A 2xx retransmission of that offer (its CSeq) after the join: the
    /// bridged call (`child`) sends its ACK again.
    pub(super) reack: Option<u32>,
}

/// The new call's side of a transfer.
#[derive(Debug)]
pub(crate) struct Transferee {
    /// The referring call, until the result is reported to it.
    pub(crate) referrer: Option<CallId>,
    /// The A-leg is the transferred party's dialog (handed over); before
    /// that it is a placeholder nothing is ever sent on.
    pub(crate) owned: bool,
    /// The Call-ID the call is recorded and listed under (its own INVITE's).
    pub(crate) record_id: String,
    /// The final status, not yet reported to the referring call.
    pub(crate) report: Option<StatusCode>,
    /// Offerless INVITE: the new party's 2xx (CSeq) waits for an ACK that
    /// carries the transferred party's answer.
    pub(super) b_ack: Option<u32>,
}

/// A transferred party's dialog on its way to the new call.
#[derive(Debug)]
pub(crate) struct Handed {
    leg: Leg,
    sdp: Option<Bytes>,
    timer: LegTimer,
}

/// What the B2BUA must do after a call's input, across calls.
#[derive(Debug)]
pub(crate) enum Followup {
    /// The new call of a transfer reached its final status.
    Report {
        /// The referring call.
        referrer: CallId,
        /// The new call's final status.
        status: StatusCode,
    },
    /// The referring call ended before its new call did: end that one too.
    Orphan(CallId),
    /// An attended transfer's far party sent its fresh offer (2xx CSeq
    /// `ack`): join it with call `with`'s far party.
    Join {
        /// The call whose trunk dialog the `Replaces` named.
        with: CallId,
        /// The CSeq of the 2xx awaiting an ACK with the answer.
        ack: u32,
    },
    /// The far party of a joined call retransmitted the 2xx with CSeq
    /// `seq`: the bridged call `to` resends its ACK, if sent already.
    Reack {
        /// The bridged call.
        to: CallId,
        /// The 2xx's CSeq.
        seq: u32,
    },
}

impl Xfer {
    /// Remembers `msg`'s body when it is SDP sent by `side`'s peer.
    pub(crate) fn note_sdp(&mut self, side: Side, msg: &Message) {
        let body = msg.body();
        let sdp = msg
            .content_type()
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(b"application/sdp"));
        if body.is_empty() || !sdp {
            return;
        }
        match side {
            Side::A => self.sdp_a = Some(body),
            Side::B => self.sdp_b = Some(body),
        }
    }

    /// The last SDP `side`'s peer sent.
    pub(crate) fn sdp(&self, side: Side) -> Option<&Bytes> {
        match side {
            Side::A => self.sdp_a.as_ref(),
            Side::B => self.sdp_b.as_ref(),
        }
    }

    /// Whether `side`'s dialog is not this call's to end: handed over to a
    /// transfer's new call, or a new call's placeholder A-leg.
    pub(crate) fn handed(&self, side: Side) -> bool {
        match &self.role {
            Role::Referrer(r) => r.handed && r.side != side,
            Role::Transferee(t) => !t.owned && side == Side::A,
            Role::Replaced { trunk } => *trunk != side,
            Role::None => false,
        }
    }

    /// Whether this is the new call of a transfer.
    pub(crate) fn is_transferee(&self) -> bool {
        matches!(self.role, Role::Transferee(_))
    }

    /// The new call of a transfer, with its own Call-ID for the record.
    pub(crate) fn transferee(referrer: CallId, record_id: String) -> Role {
        Role::Transferee(Transferee {
            referrer: Some(referrer),
            owned: false,
            record_id,
            report: None,
            b_ack: None,
        })
    }

    /// The cross-call work this call's last input left, if any.
    pub(crate) fn followup(&mut self, phase: Phase) -> Option<Followup> {
        match &mut self.role {
            Role::Transferee(t) => {
                let status = t.report.take()?;
                Some(Followup::Report {
                    referrer: t.referrer.take()?,
                    status,
                })
            }
            Role::Referrer(r) if r.handed && r.reack.is_some() => {
                let seq = r.reack.take()?;
                r.child.map(|to| Followup::Reack { to, seq })
            }
            Role::Referrer(r) if matches!(phase, Phase::Ended | Phase::Cancelled) && !r.handed => {
                r.child.take().map(Followup::Orphan)
            }
            Role::Referrer(r) if phase == Phase::Confirmed => match r.joining {
                Some((with, Some(ack))) => {
                    r.joining = None;
                    Some(Followup::Join { with, ack })
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl Call {
    /// The trunk's leg: the caller of a placed call, the callee of a
    /// received (DID) call.
    pub(crate) fn trunk_side(&self) -> Side {
        match self.terms.direction {
            Direction::Placed => Side::A,
            Direction::Received => Side::B,
        }
    }

    /// Why a REFER from `side` cannot start a transfer now, if so.
    pub(crate) fn refer_refusal(&self, side: Side) -> Option<StatusCode> {
        if self.phase != Phase::Confirmed || self.xfer.is_transferee() {
            // RFC 3515 §2.4.2: no dialog to transfer (yet, or any more).
            return Some(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST);
        }
        if side != self.trunk_side() {
            // Carriers do not move our trunks' calls elsewhere.
            return Some(StatusCode::FORBIDDEN);
        }
        if self.reinvite || self.ok.is_some() || !matches!(self.xfer.role, Role::None) {
            return Some(StatusCode::REQUEST_PENDING);
        }
        None
    }

    /// Answers a REFER on `side` with `status` (a final refusal, or `202`).
    pub(crate) fn answer_refer(
        &mut self,
        side: Side,
        req: &Message,
        key: &crate::transaction::TransactionKey,
        status: StatusCode,
        fx: &mut Fx<'_>,
    ) {
        let bytes = self.response(side, req, status, None, fx.cfg);
        fx.respond(key, status, bytes);
    }

    /// `202` to the REFER from `side`, the transfer noted, and the first
    /// NOTIFY (`100 Trying`, RFC 3515 §2.4.4) sent.
    pub(crate) fn accept_refer(
        &mut self,
        side: Side,
        req: &Message,
        key: &crate::transaction::TransactionKey,
        fx: &mut Fx<'_>,
    ) {
        self.leg_mut(side).learn_target(req);
        self.answer_refer(side, req, key, StatusCode::ACCEPTED, fx);
        let cseq = req.cseq().map_or(0, |c| c.seq);
        self.xfer.role = Role::Referrer(Referral {
            side,
            child: None,
            event: format!("refer;id={cseq}"),
            handed: false,
            joining: None,
            reack: None,
        });
        self.notify(StatusCode::TRYING, fx);
    }

    /// Notes the new call of this call's transfer.
    pub(crate) fn set_transfer_child(&mut self, child: CallId) {
        if let Role::Referrer(r) = &mut self.xfer.role {
            r.child = Some(child);
        }
    }

    /// Whether `child` is this call's transfer in progress.
    pub(crate) fn transfers_to(&self, child: CallId) -> bool {
        matches!(&self.xfer.role, Role::Referrer(r) if r.child == Some(child) && !r.handed)
    }

    /// The transfer in progress, if the referrer's leg is `side`.
    pub(crate) fn pending_transfer(&self, side: Side) -> Option<CallId> {
        match &self.xfer.role {
            Role::Referrer(r) if r.side == side && !r.handed => r.child,
            _ => None,
        }
    }

    /// A NOTIFY to the referrer with `status` as sipfrag; a final status
    /// ends the implicit subscription (RFC 3515 §2.4.7).
    fn notify(&mut self, status: StatusCode, fx: &mut Fx<'_>) {
        let Role::Referrer(r) = &self.xfer.role else {
            return;
        };
        let (side, event) = (r.side, r.event.clone());
        let state = if status.is_final() {
            "terminated;reason=noresource".to_owned()
        } else {
            format!("active;expires={SUBSCRIPTION_S}")
        };
        let frag = format!("SIP/2.0 {} {}\r\n", status.0, status.canonical_reason());
        let local = fx.cfg.local.clone();
        let leg = self.leg_mut(side);
        let b = leg
            .request(Method::Notify, &local, None, fx.rng)
            .header("Event", &event)
            .header("Subscription-State", &state)
            .body(SIPFRAG, Bytes::from(frag));
        let leg = leg.clone();
        fx.request(b, &leg, Purpose::Notify);
    }

    /// The new call failed with `status`: the referrer hears it and the
    /// call goes on as before (RFC 5589 §6: the transferor may retrieve it).
    pub(crate) fn transfer_failed(&mut self, status: StatusCode, fx: &mut Fx<'_>) {
        self.notify(status, fx);
        self.xfer.role = Role::None;
    }

    /// The other leg leaves for the transfer's new call: its dialog state,
    /// last SDP and session timer (RFC 4028 runs on per dialog). `None` if
    /// there is no transfer to hand it to.
    pub(crate) fn hand_over(&mut self) -> Option<Handed> {
        let Role::Referrer(r) = &mut self.xfer.role else {
            return None;
        };
        if r.handed || self.phase != Phase::Confirmed {
            return None;
        }
        r.handed = true;
        r.child = None;
        let other = r.side.other();
        Some(self.handed_leg(other))
    }

    /// `side`'s dialog state, last SDP and session timer, for the call
    /// that holds that dialog from now on.
    pub(super) fn handed_leg(&mut self, side: Side) -> Handed {
        Handed {
            leg: self.leg(side).clone(),
            sdp: self.xfer.sdp(side).cloned(),
            // Refreshing it is the new call's job from now on.
            timer: std::mem::take(self.sessions.get_mut(side)),
        }
    }

    /// Takes over a dialog handed by another call as leg `side`.
    pub(super) fn receive(&mut self, side: Side, handed: Handed) {
        *self.leg_mut(side) = handed.leg;
        match side {
            Side::A => self.xfer.sdp_a = handed.sdp,
            Side::B => self.xfer.sdp_b = handed.sdp,
        }
        *self.sessions.get_mut(side) = handed.timer;
    }

    /// The new call answered and holds the transferred party: the final
    /// NOTIFY; the referrer's leg gets BYE once it is answered.
    pub(crate) fn transfer_succeeded(&mut self, status: StatusCode, fx: &mut Fx<'_>) {
        self.notify(status, fx);
    }

    /// A NOTIFY was answered (or never was): after the final one of a
    /// completed transfer, the referrer's leg is ended.
    pub(crate) fn on_notify_done(&mut self, fx: &mut Fx<'_>) {
        if matches!(&self.xfer.role, Role::Referrer(r) if r.handed) {
            self.end_call(None, StatusCode::OK, fx);
        }
    }

    // ---- the new call ---------------------------------------------------

    /// Takes over the transferred party's dialog as this call's A-leg.
    pub(crate) fn take_over(&mut self, handed: Handed, referrer_left: bool) {
        self.receive(Side::A, handed);
        if let Role::Transferee(t) = &mut self.xfer.role {
            t.owned = true;
            if referrer_left {
                t.referrer = None;
            }
        }
    }

    /// Bounds the new call's ringing by Timer C (RFC 3261 §16.6 step 11:
    /// it has no A-leg INVITE whose transaction would); its answer sets
    /// the ordinary duration limits.
    pub(crate) fn limit_ringing(&mut self, until: std::time::Instant) {
        self.max_end = until;
    }

    /// Where `side`'s peer is reached.
    pub(crate) fn peer(&self, side: Side) -> (std::net::SocketAddr, crate::sip::Transport) {
        let leg = self.leg(side);
        (leg.dest, leg.transport)
    }

    /// The Call-ID the call is recorded under.
    pub(crate) fn record_id(&self) -> &str {
        match &self.xfer.role {
            Role::Transferee(t) => &t.record_id,
            _ => &self.a.call_id,
        }
    }

    /// A final status for the new call's (absent) caller: reported to the
    /// referring call; a failure after the hand-over ends the transferred
    /// party's dialog, which nobody else holds any more.
    pub(crate) fn transferee_final(&mut self, status: StatusCode, fx: &mut Fx<'_>) {
        self.a_final = Some(status);
        let Role::Transferee(t) = &mut self.xfer.role else {
            return;
        };
        t.report = Some(status);
        if t.owned && !status.is_success() {
            let local = fx.cfg.local.clone();
            let bye = self.a.request(Method::Bye, &local, None, fx.rng);
            let leg = self.a.clone();
            fx.request(bye, &leg, Purpose::Bye);
        }
    }

    /// The new party answered (2xx with CSeq `seq`): ACK it (or hold the ACK
    /// for the transferred party's answer), report, and bridge when the
    /// transferred party is already ours.
    pub(crate) fn transferee_answered(
        &mut self,
        seq: u32,
        status: StatusCode,
        resp: &Message,
        fx: &mut Fx<'_>,
    ) {
        self.xfer.note_sdp(Side::B, resp);
        // The new party's dialog negotiated its own session timer (§7.2).
        let timer = self.sessions.get_mut(Side::B);
        timer.refreshed(session_timer::as_uac(resp, &fx.cfg.session), fx.now);
        timer.update = session_timer::lists(resp, &HeaderName::Allow, "UPDATE");
        let offerless = self.a_invite.body().is_empty();
        if offerless {
            if let Role::Transferee(t) = &mut self.xfer.role {
                t.b_ack = Some(seq);
            }
        } else {
            self.send_ack(Side::B, seq, None, fx);
        }
        self.transferee_final(status, fx);
        if matches!(&self.xfer.role, Role::Transferee(t) if t.owned) {
            self.bridge(fx);
        }
    }

    /// The re-INVITE that moves the transferred party's media to the new
    /// party (its SDP as the offer; RFC 3264 §8).
    pub(crate) fn bridge(&mut self, fx: &mut Fx<'_>) {
        let local = fx.cfg.local.clone();
        let mut b = self.a.request(Method::Invite, &local, None, fx.rng);
        for (name, value) in self.sessions.get(Side::A).request_headers(&fx.cfg.session) {
            b = b.header(name, &value);
        }
        if let Some(sdp) = self.xfer.sdp(Side::B) {
            b = b.body("application/sdp", sdp.clone());
        }
        let leg = self.a.clone();
        self.reinvite = true;
        if fx.request(b, &leg, Purpose::Bridge).is_none() {
            self.reinvite = false;
            self.end_call(None, StatusCode::SERVER_INTERNAL_ERROR, fx);
        }
    }

    /// The transferred party's answer to the bridging re-INVITE (`None`:
    /// none came). A refusal ends the call: the two parties cannot talk.
    pub(crate) fn on_bridge_response(&mut self, resp: Option<&Message>, fx: &mut Fx<'_>) {
        let status = resp.and_then(Message::status);
        match (status, resp) {
            (Some(s), _) if s.is_provisional() => {}
            (Some(s), Some(r)) if s.is_success() => {
                let seq = r.cseq().map_or(0, |c| c.seq);
                if let Some((stored, bytes)) = self.stored_ack(Side::A) {
                    if *stored == seq {
                        let bytes = bytes.clone();
                        fx.raw(bytes, self.a.dest, self.a.transport);
                        return;
                    }
                }
                self.reinvite = false;
                self.a.learn_target(r);
                self.xfer.note_sdp(Side::A, r);
                // Our re-INVITE refreshed that dialog's session (RFC 4028 §7.4).
                let n = session_timer::as_uac(r, &fx.cfg.session);
                self.sessions.get_mut(Side::A).refreshed(n, fx.now);
                let sent = self
                    .xfer
                    .sdp(Side::B)
                    .map(|s| ("application/sdp".to_owned(), s.clone()));
                self.sessions.sent_sdp(Side::A, sent);
                let sent = self
                    .xfer
                    .sdp(Side::A)
                    .map(|s| ("application/sdp".to_owned(), s.clone()));
                self.sessions.sent_sdp(Side::B, sent);
                self.send_ack(Side::A, seq, None, fx);
                let owed = match &mut self.xfer.role {
                    Role::Transferee(t) => t.b_ack.take(),
                    _ => None,
                };
                if let Some(b_seq) = owed {
                    let body = self
                        .xfer
                        .sdp(Side::A)
                        .map(|s| ("application/sdp".to_owned(), s.clone()));
                    self.send_ack(Side::B, b_seq, body, fx);
                }
            }
            _ => {
                self.reinvite = false;
                if let Some(s) = status {
                    tracing::info!(
                        call_id = %self.record_id(),
                        status = s.0,
                        "transfer: the transferred party refused the new media, call ended"
                    );
                }
                let owed = match &mut self.xfer.role {
                    Role::Transferee(t) => t.b_ack.take(),
                    _ => None,
                };
                if let Some(b_seq) = owed {
                    self.send_ack(Side::B, b_seq, None, fx);
                }
                // A 408/481 leg is gone (RFC 3261 §12.2.1.2): no BYE to it.
                let gone = !matches!(status, Some(s) if !matches!(s.0, 408 | 481));
                let skip = gone.then_some(Side::A);
                self.end_call(skip, StatusCode::REQUEST_TIMEOUT, fx);
            }
        }
    }
}
