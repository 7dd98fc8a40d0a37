//! What the core cannot know by itself: the wall clock and the seeds of its
//! randomness, read once by the shell and passed in like `now` (rustls'
//! `TimeProvider`, quinn's `rng_seed`). Nothing in the core reads the OS.
//!
//! Public randomness (tags, branches, Call-IDs, cnonces: RFC 3261 §19.3) and
//! the private digest nonce secret (RFC 7616 §3.3) come from separate seeds,
//! as s2n-quic splits them: what peers see says nothing about the secret.

use std::time::Instant;

use crate::b2bua::WallClock;

/// The core's outside inputs, read once at start.
#[derive(Clone, Copy)]
pub struct Env {
    /// Wall-clock time as a function of the monotonic `now` (CDR dates,
    /// registration expiry in the store).
    pub wall: WallClock,
    /// Seed of the public identifiers the core mints.
    pub seed: [u8; 32],
    /// Key of the stateless digest nonces (RFC 7616 §3.3); never shown.
    pub nonce_secret: [u8; 32],
}

// Seeds are secrets of the node: never in a log.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("wall", &self.wall)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// Fixed seeds and a wall clock reading 2023-11-14T22:13:20Z at `at`:
    /// for tests, benches and fuzzing, which then replay exactly. Never for
    /// a node that faces a network (its identifiers would be guessable).
    pub fn fixed(at: Instant) -> Env {
        Env {
            wall: WallClock {
                at,
                unix_ms: 1_700_000_000_000,
            },
            seed: [0x5e; 32],
            nonce_secret: [0x70; 32],
        }
    }
}
