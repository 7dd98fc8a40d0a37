//! `/metrics` (Prometheus text exposition format 0.0.4) for what the core
//! owns: calls, transactions, messages, answers, registrations, bans and
//! scanner drops. The shell appends what it owns (CDR queue, transports).

use std::fmt::Write;
use std::time::Instant;

use super::Endpoint;
use crate::b2bua::RefusalCause;

/// Appends one metric with its HELP and TYPE lines.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Appends the HELP and TYPE lines of a labelled family; its samples follow.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped per the exposition format (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Endpoint {
    /// The core's metrics at `now`, as Prometheus text.
    pub fn metrics(&self, now: Instant) -> String {
        let mut out = String::with_capacity(2048);
        let b = self.b2bua.stats();
        let s = &self.stats;
        let m = &mut out;
        metric(
            m,
            "sipfront_calls_active",
            "gauge",
            "Calls in progress.",
            self.b2bua.active_calls(),
        );
        metric(
            m,
            "sipfront_calls_total",
            "counter",
            "Calls admitted.",
            b.calls,
        );
        family(
            m,
            "sipfront_invites_refused_total",
            "counter",
            "New INVITEs refused or challenged before routing, by reason.",
        );
        for (cause, n) in RefusalCause::ALL.iter().zip(b.refused) {
            let _ = writeln!(
                m,
                "sipfront_invites_refused_total{{reason=\"{}\"}} {n}",
                cause.as_str()
            );
        }
        family(
            m,
            "sipfront_trunk_channels_in_use",
            "gauge",
            "Placed calls in progress per trunk (its max_channels counts these).",
        );
        for (trunk, n) in self.b2bua.trunk_channels() {
            let _ = writeln!(
                m,
                "sipfront_trunk_channels_in_use{{trunk=\"{}\"}} {n}",
                label(&trunk)
            );
        }
        family(
            m,
            "sipfront_calls_ended_total",
            "counter",
            "Calls ended (one per CDR), by trunk, direction and disposition.",
        );
        for (trunk, counts) in &s.ended {
            let trunk = label(trunk);
            for ((direction, disposition), n) in counts {
                let _ = writeln!(
                    m,
                    "sipfront_calls_ended_total{{trunk=\"{trunk}\",direction=\"{direction}\",\
                     disposition=\"{disposition}\"}} {n}"
                );
            }
        }
        metric(
            m,
            "sipfront_transactions",
            "gauge",
            "Live SIP transactions.",
            self.txns.len(),
        );
        let tx = self.txns.stats();
        metric(
            m,
            "sipfront_retransmissions_sent_total",
            "counter",
            "SIP messages sent again on a retransmission timer (A, E, G).",
            tx.retransmissions_sent,
        );
        metric(
            m,
            "sipfront_retransmissions_received_total",
            "counter",
            "Retransmitted requests absorbed by a server transaction.",
            tx.retransmissions_received,
        );
        metric(
            m,
            "sipfront_messages_received_total",
            "counter",
            "SIP messages received.",
            s.received,
        );
        metric(
            m,
            "sipfront_parse_errors_total",
            "counter",
            "Messages that failed to parse.",
            s.parse_errors,
        );
        metric(
            m,
            "sipfront_registrations",
            "gauge",
            "Registered contacts.",
            self.registrar.store().len(),
        );
        let ka = self.registrar.keepalive_stats();
        metric(
            m,
            "sipfront_keepalive_options_sent_total",
            "counter",
            "Keep-alive OPTIONS sent to registered UDP contacts.",
            ka.options_sent,
        );
        metric(
            m,
            "sipfront_keepalive_options_answered_total",
            "counter",
            "Responses to keep-alive OPTIONS.",
            ka.options_answered,
        );
        metric(
            m,
            "sipfront_keepalive_crlf_sent_total",
            "counter",
            "Double-CRLF keep-alive pings written to registered TCP connections.",
            ka.crlf_sent,
        );
        metric(
            m,
            "sipfront_keepalive_dropped_total",
            "counter",
            "Bindings dropped for unanswered keep-alive pings.",
            ka.dropped,
        );
        metric(
            m,
            "sipfront_bans",
            "gauge",
            "Sources banned now.",
            self.shared.bans().list(now).len(),
        );
        metric(
            m,
            "sipfront_banned_drops_total",
            "counter",
            "Packets dropped from banned sources.",
            self.shared.bans().dropped(),
        );
        metric(
            m,
            "sipfront_scanner_drops_total",
            "counter",
            "Requests from SIP scanners dropped.",
            s.scanners_dropped,
        );
        metric(
            m,
            "sipfront_rate_limited_total",
            "counter",
            "Requests refused 503 for their source's rate.",
            self.shared.rates().limited(),
        );
        metric(
            m,
            "sipfront_overload_refused_total",
            "counter",
            "New INVITEs answered 503 unprocessed: they queued longer than overload_queue_ms.",
            s.overload_refused,
        );
        metric(
            m,
            "sipfront_overload_dropped_total",
            "counter",
            "New out-of-dialog requests dropped: they queued longer than overload_drop_ms.",
            s.overload_dropped,
        );
        let _ = writeln!(
            m,
            "# HELP sipfront_responses_total Final responses sipfront originated, by class.\n\
             # TYPE sipfront_responses_total counter"
        );
        for (i, n) in s.answered.iter().enumerate() {
            let _ = writeln!(m, "sipfront_responses_total{{class=\"{}xx\"}} {n}", i + 2);
        }
        let _ = writeln!(
            m,
            "# HELP sipfront_upstream_up Upstream health: 1 when any of its targets is up.\n\
             # TYPE sipfront_upstream_up gauge"
        );
        for u in self.b2bua.upstreams().iter() {
            let name = label(&u.name);
            let _ = writeln!(
                m,
                "sipfront_upstream_up{{upstream=\"{name}\"}} {}",
                u8::from(u.up())
            );
        }
        // Bounded: at most MAX_TARGETS series per configured upstream.
        let _ = writeln!(
            m,
            "# HELP sipfront_upstream_target_up Health of each address an upstream resolved to (OPTIONS pings, INVITEs).\n\
             # TYPE sipfront_upstream_target_up gauge"
        );
        for u in self.b2bua.upstreams().iter() {
            let name = label(&u.name);
            for t in &u.targets {
                let _ = writeln!(
                    m,
                    "sipfront_upstream_target_up{{upstream=\"{name}\",target=\"{}\",transport=\"{}\"}} {}",
                    t.addr,
                    t.transport.as_lowercase(),
                    u8::from(t.up)
                );
            }
        }
        let _ = writeln!(
            m,
            "# HELP sipfront_upstream_dns_ok 1 when the upstream's last DNS lookup succeeded (IP literals: 1).\n\
             # TYPE sipfront_upstream_dns_ok gauge"
        );
        for u in self.b2bua.upstreams().iter() {
            let name = label(&u.name);
            let _ = writeln!(
                m,
                "sipfront_upstream_dns_ok{{upstream=\"{name}\"}} {}",
                u8::from(u.dns_error.is_none())
            );
        }
        self.upstream_registration_metrics(m, now);
        out
    }

    /// Registration trunks: registered or not, and until when.
    fn upstream_registration_metrics(&self, m: &mut String, now: Instant) {
        family(
            m,
            "sipfront_upstream_registered",
            "gauge",
            "Registration at the upstream (1 registered, 0 failed); register = true upstreams only.",
        );
        let regs: Vec<_> = (0..self.b2bua.upstreams().len())
            .filter_map(|i| {
                let u = self.b2bua.upstreams().get(i)?;
                let r = self.b2bua.registration(i, now);
                (r.state != "disabled").then(|| (label(&u.name), r))
            })
            .collect();
        for (name, r) in &regs {
            let on = u8::from(r.state == "registered");
            let _ = writeln!(
                m,
                "sipfront_upstream_registered{{upstream=\"{name}\"}} {on}"
            );
        }
        family(
            m,
            "sipfront_upstream_registration_expiry_timestamp_seconds",
            "gauge",
            "Unix time the registration at the upstream runs out (while registered).",
        );
        for (name, r) in &regs {
            if let Some(e) = r.expires {
                let _ = writeln!(
                    m,
                    "sipfront_upstream_registration_expiry_timestamp_seconds{{upstream=\"{name}\"}} {e}"
                );
            }
        }
    }
}
