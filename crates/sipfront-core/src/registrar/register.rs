//! RFC 3261 §10.3 steps 5–8 for one authenticated REGISTER: To check,
//! `*` removal, per-contact expiry, Call-ID/CSeq ordering, RFC 5626/5627
//! instance replacement, the `max_contacts` limit, and the `200` listing.
//!
//! The request is checked whole before the store changes: a refusal (400,
//! 403, 423) leaves every binding as it was (§10.3 step 7 "the update MUST
//! be aborted").

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{Binding, RegisterOutcome, Registrar};
use crate::sip::{Contact, HeaderName, Message, Scheme, StatusCode, Transport};
use crate::transport::ConnId;

/// User-Agent values are kept up to this many bytes.
const MAX_USER_AGENT: usize = 256;

/// A delta-seconds value (RFC 3261 §25.1): all digits; values beyond 32
/// bits saturate (they are "huge" and get clamped to `max_expires`).
fn delta_seconds(v: &str) -> Option<u32> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u32>().unwrap_or(u32::MAX))
}

/// One Contact of the request, resolved.
struct Wanted {
    uri: String,
    instance: Option<String>,
    reg_id: Option<u32>,
    expires: u32,
}

impl Wanted {
    fn matches(&self, b: &Binding) -> bool {
        match &self.instance {
            Some(i) => b.instance.as_deref() == Some(i.as_str()) && b.reg_id == self.reg_id,
            None => b.contact.eq_ignore_ascii_case(&self.uri),
        }
    }
}

fn bad(reason: &str) -> RegisterOutcome {
    RegisterOutcome::refuse(StatusCode::BAD_REQUEST, reason)
}

pub(super) fn register(
    r: &mut Registrar,
    req: &Message,
    login: &str,
    source: SocketAddr,
    transport: Transport,
    conn: Option<ConnId>,
    now: Instant,
) -> RegisterOutcome {
    let cfg = r.cfg;
    let Ok(to) = req.to() else {
        return bad("Bad To");
    };
    if to.uri.user != Some(login) {
        return RegisterOutcome::refuse(
            StatusCode::FORBIDDEN,
            "To User Is Not The Authenticated Login",
        );
    }
    let Ok(call_id) = req.call_id() else {
        return bad("Bad Call-ID");
    };
    let call_id = String::from_utf8_lossy(call_id);
    let Ok(cseq) = req.cseq() else {
        return bad("Bad CSeq");
    };
    let cseq = cseq.seq;
    let header_expires = match req.header(&HeaderName::Expires) {
        None => None,
        Some(v) => match std::str::from_utf8(v).ok().and_then(delta_seconds) {
            Some(e) => Some(e),
            None => return bad("Bad Expires"),
        },
    };

    let mut wildcard = false;
    let mut wanted: Vec<Wanted> = Vec::new();
    for c in req.contacts() {
        match c {
            Err(_) => return bad("Bad Contact"),
            Ok(Contact::Wildcard) => wildcard = true,
            Ok(Contact::Addr(a)) => {
                if !matches!(a.uri.scheme, Scheme::Sip | Scheme::Sips) {
                    return bad("Contact Must Be A SIP URI");
                }
                let expires = match a.params.get("expires") {
                    None => header_expires.unwrap_or(cfg.default_expires),
                    Some(v) => match v.and_then(delta_seconds) {
                        Some(e) => e,
                        None => return bad("Bad Contact expires"),
                    },
                };
                let reg_id = match a.params.get("reg-id") {
                    None => None,
                    Some(v) => match v.and_then(|v| v.trim().parse::<u32>().ok()) {
                        Some(id) => Some(id),
                        None => return bad("Bad Contact reg-id"),
                    },
                };
                wanted.push(Wanted {
                    uri: a.uri.as_str().to_owned(),
                    instance: a.instance().map(str::to_owned),
                    reg_id,
                    expires,
                });
            }
        }
    }

    // The login's live bindings, oldest first, each marked "made by this
    // request" (false for all of them now).
    let mut bindings: Vec<(Binding, bool)> = r
        .store
        .raw(login)
        .iter()
        .filter(|b| b.expires_at > now)
        .map(|b| (b.clone(), false))
        .collect();
    let out_of_order = |b: &Binding| b.call_id == call_id && cseq <= b.cseq;

    if wildcard {
        // §10.3 step 6: `*` only alone and with Expires: 0.
        if !wanted.is_empty() || header_expires != Some(0) {
            return bad("Contact * Needs Expires 0 And No Other Contact");
        }
        if bindings.iter().any(|(b, _)| out_of_order(b)) {
            return bad("CSeq Out Of Order");
        }
        for (b, _) in &bindings {
            log_unregistered(login, b, "Contact: *");
        }
        r.store.replace(login, Vec::new());
        return ok(r, login, now);
    }

    for w in &wanted {
        if w.expires > 0 && w.expires < cfg.min_expires {
            return RegisterOutcome {
                status: StatusCode::INTERVAL_TOO_BRIEF,
                headers: vec![("Min-Expires", cfg.min_expires.to_string())],
                reason: None,
            };
        }
    }
    if wanted.iter().filter(|w| w.expires > 0).count() > cfg.max_contacts {
        return RegisterOutcome::refuse(StatusCode::FORBIDDEN, "Too Many Contacts");
    }

    let user_agent = req
        .header(&HeaderName::UserAgent)
        .map_or_else(String::new, |v| {
            let v = v.get(..MAX_USER_AGENT).unwrap_or(v);
            String::from_utf8_lossy(v).into_owned()
        });
    let mut removed: Vec<(Binding, &'static str)> = Vec::new();
    for w in wanted {
        if let Some(i) = bindings.iter().position(|(b, _)| w.matches(b)) {
            let (old, fresh) = bindings.remove(i);
            if !fresh && out_of_order(&old) {
                return bad("CSeq Out Of Order");
            }
            if w.expires == 0 {
                if !fresh {
                    removed.push((old, "Expires 0"));
                }
                continue;
            }
            if !fresh && (old.source != source || old.contact != w.uri) {
                // Same instance from a new NAT binding, or same URI from a
                // new source: the new one replaces it.
                tracing::debug!(login, old = %old.contact, old_source = %old.source, "binding replaced");
            }
        } else if w.expires == 0 {
            continue;
        }
        let secs = u64::from(w.expires.min(cfg.max_expires));
        let expires_at = now.checked_add(Duration::from_secs(secs)).unwrap_or(now);
        bindings.push((
            Binding {
                contact: w.uri,
                source,
                transport,
                conn,
                expires_at,
                instance: w.instance,
                reg_id: w.reg_id,
                call_id: call_id.clone().into_owned(),
                cseq,
                user_agent: user_agent.clone(),
                ping: Default::default(),
            },
            true,
        ));
    }
    // Evict the least recently registered beyond the limit (module doc).
    while bindings.len() > cfg.max_contacts {
        let (old, _) = bindings.remove(0);
        removed.push((old, "max_contacts reached, oldest evicted"));
    }

    for (b, why) in &removed {
        log_unregistered(login, b, why);
    }
    for (b, fresh) in &bindings {
        if *fresh {
            tracing::info!(
                login,
                contact = %b.contact,
                %source,
                %transport,
                expires = b.expires_in(now),
                "registered"
            );
        }
    }
    r.store
        .replace(login, bindings.into_iter().map(|(b, _)| b).collect());
    ok(r, login, now)
}

fn log_unregistered(login: &str, b: &Binding, why: &str) {
    tracing::info!(
        login,
        contact = %b.contact,
        source = %b.source,
        transport = %b.transport,
        "unregistered: {why}"
    );
}

/// `200` listing every current binding of `login` (§10.3 step 8), with
/// its remaining time and, for RFC 5626 bindings, instance and reg-id.
fn ok(r: &Registrar, login: &str, now: Instant) -> RegisterOutcome {
    let headers = r
        .store
        .lookup(login, now)
        .into_iter()
        .map(|b| {
            let mut v = format!("<{}>;expires={}", b.contact, b.expires_in(now));
            if let Some(i) = &b.instance {
                v.push_str(&format!(";+sip.instance=\"{i}\""));
            }
            if let Some(id) = b.reg_id {
                v.push_str(&format!(";reg-id={id}"));
            }
            ("Contact", v)
        })
        .collect();
    RegisterOutcome {
        status: StatusCode::OK,
        headers,
        reason: None,
    }
}
