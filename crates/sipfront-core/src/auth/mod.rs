//! Trunk authentication: SIP digest (RFC 3261 §22.2–§22.4, RFC 7616, RFC 8760
//! SHA-256 for SIP) with stateless HMAC nonces and `nc` replay checks, and IP
//! authentication (SPEC §3 "identify", "digest", "ip_restrict").
//!
//! Sans-IO: wall-clock time comes in as `now_unix` (seconds since the Unix
//! epoch, as rustls takes time from a `TimeProvider`); nothing here reads a
//! clock or does I/O. The secret comes from the caller too.
//!
//! # Calling contract
//! For an out-of-dialog request not from a trusted upstream or an
//! [`IpAuth`]-identified trunk:
//! 1. take `Proxy-Authorization` (or `Authorization` for REGISTER,
//!    [`ChallengeKind::for_method`]); absent → answer 407/401 with
//!    [`Authenticator::challenge`] (one header per returned value);
//! 2. otherwise [`Authenticator::verify`] (or [`Authenticator::verify_request`]
//!    on the whole message, which does step 1's header choice); on `Err(e)` answer `e.status()`,
//!    adding [`Authenticator::challenge`] with `stale = e.is_stale()` when
//!    [`AuthError::challenge_kind`] is `Some`.
//!
//! Only HA1 values (MD5 and SHA-256) are kept; passwords are not stored.
//! Unknown users are checked against a dummy HA1 so that "no such user" and
//! "wrong password" cost the same time and both answer 403.

mod bans;
pub mod client;
mod digest;
mod ip;
mod nonce;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use crate::config::TrunkConfig;
use crate::sip::{DigestCredentials, HeaderName, Message, Method, StatusCode};

pub use bans::{Ban, BanPolicy, Bans};
pub use client::{ChallengeAnswer, ChallengeError, Credentials};
pub use digest::{ha1, response, response_without_qop, Algorithm};
pub use ip::{ip_allowed, IpAuth};
pub use nonce::ReplayTable;

use nonce::{NonceCheck, ReplayRefusal};

/// Default nonce lifetime in seconds.
pub const DEFAULT_NONCE_TTL: u64 = 300;
/// Default bound on the replay table.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// What a nonce is minted from ([`Authenticator::nonce_seed`]): its time
/// and the challenge serial that makes it unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceSeed {
    /// Unix seconds at minting.
    pub minted: u64,
    /// Unique per challenge within the process.
    pub serial: u64,
}

/// A trunk's numeric id (`TrunkConfig::id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrunkId(pub u64);

/// Which challenge a request gets (RFC 3261 §22.3 proxy, §22.2 UAS/registrar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// `407` with `Proxy-Authenticate`; credentials in `Proxy-Authorization`.
    Proxy,
    /// `401` with `WWW-Authenticate`; credentials in `Authorization`.
    Www,
}

impl ChallengeKind {
    /// REGISTER is challenged by the registrar (`401`); everything else by
    /// the proxy (`407`).
    pub fn for_method(method: &Method) -> ChallengeKind {
        if *method == Method::Register {
            ChallengeKind::Www
        } else {
            ChallengeKind::Proxy
        }
    }

    /// `401` or `407`.
    pub fn status(self) -> StatusCode {
        match self {
            ChallengeKind::Proxy => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ChallengeKind::Www => StatusCode::UNAUTHORIZED,
        }
    }

    /// The header the challenge values go in.
    pub fn challenge_header(self) -> &'static str {
        match self {
            ChallengeKind::Proxy => "Proxy-Authenticate",
            ChallengeKind::Www => "WWW-Authenticate",
        }
    }
}

/// Why [`Authenticator::verify`] refused. Every variant but `Forbidden` is
/// answered with a fresh challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Not `Digest`, or a required parameter (username, realm, nonce, uri,
    /// response, qop, nc, cnonce) is missing.
    #[error("digest credentials missing or incomplete")]
    Missing(ChallengeKind),
    /// `algorithm` we did not offer, or `qop` other than `auth`.
    #[error("unsupported digest algorithm or qop")]
    Unsupported(ChallengeKind),
    /// `realm` is not ours.
    #[error("digest realm is not ours")]
    WrongRealm(ChallengeKind),
    /// The nonce is not one we minted for this source address.
    #[error("nonce invalid (forged, altered or from another source)")]
    InvalidNonce(ChallengeKind),
    /// Correct response on an expired nonce (or one forgotten by the
    /// bounded replay table): re-challenge with `stale=true`.
    #[error("nonce stale")]
    Stale(ChallengeKind),
    /// Correct response, but this nonce's `nc` was already used.
    #[error("nonce count replayed")]
    Replay(ChallengeKind),
    /// Unknown user or wrong password (indistinguishable on purpose).
    #[error("wrong credentials")]
    Forbidden,
}

impl AuthError {
    /// The SIP answer: `401`/`407` for a re-challenge, `403` for wrong
    /// credentials.
    pub fn status(&self) -> StatusCode {
        match self.challenge_kind() {
            Some(k) => k.status(),
            None => StatusCode::FORBIDDEN,
        }
    }

    /// `Some(kind)` when the answer must carry a fresh challenge.
    pub fn challenge_kind(&self) -> Option<ChallengeKind> {
        match *self {
            AuthError::Missing(k)
            | AuthError::Unsupported(k)
            | AuthError::WrongRealm(k)
            | AuthError::InvalidNonce(k)
            | AuthError::Stale(k)
            | AuthError::Replay(k) => Some(k),
            AuthError::Forbidden => None,
        }
    }

    /// Whether the re-challenge carries `stale=true` (RFC 7616 §3.3).
    pub fn is_stale(&self) -> bool {
        matches!(self, AuthError::Stale(_))
    }
}

/// Whether a User-Agent is known to fail on a challenge list that names
/// SHA-256 next to MD5 (RFC 8760 §2.4 says a UA picks the one it supports;
/// these abort instead): baresip 0.x and 1.x, whose libre treats any
/// non-MD5 `WWW-Authenticate` as fatal (`Function not implemented`) even
/// after a usable MD5 one. Debian 12 ships baresip 1.0.0.
pub fn md5_only_user_agent(user_agent: &[u8]) -> bool {
    let ua = user_agent.trim_ascii_start();
    let Some(rest) = ua.strip_prefix(b"baresip v") else {
        return false;
    };
    matches!(rest, [b'0' | b'1', b'.', ..])
}

/// Stored credentials of one digest trunk: HA1 for both hashes, as hex.
#[derive(Clone)]
struct Ha1s {
    trunk: TrunkId,
    md5: String,
    sha256: String,
}

impl std::fmt::Debug for Ha1s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha1s")
            .field("trunk", &self.trunk)
            .finish_non_exhaustive()
    }
}

/// Digest authenticator for one config snapshot (sans-IO).
///
/// Immutable except for the shared [`ReplayTable`] (a short `Mutex`
/// section per successful verification). Build a new one on every config
/// swap with [`Authenticator::reload`], which keeps the secret and the
/// replay table so nonces already handed out stay valid and non-replayable.
pub struct Authenticator {
    realm: String,
    secret: [u8; 32],
    nonce_key: nonce::NonceKey,
    users: HashMap<String, Ha1s>,
    dummy: Ha1s,
    nonce_ttl: u64,
    replay: Arc<Mutex<ReplayTable>>,
    /// Challenge serial, unique per nonce (shared across reloads).
    serial: Arc<AtomicU64>,
}

impl std::fmt::Debug for Authenticator {
    /// Leaves out the secret and the HA1 values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("nonce_ttl", &self.nonce_ttl)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Builds the authenticator for `realm` from the trunks' logins and
    /// passwords, computing HA1 for MD5 and SHA-256. Trunks with a
    /// `host_request` (IP-authenticated) or an empty password are not digest
    /// users. `secret` keys the nonce HMAC: 32 random bytes from the shell,
    /// kept for the process lifetime.
    pub fn new<'a>(
        realm: &str,
        secret: [u8; 32],
        trunks: impl IntoIterator<Item = &'a TrunkConfig>,
    ) -> Authenticator {
        Authenticator::build(
            realm,
            secret,
            trunks,
            Arc::new(Mutex::new(ReplayTable::new(DEFAULT_REPLAY_CAPACITY))),
            Arc::new(AtomicU64::new(0)),
            DEFAULT_NONCE_TTL,
        )
    }

    fn build<'a>(
        realm: &str,
        secret: [u8; 32],
        trunks: impl IntoIterator<Item = &'a TrunkConfig>,
        replay: Arc<Mutex<ReplayTable>>,
        serial: Arc<AtomicU64>,
        nonce_ttl: u64,
    ) -> Authenticator {
        let mut users = HashMap::new();
        for t in trunks {
            if !t.host_request.trim().is_empty() || t.password.is_empty() || t.login().is_empty() {
                continue;
            }
            users.entry(t.login().to_owned()).or_insert_with(|| Ha1s {
                trunk: TrunkId(t.id()),
                md5: ha1(false, t.login(), realm, &t.password),
                sha256: ha1(true, t.login(), realm, &t.password),
            });
        }
        // A fixed HA1 no password maps to in practice (random-looking bytes).
        let dummy = Ha1s {
            trunk: TrunkId(0),
            md5: ha1(false, "\u{0}dummy", realm, &digest::hex(&secret)),
            sha256: ha1(true, "\u{0}dummy", realm, &digest::hex(&secret)),
        };
        Authenticator {
            realm: realm.to_owned(),
            nonce_key: nonce::NonceKey::new(&secret),
            secret,
            users,
            dummy,
            nonce_ttl,
            replay,
            serial,
        }
    }

    /// A new authenticator for a new config snapshot that keeps this one's
    /// secret, nonce lifetime and replay table.
    pub fn reload<'a>(
        &self,
        realm: &str,
        trunks: impl IntoIterator<Item = &'a TrunkConfig>,
    ) -> Authenticator {
        Authenticator::build(
            realm,
            self.secret,
            trunks,
            Arc::clone(&self.replay),
            Arc::clone(&self.serial),
            self.nonce_ttl,
        )
    }

    /// Sets the nonce lifetime (seconds; default [`DEFAULT_NONCE_TTL`]).
    pub fn with_nonce_ttl(mut self, secs: u64) -> Authenticator {
        self.nonce_ttl = secs;
        self
    }

    /// Replaces the replay table with an empty one bounded at `cap` nonces
    /// (default [`DEFAULT_REPLAY_CAPACITY`]).
    pub fn with_replay_capacity(mut self, cap: usize) -> Authenticator {
        self.replay = Arc::new(Mutex::new(ReplayTable::new(cap)));
        self
    }

    /// The realm challenges name.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Number of digest users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Number of nonces currently tracked for replay.
    pub fn replay_len(&self) -> usize {
        self.replay.lock().map_or(0, |t| t.len())
    }

    /// The challenge header values for a request from `source` (RFC 7616
    /// §3.3, RFC 8760 §2.4): MD5, then SHA-256, both `qop="auth"` with the
    /// same nonce. Put each in its own `kind.challenge_header()` header.
    ///
    /// MD5 comes first for interoperability: many UAs (SIPp, older
    /// chan_sip and softphones) read only the first challenge and fail on
    /// an algorithm they do not know, while RFC 8760 UAs pick SHA-256
    /// from the list whatever its place.
    /// `stale` adds `stale=true` (after [`AuthError::Stale`]).
    pub fn challenge(
        &self,
        kind: ChallengeKind,
        source: IpAddr,
        now_unix: u64,
        stale: bool,
    ) -> Vec<String> {
        self.challenge_algorithms(kind, source, now_unix, stale, true)
    }

    /// [`Authenticator::challenge`] offering SHA-256 only when `sha256`;
    /// MD5 alone otherwise (see [`md5_only_user_agent`]).
    pub fn challenge_algorithms(
        &self,
        kind: ChallengeKind,
        source: IpAddr,
        now_unix: u64,
        stale: bool,
        sha256: bool,
    ) -> Vec<String> {
        let _ = kind; // same value for both headers; the kind picks the header name
        self.challenge_values(source, self.nonce_seed(now_unix), stale, sha256)
    }

    /// A new nonce's time and serial (each call a new serial): minting
    /// from the same seed for the same source gives the same nonce.
    pub fn nonce_seed(&self, now_unix: u64) -> NonceSeed {
        NonceSeed {
            minted: now_unix,
            serial: self.serial.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The challenge values for the nonce of `seed` (see
    /// [`Authenticator::challenge_algorithms`]).
    fn challenge_values(
        &self,
        source: IpAddr,
        seed: NonceSeed,
        stale: bool,
        sha256: bool,
    ) -> Vec<String> {
        let nonce = nonce::mint(&self.nonce_key, source, seed.minted, seed.serial);
        let stale = if stale { ", stale=true" } else { "" };
        let algs: &[Algorithm] = if sha256 {
            &[Algorithm::Md5, Algorithm::Sha256]
        } else {
            &[Algorithm::Md5]
        };
        algs.iter()
            .copied()
            .map(|alg| {
                format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    self.realm,
                    alg.as_str()
                )
            })
            .collect()
    }

    /// The extra response headers owed for a refusal `err` of a request
    /// from `source`: a fresh challenge (`stale=true` after an expired
    /// nonce) in `WWW-Authenticate`/`Proxy-Authenticate` when
    /// [`AuthError::challenge_kind`] is `Some`, nothing for `403`. Used
    /// for INVITE (407) and REGISTER (401) alike.
    ///
    /// Offers MD5 alone when the request's User-Agent is one that gives up on a
    /// challenge list naming SHA-256 ([`md5_only_user_agent`]), both
    /// otherwise.
    pub fn rejection_headers_for(
        &self,
        err: &AuthError,
        req: &Message,
        source: IpAddr,
        now_unix: u64,
    ) -> Vec<(&'static str, String)> {
        if err.challenge_kind().is_none() {
            return Vec::new();
        }
        self.rejection_headers_seeded(err, req, source, self.nonce_seed(now_unix))
    }

    /// [`Authenticator::rejection_headers_for`] with the nonce of `seed`:
    /// the same seed, request and source give the same headers, so a
    /// challenge sent without a transaction can be sent again byte for
    /// byte (RFC 3261 §17.2.2).
    pub fn rejection_headers_seeded(
        &self,
        err: &AuthError,
        req: &Message,
        source: IpAddr,
        seed: NonceSeed,
    ) -> Vec<(&'static str, String)> {
        let Some(kind) = err.challenge_kind() else {
            return Vec::new();
        };
        let sha256 = !req
            .header(&HeaderName::UserAgent)
            .is_some_and(md5_only_user_agent);
        self.challenge_values(source, seed, err.is_stale(), sha256)
            .into_iter()
            .map(|v| (kind.challenge_header(), v))
            .collect()
    }

    /// [`Authenticator::verify`] on a parsed request: takes the credentials
    /// from `Proxy-Authorization` (`Authorization` for REGISTER), preferring
    /// the header whose realm is ours when there are several (RFC 3261
    /// §22.3: one per proxy realm). Headers that do not parse are skipped.
    ///
    /// # Errors
    /// [`AuthError::Missing`] when the request has no usable header (or is
    /// a response), else as [`Authenticator::verify`].
    pub fn verify_request(
        &self,
        msg: &Message,
        source: IpAddr,
        now_unix: u64,
    ) -> Result<TrunkId, AuthError> {
        let Some(method) = msg.method() else {
            return Err(AuthError::Missing(ChallengeKind::Proxy));
        };
        let kind = ChallengeKind::for_method(method);
        let name = match kind {
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
            ChallengeKind::Www => HeaderName::Authorization,
        };
        let mut first = None;
        for value in msg.headers(&name) {
            let Ok(c) = DigestCredentials::parse(value) else {
                continue;
            };
            if c.is_digest() && c.realm.as_deref() == Some(self.realm.as_str()) {
                return self.verify(&c, method, source, now_unix);
            }
            first.get_or_insert(c);
        }
        match first {
            Some(c) => self.verify(&c, method, source, now_unix),
            None => Err(AuthError::Missing(kind)),
        }
    }

    /// Verifies digest credentials from a request with `method` that came
    /// from `source`, at wall time `now_unix`.
    ///
    /// Checks, in order: completeness, algorithm and `qop=auth`, realm, the
    /// nonce MAC for this source (constant time), the response (constant
    /// time; unknown users against a dummy HA1), then expiry and the `nc`
    /// replay table. Expiry and replay are only reported for a correct
    /// response, so `stale=true` is never given to a wrong password.
    ///
    /// # Errors
    /// See [`AuthError`]; `status()` gives the answer.
    pub fn verify(
        &self,
        creds: &DigestCredentials<'_>,
        method: &Method,
        source: IpAddr,
        now_unix: u64,
    ) -> Result<TrunkId, AuthError> {
        let kind = ChallengeKind::for_method(method);
        if !creds.is_digest() {
            return Err(AuthError::Missing(kind));
        }
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(resp)) = (
            creds.username.as_deref(),
            creds.realm.as_deref(),
            creds.nonce.as_deref(),
            creds.uri.as_deref(),
            creds.response.as_deref(),
        ) else {
            return Err(AuthError::Missing(kind));
        };
        let (Some(qop), Some(nc), Some(cnonce)) =
            (creds.qop.as_deref(), creds.nc, creds.cnonce.as_deref())
        else {
            return Err(AuthError::Missing(kind));
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(AuthError::Unsupported(kind));
        }
        let Some(alg) = Algorithm::from_param(creds.algorithm.as_deref()) else {
            return Err(AuthError::Unsupported(kind));
        };
        if realm != self.realm {
            return Err(AuthError::WrongRealm(kind));
        }
        let checked = nonce::check(&self.nonce_key, nonce, source, now_unix, self.nonce_ttl);
        if checked == NonceCheck::Invalid {
            return Err(AuthError::InvalidNonce(kind));
        }

        let (user, known) = match self.users.get(username) {
            Some(u) => (u, true),
            None => (&self.dummy, false),
        };
        let ha1 = if alg.is_sha256() {
            &user.sha256
        } else {
            &user.md5
        };
        let expected = response(alg, ha1, nonce, nc, cnonce, qop, method.as_str(), uri);
        // Compare case-insensitively in constant time: lowercase the
        // client's hex (lengths are public: 32 or 64).
        let given = resp.to_ascii_lowercase();
        let ok = bool::from(expected.as_bytes().ct_eq(given.as_bytes())) & known;
        if !ok {
            return Err(AuthError::Forbidden);
        }

        let NonceCheck::Fresh(id) = checked else {
            return Err(AuthError::Stale(kind));
        };
        let expires = id.minted.saturating_add(self.nonce_ttl);
        let mut table = match self.replay.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        match table.accept(id, expires, nc, now_unix) {
            Ok(()) => Ok(user.trunk),
            Err(ReplayRefusal::Replayed) => Err(AuthError::Replay(kind)),
            Err(ReplayRefusal::Evicted) => Err(AuthError::Stale(kind)),
        }
    }
}
