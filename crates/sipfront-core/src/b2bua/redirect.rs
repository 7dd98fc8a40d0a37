//! Upstream redirects (RFC 3261 §8.1.3.4): the Contacts of a `3xx` to a
//! placed off-net call are further hops of the same call, highest `q`
//! first (§20.10), at most [`MAX_REDIRECTS`] in all, a number already
//! called in this call skipped (loop check, §8.1.3.4 "SHOULD NOT recurse
//! on the same target").
//!
//! What a Contact is taken for: its *number* (the user part, or a `tel:`
//! number), re-routed through our upstreams like a dialled number, as a
//! carrier-facing SBC does (Kamailio's `uac_redirect` feeding the
//! `dispatcher` route again). Its host is never used: sending the caller
//! wherever a carrier's answer points would make us an open relay for
//! anyone who can answer a call, and bypass the trunk's rate and cost
//! limits. Each number is re-checked with the calling trunk's policy
//! (SPEC §3 number, on-net, rate, cost, duration); one the policy would
//! refuse is skipped, never followed. A number of our own (a DID or trunk
//! login) is skipped too: a carrier sending our customer's call back into
//! our network is a loop, and on-net routing is for dialled numbers.
//! The Contact never reaches the caller.

use std::time::Duration;

use super::admission::Admission;
use crate::config::TrunkConfig;
use crate::policy::{self, Decision, Denied, Route};
use crate::routing::{Hop, Upstreams};
use crate::sip::Message;

/// Redirect targets one call may follow (Kamailio's `uac_redirect`
/// `max_contacts` default is larger; five covers real call forwarding
/// chains and bounds a looping carrier).
pub(crate) const MAX_REDIRECTS: usize = 5;

/// Contacts of one `3xx` looked at, at most (bounds the work per response).
const MAX_CONTACTS: usize = 16;

/// What re-routing a redirect reads (a view of the B2BUA's snapshot).
pub(crate) struct Reroute<'a> {
    /// The upstreams, health included.
    pub(crate) upstreams: &'a Upstreams,
    /// Rates and the on-net index.
    pub(crate) admission: &'a Admission,
    /// Drives the weighted upstream order.
    pub(crate) seed: u64,
}

/// Why a Contact's number is not followed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Skip {
    /// Not a number (no digits user part).
    NotANumber,
    /// Already called in this call.
    Loop,
    /// [`MAX_REDIRECTS`] followed already.
    Limit,
    /// One of our DIDs or trunk logins.
    OnNet,
    /// The trunk's policy refuses it.
    Denied(Denied),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::NotANumber => f.write_str("not a number"),
            Skip::Loop => f.write_str("already called in this call (loop)"),
            Skip::Limit => write!(f, "{MAX_REDIRECTS} redirects followed already"),
            Skip::OnNet => f.write_str("a number of our own network"),
            Skip::Denied(d) => write!(f, "trunk policy: {d}"),
        }
    }
}

/// The redirect state of one call.
#[derive(Debug, Default)]
pub(crate) struct Redirects {
    /// Numbers called so far, the dialled one first.
    tried: Vec<String>,
    /// Followed targets: the plan index of their first hop, and their terms.
    targets: Vec<(usize, Decision)>,
}

impl Redirects {
    /// A call that first dials `number`.
    pub(crate) fn new(number: &str) -> Redirects {
        Redirects {
            tried: vec![number.to_owned()],
            targets: Vec::new(),
        }
    }

    /// Checks `number` (from a Contact) for `trunk`; on success it counts
    /// as tried and followed, its hops start at plan index `first_hop`.
    pub(crate) fn follow(
        &mut self,
        trunk: &TrunkConfig,
        number: &str,
        caller_id: &str,
        admission: &Admission,
        first_hop: usize,
    ) -> Result<Decision, Skip> {
        let number = policy::normalize(number).ok_or(Skip::NotANumber)?;
        if self.tried.iter().any(|t| t == number) {
            return Err(Skip::Loop);
        }
        if self.targets.len() >= MAX_REDIRECTS {
            return Err(Skip::Limit);
        }
        let decision = recheck(trunk, number, caller_id, admission)?;
        self.tried.push(number.to_owned());
        self.targets.push((first_hop, decision.clone()));
        Ok(decision)
    }

    /// The first plan hop of the target after the one `hop` belongs to.
    pub(crate) fn next_target(&self, hop: usize) -> Option<usize> {
        self.targets
            .iter()
            .map(|(first, _)| *first)
            .find(|first| *first > hop)
    }

    /// The terms of the redirect target plan hop `hop` belongs to, if any.
    pub(crate) fn terms_of(&self, hop: usize) -> Option<&Decision> {
        self.targets
            .iter()
            .rev()
            .find(|(first, _)| *first <= hop)
            .map(|(_, d)| d)
    }
}

/// SPEC §3 rows that depend on the number, for a number a carrier
/// redirected a call of `trunk` to: digits, not on-net, a rate, the cost
/// limit; the duration limit is recomputed from them. Channels and caller
/// ID stay as admitted (same call, same caller).
fn recheck(
    trunk: &TrunkConfig,
    number: &str,
    caller_id: &str,
    admission: &Admission,
) -> Result<Decision, Skip> {
    let ctx = admission.policy_context();
    if ctx.on_net.lookup(number).is_some() {
        return Err(Skip::OnNet);
    }
    let rate = policy::rate_for(ctx.rates, number).map_err(Skip::Denied)?;
    let cost: Option<Duration> = policy::cost_duration(trunk, rate).map_err(Skip::Denied)?;
    Ok(Decision {
        number: number.to_owned(),
        caller_id: caller_id.to_owned(),
        max_duration: policy::max_duration(trunk, cost),
        route: Route::OffNet(rate.clone()),
    })
}

/// The numbers of a `3xx`'s Contacts, highest `q` first (no `q`: 1.0),
/// in order of appearance among equals; Contacts without a number are
/// left out.
pub(crate) fn contact_numbers(resp: &Message) -> Vec<String> {
    let mut found: Vec<(u16, String)> = resp
        .contacts()
        .take(MAX_CONTACTS)
        .filter_map(Result::ok)
        .filter_map(|c| {
            let a = c.addr()?;
            let user = a.uri.user?;
            Some((a.q().unwrap_or(1000), user.to_owned()))
        })
        .collect();
    found.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    found.into_iter().map(|(_, n)| n).collect()
}

impl Reroute<'_> {
    /// `number` through each upstream in fail-over order, one fork each,
    /// numbered after `last_fork`.
    pub(crate) fn hops(&self, number: &str, last_fork: u32) -> Vec<Hop> {
        let mut fork = last_fork;
        super::plan::upstream_hops(self.upstreams, self.seed, number, &mut fork)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigSource};
    use bytes::Bytes;

    fn redirect(contacts: &[&str]) -> Message {
        let mut t = String::from(
            "SIP/2.0 302 Moved\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=a\r\n\
             To: <sip:b@h>;tag=b\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n",
        );
        for c in contacts {
            t.push_str(&format!("Contact: {c}\r\n"));
        }
        t.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(t)).unwrap()
    }

    #[test]
    fn contacts_are_taken_by_q_then_order() {
        let r = redirect(&[
            "<sip:111@192.0.2.1>;q=0.5",
            "<sip:222@192.0.2.2>, <tel:+333>;q=0.9",
            "<sip:192.0.2.9>",
        ]);
        assert_eq!(contact_numbers(&r), vec!["222", "+333", "111"]);
    }

    fn snapshot() -> (Config, Admission) {
        let text = "[rates]\nfile = \"config/rates.csv\"\n\
                    [[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n\
                    cost_limit = true\nmax_call_cost = 0.012\n\
                    [[did]]\nnumber = \"12565378257\"\n";
        let cfg = Config::parse(text, ConfigSource::Embedded).unwrap();
        let adm = Admission::new(&cfg, [1; 32]);
        (cfg, adm)
    }

    #[test]
    fn follows_within_policy_and_skips_loops_on_net_and_refusals() {
        let (cfg, adm) = snapshot();
        let trunk = &cfg.trunk[0];
        let mut r = Redirects::new("12125551234");
        let d = r.follow(trunk, "+12125550002", "1", &adm, 1).unwrap();
        assert_eq!(d.number, "12125550002");
        // 0.012 USD at 0.012/min (1212): one minute.
        assert_eq!(d.max_duration, Some(Duration::from_secs(60)));
        assert_eq!(
            r.follow(trunk, "12125551234", "1", &adm, 2),
            Err(Skip::Loop)
        );
        assert_eq!(
            r.follow(trunk, "12125550002", "1", &adm, 2),
            Err(Skip::Loop)
        );
        assert_eq!(
            r.follow(trunk, "12565378257", "1", &adm, 2),
            Err(Skip::OnNet)
        );
        assert_eq!(
            r.follow(trunk, "anonymous", "1", &adm, 2),
            Err(Skip::NotANumber)
        );
        assert!(matches!(
            r.follow(trunk, "99912345", "1", &adm, 2),
            Err(Skip::Denied(Denied::NoRate { .. }))
        ));
        // 0.02/min (44) buys under a minute with 0.012.
        assert!(matches!(
            r.follow(trunk, "442071234567", "1", &adm, 2),
            Err(Skip::Denied(Denied::CostLimit { .. }))
        ));
        assert_eq!(r.terms_of(0), None);
        assert_eq!(
            r.terms_of(3).map(|d| d.number.as_str()),
            Some("12125550002")
        );
    }

    #[test]
    fn at_most_five_targets_are_followed() {
        let (cfg, adm) = snapshot();
        let mut r = Redirects::new("12125551234");
        for i in 0..MAX_REDIRECTS {
            let n = format!("1212555000{i}");
            assert!(r.follow(&cfg.trunk[0], &n, "", &adm, i).is_ok());
        }
        assert_eq!(
            r.follow(&cfg.trunk[0], "12125550009", "", &adm, 9),
            Err(Skip::Limit)
        );
    }
}
