//! `/metrics` (Prometheus text exposition format 0.0.4) for what the core
//! owns: calls, transactions, messages, answers, registrations, bans and
//! scanner drops. The shell appends what it owns (CDR queue, transports).
//! With several core shards, each writes its own counters (shard 0 adds
//! the node-wide ones) and [`merge`] sums them into one exposition.

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

/// Per-trunk call quality: final responses by (bucketed) code, and the
/// post-dial delay as a histogram. Bounded: trunks × 19 codes, trunks × 8
/// buckets.
fn quality(m: &mut String, q: &crate::b2bua::quality::TrunkQuality) {
    use crate::b2bua::quality::PDD_BUCKETS_S;
    family(
        m,
        "sipfront_trunk_final_responses_total",
        "counter",
        "Recorded calls by trunk and the final response the caller got (common codes \
         exactly, others by class): ASR = code 200 / all; NER = 200, 486, 487, 480, 603 / all.",
    );
    for (trunk, t) in q {
        let trunk = label(trunk);
        for (code, n) in &t.finals {
            let _ = writeln!(
                m,
                "sipfront_trunk_final_responses_total{{trunk=\"{trunk}\",code=\"{code}\"}} {n}"
            );
        }
    }
    family(
        m,
        "sipfront_trunk_post_dial_delay_seconds",
        "histogram",
        "Post-dial delay (RFC 6076 4.1): INVITE to the first ringing provisional, or to \
         the answer, of calls that rang or were answered, by trunk.",
    );
    for (trunk, t) in q {
        let trunk = label(trunk);
        let mut cumulative = 0u64;
        for (le, n) in PDD_BUCKETS_S.iter().zip(t.pdd_buckets) {
            cumulative += n;
            let _ = writeln!(
                m,
                "sipfront_trunk_post_dial_delay_seconds_bucket{{trunk=\"{trunk}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            m,
            "sipfront_trunk_post_dial_delay_seconds_bucket{{trunk=\"{trunk}\",le=\"+Inf\"}} {}\n\
             sipfront_trunk_post_dial_delay_seconds_sum{{trunk=\"{trunk}\"}} {:.3}\n\
             sipfront_trunk_post_dial_delay_seconds_count{{trunk=\"{trunk}\"}} {}",
            t.pdd_count,
            t.pdd_sum_ms as f64 / 1000.0,
            t.pdd_count
        );
    }
}

/// The expositions of several shards as one: families in order of first
/// appearance, each family's HELP/TYPE once and its samples (same name and
/// labels) summed. Counters and gauges of calls, transactions and messages
/// add up across shards; node-wide families come from shard 0 only.
pub fn merge<S: AsRef<str>>(parts: &[S]) -> String {
    /// One family: its comment lines, then its samples by key.
    #[derive(Default)]
    struct Family {
        comments: Vec<String>,
        samples: Vec<(String, Value)>,
    }
    #[derive(Clone, Copy)]
    enum Value {
        Int(i128),
        Float(f64),
    }
    impl Value {
        fn parse(s: &str) -> Option<Value> {
            s.parse()
                .map(Value::Int)
                .ok()
                .or_else(|| s.parse().ok().map(Value::Float))
        }
        fn add(self, o: Value) -> Value {
            match (self, o) {
                (Value::Int(a), Value::Int(b)) => Value::Int(a.saturating_add(b)),
                (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => {
                    Value::Float(a as f64 + b)
                }
                (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            }
        }
    }
    let mut families: Vec<(String, Family)> = Vec::new();
    for part in parts {
        let mut current = usize::MAX;
        for line in part.as_ref().lines() {
            if let Some(rest) = line.strip_prefix("# ") {
                let name = rest.split_whitespace().nth(1).unwrap_or("");
                current = match families.iter().position(|(n, _)| n == name) {
                    Some(i) => i,
                    None => {
                        families.push((name.to_owned(), Family::default()));
                        families.len() - 1
                    }
                };
                if let Some((_, f)) = families.get_mut(current) {
                    if !f.comments.iter().any(|c| c == line) {
                        f.comments.push(line.to_owned());
                    }
                }
                continue;
            }
            let Some((key, value)) = line
                .rsplit_once(' ')
                .and_then(|(k, v)| Some((k, Value::parse(v)?)))
            else {
                continue;
            };
            if current >= families.len() {
                // Samples before any HELP/TYPE: one nameless family.
                current = families
                    .iter()
                    .position(|(n, _)| n.is_empty())
                    .unwrap_or_else(|| {
                        families.push((String::new(), Family::default()));
                        families.len() - 1
                    });
            }
            if let Some((_, f)) = families.get_mut(current) {
                match f.samples.iter_mut().find(|(k, _)| k == key) {
                    Some((_, v)) => *v = v.add(value),
                    None => f.samples.push((key.to_owned(), value)),
                }
            }
        }
    }
    let mut out = String::with_capacity(parts.iter().map(|p| p.as_ref().len()).max().unwrap_or(0));
    for (_, f) in families {
        for c in f.comments {
            let _ = writeln!(out, "{c}");
        }
        for (k, v) in f.samples {
            let _ = match v {
                Value::Int(n) => writeln!(out, "{k} {n}"),
                Value::Float(x) => writeln!(out, "{k} {x}"),
            };
        }
    }
    out
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
        quality(m, &b.quality);
        let (unconfirmed, fleet_refused) = self.b2bua.fleet_counts();
        metric(
            m,
            "sipfront_cluster_unconfirmed_calls_total",
            "counter",
            "Limited calls that went on with this node's view of the channels: the fleet's \
             counter (Redis) gave no verdict in time.",
            unconfirmed,
        );
        metric(
            m,
            "sipfront_cluster_refused_calls_total",
            "counter",
            "Calls refused by the fleet-wide channel count (another node holds the channels).",
            fleet_refused,
        );
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
        if self.owner {
            self.node_metrics(m, now);
        }
        out
    }

    /// What is node-wide (shared state, registrar, upstream health and
    /// registrations): shard 0 writes it, so merged shards count it once.
    fn node_metrics(&self, m: &mut String, now: Instant) {
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
        {
            let reg = self.shared.registrar();
            metric(
                m,
                "sipfront_registrations",
                "gauge",
                "Registered contacts.",
                reg.store().len(),
            );
            let ka = reg.keepalive_stats();
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
        }
        metric(
            m,
            "sipfront_rate_limited_total",
            "counter",
            "Requests refused 503 for their source's rate.",
            self.shared.rates().limited(),
        );
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

#[cfg(test)]
mod tests {
    use super::merge;

    #[test]
    fn merged_shards_sum_samples_and_keep_each_family_together() {
        let a = "# HELP x_total X.\n# TYPE x_total counter\nx_total 2\n\
                 # HELP y Y.\n# TYPE y gauge\ny{t=\"a\"} 1\n\
                 # HELP node Node.\n# TYPE node gauge\nnode 5\n";
        let b = "# HELP x_total X.\n# TYPE x_total counter\nx_total 3\n\
                 # HELP y Y.\n# TYPE y gauge\ny{t=\"a\"} 1\ny{t=\"b\"} 4\n";
        assert_eq!(
            merge(&[a, b]),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total 5\n\
             # HELP y Y.\n# TYPE y gauge\ny{t=\"a\"} 2\ny{t=\"b\"} 4\n\
             # HELP node Node.\n# TYPE node gauge\nnode 5\n"
        );
        assert_eq!(merge(&[a]), a, "one shard: unchanged");
        assert_eq!(merge(&["f 0.5\n", "f 1\n"]), "f 1.5\n");
    }
}
