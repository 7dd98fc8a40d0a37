//! Answers owed by any SIP element before policy: the order of checks is
//! RFC 3261 §8.2 (method, then `Require`) preceded by the proxy's
//! Max-Forwards check (§16.3 step 3), as Kamailio scripts do it.

use bytes::Bytes;

use super::{EndpointConfig, Inbound};
use crate::sip::build::ResponseBuilder;
use crate::sip::random::Random;
use crate::sip::{HeaderName, Message, Method, ParseError, StatusCode};

/// Methods we act on today; sent in `Allow` (RFC 3261 §20.5). Everything
/// but OPTIONS, INVITE, ACK, CANCEL and REGISTER only exists inside a
/// call's dialog.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, NOTIFY, REFER, REGISTER";

/// Option tags we support (RFC 3261 §19.2); a `Require` naming any other gets `420`.
pub const SUPPORTED: &[&str] = &["100rel", "timer"];

/// What the SDP-less core accepts in bodies (RFC 3261 §11.2).
const ACCEPT: &str = "application/sdp";

/// A response we originate, with its status for counting.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) bytes: Bytes,
}

/// The answer to a well-formed request that opened a new server transaction.
///
/// ACK never reaches here: it opens no transaction (RFC 3261 §17.2.3).
pub(super) fn answer(
    req: &Message,
    inbound: &Inbound,
    cfg: &EndpointConfig,
    rng: &mut Random,
) -> Answer {
    let (status, builder) = decide(req);
    let builder = builder
        .received(inbound.peer)
        .to_tag(&rng.tag())
        .server(&cfg.server_header);
    Answer {
        status,
        bytes: builder.build(),
    }
}

/// `503` with `Retry-After` (rate limit, overload): try again later.
pub(super) fn unavailable(
    req: &Message,
    inbound: &Inbound,
    cfg: &EndpointConfig,
    rng: &mut Random,
) -> Answer {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let builder = ResponseBuilder::new(req, status)
        .received(inbound.peer)
        .to_tag(&rng.tag())
        .server(&cfg.server_header)
        .header("Retry-After", "5");
    Answer {
        status,
        bytes: builder.build(),
    }
}

/// The answer owed before any processing (483, then 420), if one is.
pub(super) fn precheck(
    req: &Message,
    inbound: &Inbound,
    cfg: &EndpointConfig,
    rng: &mut Random,
) -> Option<Answer> {
    let (status, builder) = early(req)?;
    let builder = builder
        .received(inbound.peer)
        .to_tag(&rng.tag())
        .server(&cfg.server_header);
    Some(Answer {
        status,
        bytes: builder.build(),
    })
}

fn early(req: &Message) -> Option<(StatusCode, ResponseBuilder)> {
    let respond = |status| (status, ResponseBuilder::new(req, status));
    if let Ok(Some(0)) = req.max_forwards() {
        return Some(respond(StatusCode::TOO_MANY_HOPS));
    }
    // §8.2.2.3: Require is not checked on CANCEL (and ACK never gets here).
    if req.method() != Some(&Method::Cancel) {
        let unsupported = unsupported_tags(req);
        if !unsupported.is_empty() {
            let (status, b) = respond(StatusCode::BAD_EXTENSION);
            return Some((status, b.header("Unsupported", &unsupported.join(", "))));
        }
    }
    None
}

fn decide(req: &Message) -> (StatusCode, ResponseBuilder) {
    if let Some(early) = early(req) {
        return early;
    }
    let respond = |status| (status, ResponseBuilder::new(req, status));
    let method = req.method().cloned().unwrap_or(Method::Other(Bytes::new()));
    match method {
        Method::Options => {
            let (status, b) = respond(StatusCode::OK);
            let b = b
                .header("Allow", ALLOW)
                .header("Accept", ACCEPT)
                .header("Supported", &SUPPORTED.join(", "));
            (status, b)
        }
        // A CANCEL that matched no INVITE server transaction (§9.2).
        Method::Cancel => respond(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST),
        // Dialog methods outside a dialog (§12.2.2).
        Method::Bye
        | Method::Update
        | Method::Info
        | Method::Prack
        | Method::Notify
        | Method::Refer => respond(StatusCode::CALL_TRANSACTION_DOES_NOT_EXIST),
        Method::Other(_) => respond(StatusCode::NOT_IMPLEMENTED),
        _ => {
            let (status, b) = respond(StatusCode::METHOD_NOT_ALLOWED);
            (status, b.header("Allow", ALLOW))
        }
    }
}

/// Option tags in `Require` and `Proxy-Require` that we do not support.
fn unsupported_tags(req: &Message) -> Vec<String> {
    let mut out = Vec::new();
    for name in [HeaderName::Require, HeaderName::ProxyRequire] {
        for value in req.headers(&name) {
            for tag in value.split(|&c| c == b',') {
                let tag = String::from_utf8_lossy(tag.trim_ascii());
                if !tag.is_empty() && !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(&tag)) {
                    out.push(tag.into_owned());
                }
            }
        }
    }
    out
}

/// The answer to a request that failed to parse, when one can be addressed.
///
/// Responses are never answered, and a request without a parseable top Via,
/// From, To, Call-ID and CSeq cannot be answered (RFC 3261 §8.2.6): those are
/// dropped. The reason phrase says what was wrong, so a person reading a
/// trace sees why.
pub(super) fn reject(
    raw: &Bytes,
    err: &ParseError,
    inbound: &Inbound,
    cfg: &EndpointConfig,
    rng: &mut Random,
) -> Option<Bytes> {
    let req = Message::parse_for_reply(raw.clone())?;
    let b = ResponseBuilder::new(&req, err.status())
        .reason(err.reason())
        .received(inbound.peer)
        .to_tag(&rng.tag())
        .server(&cfg.server_header);
    Some(b.build())
}
