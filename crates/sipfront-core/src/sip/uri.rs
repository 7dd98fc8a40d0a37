//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), IPv6 references
//! (RFC 5118), and a pass-through form for other absolute URIs.

use super::lex::{self, split_byte, Params};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
    /// Any other absolute URI (`mailto:`, `urn:` ...). Not acceptable as a
    /// Request-URI (416), allowed in headers.
    Other,
}

/// A host: a name or a parsed IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A domain name (or, for `tel:`/other schemes, the empty string).
    Name(&'a str),
    /// IPv4 address.
    V4(Ipv4Addr),
    /// IPv6 reference (written `[...]` on the wire).
    V6(Ipv6Addr),
}

impl Host<'_> {
    /// The address, when the host is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::V4(a) => Some(IpAddr::V4(a)),
            Host::V6(a) => Some(IpAddr::V6(a)),
            Host::Name(_) => None,
        }
    }

    /// Parses `host` (name, IPv4, or `[IPv6]`).
    pub(crate) fn parse(s: &str) -> Option<Host<'_>> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return inner.parse::<Ipv6Addr>().ok().map(Host::V6);
        }
        if s.is_empty() {
            return None;
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            if let Ok(a) = s.parse::<Ipv4Addr>() {
                return Some(Host::V4(a));
            }
        }
        if s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            Some(Host::Name(s))
        } else {
            None
        }
    }
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Splits `host[:port]` (host may be `[v6]`; SWS around `:` allowed, as in Via
/// sent-by) and parses both.
pub(crate) fn parse_hostport(s: &str) -> Option<(Host<'_>, Option<u16>)> {
    let b = s.as_bytes();
    let (host, rest) = if b.first() == Some(&b'[') {
        let close = b.iter().position(|&c| c == b']')?;
        let (h, r) = s.split_at_checked(close + 1)?;
        (Host::parse(h)?, r)
    } else {
        // one pass: host characters, noting whether it could be an IPv4 literal
        let (i, numeric) = lex::run_of(b, lex::HOST);
        let (h, r) = s.split_at_checked(i)?;
        if h.is_empty() {
            return None;
        }
        let host = match numeric.then(|| parse_v4(h.as_bytes())).flatten() {
            Some(a) => Host::V4(a),
            None => Host::Name(h),
        };
        (host, r)
    };
    let rest = lex::trim_str(rest);
    if rest.is_empty() {
        return Some((host, None));
    }
    let port = lex::trim_str(rest.strip_prefix(':')?);
    if port.is_empty() || port.len() > 5 {
        return None;
    }
    let mut n: u32 = 0;
    for c in port.bytes() {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some((host, Some(u16::try_from(n).ok()?)))
}

/// Dotted-quad IPv4 (no leading-zero or range tricks beyond 0..=255).
fn parse_v4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = b.split(|&c| c == b'.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 {
            return None;
        }
        let mut v: u16 = 0;
        for &d in p {
            v = v * 10 + u16::from(d.wrapping_sub(b'0'));
        }
        *o = u8::try_from(v).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// A parsed URI borrowing from the message buffer.
///
/// For `tel:` URIs the number is in `user` and `host` is `Name("")`; for
/// other schemes only `scheme` and [`Uri::as_str`] are meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uri<'a> {
    /// The scheme.
    pub scheme: Scheme,
    /// User part (escapes kept), or the telephone number for `tel:`.
    pub user: Option<&'a str>,
    /// Password after `user:` (deprecated by RFC 3261 but legal).
    pub password: Option<&'a str>,
    /// Host.
    pub host: Host<'a>,
    /// Explicit port.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// Header part after `?`, raw.
    pub headers: Option<&'a str>,
    raw: &'a str,
}

impl<'a> Uri<'a> {
    /// Parses an absolute URI.
    ///
    /// # Errors
    /// `None` if the text is not a well-formed sip/sips/tel URI or an absolute
    /// URI of another scheme.
    pub fn parse(raw: &'a str) -> Option<Uri<'a>> {
        let (scheme_s, rest) = split_byte(raw, b':')?;
        let scheme = match scheme_s.len() {
            3 if scheme_s.eq_ignore_ascii_case("sip") => Scheme::Sip,
            4 if scheme_s.eq_ignore_ascii_case("sips") => Scheme::Sips,
            3 if scheme_s.eq_ignore_ascii_case("tel") => Scheme::Tel,
            _ => Scheme::Other,
        };
        let rb = rest.as_bytes();
        if scheme == Scheme::Other {
            if rb.iter().any(|&b| b <= b' ' || b == 0x7f) {
                return None;
            }
            let ok = scheme_s
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic())
                && scheme_s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
            if !ok || rest.is_empty() {
                return None;
            }
            return Some(Uri {
                scheme,
                user: None,
                password: None,
                host: Host::Name(""),
                port: None,
                params: Params::default(),
                headers: None,
                raw,
            });
        }
        if !lex::all_in(rb, lex::URI) {
            return None;
        }
        if scheme == Scheme::Tel {
            let (number, params) = split_byte(rest, b';').unwrap_or((rest, ""));
            let ok = !number.is_empty()
                && number.bytes().all(|b| {
                    b.is_ascii_hexdigit()
                        || matches!(
                            b,
                            b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#' | b'p' | b'w'
                        )
                });
            if !ok {
                return None;
            }
            return Some(Uri {
                scheme,
                user: Some(number),
                password: None,
                host: Host::Name(""),
                port: None,
                params: Params::parse_uri(params)?,
                headers: None,
                raw,
            });
        }
        let question = memchr::memchr(b'?', rb);
        let at = memchr::memrchr(b'@', rb.get(..question.unwrap_or(rb.len()))?);
        let (main, headers) = match question {
            Some(q) => (rest.get(..q)?, Some(rest.get(q + 1..)?)),
            None => (rest, None),
        };
        let (user, password, hostpart) = match at {
            Some(a) => {
                let userinfo = main.get(..a)?;
                let (user, pw) = match split_byte(userinfo, b':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if user.is_empty() {
                    return None;
                }
                (Some(user), pw, main.get(a + 1..)?)
            }
            None => (None, None, main),
        };
        let (hostport, params) = split_byte(hostpart, b';').unwrap_or((hostpart, ""));
        let (host, port) = parse_hostport(hostport)?;
        Some(Uri {
            scheme,
            user,
            password,
            host,
            port,
            params: Params::parse_uri(params)?,
            headers,
            raw,
        })
    }

    /// The URI text exactly as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The telephone number of a `tel:` URI.
    pub fn tel_number(&self) -> Option<&'a str> {
        (self.scheme == Scheme::Tel).then_some(self.user).flatten()
    }

    /// Whether the scheme is one we route (sip, sips, tel).
    pub fn is_supported(&self) -> bool {
        self.scheme != Scheme::Other
    }

    /// The `transport` URI parameter.
    pub fn transport_param(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// The transport this URI asks for (RFC 3263 §4.1): `sips:` means TLS
    /// (RFC 5630 §3.1.3: whatever `transport=` says), else `;transport=`;
    /// `Ok(None)` when it names none.
    ///
    /// # Errors
    /// `transport=` names one sipfront does not speak (`sctp`, ...) or
    /// cannot dial: a WebSocket peer is reached only over the connection it
    /// opened (RFC 7118 §5).
    pub fn transport(&self) -> Result<Option<super::Transport>, UnknownTransport> {
        if self.scheme == Scheme::Sips {
            return Ok(Some(super::Transport::Tls));
        }
        match self.transport_param() {
            None => Ok(None),
            Some(t) => super::Transport::from_token(t)
                .filter(|t| !t.is_websocket())
                .map(Some)
                .ok_or(UnknownTransport),
        }
    }

    /// Whether the `lr` (loose routing) flag is present.
    pub fn is_loose_route(&self) -> bool {
        self.params.contains("lr")
    }
}

/// A `transport=` URI parameter naming a transport sipfront does not speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownTransport;

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_full() {
        let u =
            Uri::parse("sip:alice:secret@example.com:5070;transport=tcp;lr?subject=hi").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Host::Name("example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport_param(), Some("tcp"));
        assert!(u.is_loose_route());
        assert_eq!(u.headers, Some("subject=hi"));
    }

    #[test]
    fn ipv6_and_ipv4() {
        let u = Uri::parse("sips:[2001:db8::10]:5061").unwrap();
        assert_eq!(u.host, Host::V6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5061));
        let u = Uri::parse("sip:10.0.0.1").unwrap();
        assert_eq!(u.host, Host::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(Uri::parse("sip:[2001:db8::10").is_none());
        assert!(Uri::parse("sip:host:99999").is_none());
        assert!(Uri::parse("sip:host:").is_none());
    }

    #[test]
    fn tel_and_other() {
        let u = Uri::parse("tel:+1-212-555-0101;phone-context=example.com").unwrap();
        assert_eq!(u.tel_number(), Some("+1-212-555-0101"));
        assert_eq!(u.params.get("phone-context"), Some(Some("example.com")));
        let u = Uri::parse("mailto:bob@example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
        assert!(!u.is_supported());
        assert!(Uri::parse("nocolon").is_none());
        assert!(Uri::parse("sip:a b@host").is_none());
    }

    #[test]
    fn user_with_semicolon_and_escapes() {
        let u = Uri::parse("sip:+1212;npdi@h.example;user=phone").unwrap();
        assert_eq!(u.user, Some("+1212;npdi"));
        assert_eq!(u.params.get("user"), Some(Some("phone")));
        let u = Uri::parse("sip:sip%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user, Some("sip%3Auser%40example.com"));
    }
}
