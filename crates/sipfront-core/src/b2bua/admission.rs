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

use super::channels::{ChannelCounters, ChannelGuard};
use crate::auth::{AuthError, Authenticator, IpAuth, TrunkId};
use crate::b2bua::record::Direction;
use crate::config::{Config, DidConfig, RateTable, TrunkConfig};
use crate::policy::{
    self, CallFacts, Decision, Denied, OnNetIndex, OnNetTarget, PolicyContext, Route,
};
use crate::sip::{HeaderName, Message, NameAddr, StatusCode};

/// What a call holds a channel of: its trunk (placed calls, SPEC §3
/// "channels") or the DID it came in on (received calls, SPEC §4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChannelKey {
    /// A trunk by id.
    Trunk(u64),
    /// A DID by number.
    Did(Arc<str>),
}

/// Why a new INVITE is refused before routing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// From a trusted upstream to a number that is none of our DIDs.
    UnknownDid(String),
    /// The DID's `channels` are all in use (SPEC §4: `486`).
    DidBusy {
        /// The DID.
        number: String,
        /// Its `channels`.
        max: u32,
    },
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

/// Why a new INVITE was refused, in one word: the `reason` label of
/// `sipfront_invites_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalCause {
    /// `407` asking for digest credentials (the normal start of a call).
    Challenged,
    /// Unknown user or wrong password (`403`).
    AuthFailed,
    /// Source not in the trunk's `allowed_ips`.
    IpRestrict,
    /// The trunk's `max_channels` reached.
    ChannelLimit,
    /// Not digits after rewrite.
    BadNumber,
    /// No rate prefix.
    NoRate,
    /// `max_call_cost` buys under a minute.
    CostLimit,
    /// From a trusted upstream to a number that is not ours.
    UnknownDid,
    /// The DID's `channels` in use.
    DidBusy,
    /// No number in the Request-URI or To.
    NoNumber,
    /// No upstream, or no destination reachable.
    NoRoute,
    /// The INVITE could not be relayed as received.
    Unrelayable,
    /// Shutting down (SIGTERM drain).
    Draining,
}

impl RefusalCause {
    /// Every cause, in declaration order (so `ALL[c as usize] == c`).
    pub const ALL: [RefusalCause; 13] = [
        RefusalCause::Challenged,
        RefusalCause::AuthFailed,
        RefusalCause::IpRestrict,
        RefusalCause::ChannelLimit,
        RefusalCause::BadNumber,
        RefusalCause::NoRate,
        RefusalCause::CostLimit,
        RefusalCause::UnknownDid,
        RefusalCause::DidBusy,
        RefusalCause::NoNumber,
        RefusalCause::NoRoute,
        RefusalCause::Unrelayable,
        RefusalCause::Draining,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCause::Challenged => "challenged",
            RefusalCause::AuthFailed => "auth_failed",
            RefusalCause::IpRestrict => "ip_restrict",
            RefusalCause::ChannelLimit => "channel_limit",
            RefusalCause::BadNumber => "bad_number",
            RefusalCause::NoRate => "no_rate",
            RefusalCause::CostLimit => "cost_limit",
            RefusalCause::UnknownDid => "unknown_did",
            RefusalCause::DidBusy => "did_busy",
            RefusalCause::NoNumber => "no_number",
            RefusalCause::NoRoute => "no_route",
            RefusalCause::Unrelayable => "unrelayable",
            RefusalCause::Draining => "draining",
        }
    }
}

impl Refusal {
    /// The label `/metrics` counts this refusal under.
    pub fn cause(&self) -> RefusalCause {
        match self {
            Refusal::UnknownDid(_) => RefusalCause::UnknownDid,
            Refusal::DidBusy { .. } => RefusalCause::DidBusy,
            Refusal::Auth(e) if e.challenge_kind().is_some() => RefusalCause::Challenged,
            Refusal::Auth(_) => RefusalCause::AuthFailed,
            Refusal::Policy { denied, .. } => match denied {
                Denied::IpNotAllowed { .. } => RefusalCause::IpRestrict,
                Denied::ChannelLimit { .. } => RefusalCause::ChannelLimit,
                Denied::BadNumber { .. } => RefusalCause::BadNumber,
                Denied::NoRate { .. } => RefusalCause::NoRate,
                Denied::CostLimit { .. } => RefusalCause::CostLimit,
            },
            Refusal::NoNumber => RefusalCause::NoNumber,
        }
    }

    /// The SIP answer (SPEC §3/§4).
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::UnknownDid(_) => StatusCode::NOT_FOUND,
            Refusal::DidBusy { .. } => StatusCode::BUSY_HERE,
            Refusal::Auth(e) => e.status(),
            Refusal::Policy { denied, .. } => denied.status(),
            Refusal::NoNumber => StatusCode::ADDRESS_INCOMPLETE,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::UnknownDid(n) => write!(f, "inbound call to `{n}`, which is none of our DIDs"),
            Refusal::DidBusy { number, max } => {
                write!(f, "DID {number}: all {max} channels in use")
            }
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

/// An admitted call: who it belongs to and the terms it keeps to the end.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// Placed by a trunk, or received from an upstream on a DID.
    pub direction: Direction,
    /// The trunk placing the call (placed calls).
    pub trunk: Option<Arc<TrunkConfig>>,
    /// The DID called (received calls, and on-net calls to a DID).
    pub did: Option<Arc<DidConfig>>,
    /// Number, caller ID, duration limit and route.
    pub decision: Decision,
    /// A call to one of `[server] emergency_numbers`: no limit applies.
    pub emergency: bool,
}

impl Admitted {
    /// The channel the call holds.
    pub fn channel(&self) -> ChannelKey {
        match (&self.trunk, &self.did) {
            (Some(t), _) => ChannelKey::Trunk(t.id()),
            (None, Some(d)) => ChannelKey::Did(Arc::from(d.number.as_str())),
            (None, None) => ChannelKey::Trunk(0),
        }
    }

    /// The most channels of [`Admitted::channel`] in use at once: the
    /// trunk's `max_channels` under `channels_restrict`, a DID's non-zero
    /// `channels`; `None` (counted, never refused) for emergency calls.
    pub fn channel_limit(&self) -> Option<u32> {
        match (&self.trunk, &self.did) {
            _ if self.emergency => None,
            (Some(t), _) => policy::channel_limit(t),
            (None, Some(d)) => did_channel_limit(d),
            (None, None) => None,
        }
    }

    /// Takes the call's channel with one atomic try-acquire, which makes
    /// the limit exact across the shards sharing `counters` (the check in
    /// [`Admission::admit`] only reads the count). `spare`: channels of
    /// the same key the call takes over (a transfer's referrer).
    ///
    /// # Errors
    /// The refusal the limit answers with: `503` for a trunk, `486` for a
    /// DID.
    pub fn take_channel(
        &self,
        counters: &Arc<dyn ChannelCounters>,
        spare: u32,
    ) -> Result<ChannelGuard, Refusal> {
        let limit = self.channel_limit().map(|max| max.saturating_add(spare));
        ChannelGuard::acquire(counters, self.channel(), limit)
            .map_err(|active| self.channel_refusal(active.saturating_sub(spare)))
    }

    /// The refusal of this call when `active` channels of its key are in
    /// use at the limit: `503` for a trunk, `486` for a DID.
    pub fn channel_refusal(&self, active: u32) -> Refusal {
        match (&self.trunk, &self.did) {
            (Some(t), _) => Refusal::Policy {
                trunk: Arc::clone(t),
                denied: Denied::ChannelLimit {
                    active,
                    max: t.max_channels,
                },
            },
            (None, Some(d)) => Refusal::DidBusy {
                number: d.number.clone(),
                max: d.channels,
            },
            // No limit without a trunk or DID: acquiring cannot fail.
            (None, None) => Refusal::NoNumber,
        }
    }

    /// A call another node of the fleet relayed here
    /// ([`Admission::admit_relayed`]): that node records it.
    pub fn relayed(&self) -> bool {
        self.trunk.is_none()
            && self.did.is_none()
            && matches!(self.decision.route, Route::OnNet(OnNetTarget::Trunk(_)))
    }

    /// The trunk id for logs and CDRs.
    pub fn trunk_id(&self) -> Option<u64> {
        self.trunk.as_ref().map(|t| t.id())
    }

    /// The SPEC §6 `sip_trunk` of the CDR: the calling trunk's login, or for
    /// a received call the trunk its DID rings first (empty if none).
    pub fn sip_trunk(&self) -> &str {
        match (&self.trunk, &self.did) {
            (Some(t), _) => t.login(),
            (None, Some(d)) => d
                .destinations
                .iter()
                .filter(|x| x.transport == DEST_TRUNK)
                .min_by_key(|x| x.priority)
                .map_or("", |x| x.destination.as_str()),
            (None, None) => "",
        }
    }
}

/// DID destination kinds (SPEC §2 `transport`).
pub const DEST_URI: u8 = 1;
/// A PSTN number, via the upstreams.
pub const DEST_PSTN: u8 = 4;
/// A trunk by its login: its registered contacts.
pub const DEST_TRUNK: u8 = 5;

/// The admission snapshot: trunks by id, digest and IP authentication, the
/// on-net index and the rate table.
#[derive(Debug)]
pub struct Admission {
    trunks: HashMap<u64, Arc<TrunkConfig>>,
    logins: HashMap<String, u64>,
    dids: HashMap<String, Arc<DidConfig>>,
    auth: Authenticator,
    ip: IpAuth,
    on_net: OnNetIndex,
    rates: RateTable,
    /// `[server] emergency_numbers`.
    emergency: Vec<String>,
    /// SPEC §7: `[webhooks] call_status_url`, and each DID's own, when set.
    status_urls: StatusUrls,
}

/// The call-status webhook URLs of one snapshot, shared by its calls' events.
#[derive(Debug, Default)]
struct StatusUrls {
    global: Option<Arc<str>>,
    dids: HashMap<String, Arc<str>>,
}

impl StatusUrls {
    fn new(cfg: &Config) -> StatusUrls {
        let url = |s: &str| (!s.trim().is_empty()).then(|| Arc::from(s.trim()));
        StatusUrls {
            global: url(&cfg.webhooks.call_status_url),
            dids: cfg
                .did
                .iter()
                .filter_map(|d| Some((d.number.clone(), url(&d.call_status_url)?)))
                .collect(),
        }
    }
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
            logins: HashMap::new(),
            dids: HashMap::new(),
            auth: Authenticator::new(realm, secret, &[]),
            ip: IpAuth::default(),
            on_net: OnNetIndex::default(),
            rates: RateTable::default(),
            emergency: Vec::new(),
            status_urls: StatusUrls::default(),
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
            logins: cfg
                .trunk
                .iter()
                .map(|t| (t.login().to_owned(), t.id()))
                .collect(),
            dids: cfg
                .did
                .iter()
                .map(|d| (d.number.clone(), Arc::new(d.clone())))
                .collect(),
            auth,
            ip: IpAuth::new(&cfg.trunk),
            on_net: OnNetIndex::new(&cfg.trunk, &cfg.did),
            rates: cfg.rate_table.clone(),
            emergency: cfg.server.emergency_numbers.clone(),
            status_urls: StatusUrls::new(cfg),
        }
    }

    /// Where a call's status events go (SPEC §7): an inbound DID call's
    /// own `call_status_url` if set, else the global one; `None`: no events.
    pub fn status_url(&self, direction: Direction, did: Option<&DidConfig>) -> Option<Arc<str>> {
        let own = match (direction, did) {
            (Direction::Received, Some(d)) => self.status_urls.dids.get(&d.number),
            _ => None,
        };
        own.or(self.status_urls.global.as_ref()).cloned()
    }

    /// The digest authenticator (challenges for refusals).
    pub fn auth(&self) -> &Authenticator {
        &self.auth
    }

    /// A trunk by id.
    pub fn trunk(&self, id: u64) -> Option<&Arc<TrunkConfig>> {
        self.trunks.get(&id)
    }

    /// Whether `ip` is an IP-authenticated trunk's (`host_request`).
    pub fn is_ip_trunk(&self, ip: IpAddr) -> bool {
        self.ip.identify(ip).is_some()
    }

    /// The rate table and on-net index, for policy checks after admission
    /// (redirects).
    pub(crate) fn policy_context(&self) -> PolicyContext<'_> {
        PolicyContext {
            rates: &self.rates,
            on_net: &self.on_net,
        }
    }

    /// A trunk by login.
    pub fn trunk_by_login(&self, login: &str) -> Option<&Arc<TrunkConfig>> {
        self.trunks.get(self.logins.get(login)?)
    }

    /// A DID by number.
    pub fn did(&self, number: &str) -> Option<&Arc<DidConfig>> {
        self.dids.get(number)
    }

    /// SPEC §3 for a new INVITE from `source` at wall time `now_unix`:
    /// identification, digest, then [`policy::decide`] with the trunk's
    /// current outbound calls from `active`. From a trusted upstream
    /// (`trusted`), SPEC §4 instead: the DID and its `channels`.
    ///
    /// # Errors
    /// The [`Refusal`]; its `status()` answers the A-leg.
    pub fn admit(
        &self,
        invite: &Message,
        source: IpAddr,
        trusted: bool,
        now_unix: u64,
        active: impl Fn(&ChannelKey) -> u32,
    ) -> Result<Admitted, Refusal> {
        if trusted {
            let dialled = dialled_user(invite).unwrap_or_default();
            return self.admit_inbound(invite, dialled, active);
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
        let active = active(&ChannelKey::Trunk(id));
        self.admit_trunk(trunk, invite, source, active)
    }

    /// SPEC §3 after identification: `trunk`'s policy for `invite` from
    /// `source` while it has `active` outbound calls. Also the terms of a
    /// call a trunk asks for by REFER (RFC 3515), which `invite` then
    /// describes.
    ///
    /// # Errors
    /// The [`Refusal`]; its `status()` is the answer.
    pub fn admit_trunk(
        &self,
        trunk: Arc<TrunkConfig>,
        invite: &Message,
        source: IpAddr,
        active: u32,
    ) -> Result<Admitted, Refusal> {
        let dialled = dialled_user(invite).ok_or(Refusal::NoNumber)?;
        let from = invite.from().ok();
        // RFC 3325 §9.2: a PBX outside our trust domain may only *prefer*
        // an identity; we take it like an asserted one, then the trunk's
        // caller-ID rule decides.
        let pai = invite
            .header(&HeaderName::PAssertedIdentity)
            .or_else(|| invite.header(&HeaderName::from_bytes(b"P-Preferred-Identity")))
            .and_then(NameAddr::parse);
        let caller = caller_user(
            from.as_ref().and_then(|f| f.uri.user),
            pai.as_ref().and_then(|p| p.uri.user),
        );
        let facts = CallFacts {
            dialled,
            caller_user: caller,
            source_ip: source,
            active_channels: active,
        };
        if let Some(number) = policy::emergency_number(&trunk, dialled, &self.emergency) {
            return match policy::emergency(&trunk, &facts, number) {
                Ok(decision) => Ok(Admitted {
                    direction: Direction::Placed,
                    trunk: Some(trunk),
                    did: None,
                    decision,
                    emergency: true,
                }),
                Err(denied) => Err(Refusal::Policy { trunk, denied }),
            };
        }
        match policy::decide(&trunk, &facts, &self.policy_context()) {
            Ok(decision) => Ok(Admitted {
                emergency: false,
                direction: Direction::Placed,
                did: match decision.route {
                    Route::OnNet(OnNetTarget::Did) => self.dids.get(&decision.number).cloned(),
                    _ => None,
                },
                trunk: Some(trunk),
                decision,
            }),
            Err(denied) => Err(Refusal::Policy { trunk, denied }),
        }
    }

    /// SPEC §8.1: an INVITE an upstream sent to the contact we registered
    /// there names our account in the Request-URI; the DID is the To user
    /// (SPEC §4 otherwise).
    ///
    /// # Errors
    /// As [`Admission::admit`] for a trusted upstream.
    pub fn admit_to_contact(
        &self,
        invite: &Message,
        active: impl Fn(&ChannelKey) -> u32,
    ) -> Result<Admitted, Refusal> {
        let to = invite.to().ok();
        let dialled = to.as_ref().and_then(|t| t.uri.user).unwrap_or_default();
        self.admit_inbound(invite, dialled, active)
    }

    /// A call another node of the fleet relays here (README "Fleets"):
    /// the Request-URI user is the login of a trunk registered on this
    /// node; the To user is what that node's routing chose to show the
    /// trunk (the DID, or the login). The relaying node applied the DID's
    /// policy and counts its channel; this node only delivers.
    ///
    /// # Errors
    /// `404` (as an unknown DID) when no trunk has that login.
    pub fn admit_relayed(&self, invite: &Message) -> Result<Admitted, Refusal> {
        let login = invite
            .request_uri()
            .and_then(|u| u.user)
            .ok_or(Refusal::NoNumber)?;
        let id = *self
            .logins
            .get(login)
            .ok_or_else(|| Refusal::UnknownDid(login.to_owned()))?;
        let to = invite.to().ok();
        let shown = to.as_ref().and_then(|t| t.uri.user).unwrap_or(login);
        let from = invite.from().ok();
        let caller = from.as_ref().and_then(|f| f.uri.user);
        Ok(Admitted {
            emergency: false,
            direction: Direction::Received,
            trunk: None,
            did: None,
            decision: Decision {
                number: shown.to_owned(),
                caller_id: caller
                    .and_then(policy::normalize)
                    .unwrap_or_default()
                    .to_owned(),
                max_duration: None,
                route: Route::OnNet(OnNetTarget::Trunk(TrunkId(id))),
            },
        })
    }

    /// SPEC §4: an INVITE from a trusted upstream is for one of our DIDs
    /// (`dialled`: the Request-URI user, else To user; `+` ignored), within
    /// its `channels`. The caller's number passes through as it came.
    fn admit_inbound(
        &self,
        invite: &Message,
        dialled: &str,
        active: impl Fn(&ChannelKey) -> u32,
    ) -> Result<Admitted, Refusal> {
        let number = policy::normalize(dialled).unwrap_or(dialled);
        let did = self
            .dids
            .get(number)
            .ok_or_else(|| Refusal::UnknownDid(dialled.to_owned()))?;
        let key = ChannelKey::Did(Arc::from(number));
        if did_channel_limit(did).is_some_and(|max| active(&key) >= max) {
            return Err(Refusal::DidBusy {
                number: did.number.clone(),
                max: did.channels,
            });
        }
        let from = invite.from().ok();
        let caller = from.as_ref().and_then(|f| f.uri.user);
        Ok(Admitted {
            emergency: false,
            direction: Direction::Received,
            trunk: None,
            did: Some(Arc::clone(did)),
            decision: Decision {
                number: did.number.clone(),
                caller_id: caller
                    .and_then(policy::normalize)
                    .unwrap_or_default()
                    .to_owned(),
                max_duration: None,
                route: Route::OnNet(OnNetTarget::Did),
            },
        })
    }
}

/// SPEC §4: a DID's `channels`, 0 meaning no limit.
fn did_channel_limit(did: &DidConfig) -> Option<u32> {
    (did.channels > 0).then_some(did.channels)
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
