//! The digest challenge (`401`) of a REGISTER over UDP holds no
//! transaction: RFC 3261 §26.3.2.4 advises answering unauthenticated
//! requests statelessly, and half of a registration's transactions would
//! otherwise keep an encoded `401` for Timer J (64·T1, 32 s; at 6,000
//! registrations/s that is 192,000 of them).
//!
//! A retransmitted REGISTER must still get the very same `401` (§17.2.2;
//! SIPp and phones take a different nonce or To tag for an unexpected
//! response). The rest of a `401` follows from the request, so only what
//! would differ is remembered, for 64·T1: the nonce's time and serial and
//! the To tag, 24 bytes under a 64-bit fingerprint of the request's
//! transaction key (RFC 3261 §17.2.3), in a FIFO like the Completed
//! records (same lifetime, so expiry is in insertion order).
//!
//! The fingerprint is SipHash over a secret from the core's seeded
//! generator and the key, so a peer cannot make two requests collide on
//! purpose; a chance collision (2^-64) gives the second request the
//! first one's nonce, which fails its check and is challenged anew.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::auth::NonceSeed;
use crate::transaction::TransactionKey;

/// Challenges remembered at most (each 24 bytes plus table space): beyond,
/// the oldest is forgotten early (its retransmission gets a new nonce).
const MAX_REMEMBERED: usize = 262_144;

/// What makes one challenge's bytes its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    /// The nonce's time and serial.
    pub(super) seed: NonceSeed,
    /// The To tag, as 64 random bits.
    tag: u64,
}

impl Challenge {
    /// A new challenge: the nonce of `seed`, a To tag from `tag_bits`.
    pub(super) fn new(seed: NonceSeed, tag_bits: u64) -> Challenge {
        Challenge {
            seed,
            tag: tag_bits,
        }
    }

    /// The To tag text: 16 hex digits, 64 random bits (RFC 3261 §19.3
    /// asks for at least 32).
    pub(super) fn tag(&self) -> String {
        format!("{:016x}", self.tag)
    }
}

/// Challenges sent without a transaction, by request, for 64·T1.
#[derive(Debug)]
pub(super) struct Challenges {
    by_request: HashMap<u64, Challenge>,
    /// Expiry of each fingerprint, oldest first (one entry per map entry).
    expiry: VecDeque<(Instant, u64)>,
    /// Keys the fingerprint.
    secret: u64,
    span: Duration,
}

impl Challenges {
    /// Remembers for `span` (64·T1); `secret` keys the fingerprints.
    pub(super) fn new(span: Duration, secret: u64) -> Challenges {
        Challenges {
            by_request: HashMap::new(),
            expiry: VecDeque::new(),
            secret,
            span,
        }
    }

    /// The challenge already sent for the request `key` within the span,
    /// else `fresh()`, remembered from `now`.
    pub(super) fn get_or_insert(
        &mut self,
        key: &TransactionKey,
        now: Instant,
        fresh: impl FnOnce() -> Challenge,
    ) -> Challenge {
        self.expire(now);
        let mut h = DefaultHasher::new();
        self.secret.hash(&mut h);
        key.hash(&mut h);
        let fp = h.finish();
        if let Some(c) = self.by_request.get(&fp) {
            return *c;
        }
        if self.by_request.len() >= MAX_REMEMBERED {
            if let Some((_, old)) = self.expiry.pop_front() {
                self.by_request.remove(&old);
            }
        }
        let c = fresh();
        self.by_request.insert(fp, c);
        self.expiry.push_back((now + self.span, fp));
        c
    }

    /// Number of challenges remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_request.len()
    }

    /// Forgets what is older than the span.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, fp)) = self.expiry.front() {
            if at > now {
                break;
            }
            self.expiry.pop_front();
            self.by_request.remove(&fp);
        }
        // After a burst, give the tables' memory back.
        if self.by_request.capacity() > 4 * self.by_request.len() + 1024 {
            self.by_request.shrink_to(2 * self.by_request.len());
            self.expiry.shrink_to(2 * self.expiry.len());
        }
    }
}
