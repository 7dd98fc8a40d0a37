//! Outputs of the RFC 3261 §17 state machines, shared by the four transaction
//! kinds.
//!
//! The machines own no bytes: they say *what* to send ("the request again",
//! "the ACK", "the last response") and the manager, which owns the messages,
//! turns that into a [`Transmit`](super::Transmit).

use super::timer::Timer;

/// One thing a state machine asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Client: (re)transmit the request.
    SendRequest,
    /// Client INVITE: (re)transmit the ACK for a non-2xx final response
    /// (§17.1.1.3).
    SendAck,
    /// Server: (re)transmit the most recent response.
    SendResponse,
    /// A timeout the TU must hear about (B, F, H, C).
    Timeout(Timer),
    /// The transaction reached Terminated and must be removed.
    Terminated,
}

/// Sink the machines push actions into (a reused `Vec` in the manager).
pub(crate) type Actions = Vec<Action>;
