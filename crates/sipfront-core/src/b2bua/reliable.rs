//! RFC 3262 reliable provisional responses on the A-leg, and the option
//! tags (`100rel`, `timer`) sipfront negotiates per leg itself.
//!
//! Per leg (what SEMS SBC and FreeSWITCH do): when both sides support
//! `100rel`, an upstream's reliable 18x is relayed reliably with an RSeq of
//! the A-leg's own space and the caller's PRACK is relayed with the RAck
//! mapped back. When only one side does, sipfront terminates reliability
//! on that leg: it PRACKs the upstream's reliable 18x itself, or sends the
//! caller (who requires `100rel`) reliable 18x itself, retransmitted from
//! T1 doubling (§3) until PRACKed or 64·T1. Sans-IO: `now` is an argument.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::session_timer::lists;
use crate::sip::{HeaderName, Message};

/// The option tags sipfront handles per leg and writes itself.
pub(crate) const OUR_TAGS: &[&str] = &["100rel", "timer"];

/// A comma list header's tags, minus the ones we manage per leg.
pub(crate) fn foreign_tags(msg: &Message, name: &HeaderName) -> Vec<String> {
    let mut out = Vec::new();
    for v in msg.headers(name) {
        for t in v.split(|&c| c == b',') {
            let t = String::from_utf8_lossy(t.trim_ascii());
            if !t.is_empty() && !OUR_TAGS.iter().any(|o| o.eq_ignore_ascii_case(&t)) {
                out.push(t.into_owned());
            }
        }
    }
    out
}

/// `Supported` for a message we send that carries `from`'s application
/// headers: our tags, then the other side's other tags, except `replaces`:
/// an INVITE with `Replaces` names a dialog of ours, which sipfront refuses
/// (RFC 3891 §3, `b2bua/replaces.rs`), so it never claims the extension.
pub(crate) fn supported(from: Option<&Message>) -> String {
    let mut tags: Vec<String> = OUR_TAGS.iter().map(|&t| t.to_owned()).collect();
    if let Some(m) = from {
        let theirs = foreign_tags(m, &HeaderName::Supported);
        tags.extend(
            theirs
                .into_iter()
                .filter(|t| !t.eq_ignore_ascii_case("replaces")),
        );
    }
    tags.join(", ")
}

/// A response's `RSeq` when it is reliable (`Require: 100rel`, §7.1).
pub(crate) fn reliable_rseq(resp: &Message) -> Option<u32> {
    if !lists(resp, &HeaderName::Require, "100rel") {
        return None;
    }
    let v = resp.header(&HeaderName::RSeq)?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// A PRACK's `RAck: rseq cseq method` (§7.2).
pub(crate) fn rack(req: &Message) -> Option<(u32, u32)> {
    let v = req.header(&HeaderName::RAck)?;
    let text = std::str::from_utf8(v).ok()?;
    let mut parts = text.split_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let cseq = parts.next()?.parse().ok()?;
    Some((rseq, cseq))
}

/// Upstream reliable provisionals relayed reliably, kept for mapping.
const RELAYED_MAX: usize = 16;

/// One upstream reliable provisional relayed to A.
#[derive(Clone, Debug)]
struct Relayed {
    attempt: usize,
    b_rseq: u32,
    a_rseq: u32,
    /// What A got, resent when the upstream retransmits.
    bytes: Bytes,
}

/// Our own reliable provisional on A, awaiting its PRACK.
#[derive(Clone, Debug)]
pub(crate) struct Own {
    pub(crate) rseq: u32,
    pub(crate) bytes: Bytes,
    /// It carries SDP: no 2xx may overtake it (§3).
    sdp: bool,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

/// What the A-leg PRACK matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PrackFor {
    /// Our own reliable 18x: answer it here.
    Own,
    /// A relayed one: relay the PRACK with RAck `b_rseq`.
    Relayed { attempt: usize, b_rseq: u32 },
    /// Nothing unacknowledged (`481`, §3).
    Unknown,
}

/// The 100rel state of one call.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reliable {
    /// The caller's INVITE listed `100rel` in Supported or Require.
    pub(crate) a_supports: bool,
    /// It listed it in Require: every 18x to it must be reliable.
    pub(crate) a_requires: bool,
    /// The last RSeq written on the A-leg.
    last_rseq: u32,
    relayed: Vec<Relayed>,
    own: Option<Own>,
    /// A provisional waiting for `own`'s PRACK (§3: one at a time); only
    /// the newest is kept.
    pub(crate) queued: Option<Message>,
    /// Upstream RSeqs we PRACKed ourselves: (attempt, highest RSeq).
    pracked: Vec<(usize, u32)>,
    /// The upstream's 2xx (attempt, response) held until `own` is PRACKed.
    pub(crate) held: Option<(usize, Message)>,
    /// The attempt whose provisional was relayed last (the B-leg's early
    /// dialog a relayed PRACK goes to).
    pub(crate) aimed: Option<usize>,
}

impl Reliable {
    /// The state for a call whose A-leg INVITE is `invite`.
    pub(crate) fn new(invite: &Message, seed: u32) -> Reliable {
        let a_requires = lists(invite, &HeaderName::Require, "100rel");
        Reliable {
            a_supports: a_requires || lists(invite, &HeaderName::Supported, "100rel"),
            a_requires,
            // §7.1: the first RSeq is random below 2**31 (leave room to count).
            last_rseq: seed % (1 << 30),
            ..Reliable::default()
        }
    }

    /// The next A-leg RSeq.
    pub(crate) fn next_rseq(&mut self) -> u32 {
        self.last_rseq = self.last_rseq.wrapping_add(1);
        self.last_rseq
    }

    /// What A already got for the upstream's (`attempt`, `b_rseq`), if this
    /// is a retransmission.
    pub(crate) fn relayed_bytes(&self, attempt: usize, b_rseq: u32) -> Option<&Bytes> {
        self.relayed
            .iter()
            .find(|r| r.attempt == attempt && r.b_rseq == b_rseq)
            .map(|r| &r.bytes)
    }

    /// Remembers a relayed reliable provisional.
    pub(crate) fn remember(&mut self, attempt: usize, b_rseq: u32, a_rseq: u32, bytes: Bytes) {
        if self.relayed.len() >= RELAYED_MAX {
            self.relayed.remove(0);
        }
        self.relayed.push(Relayed {
            attempt,
            b_rseq,
            a_rseq,
            bytes,
        });
    }

    /// Whether we must PRACK the upstream's (`attempt`, `rseq`) ourselves
    /// (false for a retransmission of one already PRACKed, §4).
    pub(crate) fn must_prack(&mut self, attempt: usize, rseq: u32) -> bool {
        match self.pracked.iter_mut().find(|(a, _)| *a == attempt) {
            Some((_, last)) if rseq <= *last => false,
            Some((_, last)) => {
                *last = rseq;
                true
            }
            None => {
                if self.pracked.len() >= RELAYED_MAX {
                    self.pracked.remove(0);
                }
                self.pracked.push((attempt, rseq));
                true
            }
        }
    }

    /// Whether our own reliable 18x awaits its PRACK.
    pub(crate) fn own_pending(&self) -> bool {
        self.own.is_some()
    }

    /// Whether a 2xx must wait: our reliable 18x with SDP is unacknowledged
    /// (§3: "it MUST NOT send a final response until those provisional
    /// responses are acknowledged").
    pub(crate) fn blocks_2xx(&self) -> bool {
        self.own.as_ref().is_some_and(|o| o.sdp)
    }

    /// Starts retransmitting our own reliable 18x (§3: T1, doubling).
    pub(crate) fn send_own(
        &mut self,
        rseq: u32,
        bytes: Bytes,
        sdp: bool,
        t1: Duration,
        now: Instant,
    ) {
        self.own = Some(Own {
            rseq,
            bytes,
            sdp,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
    }

    /// What a PRACK with `RAck: rseq` acknowledges; an own match is cleared.
    pub(crate) fn on_prack(&mut self, rseq: u32) -> PrackFor {
        if self.own.as_ref().is_some_and(|o| o.rseq == rseq) {
            self.own = None;
            return PrackFor::Own;
        }
        match self.relayed.iter().find(|r| r.a_rseq == rseq) {
            Some(r) => PrackFor::Relayed {
                attempt: r.attempt,
                b_rseq: r.b_rseq,
            },
            None => PrackFor::Unknown,
        }
    }

    /// The INVITE got its final response: nothing more to retransmit.
    pub(crate) fn finish(&mut self) {
        self.own = None;
        self.queued = None;
        self.held = None;
    }

    /// When [`Reliable::poll`] has work.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.own.as_ref().map(|o| o.next.min(o.give_up))
    }

    /// Bytes to retransmit at `now`, if due. After 64·T1 without PRACK we
    /// stop (§3 lets the UAS give up; the call itself goes on).
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Bytes> {
        let own = self.own.as_mut()?;
        if own.give_up <= now {
            self.own = None;
            return None;
        }
        if own.next > now {
            return None;
        }
        own.interval *= 2;
        own.next = now + own.interval;
        Some(own.bytes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> Message {
        Message::parse(Bytes::from(text.replace('\n', "\r\n"))).expect("parse")
    }

    fn invite(extra: &str) -> Message {
        msg(&format!(
            "INVITE sip:1@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\n\
             To: <sip:b@h>\nCall-ID: c\nCSeq: 1 INVITE\n{extra}Content-Length: 0\n\n"
        ))
    }

    #[test]
    fn reads_what_the_caller_supports() {
        let r = Reliable::new(&invite("Require: 100rel\n"), 7);
        assert!(r.a_supports && r.a_requires);
        let r = Reliable::new(&invite("Supported: timer, 100rel\n"), 7);
        assert!(r.a_supports && !r.a_requires);
        let r = Reliable::new(&invite(""), 7);
        assert!(!r.a_supports);
    }

    #[test]
    fn supported_keeps_foreign_tags_once() {
        let m = invite("Supported: 100rel, replaces, norefersub\nSupported: timer\n");
        assert_eq!(supported(Some(&m)), "100rel, timer, norefersub");
        assert_eq!(supported(None), "100rel, timer");
    }

    #[test]
    fn reliable_only_with_require_and_rseq() {
        let r = msg(
            "SIP/2.0 183 Session Progress\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\n\
             To: <sip:b@h>;tag=2\nCall-ID: c\nCSeq: 1 INVITE\nRequire: 100rel\nRSeq: 42\nContent-Length: 0\n\n",
        );
        assert_eq!(reliable_rseq(&r), Some(42));
        let p = msg(
            "PRACK sip:b@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\nFrom: <sip:a@h>;tag=1\n\
             To: <sip:b@h>;tag=2\nCall-ID: c\nCSeq: 2 PRACK\nRAck: 42 1 INVITE\nContent-Length: 0\n\n",
        );
        assert_eq!(rack(&p), Some((42, 1)));
    }

    #[test]
    fn own_provisional_doubles_from_t1_until_prack() {
        let t0 = Instant::now();
        let t1 = Duration::from_millis(500);
        let mut r = Reliable::new(&invite("Require: 100rel\n"), 0);
        let rseq = r.next_rseq();
        r.send_own(rseq, Bytes::from_static(b"183"), true, t1, t0);
        assert!(r.blocks_2xx());
        assert_eq!(r.next(), Some(t0 + t1));
        assert!(r.poll(t0 + Duration::from_millis(499)).is_none());
        assert!(r.poll(t0 + t1).is_some());
        assert_eq!(r.next(), Some(t0 + t1 * 3));
        assert!(r.poll(t0 + t1 * 3).is_some());
        assert_eq!(r.next(), Some(t0 + t1 * 7));
        assert_eq!(r.on_prack(rseq + 1), PrackFor::Unknown);
        assert_eq!(r.on_prack(rseq), PrackFor::Own);
        assert!(r.next().is_none());
    }

    #[test]
    fn own_provisional_gives_up_at_64_t1() {
        let t0 = Instant::now();
        let t1 = Duration::from_millis(500);
        let mut r = Reliable::default();
        r.send_own(1, Bytes::from_static(b"183"), false, t1, t0);
        assert!(!r.blocks_2xx());
        let mut now = t0;
        let mut sent = 0;
        while let Some(at) = r.next() {
            now = at;
            sent += usize::from(r.poll(now).is_some());
        }
        assert_eq!(now, t0 + t1 * 64);
        assert_eq!(sent, 6); // at 1, 3, 7, 15, 31 and 63·T1
    }

    #[test]
    fn relayed_rseq_maps_back_and_retransmissions_are_recognised() {
        let mut r = Reliable::default();
        let a = r.next_rseq();
        r.remember(0, 9, a, Bytes::from_static(b"x"));
        assert!(r.relayed_bytes(0, 9).is_some());
        assert!(r.relayed_bytes(1, 9).is_none());
        assert_eq!(
            r.on_prack(a),
            PrackFor::Relayed {
                attempt: 0,
                b_rseq: 9
            }
        );
        assert!(r.must_prack(1, 5));
        assert!(!r.must_prack(1, 5));
        assert!(r.must_prack(1, 6));
    }
}
