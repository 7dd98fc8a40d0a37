//! RFC 3262 on a call: an upstream's provisional responses reach the
//! caller reliably or not, as each side supports (see `reliable.rs`), and
//! the caller's PRACK is answered here or relayed with its RAck mapped.

use super::{Call, Fx};
use crate::b2bua::leg::Side;
use crate::b2bua::reliable::{self, PrackFor};
use crate::b2bua::table::Purpose;
use crate::sip::{Message, Method, StatusCode};
use crate::transaction::TransactionKey;

impl Call {
    /// Relays the provisional `resp` of attempt `k` to the caller.
    pub(super) fn relay_provisional(
        &mut self,
        k: usize,
        status: StatusCode,
        resp: &Message,
        fx: &mut Fx<'_>,
    ) {
        if self.a_final.is_some() {
            return;
        }
        self.rel.aimed = Some(k);
        let Some(b_rseq) = reliable::reliable_rseq(resp) else {
            if self.rel.a_requires {
                // §3: a caller requiring 100rel gets every 18x reliably.
                return self.send_own_reliable(status, resp, fx);
            }
            return self.answer_a(status, Some(resp), fx);
        };
        if !self.rel.a_supports {
            // The caller cannot PRACK: we do, and relay it unreliably.
            if self.rel.must_prack(k, b_rseq) {
                self.prack_upstream(k, b_rseq, fx);
                self.answer_a(status, Some(resp), fx);
            }
            return;
        }
        if let Some(bytes) = self.rel.relayed_bytes(k, b_rseq) {
            // The upstream retransmits until the caller's PRACK reaches it.
            let bytes = bytes.clone();
            fx.raw(bytes, self.a.dest, self.a.transport);
            return;
        }
        let a_rseq = self.rel.next_rseq();
        let extra = [
            ("Require", "100rel".to_owned()),
            ("RSeq", a_rseq.to_string()),
        ];
        let bytes = self.response_ext(Side::A, &self.a_invite, status, Some(resp), &extra, fx.cfg);
        self.rel.remember(k, b_rseq, a_rseq, bytes.clone());
        let key = self.a_invite_key.clone();
        fx.respond(&key, status, bytes);
    }

    /// Our own reliable 18x to the caller (the upstream sent it unreliably).
    fn send_own_reliable(&mut self, status: StatusCode, resp: &Message, fx: &mut Fx<'_>) {
        if self.rel.own_pending() {
            // §3: one unacknowledged reliable provisional at a time.
            self.rel.queued = Some(resp.detached());
            return;
        }
        let rseq = self.rel.next_rseq();
        let extra = [("Require", "100rel".to_owned()), ("RSeq", rseq.to_string())];
        let bytes = self.response_ext(Side::A, &self.a_invite, status, Some(resp), &extra, fx.cfg);
        let sdp = !resp.body().is_empty();
        self.rel
            .send_own(rseq, bytes.clone(), sdp, fx.cfg.timers.t1, fx.now);
        let key = self.a_invite_key.clone();
        fx.respond(&key, status, bytes);
    }

    /// PRACK for the upstream's reliable 18x `rseq` of attempt `k` (§7.2).
    fn prack_upstream(&mut self, k: usize, rseq: u32, fx: &mut Fx<'_>) {
        let Some(cseq) = self
            .attempts
            .get(k)
            .and_then(|a| a.invite.cseq().ok())
            .map(|c| c.seq)
        else {
            return;
        };
        let local = fx.cfg.local.clone();
        let b = self
            .b
            .request(Method::Prack, &local, None, fx.rng)
            .header("RAck", &format!("{rseq} {cseq} INVITE"));
        let leg = self.b.clone();
        fx.request(b, &leg, Purpose::Prack);
    }

    /// A PRACK from `side`: answered here (our own reliable 18x, or nothing
    /// to acknowledge: `481`, §3), or the RAck to relay it to the upstream
    /// with.
    pub(super) fn on_prack(
        &mut self,
        side: Side,
        req: &Message,
        key: &TransactionKey,
        fx: &mut Fx<'_>,
    ) -> Option<String> {
        let found = match (side, reliable::rack(req)) {
            (Side::A, Some((rseq, _))) => self.rel.on_prack(rseq),
            _ => PrackFor::Unknown,
        };
        let status = match found {
            PrackFor::Relayed { attempt, b_rseq } => {
                let current = self.winner.or(self.rel.aimed);
                let cseq = self
                    .attempts
                    .get(attempt)
                    .and_then(|a| a.invite.cseq().ok())
                    .map(|c| c.seq);
                match cseq {
                    Some(cseq) if current == Some(attempt) => {
                        return Some(format!("{b_rseq} {cseq} INVITE"));
                    }
                    // That upstream attempt is over: nothing to relay to.
                    _ => StatusCode::OK,
                }
            }
            PrackFor::Own => {
                let bytes = self.response(side, req, StatusCode::OK, None, fx.cfg);
                fx.respond(key, StatusCode::OK, bytes);
                if !self.release_2xx(fx) {
                    if let Some(next) = self.rel.queued.take() {
                        if let Some(status) = next.status() {
                            self.send_own_reliable(status, &next, fx);
                        }
                    }
                }
                return None;
            }
            PrackFor::Unknown => StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST,
        };
        let bytes = self.response(side, req, status, None, fx.cfg);
        fx.respond(key, status, bytes);
        None
    }

    /// Holds the upstream's 2xx `resp` to attempt `k` while our reliable
    /// 18x with SDP awaits its PRACK (§3). True when held.
    pub(super) fn hold_2xx(&mut self, k: usize, resp: &Message) -> bool {
        if !self.rel.blocks_2xx() {
            return false;
        }
        // The upstream retransmits it until ACKed; keep the newest.
        self.rel.held = Some((k, resp.detached()));
        true
    }

    /// Processes a held 2xx now that nothing blocks it; true if there was one.
    fn release_2xx(&mut self, fx: &mut Fx<'_>) -> bool {
        match self.rel.held.take() {
            Some((k, resp)) => {
                self.rel.finish();
                self.on_invite_response(k, &resp, fx);
                true
            }
            None => false,
        }
    }

    /// Retransmits our own reliable 18x while it awaits its PRACK.
    pub(super) fn reliable_timeout(&mut self, fx: &mut Fx<'_>) {
        if self.a_final.is_some() {
            self.rel.finish();
            return;
        }
        if let Some(bytes) = self.rel.poll(fx.now) {
            fx.raw(bytes, self.a.dest, self.a.transport);
        }
        if !self.rel.own_pending() {
            // Given up on the PRACK (64·T1): the held 2xx goes anyway.
            self.release_2xx(fx);
        }
    }
}
