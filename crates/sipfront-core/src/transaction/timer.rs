//! RFC 3261 §17 transaction timers (Table 4 of Appendix A) and the per-transaction
//! timer table.
//!
//! Timers are a small enum over a table of `Option<Instant>` (the quinn
//! `connection/timer.rs` shape): arming stores a deadline, stopping clears it,
//! and the earliest deadline is the transaction's `poll_timeout`.

use std::time::{Duration, Instant};

/// Timer base values (RFC 3261 §17.1.1.1 and Appendix A) plus the two
/// implementation-chosen durations RFC 3261 leaves open.
///
/// `Default` gives the RFC values: T1 = 500 ms, T2 = 4 s, T4 = 5 s,
/// Timer C = 180 s, Timer D = 32 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// T1: RTT estimate; initial retransmission interval (default 500 ms).
    pub t1: Duration,
    /// T2: maximum retransmission interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// T4: maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// Timer C: how long a transaction waits for a final response once it is
    /// past its retransmission phase (RFC 3261 §16.6 says "greater than 3
    /// minutes" for proxies; we apply it to every INVITE transaction so none
    /// can live forever). Default 180 s.
    pub timer_c: Duration,
    /// Timer D for unreliable transports: "at least 32 seconds" (§17.1.1.2).
    /// Reliable transports always use zero. Default 32 s.
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_c: Duration::from_secs(180),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// The config with every value clamped to something usable: T1 between
    /// 1 ms and 1 h (a zero interval would never let time advance), T2 at
    /// least T1, every other value at most one day. No deadline computed from
    /// a sanitised config can overflow `Instant` arithmetic in practice.
    pub fn sanitized(self) -> TimerConfig {
        let day = Duration::from_secs(86_400);
        let t1 = self
            .t1
            .clamp(Duration::from_millis(1), Duration::from_secs(3600));
        TimerConfig {
            t1,
            t2: self.t2.clamp(t1, day),
            t4: self.t4.min(day),
            timer_c: self.timer_c.min(day),
            timer_d: self.timer_d.min(day),
        }
    }

    /// 64·T1: Timers B, F, H, J (UDP), L and M (default 32 s).
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// The RFC 3261 §17 timers, by their RFC names.
///
/// A–K are RFC 3261 Table 4. L and M come from RFC 6026 (the "Accepted" state
/// for 2xx responses). C is RFC 3261 §16.6's proxy INVITE timer, which sipfront
/// uses as a guard so that no transaction waits forever for a final response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// Client INVITE request retransmission (UDP): starts at T1, doubles, no cap.
    A,
    /// Client INVITE timeout in Calling: 64·T1.
    B,
    /// Final-response guard: client INVITE in Proceeding (reset by each 1xx) and
    /// server transactions awaiting the TU's final response.
    C,
    /// Client INVITE wait for response retransmits in Completed: ≥ 32 s UDP, 0 TCP.
    D,
    /// Client non-INVITE request retransmission (UDP): T1 doubling, capped at T2.
    E,
    /// Client non-INVITE timeout: 64·T1.
    F,
    /// Server INVITE final-response retransmission (UDP): T1 doubling, capped at T2.
    G,
    /// Server INVITE wait for ACK: 64·T1.
    H,
    /// Server INVITE wait for ACK retransmits in Confirmed: T4 UDP, 0 TCP.
    I,
    /// Server non-INVITE wait for request retransmits in Completed: 64·T1 UDP, 0 TCP.
    J,
    /// Client non-INVITE wait for response retransmits in Completed: T4 UDP, 0 TCP.
    K,
    /// RFC 6026 server INVITE "Accepted" lifetime: 64·T1.
    L,
    /// RFC 6026 client INVITE "Accepted" lifetime: 64·T1.
    M,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 13] = [
        Timer::A,
        Timer::B,
        Timer::C,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Deadlines of one transaction, one slot per [`Timer`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `timer` to fire at `at` (replacing any earlier deadline).
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer.index()] = Some(at);
    }

    /// Stops `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer.index()] = None;
    }

    /// Stops every timer.
    pub(crate) fn stop_all(&mut self) {
        self.slots = [None; Timer::ALL.len()];
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer.index()]
    }

    /// The earliest armed deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// The earliest timer due at or before `now`, cleared from the table.
    /// Ties resolve in table order, which puts retransmission timers (A, E, G)
    /// before the timeouts (B, F, H) that share their deadline.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Timer> {
        let mut best: Option<(Instant, Timer)> = None;
        for timer in Timer::ALL {
            if let Some(at) = self.get(timer) {
                if at <= now && best.map_or(true, |(b, _)| at < b) {
                    best = Some((at, timer));
                }
            }
        }
        let (_, timer) = best?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rfc_values() {
        let c = TimerConfig::default();
        assert_eq!(c.t1, Duration::from_millis(500));
        assert_eq!(c.t2, Duration::from_secs(4));
        assert_eq!(c.t4, Duration::from_secs(5));
        assert_eq!(c.t1x64(), Duration::from_secs(32));
    }

    #[test]
    fn sanitized_clamps() {
        let c = TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::MAX,
            timer_c: Duration::MAX,
            timer_d: Duration::MAX,
        }
        .sanitized();
        assert_eq!(c.t1, Duration::from_millis(1));
        assert_eq!(c.t2, c.t1);
        assert_eq!(c.t4, Duration::from_secs(86_400));
        assert_eq!(TimerConfig::default().sanitized(), TimerConfig::default());
    }

    #[test]
    fn table_takes_earliest_first() {
        let t0 = crate::transaction::tests::origin();
        let mut t = TimerTable::default();
        t.set(Timer::B, t0 + Duration::from_secs(32));
        t.set(Timer::A, t0 + Duration::from_millis(500));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.take_due(t0), None);
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.take_due(t0 + Duration::from_secs(40)), None);
        t.set(Timer::K, t0);
        t.stop_all();
        assert_eq!(t.next_deadline(), None);
    }
}
