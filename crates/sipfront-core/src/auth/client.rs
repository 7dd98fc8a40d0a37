//! The client side of digest (RFC 3261 §22.2–§22.4, RFC 7616 §3.4,
//! RFC 8760): answering an upstream's `401`/`407` with the credentials we
//! hold for it, as a UAC does. The hashing is the server side's
//! ([`super::digest`]); this module only chooses a challenge and writes
//! the `Authorization`/`Proxy-Authorization` value.
//!
//! Choices (what Kamailio's `uac_auth` and common SBCs do):
//! * the topmost challenge whose algorithm we know wins (RFC 8760 §2.4);
//! * `qop=auth` when offered (with `cnonce` and `nc=00000001`: every answer
//!   is to a fresh challenge), the RFC 2069 form when no `qop` is offered;
//!   `auth-int` alone is refused, as is an unknown algorithm.

use std::fmt::Write as _;

use super::digest::{self, Algorithm};
use crate::sip::{DigestChallenge, HeaderName, Message, Method, StatusCode};

/// What we authenticate with toward one upstream (`[[upstream]]`
/// `username`, `password`, `auth_username`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The account (the user we register, and the digest username unless
    /// `auth_username` is set).
    pub username: String,
    /// The digest username (`auth_username`, else `username`).
    pub auth_username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password in a log line.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("auth_username", &self.auth_username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// From the config keys; `None` without a username or password.
    pub fn new(username: &str, auth_username: &str, password: &str) -> Option<Credentials> {
        let auth = if auth_username.is_empty() {
            username
        } else {
            auth_username
        };
        if auth.is_empty() || password.is_empty() {
            return None;
        }
        Some(Credentials {
            username: username.to_owned(),
            auth_username: auth.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// Why a challenge cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The response carries no parsable Digest challenge.
    #[error("no Digest challenge in the {0} response")]
    NoChallenge(u16),
    /// Every Digest challenge names an algorithm we do not implement.
    #[error("challenge with unknown algorithm `{0}`")]
    UnknownAlgorithm(String),
    /// The challenge offers only qop values we do not implement.
    #[error("challenge with unsupported qop `{0}`")]
    UnsupportedQop(String),
}

/// The header that answers one challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeAnswer {
    /// `Authorization` (for a `401`) or `Proxy-Authorization` (`407`).
    pub header: &'static str,
    /// Its value.
    pub value: String,
    /// The realm answered (for the log).
    pub realm: String,
}

/// Answers the `401`/`407` `resp` to our `method` request with
/// Request-URI `uri`. `cnonce` is the caller's random token (the core's
/// seeded generator, never a thread RNG here).
///
/// # Errors
/// [`ChallengeError`] when no challenge in `resp` can be answered.
pub fn answer(
    resp: &Message,
    creds: &Credentials,
    method: &Method,
    uri: &str,
    cnonce: &str,
) -> Result<ChallengeAnswer, ChallengeError> {
    let status = resp.status().unwrap_or(StatusCode(0));
    let (challenge_name, header) = if status.0 == 407 {
        (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
    } else {
        (HeaderName::WwwAuthenticate, "Authorization")
    };
    let mut first_error = None;
    for raw in resp.headers(&challenge_name) {
        let Ok(c) = DigestChallenge::parse(raw) else {
            continue;
        };
        if !c.scheme.eq_ignore_ascii_case("digest") {
            continue;
        }
        match answer_one(&c, creds, method, uri, cnonce) {
            Ok(value) => {
                return Ok(ChallengeAnswer {
                    header,
                    value,
                    realm: c.realm.as_deref().unwrap_or("").to_owned(),
                })
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(ChallengeError::NoChallenge(status.0)))
}

fn answer_one(
    c: &DigestChallenge<'_>,
    creds: &Credentials,
    method: &Method,
    uri: &str,
    cnonce: &str,
) -> Result<String, ChallengeError> {
    let alg = Algorithm::from_param(c.algorithm.as_deref()).ok_or_else(|| {
        ChallengeError::UnknownAlgorithm(c.algorithm.as_deref().unwrap_or("").to_owned())
    })?;
    let realm = c.realm.as_deref().unwrap_or("");
    let nonce = c.nonce.as_deref().unwrap_or("");
    let qop_auth = c.qop_options().any(|q| q.eq_ignore_ascii_case("auth"));
    if !qop_auth && (c.qop.is_some() || alg.is_sess()) {
        // auth-int only, or a -sess algorithm that needs a cnonce.
        return Err(ChallengeError::UnsupportedQop(
            c.qop.as_deref().unwrap_or("").to_owned(),
        ));
    }
    let ha1 = digest::ha1(
        alg.is_sha256(),
        &creds.auth_username,
        realm,
        &creds.password,
    );
    let nc = 1;
    let response = if qop_auth {
        digest::response(alg, &ha1, nonce, nc, cnonce, "auth", method.as_str(), uri)
    } else {
        digest::response_without_qop(alg, &ha1, nonce, method.as_str(), uri)
    };
    let mut v = String::with_capacity(256);
    v.push_str("Digest ");
    quoted(&mut v, "username", &creds.auth_username);
    v.push_str(", ");
    quoted(&mut v, "realm", realm);
    v.push_str(", ");
    quoted(&mut v, "nonce", nonce);
    v.push_str(", ");
    quoted(&mut v, "uri", uri);
    v.push_str(", ");
    quoted(&mut v, "response", &response);
    let _ = write!(v, ", algorithm={}", alg.as_str());
    if qop_auth {
        let _ = write!(v, ", qop=auth, nc={nc:08x}, ");
        quoted(&mut v, "cnonce", cnonce);
    }
    if let Some(opaque) = c.opaque.as_deref() {
        v.push_str(", ");
        quoted(&mut v, "opaque", opaque);
    }
    Ok(v)
}

/// `name="value"` with `"` and `\` escaped (RFC 3261 §25.1 quoted-string).
fn quoted(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::DigestCredentials;
    use bytes::Bytes;

    fn resp(status: &str, headers: &str) -> Message {
        let text = format!(
            "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\n{headers}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(text)).unwrap()
    }

    fn creds() -> Credentials {
        Credentials::new("trunk1", "", "secret").unwrap()
    }

    #[test]
    fn answers_407_with_qop_auth_md5() {
        let r = resp(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth,auth-int\", opaque=\"op\"\r\n",
        );
        let a = answer(&r, &creds(), &Method::Invite, "sip:1@carrier", "cn1").unwrap();
        assert_eq!(a.header, "Proxy-Authorization");
        assert_eq!(a.realm, "carrier");
        let c = DigestCredentials::parse(a.value.as_bytes()).unwrap();
        assert_eq!(c.username.as_deref(), Some("trunk1"));
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.opaque.as_deref(), Some("op"));
        // The server side's formula verifies it.
        let ha1 = digest::ha1(false, "trunk1", "carrier", "secret");
        let want = digest::response(
            Algorithm::Md5,
            &ha1,
            "abc",
            1,
            "cn1",
            "auth",
            "INVITE",
            "sip:1@carrier",
        );
        assert_eq!(c.response.as_deref(), Some(want.as_str()));
    }

    #[test]
    fn topmost_known_algorithm_and_legacy_form() {
        let r = resp(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256\r\n\
             WWW-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256\r\n",
        );
        let creds = Credentials::new("acct", "authuser", "pw").unwrap();
        let a = answer(&r, &creds, &Method::Register, "sip:carrier", "x").unwrap();
        assert_eq!(a.header, "Authorization");
        let c = DigestCredentials::parse(a.value.as_bytes()).unwrap();
        assert_eq!(c.username.as_deref(), Some("authuser"));
        assert_eq!(c.algorithm.as_deref(), Some("SHA-256"));
        assert_eq!(c.qop, None, "no qop offered: RFC 2069 form");
        let ha1 = digest::ha1(true, "authuser", "r", "pw");
        let want =
            digest::response_without_qop(Algorithm::Sha256, &ha1, "n", "REGISTER", "sip:carrier");
        assert_eq!(c.response.as_deref(), Some(want.as_str()));
    }

    #[test]
    fn refuses_unknown_algorithm_and_auth_int_only() {
        let r = resp(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256\r\n",
        );
        assert_eq!(
            answer(&r, &creds(), &Method::Invite, "sip:x", "c"),
            Err(ChallengeError::UnknownAlgorithm("SHA-512-256".into()))
        );
        let r = resp(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"\r\n",
        );
        assert!(matches!(
            answer(&r, &creds(), &Method::Invite, "sip:x", "c"),
            Err(ChallengeError::UnsupportedQop(_))
        ));
        let r = resp("407 Proxy Authentication Required", "");
        assert_eq!(
            answer(&r, &creds(), &Method::Invite, "sip:x", "c"),
            Err(ChallengeError::NoChallenge(407))
        );
    }

    #[test]
    fn quotes_hostile_values() {
        let r = resp(
            "401 Unauthorized",
            "WWW-Authenticate: Digest realm=\"a\\\"b\", nonce=\"n\"\r\n",
        );
        let a = answer(&r, &creds(), &Method::Bye, "sip:x", "c").unwrap();
        let c = DigestCredentials::parse(a.value.as_bytes()).unwrap();
        assert_eq!(c.realm.as_deref(), Some("a\"b"));
        assert!(Credentials::new("", "", "pw").is_none());
        assert!(Credentials::new("u", "", "").is_none());
        assert!(!format!("{:?}", creds()).contains("secret"));
    }
}
