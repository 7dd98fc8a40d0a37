//! Per-call trunk policy for outbound calls: SPEC §3 rows after
//! identification and digest, as pure functions over a config snapshot.
//!
//! [`decide`] applies, in the contract's order, the first failure answering
//! the A-leg: `ip_restrict` (403), channels (503), rewrite, number (484),
//! on-net (skips rate and cost), rate (404), cost (403), caller ID, duration.
//! Routing among upstreams (the last row) is `routing/`'s job. Nothing here
//! reads a clock, a socket or a counter: the channel count comes in with
//! [`CallFacts`], the rate table and on-net index with [`PolicyContext`].
//! Each row is also a public function so it can be tested and reused alone.

mod emergency;
mod number;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::auth::{ip_allowed, TrunkId};
use crate::config::{DidConfig, Rate, RateTable, TrunkConfig};
use crate::sip::StatusCode;

pub use emergency::{emergency, emergency_number, EMERGENCY};
pub use number::{normalize, rewrite};

/// What the B2BUA knows about the call being placed.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// The dialled number as received (Request-URI user part, or a `tel:`
    /// number), before rewrite.
    pub dialled: &'a str,
    /// The caller's number (From, or P-Asserted-Identity, user part), if any.
    pub caller_user: Option<&'a str>,
    /// The request's source address (transport level, not Via).
    pub source_ip: IpAddr,
    /// Outbound calls of this trunk already up or being set up, not counting
    /// this one (from the session table).
    pub active_channels: u32,
}

/// Where an on-net number goes (SPEC §3 "on-net").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNetTarget {
    /// Another trunk, by its login: reach its registered contacts.
    Trunk(TrunkId),
    /// One of our DIDs (the number is [`Decision::number`]): SPEC §4
    /// destinations apply.
    Did,
}

/// Numbers that stay on our network: DIDs and trunk logins.
#[derive(Debug, Clone, Default)]
pub struct OnNetIndex {
    by_number: HashMap<String, OnNetTarget>,
}

impl OnNetIndex {
    /// Indexes the snapshot's DIDs and the trunks' logins. A DID wins over a
    /// trunk login with the same digits (DIDs are public numbers).
    pub fn new<'a>(
        trunks: impl IntoIterator<Item = &'a TrunkConfig>,
        dids: impl IntoIterator<Item = &'a DidConfig>,
    ) -> OnNetIndex {
        let mut by_number = HashMap::new();
        for d in dids {
            by_number.insert(d.number.clone(), OnNetTarget::Did);
        }
        for t in trunks {
            if !t.login().is_empty() {
                by_number
                    .entry(t.login().to_owned())
                    .or_insert(OnNetTarget::Trunk(TrunkId(t.id())));
            }
        }
        OnNetIndex { by_number }
    }

    /// The on-net target for a normalised number.
    pub fn lookup(&self, number: &str) -> Option<OnNetTarget> {
        self.by_number.get(number).copied()
    }
}

/// The snapshot data [`decide`] consults besides the trunk.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The rate table (`[rates] file`).
    pub rates: &'a RateTable,
    /// DIDs and trunk logins.
    pub on_net: &'a OnNetIndex,
}

/// Where the call goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// To a DID or another trunk; no rate, no cost limit.
    OnNet(OnNetTarget),
    /// To the upstreams, at this rate.
    OffNet(Rate),
}

/// The outcome of an accepted call.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The number to dial: rewritten, digits only.
    pub number: String,
    /// The user part for From and P-Asserted-Identity of the B-leg. Empty
    /// only if the trunk has no `callerid` and the caller's is not usable.
    pub caller_id: String,
    /// End the call (BYE both legs) after this long; `None`: no limit.
    pub max_duration: Option<Duration>,
    /// On-net target or off-net rate.
    pub route: Route,
}

impl Decision {
    /// The rate of an off-net call.
    pub fn rate(&self) -> Option<&Rate> {
        match &self.route {
            Route::OffNet(r) => Some(r),
            Route::OnNet(_) => None,
        }
    }
}

/// Why a call was refused. `Display` is the log line; [`Denied::status`]
/// the SIP answer and [`Denied::reason_phrase`] its reason phrase.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// `ip_restrict` and the source is not in `allowed_ips`.
    #[error("source {addr} not in the trunk's allowed_ips (ip_restrict)")]
    IpNotAllowed {
        /// The request's source address.
        addr: IpAddr,
    },
    /// `channels_restrict` and `active >= max_channels`.
    #[error("channel limit reached: {active} active, max_channels {max}")]
    ChannelLimit {
        /// Calls already active.
        active: u32,
        /// The trunk's `max_channels`.
        max: u32,
    },
    /// After rewrite the number is empty or not digits.
    #[error("dialled number `{number}` is not digits after rewrite")]
    BadNumber {
        /// The number after rewrite.
        number: String,
    },
    /// No rate prefix matches.
    #[error("no rate for `{number}`")]
    NoRate {
        /// The normalised number.
        number: String,
    },
    /// `cost_limit`: `max_call_cost` buys less than one minute.
    #[error(
        "max_call_cost {max_call_cost} USD buys under one minute at {per_minute} USD/min (prefix {prefix})"
    )]
    CostLimit {
        /// The trunk's `max_call_cost`.
        max_call_cost: f64,
        /// The matched rate.
        per_minute: f64,
        /// The matched prefix.
        prefix: String,
    },
}

impl Denied {
    /// The SIP status answering the A-leg (SPEC §3 table).
    pub fn status(&self) -> StatusCode {
        match self {
            Denied::IpNotAllowed { .. } | Denied::CostLimit { .. } => StatusCode::FORBIDDEN,
            Denied::ChannelLimit { .. } => StatusCode(503),
            Denied::BadNumber { .. } => StatusCode(484),
            Denied::NoRate { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The reason phrase: the canonical one, except 503 names the limit
    /// (SPEC §3 "reason names the limit").
    pub fn reason_phrase(&self) -> Cow<'static, str> {
        match self {
            Denied::ChannelLimit { max, .. } => {
                Cow::Owned(format!("Channel Limit Reached (max_channels {max})"))
            }
            Denied::IpNotAllowed { .. } => Cow::Borrowed("Forbidden (IP Not Allowed)"),
            Denied::CostLimit { .. } => Cow::Borrowed("Forbidden (Cost Limit)"),
            Denied::BadNumber { .. } => Cow::Borrowed("Address Incomplete"),
            Denied::NoRate { .. } => Cow::Borrowed("Not Found (No Rate)"),
        }
    }
}

/// SPEC §3 "ip_restrict".
///
/// # Errors
/// [`Denied::IpNotAllowed`].
pub fn check_ip(trunk: &TrunkConfig, source: IpAddr) -> Result<(), Denied> {
    if ip_allowed(trunk, source) {
        Ok(())
    } else {
        Err(Denied::IpNotAllowed { addr: source })
    }
}

/// SPEC §3 "channels": the most concurrent outbound calls of `trunk`,
/// `max_channels` under `channels_restrict`, else no limit.
pub fn channel_limit(trunk: &TrunkConfig) -> Option<u32> {
    trunk.channels_restrict.then_some(trunk.max_channels)
}

/// SPEC §3 "channels": with `channels_restrict`, `active` must be below
/// `max_channels`.
///
/// # Errors
/// [`Denied::ChannelLimit`].
pub fn check_channels(trunk: &TrunkConfig, active: u32) -> Result<(), Denied> {
    if channel_limit(trunk).is_some_and(|max| active >= max) {
        Err(Denied::ChannelLimit {
            active,
            max: trunk.max_channels,
        })
    } else {
        Ok(())
    }
}

/// SPEC §3 "rewrite" then "number": strips a leading `+`, applies
/// `rewrite_cond`/`rewrite_prefix` when `rewrite_enabled`, and requires
/// digits. Stripping `+` first lets `rewrite_cond` match `+44…` and `44…`
/// alike; it changes no answer since rewrite cannot fail.
///
/// # Errors
/// [`Denied::BadNumber`] (484).
pub fn dialled_number(trunk: &TrunkConfig, dialled: &str) -> Result<String, Denied> {
    let plain = dialled.strip_prefix('+').unwrap_or(dialled);
    let rewritten = if trunk.rewrite_enabled {
        rewrite(plain, &trunk.rewrite_cond, &trunk.rewrite_prefix)
    } else {
        plain.to_owned()
    };
    if !rewritten.is_empty() && rewritten.bytes().all(|b| b.is_ascii_digit()) {
        Ok(rewritten)
    } else {
        Err(Denied::BadNumber { number: rewritten })
    }
}

/// SPEC §3 "rate": the longest-prefix rate.
///
/// # Errors
/// [`Denied::NoRate`] (404).
pub fn rate_for<'r>(rates: &'r RateTable, number: &str) -> Result<&'r Rate, Denied> {
    rates.lookup(number).ok_or_else(|| Denied::NoRate {
        number: number.to_owned(),
    })
}

/// SPEC §3 "cost": with `cost_limit` and a non-free rate, the call may last
/// `max_call_cost / per_minute` minutes, rounded down to whole seconds.
/// Returns that limit, or `None` when cost does not limit the call
/// (`cost_limit` off, or `per_minute` 0).
///
/// # Errors
/// [`Denied::CostLimit`] (403) when that is under one minute. A quotient
/// within 1e-9 of one minute counts as one minute (binary floating point:
/// `0.18 / 0.18` must allow the call).
pub fn cost_duration(trunk: &TrunkConfig, rate: &Rate) -> Result<Option<Duration>, Denied> {
    if !trunk.cost_limit || rate.per_minute <= 0.0 {
        return Ok(None);
    }
    let minutes = trunk.max_call_cost / rate.per_minute;
    if minutes.is_nan() || minutes < 1.0 - 1e-9 {
        return Err(Denied::CostLimit {
            max_call_cost: trunk.max_call_cost,
            per_minute: rate.per_minute,
            prefix: rate.prefix.clone(),
        });
    }
    // Seconds, rounded down but forgiving float error just below a whole second.
    let secs = (minutes * 60.0 + 1e-6).floor().max(60.0);
    // Saturates: `as` on a huge finite f64 gives u64::MAX.
    Ok(Some(Duration::from_secs(secs as u64)))
}

/// SPEC §3 "caller ID": `passthrough` keeps the caller's number when it is
/// digits (a leading `+` is stripped); otherwise, or when that is not
/// usable, the trunk's `callerid` (leading `+` stripped too).
pub fn caller_id(trunk: &TrunkConfig, caller_user: Option<&str>) -> String {
    if trunk.passthrough {
        if let Some(n) = caller_user.and_then(normalize) {
            return n.to_owned();
        }
    }
    let c = trunk.callerid.trim();
    c.strip_prefix('+').unwrap_or(c).to_owned()
}

/// SPEC §3 "duration": the smaller of `call_limit` (when `call_restrict`)
/// and the cost-derived limit; `None` when neither applies.
pub fn max_duration(trunk: &TrunkConfig, cost_limit: Option<Duration>) -> Option<Duration> {
    let call = trunk
        .call_restrict
        .then(|| Duration::from_secs(trunk.call_limit));
    match (call, cost_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Applies the SPEC §3 rows after identification and digest, in order, to
/// an outbound call of `trunk`.
///
/// # Errors
/// The first row that fails, as [`Denied`]; `status()` answers the A-leg.
pub fn decide(
    trunk: &TrunkConfig,
    call: &CallFacts<'_>,
    ctx: &PolicyContext<'_>,
) -> Result<Decision, Denied> {
    check_ip(trunk, call.source_ip)?;
    check_channels(trunk, call.active_channels)?;
    let number = dialled_number(trunk, call.dialled)?;
    let (route, cost_limit) = match ctx.on_net.lookup(&number) {
        Some(OnNetTarget::Trunk(id)) if id == TrunkId(trunk.id()) => off_net(trunk, &number, ctx)?,
        Some(target) => (Route::OnNet(target), None),
        None => off_net(trunk, &number, ctx)?,
    };
    Ok(Decision {
        caller_id: caller_id(trunk, call.caller_user),
        max_duration: max_duration(trunk, cost_limit),
        number,
        route,
    })
}

/// The rate and cost rows of an off-net call.
fn off_net(
    trunk: &TrunkConfig,
    number: &str,
    ctx: &PolicyContext<'_>,
) -> Result<(Route, Option<Duration>), Denied> {
    let rate = rate_for(ctx.rates, number)?;
    let limit = cost_duration(trunk, rate)?;
    Ok((Route::OffNet(rate.clone()), limit))
}
