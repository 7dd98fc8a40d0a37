//! Call-status webhooks (SPEC §7): the event as a value, built by the
//! sans-IO B2BUA (no IO, no clock: its `timestamp` comes from the core's
//! `WallClock`), and the shell's [`dispatch`] that POSTs it as JSON.
//!
//! A call emits at most `ringing` (the first 18x relayed to the caller),
//! `answered` (the 2xx relayed), then `completed` (an answered call ended)
//! or `failed` (ended unanswered, or refused after its trunk or DID was
//! known: the same calls that get a CDR). Only calls with a URL emit
//! anything: the DID's `call_status_url` for an inbound DID call, else
//! `[webhooks] call_status_url`.

pub mod dispatch;

use std::sync::Arc;

use serde::Serialize;

use crate::cdr::{Cdr, Direction};

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

/// The SPEC §7 body: the event without its URL.
#[derive(Serialize)]
struct Body<'a> {
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
        let answered = cdr.disposition == crate::cdr::Disposition::Answered;
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

    /// The JSON body POSTed to [`CallEvent::url`].
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            call_id: &self.call_id,
            state: self.state,
            direction: self.direction.as_str(),
            from: &self.from,
            to: &self.to,
            trunk: self.trunk.as_deref(),
            sip_code: self.sip_code,
            duration: self.duration,
            timestamp: self.timestamp,
        };
        // Strings and integers only: serialising cannot fail.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_spec_fields_and_null_trunk() {
        let ev = CallEvent {
            url: Arc::from("http://127.0.0.1:1/h"),
            call_id: "a\"b@h".into(),
            state: CallState::Failed,
            direction: Direction::Received,
            from: "12125550000".into(),
            to: "12565378257".into(),
            trunk: None,
            sip_code: 486,
            duration: 0,
            timestamp: 1_700_000_000,
        };
        let v: serde_json::Value = serde_json::from_slice(&ev.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "call_id": "a\"b@h", "state": "failed", "direction": "received",
                "from": "12125550000", "to": "12565378257", "trunk": null,
                "sip_code": 486, "duration": 0, "timestamp": 1_700_000_000u64,
            })
        );
    }
}
