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

pub use crate::b2bua::event::{Body, CallEvent, CallState};

/// The JSON body POSTed to [`CallEvent::url`].
pub fn to_json(ev: &CallEvent) -> Vec<u8> {
    // Strings and integers only: serialising cannot fail.
    serde_json::to_vec(&ev.body()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdr::Direction;
    use std::sync::Arc;

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
        let v: serde_json::Value = serde_json::from_slice(&to_json(&ev)).unwrap();
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
