//! Attended transfer between two calls of one trunk (RFC 3515 REFER whose
//! `Refer-To` carries `?Replaces=`, RFC 3891; RFC 5589 §7 call flow).
//!
//! A PBX holding call 1 (far party A) and call 2 (far party C) through
//! sipfront REFERs call 1's trunk leg with `Refer-To: <…?Replaces=…>`
//! naming call 2's trunk leg as the PBX sees it. Where a phone would send
//! A an INVITE with `Replaces` to C, sipfront joins A and C itself:
//!
//! 1. `202` and NOTIFY `100 Trying` (as for a blind transfer); the named
//!    dialog must be the trunk leg of another confirmed call of the same
//!    trunk, else NOTIFY `481` (no such dialog, RFC 3891 §3) or `403` (a
//!    carrier's dialog, another trunk's call) and both calls go on.
//! 2. A gets an offerless re-INVITE; its 2xx carries a fresh offer
//!    (RFC 3725 §4.1 flow I, third-party call control) rather than a
//!    replay of an SDP from another dialog as a new offer.
//! 3. The far legs of both calls move into a new *bridged* call: C gets a
//!    re-INVITE with A's offer, C's answer goes to A in the ACK of step 2.
//! 4. The referrer gets NOTIFY `200`; calls 1 and 2 BYE their trunk legs
//!    and end there (their CDRs end at the bridge).
//!
//! The bridged call holds one channel (call 2's: the trunk's, or the DID's
//! for a received call) as a blind transfer's new call does, is recorded
//! under its own Call-ID from the bridge to its end, and keeps call 2's
//! terms (rate, limits) with A as the other end.
//!
//! An INVITE that itself carries `Replaces` (RFC 3891 §3) is refused: `481`
//! when it names no dialog of sipfront's, `403` when it does (taking over
//! a leg from outside is not supported; the PBX transfers with REFER).

use std::time::Instant;

use super::admission::RefusalCause;
use super::call::{Call, NewCall};
use super::leg::Side;
use super::table::CallId;
use super::{B2bua, ChannelGuard, Rejection};
use crate::sip::{HeaderName, Message, StatusCode};
use crate::transaction::TransactionKey;

/// Longest `Replaces` value considered (a Call-ID and two tags).
const MAX_LEN: usize = 512;

/// The dialog a `Replaces` names (RFC 3891 §6.1), as its sender sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Replaces {
    pub(crate) call_id: String,
    pub(crate) to_tag: String,
    pub(crate) from_tag: String,
}

impl Replaces {
    /// The `Replaces=` value among a URI's escaped headers (`?a=b&c=d`,
    /// RFC 3261 §19.1.1): `None` without one, `Some(None)` if malformed.
    pub(crate) fn in_uri_headers(headers: &str) -> Option<Option<Replaces>> {
        let value = headers.split('&').find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.eq_ignore_ascii_case("replaces").then_some(value)
        })?;
        Some(unescape(value).as_deref().and_then(Replaces::parse))
    }

    /// `callid;to-tag=x;from-tag=y` (RFC 3891 §6.1); other parameters
    /// (`early-only`) are ignored: only confirmed dialogs are joined.
    pub(crate) fn parse(value: &str) -> Option<Replaces> {
        if value.len() > MAX_LEN {
            return None;
        }
        let mut parts = value.split(';');
        let call_id = parts.next()?.trim();
        let (mut to_tag, mut from_tag) = (None, None);
        for p in parts {
            let (name, v) = p.split_once('=').unwrap_or((p, ""));
            let (name, v) = (name.trim(), v.trim());
            if name.eq_ignore_ascii_case("to-tag") {
                to_tag = Some(v);
            } else if name.eq_ignore_ascii_case("from-tag") {
                from_tag = Some(v);
            }
        }
        let (to_tag, from_tag) = (to_tag?, from_tag?);
        if call_id.is_empty() || to_tag.is_empty() || from_tag.is_empty() {
            return None;
        }
        Some(Replaces {
            call_id: call_id.to_owned(),
            to_tag: to_tag.to_owned(),
            from_tag: from_tag.to_owned(),
        })
    }

    /// Both ways of reading the tags: RFC 3891 §3 compares `to-tag` with
    /// the local tag (ours, on the leg named), `from-tag` with the remote
    /// one; some PBXs write them the other way round. Both must match.
    /// (our local tag, their remote tag), both ways.
    fn keys(&self) -> [(&str, &str); 2] {
        [
            (self.to_tag.as_str(), self.from_tag.as_str()),
            (self.from_tag.as_str(), self.to_tag.as_str()),
        ]
    }
}

/// `%XX` escapes of a URI header value (RFC 3261 §25.1 `hnv-unreserved`;
/// `+` is itself, unlike in HTML forms). `None` if malformed.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl B2bua {
    /// The call and leg `rep` names, whichever way its tags are written.
    fn replaced_dialog(&self, rep: &Replaces) -> Option<(CallId, Side)> {
        rep.keys().into_iter().find_map(|(local, remote)| {
            let (id, side) = self.table.find_dialog(&rep.call_id, local)?;
            let call = self.table.calls.get(&id)?;
            (call.remote_tag(side) == Some(remote)).then_some((id, side))
        })
    }

    /// Call `id`'s REFER (already answered `202`) asks to replace the
    /// dialog `rep`: the call to join, or the status to NOTIFY.
    fn replaceable(&self, id: CallId, rep: &Replaces) -> Result<CallId, StatusCode> {
        let no_dialog = StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST;
        let (other, side) = self.replaced_dialog(rep).ok_or(no_dialog)?;
        let referrer = self.table.calls.get(&id).ok_or(no_dialog)?;
        let target = self.table.calls.get(&other).ok_or(no_dialog)?;
        if other == id || side != target.trunk_side() {
            // Its own dialog, or a carrier's: not the PBX's to give away.
            return Err(StatusCode::FORBIDDEN);
        }
        let trunk = referrer.pbx_trunk();
        if trunk.is_empty() || target.pbx_trunk() != trunk {
            return Err(StatusCode::FORBIDDEN);
        }
        target.joinable()?;
        Ok(other)
    }

    /// Starts the attended transfer of call `id` (its REFER answered
    /// `202`) to the dialog `rep` names: A's fresh offer is asked for, or
    /// the refusal NOTIFYed and both calls go on.
    pub(super) fn start_attended(&mut self, id: CallId, rep: &Replaces, now: Instant) {
        match self.replaceable(id, rep) {
            Ok(other) => self.with_call(id, now, |c, fx| c.fetch_offer(other, fx)),
            Err(status) => {
                tracing::info!(
                    status = status.0,
                    "attended transfer refused: the Replaces dialog is not another call of this trunk"
                );
                self.with_call(id, now, |c, fx| c.transfer_failed(status, fx));
            }
        }
    }

    /// A's fresh offer came on call `id` (its 2xx with CSeq `ack` waits
    /// for an ACK): the far legs of `id` and `with` become the bridged
    /// call, C is re-INVITEd with the offer, both trunk legs are ended.
    pub(super) fn join(&mut self, id: CallId, with: CallId, ack: u32, now: Instant) {
        let ready = match self.table.calls.get(&with) {
            Some(c) => c.joinable(),
            None => Err(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST),
        };
        let bridged = ready.and_then(|()| self.bridged_call(id, with, now));
        let mut call = match bridged {
            Ok(c) => c,
            Err(status) => {
                tracing::info!(
                    status = status.0,
                    "attended transfer failed, the call goes on"
                );
                return self.with_call(id, now, |c, fx| c.abort_join(ack, status, fx));
            }
        };
        let (Some(c), Some(a)) = (
            self.table.calls.get_mut(&with).and_then(Call::give_far_leg),
            self.table.calls.get_mut(&id).and_then(Call::hand_over),
        ) else {
            return;
        };
        call.join_legs(c, a, ack, &self.cfg, now);
        tracing::info!(
            call_id = %call.record_id(),
            trunk = ?call.terms.trunk_id(),
            "attended transfer: the far parties are bridged"
        );
        self.stats.calls += 1;
        let bridged = self.table.insert(call);
        self.with_call(id, now, |c, fx| {
            // Where a retransmission of A's 2xx finds its ACK.
            c.set_transfer_child(bridged);
            c.transfer_succeeded(StatusCode::OK, fx);
        });
        self.with_call(with, now, |c, fx| c.end_call(None, StatusCode::OK, fx));
        self.with_call(bridged, now, |c, fx| c.bridge(fx));
    }

    /// The bridged call of calls `id` (A's) and `with` (C's), before its
    /// legs move in: call 2's terms with A as the other end, recorded
    /// under a Call-ID of its own.
    fn bridged_call(&mut self, id: CallId, with: CallId, now: Instant) -> Result<Call, StatusCode> {
        let gone = StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST;
        let a = self.table.calls.get(&id).ok_or(gone)?;
        let c = self.table.calls.get(&with).ok_or(gone)?;
        let terms = c.joined_terms(&a.far_number());
        let (source, transport) = c.peer(c.trunk_side().other());
        let invite = self
            .transfer_invite(&terms.decision.number, &terms.decision.caller_id, None)
            .ok_or(StatusCode::SERVER_INTERNAL_ERROR)?;
        let key = TransactionKey::server(&invite).map_err(|_| StatusCode::SERVER_INTERNAL_ERROR)?;
        let status_url = self
            .admission
            .status_url(terms.direction, terms.did.as_deref());
        // Call 2's channel passes to the bridged call: counted before call
        // 2 gives its own back, never refused (it is no new call).
        let channel = ChannelGuard::acquire(&self.channels, terms.channel(), None)
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
        let new = NewCall {
            invite: &invite,
            key,
            source,
            transport,
            plan: Vec::new(),
            admitted: terms,
            channel,
            status_url,
        };
        Call::new(new, &self.cfg, now, &mut self.rng)
    }

    /// A new INVITE carrying `Replaces` (RFC 3891 §3): the refusal, if so.
    pub(super) fn invite_replaces(&self, msg: &Message) -> Option<Rejection> {
        let name = HeaderName::from_bytes(b"Replaces");
        let mut values = msg.headers(&name);
        let first = values.next()?;
        let parsed = match values.next() {
            Some(_) => None,
            None => std::str::from_utf8(first).ok().and_then(Replaces::parse),
        };
        let (status, why) = match parsed {
            // §3: more than one, or unreadable.
            None => (StatusCode::BAD_REQUEST, "malformed Replaces"),
            Some(rep) if self.replaced_dialog(&rep).is_some() => (
                StatusCode::FORBIDDEN,
                "INVITE with Replaces: a call's leg is not taken over from outside",
            ),
            Some(_) => (
                StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST,
                "INVITE with Replaces naming no dialog",
            ),
        };
        Some(Rejection::new(status, RefusalCause::Unrelayable, &why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_is_read_from_escaped_uri_headers() {
        let rep = |call_id: &str, to: &str, from: &str| {
            Some(Some(Replaces {
                call_id: call_id.to_owned(),
                to_tag: to.to_owned(),
                from_tag: from.to_owned(),
            }))
        };
        assert_eq!(
            Replaces::in_uri_headers("Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2"),
            rep("abc@h", "1", "2")
        );
        assert_eq!(
            Replaces::in_uri_headers(
                "x=y&replaces=a+b%40h%3Bfrom-tag%3D2%3Bearly-only%3Bto-tag%3D1"
            ),
            rep("a+b@h", "1", "2"),
            "any order, `+` kept, early-only ignored"
        );
        assert_eq!(Replaces::in_uri_headers("subject=hi"), None);
        for bad in [
            "Replaces=abc%3Bto-tag%3D1",
            "Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D",
            "Replaces=%3Bto-tag%3D1%3Bfrom-tag%3D2",
            "Replaces=abc%4",
            "Replaces=abc%zz%3Bto-tag%3D1%3Bfrom-tag%3D2",
            "Replaces=abc%+1%3Bto-tag%3D1%3Bfrom-tag%3D2",
            "Replaces=%FF%3Bto-tag%3D1%3Bfrom-tag%3D2",
        ] {
            assert_eq!(Replaces::in_uri_headers(bad), Some(None), "{bad}");
        }
        let long = format!("Replaces={}%3Bto-tag%3D1%3Bfrom-tag%3D2", "a".repeat(600));
        assert_eq!(Replaces::in_uri_headers(&long), Some(None));
    }
}
