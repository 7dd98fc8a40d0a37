//! Semantic checks run after the file deserialized: cross-field rules,
//! uniqueness, references between tables. Also resolves omitted trunk ids and
//! logins. Every error is located with the [`SpanIndex`] of the same text.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::error::{ConfigError, SpanIndex};
use super::schema::{Config, ListenConfig, ListenTransport, TrunkConfig};
use super::tls;

/// Collects errors with their key path; lines are filled in at the end.
struct Errors<'a> {
    file: &'a str,
    index: &'a SpanIndex,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        self.list.push(ConfigError {
            file: self.file.to_owned(),
            line: self.index.line_of_path(&key),
            key,
            message: message.into(),
        });
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A webhook URL (SPEC §7): empty (none) or an absolute http(s) URL.
/// A PostgreSQL connection URL sipfront can use: `postgres://` or
/// `postgresql://` with a host. The connection is not encrypted, so an
/// `sslmode` that demands TLS is refused here rather than at the first
/// query. The message never repeats the URL (it may hold a password).
fn check_store_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| {
        format!("not a URL ({e}); expected postgres://user:password@host:port/database")
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "scheme `{}` is not postgres:// or postgresql://",
            parsed.scheme()
        ));
    }
    if parsed.host_str().map_or(true, str::is_empty) {
        return Err("needs a host: postgres://user:password@host:port/database".to_owned());
    }
    for (k, v) in parsed.query_pairs() {
        if k == "sslmode" && !matches!(&*v, "disable" | "prefer" | "allow") {
            return Err(format!(
                "sslmode={v}: connections to PostgreSQL are not encrypted by this build; \
                 use sslmode=disable or prefer (or reach the database over a private network)"
            ));
        }
    }
    Ok(())
}

fn check_webhook_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Ok(());
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!("`{url}` is not an http:// or https:// URL")),
    }
}

/// Minimal `sip:`/`sips:` URI shape check: scheme, a host, an optional
/// numeric port, `transport=` (if any) udp, tcp or tls. Full parsing is the SIP
/// parser's job when the URI is used.
pub(crate) fn check_sip_uri(uri: &str) -> Result<(), String> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .ok_or_else(|| format!("`{uri}` must start with sip: or sips:"))?;
    let (hostport, params) = rest.split_once(';').unwrap_or((rest, ""));
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{uri}`: unclosed IPv6 bracket"))?;
        if let Some(p) = after.strip_prefix(':') {
            p.parse::<u16>()
                .map_err(|_| format!("`{uri}`: bad port `{p}`"))?;
        }
        h
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => {
                p.parse::<u16>()
                    .map_err(|_| format!("`{uri}`: bad port `{p}`"))?;
                h
            }
            None => hostport,
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{uri}`: missing or bad host"));
    }
    for p in params.split(';').filter(|p| !p.is_empty()) {
        if let Some(t) = p.strip_prefix("transport=") {
            if !["udp", "tcp", "tls"]
                .iter()
                .any(|k| t.eq_ignore_ascii_case(k))
            {
                return Err(format!("`{uri}`: transport must be udp, tcp or tls"));
            }
        }
    }
    Ok(())
}

/// The rules on one trunk alone, as `(field, message)` pairs; empty when it
/// is valid. The file loader (prefixing `trunk[i].`) and the HTTP API
/// (naming the JSON field) both call it, so the rules live in one place.
/// Rules across trunks (unique id and login, DIDs naming a trunk) stay in
/// [`validate`].
pub fn check_trunk(t: &TrunkConfig) -> Vec<(&'static str, String)> {
    let mut e = Vec::new();
    let login = t.login();
    if login.contains(|c: char| c.is_whitespace() || "@:;<>\"".contains(c)) {
        e.push(("name", format!("`{login}` is not a valid SIP login")));
    }
    if !t.host_request.is_empty() && t.host_request.parse::<IpAddr>().is_err() {
        e.push((
            "host_request",
            format!("`{}` must be an IP address or empty", t.host_request),
        ));
    }
    if t.password.is_empty() && t.host_request.is_empty() {
        e.push((
            "password",
            "a trunk needs a password (digest) or host_request (IP authentication)".to_owned(),
        ));
    }
    if !t.callerid.is_empty() && !is_digits(t.callerid.trim_start_matches('+')) {
        e.push(("callerid", "must be digits (E.164 without +)".to_owned()));
    }
    for (k, v) in [
        ("rewrite_cond", &t.rewrite_cond),
        ("rewrite_prefix", &t.rewrite_prefix),
    ] {
        if !v.is_empty() && !is_digits(v) {
            e.push((k, "must be digits".to_owned()));
        }
    }
    if !t.max_call_cost.is_finite() || t.max_call_cost < 0.0 {
        e.push(("max_call_cost", "must be a number >= 0".to_owned()));
    }
    if t.call_restrict && t.call_limit == 0 {
        e.push((
            "call_limit",
            "must be > 0 when call_restrict is true".to_owned(),
        ));
    }
    if t.ip_restrict && t.allowed_ips.is_empty() {
        e.push((
            "allowed_ips",
            "ip_restrict is true but allowed_ips is empty: nobody could call".to_owned(),
        ));
    }
    e
}

/// `[[listen]]` TLS keys: `cert` and `key` on a TLS listener, readable and
/// valid (the files are read here, so `sipfront check` and SIGHUP catch a
/// bad renewal); `ca` when `verify_client`; none of them elsewhere.
fn check_listen_tls(e: &mut Errors<'_>, i: usize, l: &ListenConfig) {
    let p = format!("listen[{i}]");
    if !l.transport.is_tls() {
        for (k, set) in [
            ("cert", l.cert.is_some()),
            ("key", l.key.is_some()),
            ("ca", l.ca.is_some()),
            ("verify_client", l.verify_client),
        ] {
            if set {
                e.push(
                    format!("{p}.{k}"),
                    format!(
                        "only a TLS listener takes `{k}` (this one is {})",
                        l.transport
                    ),
                );
            }
        }
        return;
    }
    match (&l.cert, &l.key) {
        (Some(cert), Some(key)) => {
            if let Err(err) = tls::read_identity(cert, key) {
                e.push(format!("{p}.{}", err.kind.key()), err.to_string());
            }
        }
        (cert, _) => {
            let k = if cert.is_none() { "cert" } else { "key" };
            e.push(
                format!("{p}.transport"),
                format!("a {} listener needs `{k}` (a PEM file)", l.transport),
            );
        }
    }
    match (&l.ca, l.verify_client) {
        (Some(ca), true) => {
            if let Err(err) = tls::read_ca(ca) {
                e.push(format!("{p}.ca"), err.to_string());
            }
        }
        (None, true) => e.push(
            format!("{p}.verify_client"),
            "verify_client = true needs `ca`: the roots client certificates must chain to",
        ),
        (Some(_), false) => e.push(
            format!("{p}.ca"),
            "`ca` is only used with verify_client = true",
        ),
        (None, false) => {}
    }
}

/// Checks `cfg` and resolves omitted trunk ids/logins.
///
/// # Errors
/// Every problem found, each located by key path and line.
pub(crate) fn validate(
    cfg: &mut Config,
    file: &str,
    index: &SpanIndex,
) -> Result<(), Vec<ConfigError>> {
    let mut e = Errors {
        file,
        index,
        list: Vec::new(),
    };

    // [server]
    if !(1..=3600).contains(&cfg.server.ring_timeout_s) {
        e.push(
            "server.ring_timeout_s",
            "must be between 1 and 3600 seconds",
        );
    }
    if !(1..=super::schema::MAX_WORKERS).contains(&cfg.server.workers) {
        e.push(
            "server.workers",
            format!(
                "must be between 1 and {} core shards (default: the number of CPUs)",
                super::schema::MAX_WORKERS
            ),
        );
    }
    for (i, n) in cfg.server.emergency_numbers.iter().enumerate() {
        if !is_digits(n) {
            e.push(
                format!("server.emergency_numbers[{i}]"),
                format!("`{n}` must be digits (the number as dialled, no `+`)"),
            );
        }
    }
    // RFC 4028 §4 puts the floor at 90 s; down to 2 s is allowed for tests.
    let min_se = cfg.server.min_se_s;
    if !(2..=86_400).contains(&min_se) {
        e.push("server.min_se_s", "must be between 2 and 86400 seconds");
    }
    let se = cfg.server.session_expires_s;
    if se != 0 && !(min_se..=86_400).contains(&se) {
        e.push(
            "server.session_expires_s",
            format!("must be 0 (off) or between min_se_s ({min_se}) and 86400 seconds"),
        );
    }
    let (queue, drop) = (cfg.server.overload_queue_ms, cfg.server.overload_drop_ms);
    if queue > 60_000 {
        e.push(
            "server.overload_queue_ms",
            "must be 0 (off) or at most 60000 milliseconds",
        );
    }
    if drop != 0 && (drop > 60_000 || drop <= queue) {
        e.push(
            "server.overload_drop_ms",
            format!(
                "must be 0 (off) or more than overload_queue_ms ({queue}) and at most 60000 milliseconds"
            ),
        );
    }
    if cfg.server.realm.trim().is_empty() {
        e.push("server.realm", "must not be empty");
    }
    let pa = &cfg.server.public_address;
    if pa.is_empty() || pa.contains(|c: char| c.is_whitespace() || ";<>,\"@".contains(c)) {
        e.push(
            "server.public_address",
            format!("`{pa}` is not a host name or IP address"),
        );
    }

    // [[listen]]
    if cfg.listen.is_empty() {
        e.push("listen", "at least one [[listen]] socket is needed");
    }
    let mut seen = HashSet::new();
    // TCP, WebSocket (and TLS) listeners each need a TCP port of their own.
    let mut streams = HashMap::new();
    for (i, l) in cfg.listen.iter().enumerate() {
        if !seen.insert((l.transport, l.address)) {
            e.push(
                format!("listen[{i}].address"),
                format!("{} {} is listed twice", l.transport, l.address),
            );
            continue;
        }
        check_listen_tls(&mut e, i, l);
        if l.transport == ListenTransport::Udp || l.address.port() == 0 {
            continue;
        }
        if let Some(other) = streams.insert(l.address, l.transport) {
            e.push(
                format!("listen[{i}].address"),
                format!(
                    "{} {} is also a {other} listen address: each TCP-based listener needs \
                     a port of its own",
                    l.transport, l.address
                ),
            );
        }
    }

    // [http]
    if cfg.http.max_connections == 0 {
        e.push("http.max_connections", "must be at least 1");
    }
    if cfg.http.idle_timeout_s == 0 {
        e.push("http.idle_timeout_s", "must be at least 1");
    }
    let mut names = HashSet::new();
    for (i, k) in cfg.http.api_key.iter().enumerate() {
        let p = format!("http.api_key[{i}]");
        if k.name.trim().is_empty() {
            e.push(format!("{p}.name"), "must not be empty");
        } else if !names.insert(k.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate api key name `{}`", k.name),
            );
        }
        match (&k.key, &k.key_sha256) {
            (None, None) => e.push(p.clone(), "needs `key` or `key_sha256`"),
            (Some(_), Some(_)) => e.push(
                format!("{p}.key_sha256"),
                "give `key` or `key_sha256`, not both",
            ),
            (Some(key), None) if key.is_empty() => e.push(format!("{p}.key"), "must not be empty"),
            (None, Some(h)) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                e.push(format!("{p}.key_sha256"), "must be 64 hex digits (SHA-256)")
            }
            _ => {}
        }
    }

    // [store]
    if let Some(url) = &cfg.store.url {
        if let Err(m) = check_store_url(url) {
            e.push("store.url", m);
        }
    }
    if cfg.store.path.as_os_str().is_empty() {
        e.push("store.path", "must not be empty");
    }

    // [[upstream]]
    let mut names = HashSet::new();
    for (i, u) in cfg.upstream.iter().enumerate() {
        let p = format!("upstream[{i}]");
        if u.name.trim().is_empty() {
            e.push(format!("{p}.name"), "must not be empty");
        } else if !names.insert(u.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate upstream name `{}`", u.name),
            );
        }
        if let Err(m) = check_sip_uri(&u.uri) {
            e.push(format!("{p}.uri"), m);
        }
        if let Some(ca) = &u.ca {
            if let Err(err) = tls::read_ca(ca) {
                e.push(format!("{p}.ca"), err.to_string());
            }
        }
        for (j, c) in u.failover_codes.iter().enumerate() {
            if let Err(m) = c.range() {
                e.push(format!("{p}.failover_codes[{j}]"), m);
            }
        }
        if u.weight == 0 {
            e.push(format!("{p}.weight"), "must be at least 1");
        }
        if u.register {
            if u.username.trim().is_empty() {
                e.push(format!("{p}.username"), "must be set when register = true");
            }
            if !(60..=86_400).contains(&u.register_expires_s) {
                e.push(
                    format!("{p}.register_expires_s"),
                    "must be between 60 and 86400 seconds",
                );
            }
        }
        if u.password.is_empty() && !u.auth_username.is_empty() {
            e.push(format!("{p}.password"), "must be set when auth_username is");
        }
    }

    // [[trunk]]: resolve ids first (omitted: one more than the largest before it).
    let mut next_id = 1u64;
    let mut ids: HashMap<u64, usize> = HashMap::new();
    for (i, t) in cfg.trunk.iter_mut().enumerate() {
        let id = *t.id.get_or_insert(next_id);
        if id == 0 {
            e.push(format!("trunk[{i}].id"), "must be at least 1");
        }
        if let Some(first) = ids.insert(id, i) {
            e.push(
                format!("trunk[{i}].id"),
                format!("duplicate trunk id {id} (also trunk[{first}])"),
            );
        }
        next_id = next_id.max(id.saturating_add(1));
        if t.name.as_deref().map_or(true, str::is_empty) {
            t.name = Some(format!("{}", 10_000u64.saturating_add(id)));
        }
    }
    let mut logins: HashMap<String, usize> = HashMap::new();
    for (i, t) in cfg.trunk.iter().enumerate() {
        let p = format!("trunk[{i}]");
        let login = t.login();
        // Name problems first (bad, else duplicate), then the other fields.
        let (name, other): (Vec<_>, Vec<_>) =
            check_trunk(t).into_iter().partition(|(f, _)| *f == "name");
        if name.is_empty() {
            if let Some(first) = logins.insert(login.to_owned(), i) {
                e.push(
                    format!("{p}.name"),
                    format!("duplicate trunk name `{login}` (also trunk[{first}])"),
                );
            }
        }
        for (field, message) in name.into_iter().chain(other) {
            e.push(format!("{p}.{field}"), message);
        }
    }

    // [[did]]
    let mut numbers = HashSet::new();
    for (i, d) in cfg.did.iter().enumerate() {
        let p = format!("did[{i}]");
        if !is_digits(&d.number) {
            e.push(
                format!("{p}.number"),
                format!("`{}` must be digits (E.164 without +)", d.number),
            );
        } else if !numbers.insert(d.number.as_str()) {
            e.push(
                format!("{p}.number"),
                format!("duplicate DID `{}`", d.number),
            );
        }
        if let Err(m) = check_webhook_url(&d.call_status_url) {
            e.push(format!("{p}.call_status_url"), m);
        }
        let mut prios = HashSet::new();
        for (j, dest) in d.destinations.iter().enumerate() {
            let q = format!("{p}.destinations[{j}]");
            match dest.transport {
                1 => {
                    if let Err(m) = check_sip_uri(&dest.destination) {
                        e.push(format!("{q}.destination"), m);
                    }
                }
                4 => {
                    if !is_digits(dest.destination.trim_start_matches('+')) {
                        e.push(
                            format!("{q}.destination"),
                            "a PSTN destination must be digits",
                        );
                    }
                }
                5 => {
                    if !logins.contains_key(&dest.destination) {
                        e.push(
                            format!("{q}.destination"),
                            format!("no trunk with name `{}`", dest.destination),
                        );
                    }
                }
                other => e.push(
                    format!("{q}.transport"),
                    format!("{other} is not 1 (SIP URI), 4 (PSTN) or 5 (trunk)"),
                ),
            }
            if !prios.insert(dest.priority) {
                e.push(
                    format!("{q}.priority"),
                    format!("priority {} is used twice in this DID", dest.priority),
                );
            }
        }
    }

    if let Err(m) = check_webhook_url(&cfg.webhooks.call_status_url) {
        e.push("webhooks.call_status_url", m);
    }

    // [sync]
    if let Some(s) = &cfg.sync {
        if !(s.url.starts_with("http://") || s.url.starts_with("https://")) {
            e.push("sync.url", "must be an http:// or https:// URL");
        }
        if s.interval_s == 0 {
            e.push("sync.interval_s", "must be at least 1");
        }
    }

    // [security]
    let sec = &cfg.security;
    if sec.max_auth_failures > 0 && !(1..=86_400).contains(&sec.failure_window_s) {
        e.push(
            "security.failure_window_s",
            "must be between 1 and 86400 seconds",
        );
    }
    if sec.max_auth_failures > 0 && !(1..=86_400).contains(&sec.ban_s) {
        e.push("security.ban_s", "must be between 1 and 86400 seconds");
    }
    for (i, ua) in sec.user_agent_block.iter().enumerate() {
        if ua.trim().is_empty() {
            e.push(
                format!("security.user_agent_block[{i}]"),
                "must not be empty",
            );
        }
    }

    // [transport]
    for (key, v) in cfg.transport.sizes() {
        if !(super::MIN_TRANSPORT_BYTES..=super::MAX_TRANSPORT_BYTES).contains(&v) {
            e.push(
                format!("transport.{key}"),
                format!(
                    "must be between {} and {} bytes",
                    super::MIN_TRANSPORT_BYTES,
                    super::MAX_TRANSPORT_BYTES
                ),
            );
        }
    }
    if !(100..=60_000).contains(&cfg.transport.tls_handshake_timeout_ms) {
        e.push(
            "transport.tls_handshake_timeout_ms",
            "must be between 100 and 60000 milliseconds",
        );
    }

    // [registrar]
    let r = &cfg.registrar;
    if r.min_expires == 0 {
        e.push("registrar.min_expires", "must be at least 1");
    }
    if r.min_expires > r.max_expires {
        e.push(
            "registrar.max_expires",
            format!("must be >= min_expires ({})", r.min_expires),
        );
    }
    if r.default_expires < r.min_expires || r.default_expires > r.max_expires {
        e.push(
            "registrar.default_expires",
            format!(
                "must be between min_expires ({}) and max_expires ({})",
                r.min_expires, r.max_expires
            ),
        );
    }
    if r.max_contacts == 0 {
        e.push("registrar.max_contacts", "must be at least 1");
    }
    // Beyond an hour a NAT mapping is long gone (they last 30 s to a few
    // minutes), and a binding outlives max_expires before its first miss.
    if r.keepalive_s > 3600 {
        e.push(
            "registrar.keepalive_s",
            "must be at most 3600 (0 turns keep-alive off)",
        );
    }

    // [media]
    let m = &cfg.media;
    if !(10..=10_000).contains(&m.timeout_ms) {
        e.push("media.timeout_ms", "must be between 10 and 10000 ms");
    }
    if !(1..=10).contains(&m.tries) {
        e.push("media.tries", "must be between 1 and 10");
    }
    let mut seen = HashSet::new();
    for (i, a) in m.rtpengine.iter().enumerate() {
        if !seen.insert(a) {
            e.push(
                format!("media.rtpengine[{i}]"),
                format!("{a} is listed twice"),
            );
        }
    }
    if m.rtpengine.is_empty() {
        let why = "is \"relay\" but [media] rtpengine lists no rtpengine";
        for (i, u) in cfg.upstream.iter().enumerate() {
            if u.media.relays() {
                e.push(format!("upstream[{i}].media"), why);
            }
        }
        for (i, t) in cfg.trunk.iter().enumerate() {
            if t.media.relays() {
                e.push(format!("trunk[{i}].media"), why);
            }
        }
    }

    // [cluster]
    let c = &cfg.cluster;
    if let Some(url) = &c.redis {
        if let Err(why) = super::check_redis_url(url) {
            e.push("cluster.redis", why);
        }
    }
    if let Some(node) = &c.node {
        if let Err(why) = super::check_node_name(node) {
            e.push("cluster.node", why);
        }
    }
    if !(1..=300).contains(&c.heartbeat_s) {
        e.push("cluster.heartbeat_s", "must be between 1 and 300");
    }
    // Two missed heartbeats before a live node counts as dead.
    if c.node_ttl_s < c.heartbeat_s.saturating_mul(2) || c.node_ttl_s > 3600 {
        e.push(
            "cluster.node_ttl_s",
            "must be at least twice heartbeat_s and at most 3600",
        );
    }
    if !(10..=5000).contains(&c.timeout_ms) {
        e.push("cluster.timeout_ms", "must be between 10 and 5000 ms");
    }

    if e.list.is_empty() {
        Ok(())
    } else {
        Err(e.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        for ok in [
            "postgres://sipfront:pw@127.0.0.1:5432/sipfront",
            "postgresql://db.example.net/sipfront?sslmode=disable",
        ] {
            assert!(check_store_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "mysql://127.0.0.1/x",
            "postgres:///sipfront",
            "not a url",
            "postgres://127.0.0.1/x?sslmode=require",
        ] {
            let m = check_store_url(bad).unwrap_err();
            assert!(!m.contains("pw@"), "{m}");
        }
    }

    #[test]
    fn webhook_urls() {
        for ok in [
            "",
            "http://127.0.0.1:8080/hook",
            "https://hooks.example.com/a?b=c",
        ] {
            assert!(check_webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in ["hooks.example.com", "ftp://h/x", "http://", "sip:1@h"] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sip_uris() {
        assert!(check_sip_uri("sip:127.0.0.1:5080;transport=udp").is_ok());
        assert!(check_sip_uri("sips:gw.example.com").is_ok());
        assert!(check_sip_uri("sip:alice@[2001:db8::1]:5060").is_ok());
        assert!(check_sip_uri("http://x").is_err());
        assert!(check_sip_uri("sip::5060").is_err());
        assert!(check_sip_uri("sip:h:99999").is_err());
        assert!(check_sip_uri("sip:h;transport=sctp").is_err());
    }
}
