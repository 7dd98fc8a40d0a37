//! Emergency numbers (`[server] emergency_numbers`, e.g. 911, 112, 999,
//! 933): a trunk's caller reaches them whatever its limits. Only the rows
//! that say *who* calls still apply (identification, digest and
//! `ip_restrict`); channels, rate, cost and duration never refuse or cut
//! such a call (what carriers' SBCs do for E911/E112: emergency routing
//! comes before any commercial policy), and the call always goes to the
//! upstreams. The caller-ID row applies: the callback number matters most.

use super::{caller_id, check_ip, dialled_number, CallFacts, Decision, Denied, Route};
use crate::config::{Rate, TrunkConfig};

/// CDR destination name of an emergency call.
pub const EMERGENCY: &str = "Emergency";

/// The emergency number `dialled` is, as dialled (a leading `+` ignored)
/// or after the trunk's rewrite (a PBX dialling `9911` with
/// `rewrite_cond = "9"`), if it is one of `numbers`.
pub fn emergency_number<'n>(
    trunk: &TrunkConfig,
    dialled: &str,
    numbers: &'n [String],
) -> Option<&'n str> {
    let plain = dialled.strip_prefix('+').unwrap_or(dialled);
    let rewritten = dialled_number(trunk, dialled).ok();
    numbers
        .iter()
        .find(|n| *n == plain || rewritten.as_deref() == Some(n.as_str()))
        .map(String::as_str)
}

/// The terms of a call to emergency number `number`: off-net at no
/// charge, no duration limit, the trunk's caller-ID rule.
///
/// # Errors
/// [`Denied::IpNotAllowed`] (`ip_restrict`), the only row that applies.
pub fn emergency(
    trunk: &TrunkConfig,
    call: &CallFacts<'_>,
    number: &str,
) -> Result<Decision, Denied> {
    check_ip(trunk, call.source_ip)?;
    Ok(Decision {
        number: number.to_owned(),
        caller_id: caller_id(trunk, call.caller_user),
        max_duration: None,
        route: Route::OffNet(Rate {
            prefix: number.to_owned(),
            per_minute: 0.0,
            name: EMERGENCY.to_owned(),
        }),
    })
}
