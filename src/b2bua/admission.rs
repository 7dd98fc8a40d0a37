//! Who may place a call and on what terms (SPEC §3), as one immutable
//! snapshot of the config: identify the source (a trusted upstream's IP is
//! an inbound DID call; a `host_request` IP is an IP-authenticated trunk;
//! anyone else must pass digest), then apply the trunk's policy. Calls keep
//! the [`Decision`] they were admitted with, so swapping in a new snapshot
//! never changes the terms of a call in progress.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::{AuthError, Authenticator, IpAuth, TrunkId};
use crate::config::{Config, RateTable, TrunkConfig};
use crate::policy::{self, CallFacts, Decision, Denied, OnNetIndex, PolicyContext};
use crate::sip::{HeaderName, Message, NameAddr, StatusCode};

/// Why a new INVITE is refused before routing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// From a trusted upstream: an inbound DID call, not routed yet (SPEC §4).
    InboundNotRouted,
    /// Digest: no, stale or replayed credentials (answered with a fresh
    /// challenge), or wrong ones (`403`).
    Auth(AuthError),
    /// An identified trunk's policy refused the call.
    Policy {
        /// The trunk (for the CDR and the log).
        trunk: Arc<TrunkConfig>,
        /// The first SPEC §3 row that failed.
        denied: Denied,
    },
    /// The INVITE names no number to call (no user in the Request-URI or To).
    NoNumber,
}

impl Refusal {
    /// The SIP answer (SPEC §3/§4).
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::InboundNotRouted => StatusCode::NOT_FOUND,
            Refusal::Auth(e) => e.status(),
            Refusal::Policy { denied, .. } => denied.status(),
            Refusal::NoNumber => StatusCode::ADDRESS_INCOMPLETE,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::InboundNotRouted => f.write_str("inbound DID calls are not routed yet"),
            Refusal::Auth(AuthError::Forbidden) => {
                f.write_str("digest: unknown user or wrong password")
            }
            Refusal::Auth(e) => write!(f, "digest: {e}, challenged"),
            Refusal::Policy { trunk, denied } => {
                write!(f, "trunk {} ({}): {denied}", trunk.id(), trunk.login())
            }
            Refusal::NoNumber => f.write_str("no number to call in the Request-URI or To"),
        }
    }
}

/// An admitted call: its trunk and the terms it keeps to the end.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The trunk placing the call.
    pub trunk: Arc<TrunkConfig>,
    /// Number, caller ID, duration limit and route.
    pub decision: Decision,
}

/// The admission snapshot: trunks by id, digest and IP authentication, the
/// on-net index and the rate table.
#[derive(Debug)]
pub struct Admission {
    trunks: HashMap<u64, Arc<TrunkConfig>>,
    auth: Authenticator,
    ip: IpAuth,
    on_net: OnNetIndex,
    rates: RateTable,
}

impl Admission {
    /// The snapshot of `cfg`. `secret` keys the digest nonces (32 random
    /// bytes kept for the life of the process).
    pub fn new(cfg: &Config, secret: [u8; 32]) -> Admission {
        let auth = Authenticator::new(&cfg.server.realm, secret, &cfg.trunk);
        Admission::with_auth(cfg, auth)
    }

    /// No trunks, no rates: every INVITE is challenged, then refused.
    pub fn empty(realm: &str, secret: [u8; 32]) -> Admission {
        Admission {
            trunks: HashMap::new(),
            auth: Authenticator::new(realm, secret, &[]),
            ip: IpAuth::default(),
            on_net: OnNetIndex::default(),
            rates: RateTable::default(),
        }
    }

    /// A snapshot of a new `cfg` that keeps this one's nonce secret and
    /// replay table, so challenges already sent stay valid and unreplayable.
    pub fn reload(&self, cfg: &Config) -> Admission {
        let auth = self.auth.reload(&cfg.server.realm, &cfg.trunk);
        Admission::with_auth(cfg, auth)
    }

    fn with_auth(cfg: &Config, auth: Authenticator) -> Admission {
        Admission {
            trunks: cfg
                .trunk
                .iter()
                .map(|t| (t.id(), Arc::new(t.clone())))
                .collect(),
            auth,
            ip: IpAuth::new(&cfg.trunk),
            on_net: OnNetIndex::new(&cfg.trunk, &cfg.did),
            rates: cfg.rate_table.clone(),
        }
    }

    /// The digest authenticator (challenges for refusals).
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// A trunk by id.
    pub fn trunk(&self, id: u64) -> Option<&Arc<TrunkConfig>> {
        self.trunks.get(&id)
    }

    /// SPEC §3 for a new INVITE from `source` at wall time `now_unix`:
    /// identification, digest, then [`policy::decide`] with the trunk's
    /// current outbound calls from `active`.
    ///
    /// # Errors
    /// The [`Refusal`]; its `status()` answers the A-leg.
    pub fn admit(
        &self,
        invite: &Message,
        source: IpAddr,
        trusted: bool,
        now_unix: u64,
        active: impl Fn(u64) -> u32,
    ) -> Result<Admitted, Refusal> {
        if trusted {
            return Err(Refusal::InboundNotRouted);
        }
        let id = match self.ip.identify(source) {
            Some(id) => id,
            None => self
                .auth
                .verify_request(invite, source, now_unix)
                .map_err(Refusal::Auth)?,
        };
        // An id the authenticators know but the map lacks cannot happen
        // within one snapshot; refuse as unknown rather than panic.
        let TrunkId(id) = id;
        let trunk = self
            .trunks
            .get(&id)
            .cloned()
            .ok_or(Refusal::Auth(AuthError::Forbidden))?;
        let dialled = dialled_user(invite).ok_or(Refusal::NoNumber)?;
        let from = invite.from().ok();
        let pai = invite
            .header(&HeaderName::PAssertedIdentity)
            .and_then(NameAddr::parse);
        let caller = caller_user(
            from.as_ref().and_then(|f| f.uri.user),
            pai.as_ref().and_then(|p| p.uri.user),
        );
        let facts = CallFacts {
            dialled,
            caller_user: caller,
            source_ip: source,
            active_channels: active(id),
        };
        let ctx = PolicyContext {
            rates: &self.rates,
            on_net: &self.on_net,
        };
        match policy::decide(&trunk, &facts, &ctx) {
            Ok(decision) => Ok(Admitted { trunk, decision }),
            Err(denied) => Err(Refusal::Policy { trunk, denied }),
        }
    }
}

/// The dialled number: the Request-URI user, else the To user.
fn dialled_user(invite: &Message) -> Option<&str> {
    invite
        .request_uri()
        .and_then(|u| u.user)
        .or_else(|| invite.to().ok().and_then(|t| t.uri.user))
        .filter(|u| !u.is_empty())
}

/// The caller's number for `passthrough`: P-Asserted-Identity's user when
/// it is a number (RFC 3325: the identity the PBX asserts; PBXs put the
/// extension in From and the public number there), else From's.
fn caller_user<'a>(from: Option<&'a str>, pai: Option<&'a str>) -> Option<&'a str> {
    match pai {
        Some(p) if policy::normalize(p).is_some() => Some(p),
        _ => from,
    }
}
