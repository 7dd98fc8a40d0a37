//! The DNS shell (RFC 3263 §4): resolves the host names of `[[upstream]]`
//! URIs with hickory-resolver on its own task and hands each answer to the
//! core task as an [`Answer`], like a timer firing. The core never waits
//! for DNS; a call only ever reads the targets it already has.
//!
//! What to look up and when (TTL, stale grace, back-off, log-once) is the
//! sans-IO [`crate::routing::dns`]; this module only runs the queries.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;
use tokio::sync::mpsc;

use crate::config::DnsConfig;
use crate::routing::dns::{self as plan, FirstStep, NameState, Naptr, Note, SrvQuery};
use crate::routing::{Resolve, Target, MAX_TARGETS};
use crate::sip::Transport;
use crate::transport::Shutdown;

/// One answer for the core: upstream `index`'s targets from now on.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The upstream's index in config order.
    pub index: usize,
    /// Its targets (empty: no address, `error` says why).
    pub targets: Vec<Target>,
    /// The last lookup error, if the last lookup failed.
    pub error: Option<String>,
}

/// How long one whole RFC 3263 resolution of a name may take.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(10);

/// Builds the resolver: `[dns] nameservers` (UDP, then TCP for truncated
/// answers), else the system's `/etc/resolv.conf`.
///
/// # Errors
/// The system configuration cannot be read.
pub fn resolver(cfg: &DnsConfig) -> Result<TokioResolver, String> {
    let provider = TokioConnectionProvider::default();
    let mut builder = if cfg.nameservers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| format!("system resolver: {e}"))?
    } else {
        let servers: Vec<NameServerConfig> = cfg
            .nameservers
            .iter()
            .flat_map(|&a| {
                [
                    NameServerConfig::new(a, Protocol::Udp),
                    NameServerConfig::new(a, Protocol::Tcp),
                ]
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            provider,
        )
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    Ok(builder.build())
}

/// Runs until `shutdown`: looks up every name when due and sends each
/// answer to `out`. Nothing to resolve: returns at once. Each name comes as
/// (index for the answer, who depends on it for the log, the query).
pub async fn run(
    resolver: TokioResolver,
    names: Vec<(usize, String, Resolve)>,
    out: mpsc::Sender<Answer>,
    mut shutdown: Shutdown,
) {
    if names.is_empty() {
        return;
    }
    let now = || tokio::time::Instant::now().into_std();
    let mut states: Vec<NameState> = names.iter().map(|_| NameState::new(now())).collect();
    loop {
        let Some(due) = states.iter().map(NameState::due).min() else {
            return;
        };
        tokio::select! {
            _ = shutdown.recv() => return,
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(due)) => {}
        }
        for ((index, who, query), state) in names.iter().zip(states.iter_mut()) {
            if state.due() > now() {
                continue;
            }
            let result = tokio::time::timeout(LOOKUP_DEADLINE, resolve(&resolver, query))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {LOOKUP_DEADLINE:?}")));
            let t = now();
            let step = match result {
                Ok(targets) if !targets.is_empty() => state.on_answer(t, targets),
                Ok(_) => state.on_error(t, "no SIP target (NAPTR/SRV/A/AAAA empty)".to_owned()),
                Err(e) => state.on_error(t, e),
            };
            log_note(who, &query.host, &step);
            let answer = Answer {
                index: *index,
                targets: step.targets,
                error: step.error,
            };
            if out.send(answer).await.is_err() {
                return; // the core has stopped
            }
        }
    }
}

/// Logs a lookup's news once; `who` names what depends on the name
/// ("upstream `carrier-a`", "DID destination `pbx.example`").
fn log_note(who: &str, host: &str, step: &plan::Step) {
    let error = step.error.as_deref().unwrap_or("");
    match step.note {
        Some(Note::Failing { kept: 0 }) => tracing::warn!(
            dns_for = %who,
            host,
            "DNS: `{host}` does not resolve ({error}): {who} is down until it \
             does; retrying with back-off (logged once)"
        ),
        Some(Note::Failing { kept }) => tracing::warn!(
            dns_for = %who,
            host,
            "DNS: lookup of `{host}` failed ({error}): keeping the last answer ({kept} targets) \
             until its TTL + {} s; retrying with back-off (logged once)",
            plan::STALE_GRACE.as_secs()
        ),
        Some(Note::StaleDropped) => tracing::warn!(
            dns_for = %who,
            host,
            "DNS: `{host}` still does not resolve ({error}) and its last answer is past TTL + \
             grace: {who} has no target"
        ),
        Some(Note::Recovered) => tracing::info!(
            dns_for = %who,
            host,
            targets = step.targets.len(),
            "DNS: `{host}` resolves again"
        ),
        None => tracing::debug!(dns_for = %who, host, targets = step.targets.len(), "DNS answer"),
    }
}

/// The RFC 3263 §4 procedure for one upstream: its targets in SRV order,
/// each with the earliest expiry of the records behind it.
async fn resolve(r: &TokioResolver, q: &Resolve) -> Result<Vec<Target>, String> {
    let srv = match plan::first_step(q) {
        FirstStep::Address(port, transport) => {
            return addresses(r, &q.host, port, transport, 0, 0, None).await;
        }
        FirstStep::Srv(t) => plan::srv_fallback(&q.host, Some(t)),
        FirstStep::Naptr => {
            let (records, until) = naptr(r, &q.host).await;
            let mut from_naptr = plan::srv_from_naptr(&records, None);
            if from_naptr.is_empty() {
                from_naptr = plan::srv_fallback(&q.host, None);
            }
            if let Some(targets) = first_srv(r, &from_naptr, until).await? {
                return Ok(targets);
            }
            Vec::new()
        }
    };
    if let Some(targets) = first_srv(r, &srv, None).await? {
        return Ok(targets);
    }
    // No SRV: the host's own addresses on 5060, 5061 for TLS (RFC 3263 §4.2).
    let transport = q.transport.unwrap_or(Transport::Udp);
    addresses(r, &q.host, transport.default_port(), transport, 0, 0, None).await
}

/// NAPTR records of `host` (none on any error: RFC 3263 then goes to SRV).
async fn naptr(r: &TokioResolver, host: &str) -> (Vec<Naptr>, Option<Instant>) {
    let Ok(lookup) = r.lookup(host, RecordType::NAPTR).await else {
        return (Vec::new(), None);
    };
    let records = lookup
        .iter()
        .filter_map(|d| match d {
            RData::NAPTR(n) => Some(Naptr {
                order: n.order(),
                preference: n.preference(),
                flags: String::from_utf8_lossy(n.flags()).into_owned(),
                services: String::from_utf8_lossy(n.services()).into_owned(),
                replacement: n.replacement().to_ascii(),
            }),
            _ => None,
        })
        .collect();
    (records, Some(lookup.valid_until()))
}

/// The targets of the first SRV query that has records; None when none has.
/// A lookup error other than "no records" is an error (the resolver or the
/// network is failing, and the last good answer should be kept).
async fn first_srv(
    r: &TokioResolver,
    queries: &[SrvQuery],
    until: Option<Instant>,
) -> Result<Option<Vec<Target>>, String> {
    for q in queries {
        let lookup = match r.srv_lookup(q.name.as_str()).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => continue,
            Err(e) => return Err(format!("SRV {}: {e}", q.name)),
        };
        let srv_until = min_instant(until, Some(lookup.as_lookup().valid_until()));
        let mut records: Vec<_> = lookup.iter().collect();
        records.sort_by_key(|s| s.priority());
        let mut out = Vec::new();
        let mut last_error = None;
        for s in records {
            let target = s.target().to_ascii();
            let target = target.trim_end_matches('.');
            if target.is_empty() {
                continue; // "." : service decidedly not available here
            }
            match addresses(
                r,
                target,
                s.port(),
                q.transport,
                s.priority(),
                s.weight(),
                srv_until,
            )
            .await
            {
                Ok(t) => out.extend(t),
                Err(e) => last_error = Some(e),
            }
            if out.len() >= MAX_TARGETS {
                break;
            }
        }
        if out.is_empty() {
            return Err(last_error.unwrap_or_else(|| format!("SRV {}: no usable target", q.name)));
        }
        return Ok(Some(out));
    }
    Ok(None)
}

/// The A/AAAA addresses of `host` as targets.
async fn addresses(
    r: &TokioResolver,
    host: &str,
    port: u16,
    transport: Transport,
    priority: u16,
    weight: u16,
    until: Option<Instant>,
) -> Result<Vec<Target>, String> {
    let ips = r
        .lookup_ip(host)
        .await
        .map_err(|e| format!("A/AAAA {host}: {e}"))?;
    let expires = min_instant(until, Some(ips.valid_until()));
    Ok(ips
        .iter()
        .take(MAX_TARGETS)
        .map(|ip| Target {
            addr: SocketAddr::new(ip, port),
            transport,
            priority,
            weight,
            up: true,
            expires,
        })
        .collect())
}

fn min_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One answer for a host name of DID SIP URI destinations.
#[derive(Debug, Clone)]
pub struct DidAnswer {
    /// The name (with the URI's port and transport).
    pub name: Resolve,
    /// Its targets (empty: no address, `error` says why).
    pub targets: Vec<Target>,
    /// The last lookup error, if the last lookup failed.
    pub error: Option<String>,
}

/// Runs until `shutdown`: the same lookups as [`run`] for the host names of
/// DID SIP URI destinations (`names`, re-sent by the core loop when a reload
/// or the API changes the DIDs), restarted whenever that set changes.
pub async fn run_did_hosts(
    resolver: TokioResolver,
    mut names: tokio::sync::watch::Receiver<Vec<Resolve>>,
    out: mpsc::Sender<DidAnswer>,
    tasks: crate::transport::ShutdownHandle,
    mut shutdown: Shutdown,
) {
    loop {
        let current = names.borrow_and_update().clone();
        let list = current
            .iter()
            .enumerate()
            .map(|(i, r)| (i, format!("DID destination `{}`", r.host), r.clone()))
            .collect();
        let (tx, mut rx) = mpsc::channel(16);
        let lookups = run(resolver.clone(), list, tx, tasks.subscribe());
        tokio::pin!(lookups);
        let mut running = true;
        let mut resolved = vec![false; current.len()];
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                changed = names.changed() => {
                    if changed.is_err() {
                        return; // the core has stopped
                    }
                    if *names.borrow() != current {
                        break;
                    }
                }
                () = &mut lookups, if running => running = false,
                Some(a) = rx.recv() => {
                    let Some(name) = current.get(a.index) else { continue };
                    if let Some(was) = resolved.get_mut(a.index) {
                        if !*was && !a.targets.is_empty() {
                            tracing::info!(
                                host = %name.host,
                                targets = a.targets.len(),
                                "DNS: DID destination host `{}` resolves",
                                name.host
                            );
                        }
                        *was = !a.targets.is_empty();
                    }
                    let answer = DidAnswer { name: name.clone(), targets: a.targets, error: a.error };
                    if out.send(answer).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
