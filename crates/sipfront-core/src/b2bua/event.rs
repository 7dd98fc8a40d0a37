//! Call-status events (SPEC §7) as values: built by the sans-IO B2BUA (no
//! IO, no clock: `timestamp` comes from the injected `WallClock`); the
//! shell's `events::dispatch` POSTs [`CallEvent::body`] as JSON.
//!
//! A call emits at most `ringing` (the first 18x relayed to the caller),
//! `answered` (the 2xx relayed), then `completed` (an answered call ended)
//! or `failed` (ended unanswered, or refused after its trunk or DID was
//! known: the same calls that get a CDR). Only calls with a URL emit
//! anything: the DID's `call_status_url` for an inbound DID call, else
//! `[webhooks] call_status_url`.

use std::sync::Arc;

use serde::Serialize;

use super::record::{Cdr, Direction, Disposition};

/// Where a call is, as the receiver sees it (SPEC §7 `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallState {
    /// The first provisional (180/183) reached the caller.
    Ringing,
    /// The 2xx reached the caller.
    Answered,
    /// An answered call ended.
    Completed,
    /// The call ended without an answer, or was refused.
    Failed,
}

impl CallState {
    /// The JSON text.
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Ringing => "ringing",
            CallState::Answered => "answered",
            CallState::Completed => "completed",
            CallState::Failed => "failed",
        }
    }
}

/// One call-status event and the URL it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// The receiver (shared by every event of one config snapshot).
    pub url: Arc<str>,
    /// The A-leg Call-ID: the CDR's and `GET /v1/calls`'s `call_id`.
    pub call_id: String,
    /// What happened.
    pub state: CallState,
    /// `placed` (a trunk's outbound call) or `received` (an inbound DID call).
    pub direction: Direction,
    /// Caller number as sent on (the CDR's `from`).
    pub from: String,
    /// Dialled number after rewrite, or the DID (the CDR's `to`).
    pub to: String,
    /// The trunk login (the CDR's `sip_trunk`); `None` when there is none.
    pub trunk: Option<String>,
    /// The status the caller got: the 18x, the 2xx, or the final failure
    /// (`completed` keeps the 2xx's).
    pub sip_code: u16,
    /// Billed seconds (`completed` only; 0 otherwise), as in the CDR.
    pub duration: u64,
    /// Unix seconds when it happened.
    pub timestamp: u64,
}

/// The SPEC §7 body: the event without its URL (the shell serialises it).
#[derive(Debug, Serialize)]
pub struct Body<'a> {
    call_id: &'a str,
    state: CallState,
    direction: &'static str,
    from: &'a str,
    to: &'a str,
    trunk: Option<&'a str>,
    sip_code: u16,
    duration: u64,
    timestamp: u64,
}

impl CallEvent {
    /// The final event of a call from its CDR (`completed` when answered,
    /// else `failed`), so the two always agree.
    pub fn from_cdr(cdr: &Cdr, url: Arc<str>, timestamp: u64) -> CallEvent {
        let answered = cdr.disposition == Disposition::Answered;
        CallEvent {
            url,
            call_id: cdr.call_id.clone(),
            state: if answered {
                CallState::Completed
            } else {
                CallState::Failed
            },
            direction: cdr.direction,
            from: cdr.from.clone(),
            to: cdr.to.clone(),
            trunk: (!cdr.sip_trunk.is_empty()).then(|| cdr.sip_trunk.clone()),
            sip_code: cdr.sip_code,
            duration: cdr.duration_s,
            timestamp,
        }
    }

    /// The body POSTed to [`CallEvent::url`].
    pub fn body(&self) -> Body<'_> {
        Body {
            call_id: &self.call_id,
            state: self.state,
            direction: self.direction.as_str(),
            from: &self.from,
            to: &self.to,
            trunk: self.trunk.as_deref(),
            sip_code: self.sip_code,
            duration: self.duration,
            timestamp: self.timestamp,
        }
    }
}
