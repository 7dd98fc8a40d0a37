//! RFC 4028 session timers, one per leg, and the dead-call reaper.
//!
//! Each leg negotiates its own interval and refresher (§7 as UAC, §9 as
//! UAS): the legs are separate dialogs, so one side's `Session-Expires`
//! never reaches the other. A leg is in one of three roles:
//! * [`Role::Us`]: we are the refresher; we refresh at half the interval
//!   (§10), UPDATE without SDP when the peer allows UPDATE, else re-INVITE
//!   with the last SDP we sent on that leg.
//! * [`Role::Peer`]: the peer refreshes; if no refresh arrives we end the
//!   call at the interval minus min(32 s, interval/3) (§10).
//! * [`Role::Reaper`]: the peer does not support timers: we still probe it
//!   every `session_expires_s` the same way (what Kamailio's `dialog` keep-
//!   alives and SEMS SBC do); `408`/`481` or silence ends the call.
//!
//! A refresh resets only its own leg's timer; a relayed re-INVITE/UPDATE
//! that succeeds refreshes both legs (each with its own values).
//! Sans-IO: every method takes `now`.

use std::time::{Duration, Instant};

use crate::sip::{HeaderName, Message};

/// `[server] session_expires_s` / `min_se_s` as the core uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The interval we ask for and the reaper's period; zero disables our
    /// own timers (a peer's `Session-Expires` is still honoured).
    pub expires: Duration,
    /// The smallest interval we accept (`422` below it, §8).
    pub min_se: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        }
    }
}

impl SessionConfig {
    fn enabled(&self) -> bool {
        !self.expires.is_zero()
    }

    fn min_se_secs(&self) -> u64 {
        self.min_se.as_secs().max(1)
    }
}

/// The `refresher` parameter of `Session-Expires` (§4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refresher {
    Uac,
    Uas,
}

/// A parsed `Session-Expires: delta;refresher=x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionExpires {
    pub(crate) secs: u64,
    pub(crate) refresher: Option<Refresher>,
}

/// Parses a `Session-Expires` value; `None` when malformed.
pub(crate) fn parse_session_expires(v: &[u8]) -> Option<SessionExpires> {
    let text = std::str::from_utf8(v).ok()?;
    let mut parts = text.split(';');
    let secs = parts.next()?.trim().parse::<u64>().ok()?;
    let mut refresher = None;
    for p in parts {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("refresher") {
            refresher = match val.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            };
        }
    }
    Some(SessionExpires { secs, refresher })
}

/// The message's `Session-Expires`, if present and well-formed.
pub(crate) fn session_expires(msg: &Message) -> Option<SessionExpires> {
    msg.header(&HeaderName::SessionExpires)
        .and_then(parse_session_expires)
}

/// The message's `Min-SE` (§5), if present and numeric.
pub(crate) fn min_se(msg: &Message) -> Option<u64> {
    let v = msg.header(&HeaderName::MinSe)?;
    let text = std::str::from_utf8(v).ok()?;
    text.split(';').next()?.trim().parse().ok()
}

/// Whether a comma list header (`Supported`, `Require`, `Allow`) names `tag`.
pub(crate) fn lists(msg: &Message, name: &HeaderName, tag: &str) -> bool {
    msg.headers(name).any(|v| {
        v.split(|&c| c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(tag.as_bytes()))
    })
}

/// Whether the peer that sent `msg` supports session timers.
fn supports_timer(msg: &Message) -> bool {
    lists(msg, &HeaderName::Supported, "timer") || lists(msg, &HeaderName::Require, "timer")
}

/// §8: the `Min-SE` to answer `422` with, when a request's
/// `Session-Expires` is below our minimum.
pub(crate) fn too_small(req: &Message, cfg: &SessionConfig) -> Option<u64> {
    let se = session_expires(req)?;
    let min = cfg.min_se_secs().max(min_se(req).unwrap_or(0));
    (se.secs < cfg.min_se_secs()).then_some(min)
}

/// Who keeps a leg's session alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// We refresh at interval/2.
    Us,
    /// The peer refreshes; we watch for expiry.
    Peer,
    /// No timer negotiated: we probe every interval (dead-call reaper).
    Reaper,
}

/// The outcome of one negotiation on a leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) interval: Duration,
    pub(crate) role: Role,
    /// The refresher as written in this transaction's response.
    refresher: Refresher,
    /// Whether `Session-Expires` goes in our response (the peer knows timers).
    announce: bool,
}

impl Negotiated {
    /// Headers for our 2xx when we are the UAS of the negotiating request.
    pub(crate) fn response_headers(&self) -> Vec<(&'static str, String)> {
        if !self.announce {
            return Vec::new();
        }
        let r = match self.refresher {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        };
        vec![
            (
                "Session-Expires",
                format!("{};refresher={r}", self.interval.as_secs()),
            ),
            ("Require", "timer".to_owned()),
        ]
    }
}

/// §9: we answer `req` (initial INVITE or a refresh) as its UAS.
pub(crate) fn as_uas(req: &Message, cfg: &SessionConfig) -> Option<Negotiated> {
    let peer_timer = supports_timer(req);
    let (secs, refresher) = match session_expires(req) {
        Some(se) => {
            let floor = cfg.min_se_secs().max(min_se(req).unwrap_or(0));
            // §9: the UAS may shorten the interval, never below Min-SE.
            let secs = if cfg.enabled() {
                se.secs.min(cfg.expires.as_secs().max(floor))
            } else {
                se.secs
            };
            let who = se.refresher.unwrap_or(if peer_timer {
                Refresher::Uac
            } else {
                Refresher::Uas
            });
            (secs.max(1), who)
        }
        None if !cfg.enabled() => return None,
        // §9: the UAC supports timers but asked for none: we choose, and
        // let it refresh (what FreeSWITCH does by default).
        None if peer_timer => (cfg.expires.as_secs().max(1), Refresher::Uac),
        None => {
            return Some(Negotiated {
                interval: cfg.expires,
                role: Role::Reaper,
                refresher: Refresher::Uas,
                announce: false,
            })
        }
    };
    let role = match refresher {
        Refresher::Uac => Role::Peer,
        Refresher::Uas => Role::Us,
    };
    Some(Negotiated {
        interval: Duration::from_secs(secs),
        role,
        refresher,
        announce: true,
    })
}

/// §7.2: the 2xx `resp` to a request we sent as UAC on a leg.
pub(crate) fn as_uac(resp: &Message, cfg: &SessionConfig) -> Option<Negotiated> {
    match session_expires(resp) {
        Some(se) => {
            // §7.2: a missing refresher parameter makes the UAC refresh.
            let refresher = se.refresher.unwrap_or(Refresher::Uac);
            Some(Negotiated {
                interval: Duration::from_secs(se.secs.max(1)),
                role: match refresher {
                    Refresher::Uac => Role::Us,
                    Refresher::Uas => Role::Peer,
                },
                refresher,
                announce: true,
            })
        }
        None if cfg.enabled() => Some(Negotiated {
            interval: cfg.expires,
            role: Role::Reaper,
            refresher: Refresher::Uac,
            announce: false,
        }),
        None => None,
    }
}

/// What a leg's timer asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a refresh on this leg now.
    Refresh,
    /// The session expired on this leg: end the call.
    Expired,
}

/// The session timer of one leg.
#[derive(Clone, Debug, Default)]
pub(crate) struct LegTimer {
    state: Option<Negotiated>,
    /// When `poll` has work.
    due: Option<Instant>,
    /// Our refresh is in flight (its answer, or expiry, comes next).
    in_flight: bool,
    /// Where we refresh: when the session is over without a successful
    /// refresh (retries never push past it).
    expires: Option<Instant>,
    /// The peer listed UPDATE in `Allow` (RFC 3311): refresh with it.
    pub(crate) update: bool,
}

impl LegTimer {
    /// Starts or resets the timer after a successful negotiation.
    pub(crate) fn refreshed(&mut self, n: Option<Negotiated>, now: Instant) {
        self.in_flight = false;
        self.state = n;
        self.due = n.map(|n| now + Self::wait(n));
        self.expires = n.map(|n| now + Self::wait(n) + Self::grace(n));
    }

    /// How long our refresh may take before the session counts as over.
    fn grace(n: Negotiated) -> Duration {
        n.interval - Self::wait(n).min(n.interval / 2)
    }

    fn wait(n: Negotiated) -> Duration {
        match n.role {
            Role::Us => n.interval / 2,
            // §10: BYE before expiry by min(32 s, interval/3).
            Role::Peer => n.interval - (n.interval / 3).min(Duration::from_secs(32)),
            Role::Reaper => n.interval,
        }
    }

    /// When `poll` next has work.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due
    }

    /// Fires the timer if due at `now`. A refresh we send must be answered
    /// before the session would expire, else [`Due::Expired`].
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Due> {
        let (n, due) = (self.state?, self.due?);
        if due > now {
            return None;
        }
        if self.in_flight || n.role == Role::Peer {
            self.due = None;
            return Some(Due::Expired);
        }
        self.in_flight = true;
        // The answer must come before the session ends (a late, postponed
        // refresh does not move that end).
        let end = self
            .expires
            .map_or(now + Self::grace(n), |e| e.min(now + Self::grace(n)));
        self.due = Some(end);
        self.expires = Some(end);
        Some(Due::Refresh)
    }

    /// Schedules the next try at `at`, unless the session is over first.
    fn retry_at(&mut self, at: Instant) {
        match self.expires {
            Some(end) if end <= at => {
                self.in_flight = true;
                self.due = Some(end);
            }
            _ => {
                self.in_flight = false;
                self.due = Some(at);
            }
        }
    }

    /// Our refresh could not be sent now (another INVITE is in progress,
    /// §10 glare): try again shortly, keeping the expiry.
    pub(crate) fn postpone(&mut self, now: Instant, by: Duration) {
        self.retry_at(now + by);
    }

    /// Our refresh got another error (e.g. `491`, `488`): tried again
    /// within 1–10 s; without a success by the session's end it is over.
    pub(crate) fn retry_later(&mut self, now: Instant) {
        if let Some(n) = self.state {
            let wait = Self::wait(n)
                .min(Duration::from_secs(10))
                .max(Duration::from_secs(1));
            self.retry_at(now + wait);
        }
    }

    /// Headers for a refresh or a relayed re-INVITE/UPDATE we send as UAC on
    /// this leg (§7.1): the current interval with the refresher kept as
    /// negotiated, and our `Min-SE`.
    pub(crate) fn request_headers(&self, cfg: &SessionConfig) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self.state {
            Some(n) if n.role != Role::Reaper => {
                let r = if n.role == Role::Us { "uac" } else { "uas" };
                out.push((
                    "Session-Expires",
                    format!("{};refresher={r}", n.interval.as_secs()),
                ));
                out.push(("Min-SE", cfg.min_se_secs().to_string()));
            }
            _ => {}
        }
        out
    }
}

/// Headers of an initial INVITE we send as UAC (§7.1); `floor` is the
/// `Min-SE` of a `422` the upstream answered an earlier try with (§7.4).
pub(crate) fn invite_headers(
    cfg: &SessionConfig,
    floor: Option<u64>,
) -> Vec<(&'static str, String)> {
    if !cfg.enabled() {
        return Vec::new();
    }
    let min = cfg.min_se_secs().max(floor.unwrap_or(0));
    let se = cfg.expires.as_secs().max(min);
    vec![
        ("Session-Expires", se.to_string()),
        ("Min-SE", min.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(extra: &str) -> Message {
        let text = format!(
            "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).expect("parse")
    }

    fn resp(extra: &str) -> Message {
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).expect("parse")
    }

    fn cfg(expires: u64, min: u64) -> SessionConfig {
        SessionConfig {
            expires: Duration::from_secs(expires),
            min_se: Duration::from_secs(min),
        }
    }

    #[test]
    fn parses_session_expires_and_compact_form() {
        let se = parse_session_expires(b"1800;refresher=uas").expect("se");
        assert_eq!((se.secs, se.refresher), (1800, Some(Refresher::Uas)));
        assert_eq!(parse_session_expires(b" 90 ").map(|s| s.secs), Some(90));
        assert!(parse_session_expires(b"soon").is_none());
        let m = req("x: 120;refresher=uac\r\n");
        assert_eq!(session_expires(&m).map(|s| s.secs), Some(120));
    }

    #[test]
    fn below_min_se_gets_422_with_our_minimum() {
        let c = cfg(1800, 90);
        assert_eq!(too_small(&req("Session-Expires: 1\r\n"), &c), Some(90));
        assert_eq!(
            too_small(&req("Session-Expires: 60\r\nMin-SE: 120\r\n"), &c),
            Some(120)
        );
        assert_eq!(too_small(&req("Session-Expires: 90\r\n"), &c), None);
        assert_eq!(too_small(&req(""), &c), None);
    }

    #[test]
    fn uas_shortens_to_our_interval_and_keeps_the_callers_refresher() {
        let c = cfg(600, 90);
        let n = as_uas(
            &req("Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n"),
            &c,
        )
        .expect("timer");
        assert_eq!((n.interval.as_secs(), n.role), (600, Role::Peer));
        let h = n.response_headers();
        assert_eq!(h[0].1, "600;refresher=uac");
        assert_eq!(h[1], ("Require", "timer".to_owned()));
        let n = as_uas(&req("Session-Expires: 300;refresher=uas\r\n"), &c).expect("timer");
        assert_eq!((n.interval.as_secs(), n.role), (300, Role::Us));
    }

    #[test]
    fn uas_without_timer_support_is_reaped_silently() {
        let n = as_uas(&req(""), &cfg(1800, 90)).expect("reaper");
        assert_eq!(n.role, Role::Reaper);
        assert!(n.response_headers().is_empty());
        assert!(as_uas(&req(""), &cfg(0, 90)).is_none());
        // Disabled, but the peer asks: honoured.
        let n = as_uas(&req("Session-Expires: 120\r\n"), &cfg(0, 90)).expect("honoured");
        assert_eq!(n.interval.as_secs(), 120);
    }

    #[test]
    fn uac_role_follows_the_2xx() {
        let c = cfg(1800, 90);
        let n = as_uac(&resp("Session-Expires: 900;refresher=uac\r\n"), &c).expect("n");
        assert_eq!((n.role, n.interval.as_secs()), (Role::Us, 900));
        let n = as_uac(&resp("Session-Expires: 900;refresher=uas\r\n"), &c).expect("n");
        assert_eq!(n.role, Role::Peer);
        let n = as_uac(&resp(""), &c).expect("n");
        assert_eq!((n.role, n.interval.as_secs()), (Role::Reaper, 1800));
        assert!(as_uac(&resp(""), &cfg(0, 90)).is_none());
    }

    fn neg(secs: u64, role: Role) -> Option<Negotiated> {
        Some(Negotiated {
            interval: Duration::from_secs(secs),
            role,
            refresher: Refresher::Uac,
            announce: true,
        })
    }

    #[test]
    fn we_refresh_at_half_and_expire_if_unanswered() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(1800, Role::Us), t0);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(900)));
        assert_eq!(t.poll(t0 + Duration::from_secs(899)), None);
        assert_eq!(t.poll(t0 + Duration::from_secs(900)), Some(Due::Refresh));
        // Unanswered: the session ends when it would have expired.
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1800)));
        assert_eq!(t.poll(t0 + Duration::from_secs(1800)), Some(Due::Expired));
        assert_eq!(t.next(), None);
    }

    #[test]
    fn answered_refresh_starts_a_new_interval() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(1800, Role::Us), t0);
        let t1 = t0 + Duration::from_secs(900);
        assert_eq!(t.poll(t1), Some(Due::Refresh));
        t.refreshed(neg(1800, Role::Us), t1 + Duration::from_millis(20));
        assert_eq!(
            t.next(),
            Some(t1 + Duration::from_millis(20) + Duration::from_secs(900))
        );
    }

    #[test]
    fn peer_refresher_expires_at_interval_minus_a_third_capped_at_32s() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(1800, Role::Peer), t0);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1768)));
        t.refreshed(neg(6, Role::Peer), t0);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(4)));
        assert_eq!(t.poll(t0 + Duration::from_secs(4)), Some(Due::Expired));
    }

    #[test]
    fn a_new_session_expires_resets_that_legs_timer() {
        // The drachtio/OpenSIPS bug: a re-INVITE's new interval must replace
        // the old one, not be ignored.
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(1800, Role::Peer), t0);
        let t1 = t0 + Duration::from_secs(1000);
        t.refreshed(neg(120, Role::Peer), t1);
        assert_eq!(t.next(), Some(t1 + Duration::from_secs(88)));
        assert_eq!(t.poll(t1 + Duration::from_secs(87)), None);
        assert_eq!(t.poll(t1 + Duration::from_secs(88)), Some(Due::Expired));
    }

    #[test]
    fn reaper_probes_every_interval() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(1800, Role::Reaper), t0);
        assert_eq!(t.poll(t0 + Duration::from_secs(1800)), Some(Due::Refresh));
        assert!(t.request_headers(&cfg(1800, 90)).is_empty());
        // No answer within half an interval more: dead.
        assert_eq!(t.poll(t0 + Duration::from_secs(3600)), Some(Due::Expired));
    }

    #[test]
    fn refused_refreshes_are_retried_until_the_session_ends() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(40, Role::Us), t0);
        let mut now = t0 + Duration::from_secs(20);
        assert_eq!(t.poll(now), Some(Due::Refresh));
        let mut refreshes = 1;
        loop {
            t.retry_later(now); // e.g. 500 every time
            now = t.next().expect("scheduled");
            match t.poll(now) {
                Some(Due::Refresh) => refreshes += 1,
                Some(Due::Expired) => break,
                None => panic!("due at {now:?}"),
            }
        }
        assert_eq!(now, t0 + Duration::from_secs(40), "ends with the session");
        assert!(refreshes >= 2);
    }

    #[test]
    fn glare_postpones_without_losing_the_session() {
        let t0 = Instant::now();
        let mut t = LegTimer::default();
        t.refreshed(neg(100, Role::Us), t0);
        assert_eq!(t.poll(t0 + Duration::from_secs(50)), Some(Due::Refresh));
        t.postpone(t0 + Duration::from_secs(50), Duration::from_secs(2));
        assert_eq!(t.poll(t0 + Duration::from_secs(52)), Some(Due::Refresh));
    }
}
