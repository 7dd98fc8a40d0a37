//! Answering an upstream's `401`/`407` on the B-leg (RFC 3261 §22.2,
//! §8.1.3.5): a challenged request is sent again ONCE with credentials, as
//! a new client transaction (new branch, CSeq + 1, same Call-ID and From
//! tag). A second challenge to the request that carried credentials, or a
//! challenge we cannot answer, is a failure: never a loop (Kamailio
//! `uac_auth()` is likewise called once per failure route). The challenge
//! itself never reaches the caller.
//!
//! The call state machine (`call.rs`) decides what is retried; this module
//! holds the per-leg bookkeeping and the decision for one response.

use crate::auth::client::{self, ChallengeAnswer, Credentials};
use crate::sip::random::Random;
use crate::sip::{Message, Method};

/// CSeq numbers of in-dialog requests we sent toward the upstream with
/// credentials: a challenge to one of them is a second challenge. Bounded
/// (old entries go first): only requests still in flight matter.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    cseqs: Vec<u32>,
}

const MAX_ANSWERED: usize = 8;

impl Answered {
    /// Remembers that the request with `cseq` carried credentials.
    pub(crate) fn insert(&mut self, cseq: u32) {
        if self.cseqs.len() >= MAX_ANSWERED {
            self.cseqs.remove(0);
        }
        self.cseqs.push(cseq);
    }

    /// Whether `cseq` carried credentials (and forgets it: its final
    /// response is in).
    pub(crate) fn take(&mut self, cseq: u32) -> bool {
        match self.cseqs.iter().position(|&c| c == cseq) {
            Some(i) => {
                self.cseqs.remove(i);
                true
            }
            None => false,
        }
    }
}

/// What to do with a response to a request we sent upstream.
pub(crate) enum Step {
    /// Not a challenge we answer (not 401/407, or no credentials for this
    /// upstream): handle the response as before.
    Pass,
    /// Send the request again with this header.
    Retry(ChallengeAnswer),
    /// The challenge cannot be answered: fail the request.
    Fail,
}

/// Decides for `resp` to our `method` request with Request-URI `uri`;
/// `answered`: the request already carried credentials. Logs failures
/// with `call_id` so an operator sees why the call failed.
pub(crate) fn decide(
    resp: &Message,
    creds: Option<&Credentials>,
    answered: bool,
    method: &Method,
    uri: &str,
    cnonce: &str,
    call_id: &str,
) -> Step {
    let Some(status) = resp.status() else {
        return Step::Pass;
    };
    if !matches!(status.0, 401 | 407) {
        return Step::Pass;
    }
    let Some(creds) = creds else {
        return Step::Pass;
    };
    let cseq = resp.cseq().map_or(0, |c| c.seq);
    if answered {
        tracing::warn!(
            %call_id,
            status = status.0,
            method = method.as_str(),
            cseq,
            user = %creds.auth_username,
            "upstream challenged our credentials again: authentication failed \
             (wrong username/password for this upstream?)"
        );
        return Step::Fail;
    }
    match client::answer(resp, creds, method, uri, cnonce) {
        Ok(a) => {
            tracing::debug!(%call_id, realm = %a.realm, method = method.as_str(), "answering upstream challenge");
            Step::Retry(a)
        }
        Err(e) => {
            tracing::warn!(
                %call_id,
                status = status.0,
                method = method.as_str(),
                "upstream challenge cannot be answered: {e}"
            );
            Step::Fail
        }
    }
}

/// A digest cnonce from the core's seeded generator: 16 hex digits.
pub(crate) fn cnonce(rng: &mut Random) -> String {
    format!("{:016x}", rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_is_bounded_and_forgets() {
        let mut a = Answered::default();
        for c in 0..20 {
            a.insert(c);
        }
        assert!(!a.take(0), "oldest dropped");
        assert!(a.take(19));
        assert!(!a.take(19), "taken once");
        let mut r = Random::from_seed([1; 32]);
        let c = cnonce(&mut r);
        assert_eq!(c.len(), 16);
        assert_ne!(c, cnonce(&mut r));
    }
}
