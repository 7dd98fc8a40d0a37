//! RFC 3261 §17.1.1 INVITE client transaction, with the RFC 6026 "Accepted"
//! state for 2xx responses.
//!
//! ```text
//!              send INVITE, A (UDP), B
//!   Calling --1xx--> Proceeding --1xx (reset C)--+
//!     |  |  A: resend, A*=2 (no cap)  |  ^--------+
//!     |  B: Timeout -> Terminated     |  C: Timeout -> Terminated
//!     +--2xx----------+---------------+--> Accepted  (M = 64·T1; 2xx passed up)
//!     +--300-699------+---------------+--> Completed (ACK sent, D; retransmits -> ACK again)
//!   Completed --D--> Terminated        Accepted --M--> Terminated
//! ```
//!
//! Inputs are reduced to what the machine needs (a status code, the clock) so
//! it is testable without a parser.

use std::time::{Duration, Instant};

use super::action::{Action, Actions};
use super::timer::{Timer, TimerConfig, TimerTable};

/// States of the INVITE client transaction (§17.1.1.2, RFC 6026 §7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, nothing heard yet.
    Calling,
    /// A provisional response arrived; retransmissions stop.
    Proceeding,
    /// A 2xx arrived (RFC 6026): further 2xx are passed to the TU for 64·T1.
    Accepted,
    /// A 300-699 arrived and was ACKed; retransmissions of it are re-ACKed.
    Completed,
    /// Done; the manager removes the transaction.
    Terminated,
}

/// The INVITE client transaction state machine.
#[derive(Debug)]
pub(crate) struct ClientInvite {
    state: ClientInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    /// Current Timer A interval (doubles on every firing, uncapped).
    interval: Duration,
}

impl ClientInvite {
    /// Creates the transaction and sends the INVITE (§17.1.1.2).
    pub(crate) fn start(cfg: TimerConfig, reliable: bool, now: Instant, out: &mut Actions) -> Self {
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::A, now + cfg.t1);
        }
        timers.set(Timer::B, now + cfg.t1x64());
        out.push(Action::SendRequest);
        ClientInvite {
            state: ClientInviteState::Calling,
            cfg,
            reliable,
            timers,
            interval: cfg.t1,
        }
    }

    /// Current state.
    pub(crate) fn state(&self) -> ClientInviteState {
        self.state
    }

    /// Earliest armed timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The deadline of one timer (tests).
    #[cfg(test)]
    pub(crate) fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    /// A response with status `code` matched this transaction.
    ///
    /// # Returns
    /// Whether the response must be passed to the TU.
    pub(crate) fn on_response(&mut self, code: u16, now: Instant, out: &mut Actions) -> bool {
        use ClientInviteState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                // §17.1.1.2: a provisional stops retransmission; B only runs in
                // Calling. C guards Proceeding and restarts on every 1xx.
                self.state = Proceeding;
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.timers.set(Timer::C, now + self.cfg.timer_c);
                true
            }
            (Calling | Proceeding, 200..=299) => {
                self.timers.stop_all();
                self.state = Accepted;
                self.timers.set(Timer::M, now + self.cfg.t1x64());
                true
            }
            (Calling | Proceeding, 300..=699) => {
                self.timers.stop_all();
                out.push(Action::SendAck);
                self.state = Completed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.timers.set(Timer::D, now + self.cfg.timer_d);
                }
                true
            }
            // RFC 6026 §7.2: further 2xx (retransmissions or forks) go to the TU,
            // which ACKs each of them.
            (Accepted, 200..=299) => true,
            // §17.1.1.2: retransmitted final responses are re-ACKed, not passed up.
            (Completed, 300..=699) => {
                out.push(Action::SendAck);
                false
            }
            _ => false,
        }
    }

    /// Fires every timer due at `now`, earliest first.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Actions) {
        while self.state != ClientInviteState::Terminated {
            let Some(timer) = self.timers.take_due(now) else {
                return;
            };
            match timer {
                Timer::A if self.state == ClientInviteState::Calling => {
                    out.push(Action::SendRequest);
                    // §17.1.1.2: "timer A ... reset with a value of 2*T1" and so
                    // on: doubling with no T2 cap (unlike Timer E).
                    self.interval = self.interval.saturating_mul(2);
                    self.timers.set(Timer::A, now + self.interval);
                }
                Timer::B | Timer::C => {
                    out.push(Action::Timeout(timer));
                    self.terminate(out);
                }
                Timer::D | Timer::M => self.terminate(out),
                _ => {}
            }
        }
    }

    /// The transport failed to send (§17.1.1.2: inform the TU, terminate).
    pub(crate) fn on_transport_error(&mut self, out: &mut Actions) {
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Actions) {
        if self.state != ClientInviteState::Terminated {
            self.timers.stop_all();
            self.state = ClientInviteState::Terminated;
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

    #[test]
    fn timer_a_doubles_uncapped_until_b() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(TimerConfig::default(), false, t0, &mut out);
        assert_eq!(out, [Action::SendRequest]);
        out.clear();
        let mut fired = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            tx.handle_timeout(at, &mut out);
            for a in out.drain(..) {
                fired.push((at - t0, a));
            }
        }
        // 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: intervals 0.5,1,2,4,8,16 (past T2=4 s).
        let sends: Vec<_> = fired
            .iter()
            .filter(|(_, a)| *a == Action::SendRequest)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            sends,
            [ms(500), ms(1500), ms(3500), ms(7500), ms(15500), ms(31500)]
        );
        assert_eq!(
            &fired[fired.len() - 2..],
            [
                (ms(32000), Action::Timeout(Timer::B)),
                (ms(32000), Action::Terminated)
            ]
        );
        assert_eq!(tx.state(), ClientInviteState::Terminated);
    }

    #[test]
    fn provisional_stops_a_and_b_then_c_guards() {
        let t0 = origin();
        let cfg = TimerConfig::default();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(cfg, false, t0, &mut out);
        out.clear();
        assert!(tx.on_response(180, t0 + ms(100), &mut out));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(tx.timer(Timer::A), None);
        assert_eq!(tx.timer(Timer::B), None);
        // Nothing is retransmitted any more.
        tx.handle_timeout(t0 + ms(40_000), &mut out);
        assert!(out.is_empty());
        // Another 1xx restarts C.
        assert!(tx.on_response(183, t0 + ms(60_000), &mut out));
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(60_000) + cfg.timer_c));
        tx.handle_timeout(t0 + ms(60_000) + cfg.timer_c, &mut out);
        assert_eq!(out, [Action::Timeout(Timer::C), Action::Terminated]);
    }

    #[test]
    fn final_non_2xx_acks_and_d_absorbs_then_terminates() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(TimerConfig::default(), false, t0, &mut out);
        out.clear();
        assert!(tx.on_response(486, t0 + ms(200), &mut out));
        assert_eq!(out, [Action::SendAck]);
        assert_eq!(tx.state(), ClientInviteState::Completed);
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + ms(200) + Duration::from_secs(32))
        );
        out.clear();
        // Retransmitted final: ACK again, not passed up.
        assert!(!tx.on_response(486, t0 + ms(700), &mut out));
        assert_eq!(out, [Action::SendAck]);
        out.clear();
        assert!(!tx.on_response(180, t0 + ms(800), &mut out));
        assert!(out.is_empty());
        tx.handle_timeout(t0 + ms(32_199), &mut out);
        assert!(out.is_empty());
        tx.handle_timeout(t0 + ms(32_200), &mut out);
        assert_eq!(out, [Action::Terminated]);
    }

    #[test]
    fn reliable_has_no_a_and_zero_d() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(TimerConfig::default(), true, t0, &mut out);
        assert_eq!(tx.timer(Timer::A), None);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        out.clear();
        assert!(tx.on_response(503, t0 + ms(10), &mut out));
        assert_eq!(out, [Action::SendAck, Action::Terminated]);
    }

    #[test]
    fn two_xx_accepted_passes_retransmits_then_m() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(TimerConfig::default(), false, t0, &mut out);
        out.clear();
        assert!(tx.on_response(200, t0 + ms(300), &mut out));
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert!(out.is_empty(), "the TU, not the transaction, ACKs a 2xx");
        assert!(tx.on_response(200, t0 + ms(800), &mut out));
        assert!(!tx.on_response(486, t0 + ms(900), &mut out));
        tx.handle_timeout(t0 + ms(300) + ms(32_000), &mut out);
        assert_eq!(out, [Action::Terminated]);
    }

    #[test]
    fn transport_error_terminates() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientInvite::start(TimerConfig::default(), false, t0, &mut out);
        out.clear();
        tx.on_transport_error(&mut out);
        tx.on_transport_error(&mut out);
        assert_eq!(out, [Action::Terminated]);
        assert_eq!(tx.poll_timeout(), None);
    }
}
