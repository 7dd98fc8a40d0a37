//! Digest computations: RFC 7616 §3.4.1–§3.4.3 (HA1, HA2, response with
//! `qop=auth`), RFC 2617 §3.2.2 (MD5, MD5-sess), RFC 8760 §2 (SHA-256 and
//! SHA-256-sess for SIP). `auth-int` and `userhash` are not supported.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm we accept (RFC 7616 §3.2, RFC 8760 §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5` (the default when `algorithm` is absent, RFC 2617 §3.2.1).
    Md5,
    /// `MD5-sess`: HA1 = MD5(HA1-base ":" nonce ":" cnonce).
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` parameter value (case-insensitive); `None`
    /// (absent) means MD5. Unknown values (`SHA-512-256`, …) give `None`.
    pub fn from_param(value: Option<&str>) -> Option<Algorithm> {
        let Some(v) = value else {
            return Some(Algorithm::Md5);
        };
        [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
        ]
        .into_iter()
        .find(|(name, _)| v.eq_ignore_ascii_case(name))
        .map(|(_, a)| a)
    }

    /// The token as written in a challenge.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// Whether this is SHA-256 based.
    pub fn is_sha256(self) -> bool {
        matches!(self, Algorithm::Sha256 | Algorithm::Sha256Sess)
    }

    /// Whether this is a `-sess` variant.
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }
}

/// Hashes the `:`-joined `parts` with MD5 or SHA-256 and returns lowercase hex.
fn h_hex(sha256: bool, parts: &[&[u8]]) -> String {
    fn run<D: Digest>(parts: &[&[u8]]) -> String {
        let mut d = D::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p);
        }
        hex(&d.finalize())
    }
    if sha256 {
        run::<Sha256>(parts)
    } else {
        run::<Md5>(parts)
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(D[usize::from(b >> 4)]));
        s.push(char::from(D[usize::from(b & 15)]));
    }
    s
}

/// HA1 = H(username ":" realm ":" password), as lowercase hex (RFC 7616 §3.4.2).
/// `sha256` chooses SHA-256 over MD5. This is the value we store per trunk.
pub fn ha1(sha256: bool, username: &str, realm: &str, password: &str) -> String {
    h_hex(
        sha256,
        &[username.as_bytes(), realm.as_bytes(), password.as_bytes()],
    )
}

/// The request-digest for `qop=auth` (RFC 7616 §3.4.1):
/// `H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))`, where
/// for `-sess` algorithms HA1 is first replaced by
/// `H(HA1 ":" nonce ":" cnonce)` (RFC 7616 §3.4.2). `ha1_hex` is the stored
/// base HA1 for the algorithm's hash; `nc` is formatted as 8 lowercase hex
/// digits. Returns lowercase hex.
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    nc: u32,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let sha = alg.is_sha256();
    let sess;
    let ha1 = if alg.is_sess() {
        sess = h_hex(
            sha,
            &[ha1_hex.as_bytes(), nonce.as_bytes(), cnonce.as_bytes()],
        );
        sess.as_str()
    } else {
        ha1_hex
    };
    let ha2 = h_hex(sha, &[method.as_bytes(), uri.as_bytes()]);
    let nc = format!("{nc:08x}");
    h_hex(
        sha,
        &[
            ha1.as_bytes(),
            nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            qop.as_bytes(),
            ha2.as_bytes(),
        ],
    )
}

/// The request-digest without `qop` (RFC 2617 §3.2.2.1, the RFC 2069
/// compatible form): `H(HA1 ":" nonce ":" H(method ":" uri))`, for
/// challenges that offer no `qop` (Kamailio's default, many carriers).
pub fn response_without_qop(
    alg: Algorithm,
    ha1_hex: &str,
    nonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let sha = alg.is_sha256();
    let ha2 = h_hex(sha, &[method.as_bytes(), uri.as_bytes()]);
    h_hex(sha, &[ha1_hex.as_bytes(), nonce.as_bytes(), ha2.as_bytes()])
}
