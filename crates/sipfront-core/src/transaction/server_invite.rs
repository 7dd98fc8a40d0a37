//! RFC 3261 §17.2.1 INVITE server transaction, with the RFC 6026 "Accepted"
//! state for 2xx responses.
//!
//! ```text
//!   Proceeding --TU 1xx: send (reset C)--+   INVITE retransmit: resend last 1xx
//!     |   ^------------------------------+   C (TU never answered): Timeout -> Terminated
//!     +--TU 2xx: send--> Accepted  (L = 64·T1; TU 2xx retransmits sent; INVITE
//!     |                             retransmits absorbed; ACKs passed to the TU)
//!     +--TU 300-699: send--> Completed (G UDP, H)
//!   Completed: INVITE retransmit or G -> resend (G = min(2G, T2)); H: Timeout -> Terminated
//!   Completed --ACK--> Confirmed (I = T4 UDP / 0 TCP; absorbs ACKs) --I--> Terminated
//!   Accepted --L--> Terminated
//! ```
//!
//! 100 Trying (§17.2.1 "MUST generate a 100 (Trying) response unless it knows
//! that the TU will generate a provisional or final response within 200 ms")
//! is left to the TU: the endpoint answers every new INVITE with 100 at once
//! via `respond`, which costs less than a 200 ms timer per call.

use std::time::{Duration, Instant};

use super::action::{Action, Actions};
use super::timer::{Timer, TimerConfig, TimerTable};
use super::RespondError;

/// States of the INVITE server transaction (§17.2.1, RFC 6026 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    /// INVITE received; the TU may send provisionals.
    Proceeding,
    /// The TU sent a 2xx (RFC 6026); INVITE retransmissions are absorbed.
    Accepted,
    /// The TU sent a 300-699; it is retransmitted until the ACK arrives.
    Completed,
    /// The ACK arrived; further ACKs are absorbed.
    Confirmed,
    /// Done; the manager removes the transaction.
    Terminated,
}

/// What a request matching this transaction turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerInviteInput {
    /// A retransmitted INVITE: absorbed (last response resent if any).
    Retransmission,
    /// An ACK for our non-2xx final response: absorbed.
    AckAbsorbed,
    /// An ACK in Accepted (for the 2xx): the TU wants it.
    AckFor2xx,
}

/// The INVITE server transaction state machine.
#[derive(Debug)]
pub(crate) struct ServerInvite {
    state: ServerInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    /// Current Timer G interval (doubles, capped at T2).
    interval: Duration,
    /// Whether the TU has sent any response yet (something to resend).
    responded: bool,
}

impl ServerInvite {
    /// Creates the transaction for a new INVITE (§17.2.1).
    pub(crate) fn new(cfg: TimerConfig, reliable: bool, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::C, now + cfg.timer_c);
        ServerInvite {
            state: ServerInviteState::Proceeding,
            cfg,
            reliable,
            timers,
            interval: cfg.t1,
            responded: false,
        }
    }

    /// Current state.
    pub(crate) fn state(&self) -> ServerInviteState {
        self.state
    }

    /// Earliest armed timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A retransmission of the INVITE arrived.
    pub(crate) fn on_invite(&mut self, out: &mut Actions) -> ServerInviteInput {
        match self.state {
            // §17.2.1: resend the most recent provisional / the final response.
            ServerInviteState::Proceeding | ServerInviteState::Completed if self.responded => {
                out.push(Action::SendResponse)
            }
            // RFC 6026 §7.1: absorbed in Accepted (the TU retransmits its 2xx).
            _ => {}
        }
        ServerInviteInput::Retransmission
    }

    /// An ACK matching this transaction arrived.
    pub(crate) fn on_ack(&mut self, now: Instant, out: &mut Actions) -> ServerInviteInput {
        match self.state {
            ServerInviteState::Accepted => ServerInviteInput::AckFor2xx,
            ServerInviteState::Completed => {
                self.timers.stop_all();
                self.state = ServerInviteState::Confirmed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.timers.set(Timer::I, now + self.cfg.t4);
                }
                ServerInviteInput::AckAbsorbed
            }
            _ => ServerInviteInput::AckAbsorbed,
        }
    }

    /// The TU sends a response with status `code`. On success the manager has
    /// already stored the bytes as the transaction's last response.
    ///
    /// # Errors
    /// [`RespondError::InvalidState`] when the state does not allow it (a
    /// second final response, anything but 2xx in Accepted, anything after
    /// Completed) and [`RespondError::BadStatus`] outside 100..=699.
    pub(crate) fn respond(
        &mut self,
        code: u16,
        now: Instant,
        out: &mut Actions,
    ) -> Result<(), RespondError> {
        use ServerInviteState::*;
        match (self.state, code) {
            (Proceeding, 100..=199) => {
                self.timers.set(Timer::C, now + self.cfg.timer_c);
            }
            (Proceeding, 200..=299) => {
                self.timers.stop_all();
                self.state = Accepted;
                self.timers.set(Timer::L, now + self.cfg.t1x64());
            }
            (Proceeding, 300..=699) => {
                self.timers.stop_all();
                self.state = Completed;
                if !self.reliable {
                    self.timers.set(Timer::G, now + self.cfg.t1);
                }
                self.timers.set(Timer::H, now + self.cfg.t1x64());
            }
            // RFC 6026 §7.1: 2xx retransmissions from the TU go to the wire.
            (Accepted, 200..=299) => {}
            (_, 100..=699) => return Err(RespondError::InvalidState),
            _ => return Err(RespondError::BadStatus(code)),
        }
        self.responded = true;
        out.push(Action::SendResponse);
        Ok(())
    }

    /// Whether `respond(code)` would be accepted (checked before the manager
    /// replaces the stored last response).
    pub(crate) fn accepts(&self, code: u16) -> bool {
        use ServerInviteState::*;
        matches!(
            (self.state, code),
            (Proceeding, 100..=699) | (Accepted, 200..=299)
        )
    }

    /// Fires every timer due at `now`, earliest first.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Actions) {
        while self.state != ServerInviteState::Terminated {
            let Some(timer) = self.timers.take_due(now) else {
                return;
            };
            match timer {
                Timer::G if self.state == ServerInviteState::Completed => {
                    out.push(Action::SendResponse);
                    self.interval = self.interval.saturating_mul(2).min(self.cfg.t2);
                    self.timers.set(Timer::G, now + self.interval);
                }
                // H: the ACK never came (§17.2.1): the TU must end the call.
                // C: the TU never answered.
                Timer::H | Timer::C => {
                    out.push(Action::Timeout(timer));
                    self.terminate(out);
                }
                Timer::I | Timer::L => self.terminate(out),
                _ => {}
            }
        }
    }

    /// The transport failed to send (§17.2.1: inform the TU, terminate).
    pub(crate) fn on_transport_error(&mut self, out: &mut Actions) {
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Actions) {
        if self.state != ServerInviteState::Terminated {
            self.timers.stop_all();
            self.state = ServerInviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::tests::origin;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run_until(tx: &mut ServerInvite, t0: Instant, end: Instant) -> Vec<(u128, Action)> {
        let mut out = Actions::new();
        let mut fired = Vec::new();
        while let Some(at) = tx.poll_timeout().filter(|at| *at <= end) {
            tx.handle_timeout(at, &mut out);
            fired.extend(out.drain(..).map(|a| ((at - t0).as_millis(), a)));
        }
        fired
    }

    #[test]
    fn g_capped_at_t2_then_h_times_out() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerInvite::new(TimerConfig::default(), false, t0);
        assert!(tx.on_invite(&mut out) == ServerInviteInput::Retransmission);
        assert!(out.is_empty(), "nothing to resend before the TU answers");
        assert_eq!(tx.respond(486, t0, &mut out), Ok(()));
        assert_eq!(out, [Action::SendResponse]);
        let fired = run_until(&mut tx, t0, t0 + ms(100_000));
        let sends: Vec<_> = fired
            .iter()
            .filter(|(_, a)| *a == Action::SendResponse)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            sends,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            &fired[fired.len() - 2..],
            [
                (32_000, Action::Timeout(Timer::H)),
                (32_000, Action::Terminated)
            ]
        );
    }

    #[test]
    fn ack_confirms_then_i_absorbs() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerInvite::new(TimerConfig::default(), false, t0);
        assert_eq!(tx.respond(180, t0, &mut out), Ok(()));
        out.clear();
        tx.on_invite(&mut out);
        assert_eq!(out, [Action::SendResponse], "last provisional resent");
        out.clear();
        assert_eq!(tx.respond(404, t0 + ms(10), &mut out), Ok(()));
        assert_eq!(
            tx.respond(500, t0, &mut out),
            Err(RespondError::InvalidState)
        );
        out.clear();
        tx.on_invite(&mut out);
        assert_eq!(out, [Action::SendResponse]);
        out.clear();
        assert_eq!(
            tx.on_ack(t0 + ms(700), &mut out),
            ServerInviteInput::AckAbsorbed
        );
        assert_eq!(tx.state(), ServerInviteState::Confirmed);
        assert_eq!(
            tx.on_ack(t0 + ms(800), &mut out),
            ServerInviteInput::AckAbsorbed
        );
        tx.on_invite(&mut out);
        assert!(out.is_empty());
        assert_eq!(
            run_until(&mut tx, t0, t0 + ms(100_000)),
            [(5700, Action::Terminated)]
        );
    }

    #[test]
    fn reliable_no_g_and_zero_i() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerInvite::new(TimerConfig::default(), true, t0);
        assert_eq!(tx.respond(603, t0, &mut out), Ok(()));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)), "only H");
        out.clear();
        tx.on_ack(t0 + ms(5), &mut out);
        assert_eq!(out, [Action::Terminated]);
    }

    #[test]
    fn accepted_passes_acks_and_2xx_then_l() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerInvite::new(TimerConfig::default(), false, t0);
        assert_eq!(tx.respond(200, t0, &mut out), Ok(()));
        assert_eq!(tx.respond(200, t0 + ms(500), &mut out), Ok(()));
        assert_eq!(out, [Action::SendResponse, Action::SendResponse]);
        assert_eq!(
            tx.respond(486, t0, &mut out),
            Err(RespondError::InvalidState)
        );
        assert_eq!(
            tx.respond(99, t0, &mut out),
            Err(RespondError::BadStatus(99))
        );
        out.clear();
        tx.on_invite(&mut out);
        assert!(
            out.is_empty(),
            "INVITE retransmissions absorbed in Accepted"
        );
        assert_eq!(
            tx.on_ack(t0 + ms(600), &mut out),
            ServerInviteInput::AckFor2xx
        );
        assert_eq!(
            run_until(&mut tx, t0, t0 + ms(100_000)),
            [(32_000, Action::Terminated)]
        );
    }

    #[test]
    fn c_guards_a_silent_tu() {
        let t0 = origin();
        let cfg = TimerConfig::default();
        let mut tx = ServerInvite::new(cfg, false, t0);
        let end = t0 + ms(1_000_000);
        let c = cfg.timer_c.as_millis();
        assert_eq!(
            run_until(&mut tx, t0, end),
            [(c, Action::Timeout(Timer::C)), (c, Action::Terminated)]
        );
    }
}
