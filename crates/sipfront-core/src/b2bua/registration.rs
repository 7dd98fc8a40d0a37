//! Registration trunks: sipfront as a UA registering at an upstream
//! (RFC 3261 §10.2) for every `[[upstream]]` with `register = true`, so the
//! carrier can send the account's inbound calls to us. Sans-IO like the
//! OPTIONS pings (`health.rs`): driven by `poll_timeout`/`handle_timeout`,
//! responses and transaction failures come back as inputs.
//!
//! Choices where the issue is silent (Kamailio `uac_reg`, SBC practice):
//! * one Call-ID and From tag per upstream for the process's life, CSeq
//!   rising (§10.2.4), Contact `sip:<username>@<public_address>:<port>`;
//! * a challenge is answered once per REGISTER (`upstream_auth`);
//! * refreshed `min(granted / 2, 60)` seconds before the granted expiry;
//! * `423` raises the asked expiry to `Min-Expires` (at most 1 day) and
//!   asks again at once;
//! * any other failure (403, 404, 5xx, no answer, a second challenge) is
//!   retried with the RFC 5626 §4.5 back-off: `min(1800, 30 · 2^n)` s,
//!   randomised to 50–100 %, or `Retry-After` when the upstream says;
//! * on stop, registered accounts are unregistered (`Expires: 0`), with
//!   [`UNREGISTER_GRACE`] for the answer (and its challenge).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::leg::Local;
use super::upstream_auth::{self, Step};
use super::{Action, WallClock};
use crate::routing::{uri_param, Upstream, Upstreams};
use crate::sip::build::RequestBuilder;
use crate::sip::random::Random;
use crate::sip::{HeaderName, Message, Method, Transport};
use crate::transaction::TransactionKey;

/// How long a stopping process waits for its unregistrations.
pub(crate) const UNREGISTER_GRACE: Duration = Duration::from_secs(5);
/// RFC 5626 §4.5 base-time when every flow failed, and max-time.
const BACKOFF_BASE_S: u64 = 30;
const BACKOFF_MAX_S: u64 = 1800;
/// The largest `Min-Expires` we follow.
const MAX_EXPIRES: u32 = 86_400;

/// Registration state of one upstream, as `GET /v1/upstreams` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UpstreamRegistration {
    /// `registered`, `failed` (not registered: refused, no answer, or not
    /// yet answered) or `disabled` (`register = false`).
    pub state: &'static str,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// Unix seconds when the registration runs out, while registered.
    pub expires: Option<u64>,
}

impl UpstreamRegistration {
    /// An upstream that does not register.
    pub fn disabled() -> UpstreamRegistration {
        UpstreamRegistration {
            state: "disabled",
            last_error: None,
            expires: None,
        }
    }
}

/// One REGISTER out.
#[derive(Clone, Copy, Debug)]
struct Pending {
    /// It carried credentials.
    authed: bool,
    /// Expires: 0.
    unregister: bool,
}

/// One registering upstream.
#[derive(Debug)]
struct Account {
    upstream: usize,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// Expires we ask for (`register_expires_s`, raised by 423).
    asked: u32,
    pending: Option<(TransactionKey, Pending)>,
    registered_until: Option<Instant>,
    /// The next REGISTER (refresh or retry).
    next: Option<Instant>,
    failures: u32,
    last_error: Option<String>,
    /// Unregistration asked (stop): no more refreshes.
    stopping: bool,
}

/// Every registration trunk.
#[derive(Debug, Default)]
pub(crate) struct Registrations {
    accounts: Vec<Account>,
    by_key: HashMap<TransactionKey, usize>,
    armed: bool,
    /// Until when a stop waits for unregistrations.
    unregister_until: Option<Instant>,
}

impl Registrations {
    /// Registers every `register = true` upstream from `now` on.
    pub(crate) fn arm(&mut self, ups: &Upstreams, local: &Local, now: Instant, rng: &mut Random) {
        if self.armed {
            return;
        }
        self.armed = true;
        for (i, u) in ups.iter().enumerate() {
            if u.register && u.credentials.is_some() {
                self.accounts.push(Account {
                    upstream: i,
                    call_id: rng.call_id(&local.public_address),
                    from_tag: rng.tag(),
                    cseq: 0,
                    asked: u.register_expires_s,
                    pending: None,
                    registered_until: None,
                    next: Some(now),
                    failures: 0,
                    last_error: None,
                    stopping: false,
                });
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let own = self
            .accounts
            .iter()
            .filter(|a| a.pending.is_none() && !a.stopping)
            .filter_map(|a| a.next);
        let expiry = self.accounts.iter().filter_map(|a| a.registered_until);
        own.chain(expiry).chain(self.unregister_until).min()
    }

    /// Sends the REGISTERs that are due; notes expired registrations.
    pub(crate) fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        if self.unregister_until.is_some_and(|t| t <= now) {
            self.unregister_until = None;
            self.by_key.clear();
            for a in &mut self.accounts {
                a.pending = None;
            }
        }
        for i in 0..self.accounts.len() {
            let Some(a) = self.accounts.get_mut(i) else {
                continue;
            };
            if a.registered_until.is_some_and(|t| t <= now) {
                a.registered_until = None;
                a.last_error = Some("registration expired before a refresh succeeded".into());
            }
            if a.stopping || a.pending.is_some() || a.next.map_or(true, |t| t > now) {
                continue;
            }
            a.next = None;
            self.send(i, None, false, ctx);
        }
    }

    /// Sends a REGISTER for account `i` (`answer`: credentials header).
    fn send(
        &mut self,
        i: usize,
        answer: Option<&crate::auth::ChallengeAnswer>,
        unregister: bool,
        ctx: &mut Ctx<'_>,
    ) {
        let Some(a) = self.accounts.get_mut(i) else {
            return;
        };
        let Some(up) = ctx.ups.get(a.upstream) else {
            return;
        };
        let Some(creds) = up.credentials.as_deref() else {
            return;
        };
        let Some(target) = up.primary() else {
            // RFC 3263: its name has no address yet (or any more): retry soon.
            a.next = Some(ctx.now + std::time::Duration::from_secs(2));
            a.last_error = Some(format!("`{}` has no resolved address", up.hostport));
            return;
        };
        let (dest, transport) = (target.addr, target.transport);
        a.cseq = a.cseq.wrapping_add(1);
        let (registrar, aor) = uris(up, &creds.username);
        let contact = contact(ctx.local, transport, &creds.username);
        let expires = if unregister { 0 } else { a.asked };
        let mut b = RequestBuilder::new(Method::Register, &registrar)
            .via(
                transport,
                &ctx.local.sent_by(transport),
                &ctx.rng.branch(),
                true,
            )
            .from(&aor, Some(&a.from_tag))
            .to(&aor, None)
            .call_id(&a.call_id)
            .cseq(a.cseq)
            .contact(&contact)
            .header("Expires", &expires.to_string());
        if let Some(ans) = answer {
            b = b.header(ans.header, &ans.value);
        }
        let Ok(msg) = Message::parse(b.build()) else {
            return;
        };
        let Ok(key) = TransactionKey::client(&msg) else {
            return;
        };
        if let Some((old, _)) = a.pending.take() {
            self.by_key.remove(&old);
        }
        a.pending = Some((
            key.clone(),
            Pending {
                authed: answer.is_some(),
                unregister,
            },
        ));
        self.by_key.insert(key, i);
        ctx.out.push_back(Action::Request {
            request: msg,
            dest,
            transport,
        });
    }

    /// A response to a REGISTER; false if `key` is not one of ours.
    pub(crate) fn on_response(
        &mut self,
        key: &TransactionKey,
        resp: &Message,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let Some(&i) = self.by_key.get(key) else {
            return false;
        };
        let Some(status) = resp.status() else {
            return true;
        };
        if status.is_provisional() {
            return true;
        }
        self.by_key.remove(key);
        let Some(a) = self.accounts.get_mut(i) else {
            return true;
        };
        let Some((_, pending)) = a.pending.take() else {
            return true;
        };
        let name = ctx
            .ups
            .get(a.upstream)
            .map_or_else(String::new, |u| u.name.clone());
        if status.is_success() {
            if pending.unregister {
                a.registered_until = None;
                tracing::info!(upstream = %name, "unregistered from upstream");
                return true;
            }
            let user = ctx
                .ups
                .get(a.upstream)
                .and_then(|u| Some(u.credentials.as_deref()?.username.clone()))
                .unwrap_or_default();
            let ours = contact(ctx.local, transport_of(ctx.ups, a.upstream), &user);
            let granted = granted_expires(resp, &ours, a.asked);
            if granted == 0 {
                self.fail(i, "the registrar granted no time (expires 0)", None, ctx);
                return true;
            }
            let now = ctx.now;
            let first = a.registered_until.is_none();
            a.registered_until = Some(now + Duration::from_secs(u64::from(granted)));
            let margin = (granted / 2).min(60);
            a.next = Some(now + Duration::from_secs(u64::from(granted - margin)));
            a.failures = 0;
            a.last_error = None;
            if first {
                tracing::info!(upstream = %name, expires = granted, "registered at upstream");
            }
            return true;
        }
        if matches!(status.0, 401 | 407) {
            let up = ctx.ups.get(a.upstream);
            let creds = up.and_then(|u| u.credentials.clone());
            let registrar = up.map(|u| uris(u, "").0).unwrap_or_default();
            let cnonce = upstream_auth::cnonce(ctx.rng);
            let call_id = a.call_id.clone();
            match upstream_auth::decide(
                resp,
                creds.as_deref(),
                pending.authed,
                &Method::Register,
                &registrar,
                &cnonce,
                &call_id,
            ) {
                Step::Retry(answer) => self.send(i, Some(&answer), pending.unregister, ctx),
                Step::Pass | Step::Fail => {
                    let why = if pending.authed {
                        format!("{} after credentials: wrong username/password", status.0)
                    } else {
                        format!("{}: challenge cannot be answered", status.0)
                    };
                    self.fail(i, &why, None, ctx);
                }
            }
            return true;
        }
        if status.0 == 423 && !pending.unregister {
            let min = resp
                .header(&HeaderName::MinExpires)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u32>().ok());
            match min {
                Some(m) if m > a.asked && m <= MAX_EXPIRES => {
                    tracing::info!(upstream = %name, min_expires = m, "registrar wants a longer expiry (423): asking again");
                    a.asked = m;
                    self.send(i, None, false, ctx);
                }
                _ => self.fail(i, "423 without a usable Min-Expires", None, ctx),
            }
            return true;
        }
        if pending.unregister {
            return true;
        }
        let reason = resp
            .reason()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let retry_after = resp
            .header(&HeaderName::RetryAfter)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.split(';').next()?.trim().parse::<u64>().ok());
        let why = format!("{} {reason}", status.0);
        self.fail(i, why.trim(), retry_after, ctx);
        true
    }

    /// A REGISTER timed out or could not be sent; false if not ours.
    pub(crate) fn on_failure(&mut self, key: &TransactionKey, ctx: &mut Ctx<'_>) -> bool {
        let Some(i) = self.by_key.remove(key) else {
            return false;
        };
        let unregister = self
            .accounts
            .get_mut(i)
            .and_then(|a| a.pending.take())
            .is_some_and(|(_, p)| p.unregister);
        if !unregister {
            self.fail(i, "no response from the registrar", None, ctx);
        }
        true
    }

    /// Forgets a terminated REGISTER; false if not ours.
    pub(crate) fn on_terminated(&mut self, key: &TransactionKey) -> bool {
        self.by_key.remove(key).is_some()
    }

    fn fail(&mut self, i: usize, why: &str, retry_after: Option<u64>, ctx: &mut Ctx<'_>) {
        let Some(a) = self.accounts.get_mut(i) else {
            return;
        };
        a.failures = a.failures.saturating_add(1);
        let wait = match retry_after {
            Some(s) => s.clamp(1, BACKOFF_MAX_S),
            None => backoff(a.failures, ctx.rng),
        };
        a.next = Some(ctx.now + Duration::from_secs(wait));
        a.last_error = Some(why.to_owned());
        // The binding at the registrar may still run; we no longer count on it.
        a.registered_until = None;
        let name = ctx.ups.get(a.upstream).map_or("", |u| u.name.as_str());
        tracing::warn!(
            upstream = %name,
            failures = a.failures,
            retry_in_s = wait,
            "registration at upstream failed: {why}"
        );
    }

    /// Stops refreshing and unregisters every registered account
    /// (`Expires: 0`); their answers are awaited up to [`UNREGISTER_GRACE`].
    pub(crate) fn unregister_all(&mut self, ctx: &mut Ctx<'_>) {
        for i in 0..self.accounts.len() {
            let Some(a) = self.accounts.get_mut(i) else {
                continue;
            };
            if a.stopping {
                continue;
            }
            a.stopping = true;
            a.next = None;
            if a.registered_until.is_some() {
                self.send(i, None, true, ctx);
                self.unregister_until = Some(ctx.now + UNREGISTER_GRACE);
            }
        }
    }

    /// Whether unregistrations are still waiting for their answers.
    pub(crate) fn unregistering(&self, now: Instant) -> bool {
        self.unregister_until.is_some_and(|t| t > now)
            && self
                .accounts
                .iter()
                .any(|a| a.pending.as_ref().is_some_and(|(_, p)| p.unregister))
    }

    /// Whether upstream `i` registers and `user` is its registered user
    /// (an inbound call to the contact we registered there).
    pub(crate) fn is_registered_user(&self, ups: &Upstreams, i: usize, user: &str) -> bool {
        self.accounts.iter().any(|a| {
            a.upstream == i
                && ups
                    .get(i)
                    .and_then(|u| u.credentials.as_deref())
                    .is_some_and(|c| c.username == user)
        })
    }

    /// The state of upstream `i`'s registration.
    pub(crate) fn view(&self, i: usize, wall: &WallClock, now: Instant) -> UpstreamRegistration {
        let Some(a) = self.accounts.iter().find(|a| a.upstream == i) else {
            return UpstreamRegistration::disabled();
        };
        let until = a.registered_until.filter(|&t| t > now);
        UpstreamRegistration {
            state: if until.is_some() {
                "registered"
            } else {
                "failed"
            },
            last_error: match (&a.last_error, until) {
                (Some(e), _) => Some(e.clone()),
                (None, None) => Some("not registered yet".to_owned()),
                (None, Some(_)) => None,
            },
            expires: until.map(|t| wall.unix_secs(t)),
        }
    }
}

/// What the registration client reads and writes on one input.
pub(crate) struct Ctx<'a> {
    pub(crate) ups: &'a Upstreams,
    pub(crate) local: &'a Local,
    pub(crate) now: Instant,
    pub(crate) rng: &'a mut Random,
    pub(crate) out: &'a mut VecDeque<Action>,
}

/// (Request-URI of the registrar, address of record) at upstream `up`.
fn uris(up: &Upstream, user: &str) -> (String, String) {
    let tparam = uri_param(up.transport);
    (
        format!("sip:{}{tparam}", up.hostport),
        format!("<sip:{user}@{}>", up.hostport),
    )
}

/// Our Contact at the upstream: the account's user at our address, so
/// the carrier's calls to it name the account in the Request-URI.
fn contact(local: &Local, transport: Transport, user: &str) -> String {
    let tparam = uri_param(transport);
    format!("<sip:{user}@{}{tparam}>", local.sent_by(transport))
}

fn transport_of(ups: &Upstreams, i: usize) -> Transport {
    ups.get(i).map_or(Transport::Udp, |u| u.transport)
}

/// The expiry the registrar granted (RFC 3261 §10.2.4): the `expires` of
/// our Contact (`ours`, as we wrote it) in the 2xx, else `Expires`, else
/// what we asked. Other bindings of the account are not ours.
fn granted_expires(resp: &Message, ours: &str, asked: u32) -> u32 {
    let ours = ours.trim_start_matches('<').trim_end_matches('>');
    let from_contacts = resp
        .contacts()
        .filter_map(|c| {
            let c = c.ok()?;
            let a = c.addr()?;
            (a.uri.as_str() == ours).then(|| a.expires()).flatten()
        })
        .min();
    from_contacts
        .or_else(|| resp.expires().ok().flatten())
        .unwrap_or(asked)
}

/// RFC 5626 §4.5: `min(max-time, base-time · 2^failures)` seconds,
/// randomised to between 50 % and 100 % of it.
fn backoff(failures: u32, rng: &mut Random) -> u64 {
    let w = BACKOFF_BASE_S
        .saturating_mul(1u64 << failures.min(16))
        .min(BACKOFF_MAX_S);
    w / 2 + rng.next_u64() % (w / 2 + 1)
}
