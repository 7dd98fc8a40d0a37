//! Addresses in From, To, Contact, Route and Record-Route (RFC 3261 §20.10,
//! §20.20, §20.39, §20.30, §20.34, §25.1 name-addr / addr-spec).

use super::lex::{self, Params};
use super::uri::Uri;
use std::borrow::Cow;

/// `[display-name] <uri> *(;param)` or `addr-spec *(;param)`.
///
/// In the addr-spec form everything after the first `;` is a header parameter,
/// not a URI parameter (RFC 3261 §20.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NameAddr<'a> {
    /// Display name: the inside of a quoted string (escapes kept) or the token
    /// run before `<`. `None` when absent.
    pub display: Option<&'a str>,
    /// The address.
    pub uri: Uri<'a>,
    /// Header parameters (`tag`, `expires`, `q`, `+sip.instance` ...).
    pub params: Params<'a>,
    /// Whether `display` came from a quoted-string (escapes apply).
    quoted: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (one element of a comma list).
    ///
    /// # Errors
    /// `None` on unterminated quotes or `<`, an invalid URI or bad params.
    pub fn parse(value: &'a [u8]) -> Option<NameAddr<'a>> {
        Self::parse_with_tag(value).map(|(n, _)| n)
    }

    /// [`NameAddr::parse`] that also returns [`NameAddr::tag`] (found in the
    /// same pass over the parameters).
    pub(crate) fn parse_with_tag(value: &'a [u8]) -> Option<(NameAddr<'a>, Option<&'a str>)> {
        let s = std::str::from_utf8(lex::trim(value)).ok()?;
        let (display, after_display) = if s.starts_with('"') {
            let (d, rest) = lex::take_quoted(s)?;
            let rest = lex::skip_lws(rest);
            if !rest.starts_with('<') {
                return None;
            }
            (Some(d), rest)
        } else if let Some(lt) = memchr::memchr(b'<', s.as_bytes()) {
            let (d, rest) = s.split_at_checked(lt)?;
            let d = lex::trim_str(d);
            if d.bytes().any(|b| b == b'"' || b == b'>') {
                return None;
            }
            ((!d.is_empty()).then_some(d), rest)
        } else {
            (None, s)
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let (uri, rest) = lex::split_byte(inner, b'>')?;
            let uri = Uri::parse(lex::trim_str(uri))?;
            let rest = lex::skip_lws(rest);
            let params = if rest.is_empty() {
                ""
            } else {
                rest.strip_prefix(';')?
            };
            let (params, tag) = Params::parse_get(params, "tag")?;
            let n = NameAddr {
                display,
                uri,
                params,
                quoted: s.starts_with('"'),
            };
            Some((n, tag.flatten()))
        } else {
            let (uri, params) = after_display.split_once(';').unwrap_or((after_display, ""));
            let uri = lex::trim_str(uri);
            if uri.bytes().any(|b| matches!(b, b'>' | b'"' | b'?' | b',')) {
                return None;
            }
            let uri = Uri::parse(uri)?;
            let (params, tag) = Params::parse_get(params, "tag")?;
            let n = NameAddr {
                display: None,
                uri,
                params,
                quoted: false,
            };
            Some((n, tag.flatten()))
        }
    }

    /// The `tag` parameter (dialog identification, RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The display name with quoted-pair escapes removed.
    pub fn display_unescaped(&self) -> Option<Cow<'a, str>> {
        if self.quoted {
            self.display.map(lex::unescape)
        } else {
            self.display.map(Cow::Borrowed)
        }
    }

    /// Contact `expires` parameter (RFC 3261 §10.2.1.1).
    pub fn expires(&self) -> Option<u32> {
        self.params
            .get("expires")
            .flatten()
            .and_then(|e| e.parse().ok())
    }

    /// Contact `q` parameter in thousandths (`q=0.5` -> 500).
    pub fn q(&self) -> Option<u16> {
        let q = self.params.get("q").flatten()?;
        let (int, frac) = q.split_once('.').unwrap_or((q, ""));
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut milli: u16 = match int {
            "0" => 0,
            "1" => 1000,
            _ => return None,
        };
        let mut scale = 100;
        for d in frac.bytes() {
            milli += u16::from(d - b'0') * scale;
            scale /= 10;
        }
        (milli <= 1000).then_some(milli)
    }

    /// The `+sip.instance` parameter (RFC 5626), quotes removed.
    pub fn instance(&self) -> Option<&'a str> {
        self.params.get("+sip.instance").flatten()
    }
}

impl std::fmt::Display for NameAddr<'_> {
    /// Always the name-addr form (`"display" <uri>;params`), which is safe
    /// for any URI (RFC 3261 §20.10).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = self.display {
            // Quoted-form displays keep their escapes and are valid as is;
            // token-form ones are quoted, escaping '"' and '\\'.
            if self.quoted {
                write!(f, "\"{d}\" ")?;
            } else {
                f.write_str("\"")?;
                for c in d.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\" ")?;
            }
        }
        write!(f, "<{}>", self.uri)?;
        let params = lex::trim_str(self.params.as_str());
        if !params.is_empty() {
            write!(f, ";{params}")?;
        }
        Ok(())
    }
}

/// One Contact value: an address or the `*` wildcard (REGISTER removal, §10.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contact<'a> {
    /// `Contact: *`
    Wildcard,
    /// An address.
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    /// Parses one Contact element.
    pub fn parse(value: &'a [u8]) -> Option<Contact<'a>> {
        if lex::trim(value) == b"*" {
            Some(Contact::Wildcard)
        } else {
            NameAddr::parse(value).map(Contact::Addr)
        }
    }

    /// The address, unless this is the wildcard.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Wildcard => None,
            Contact::Addr(a) => Some(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uri::{Host, Scheme};

    #[test]
    fn forms() {
        let n =
            NameAddr::parse(b"\"Bob \\\"B\\\" Smith\" <sip:bob@biloxi.com>;tag=a6c85cf").unwrap();
        assert_eq!(n.display, Some("Bob \\\"B\\\" Smith"));
        assert_eq!(n.display_unescaped().unwrap(), "Bob \"B\" Smith");
        assert_eq!(n.tag(), Some("a6c85cf"));
        assert_eq!(n.uri.host, Host::Name("biloxi.com"));

        let n = NameAddr::parse(b"sip:alice@atlanta.com;tag=1928301774").unwrap();
        assert_eq!(n.tag(), Some("1928301774"));
        assert!(n.uri.params.is_empty());

        let n = NameAddr::parse(b"Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8").unwrap();
        assert_eq!(n.display, Some("Anonymous"));

        let n = NameAddr::parse(b"<tel:+12125550101>").unwrap();
        assert_eq!(n.uri.scheme, Scheme::Tel);
        assert_eq!(n.tag(), None);
    }

    #[test]
    fn contact_params() {
        let c = Contact::parse(
            b"<sip:u@10.0.0.1:5060;transport=tcp>;expires=3600;q=0.7;+sip.instance=\"<urn:uuid:1>\"",
        )
        .unwrap();
        let a = c.addr().unwrap();
        assert_eq!(a.expires(), Some(3600));
        assert_eq!(a.q(), Some(700));
        assert_eq!(a.instance(), Some("<urn:uuid:1>"));
        assert_eq!(a.uri.transport_param(), Some("tcp"));
        assert_eq!(Contact::parse(b" * "), Some(Contact::Wildcard));
    }

    #[test]
    fn display_round_trips() {
        for v in [
            &b"\"Bob \\\"B\\\"\" <sip:bob@biloxi.com>;tag=a6c85cf"[..],
            b"sip:alice@atlanta.com;tag=1928301774",
            b"Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8",
            b"Back\\ <sip:a@b>",
        ] {
            let n = NameAddr::parse(v).unwrap();
            let s = n.to_string();
            let again = NameAddr::parse(s.as_bytes()).unwrap();
            assert_eq!(again.tag(), n.tag(), "{s}");
            assert_eq!(again.uri.as_str(), n.uri.as_str(), "{s}");
            assert_eq!(again.display_unescaped(), n.display_unescaped(), "{s}");
        }
    }

    #[test]
    fn bad() {
        assert!(NameAddr::parse(b"\"unterminated <sip:a@b>").is_none());
        assert!(NameAddr::parse(b"<sip:a@b").is_none());
        assert!(NameAddr::parse(b"").is_none());
        assert!(NameAddr::parse(b"<sip:a@b> junk").is_none());
    }
}
