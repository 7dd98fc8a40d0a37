//! The core's randomness: the identifiers it mints (RFC 3261 §8.1.1.4
//! Call-ID, §19.3 tags, §8.1.1.7 branch) and its other draws (weighted
//! upstream choice, digest cnonces), from a seed the shell passes in.
//!
//! Like the clock, randomness is an input (quinn's `EndpointConfig::rng_seed`):
//! a seeded core replays a failing test exactly, and nothing here reads the OS.
//! The generator is ChaCha12 (rand's `StdRng`), not a fast non-cryptographic
//! one: RFC 3261 §8.1.1.4 and §19.3 want Call-IDs and tags an attacker cannot
//! guess, since a spoofed in-dialog request needs only those.

use super::via::MAGIC_COOKIE;
use rand::distributions::Alphanumeric;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// A seeded generator owned by one part of the core (never shared: each
/// owner gets its own with [`Random::fork`]).
#[derive(Clone)]
pub struct Random {
    rng: StdRng,
    /// The core shard whose mark starts every Call-ID minted here.
    shard: Option<u8>,
}

/// How a Call-ID sipfront mints names its core shard: `sf`, two decimal
/// digits, `-` (`sf03-…@host`), so the shell sends every answer to it back
/// to that shard without a lookup (ARCHITECTURE.md "One core per CPU").
const SHARD_MARK: &[u8] = b"sf";

/// The shard a Call-ID's mark names (`sf07-…` is 7), if it starts with one.
/// Any Call-ID may start so (a caller's too): the answer is only a
/// deterministic choice, which is all the dispatch needs.
pub fn shard_mark(call_id: &[u8]) -> Option<u8> {
    match call_id.strip_prefix(SHARD_MARK)? {
        [t @ b'0'..=b'9', u @ b'0'..=b'9', b'-', ..] => Some((t - b'0') * 10 + (u - b'0')),
        _ => None,
    }
}

// The state is a secret of the node: never in a log.
impl std::fmt::Debug for Random {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Random { .. }")
    }
}

impl Random {
    /// The generator of `seed` (the shell draws it from the OS; tests pass
    /// a constant).
    pub fn from_seed(seed: [u8; 32]) -> Random {
        Random {
            rng: StdRng::from_seed(seed),
            shard: None,
        }
    }

    /// This generator, marking the Call-IDs it (and every fork) mints as
    /// core shard `shard`'s (see [`shard_mark`]; at most 99).
    pub fn with_shard(mut self, shard: u8) -> Random {
        self.shard = Some(shard.min(99));
        self
    }

    /// An independent generator seeded from this one, for another owner.
    pub fn fork(&mut self) -> Random {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        Random {
            rng: StdRng::from_seed(seed),
            shard: self.shard,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn token(&mut self, n: usize, out: &mut String) {
        out.extend(
            (&mut self.rng)
                .sample_iter(Alphanumeric)
                .take(n)
                .map(char::from),
        );
    }

    /// A fresh branch: `z9hG4bK` + 16 random alphanumerics (RFC 3261 §8.1.1.7).
    pub fn branch(&mut self) -> String {
        let mut s = String::with_capacity(MAGIC_COOKIE.len() + 16);
        s.push_str(MAGIC_COOKIE);
        self.token(16, &mut s);
        s
    }

    /// A fresh From/To tag: 12 random alphanumerics, > 32 bits of
    /// randomness (RFC 3261 §19.3).
    pub fn tag(&mut self) -> String {
        let mut s = String::with_capacity(12);
        self.token(12, &mut s);
        s
    }

    /// A fresh Call-ID `random@host` (RFC 3261 §8.1.1.4); just `random`
    /// for an empty host. A shard's generator starts it with the shard's
    /// mark (`sf03-random@host`, see [`shard_mark`]).
    pub fn call_id(&mut self, host: &str) -> String {
        let mut s = String::with_capacity(26 + host.len());
        if let Some(n) = self.shard {
            s.push_str("sf");
            s.push(char::from(b'0' + n / 10));
            s.push(char::from(b'0' + n % 10));
            s.push('-');
        }
        self.token(20, &mut s);
        if !host.is_empty() {
            s.push('@');
            s.push_str(host);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_have_their_shape() {
        let mut r = Random::from_seed([1; 32]);
        let b = r.branch();
        assert!(b.starts_with("z9hG4bK") && b.len() == 23, "{b}");
        assert_eq!(r.tag().len(), 12);
        assert_ne!(r.tag(), r.tag());
        assert!(r.call_id("h").ends_with("@h"));
        assert!(!r.call_id("").contains('@'));
        assert!(r.tag().bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn a_seed_replays_and_forks_differ() {
        let mut a = Random::from_seed([7; 32]);
        let mut b = Random::from_seed([7; 32]);
        assert_eq!(a.call_id("x"), b.call_id("x"), "same seed, same stream");
        let mut fa = a.fork();
        let mut fb = b.fork();
        assert_eq!(fa.tag(), fb.tag());
        assert_ne!(fa.tag(), a.tag(), "a fork is its own stream");
        assert_ne!(
            Random::from_seed([7; 32]).tag(),
            Random::from_seed([8; 32]).tag()
        );
    }

    #[test]
    fn a_shards_call_ids_carry_its_mark_and_forks_keep_it() {
        let mut r = Random::from_seed([2; 32]).with_shard(7);
        let id = r.call_id("h");
        assert!(id.starts_with("sf07-") && id.ends_with("@h"), "{id}");
        assert_eq!(shard_mark(id.as_bytes()), Some(7));
        assert_eq!(shard_mark(r.fork().call_id("").as_bytes()), Some(7));
        assert_eq!(
            shard_mark(
                Random::from_seed([2; 32])
                    .with_shard(63)
                    .call_id("x")
                    .as_bytes()
            ),
            Some(63)
        );
        assert_eq!(
            shard_mark(Random::from_seed([2; 32]).call_id("h").as_bytes()),
            None
        );
        for other in [&b"sf7-x"[..], b"sfa1-x", b"sf01", b"SF01-x", b"xsf01-", b""] {
            assert_eq!(shard_mark(other), None, "{other:?}");
        }
    }

    #[test]
    fn debug_hides_the_state() {
        assert_eq!(format!("{:?}", Random::from_seed([3; 32])), "Random { .. }");
    }
}
