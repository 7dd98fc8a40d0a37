//! Randomness and the wall clock are inputs of the core (`endpoint::Env`):
//! one seed replays a call byte for byte, and a CDR's date is the injected
//! wall clock moved by the fake monotonic one.

use super::*;
use crate::b2bua::WallClock;
use crate::endpoint::Env;

/// A harness whose core gets `env`, its fake clock starting at `env.wall.at`.
fn with_env(env: Env) -> H {
    let mut cfg = EndpointConfig::new(env);
    cfg.upstreams = Upstreams::from_config(&[upstream("one", &format!("sip:{B1}"), 1)]).unwrap();
    cfg.admission = admission(PBX_TRUNK);
    H {
        ep: Endpoint::new(cfg),
        now: env.wall.at,
    }
    .started()
}

/// Every message sipfront sends for a call answered by B and hung up by A.
fn one_call(env: Env) -> Vec<(SocketAddr, Bytes)> {
    let mut h = with_env(env);
    let mut out = h.feed(A, a_invite(SDP));
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    out.extend(h.feed(B1, b_response(&inv, 200, SDP)));
    out.extend(h.advance(Duration::from_secs(5)));
    out.into_iter()
        .map(|(d, m)| (d, m.as_bytes().clone()))
        .collect()
}

fn b_invite(out: &[(SocketAddr, Bytes)]) -> Message {
    out.iter()
        .filter(|(d, _)| *d == addr(B1))
        .find_map(|(_, b)| Message::parse(b.clone()).ok())
        .expect("B-leg INVITE")
}

#[test]
fn one_seed_replays_a_call_byte_for_byte_and_another_does_not() {
    let t0 = Instant::now();
    let first = one_call(Env::fixed(t0));
    assert!(
        first.len() >= 3,
        "100, B INVITE, A's 200, B's ACK: {first:?}"
    );
    assert_eq!(first, one_call(Env::fixed(t0)), "same seed, same bytes");

    let other = one_call(Env {
        seed: [0x11; 32],
        ..Env::fixed(t0)
    });
    let (a, b) = (b_invite(&first), b_invite(&other));
    assert_ne!(a.call_id().unwrap(), b.call_id().unwrap());
    assert_ne!(a.from().unwrap().tag(), b.from().unwrap().tag());
    assert_ne!(a.top_via().unwrap().branch(), b.top_via().unwrap().branch());
}

#[test]
fn a_cdr_is_dated_by_the_injected_wall_clock() {
    let t0 = Instant::now();
    let env = Env {
        wall: WallClock {
            at: t0,
            unix_ms: 1_234_567_890_000,
        },
        ..Env::fixed(t0)
    };
    let mut h = with_env(env);
    h.advance(Duration::from_millis(2_500));
    let out = h.feed(A, a_invite(""));
    let inv = request_to(&out, B1, Method::Invite).expect("B-leg INVITE");
    h.feed(B1, b_response(&inv, 486, ""));
    let cdr = std::iter::from_fn(|| h.ep.poll_cdr())
        .next()
        .expect("one record for the refused attempt");
    assert_eq!(cdr.start_unix_ms, 1_234_567_892_500);
}
