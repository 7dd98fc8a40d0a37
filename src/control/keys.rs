//! API keys kept in the store: the one made at a first start without any
//! key (as Jupyter and Grafana do), and `sipfront key create|list|delete`.
//!
//! Only a key's SHA-256 is stored; the key itself is shown once, in the
//! log line of the first start or on the standard output of `key create`.
//! Checking a presented key is [`super::auth`]'s alone: the stored keys
//! join the config's `[[http.api_key]]` there as `key_sha256` entries.
//! A running sipfront reads the stored keys at start and on SIGHUP.

use std::net::SocketAddr;

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::Live;
use crate::config::{ApiKeyConfig, Config};
use crate::store::{Store, StoredApiKey};

/// The name of the key made at a first start.
pub const GENERATED: &str = "generated";

/// Random bytes in a key (192 bits).
const KEY_BYTES: usize = 24;

/// Longest key name accepted.
const NAME_MAX: usize = 64;

/// A new key from the OS random number generator: `sf_` and 48 hex digits.
pub fn new_key() -> String {
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("sf_{}", hex(&bytes))
}

/// Lower-case hex SHA-256 of `key`, as stored and as `key_sha256` takes it.
pub fn sha256_hex(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The stored keys as the verifier takes them: by hash, any source address.
pub(crate) fn as_config(stored: &[StoredApiKey]) -> Vec<ApiKeyConfig> {
    stored
        .iter()
        .map(|k| ApiKeyConfig {
            name: k.name.clone(),
            key: None,
            key_sha256: Some(k.sha256.clone()),
            allowed_ips: Vec::new(),
            enabled: true,
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The URL a user on this machine reaches `http` at (a wildcard listener
/// is reached on loopback).
fn base_url(http: SocketAddr) -> String {
    let ip = match http.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, http.port()))
}

/// At start: reads the stored keys into `live`. With no key in the config
/// nor in the store, makes one, stores its SHA-256 and logs the key once
/// with the API's address (`http`, the bound listener).
///
/// # Errors
/// The store cannot be read or written: the API would have no usable key.
pub async fn load_at_start(live: &Live, http: SocketAddr) -> Result<(), String> {
    let store = live.store();
    let configured = live.current().http.api_key.len();
    let made = tokio::task::spawn_blocking(move || {
        let mut stored = store.api_keys()?;
        let mut made = None;
        if configured == 0 && stored.is_empty() {
            let key = new_key();
            let row = StoredApiKey {
                name: GENERATED.to_owned(),
                sha256: sha256_hex(&key),
                generated: true,
                created_ms: now_ms(),
            };
            store.add_api_key(&row)?;
            stored = store.api_keys()?;
            made = Some(key);
        }
        Ok::<_, crate::store::StoreError>((stored, made))
    })
    .await
    .map_err(|e| format!("cannot start: API keys: {e}"))?;
    let (stored, made) = made.map_err(|e| format!("cannot start: API keys: {e}"))?;
    live.set_stored_keys(as_config(&stored));
    let url = base_url(http);
    if let Some(key) = made {
        tracing::warn!(
            api = %format!("{url}/v1/"),
            "no API key configured: made one, shown only this once (the store keeps its \
             SHA-256): {key} ; try: curl -H 'Authorization: Bearer {key}' {url}/v1/trunks ; \
             the API is described at {url}/openapi.json ; `sipfront key create NAME` makes \
             more, `sipfront key delete {GENERATED}` revokes this one"
        );
        return Ok(());
    }
    let names: Vec<&str> = stored.iter().map(|k| k.name.as_str()).collect();
    tracing::info!(
        api = %format!("{url}/v1/"),
        configured,
        stored = ?names,
        "API keys: {configured} from [[http.api_key]], {} from the store",
        stored.len()
    );
    if stored.iter().any(|k| k.generated) {
        tracing::info!(
            "the API key `{GENERATED}` was made at the first start and printed in its log \
             then; it is not kept and cannot be shown again (`sipfront key create NAME` \
             makes another, `sipfront key delete {GENERATED}` revokes it)"
        );
    }
    Ok(())
}

/// SIGHUP, or (`why`) a fleet store's change feed: re-reads the stored
/// keys (one made by `sipfront key create` while running works from then
/// on). On failure the keys in force stay.
pub async fn reload(live: &Live, why: &str) {
    let store = live.store();
    match tokio::task::spawn_blocking(move || store.api_keys()).await {
        Ok(Ok(stored)) => {
            let keys = as_config(&stored);
            let same = |a: &[ApiKeyConfig], b: &[ApiKeyConfig]| {
                a.iter()
                    .map(|k| (&k.name, &k.key_sha256))
                    .eq(b.iter().map(|k| (&k.name, &k.key_sha256)))
            };
            if same(&live.stored_keys(), &keys) {
                tracing::debug!(
                    "{why}: the {} stored API key(s) are unchanged",
                    stored.len()
                );
            } else {
                tracing::info!("{why}: {} API key(s) from the store", stored.len());
                live.set_stored_keys(keys);
            }
        }
        Ok(Err(e)) => tracing::error!("{why}: API keys not re-read, the old ones stay: {e}"),
        Err(e) => tracing::error!("{why}: API keys not re-read, the old ones stay: {e}"),
    }
}

/// A key name: 1 to 64 of `A-Z a-z 0-9 . _ -` (it shows in logs).
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name `{name}`: use 1 to {NAME_MAX} letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// `sipfront key create NAME`: stores a new key's SHA-256 under `name`
/// and returns the key (shown once; it is not kept).
///
/// # Errors
/// A bad or taken name (in the store or in `cfg`'s `[[http.api_key]]`),
/// or the store failed.
pub fn create(store: &dyn Store, cfg: &Config, name: &str) -> Result<String, String> {
    check_name(name)?;
    if cfg.http.api_key.iter().any(|k| k.name == name) {
        return Err(format!(
            "{}: [[http.api_key]] already has a key named `{name}`",
            cfg.source
        ));
    }
    let key = new_key();
    let row = StoredApiKey {
        name: name.to_owned(),
        sha256: sha256_hex(&key),
        generated: false,
        created_ms: now_ms(),
    };
    match store.add_api_key(&row) {
        Ok(true) => Ok(key),
        Ok(false) => Err(format!(
            "the store already has a key named `{name}` (`sipfront key delete {name}` first)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `sipfront key delete NAME`.
///
/// # Errors
/// No such key in the store, or the store failed.
pub fn delete(store: &dyn Store, name: &str) -> Result<(), String> {
    match store.delete_api_key(name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("the store has no key named `{name}`")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_prefixed_and_hash_as_sha256() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 2 * KEY_BYTES);
        assert!(a.starts_with("sf_"));
        // RFC 6234 test vector "abc".
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn names_and_urls() {
        assert!(check_name("ops-1.a_b").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            base_url("0.0.0.0:8080".parse().unwrap_or_else(|e| panic!("{e}"))),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("[::]:80".parse().unwrap_or_else(|e| panic!("{e}"))),
            "http://[::1]:80"
        );
        assert_eq!(
            base_url("10.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}"))),
            "http://10.0.0.1:8080"
        );
    }
}
