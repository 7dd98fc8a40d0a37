//! API keys: `?appid=KEY` or `Authorization: Bearer KEY`, checked against
//! `[[http.api_key]]` of the config in force and the keys kept in the store
//! (see [`super::keys`]; SIGHUP re-reads both, so keys change without a
//! restart).
//!
//! The presented key is hashed once with SHA-256 and compared, in constant
//! time, with every configured key's SHA-256 (a plain `key` is hashed, a
//! `key_sha256` is used as given), so neither the key's length nor where it
//! differs shows in the timing. Every key is compared, matched or not.
//! Missing, wrong, disabled, or from an address outside the key's
//! `allowed_ips`: the same `401`; the reason goes to the debug log only.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::Live;
use crate::config::ApiKeyConfig;

/// Middleware on every `/v1` route.
pub(crate) async fn require_key(
    State(live): State<Arc<Live>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let presented = bearer(&req).or_else(|| appid(req.uri().query().unwrap_or("")));
    let Some(presented) = presented else {
        tracing::debug!(%peer, "API: no key");
        return ApiError::unauthorized().into_response();
    };
    let cfg = live.current();
    let stored = live.stored_keys();
    let keys = cfg.http.api_key.iter().chain(stored.iter());
    match check(keys, presented.as_bytes(), peer.ip()) {
        Ok(name) => {
            // The path only: the query may hold the key (`?appid=`).
            tracing::debug!(%peer, key = name, method = %req.method(), path = %req.uri().path(), "API");
            next.run(req).await
        }
        Err(why) => {
            tracing::debug!(%peer, "API: key refused: {why}");
            ApiError::unauthorized().into_response()
        }
    }
}

/// The key's name, or why it was refused.
fn check<'a>(
    keys: impl IntoIterator<Item = &'a ApiKeyConfig>,
    presented: &[u8],
    ip: IpAddr,
) -> Result<&'a str, &'static str> {
    let digest: [u8; 32] = Sha256::digest(presented).into();
    let mut found: Option<&ApiKeyConfig> = None;
    for k in keys {
        let want: Option<[u8; 32]> = match (&k.key, &k.key_sha256) {
            (Some(plain), _) => Some(Sha256::digest(plain.as_bytes()).into()),
            (None, Some(hex)) => decode_hex32(hex),
            (None, None) => None,
        };
        let Some(want) = want else { continue };
        if bool::from(want.ct_eq(&digest)) && found.is_none() {
            found = Some(k);
        }
    }
    let k = found.ok_or("unknown key")?;
    if !k.enabled {
        return Err("key disabled");
    }
    let ip = ip.to_canonical();
    if !k.allowed_ips.is_empty() && !k.allowed_ips.iter().any(|n| n.contains(ip)) {
        return Err("source address not allowed for this key");
    }
    Ok(&k.name)
}

fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let hi = (pair.first()?).to_ascii_lowercase();
        let lo = (pair.get(1)?).to_ascii_lowercase();
        *o = (nibble(hi)? << 4) | nibble(lo)?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `Authorization: Bearer KEY` (scheme case-insensitive).
fn bearer(req: &Request) -> Option<String> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, key) = v.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| key.to_owned())
}

/// `appid=KEY` in the query string, percent-decoded.
fn appid(query: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == "appid")
        .and_then(|(_, v)| percent_decode(v))
        .filter(|v| !v.is_empty())
}

/// `application/x-www-form-urlencoded` value decoding; `None` if malformed.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = nibble(b.get(i + 1)?.to_ascii_lowercase())?;
                let lo = nibble(b.get(i + 2)?.to_ascii_lowercase())?;
                out.push((hi << 4) | lo);
                i += 2;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, plain: Option<&str>, hash: Option<&str>) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.to_owned(),
            key: plain.map(str::to_owned),
            key_sha256: hash.map(str::to_owned),
            allowed_ips: Vec::new(),
            enabled: true,
        }
    }

    #[test]
    fn plain_hashed_disabled_and_ip() {
        let local = IpAddr::from([127, 0, 0, 1]);
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
        let mut keys = vec![key("a", Some("s3cret"), None), key("h", None, Some(hash))];
        assert_eq!(check(&keys, b"s3cret", local), Ok("a"));
        assert_eq!(check(&keys, b"test", local), Ok("h"));
        assert!(check(&keys, b"s3cre", local).is_err());
        assert!(check(&keys, b"", local).is_err());
        keys[0].enabled = false;
        assert!(check(&keys, b"s3cret", local).is_err());
        keys[1].allowed_ips = vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))];
        assert!(check(&keys, b"test", local).is_err());
        assert_eq!(check(&keys, b"test", IpAddr::from([10, 1, 2, 3])), Ok("h"));
    }

    #[test]
    fn query_decoding() {
        assert_eq!(appid("x=1&appid=a%2Bb+c"), Some("a+b c".to_owned()));
        assert_eq!(appid("appid="), None);
        assert_eq!(appid("appid=%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
