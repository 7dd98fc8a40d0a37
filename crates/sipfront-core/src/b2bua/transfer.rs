//! Blind transfer from a trunk (RFC 3515 REFER; RFC 5589 §6 call flow):
//! a transfer is a new B2BUA call, placed by sipfront under the referring
//! trunk's policy, to which the transferred party's dialog is handed over
//! once it answers.
//!
//! 1. A REFER from the trunk's leg of a confirmed call gets `202` and a
//!    NOTIFY `100 Trying` (`call/refer.rs`); the REFER is never relayed.
//! 2. The `Refer-To` number goes through the same admission and planner as
//!    an INVITE from that trunk (channels, rate, cost, caller ID, rewrite,
//!    on-net); a refusal is NOTIFYed (`403`, `503`, …) and the call goes on.
//! 3. The new call is a [`Call`] whose A-leg is a placeholder until its
//!    party answers; then the transferred party's leg moves into it
//!    (`hand_over`), it re-INVITEs that party with the new party's SDP, and
//!    the referring call NOTIFYs `200` and BYEs the referrer's leg.
//!
//! Channels and records: the new call is a call *placed* by the referring
//! trunk: it holds one of the trunk's channels and writes its own CDR (from
//! the REFER to its end, billed from its answer) under its own Call-ID. The
//! referring call's channel is counted free when the new call is admitted
//! (it is being replaced) and is given back when its referrer leg ends.
//!
//! A `Refer-To` with `?Replaces=` is an attended transfer (`replaces.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::call::{Call, Followup, NewCall, Xfer};
use super::leg::Side;
use super::replaces::Replaces;
use super::table::CallId;
use super::{B2bua, ChannelKey};
use crate::b2bua::record::Direction;
use crate::routing::Locations;
use crate::sip::build::RequestBuilder;
use crate::sip::{HeaderName, Message, Method, NameAddr, StatusCode, Transport};
use crate::transaction::TransactionKey;

/// Timer C (RFC 3261 §16.6): how long a transfer's new call may ring.
const TIMER_C: Duration = Duration::from_secs(180);

/// What a REFER asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// Blind transfer to this number (the `Refer-To` user part).
    Number(String),
    /// Attended transfer (`?Replaces=`, RFC 3891): join the call whose
    /// trunk dialog this names.
    Replaces(Replaces),
}

/// The one `Refer-To` of a REFER (RFC 3515 §2.4.1), or the status that
/// refuses it: `400` without exactly one well-formed value, `484` when it
/// names no number; `400` for a malformed `Replaces`.
fn refer_target(msg: &Message) -> Result<Target, StatusCode> {
    let mut values = msg.headers(&HeaderName::ReferTo);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(StatusCode::BAD_REQUEST);
    };
    let na = NameAddr::parse(value).ok_or(StatusCode::BAD_REQUEST)?;
    if !na.uri.is_supported() {
        return Err(StatusCode::BAD_REQUEST);
    }
    if let Some(rep) = na.uri.headers.and_then(Replaces::in_uri_headers) {
        return rep.map(Target::Replaces).ok_or(StatusCode::BAD_REQUEST);
    }
    let user = na.uri.user.unwrap_or_default();
    // Drop user parameters (`;phone-context=…`, RFC 3966 §5.1.5).
    let number = user.split(';').next().unwrap_or_default();
    if number.is_empty() {
        return Err(StatusCode::ADDRESS_INCOMPLETE);
    }
    Ok(Target::Number(number.to_owned()))
}

impl B2bua {
    /// An in-dialog REFER on server transaction `key` (RFC 3515): a blind
    /// or attended transfer from the trunk's leg, or a refusal (`481`,
    /// `403`, `491`, `400`, `484`).
    pub fn handle_refer(
        &mut self,
        msg: &Message,
        key: TransactionKey,
        source: SocketAddr,
        locations: &dyn Locations,
        now: Instant,
    ) {
        let Some((id, side)) = self.find_dialog(msg) else {
            return self.handle_in_dialog(msg, key, source, now);
        };
        let refused = self
            .table
            .calls
            .get(&id)
            .and_then(|c| c.refer_refusal(side));
        let target = match (refused, refer_target(msg)) {
            (Some(status), _) | (None, Err(status)) => {
                return self
                    .with_call(id, now, |c, fx| c.answer_refer(side, msg, &key, status, fx));
            }
            (None, Ok(Target::Replaces(rep))) => {
                self.with_call(id, now, |c, fx| c.accept_refer(side, msg, &key, fx));
                return self.start_attended(id, &rep, now);
            }
            (None, Ok(Target::Number(n))) => n,
        };
        self.with_call(id, now, |c, fx| c.accept_refer(side, msg, &key, fx));
        if let Err(status) = self.place_transfer(id, &target, source, locations, now) {
            self.with_call(id, now, |c, fx| c.transfer_failed(status, fx));
        }
    }

    /// The new call of call `referrer`'s transfer to `number`, under the
    /// referring trunk's policy; its INVITE is sent. The status to NOTIFY
    /// when it cannot be placed.
    fn place_transfer(
        &mut self,
        referrer: CallId,
        number: &str,
        source: SocketAddr,
        locations: &dyn Locations,
        now: Instant,
    ) -> Result<CallId, StatusCode> {
        let call = self
            .table
            .calls
            .get(&referrer)
            .ok_or(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST)?;
        let moved = call.trunk_side().other();
        // The trunk as it is configured now: a transfer is a new call.
        let trunk = match call.terms.direction {
            Direction::Placed => call.terms.trunk_id().and_then(|t| self.admission.trunk(t)),
            // The DID's trunk (its first-priority trunk destination).
            Direction::Received => self.admission.trunk_by_login(call.terms.sip_trunk()),
        }
        .cloned()
        .ok_or(StatusCode::FORBIDDEN)?;
        // The transferred party is the new call's caller (as FreeSWITCH
        // presents it); the trunk's caller-ID rules decide what is sent.
        let caller = match call.terms.direction {
            Direction::Placed => call.terms.decision.number.clone(),
            Direction::Received => call.terms.decision.caller_id.clone(),
        };
        let (dest, transport) = call.peer(moved);
        let sdp = call.xfer.sdp(moved).cloned();
        let channel = ChannelKey::Trunk(trunk.id());
        // The referrer's channel is the new call's to take over.
        let spare = u32::from(call.channel.is_some() && call.terms.channel() == channel);
        let active = self.channels.active(&channel).saturating_sub(spare);
        let invite = self
            .transfer_invite(number, &caller, sdp)
            .ok_or(StatusCode::ADDRESS_INCOMPLETE)?;
        let admitted = self
            .admission
            .admit_trunk(trunk.clone(), &invite, source.ip(), active)
            .and_then(|a| Ok((a.take_channel(&self.channels, spare)?, a)));
        let (channel, admitted) = match admitted {
            Ok((mut channel, a)) => {
                // A transfer's new call is not asked of a fleet's counter:
                // it replaces the referrer's channel (counted on this node,
                // written to the fleet with the node's next count).
                channel.go_on(false);
                (channel, a)
            }
            Err(refusal) => {
                tracing::info!(call_id = %msg_call_id(&invite), "transfer refused: {refusal}");
                let status = refusal.status();
                self.record_refusal(&invite, transport, Some(&trunk), None, status, now);
                return Err(status);
            }
        };
        let plan = match self.plan(&admitted, locations, now) {
            Ok(p) => p,
            Err(r) => {
                tracing::info!(call_id = %msg_call_id(&invite), "transfer refused: {}", r.why);
                self.record_refusal(
                    &invite,
                    transport,
                    Some(&trunk),
                    Some(&admitted),
                    r.status,
                    now,
                );
                return Err(r.status);
            }
        };
        let key = TransactionKey::server(&invite).map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?;
        let new = NewCall {
            invite: &invite,
            key,
            source: dest,
            transport,
            plan,
            status_url: self.admission.status_url(Direction::Placed, None),
            admitted,
            channel,
        };
        let mut call = Call::new(new, &self.cfg, now, &mut self.rng)?;
        call.xfer.role = Xfer::transferee(referrer, msg_call_id(&invite));
        call.limit_ringing(now + TIMER_C);
        tracing::info!(
            call_id = %msg_call_id(&invite),
            trunk = trunk.id(),
            to = %call.terms.decision.number,
            "transfer: placing the new call"
        );
        self.stats.calls += 1;
        let child = self.table.insert(call);
        if let Some(c) = self.table.calls.get_mut(&referrer) {
            c.set_transfer_child(child);
        }
        self.with_call(child, now, |call, fx| {
            if !call.send_attempt(fx) {
                call.end_call(None, StatusCode::SERVICE_UNAVAILABLE, fx);
            }
        });
        Ok(child)
    }

    /// The INVITE the referring trunk would have sent for `number`, as the
    /// new call's (never sent) A-leg INVITE: the transferred party `caller`
    /// calls, offering its last `sdp`.
    pub(super) fn transfer_invite(
        &mut self,
        number: &str,
        caller: &str,
        sdp: Option<Bytes>,
    ) -> Option<Message> {
        let host = &self.cfg.local.public_address;
        let uri = format!("sip:{number}@{host}");
        let caller = if caller.is_empty() {
            "anonymous"
        } else {
            caller
        };
        let mut b = RequestBuilder::new(Method::Invite, &uri)
            .via(
                Transport::Udp,
                &self.cfg.local.sent_by(Transport::Udp),
                &self.rng.branch(),
                false,
            )
            .max_forwards(70)
            .from(&format!("<sip:{caller}@{host}>"), Some(&self.rng.tag()))
            .to(&format!("<{uri}>"), None)
            .call_id(&self.rng.call_id(host))
            .cseq(1);
        if let Some(sdp) = sdp {
            b = b.body("application/sdp", sdp);
        }
        Message::parse(b.build()).ok()
    }

    /// A BYE from a referrer whose transfer is still ringing (RFC 5589 §6
    /// lets the transferor hang up after `202`): the transferred party is
    /// handed to the new call at once, so the BYE ends only the referrer.
    pub(super) fn before_in_dialog(&mut self, id: CallId, side: Side, msg: &Message) {
        if msg.method() != Some(&Method::Bye) {
            return;
        }
        let child = self
            .table
            .calls
            .get(&id)
            .and_then(|c| c.pending_transfer(side));
        if let Some(child) = child {
            self.hand_over(id, child, true);
        }
    }

    /// Moves the transferred party's dialog from call `from` to the new
    /// call `to` (re-indexed, so its requests reach the new call).
    fn hand_over(&mut self, from: CallId, to: CallId, referrer_left: bool) -> bool {
        if !self.table.calls.contains_key(&to) {
            return false;
        }
        let Some(handed) = self.table.calls.get_mut(&from).and_then(Call::hand_over) else {
            return false;
        };
        let Some(call) = self.table.calls.get_mut(&to) else {
            return false;
        };
        let placeholder = call.dialog_key(Side::A);
        call.take_over(handed, referrer_left);
        let key = call.dialog_key(Side::A);
        self.table.dialogs.remove(&placeholder);
        self.table.dialogs.insert(key, to);
        true
    }

    /// The cross-call consequence of call `id`'s last input.
    pub(super) fn transfer_followup(&mut self, id: CallId, followup: Followup, now: Instant) {
        match followup {
            Followup::Orphan(child) => self.terminate(child, now),
            Followup::Report { referrer, status } => {
                let waiting = self
                    .table
                    .calls
                    .get(&referrer)
                    .is_some_and(|c| c.transfers_to(id));
                if !waiting {
                    if status.is_success() {
                        self.terminate(id, now);
                    }
                    return;
                }
                if !status.is_success() {
                    tracing::info!(status = status.0, "transfer failed, the call goes on");
                    return self.with_call(referrer, now, |c, fx| c.transfer_failed(status, fx));
                }
                if self.hand_over(referrer, id, false) {
                    self.with_call(referrer, now, |c, fx| c.transfer_succeeded(status, fx));
                    self.with_call(id, now, |c, fx| c.bridge(fx));
                } else {
                    self.terminate(id, now);
                }
            }
            Followup::Join { with, ack } => self.join(id, with, ack, now),
            Followup::Reack { to, seq } => {
                self.with_call(to, now, |c, fx| c.reack(Side::B, seq, fx));
            }
        }
    }
}

fn msg_call_id(msg: &Message) -> String {
    String::from_utf8_lossy(msg.call_id().unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refer(refer_to: &[&str]) -> Message {
        let mut b = RequestBuilder::new(Method::Refer, "sip:sipfront@127.0.0.1")
            .via(Transport::Udp, "10.0.0.1:5060", "z9hG4bKr", true)
            .from("<sip:pbx@10.0.0.1>", Some("f"))
            .to("<sip:x@127.0.0.1>", Some("t"))
            .call_id("c@10.0.0.1")
            .cseq(3);
        for r in refer_to {
            b = b.header("Refer-To", r);
        }
        Message::parse(b.build()).unwrap()
    }

    #[test]
    fn refer_to_names_a_number_once() {
        let n = |s: &str| Ok(Target::Number(s.to_owned()));
        assert_eq!(
            refer_target(&refer(&["<sip:2125550100@10.0.0.1>"])),
            n("2125550100")
        );
        assert_eq!(refer_target(&refer(&["sip:+4420@10.0.0.1"])), n("+4420"));
        assert_eq!(
            refer_target(&refer(&["<tel:+12125550100>"])),
            n("+12125550100")
        );
        assert_eq!(
            refer_target(&refer(&[
                "<sip:2125550100;phone-context=x@10.0.0.1;user=phone>"
            ])),
            n("2125550100")
        );
        assert_eq!(
            refer_target(&refer(&[
                "<sip:200@10.0.0.1?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>"
            ])),
            Ok(Target::Replaces(Replaces {
                call_id: "abc@h".to_owned(),
                to_tag: "1".to_owned(),
                from_tag: "2".to_owned(),
            }))
        );
        assert_eq!(
            refer_target(&refer(&["<sip:200@10.0.0.1?Replaces=abc%3Bto-tag%3D1>"])),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(refer_target(&refer(&[])), Err(StatusCode::BAD_REQUEST));
        assert_eq!(
            refer_target(&refer(&["<sip:1@h>", "<sip:2@h>"])),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            refer_target(&refer(&["garbage"])),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            refer_target(&refer(&["<http://example.com/>"])),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            refer_target(&refer(&["<sip:10.0.0.9>"])),
            Err(StatusCode::ADDRESS_INCOMPLETE)
        );
    }
}
