//! A node of a fleet (README "Fleets"): a limited call takes its channel
//! on the node, then holds its B-leg INVITE until the fleet counter's
//! verdict comes back as an input; a refusal answers as a local limit
//! would; no verdict in time lets the call go on. The counter here records
//! what the core tells it, so the accounting a Redis counter relies on is
//! checked call by call.

use std::sync::Mutex;

use super::*;
use crate::b2bua::fleet::{ChannelAnswer, ChannelVerdict};
use crate::b2bua::{ChannelCounters, ChannelKey, LocalChannels};
use crate::endpoint::SharedState;

/// Local counts plus a log of the fleet calls.
#[derive(Debug, Default)]
struct Recorder {
    local: LocalChannels,
    log: Mutex<Vec<String>>,
}

impl Recorder {
    fn note(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }

    fn log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl ChannelCounters for Recorder {
    fn try_acquire(&self, key: &ChannelKey, limit: Option<u32>) -> Result<(), u32> {
        self.local.try_acquire(key, limit)
    }
    fn release(&self, key: &ChannelKey) {
        self.note(format!("release {key:?}"));
        self.local.release(key);
    }
    fn active(&self, key: &ChannelKey) -> u32 {
        self.local.active(key)
    }
    fn snapshot(&self) -> Vec<(ChannelKey, u32)> {
        self.local.snapshot()
    }
    fn confirms(&self) -> bool {
        true
    }
    fn went_on(&self, key: &ChannelKey, granted: bool) {
        self.note(format!("went_on {key:?} {granted}"));
    }
    fn release_gone_on(&self, key: &ChannelKey) {
        self.note(format!("release_gone_on {key:?}"));
        self.local.release(key);
    }
    fn grant_unused(&self, key: &ChannelKey) {
        self.note(format!("grant_unused {key:?}"));
    }
}

fn node() -> (H, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let cfg = H::config(|c| {
        c.admission = admission(&trunk("channels_restrict = true\nmax_channels = 2"));
    });
    let shared = Arc::new(SharedState::with_channels(&cfg.guard, rec.clone()));
    let h = H {
        ep: Endpoint::with_shared(cfg, shared),
        now: Instant::now(),
    }
    .started();
    (h, rec)
}

fn answer(h: &mut H, id: u64, verdict: ChannelVerdict) -> Vec<(SocketAddr, Message)> {
    let now = h.now;
    h.ep.handle_channel_answer(
        ChannelAnswer {
            id,
            key: ChannelKey::Trunk(1),
            verdict,
        },
        now,
    );
    h.take()
}

#[test]
fn the_b_leg_waits_for_the_fleet_and_a_refusal_names_the_limit() {
    let (mut h, rec) = node();
    let out = h.feed(A, a_invite_n(1, "12125551234", &[]));
    assert_eq!(status_to(&out, A), vec![100]);
    assert!(request_to(&out, B1, Method::Invite).is_none(), "held");
    let ask = h.ep.poll_channel_ask().expect("asked");
    assert_eq!((ask.key.clone(), ask.limit), (ChannelKey::Trunk(1), 2));
    assert!(h.ep.poll_channel_ask().is_none());
    let out = answer(&mut h, ask.id, ChannelVerdict::Granted);
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE after the grant");
    assert_eq!(rec.log(), ["went_on Trunk(1) true"]);

    // Call 2: another node holds the other channel.
    h.feed(A, a_invite_n(2, "12125551234", &[]));
    let ask2 = h.ep.poll_channel_ask().expect("asked");
    let out = answer(&mut h, ask2.id, ChannelVerdict::Refused { active: 2 });
    assert_eq!(status_to(&out, A), vec![503]);
    let refused = out.iter().find(|(_, m)| m.status().is_some()).unwrap();
    assert_eq!(
        refused.1.reason(),
        Some(&b"Channel Limit Reached (max_channels 2)"[..])
    );
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(rec.log(), ["release Trunk(1)"], "never went on");
    assert_eq!(h.ep.b2bua().fleet_counts(), (0, 1));

    // Call 1 ends: its channel went on, so the fleet hears of it.
    h.feed(B1, b_response(&inv, 486, ""));
    assert_eq!(rec.log(), ["release_gone_on Trunk(1)"]);
}

#[test]
fn no_verdict_in_time_lets_the_call_go_on_and_a_late_grant_is_given_back() {
    let (mut h, rec) = node();
    h.feed(A, a_invite_n(1, "12125551234", &[]));
    let ask = h.ep.poll_channel_ask().expect("asked");
    let out = h.advance(Duration::from_millis(499));
    assert!(request_to(&out, B1, Method::Invite).is_none());
    let out = h.advance(Duration::from_millis(2));
    assert!(request_to(&out, B1, Method::Invite).is_some(), "went on");
    assert_eq!(rec.log(), ["went_on Trunk(1) false"]);
    assert_eq!(h.ep.b2bua().fleet_counts(), (1, 0));
    answer(&mut h, ask.id, ChannelVerdict::Granted);
    assert_eq!(rec.log(), ["grant_unused Trunk(1)"]);
    // An `Unknown` verdict goes on at once.
    h.feed(A, a_invite_n(2, "12125551234", &[]));
    let ask = h.ep.poll_channel_ask().expect("asked");
    let out = answer(&mut h, ask.id, ChannelVerdict::Unknown);
    assert!(request_to(&out, B1, Method::Invite).is_some());
    assert_eq!(h.ep.b2bua().fleet_counts(), (2, 0));
}

#[test]
fn a_call_cancelled_while_it_waits_gives_a_late_grant_back() {
    let (mut h, rec) = node();
    h.feed(A, a_invite(SDP));
    let ask = h.ep.poll_channel_ask().expect("asked");
    let out = h.feed(A, a_cancel());
    let codes = status_to(&out, A);
    assert!(codes.contains(&200) && codes.contains(&487), "{codes:?}");
    assert_eq!(rec.log(), ["release Trunk(1)"]);
    let out = answer(&mut h, ask.id, ChannelVerdict::Granted);
    assert!(request_to(&out, B1, Method::Invite).is_none());
    assert_eq!(rec.log(), ["grant_unused Trunk(1)"]);
}
