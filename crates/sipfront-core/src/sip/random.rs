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
pub struct Random(StdRng);

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
        Random(StdRng::from_seed(seed))
    }

    /// An independent generator seeded from this one, for another owner.
    pub fn fork(&mut self) -> Random {
        let mut seed = [0u8; 32];
        self.0.fill_bytes(&mut seed);
        Random::from_seed(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn token(&mut self, n: usize, out: &mut String) {
        out.extend(
            (&mut self.0)
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
    /// for an empty host.
    pub fn call_id(&mut self, host: &str) -> String {
        let mut s = String::with_capacity(21 + host.len());
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
    fn debug_hides_the_state() {
        assert_eq!(format!("{:?}", Random::from_seed([3; 32])), "Random { .. }");
    }
}
