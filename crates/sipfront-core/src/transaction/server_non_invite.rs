//! RFC 3261 §17.2.2 non-INVITE server transaction.
//!
//! ```text
//!   Trying --TU 1xx: send--> Proceeding --TU 1xx: send
//!     |  retransmit: absorbed     |  retransmit: resend last 1xx
//!     +--TU 200-699: send---------+--> Completed (J = 64·T1 UDP / 0 TCP;
//!                                      retransmit: resend final) --J--> Terminated
//!   Trying/Proceeding --C (64·T1, TU never answered)--> Timeout, Terminated
//! ```
//!
//! The C guard is ours, not the RFC's: after 64·T1 the client's Timer F has
//! fired, so a final response could no longer be of use to it.

use std::time::Instant;

use super::action::{Action, Actions};
use super::timer::{Timer, TimerConfig, TimerTable};
use super::RespondError;

/// States of the non-INVITE server transaction (§17.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// Request received, no response yet; retransmissions are absorbed.
    Trying,
    /// The TU sent a provisional; retransmissions get it again.
    Proceeding,
    /// The TU sent a final response; retransmissions get it again.
    Completed,
    /// Done; the manager removes the transaction.
    Terminated,
}

/// The non-INVITE server transaction state machine.
#[derive(Debug)]
pub(crate) struct ServerNonInvite {
    state: ServerNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
}

impl ServerNonInvite {
    /// Creates the transaction for a new request (§17.2.2).
    pub(crate) fn new(cfg: TimerConfig, reliable: bool, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        timers.set(Timer::C, now + cfg.t1x64());
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            cfg,
            reliable,
            timers,
        }
    }

    /// Current state.
    pub(crate) fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// Earliest armed timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A retransmission of the request arrived.
    pub(crate) fn on_request(&mut self, out: &mut Actions) {
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            out.push(Action::SendResponse);
        }
    }

    /// Whether `respond(code)` would be accepted.
    pub(crate) fn accepts(&self, code: u16) -> bool {
        matches!(
            (self.state, code),
            (
                ServerNonInviteState::Trying | ServerNonInviteState::Proceeding,
                100..=699
            )
        )
    }

    /// The TU sends a response with status `code`.
    ///
    /// # Errors
    /// [`RespondError::InvalidState`] after the final response,
    /// [`RespondError::BadStatus`] outside 100..=699.
    pub(crate) fn respond(
        &mut self,
        code: u16,
        now: Instant,
        out: &mut Actions,
    ) -> Result<(), RespondError> {
        use ServerNonInviteState::*;
        if !(100..=699).contains(&code) {
            return Err(RespondError::BadStatus(code));
        }
        if !self.accepts(code) {
            return Err(RespondError::InvalidState);
        }
        out.push(Action::SendResponse);
        if code < 200 {
            self.state = Proceeding;
        } else {
            self.timers.stop_all();
            self.state = Completed;
            if self.reliable {
                self.terminate(out);
            } else {
                self.timers.set(Timer::J, now + self.cfg.t1x64());
            }
        }
        Ok(())
    }

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Actions) {
        while self.state != ServerNonInviteState::Terminated {
            let Some(timer) = self.timers.take_due(now) else {
                return;
            };
            match timer {
                Timer::C => {
                    out.push(Action::Timeout(Timer::C));
                    self.terminate(out);
                }
                Timer::J => self.terminate(out),
                _ => {}
            }
        }
    }

    /// The transport failed to send: terminate.
    pub(crate) fn on_transport_error(&mut self, out: &mut Actions) {
        self.terminate(out);
    }

    /// The TU answered statelessly: terminate without Timer J.
    pub(crate) fn forget(&mut self, out: &mut Actions) {
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Actions) {
        if self.state != ServerNonInviteState::Terminated {
            self.timers.stop_all();
            self.state = ServerNonInviteState::Terminated;
            out.push(Action::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::tests::origin;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn trying_absorbs_silently_proceeding_resends() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false, t0);
        tx.on_request(&mut out);
        assert!(out.is_empty());
        assert_eq!(tx.respond(100, t0, &mut out), Ok(()));
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        out.clear();
        tx.on_request(&mut out);
        assert_eq!(out, [Action::SendResponse]);
    }

    #[test]
    fn completed_resends_final_until_j() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false, t0);
        assert_eq!(tx.respond(200, t0 + ms(1), &mut out), Ok(()));
        assert_eq!(
            tx.respond(200, t0, &mut out),
            Err(RespondError::InvalidState)
        );
        assert_eq!(
            tx.respond(700, t0, &mut out),
            Err(RespondError::BadStatus(700))
        );
        out.clear();
        tx.on_request(&mut out);
        assert_eq!(out, [Action::SendResponse]);
        out.clear();
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_001)));
        tx.handle_timeout(t0 + ms(32_000), &mut out);
        assert!(out.is_empty());
        tx.handle_timeout(t0 + ms(32_001), &mut out);
        assert_eq!(out, [Action::Terminated]);
    }

    #[test]
    fn reliable_zero_j() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), true, t0);
        assert_eq!(tx.respond(481, t0, &mut out), Ok(()));
        assert_eq!(out, [Action::SendResponse, Action::Terminated]);
    }

    #[test]
    fn silent_tu_guarded() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ServerNonInvite::new(TimerConfig::default(), false, t0);
        tx.handle_timeout(t0 + ms(32_000), &mut out);
        assert_eq!(out, [Action::Timeout(Timer::C), Action::Terminated]);
        tx.on_transport_error(&mut out);
        assert_eq!(out.len(), 2);
    }
}
