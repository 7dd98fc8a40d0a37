//! A newcomer's first run against the real binary: with no
//! `[[http.api_key]]` sipfront makes a key, logs it once and stores only its
//! SHA-256; later starts say one exists without showing it;
//! `sipfront key create|list|delete` manage stored keys (taken at SIGHUP).
//! And the README's walk: that key creates a trunk over the API and SIPp
//! places a call through it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{
    api_get, calls::builtin_uas, carrier_upstream, free_port, shipped_rates, Server, TempDir, BIN,
    LOOPBACK_CONFIG, TEST_API_KEY, TEST_API_KEY_CONFIG,
};

const WAIT: Duration = Duration::from_secs(10);
/// The first start's log line that holds the key.
const MADE: &str = "no API key configured: made one";

fn config(db: &Path, extra: &str) -> String {
    format!(
        "{LOOPBACK_CONFIG}\n[store]\npath = \"{}\"\n{extra}",
        db.display()
    )
}

/// The key in the first start's log line (`sf_` and 48 hex digits).
fn logged_key(server: &Server) -> String {
    assert!(server.wait_log(MADE, WAIT), "{}", server.log_text());
    let log = server.log_text();
    let line = log.lines().find(|l| l.contains(MADE)).unwrap_or_default();
    let at = line
        .find("sf_")
        .unwrap_or_else(|| panic!("no key in: {line}"));
    let key: String = line[at..].chars().take(51).collect();
    assert!(
        key.len() == 51 && key[3..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{line}"
    );
    key
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `(name, sha256, generated)` of every stored key.
fn stored_keys(db: &Path) -> Vec<(String, String, bool)> {
    let c = rusqlite::Connection::open(db).expect("open store");
    let mut st = c
        .prepare("SELECT name, sha256, generated FROM api_key ORDER BY name")
        .expect("api_key table");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

/// Every byte of the store's files, as text (to look for a key in clear).
fn store_bytes(db: &Path) -> String {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{}{suffix}", db.display());
        all.extend(std::fs::read(p).unwrap_or_default());
    }
    String::from_utf8_lossy(&all).into_owned()
}

fn key_cmd(cfg: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("key")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .expect("run sipfront key")
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn first_start_makes_a_key_shown_once_and_stores_only_its_hash() {
    let dir = TempDir::new("first-run");
    let db = dir.path().join("data").join("s.db");
    let key = {
        let server = Server::start(&config(&db, ""));
        let key = logged_key(&server);
        let log = server.log_text();
        assert!(
            log.contains(&format!("http://{}/v1/", server.http)),
            "the API URL is logged: {log}"
        );
        assert_eq!(api_get(&server, &key, "/v1/trunks").0, 200);
        assert_eq!(api_get(&server, "sf_0123", "/v1/trunks").0, 401);
        assert_eq!(
            stored_keys(&db),
            [("generated".to_owned(), sha256_hex(&key), true)]
        );
        assert!(
            !store_bytes(&db).contains(&key),
            "the key is stored in clear"
        );
        key
    };

    // A later start: the key still works, and the log says it exists
    // without showing it.
    let server = Server::start(&config(&db, ""));
    assert!(
        server.wait_log("was made at the first start", WAIT),
        "{}",
        server.log_text()
    );
    assert!(!server.log_text().contains(&key), "{}", server.log_text());
    assert!(!server.log_text().contains(MADE), "{}", server.log_text());
    assert_eq!(api_get(&server, &key, "/v1/trunks").0, 200);
    assert_eq!(stored_keys(&db).len(), 1, "no second key made");

    // `key create` prints a new key once; the server takes it at SIGHUP.
    let made = key_cmd(&server.config, &["create", "ops"]);
    assert!(made.status.success(), "{}", out(&made));
    let ops = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert!(ops.starts_with("sf_") && ops != key, "{}", out(&made));
    assert_eq!(api_get(&server, &ops, "/v1/trunks").0, 401, "before SIGHUP");
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: 2 API key(s) from the store", WAIT),
        "{}",
        server.log_text()
    );
    assert_eq!(api_get(&server, &ops, "/v1/trunks").0, 200);
    assert!(!store_bytes(&db).contains(&ops));

    // Names are unique; a bad name is refused with a reason.
    let again = key_cmd(&server.config, &["create", "ops"]);
    assert_eq!(again.status.code(), Some(1), "{}", out(&again));
    assert!(out(&again).contains("already has a key named `ops`"));
    let bad = key_cmd(&server.config, &["create", "a b"]);
    assert_eq!(bad.status.code(), Some(1), "{}", out(&bad));
    assert!(out(&bad).contains("key name `a b`"), "{}", out(&bad));
    let list = key_cmd(&server.config, &["list"]);
    assert!(list.status.success(), "{}", out(&list));
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split('\t').next().map(str::to_owned))
        .collect();
    assert_eq!(names, ["generated", "ops"], "{}", out(&list));

    // `key delete` revokes the generated key at the next SIGHUP.
    let del = key_cmd(&server.config, &["delete", "generated"]);
    assert!(del.status.success(), "{}", out(&del));
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: 1 API key(s) from the store", WAIT),
        "{}",
        server.log_text()
    );
    assert_eq!(api_get(&server, &key, "/v1/trunks").0, 401);
    assert_eq!(api_get(&server, &ops, "/v1/trunks").0, 200);
    let gone = key_cmd(&server.config, &["delete", "generated"]);
    assert_eq!(gone.status.code(), Some(1), "{}", out(&gone));
}

#[test]
fn a_configured_key_means_none_is_made() {
    let dir = TempDir::new("first-run-cfg");
    let db = dir.path().join("s.db");
    let server = Server::start(&config(&db, TEST_API_KEY_CONFIG));
    assert!(
        server.wait_log("API keys: 1 from [[http.api_key]], 0 from the store", WAIT),
        "{}",
        server.log_text()
    );
    assert!(!server.log_text().contains(MADE), "{}", server.log_text());
    assert!(stored_keys(&db).is_empty());
    assert_eq!(api_get(&server, TEST_API_KEY, "/v1/trunks").0, 200);
    // The config's key name cannot be taken by a stored one.
    let taken = key_cmd(&server.config, &["create", "test"]);
    assert_eq!(taken.status.code(), Some(1), "{}", out(&taken));
    assert!(out(&taken).contains("[[http.api_key]] already has a key named `test`"));
}

/// The README's first call: the logged key creates an IP-authenticated
/// trunk with `curl`'s request, and SIPp places a call through it to a
/// SIPp carrier.
#[test]
fn readme_walk_first_key_creates_a_trunk_and_a_call_goes_through() {
    let dir = TempDir::new("first-call");
    let carrier_port = free_port();
    let mut carrier = builtin_uas(carrier_port, 1);
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n{}",
        shipped_rates(),
        carrier_upstream(carrier_port)
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let key = logged_key(&server);
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("http://{}/v1/trunks", server.http))
        .bearer_auth(&key)
        .json(&serde_json::json!({"host_request": "127.0.0.1", "password": "s3cret"}))
        .send()
        .expect("POST /v1/trunks");
    let status = resp.status().as_u16();
    let trunk: serde_json::Value = resp.json().expect("trunk JSON");
    assert_eq!(status, 201, "{trunk}");
    assert_eq!(
        (&trunk["id"], &trunk["name"]),
        (&1.into(), &"10001".into()),
        "{trunk}"
    );
    common::sipp_calls_ok(&server, 1, &[]);
    let (uas_code, uas_text) = carrier.wait(WAIT);
    assert_eq!(uas_code, Some(0), "{uas_text}");
    let (st, cdr) = api_get(&server, &key, "/v1/cdr");
    assert_eq!(st, 200, "{cdr}");
    assert_eq!(cdr["stats"]["count"], 1, "{cdr}");
}
