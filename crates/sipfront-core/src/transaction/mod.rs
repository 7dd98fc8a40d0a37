//! RFC 3261 §17 transactions, sans-IO: INVITE and non-INVITE client and server
//! transactions, timers A–K (plus RFC 6026's L and M and a C guard),
//! retransmission over UDP, absorption of retransmitted requests and responses,
//! and matching (§17.1.3, §17.2.3, RFC 2543 fallback).
//!
//! Nothing here does I/O or reads the clock: every input carries `now:
//! Instant`, and the owner drains transmits, events and the next deadline (the
//! quinn-proto / str0m shape; see [`Transactions`] for the calling contract).
//!
//! # Timer values (RFC 3261 Appendix A, Table 4)
//!
//! | Base | Default | Meaning |
//! |------|---------|---------|
//! | T1   | 500 ms  | RTT estimate |
//! | T2   | 4 s     | maximum retransmit interval for non-INVITE requests and INVITE responses |
//! | T4   | 5 s     | maximum duration a message remains in the network |
//!
//! | Timer | Value | Section | Role |
//! |-------|-------|---------|------|
//! | A | starts at T1, doubles on every firing, **no cap** | §17.1.1.2 | INVITE request retransmit (UDP only) |
//! | B | 64·T1 | §17.1.1.2 | INVITE transaction timeout (Calling) |
//! | D | ≥ 32 s UDP ([`TimerConfig::timer_d`]), 0 reliable | §17.1.1.2 | wait for response retransmits |
//! | E | starts at T1, doubles, capped at T2 (T2 in Proceeding) | §17.1.2.2 | non-INVITE request retransmit (UDP only) |
//! | F | 64·T1 | §17.1.2.2 | non-INVITE transaction timeout |
//! | G | starts at T1, doubles, capped at T2 | §17.2.1 | INVITE final response retransmit (UDP only) |
//! | H | 64·T1 | §17.2.1 | wait for ACK receipt |
//! | I | T4 UDP, 0 reliable | §17.2.1 | wait for ACK retransmits |
//! | J | 64·T1 UDP, 0 reliable | §17.2.2 | wait for non-INVITE request retransmits |
//! | K | T4 UDP, 0 reliable | §17.1.2.2 | wait for response retransmits |
//! | L | 64·T1 | RFC 6026 §7.1 | server INVITE "Accepted": absorb INVITE retransmits after a 2xx |
//! | M | 64·T1 | RFC 6026 §7.2 | client INVITE "Accepted": pass 2xx retransmits / forks to the TU |
//! | C | [`TimerConfig::timer_c`] (180 s) for INVITE, 64·T1 for server non-INVITE | §16.6 (adapted) | final-response guard, see below |
//!
//! A zero-valued timer is not armed: the transaction goes to Terminated at
//! once. On reliable transports A, E and G are never armed: no retransmission
//! over TCP (§17.1.1.2, §17.1.2.2, §17.2.1).
//!
//! # Choices where the RFCs leave room
//!
//! * **RFC 6026 "Accepted" is implemented** on both INVITE sides. A client
//!   INVITE that gets a 2xx stays in Accepted for 64·T1 and passes every
//!   further 2xx (retransmission or fork) to the TU, which ACKs each one;
//!   responses matching nothing are reported as stray and should be dropped. A
//!   server INVITE whose TU sent a 2xx stays in Accepted for 64·T1, absorbs
//!   INVITE retransmissions (so they do not look like new calls), sends the
//!   TU's 2xx retransmissions and passes ACKs that match it to the TU.
//!   Retransmitting the 2xx until the ACK (§13.3.1.4) is the TU's job.
//! * **100 Trying is the TU's job.** The transaction layer does not build
//!   responses; the endpoint answers a new INVITE with 100 immediately via
//!   [`Transactions::respond`]. Until the TU has responded, retransmitted
//!   INVITEs are absorbed silently.
//! * **Timer C guard.** RFC 3261 lets a client INVITE sit in Proceeding, and a
//!   server transaction wait for its TU, forever. So that no transaction can
//!   leak, a client INVITE in Proceeding times out (event `Timeout(C)`) after
//!   `timer_c` without a provisional (each 1xx restarts it, as §16.6 does for
//!   proxies); a server INVITE whose TU sent no final response times out after
//!   `timer_c` since its last provisional; a server non-INVITE after 64·T1
//!   (the client's Timer F has fired by then). The TU should CANCEL or answer
//!   well before.
//! * **Responses go back to the request's source address** (symmetric
//!   response routing, RFC 3581 style), over the transport it came on.

mod action;
mod client_invite;
mod client_non_invite;
mod completed;
mod key;
mod manager;
mod server_invite;
mod server_non_invite;
mod timer;

pub use client_invite::ClientInviteState;
pub use client_non_invite::ClientNonInviteState;
pub use key::{HostPort, KeyError, KeyText, Rfc2543Id, Role, TransactionKey};
pub use manager::{
    ClientInput, RequestError, ServerInput, TransactionEvent, TransactionState, TransactionStats,
    Transactions, Transmit,
};
pub use server_invite::ServerInviteState;
pub use server_non_invite::ServerNonInviteState;
pub use timer::{Timer, TimerConfig};

/// Why [`Transactions::try_respond`] refused a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No server transaction with that key (already terminated, or a client key).
    #[error("no such server transaction")]
    UnknownTransaction,
    /// The transaction's state does not allow this response (e.g. a second
    /// final response, or a non-2xx after a 2xx).
    #[error("response not allowed in the transaction's state")]
    InvalidState,
    /// The status code is outside 100..=699.
    #[error("status code {0} is not a valid response status")]
    BadStatus(u16),
}

#[cfg(test)]
pub(crate) mod tests;
