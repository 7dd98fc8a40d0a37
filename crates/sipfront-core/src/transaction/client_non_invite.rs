//! RFC 3261 §17.1.2 non-INVITE client transaction.
//!
//! ```text
//!            send request, E (UDP), F
//!   Trying --1xx--> Proceeding
//!     |  E: resend, E = min(2E, T2)   |  E: resend, E = T2
//!     +--200-699-------+--------------+--> Completed (K = T4 UDP / 0 TCP; absorbs retransmits)
//!     +--F: Timeout----+--------------+--> Terminated
//!   Completed --K--> Terminated
//! ```

use std::time::{Duration, Instant};

use super::action::{Action, Actions};
use super::timer::{Timer, TimerConfig, TimerTable};

/// States of the non-INVITE client transaction (§17.1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, nothing heard yet.
    Trying,
    /// A provisional response arrived; retransmissions continue at T2.
    Proceeding,
    /// A final response arrived; retransmissions of it are absorbed.
    Completed,
    /// Done; the manager removes the transaction.
    Terminated,
}

/// The non-INVITE client transaction state machine.
#[derive(Debug)]
pub(crate) struct ClientNonInvite {
    state: ClientNonInviteState,
    cfg: TimerConfig,
    reliable: bool,
    timers: TimerTable,
    /// Current Timer E interval (doubles, capped at T2).
    interval: Duration,
}

impl ClientNonInvite {
    /// Creates the transaction and sends the request (§17.1.2.2).
    pub(crate) fn start(cfg: TimerConfig, reliable: bool, now: Instant, out: &mut Actions) -> Self {
        let mut timers = TimerTable::default();
        if !reliable {
            timers.set(Timer::E, now + cfg.t1);
        }
        timers.set(Timer::F, now + cfg.t1x64());
        out.push(Action::SendRequest);
        ClientNonInvite {
            state: ClientNonInviteState::Trying,
            cfg,
            reliable,
            timers,
            interval: cfg.t1,
        }
    }

    /// Current state.
    pub(crate) fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// Earliest armed timer.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A response with status `code` matched this transaction.
    ///
    /// # Returns
    /// Whether the response must be passed to the TU.
    pub(crate) fn on_response(&mut self, code: u16, now: Instant, out: &mut Actions) -> bool {
        use ClientNonInviteState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                true
            }
            (Trying | Proceeding, 200..=699) => {
                self.timers.stop_all();
                self.state = Completed;
                if self.reliable {
                    self.terminate(out);
                } else {
                    self.timers.set(Timer::K, now + self.cfg.t4);
                }
                true
            }
            // Completed absorbs retransmitted responses.
            _ => false,
        }
    }

    /// Fires every timer due at `now`, earliest first.
    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Actions) {
        use ClientNonInviteState::*;
        while self.state != Terminated {
            let Some(timer) = self.timers.take_due(now) else {
                return;
            };
            match (timer, self.state) {
                (Timer::E, Trying | Proceeding) => {
                    out.push(Action::SendRequest);
                    // §17.1.2.2: Trying doubles up to T2; Proceeding uses T2.
                    self.interval = if self.state == Trying {
                        self.interval.saturating_mul(2).min(self.cfg.t2)
                    } else {
                        self.cfg.t2
                    };
                    self.timers.set(Timer::E, now + self.interval);
                }
                (Timer::F, _) => {
                    out.push(Action::Timeout(Timer::F));
                    self.terminate(out);
                }
                (Timer::K, _) => self.terminate(out),
                _ => {}
            }
        }
    }

    /// The transport failed to send: terminate (the manager tells the TU).
    pub(crate) fn on_transport_error(&mut self, out: &mut Actions) {
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Actions) {
        if self.state != ClientNonInviteState::Terminated {
            self.timers.stop_all();
            self.state = ClientNonInviteState::Terminated;
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

    fn run_to_end(tx: &mut ClientNonInvite, t0: Instant) -> Vec<(Duration, Action)> {
        let mut out = Actions::new();
        let mut fired = Vec::new();
        while let Some(at) = tx.poll_timeout() {
            tx.handle_timeout(at, &mut out);
            fired.extend(out.drain(..).map(|a| (at - t0, a)));
        }
        fired
    }

    #[test]
    fn timer_e_capped_at_t2_until_f() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientNonInvite::start(TimerConfig::default(), false, t0, &mut out);
        let fired = run_to_end(&mut tx, t0);
        let sends: Vec<_> = fired
            .iter()
            .filter(|(_, a)| *a == Action::SendRequest)
            .map(|(t, _)| t.as_millis())
            .collect();
        // Intervals 0.5, 1, 2, 4, 4, 4, ... (cap T2 = 4 s) until F at 32 s.
        assert_eq!(
            sends,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            &fired[fired.len() - 2..],
            [
                (ms(32_000), Action::Timeout(Timer::F)),
                (ms(32_000), Action::Terminated)
            ]
        );
    }

    #[test]
    fn proceeding_retransmits_at_t2() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientNonInvite::start(TimerConfig::default(), false, t0, &mut out);
        assert!(tx.on_response(100, t0 + ms(100), &mut out));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        let fired = run_to_end(&mut tx, t0);
        let sends: Vec<_> = fired
            .iter()
            .filter(|(_, a)| *a == Action::SendRequest)
            .map(|(t, _)| t.as_millis())
            .collect();
        assert_eq!(sends, [500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]);
        assert_eq!(fired.last(), Some(&(ms(32_000), Action::Terminated)));
    }

    #[test]
    fn final_then_k_absorbs_retransmits() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientNonInvite::start(TimerConfig::default(), false, t0, &mut out);
        out.clear();
        assert!(tx.on_response(200, t0 + ms(50), &mut out));
        assert!(!tx.on_response(200, t0 + ms(60), &mut out));
        assert!(!tx.on_response(180, t0 + ms(70), &mut out));
        assert!(out.is_empty());
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(5050)));
        assert_eq!(run_to_end(&mut tx, t0), [(ms(5050), Action::Terminated)]);
    }

    #[test]
    fn reliable_no_e_and_zero_k() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientNonInvite::start(TimerConfig::default(), true, t0, &mut out);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        out.clear();
        assert!(tx.on_response(404, t0 + ms(5), &mut out));
        assert_eq!(out, [Action::Terminated]);
        assert_eq!(tx.state(), ClientNonInviteState::Terminated);
    }

    #[test]
    fn reliable_f_times_out_without_retransmission() {
        let t0 = origin();
        let mut out = Actions::new();
        let mut tx = ClientNonInvite::start(TimerConfig::default(), true, t0, &mut out);
        assert_eq!(
            run_to_end(&mut tx, t0),
            [
                (ms(32_000), Action::Timeout(Timer::F)),
                (ms(32_000), Action::Terminated)
            ]
        );
        tx.on_transport_error(&mut out);
    }
}
