//! DNS answers for named upstreams over time (RFC 3263 §4, RFC 2782),
//! sans-IO: the shell does the lookups, this decides *what* to look up and
//! *when*, and what the core sees.
//!
//! * RFC 3263 §4.1: no port and no `transport=`: NAPTR, keeping `SIP+D2U`
//!   and `SIP+D2T` (the transports sipfront has) in order/preference; no
//!   usable NAPTR: SRV `_sip._udp` then `_sip._tcp`; no SRV: A/AAAA on
//!   5060 over UDP. An explicit `transport=` skips NAPTR; an explicit port
//!   skips NAPTR and SRV (§4.2).
//! * TTLs are honoured: an answer is used until the earliest expiry in its
//!   chain, then looked up again (at least [`MIN_REFRESH`] apart, so a TTL
//!   of 0 cannot turn into a query storm).
//! * A failed lookup keeps the last good answer until its expiry plus
//!   [`STALE_GRACE`] (RFC 8767 "serve stale"), retried with back-off, and
//!   is reported once, not on every retry.

use std::time::{Duration, Instant};

use super::{Resolve, Target};
use crate::sip::Transport;

/// How long a last good answer outlives its TTL while lookups fail.
/// RFC 8767 §5 suggests 1–3 days for web clients; a SIP carrier moves
/// traffic by DNS more often, and every stale target still has health and
/// fail-over behind it, so one hour keeps calls flowing through a resolver
/// outage without pinning a renumbered carrier for days.
pub const STALE_GRACE: Duration = Duration::from_secs(3600);
/// The shortest interval between two lookups of one name.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Retry back-off after a failed lookup: 2 s doubling up to this.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// Past an expiry, so that the resolver's own cache has let the record go.
const EXPIRY_SLACK: Duration = Duration::from_millis(200);

/// One way to reach a name: a transport and the SRV owner name to query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvQuery {
    /// Transport of the targets it yields.
    pub transport: Transport,
    /// e.g. `_sip._udp.carrier.example`.
    pub name: String,
}

/// A NAPTR record as the resolver returned it (RFC 3403).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naptr {
    /// Lower first.
    pub order: u16,
    /// Lower first among equal orders.
    pub preference: u16,
    /// `S` for a terminal SRV record.
    pub flags: String,
    /// `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, ...
    pub services: String,
    /// The SRV owner name.
    pub replacement: String,
}

/// The transport a NAPTR service field stands for, if sipfront has it.
fn naptr_transport(services: &str) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None, // SIP+D2S (SCTP), WS...: not supported
    }
}

/// RFC 3263 §4.1: the SRV queries a NAPTR answer points at, best first.
/// `SIPS+D2T` (TLS) only when TLS is asked for (a `sips:` URI or
/// `transport=tls`): a plain `sip:` upstream keeps to UDP and TCP.
pub fn srv_from_naptr(records: &[Naptr], explicit: Option<Transport>) -> Vec<SrvQuery> {
    let wanted = |t: Transport| match explicit {
        Some(e) => e == t,
        None => t != Transport::Tls,
    };
    let mut usable: Vec<&Naptr> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter(|r| naptr_transport(&r.services).is_some_and(wanted))
        .collect();
    usable.sort_by_key(|r| (r.order, r.preference));
    usable
        .into_iter()
        .filter_map(|r| {
            Some(SrvQuery {
                transport: naptr_transport(&r.services)?,
                name: r.replacement.trim_end_matches('.').to_owned(),
            })
        })
        .collect()
}

/// RFC 3263 §4.1 without NAPTR: `_sip._udp` then `_sip._tcp` (or just the
/// explicit transport's; TLS is `_sips._tcp`, asked for only explicitly:
/// a `sips:` URI or `transport=tls`).
pub fn srv_fallback(host: &str, explicit: Option<Transport>) -> Vec<SrvQuery> {
    let name = |t: Transport| match t {
        Transport::Tls => format!("_sips._tcp.{host}"),
        t => format!("_sip._{}.{host}", t.as_lowercase()),
    };
    match explicit {
        Some(t) => vec![SrvQuery {
            transport: t,
            name: name(t),
        }],
        None => [Transport::Udp, Transport::Tcp]
            .into_iter()
            .map(|t| SrvQuery {
                transport: t,
                name: name(t),
            })
            .collect(),
    }
}

/// What the lookups of one [`Resolve`] start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstStep {
    /// An explicit port: A/AAAA of the host only (RFC 3263 §4.2).
    Address(u16, Transport),
    /// An explicit transport: SRV for it, then A/AAAA on 5060.
    Srv(Transport),
    /// Neither: NAPTR, SRV, then A/AAAA on 5060 over UDP.
    Naptr,
}

/// Where the RFC 3263 procedure starts for `r`.
pub fn first_step(r: &Resolve) -> FirstStep {
    match (r.port, r.transport) {
        (Some(p), t) => FirstStep::Address(p, t.unwrap_or(Transport::Udp)),
        (None, Some(t)) => FirstStep::Srv(t),
        (None, None) => FirstStep::Naptr,
    }
}

/// What one lookup changed, for the core and the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Targets and DNS error to hand to the core.
    pub targets: Vec<Target>,
    /// The lookup error the core shows (kept targets may come with one).
    pub error: Option<String>,
    /// A line for the log, at most once per change of state.
    pub note: Option<Note>,
}

/// A change of state worth one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Note {
    /// The first failure after an answer (or at start).
    Failing {
        /// Targets still used (the last good answer).
        kept: usize,
    },
    /// The stale grace ran out: the upstream has no target any more.
    StaleDropped,
    /// An answer after failures.
    Recovered,
}

/// The life of one name's answer.
#[derive(Debug)]
pub struct NameState {
    good: Option<(Vec<Target>, Instant)>,
    failures: u32,
    next: Instant,
}

impl NameState {
    /// A name to look up at `now`.
    pub fn new(now: Instant) -> NameState {
        NameState {
            good: None,
            failures: 0,
            next: now,
        }
    }

    /// When the next lookup is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// A lookup gave these targets (non-empty; each with its chain's expiry).
    pub fn on_answer(&mut self, now: Instant, targets: Vec<Target>) -> Step {
        let expires = targets
            .iter()
            .filter_map(|t| t.expires)
            .min()
            .unwrap_or(now);
        self.next = expires.max(now + MIN_REFRESH) + EXPIRY_SLACK;
        let note = (self.failures > 0).then_some(Note::Recovered);
        self.failures = 0;
        self.good = Some((targets.clone(), expires));
        Step {
            targets,
            error: None,
            note,
        }
    }

    /// A lookup failed (or found no SIP target) with `error`.
    pub fn on_error(&mut self, now: Instant, error: String) -> Step {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.min(6);
        let retry = (Duration::from_secs(1) * (1u32 << shift)).min(MAX_RETRY);
        self.next = now + retry;
        let first = self.failures == 1;
        match &self.good {
            Some((targets, expires)) if now < *expires + STALE_GRACE => {
                // Come back no later than the end of the grace.
                self.next = self.next.min(*expires + STALE_GRACE);
                Step {
                    targets: targets.clone(),
                    error: Some(error),
                    note: first.then_some(Note::Failing {
                        kept: targets.len(),
                    }),
                }
            }
            Some(_) => {
                self.good = None;
                Step {
                    targets: Vec::new(),
                    error: Some(error),
                    note: Some(Note::StaleDropped),
                }
            }
            None => Step {
                targets: Vec::new(),
                error: Some(error),
                note: first.then_some(Note::Failing { kept: 0 }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16, expires: Instant) -> Target {
        Target {
            expires: Some(expires),
            ..Target::fixed(
                std::net::SocketAddr::from(([10, 0, 0, 1], port)),
                Transport::Udp,
            )
        }
    }

    #[test]
    fn rfc3263_steps() {
        let r = |port, transport| Resolve {
            host: "carrier.example".into(),
            port,
            transport,
        };
        assert_eq!(
            first_step(&r(Some(5070), None)),
            FirstStep::Address(5070, Transport::Udp)
        );
        assert_eq!(
            first_step(&r(Some(5070), Some(Transport::Tcp))),
            FirstStep::Address(5070, Transport::Tcp)
        );
        assert_eq!(
            first_step(&r(None, Some(Transport::Tcp))),
            FirstStep::Srv(Transport::Tcp)
        );
        assert_eq!(first_step(&r(None, None)), FirstStep::Naptr);
        let names: Vec<String> = srv_fallback("c.example", None)
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["_sip._udp.c.example", "_sip._tcp.c.example"]);
        assert_eq!(srv_fallback("c.example", Some(Transport::Tcp)).len(), 1);
        let tls: Vec<String> = srv_fallback("c.example", Some(Transport::Tls))
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(tls, ["_sips._tcp.c.example"]);
    }

    #[test]
    fn naptr_order_preference_and_supported_services() {
        let n = |order, preference, services: &str, name: &str| Naptr {
            order,
            preference,
            flags: "S".into(),
            services: services.into(),
            replacement: name.into(),
        };
        let records = [
            n(20, 10, "SIP+D2U", "_sip._udp.c.example."),
            n(10, 50, "SIP+D2T", "_sip._tcp.c.example."),
            n(10, 10, "SIPS+D2T", "_sips._tcp.c.example."),
            n(10, 20, "SIP+D2S", "_sip._sctp.c.example."),
        ];
        let q = srv_from_naptr(&records, None);
        assert_eq!(
            q,
            vec![
                SrvQuery {
                    transport: Transport::Tcp,
                    name: "_sip._tcp.c.example".into()
                },
                SrvQuery {
                    transport: Transport::Udp,
                    name: "_sip._udp.c.example".into()
                },
            ]
        );
        assert_eq!(srv_from_naptr(&records, Some(Transport::Udp)).len(), 1);
        assert_eq!(
            srv_from_naptr(&records, Some(Transport::Tls)),
            [SrvQuery {
                transport: Transport::Tls,
                name: "_sips._tcp.c.example".into()
            }]
        );
        let mut a = records[0].clone();
        a.flags = "A".into();
        assert!(
            srv_from_naptr(&[a], None).is_empty(),
            "only terminal S records"
        );
    }

    #[test]
    fn ttl_is_honoured_with_a_floor() {
        let t0 = Instant::now();
        let mut s = NameState::new(t0);
        assert_eq!(s.due(), t0);
        let step = s.on_answer(
            t0,
            vec![
                target(1, t0 + Duration::from_secs(30)),
                target(2, t0 + Duration::from_secs(10)),
            ],
        );
        assert_eq!(step.targets.len(), 2);
        assert_eq!(step.note, None);
        // The earliest expiry of the chain, a little after.
        assert!(s.due() > t0 + Duration::from_secs(10) && s.due() < t0 + Duration::from_secs(11));
        // TTL 0: not before MIN_REFRESH.
        let step = s.on_answer(t0, vec![target(1, t0)]);
        assert!(step.error.is_none());
        assert!(s.due() >= t0 + MIN_REFRESH);
    }

    #[test]
    fn failure_keeps_the_last_answer_until_ttl_plus_grace_and_notes_once() {
        let t0 = Instant::now();
        let mut s = NameState::new(t0);
        let ttl = Duration::from_secs(60);
        s.on_answer(t0, vec![target(1, t0 + ttl)]);
        let t1 = t0 + ttl + Duration::from_secs(1);
        let step = s.on_error(t1, "timeout".into());
        assert_eq!(step.targets.len(), 1, "stale answer kept");
        assert_eq!(step.error.as_deref(), Some("timeout"));
        assert_eq!(step.note, Some(Note::Failing { kept: 1 }));
        assert_eq!(s.due(), t1 + Duration::from_secs(2), "retry with back-off");
        // Later failures inside the grace: same answer, no new note.
        for _ in 0..10 {
            let t = s.due();
            let step = s.on_error(t, "timeout".into());
            if t >= t0 + ttl + STALE_GRACE {
                break;
            }
            assert_eq!(step.targets.len(), 1);
            assert_eq!(step.note, None);
            assert!(s.due() - t <= MAX_RETRY);
        }
        // Run the clock to the end of the grace: retries never skip it.
        while s.due() < t0 + ttl + STALE_GRACE {
            let t = s.due();
            assert_eq!(s.on_error(t, "timeout".into()).note, None);
        }
        assert_eq!(s.due(), t0 + ttl + STALE_GRACE);
        let step = s.on_error(s.due(), "timeout".into());
        assert!(step.targets.is_empty());
        assert_eq!(step.note, Some(Note::StaleDropped));
        let step = s.on_error(s.due(), "timeout".into());
        assert_eq!(step.note, None, "dropped once");
        let step = s.on_answer(s.due(), vec![target(1, s.due() + ttl)]);
        assert_eq!(step.note, Some(Note::Recovered));
    }

    #[test]
    fn never_resolved_is_noted_once() {
        let t0 = Instant::now();
        let mut s = NameState::new(t0);
        let step = s.on_error(t0, "NXDOMAIN".into());
        assert!(step.targets.is_empty());
        assert_eq!(step.note, Some(Note::Failing { kept: 0 }));
        let step = s.on_error(s.due(), "NXDOMAIN".into());
        assert_eq!(step.note, None);
        assert_eq!(step.error.as_deref(), Some("NXDOMAIN"));
    }
}
