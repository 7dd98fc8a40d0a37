//! Caller identity on the B-leg INVITE: RFC 3323 privacy, RFC 3325
//! P-Asserted-Identity, and which identity headers cross in each direction
//! (RFC 5806 Diversion, RFC 7044 History-Info, RFC 8224 Identity).
//!
//! The upstream carriers are our RFC 3325 trust domain: toward them the
//! caller's number (the trunk's caller-ID rule, SPEC §3) always travels in
//! P-Asserted-Identity, and `Privacy: id`/`header` hides it only in From.
//! Customer trunks are outside it: a hidden caller reaches another trunk
//! with an anonymous From and no P-Asserted-Identity (RFC 3325 §5).

use crate::b2bua::record::Direction;
use crate::config::NumberFormat;
use crate::sip::{HeaderName, Message, NameAddr};

/// The From of a caller who asked for privacy (RFC 3323 §4.1.1.3).
pub(crate) const ANONYMOUS_FROM: &str = "\"Anonymous\" <sip:anonymous@anonymous.invalid>";

/// Identity headers a placed call (from a trunk) carries on as sent: the
/// PBX's record of how the call was forwarded to it.
const PLACED: &[&[u8]] = &[b"Diversion", b"History-Info"];

/// Identity headers a received call (from a carrier) carries on unchanged:
/// the carrier's assertion, its forwarding record, and its STIR/SHAKEN
/// signature with the `Date` the signature covers (RFC 8224 §4.1).
const RECEIVED: &[&[u8]] = &[
    b"P-Asserted-Identity",
    b"Diversion",
    b"History-Info",
    b"Identity",
    b"Date",
];

/// The identity headers copied from the A-leg INVITE in `direction`.
pub(crate) fn passed(direction: Direction) -> &'static [&'static [u8]] {
    match direction {
        Direction::Placed => PLACED,
        Direction::Received => RECEIVED,
    }
}

/// Whether the INVITE's `Privacy` hides the caller: `id` (RFC 3325 §9.3)
/// or `header` (RFC 3323 §4.2). Values are `;`-separated (commas are
/// accepted too, as some PBXs write them), case-insensitive.
pub(crate) fn hides_caller(invite: &Message) -> bool {
    invite
        .headers(&HeaderName::from_bytes(b"Privacy"))
        .flat_map(|v| v.split(|&b| b == b';' || b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|v| v.eq_ignore_ascii_case(b"id") || v.eq_ignore_ascii_case(b"header"))
}

/// From (without tag) and P-Asserted-Identity of one B-leg INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The From name-addr.
    pub(crate) from: String,
    /// P-Asserted-Identity to add, if any (a received call's own one
    /// crosses unchanged through [`passed`] instead).
    pub(crate) pai: Option<String>,
}

/// What decides the B-leg caller identity of one attempt.
pub(crate) struct CallerFacts<'a> {
    /// Placed or received.
    pub(crate) direction: Direction,
    /// The number the policy chose (digits; may be empty).
    pub(crate) caller_id: &'a str,
    /// The A-leg From.
    pub(crate) a_from: &'a NameAddr<'a>,
    /// The A-leg INVITE asked for privacy ([`hides_caller`]).
    pub(crate) private: bool,
    /// The hop is an upstream carrier wanting numbers written this way.
    pub(crate) carrier: Option<NumberFormat>,
    /// Host of our From/PAI URIs (`server.public_address`).
    pub(crate) host: &'a str,
}

/// The caller identity of one B-leg attempt.
pub(crate) fn b_leg_caller(f: &CallerFacts<'_>) -> Caller {
    let written = |n: &str| f.carrier.unwrap_or_default().write(n);
    let asserted =
        (!f.caller_id.is_empty()).then(|| format!("<sip:{}@{}>", written(f.caller_id), f.host));
    let placed = f.direction == Direction::Placed;
    if placed && f.private {
        return Caller {
            from: ANONYMOUS_FROM.to_owned(),
            pai: asserted.filter(|_| f.carrier.is_some()),
        };
    }
    let user = match f.caller_id {
        "" => f.a_from.uri.user.unwrap_or("anonymous").to_owned(),
        c => written(c),
    };
    let from = match f.a_from.display {
        Some(d) => format!("\"{d}\" <sip:{user}@{}>", f.host),
        None => format!("<sip:{user}@{}>", f.host),
    };
    Caller {
        from,
        pai: asserted.filter(|_| placed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn invite(privacy: Option<&str>) -> Message {
        let mut text = String::from(
            "INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
             From: \"Alice\" <sip:201@pbx>;tag=a\r\nTo: <sip:1@h>\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n",
        );
        if let Some(p) = privacy {
            text.push_str(&format!("Privacy: {p}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(Bytes::from(text)).unwrap()
    }

    #[test]
    fn privacy_values_that_hide_the_caller() {
        assert!(hides_caller(&invite(Some("id"))));
        assert!(hides_caller(&invite(Some("header;critical"))));
        assert!(hides_caller(&invite(Some("user; ID"))));
        assert!(!hides_caller(&invite(Some("none"))));
        assert!(!hides_caller(&invite(Some("session"))));
        assert!(!hides_caller(&invite(None)));
    }

    fn caller(direction: Direction, private: bool, carrier: Option<NumberFormat>) -> Caller {
        let inv = invite(None);
        let from = inv.from().unwrap();
        b_leg_caller(&CallerFacts {
            direction,
            caller_id: "12121234567",
            a_from: &from,
            private,
            carrier,
            host: "192.0.2.1",
        })
    }

    #[test]
    fn a_hidden_caller_is_anonymous_in_from_and_asserted_only_to_carriers() {
        let c = caller(Direction::Placed, true, Some(NumberFormat::Digits));
        assert_eq!(c.from, ANONYMOUS_FROM);
        assert_eq!(c.pai.as_deref(), Some("<sip:12121234567@192.0.2.1>"));
        // Another customer's trunk is outside the trust domain.
        let c = caller(Direction::Placed, true, None);
        assert_eq!((c.from.as_str(), c.pai), (ANONYMOUS_FROM, None));
    }

    #[test]
    fn plus_format_writes_the_caller_with_plus() {
        let c = caller(Direction::Placed, false, Some(NumberFormat::Plus));
        assert_eq!(c.from, "\"Alice\" <sip:+12121234567@192.0.2.1>");
        assert_eq!(c.pai.as_deref(), Some("<sip:+12121234567@192.0.2.1>"));
        let c = caller(Direction::Placed, true, Some(NumberFormat::Plus));
        assert_eq!(c.pai.as_deref(), Some("<sip:+12121234567@192.0.2.1>"));
    }

    #[test]
    fn received_calls_add_no_assertion_of_their_own() {
        // The carrier's P-Asserted-Identity crosses as it came (`passed`).
        let c = caller(Direction::Received, true, None);
        assert_eq!(
            (c.from.as_str(), c.pai),
            ("\"Alice\" <sip:12121234567@192.0.2.1>", None)
        );
        assert!(passed(Direction::Received).contains(&&b"Identity"[..]));
        assert!(!passed(Direction::Placed).contains(&&b"P-Asserted-Identity"[..]));
    }
}
