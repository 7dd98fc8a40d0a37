//! Which final responses from an upstream move a call to the next hop
//! (`failover_codes`, RFC 3261 §16.7 point 6 "choosing the best response"
//! is the proxy analogue; Kamailio dispatcher's failure route does the same
//! by code). Timeouts and transport errors always fail over and are not
//! listed here.

use crate::config::FailoverCode;
use crate::sip::StatusCode;

/// A set of status codes 400–699, one bit each: copied into every hop, so
/// it is a small `Copy` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverCodes {
    bits: [u64; 5],
}

impl Default for FailoverCodes {
    /// `408` and every `5xx`.
    fn default() -> Self {
        let mut f = FailoverCodes::none();
        f.add(408, 408);
        f.add(500, 599);
        f
    }
}

impl FailoverCodes {
    /// No code fails over (DID hunting decides by itself).
    pub const fn none() -> FailoverCodes {
        FailoverCodes { bits: [0; 5] }
    }

    /// From the config list; invalid entries (refused by validation) are
    /// skipped.
    pub fn from_config(list: &[FailoverCode]) -> FailoverCodes {
        let mut f = FailoverCodes::none();
        for (lo, hi) in list.iter().filter_map(|c| c.range().ok()) {
            f.add(lo, hi);
        }
        f
    }

    fn add(&mut self, lo: u16, hi: u16) {
        for c in lo.max(400)..=hi.min(699) {
            let i = usize::from(c - 400);
            if let Some(w) = self.bits.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
    }

    /// Whether `status` moves the call on.
    pub fn contains(&self, status: StatusCode) -> bool {
        let Some(i) = status.0.checked_sub(400).map(usize::from) else {
            return false;
        };
        self.bits
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_408_and_5xx() {
        let f = FailoverCodes::default();
        for (code, yes) in [(408, true), (500, true), (503, true), (599, true)] {
            assert_eq!(f.contains(StatusCode(code)), yes, "{code}");
        }
        for code in [100, 200, 302, 404, 486, 600, 603, 700] {
            assert!(!f.contains(StatusCode(code)), "{code}");
        }
    }

    #[test]
    fn config_codes_and_classes() {
        let f = FailoverCodes::from_config(&[
            FailoverCode::Code(486),
            FailoverCode::Class("6xx".into()),
            FailoverCode::Class("503".into()),
            FailoverCode::Class("9xx".into()),
        ]);
        assert!(f.contains(StatusCode(486)));
        assert!(f.contains(StatusCode(603)));
        assert!(f.contains(StatusCode(503)));
        assert!(!f.contains(StatusCode(500)));
        assert!(!f.contains(StatusCode(408)));
        assert!(FailoverCode::Code(200).range().is_err());
        assert!(FailoverCode::Class("5xx".into()).range().is_ok());
    }
}
