//! Counters of what the endpoint did with the traffic it saw.
//!
//! Plain integers: the endpoint is owned by one task, so no atomics are
//! needed here; the shell copies them out for `/metrics`.

use std::collections::BTreeMap;

use crate::b2bua::record::Cdr;
use crate::sip::StatusCode;

/// Ended calls per trunk login, by (`placed`/`received`, disposition).
pub type EndedCalls = BTreeMap<String, BTreeMap<(&'static str, &'static str), u64>>;

/// What the endpoint has seen and done since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages handed to [`super::Endpoint::handle`].
    pub received: u64,
    /// Messages that failed to parse.
    pub parse_errors: u64,
    /// Malformed messages dropped because no response could be addressed.
    pub dropped: u64,
    /// Responses matching no client transaction.
    pub unmatched_responses: u64,
    /// Messages the transport could not send.
    pub send_failures: u64,
    /// Final responses we originated, by class: index 0 = 2xx … 4 = 6xx.
    pub answered: [u64; 5],
    /// Requests from SIP scanners dropped unanswered (`[security]`).
    pub scanners_dropped: u64,
    /// New INVITEs answered `503` unprocessed: they queued longer than
    /// `[server] overload_queue_ms`.
    pub overload_refused: u64,
    /// New out-of-dialog requests dropped unanswered: they queued longer
    /// than `[server] overload_drop_ms`.
    pub overload_dropped: u64,
    /// Calls that ended, from their CDRs. Bounded by trunks × 2 × 4.
    pub ended: EndedCalls,
}

impl Stats {
    /// Once per CDR on the core task: allocates only for a trunk's first.
    pub(super) fn count_ended(&mut self, cdr: &Cdr) {
        let key = (cdr.direction.as_str(), cdr.disposition.as_str());
        let by_trunk = match self.ended.get_mut(cdr.sip_trunk.as_str()) {
            Some(m) => m,
            None => self.ended.entry(cdr.sip_trunk.clone()).or_default(),
        };
        *by_trunk.entry(key).or_default() += 1;
    }

    pub(super) fn count_answer(&mut self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).saturating_sub(2);
        if let Some(n) = self.answered.get_mut(class) {
            *n += 1;
        }
    }
}
