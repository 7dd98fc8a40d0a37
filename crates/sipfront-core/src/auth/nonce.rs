//! Stateless nonces (RFC 7616 §3.3 "nonce" and §5.4 on their construction)
//! and the `nc` replay table (RFC 7616 §3.4 "nc", §5.5 replay attacks).
//!
//! A nonce is `<unix seconds> "." <serial> "." <base64url(HMAC-SHA256(secret,
//! seconds_be64 || serial_be64 || source IP octets))>`, numbers in lowercase
//! hex, base64 without padding. The serial is a per-process challenge counter:
//! it makes every challenge's nonce unique, so two UAs behind one NAT
//! address challenged in the same second do not share a nonce (and its `nc`
//! sequence). Checking needs no state: recompute the MAC for the claimed
//! time and serial and the request's source address and compare in constant
//! time. Expiry is `time + ttl`.
//!
//! Replay protection is the only state: [`ReplayTable`] remembers, per nonce
//! in use, the highest `nc` accepted, so a captured request cannot be sent
//! again. A nonce is remembered by its [`NonceId`] (time, serial and the
//! first 16 MAC characters, 32 bytes inline), not its text: no allocation
//! per authenticated request, and less memory per entry (a REGISTER load
//! keeps one entry per registration for the nonce lifetime). It is bounded; when full, the entry first used longest ago is
//! evicted and every nonce minted at or before that entry's time is treated
//! as stale from then on, so eviction never opens a replay window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Longest accepted nonce text (timestamp, serial, MAC and two dots).
const MAX_NONCE_LEN: usize = 16 + 1 + 16 + 1 + 43;

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(A[idx as usize]));
        }
    }
    out
}

/// The nonce MAC key with HMAC's inner and outer padded keys already
/// hashed (the precomputation RFC 2104 §4 describes): each nonce minted or
/// checked then hashes two SHA-256 blocks fewer.
#[derive(Clone)]
pub(crate) struct NonceKey(Option<Hmac<Sha256>>);

impl NonceKey {
    pub(crate) fn new(secret: &[u8; 32]) -> NonceKey {
        // HMAC accepts any key length; new_from_slice cannot fail for HMAC.
        NonceKey(Hmac::<Sha256>::new_from_slice(secret).ok())
    }
}

/// The MAC part of nonce number `serial` minted at `ts` for `source`.
fn mac(key: &NonceKey, ts: u64, serial: u64, source: IpAddr) -> String {
    let Some(mut m) = key.0.clone() else {
        return String::new();
    };
    m.update(&ts.to_be_bytes());
    m.update(&serial.to_be_bytes());
    match source {
        IpAddr::V4(a) => m.update(&a.octets()),
        IpAddr::V6(a) => m.update(&a.octets()),
    }
    base64url(&m.finalize().into_bytes())
}

/// Mints nonce number `serial` for `source` at `now_unix`.
pub(crate) fn mint(key: &NonceKey, source: IpAddr, now_unix: u64, serial: u64) -> String {
    format!(
        "{now_unix:x}.{serial:x}.{}",
        mac(key, now_unix, serial, source)
    )
}

/// Parses a lowercase-hex number of 1–16 digits.
fn hex_u64(s: &str) -> Option<u64> {
    let ok = !s.is_empty() && s.len() <= 16;
    if !ok || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Which nonce: enough to tell every nonce we mint apart. The serial is
/// unique per process; the MAC prefix (96 bits) keeps nonces of another
/// process with the same secret apart too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NonceId {
    /// Mint time (Unix seconds).
    pub(crate) minted: u64,
    serial: u64,
    mac: [u8; 16],
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    /// Ours, for this source, and not expired.
    Fresh(NonceId),
    /// Ours and for this source, but older than the TTL.
    Expired,
    /// Not minted by us for this source (forged, altered, other source IP,
    /// other secret) or minted in the future.
    Invalid,
}

/// Checks `nonce` for `source` at `now_unix` with lifetime `ttl` seconds.
pub(crate) fn check(
    key: &NonceKey,
    nonce: &str,
    source: IpAddr,
    now_unix: u64,
    ttl: u64,
) -> NonceCheck {
    if nonce.len() > MAX_NONCE_LEN {
        return NonceCheck::Invalid;
    }
    let mut parts = nonce.splitn(3, '.');
    let (Some(ts), Some(serial), Some(tag)) = (
        parts.next().and_then(hex_u64),
        parts.next().and_then(hex_u64),
        parts.next(),
    ) else {
        return NonceCheck::Invalid;
    };
    let expected = mac(key, ts, serial, source);
    if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
        return NonceCheck::Invalid;
    }
    // Allow no future nonces beyond a small clock step (we minted it).
    if ts > now_unix.saturating_add(5) {
        return NonceCheck::Invalid;
    }
    if now_unix > ts.saturating_add(ttl) {
        return NonceCheck::Expired;
    }
    let mut id = NonceId {
        minted: ts,
        serial,
        mac: [0; 16],
    };
    // The tag equals our 43-character MAC text here.
    for (d, s) in id.mac.iter_mut().zip(tag.bytes()) {
        *d = s;
    }
    NonceCheck::Fresh(id)
}

/// Why [`ReplayTable::accept`] refused an `nc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// `nc` not above the highest accepted for this nonce.
    Replayed,
    /// The nonce was forgotten by eviction: demand a fresh one.
    Evicted,
}

#[derive(Debug)]
struct Entry {
    highest_nc: u32,
    expires: u64,
}

/// Bounded nonce → highest accepted `nc` table (see the module doc).
#[derive(Debug)]
pub struct ReplayTable {
    map: HashMap<NonceId, Entry>,
    order: VecDeque<NonceId>,
    cap: usize,
    /// Nonces minted at or before this time and absent from `map` are refused.
    evicted_upto: Option<u64>,
}

impl ReplayTable {
    /// An empty table holding at most `cap` nonces (at least 1).
    pub fn new(cap: usize) -> ReplayTable {
        ReplayTable {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted_upto: None,
        }
    }

    /// Number of nonces tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no nonce is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records `nc` for nonce `id`, valid until `expires`, if it is above
    /// every `nc` accepted before for that nonce.
    pub(crate) fn accept(
        &mut self,
        id: NonceId,
        expires: u64,
        nc: u32,
        now_unix: u64,
    ) -> Result<(), ReplayRefusal> {
        self.prune(now_unix);
        if let Some(e) = self.map.get_mut(&id) {
            if nc <= e.highest_nc {
                return Err(ReplayRefusal::Replayed);
            }
            e.highest_nc = nc;
            return Ok(());
        }
        let minted = id.minted;
        if self.evicted_upto.is_some_and(|t| minted <= t) {
            return Err(ReplayRefusal::Evicted);
        }
        while self.map.len() >= self.cap {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.map.remove(&old).is_some() {
                self.evicted_upto =
                    Some(self.evicted_upto.map_or(old.minted, |t| t.max(old.minted)));
            }
        }
        if self.evicted_upto.is_some_and(|t| minted <= t) {
            return Err(ReplayRefusal::Evicted);
        }
        self.map.insert(
            id,
            Entry {
                highest_nc: nc,
                expires,
            },
        );
        self.order.push_back(id);
        Ok(())
    }

    /// Drops expired entries from the front (entries are near expiry order:
    /// first use follows minting within one TTL).
    fn prune(&mut self, now_unix: u64) {
        while let Some(front) = self.order.front() {
            match self.map.get(front) {
                Some(e) if e.expires >= now_unix => break,
                _ => {
                    if let Some(k) = self.order.pop_front() {
                        self.map.remove(&k);
                    }
                }
            }
        }
    }
}
