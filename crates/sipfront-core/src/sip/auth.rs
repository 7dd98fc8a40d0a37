//! Digest credentials and challenges (RFC 3261 §20.7, §20.28, §20.44, §22.4;
//! RFC 2617 §3.2; RFC 8760 algorithms). Parsing only: verification lives in
//! `auth/`.

use super::lex;
use super::ParseError;
use std::borrow::Cow;

/// Iterates `name=value` pairs of an auth-param list (comma separated,
/// values token or quoted-string). Quoted values come back unescaped.
fn auth_params(s: &str) -> Option<Vec<(&str, Cow<'_, str>)>> {
    let mut out = Vec::with_capacity(10);
    let mut rest = lex::skip_lws(s);
    while !rest.is_empty() {
        let (name, r) = lex::take_token(rest);
        if name.is_empty() {
            return None;
        }
        let r = lex::skip_lws(r).strip_prefix('=')?;
        let r = lex::skip_lws(r);
        let (value, r) = if r.starts_with('"') {
            let (q, r) = lex::take_quoted(r)?;
            (lex::unescape(q), r)
        } else {
            let end = r
                .bytes()
                .position(|b| b == b',' || lex::is_lws(b))
                .unwrap_or(r.len());
            let (v, r) = r.split_at_checked(end)?;
            if v.is_empty() {
                return None;
            }
            (Cow::Borrowed(v), r)
        };
        out.push((name, value));
        let r = lex::skip_lws(r);
        rest = match r.strip_prefix(',') {
            Some(r) => lex::skip_lws(r),
            None if r.is_empty() => r,
            None => return None,
        };
    }
    Some(out)
}

/// Splits `Scheme params` into the scheme token and the parameter text.
fn split_scheme(value: &[u8]) -> Option<(&str, &str)> {
    let s = std::str::from_utf8(lex::trim(value)).ok()?;
    let (scheme, rest) = lex::take_token(s);
    if scheme.is_empty() || !rest.bytes().next().map_or(true, lex::is_lws) {
        return None;
    }
    Some((scheme, rest))
}

/// Digest credentials from Authorization / Proxy-Authorization.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    /// Auth scheme, normally `Digest`.
    pub scheme: &'a str,
    /// `username`.
    pub username: Option<Cow<'a, str>>,
    /// `realm`.
    pub realm: Option<Cow<'a, str>>,
    /// `nonce`.
    pub nonce: Option<Cow<'a, str>>,
    /// `uri` (digest-uri, as sent).
    pub uri: Option<Cow<'a, str>>,
    /// `response` (hex digest).
    pub response: Option<Cow<'a, str>>,
    /// `algorithm` (`MD5`, `SHA-256`, `-sess` variants).
    pub algorithm: Option<Cow<'a, str>>,
    /// `cnonce`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `qop` (`auth`, `auth-int`).
    pub qop: Option<Cow<'a, str>>,
    /// `nc`, parsed as the 8 hex digits it is on the wire.
    pub nc: Option<u32>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> DigestCredentials<'a> {
    /// Parses one Authorization / Proxy-Authorization value.
    ///
    /// # Errors
    /// `BadAuth` on syntax errors, a non-hex `nc`, or a repeated parameter.
    pub fn parse(value: &'a [u8]) -> Result<DigestCredentials<'a>, ParseError> {
        let (scheme, rest) = split_scheme(value).ok_or(ParseError::BadAuth)?;
        let mut c = DigestCredentials {
            scheme,
            ..Default::default()
        };
        for (name, v) in auth_params(rest).ok_or(ParseError::BadAuth)? {
            let slot = match name.to_ascii_lowercase().as_str() {
                "username" => &mut c.username,
                "realm" => &mut c.realm,
                "nonce" => &mut c.nonce,
                "uri" => &mut c.uri,
                "response" => &mut c.response,
                "algorithm" => &mut c.algorithm,
                "cnonce" => &mut c.cnonce,
                "qop" => &mut c.qop,
                "opaque" => &mut c.opaque,
                "nc" => {
                    if c.nc.is_some() || v.len() != 8 {
                        return Err(ParseError::BadAuth);
                    }
                    c.nc = Some(u32::from_str_radix(&v, 16).map_err(|_| ParseError::BadAuth)?);
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(ParseError::BadAuth);
            }
            *slot = Some(v);
        }
        Ok(c)
    }

    /// Whether the scheme is `Digest` (case-insensitive).
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("digest")
    }
}

/// A digest challenge from WWW-Authenticate / Proxy-Authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DigestChallenge<'a> {
    /// Auth scheme, normally `Digest`.
    pub scheme: &'a str,
    /// `realm`.
    pub realm: Option<Cow<'a, str>>,
    /// `nonce`.
    pub nonce: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
    /// `algorithm`.
    pub algorithm: Option<Cow<'a, str>>,
    /// `qop` options, comma-separated inside the quotes.
    pub qop: Option<Cow<'a, str>>,
    /// `stale=true`.
    pub stale: bool,
    /// `domain`.
    pub domain: Option<Cow<'a, str>>,
}

impl<'a> DigestChallenge<'a> {
    /// Parses one WWW-Authenticate / Proxy-Authenticate value.
    ///
    /// # Errors
    /// `BadAuth` on syntax errors.
    pub fn parse(value: &'a [u8]) -> Result<DigestChallenge<'a>, ParseError> {
        let (scheme, rest) = split_scheme(value).ok_or(ParseError::BadAuth)?;
        let mut c = DigestChallenge {
            scheme,
            ..Default::default()
        };
        for (name, v) in auth_params(rest).ok_or(ParseError::BadAuth)? {
            match name.to_ascii_lowercase().as_str() {
                "realm" => c.realm = Some(v),
                "nonce" => c.nonce = Some(v),
                "opaque" => c.opaque = Some(v),
                "algorithm" => c.algorithm = Some(v),
                "qop" => c.qop = Some(v),
                "domain" => c.domain = Some(v),
                "stale" => c.stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        Ok(c)
    }

    /// The qop options as a list.
    pub fn qop_options(&self) -> impl Iterator<Item = &str> {
        self.qop
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(lex::trim_str)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        let c = DigestCredentials::parse(
            b"Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=0000000a, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5",
        )
        .unwrap();
        assert!(c.is_digest());
        assert_eq!(c.username.as_deref(), Some("bob"));
        assert_eq!(c.nc, Some(10));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.algorithm.as_deref(), Some("MD5"));
        assert!(DigestCredentials::parse(b"Digest nc=zz").is_err());
        assert!(DigestCredentials::parse(b"Digest username=\"open").is_err());
        assert!(DigestCredentials::parse(b"Digest username=a, username=b").is_err());
        let c = DigestCredentials::parse(b"Digest username=\"a\\\"b\"").unwrap();
        assert_eq!(c.username.as_deref(), Some("a\"b"));
    }

    #[test]
    fn challenge() {
        let c = DigestChallenge::parse(
            b"Digest realm=\"atlanta.com\", qop=\"auth,auth-int\", nonce=\"84a4cc6f\", stale=TRUE, algorithm=SHA-256",
        )
        .unwrap();
        assert!(c.stale);
        assert_eq!(c.qop_options().collect::<Vec<_>>(), ["auth", "auth-int"]);
    }
}
