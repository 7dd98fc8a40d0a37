//! URIs: `sip:`/`sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), IPv6 references
//! (RFC 5118), and a pass-through form for other absolute URIs.

use super::lex::{self, Params};
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
            Host::V4(a) => f.pad(super::text::ipv4(*a, &mut [0; 15])),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Scans `host[:port]` (host may be `[v6]`) in `s[i..end]`, stopping at the
/// first `;` or at `end`, and parses both. With `lws` (Via sent-by), SWS is
/// allowed around `:` and before the `;`.
///
/// # Returns
/// The host, the port and the index of the `;` (or `end`); `None` when
/// anything else follows the host or port.
pub(crate) fn scan_hostport(
    s: &str,
    mut i: usize,
    end: usize,
    lws: bool,
) -> Option<(Host<'_>, Option<u16>, usize)> {
    let b = s.as_bytes().get(..end)?;
    let host = if b.get(i) == Some(&b'[') {
        let hs = i;
        i = lex::skip_class(b, i + 1, lex::HEX_COLON_DOT);
        if b.get(i) != Some(&b']') {
            return None;
        }
        i += 1;
        Host::parse(s.get(hs..i)?)?
    } else {
        // one pass: host characters, noting whether it could be an IPv4 literal
        let (n, numeric) = lex::run_of(b.get(i..)?, lex::HOST);
        if n == 0 {
            return None;
        }
        let h = s.get(i..i + n)?;
        i += n;
        match numeric.then(|| parse_v4(h.as_bytes())).flatten() {
            Some(a) => Host::V4(a),
            None => Host::Name(h),
        }
    };
    let skip = |i: usize| {
        if lws {
            lex::skip_class(b, i, lex::LWS)
        } else {
            i
        }
    };
    i = skip(i);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        let ds = skip(i + 1);
        i = lex::skip_class(b, ds, lex::DIGIT);
        if i == ds || i - ds > 5 {
            return None;
        }
        let n = b
            .get(ds..i)?
            .iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
        port = Some(u16::try_from(n).ok()?);
        i = skip(i);
    }
    matches!(b.get(i), None | Some(b';')).then_some((host, port, i))
}

/// Dotted-quad IPv4 (no leading-zero or range tricks beyond 0..=255): four
/// runs of one to three digits, in one pass.
fn parse_v4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut k = 0;
    let mut v: u16 = 0;
    let mut digits = 0;
    for &c in b {
        if c == b'.' {
            if digits == 0 {
                return None;
            }
            *octets.get_mut(k)? = u8::try_from(v).ok()?;
            k += 1;
            v = 0;
            digits = 0;
        } else {
            digits += 1;
            if digits > 3 {
                return None;
            }
            v = v * 10 + u16::from(c.wrapping_sub(b'0'));
        }
    }
    if digits == 0 || k != 3 {
        return None;
    }
    *octets.get_mut(3)? = u8::try_from(v).ok()?;
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
        let (uri, end) = Self::scan(raw, false)?;
        (end == raw.len()).then_some(uri)
    }

    /// Parses the URI at the start of `s` in one pass: validates the
    /// characters and records where user, password, host, port, parameters
    /// and headers are while it scans.
    ///
    /// # Returns
    /// The URI and the index of the first byte that cannot belong to it (a
    /// space, `<`, `>`, `"`, a control byte, or `s.len()`); an `Other`-scheme
    /// URI stops only at space and control bytes, and at `>` when `in_angle`.
    pub(crate) fn scan(s: &'a str, in_angle: bool) -> Option<(Uri<'a>, usize)> {
        let b = s.as_bytes();
        let head = b
            .get(..4)
            .and_then(|p| <[u8; 4]>::try_from(p).ok())
            .map_or(0, u32::from_le_bytes);
        // case-insensitive letters, exact `:` (bit 5 is set in every letter)
        let (scheme, rest) = if head | 0x0020_2020 == u32::from_le_bytes(*b"sip:") {
            (Scheme::Sip, 4)
        } else if head | 0x2020_2020 == u32::from_le_bytes(*b"sips") && b.get(4) == Some(&b':') {
            (Scheme::Sips, 5)
        } else if head | 0x0020_2020 == u32::from_le_bytes(*b"tel:") {
            (Scheme::Tel, 4)
        } else {
            return Self::scan_other(s, in_angle);
        };
        if scheme == Scheme::Tel {
            let end = lex::skip_class(b, rest, lex::URI);
            let num_end = lex::skip_class(b, rest, lex::TEL);
            if num_end == rest || !matches!(b.get(num_end), Some(b';')) && num_end != end {
                return None;
            }
            let params = match b.get(num_end) {
                Some(b';') if num_end < end => Params::parse_uri(s.get(num_end + 1..end)?)?,
                _ => Params::default(),
            };
            let uri = Uri {
                scheme,
                user: Some(s.get(rest..num_end)?),
                password: None,
                host: Host::Name(""),
                port: None,
                params,
                headers: None,
                raw: s.get(..end)?,
            };
            return Some((uri, end));
        }
        // One pass to the end of the URI: the last `@` before `?` ends the
        // userinfo (a user part may hold `;`), the first `:` splits it.
        let mut i = rest;
        let mut at = None;
        let mut colon = None;
        while let Some(&c) = b.get(i) {
            let k = lex::CLASS[usize::from(c)];
            if k & (lex::URI | lex::URI_DELIM) != lex::URI {
                if k & lex::URI == 0 || c == b'?' {
                    break;
                }
                if c == b'@' {
                    at = Some(i);
                } else if c == b':' && colon.is_none() {
                    colon = Some(i);
                }
            }
            i += 1;
        }
        let main_end = i;
        let headers = if b.get(i) == Some(&b'?') {
            i = lex::skip_class(b, i + 1, lex::URI);
            Some(s.get(main_end + 1..i)?)
        } else {
            None
        };
        let (user, password, hp) = match at {
            Some(a) => {
                let (user_end, password) = match colon {
                    Some(c) if c < a => (c, Some(s.get(c + 1..a)?)),
                    _ => (a, None),
                };
                if user_end == rest {
                    return None;
                }
                (Some(s.get(rest..user_end)?), password, a + 1)
            }
            None => (None, None, rest),
        };
        let (host, port, semi) = scan_hostport(s, hp, main_end, false)?;
        let params = if semi < main_end {
            Params::parse_uri(s.get(semi + 1..main_end)?)?
        } else {
            Params::default()
        };
        let uri = Uri {
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
            raw: s.get(..i)?,
        };
        Some((uri, i))
    }

    /// Any other absolute URI (`urn:`, `mailto:` ...): a scheme, `:`, and
    /// at least one byte up to space or a control byte.
    #[cold]
    fn scan_other(s: &'a str, in_angle: bool) -> Option<(Uri<'a>, usize)> {
        let b = s.as_bytes();
        if !b.first().is_some_and(u8::is_ascii_alphabetic) {
            return None;
        }
        let colon = lex::skip_class(b, 1, lex::SCHEME);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let end = b
            .iter()
            .skip(colon + 1)
            .position(|&c| c <= b' ' || c == 0x7f || (in_angle && c == b'>'))
            .map_or(b.len(), |n| colon + 1 + n);
        if end == colon + 1 {
            return None;
        }
        let uri = Uri {
            scheme: Scheme::Other,
            user: None,
            password: None,
            host: Host::Name(""),
            port: None,
            params: Params::default(),
            headers: None,
            raw: s.get(..end)?,
        };
        Some((uri, end))
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
        for (text, v4) in [
            ("1.2.3.4", true),
            ("255.255.255.255", true),
            ("256.1.1.1", false),
            ("1.2.3", false),
            ("1.2.3.4.5", false),
            ("1..3.4", false),
            (".1.2.3", false),
            ("1.2.3.", false),
            ("0001.2.3.4", false),
        ] {
            let full = format!("sip:{text}");
            let u = Uri::parse(&full).unwrap();
            assert_eq!(matches!(u.host, Host::V4(_)), v4, "{text}");
            assert_eq!(
                u.host.to_string(),
                text.parse::<Ipv4Addr>()
                    .map_or(text.to_string(), |a| a.to_string())
            );
        }
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
