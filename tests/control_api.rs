//! SPEC §6 HTTP control API against the real binary: API keys (401 cases,
//! `?appid=` and Bearer), `/v1/trunks` CRUD with the provider's field names,
//! 422 naming fields, 413, 404 JSON, persistence across a restart, and live
//! apply: a trunk created over the API takes a SIPp digest call, and a `PUT`
//! of `max_channels = 0` makes the next call get 503 without a restart;
//! `/v1/cdr` lists real calls' records as JSON (stats, filters, pages) and CSV;
//! `/openapi.json` lists exactly the routes served, with the shapes sent; a
//! `PUT` lowering `max_channels` refuses the next call while the call in
//! progress finishes; deleting a trunk lets its call finish, and
//! `?force=true` ends it on both legs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::calls::{builtin_uas, carrier_uas, code_scenario, read_msgs, refused_scenario, uac};
use common::{free_port, scenario, sipp_counter, Server, SippBg, TempDir};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const KEY: &str = "adm1n-key";
/// SHA-256 of "hashed-key".
const HASHED_KEY: &str = "hashed-key";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loopback config with the API keys and a store at `db`.
fn config(db: &Path, extra: &str) -> String {
    format!(
        "{loopback}\n[server]\ndrain_s = 1\n\n[store]\npath = \"{db}\"\n\n\
         [[http.api_key]]\nname = \"admin\"\nkey = \"{KEY}\"\n\n\
         [[http.api_key]]\nname = \"hashed\"\nkey_sha256 = \"{hash}\"\n\n\
         [[http.api_key]]\nname = \"off\"\nkey = \"disabled-key\"\nenabled = false\n\n\
         [[http.api_key]]\nname = \"tenonly\"\nkey = \"ten-key\"\nallowed_ips = [\"10.0.0.0/8\"]\n\n\
         {extra}\n",
        loopback = common::LOOPBACK_CONFIG,
        db = db.display(),
        hash = sha256_hex(HASHED_KEY),
    )
}

/// A blocking client on one server's API.
struct Api {
    base: String,
    client: Client,
}

/// How a request presents its key.
#[derive(Clone, Copy)]
enum Key<'a> {
    None,
    Bearer(&'a str),
    Appid(&'a str),
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            base: format!("http://{}", server.http),
            client: Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    /// (status, JSON body or Null when empty).
    fn call(&self, method: Method, path: &str, key: Key<'_>, body: Option<&Value>) -> (u16, Value) {
        let mut url = format!("{}{path}", self.base);
        if let Key::Appid(k) = key {
            url.push_str(if path.contains('?') {
                "&appid="
            } else {
                "?appid="
            });
            url.push_str(k);
        }
        let mut req = self.client.request(method, &url);
        if let Key::Bearer(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {text}"))
        };
        (status, v)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, Key::Bearer(KEY), None)
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::POST, path, Key::Bearer(KEY), Some(body))
    }

    fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(Method::PUT, path, Key::Bearer(KEY), Some(body))
    }

    fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, Key::Bearer(KEY), None)
    }
}

/// SIGTERM, and a clean exit within 20 s (before a restart on the same store).
fn stop(server: &mut Server) {
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        server.log_text()
    );
}

fn is_error_body(v: &Value) -> bool {
    v.get("error").is_some_and(Value::is_string) && v.get("details").is_some_and(Value::is_object)
}

#[test]
fn api_keys_401_cases_and_both_key_forms() {
    let dir = TempDir::new("api-auth");
    let server = Server::start(&config(&dir.path().join("s.db"), ""));
    let api = Api::new(&server);
    let (st, body) = api.call(Method::GET, "/healthz", Key::None, None);
    assert_eq!((st, body), (200, json!({"status": "ok"})));
    for (what, key) in [
        ("no key", Key::None),
        ("wrong key", Key::Bearer("nope")),
        ("wrong appid", Key::Appid("adm1n-ke")),
        ("disabled key", Key::Bearer("disabled-key")),
        ("key from a non-allowed IP", Key::Appid("ten-key")),
        (
            "hash given as the key",
            Key::Bearer(&sha256_hex(HASHED_KEY)),
        ),
    ] {
        let (st, body) = api.call(Method::GET, "/v1/trunks", key, None);
        assert_eq!(st, 401, "{what}: {body}");
        assert!(is_error_body(&body), "{what}: {body}");
    }
    for (what, key) in [
        ("Bearer", Key::Bearer(KEY)),
        ("appid", Key::Appid(KEY)),
        ("key_sha256", Key::Bearer(HASHED_KEY)),
    ] {
        let (st, body) = api.call(Method::GET, "/v1/trunks", key, None);
        assert_eq!(st, 200, "{what}: {body}");
        assert_eq!(body, json!({"items": []}), "{what}");
    }
    // Keys never reach the log (it runs at debug for sipfront).
    let log = server.log_text();
    assert!(log.contains("API"), "{log}");
    assert!(!log.contains(KEY) && !log.contains(HASHED_KEY), "{log}");
}

#[test]
fn trunk_crud_round_trip() {
    let dir = TempDir::new("api-crud");
    let server = Server::start(&config(&dir.path().join("s.db"), ""));
    let api = Api::new(&server);
    let (st, t) = api.post(
        "/v1/trunks",
        &json!({
            "label": "PBX HQ", "password": "s3cret", "callerid": "12121234567",
            "cost_limit": true, "max_call_cost": 0.18, "channels_restrict": true,
            "max_channels": "10", "multiple_numbers": true, "allowed_ips": ["10.0.0.0/8", "192.0.2.7"],
        }),
    );
    assert_eq!(st, 201, "{t}");
    let id = t["id"].as_u64().expect("id");
    assert_eq!(id, 1, "{t}");
    assert_eq!(t["name"], "10001", "generated as the loader does: {t}");
    assert_eq!(t["password"], "********", "{t}");
    assert_eq!(t["max_call_cost"], "0.18", "{t}");
    assert_eq!(t["max_channels"], 10, "{t}");
    assert_eq!(
        (&t["passthrough"], &t["multiple_numbers"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(t["allowed_ips"], json!(["10.0.0.0/8", "192.0.2.7"]), "{t}");
    assert!(!t.to_string().contains("s3cret"), "{t}");

    // Given id and name; then the list, by id.
    let (st, t2) = api.post(
        "/v1/trunks",
        &json!({"id": 7, "name": "36465", "host_request": "192.0.2.9", "max_call_cost": "1.5"}),
    );
    assert_eq!(st, 201, "{t2}");
    assert_eq!(
        (&t2["id"], &t2["name"], &t2["password"]),
        (&json!(7), &json!("36465"), &json!(""))
    );
    assert_eq!(t2["max_call_cost"], "1.5", "{t2}");
    let (st, list) = api.get("/v1/trunks");
    assert_eq!(st, 200);
    let ids: Vec<u64> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|t| t["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 7], "{list}");
    let (st, conflict) = api.post("/v1/trunks", &json!({"id": 7, "password": "x"}));
    assert_eq!(st, 409, "{conflict}");

    // Read, update some fields (the rest and the password stay), read again.
    let (st, got) = api.get(&format!("/v1/trunks/{id}"));
    assert_eq!((st, &got), (200, &t));
    let (st, up) = api.put(
        &format!("/v1/trunks/{id}"),
        &json!({"label": "PBX 2", "max_call_cost": "0.25", "password": "********", "passthrough": false}),
    );
    assert_eq!(st, 200, "{up}");
    assert_eq!(
        (&up["label"], &up["max_call_cost"]),
        (&json!("PBX 2"), &json!("0.25"))
    );
    assert_eq!(
        (&up["callerid"], &up["max_channels"]),
        (&t["callerid"], &t["max_channels"])
    );
    assert_eq!(
        (&up["passthrough"], &up["multiple_numbers"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(api.get(&format!("/v1/trunks/{id}")), (200, up.clone()));
    let (st, e) = api.put(&format!("/v1/trunks/{id}"), &json!({"id": 9}));
    assert_eq!(st, 422, "{e}");
    assert!(e["details"]["id"].is_string(), "{e}");

    // Delete; then it is gone.
    assert_eq!(api.delete(&format!("/v1/trunks/{id}")), (204, Value::Null));
    for (st, body) in [
        api.get(&format!("/v1/trunks/{id}")),
        api.delete(&format!("/v1/trunks/{id}")),
        api.put(&format!("/v1/trunks/{id}"), &json!({"label": "x"})),
        api.get("/v1/trunks/abc"),
    ] {
        assert_eq!(st, 404, "{body}");
        assert!(is_error_body(&body), "{body}");
    }
    let (_, list) = api.get("/v1/trunks");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn validation_422_names_each_bad_field() {
    let dir = TempDir::new("api-422");
    let server = Server::start(&config(&dir.path().join("s.db"), ""));
    let api = Api::new(&server);
    let (st, e) = api.post(
        "/v1/trunks",
        &json!({
            "password": "p", "max_channels": "ten", "rewrite_cond": "0a",
            "allowed_ips": ["nope"], "max_call_cost": "-1", "colour": "red",
        }),
    );
    assert_eq!(st, 422, "{e}");
    assert!(is_error_body(&e), "{e}");
    for field in [
        "max_channels",
        "rewrite_cond",
        "allowed_ips",
        "max_call_cost",
        "colour",
    ] {
        assert!(e["details"][field].is_string(), "{field} not named: {e}");
    }
    // The config loader's rules: no password and no host_request.
    let (st, e) = api.post("/v1/trunks", &json!({"name": "a"}));
    assert_eq!(st, 422, "{e}");
    assert!(e["details"]["password"].is_string(), "{e}");
    // Whole-config rules: a duplicate login.
    assert_eq!(
        api.post("/v1/trunks", &json!({"name": "a", "password": "p"}))
            .0,
        201
    );
    let (st, e) = api.post("/v1/trunks", &json!({"name": "a", "password": "q"}));
    assert_eq!(st, 422, "{e}");
    assert!(
        e["details"]["name"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate")),
        "{e}"
    );
    // Not an object.
    let (st, e) = api.post("/v1/trunks", &json!([1, 2]));
    assert_eq!(st, 422, "{e}");
    let (_, list) = api.get("/v1/trunks");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn body_over_1_mib_is_413_and_unknown_route_404_json() {
    let dir = TempDir::new("api-limits");
    let server = Server::start(&config(&dir.path().join("s.db"), ""));
    let api = Api::new(&server);
    let big = format!("{{\"label\": \"{}\"}}", "x".repeat(2 << 20));
    let resp = api
        .client
        .post(format!("{}/v1/trunks", api.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .expect("send 2 MiB");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().expect("413 body is JSON");
    assert!(is_error_body(&body), "{body}");
    for path in ["/nope", "/v1/nothing", "/v1/trunks/1/x"] {
        let (st, body) = api.get(path);
        assert_eq!(st, 404, "{path}: {body}");
        assert!(is_error_body(&body), "{path}: {body}");
    }
    let (st, body) = api.call(Method::PATCH, "/v1/trunks", Key::Bearer(KEY), None);
    assert_eq!(st, 405, "{body}");
    assert!(is_error_body(&body), "{body}");
}

/// A read that says the peer closed (EOF or reset), not that it timed out.
fn closed(r: &std::io::Result<usize>) -> bool {
    match r {
        Ok(n) => *n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn connections_over_max_are_closed_and_stalled_ones_time_out() {
    let dir = TempDir::new("api-conns");
    let text = config(&dir.path().join("s.db"), "").replacen(
        "[http]\naddress = \"127.0.0.1:0\"\n",
        "[http]\naddress = \"127.0.0.1:0\"\nmax_connections = 3\nidle_timeout_s = 2\n",
        1,
    );
    let server = Server::start(&text);
    // Three clients that never finish their headers (slowloris) hold every slot.
    let started = std::time::Instant::now();
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(server.http).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .expect("partial request");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A fourth is closed as soon as it is accepted.
    let mut fourth = TcpStream::connect(server.http).expect("connect");
    fourth
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let _ = fourth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 256];
    assert!(
        closed(&fourth.read(&mut buf)) && started.elapsed() < Duration::from_millis(1900),
        "a connection over max_connections must be closed at once"
    );
    // The stalled ones are closed at the idle timeout, not before.
    for mut s in stalled {
        s.set_read_timeout(Some(Duration::from_secs(6)))
            .expect("timeout");
        let r = s.read(&mut buf);
        assert!(closed(&r), "stalled connection not closed: {r:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "closed after {waited:?}, idle_timeout_s = 2"
    );
    // Their slots are free again.
    let (st, v) = Api::new(&server).get("/healthz");
    assert_eq!((st, &v["status"]), (200, &json!("ok")), "{v}");
}

#[test]
fn restart_keeps_api_changes_and_the_store_wins_over_the_file() {
    let dir = TempDir::new("api-restart");
    let db = dir.path().join("data").join("s.db");
    let cfg = config(
        &db,
        "[[trunk]]\nid = 1\nname = \"seeded\"\npassword = \"p\"\n",
    );
    let mut server = Server::start(&cfg);
    let api = Api::new(&server);
    let (_, list) = api.get("/v1/trunks");
    assert_eq!(
        list["items"][0]["name"], "seeded",
        "the file seeds an empty store: {list}"
    );
    let (st, t) = api.post(
        "/v1/trunks",
        &json!({"name": "viaapi", "password": "p", "max_channels": 4}),
    );
    assert_eq!(st, 201, "{t}");
    assert_eq!(api.delete("/v1/trunks/1").0, 204);
    stop(&mut server);

    let server = Server::start(&cfg);
    let api = Api::new(&server);
    let (st, list) = api.get("/v1/trunks");
    assert_eq!(st, 200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(
        items.len(),
        1,
        "the deleted seed trunk stays deleted: {list}"
    );
    assert_eq!(
        (&items[0]["name"], &items[0]["max_channels"]),
        (&json!("viaapi"), &json!(4))
    );
    assert_eq!(items[0]["password"], "********", "{list}");
}

// ---- live apply with SIPp ---------------------------------------------------------

#[test]
fn api_trunk_takes_a_call_and_max_channels_0_refuses_the_next_at_once() {
    let dir = TempDir::new("api-live");
    let rates = dir.write("rates.csv", "prefix,per_minute,name\n1,0.01,US\n");
    let up_port = free_port();
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n{}",
        rates.display(),
        common::carrier_upstream(up_port)
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let api = Api::new(&server);
    let _uas = carrier_uas(up_port);

    // Before the trunk exists, its credentials get 403.
    let refused_403 = refused_scenario(&dir, 403);
    let out = uac(&server, &dir, &refused_403, ("apipbx", "pw-1"), "before");
    assert!(
        out.all_ok(1),
        "unknown user must be refused\n{}\n{}",
        out.show(),
        server.log_text()
    );

    let (st, t) = api.post(
        "/v1/trunks",
        &json!({"name": "apipbx", "password": "pw-1", "channels_restrict": true, "max_channels": 2}),
    );
    assert_eq!(st, 201, "{t}");
    let out = uac(
        &server,
        &dir,
        &scenario("auth_uac.xml"),
        ("apipbx", "pw-1"),
        "created",
    );
    assert!(out.all_ok(1), "{}\n{}", out.show(), server.log_text());

    let (st, t) = api.put(
        &format!("/v1/trunks/{}", t["id"]),
        &json!({"max_channels": 0}),
    );
    assert_eq!((st, &t["max_channels"]), (200, &json!(0)), "{t}");
    let out = uac(
        &server,
        &dir,
        &refused_scenario(&dir, 503),
        ("apipbx", "pw-1"),
        "zero",
    );
    assert!(out.all_ok(1), "{}\n{}", out.show(), server.log_text());
    let refusal = out
        .msgs
        .iter()
        .find(|m| !m.sent && m.status() == Some(503))
        .map(|m| m.first_line().to_owned());
    assert_eq!(
        refusal.as_deref(),
        Some("SIP/2.0 503 Channel Limit Reached (max_channels 0)"),
        "{}",
        out.show()
    );
}

// ---- DIDs ------------------------------------------------------------------------

const DIDS: &str = "[[trunk]]\nid = 1\nname = \"pbx\"\npassword = \"p\"\n\n\
    [[did]]\nnumber = \"12565378257\"\nchannels = 24\n\
    destinations = [ { transport = 5, destination = \"pbx\", priority = 1 } ]\n\n\
    [[did]]\nnumber = \"12565378258\"\n";

#[test]
fn mydids_list_update_destinations_and_persist() {
    let dir = TempDir::new("api-dids");
    let cfg = config(&dir.path().join("s.db"), DIDS);
    let mut server = Server::start(&cfg);
    let api = Api::new(&server);
    let (st, list) = api.call(Method::GET, "/v1/mydids", Key::None, None);
    assert_eq!(st, 401, "{list}");
    let (st, list) = api.get("/v1/mydids");
    assert_eq!(st, 200, "{list}");
    assert_eq!(
        list["pagination"],
        json!({"page": 1, "per_page": 100, "total": 2, "pages": 1})
    );
    assert_eq!(
        list["items"][0],
        json!({
            "id": "12565378257", "number": "12565378257", "channels": 24, "call_status_url": "",
            "destinations": [{"transport": 5, "destination": "pbx", "priority": 1}],
        })
    );
    let (st, page2) = api.get("/v1/mydids?per_page=1&page=2");
    assert_eq!(st, 200, "{page2}");
    assert_eq!(page2["items"][0]["number"], "12565378258", "{page2}");
    assert_eq!(page2["pagination"]["pages"], 2, "{page2}");
    let (st, e) = api.get("/v1/mydids?per_page=0&page=x");
    assert_eq!(st, 422, "{e}");
    assert!(
        e["details"]["per_page"].is_string() && e["details"]["page"].is_string(),
        "{e}"
    );

    // Update both (one id as a JSON number); answers the stored DIDs.
    let dests = json!([
        {"transport": 4, "destination": "12125550000", "priority": 2},
        {"transport": "5", "destination": "pbx", "priority": 1},
    ]);
    let (st, out) = api.post(
        "/v1/mydids/update-destinations",
        &json!({"ids": ["12565378257", 12565378258u64], "destinations": dests}),
    );
    assert_eq!(st, 200, "{out}");
    let want = json!([
        {"transport": 5, "destination": "pbx", "priority": 1},
        {"transport": 4, "destination": "12125550000", "priority": 2},
    ]);
    assert_eq!(out["items"].as_array().map(Vec::len), Some(2), "{out}");
    for d in out["items"].as_array().into_iter().flatten() {
        assert_eq!(d["destinations"], want, "{out}");
    }

    // 422 naming the field: an unknown DID, an unknown trunk, a bad transport.
    let (st, e) = api.post(
        "/v1/mydids/update-destinations",
        &json!({"ids": ["999"], "destinations": []}),
    );
    assert_eq!(st, 422, "{e}");
    assert!(e["details"]["ids[0]"].is_string(), "{e}");
    let (st, e) = api.post(
        "/v1/mydids/update-destinations",
        &json!({"ids": ["12565378257"], "destinations": [
            {"transport": 5, "destination": "nobody"}, {"transport": 9, "destination": "x", "priority": 2}
        ]}),
    );
    assert_eq!(st, 422, "{e}");
    assert!(
        e["details"]["destinations[0].destination"].is_string(),
        "{e}"
    );
    assert!(e["details"]["destinations[1].transport"].is_string(), "{e}");
    // A trunk a DID routes to cannot be deleted.
    let (st, e) = api.delete("/v1/trunks/1");
    assert_eq!(st, 422, "{e}");

    // SIGHUP with other DIDs in the file: the store's stay.
    std::fs::write(&server.config, config(&dir.path().join("s.db"), "")).expect("rewrite");
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: config re-read", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    assert!(
        server.log_text().contains("differ from the store's"),
        "{}",
        server.log_text()
    );
    let (_, after) = api.get("/v1/mydids");
    assert_eq!(after["pagination"]["total"], 2, "{after}");

    // And a restart keeps the update.
    stop(&mut server);
    let server = Server::start(&cfg);
    let api = Api::new(&server);
    let (_, list) = api.get("/v1/mydids");
    assert_eq!(list["items"][1]["destinations"], want, "{list}");
}

/// `/v1/mydids` CRUD: create (`201`, `409` on a duplicate), read, full
/// replace, delete (`404` after); bad bodies get a `4xx` naming the field
/// and change nothing; the provider's own `update-destinations` body is
/// accepted; creations and deletions survive a restart.
#[test]
fn did_crud_round_trip_bad_bodies_and_the_provider_shaped_update() {
    let dir = TempDir::new("api-did-crud");
    let cfg = config(
        &dir.path().join("s.db"),
        "[[trunk]]\nid = 1\nname = \"pbx\"\npassword = \"p\"\n",
    );
    let mut server = Server::start(&cfg);
    let api = Api::new(&server);
    let (st, e) = api.call(
        Method::POST,
        "/v1/mydids",
        Key::None,
        Some(&json!({"number": "1"})),
    );
    assert_eq!(st, 401, "{e}");

    // Create: `+` dropped, channels as a string, priority defaulted.
    let (st, d) = api.post(
        "/v1/mydids",
        &json!({"number": "+12565550100", "channels": "2",
                "destinations": [{"transport": 5, "destination": "pbx"}]}),
    );
    assert_eq!(st, 201, "{d}");
    let want = json!({
        "id": "12565550100", "number": "12565550100", "channels": 2, "call_status_url": "",
        "destinations": [{"transport": 5, "destination": "pbx", "priority": 1}],
    });
    assert_eq!(d, want);
    let (st, e) = api.post("/v1/mydids", &json!({"number": 12565550100u64}));
    assert_eq!(st, 409, "{e}");
    assert!(is_error_body(&e), "{e}");
    assert_eq!(api.get("/v1/mydids/12565550100"), (200, want.clone()));
    assert_eq!(api.get("/v1/mydids/+12565550100"), (200, want.clone()));

    // Full replace: the GET answer, changed, sent back.
    let mut body = want.clone();
    body["channels"] = json!(3);
    body["call_status_url"] = json!("http://127.0.0.1:9/status");
    body["destinations"] = json!([
        {"transport": 4, "destination": "12125550000", "priority": 2},
        {"transport": 5, "destination": "pbx", "priority": 1},
    ]);
    let (st, up) = api.put("/v1/mydids/12565550100", &body);
    assert_eq!(st, 200, "{up}");
    assert_eq!(up["channels"], 3, "{up}");
    assert_eq!(up["call_status_url"], "http://127.0.0.1:9/status", "{up}");
    assert_eq!(
        up["destinations"][0]["destination"], "pbx",
        "by priority: {up}"
    );
    assert_eq!(api.get("/v1/mydids/12565550100"), (200, up.clone()));
    // Omitted fields take their defaults (a full replace).
    let (st, bare) = api.put("/v1/mydids/12565550100", &json!({}));
    assert_eq!(st, 200, "{bare}");
    assert_eq!(
        (&bare["channels"], &bare["destinations"]),
        (&json!(0), &json!([]))
    );
    assert_eq!(api.put("/v1/mydids/12565550100", &up).0, 200);

    // Bad bodies: 4xx naming what is wrong, and nothing changes.
    let too_big = format!("{{\"number\": \"1\", \"x\": \"{}\"}}", "x".repeat(2 << 20));
    for (method, path, raw, code, field) in [
        (Method::POST, "/v1/mydids", r#"{"channels": 1}"#.to_owned(), 422, "number"),
        (Method::POST, "/v1/mydids", r#"{"number": "12ab"}"#.to_owned(), 422, "number"),
        (Method::POST, "/v1/mydids", r#"{"number": "1", "colour": "red"}"#.to_owned(), 422, "colour"),
        (Method::POST, "/v1/mydids", r#"{"number": "1", "channels": -1}"#.to_owned(), 422, "channels"),
        (Method::POST, "/v1/mydids", r#"{"number": "1", "call_status_url": "ftp://x"}"#.to_owned(), 422, "call_status_url"),
        (Method::POST, "/v1/mydids",
         r#"{"number": "1", "destinations": [{"transport": 1, "destination": "tel:+1212"}]}"#.to_owned(),
         422, "destinations[0].destination"),
        (Method::POST, "/v1/mydids",
         r#"{"number": "1", "destinations": [{"transport": 5, "destination": "nobody"}]}"#.to_owned(),
         422, "destinations[0].destination"),
        (Method::POST, "/v1/mydids",
         r#"{"number": "1", "destinations": [{"transport": 7, "destination": "x"}]}"#.to_owned(),
         422, "destinations[0].transport"),
        (Method::POST, "/v1/mydids", r#"{"number": "1", "destinations": {}}"#.to_owned(), 422, "destinations"),
        (Method::POST, "/v1/mydids", "[1]".to_owned(), 422, "body"),
        (Method::POST, "/v1/mydids", r#"{"number": "1","#.to_owned(), 400, ""),
        (Method::POST, "/v1/mydids", too_big, 413, "limit_bytes"),
        (Method::PUT, "/v1/mydids/12565550100", r#"{"number": "12565550101"}"#.to_owned(), 422, "number"),
        (Method::PUT, "/v1/mydids/12565550100",
         r#"{"destinations": [{"transport": 5, "destination": "pbx"}, {"transport": 4, "destination": "1", "priority": 1}]}"#.to_owned(),
         422, "destinations[1].priority"),
        (Method::PUT, "/v1/mydids/12565550100", "not json".to_owned(), 400, ""),
    ] {
        let resp = api
            .client
            .request(method.clone(), format!("{}{path}", api.base))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .expect("send");
        let st = resp.status().as_u16();
        let e: Value = resp.json().unwrap_or(Value::Null);
        let shown = raw.get(..200).unwrap_or(&raw);
        assert_eq!(st, code, "{method} {path} {shown}: {e}");
        assert!(is_error_body(&e), "{method} {path} {shown}: {e}");
        if !field.is_empty() {
            assert!(e["details"][field].is_string() || e["details"][field].is_number(),
                "{method} {path} {shown}: `{field}` not named: {e}");
        }
    }
    let (_, list) = api.get("/v1/mydids");
    assert_eq!(list["pagination"]["total"], 1, "{list}");
    assert_eq!(api.get("/v1/mydids/12565550100"), (200, up.clone()));

    // The provider's update body: its destination fields `id`, `callhunt`,
    // `active` are ignored; a SIP URI without `sip:` gets it.
    let (st, out) = api.post(
        "/v1/mydids/update-destinations",
        &json!({"ids": ["12565550100"], "destinations": [
            {"id": 1234455, "destination": "1000@127.0.0.1:5090", "priority": 1,
             "callhunt": false, "active": true, "transport": 1},
            {"id": 1234456, "destination": "12125550000", "priority": 2,
             "callhunt": true, "active": true, "transport": "4"},
        ]}),
    );
    assert_eq!(st, 200, "{out}");
    assert_eq!(
        out["items"][0]["destinations"],
        json!([
            {"transport": 1, "destination": "sip:1000@127.0.0.1:5090", "priority": 1},
            {"transport": 4, "destination": "12125550000", "priority": 2},
        ]),
        "{out}"
    );
    // Other unknown fields are still named.
    let (st, e) = api.post(
        "/v1/mydids/update-destinations",
        &json!({"ids": ["12565550100"], "destinations": [
            {"transport": 1, "destinaton": "sip:1000@127.0.0.1"}]}),
    );
    assert_eq!(st, 422, "{e}");
    assert!(
        e["details"]["destinations[0].destinaton"].is_string(),
        "{e}"
    );

    // A second DID; delete the first; both facts survive a restart.
    let (st, d2) = api.post("/v1/mydids", &json!({"number": "12565550200"}));
    assert_eq!(st, 201, "{d2}");
    assert_eq!(api.delete("/v1/mydids/12565550100"), (204, Value::Null));
    for (st, body) in [
        api.get("/v1/mydids/12565550100"),
        api.delete("/v1/mydids/12565550100"),
        api.put("/v1/mydids/12565550100", &json!({})),
    ] {
        assert_eq!(st, 404, "{body}");
        assert!(is_error_body(&body), "{body}");
    }
    stop(&mut server);
    let server = Server::start(&cfg);
    let api = Api::new(&server);
    let (_, list) = api.get("/v1/mydids");
    assert_eq!(list["items"], json!([d2]), "{list}");
}

/// A DID created over the API takes the carrier's call at once (no
/// restart, no SIGHUP) and rings its destination; deleting it lets the call
/// in progress finish, and the next call to it gets `404`.
#[test]
fn did_created_over_the_api_takes_a_call_and_a_deleted_one_stops() {
    const CARRIER: &str = "127.0.0.2";
    const NUMBER: &str = "12565550300";
    let dir = TempDir::new("api-did-call");
    let dest_port = free_port();
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n[[upstream]]\nname = \"carrier\"\n\
         uri = \"sip:{CARRIER}:{}\"\nping_interval_s = 0\ntrusted = true\n",
        common::shipped_rates(),
        free_port()
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let api = Api::new(&server);
    let mut dest = builtin_uas(dest_port, 1);
    // The provider's way of writing a SIP URI: no scheme.
    let (st, d) = api.post(
        "/v1/mydids",
        &json!({"number": NUMBER, "destinations": [
            {"transport": 1, "destination": format!("1000@127.0.0.1:{dest_port}")}]}),
    );
    assert_eq!(st, 201, "{d}");

    let msgs = dir.path().join("carrier.msg");
    let did_uac = scenario("did_uac.xml").display().to_string();
    let mut call = call_from(&server, CARRIER, &["-sf", &did_uac], NUMBER, 2000, &msgs);
    wait_answered(&api, 1);
    assert_eq!(
        api.delete(&format!("/v1/mydids/{NUMBER}")),
        (204, Value::Null)
    );
    let (code, text) = call.wait(Duration::from_secs(30));
    let (dest_code, dest_text) = dest.wait(Duration::from_secs(10));
    let show = format!(
        "{text}\n--- carrier messages ---\n{}\n--- destination ---\n{dest_text}\n--- sipfront ---\n{}",
        std::fs::read_to_string(&msgs).unwrap_or_default(),
        server.log_text()
    );
    assert_eq!(
        code,
        Some(0),
        "the call in progress did not finish well:\n{show}"
    );
    assert_eq!(sipp_counter(&text, "Successful call"), Some(1), "{show}");
    assert_eq!(
        dest_code,
        Some(0),
        "the destination did not take one call:\n{show}"
    );

    // Deleted: the next call is refused as an unknown DID.
    let refused = code_scenario(&dir, "did_uac_refused.xml", 404);
    let refused = refused.display().to_string();
    let msgs404 = dir.path().join("refused.msg");
    let mut call = call_from(&server, CARRIER, &["-sf", &refused], NUMBER, 0, &msgs404);
    let (code, text) = call.wait(Duration::from_secs(30));
    assert_eq!(
        (code, sipp_counter(&text, "Successful call")),
        (Some(0), Some(1)),
        "want 404 after the delete:\n{text}\n{}\n{}",
        std::fs::read_to_string(&msgs404).unwrap_or_default(),
        server.log_text()
    );
}

/// The live views against the real binary: a call in progress shows in
/// `GET /v1/calls` and `DELETE /v1/calls/{call_id}` ends it with BYE on both
/// legs; `/metrics` is Prometheus text; `/v1/registrations` and `/v1/bans`
/// answer lists; the views need the key.
#[test]
fn live_calls_hang_up_metrics_registrations_and_bans() {
    let dir = TempDir::new("api-views");
    let up_port = free_port();
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n{}\n{}",
        common::shipped_rates(),
        common::carrier_upstream(up_port),
        common::IP_TRUNK
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let api = Api::new(&server);
    // The upstream answers and then waits for our BYE.
    let mut uas = builtin_uas(up_port, 1);
    // A caller that holds the call for 20 s unless we hang up.
    let held = dir.path().join("held.msg");
    let mut caller = caller(&server, 20_000, &held);
    let mut call_id = None;
    for _ in 0..50 {
        let (st, v) = api.get("/v1/calls");
        assert_eq!(st, 200, "{v}");
        if let Some(c) = v["items"].as_array().and_then(|a| a.first()) {
            if c["state"] == "answered" {
                call_id = c["call_id"].as_str().map(str::to_owned);
                assert_eq!(c["trunk"], "pbx", "{c}");
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let call_id = call_id.expect("the call shows as answered");
    let started = std::time::Instant::now();
    let (st, v) = api.delete(&format!("/v1/calls/{call_id}"));
    assert_eq!(st, 204, "{v}");
    // The caller would have held the call for 20 s: it ended at once, and
    // the upstream's call ended normally with the BYE it expects.
    assert_hung_up_at_once(&mut caller, &held, &mut uas, 1, started);
    let (st, v) = api.get("/v1/calls");
    assert_eq!(
        (st, v["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    let (st, _) = api.delete("/v1/calls/no-such-call");
    assert_eq!(st, 404);

    let resp = Client::new()
        .get(format!("http://{}/metrics", server.http))
        .bearer_auth(KEY)
        .send()
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().unwrap_or_default();
    assert!(
        text.contains("# TYPE sipfront_calls_total counter"),
        "{text}"
    );
    assert!(text.contains("\nsipfront_calls_total 1\n"), "{text}");
    assert!(
        text.contains(
            "\nsipfront_calls_ended_total{trunk=\"pbx\",direction=\"placed\",\
             disposition=\"answered\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nsipfront_invites_refused_total{reason=\"channel_limit\"} 0\n"),
        "{text}"
    );
    assert!(text.contains("sipfront_cdrs_written_total"), "{text}");
    // The socket layer's counters (a call went through: datagrams both ways).
    for name in ["sipfront_udp_received_total", "sipfront_udp_sent_total"] {
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok());
        assert!(n.is_some_and(|n| n > 0), "{name}: {text}");
    }
    assert!(
        text.contains("\nsipfront_udp_send_queue_dropped_total 0\n"),
        "{text}"
    );
    let (st, v) = api.get("/v1/registrations");
    assert_eq!((st, v["items"].is_array()), (200, true), "{v}");
    let (st, v) = api.get("/v1/bans");
    assert_eq!((st, v["items"].is_array()), (200, true), "{v}");
    let (st, _) = api.delete("/v1/bans/192.0.2.1");
    assert_eq!(st, 404, "not banned");
    let (st, _) = api.call(Method::GET, "/v1/calls", Key::None, None);
    assert_eq!(st, 401);
}

// ---- CDRs ------------------------------------------------------------------------

/// GET with the key and `Accept: text/csv`: (status, content type, body).
fn get_csv(server: &Server, path: &str) -> (u16, String, String) {
    let resp = Client::new()
        .get(format!("http://{}{path}", server.http))
        .bearer_auth(KEY)
        .header("accept", "text/csv")
        .send()
        .expect("csv");
    let st = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (st, ct, resp.text().unwrap_or_default())
}

#[test]
fn cdr_lists_real_calls_with_stats_filters_pages_and_csv() {
    let dir = TempDir::new("api-cdr");
    let up_port = free_port();
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n{}\n{}",
        common::shipped_rates(),
        common::carrier_upstream(up_port),
        common::IP_TRUNK
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let api = Api::new(&server);

    // Empty store: a valid empty answer.
    let (st, v) = api.get("/v1/cdr");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"], json!([]), "{v}");
    assert_eq!(
        v["stats"],
        json!({"count": 0, "duration": 0, "amount": 0.0}),
        "{v}"
    );

    let mut uas = builtin_uas(up_port, 3);
    let target = server.udp.to_string();
    let (code, text) = common::sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-m",
        "3",
        "-l",
        "1",
        "-d",
        "1200",
        "-nostdin",
        "-timeout",
        "30s",
        &target,
    ]);
    assert_eq!(code, Some(0), "{text}\n{}", server.log_text());
    let _ = uas.wait(Duration::from_secs(10));

    // The writer commits within milliseconds; poll up to 5 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let v = loop {
        let (st, v) = api.get("/v1/cdr?type=placed");
        assert_eq!(st, 200, "{v}");
        if v["stats"]["count"] == 3 || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let items = v["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 3, "{v}\n{}", server.log_text());
    let keys = [
        "call_id",
        "date",
        "type",
        "from",
        "to",
        "duration",
        "disposition",
        "sip_code",
        "charge",
        "per_minute",
        "destination",
        "sip_trunk",
        "a_transport",
        "b_transport",
    ];
    let (mut duration, mut amount) = (0, 0.0);
    for it in &items {
        let obj = it.as_object().expect("object");
        assert_eq!(obj.len(), keys.len(), "{it}");
        for k in keys {
            assert!(obj.contains_key(k), "{k} missing: {it}");
        }
        // Every caller here is SIPp over UDP.
        assert_eq!(it["a_transport"], "udp", "{it}");
        assert_eq!(
            (
                &it["type"],
                &it["disposition"],
                &it["sip_code"],
                &it["sip_trunk"]
            ),
            (
                &json!("placed"),
                &json!("answered"),
                &json!(200),
                &json!("pbx")
            ),
            "{it}"
        );
        let d = it["duration"].as_u64().expect("duration");
        assert!((1..=3).contains(&d), "billed ~1.2 s: {it}");
        let (charge, rate) = (
            it["charge"].as_f64().expect("charge is a number"),
            it["per_minute"].as_f64().expect("per_minute is a number"),
        );
        assert!(
            (charge - common::calls::round4(rate * d as f64 / 60.0)).abs() < 1e-9,
            "{it}"
        );
        duration += d;
        amount += charge;
    }
    // Newest first.
    let dates: Vec<&str> = items
        .iter()
        .map(|i| i["date"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);
    assert_eq!(v["stats"]["count"], 3, "{v}");
    assert_eq!(v["stats"]["duration"], duration, "{v}");
    let got = v["stats"]["amount"].as_f64().expect("amount");
    assert!((got - common::calls::round4(amount)).abs() < 1e-9, "{v}");
    assert_eq!(
        v["pagination"],
        json!({"page": 1, "per_page": 100, "total": 3, "pages": 1})
    );

    // Filters.
    let (st, r) = api.get("/v1/cdr?type=received");
    assert_eq!(st, 200, "{r}");
    assert_eq!((&r["items"], &r["stats"]["count"]), (&json!([]), &json!(0)));
    let oldest = dates[2].replace(' ', "%20");
    let (_, r) = api.get(&format!("/v1/cdr?from={oldest}"));
    assert_eq!(r["stats"]["count"], 3, "{r}");
    let (_, r) = api.get("/v1/cdr?to=1999-12-31");
    assert_eq!(r["stats"]["count"], 0, "{r}");

    // Pages: one row each, stats still over all three.
    for page in 1..=3 {
        let (st, p) = api.get(&format!("/v1/cdr?per_page=1&page={page}"));
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["items"], json!([items[page - 1].clone()]), "{p}");
        assert_eq!(p["stats"], v["stats"]);
        assert_eq!(
            p["pagination"],
            json!({"page": page, "per_page": 1, "total": 3, "pages": 3})
        );
    }

    // CSV: header and one line per record, newest first.
    let (st, ct, body) = get_csv(&server, "/v1/cdr?type=placed");
    assert_eq!(
        (st, ct.as_str()),
        (200, "text/csv; charset=utf-8"),
        "{body}"
    );
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines.first().copied(),
        Some(
            "call_id,date,type,from,to,duration,disposition,sip_code,charge,per_minute,\
             destination,sip_trunk"
        ),
        "{body}"
    );
    assert_eq!(lines.len(), 4, "{body}");
    for (line, it) in lines[1..].iter().zip(&items) {
        let call_id = it["call_id"].as_str().unwrap_or("");
        assert!(
            line.starts_with(&format!(
                "{call_id},{},placed,",
                it["date"].as_str().unwrap_or("")
            )),
            "{line}"
        );
    }
    let (_, _, body) = get_csv(&server, "/v1/cdr?type=received");
    assert_eq!(
        body.split("\r\n").filter(|l| !l.is_empty()).count(),
        1,
        "{body}"
    );

    // Validation and the key.
    for (query, field) in [
        ("per_page=0", "per_page"),
        ("per_page=1001", "per_page"),
        ("page=0", "page"),
        ("type=foo", "type"),
        ("from=yesterday", "from"),
        ("to=2026-11-23T10:00:00", "to"),
    ] {
        let (st, e) = api.get(&format!("/v1/cdr?{query}"));
        assert_eq!(st, 422, "{query}: {e}");
        assert!(is_error_body(&e), "{e}");
        assert!(e["details"].get(field).is_some(), "{query}: {e}");
    }
    let (st, e) = api.call(Method::GET, "/v1/cdr", Key::None, None);
    assert_eq!(st, 401, "{e}");
    let (st, _) = api.call(Method::GET, "/v1/cdr?type=placed", Key::Appid(KEY), None);
    assert_eq!(st, 200, "appid in the query is not a CDR parameter");
}

// ---- OpenAPI -----------------------------------------------------------------------

/// A value for each path parameter that names nothing (so no route changes
/// anything): the handler's own `404`, never the router's.
fn fill_params(path: &str) -> String {
    path.replace("{id}", "999999")
        .replace("{number}", "999999")
        .replace("{call_id}", "no-such-call")
        .replace("{ip}", "192.0.2.1")
}

#[test]
fn openapi_document_matches_the_routes_served_and_the_trunk_shape() {
    let dir = TempDir::new("api-openapi");
    let server = Server::start(&config(&dir.path().join("s.db"), ""));
    let api = Api::new(&server);
    let (st, doc) = api.call(Method::GET, "/openapi.json", Key::None, None);
    assert_eq!(st, 200, "served without a key: {doc}");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    // Users read this document without our internal product contract:
    // it cites RFCs and the README, never "SPEC".
    let text = doc.to_string();
    assert!(!text.contains("SPEC"), "the document cites SPEC: {text}");
    let paths = doc["paths"].as_object().expect("paths");
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/v1/bans",
            "/v1/bans/{ip}",
            "/v1/calls",
            "/v1/calls/{call_id}",
            "/v1/cdr",
            "/v1/cluster",
            "/v1/mydids",
            "/v1/mydids/update-destinations",
            "/v1/mydids/{number}",
            "/v1/registrations",
            "/v1/trunks",
            "/v1/trunks/{id}",
            "/v1/upstreams",
        ]
    );
    let methods = ["get", "put", "post", "delete", "patch"];
    for (path, item) in paths {
        let url = fill_params(path);
        let keyed = item
            .as_object()
            .expect("path item")
            .values()
            .all(|op| op.get("security").is_some());
        for m in methods {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            let body = matches!(m, "put" | "post" | "patch").then(|| json!({"no_such_field": 1}));
            let (st, v) = if m == "get" && path == "/metrics" {
                // Not JSON: only the status matters.
                let r = Client::new()
                    .get(format!("http://{}{url}", server.http))
                    .bearer_auth(KEY)
                    .send()
                    .expect("metrics");
                (r.status().as_u16(), Value::Null)
            } else {
                api.call(method.clone(), &url, Key::Bearer(KEY), body.as_ref())
            };
            if item.get(m).is_some() {
                // Served: anything but the router's own 404 or 405.
                assert_ne!(st, 405, "{m} {path} is documented but not served: {v}");
                assert!(
                    !(st == 404 && v["error"] == "no such route"),
                    "{m} {path} is documented but not served: {v}"
                );
                if keyed {
                    let (st, v) = api.call(method, &url, Key::None, body.as_ref());
                    assert_eq!(st, 401, "{m} {path} is documented as keyed: {v}");
                }
            } else {
                assert_eq!(st, 405, "{m} {path} is served but not documented: {v}");
            }
        }
    }
    // Query parameters, the CSV form and the security schemes.
    let op = |p: &str, m: &str| doc["paths"][p][m].clone();
    let params = |o: &Value| -> Vec<String> {
        o["parameters"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        params(&op("/v1/cdr", "get")),
        ["type", "from", "to", "page", "per_page"]
    );
    assert!(op("/v1/cdr", "get")["responses"]["200"]["content"]["text/csv"].is_object());
    assert_eq!(params(&op("/v1/trunks/{id}", "delete")), ["id", "force"]);
    for (code, what) in [
        ("409", "create_trunk"),
        ("413", "create_trunk"),
        ("422", "create_trunk"),
    ] {
        assert!(
            op("/v1/trunks", "post")["responses"][code].is_object(),
            "{what} {code}"
        );
    }
    assert_eq!(doc["components"]["securitySchemes"]["appid"]["in"], "query");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // A real answer has exactly the properties its schema lists.
    let schema_keys = |name: &str| -> Vec<String> {
        let mut k: Vec<String> = doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let (st, t) = api.post(
        "/v1/trunks",
        &json!({"name": "shape", "password": "pw", "allowed_ips": ["10.0.0.0/8"], "max_call_cost": 0.5}),
    );
    assert_eq!(st, 201, "{t}");
    let (st, got) = api.get(&format!("/v1/trunks/{}", t["id"]));
    assert_eq!(st, 200, "{got}");
    assert_eq!(keys(&got), schema_keys("Trunk"), "{got}");
    let (_, list) = api.get("/v1/trunks");
    assert_eq!(keys(&list), schema_keys("Items_Trunk"), "{list}");
    let (_, dids) = api.get("/v1/mydids");
    assert_eq!(keys(&dids), schema_keys("DidPage"), "{dids}");
    assert_eq!(
        keys(&dids["pagination"]),
        schema_keys("Pagination"),
        "{dids}"
    );
    let (st, err) = api.get("/v1/trunks/424242");
    assert_eq!(st, 404);
    assert_eq!(keys(&err), schema_keys("Error"), "{err}");
}

// ---- live changes and calls in progress (SIPp) -------------------------------------

/// A server whose one upstream (a SIPp UAS at the returned port) answers,
/// and the IP-authenticated trunk `pbx` (127.0.0.1) created over the API
/// with `body`'s extra fields; (server, upstream port, trunk id).
fn ip_trunk_rig(dir: &TempDir, body: Value) -> (Server, u16, Value) {
    let up_port = free_port();
    let extra = format!(
        "[rates]\nfile = \"{}\"\n\n{}",
        common::shipped_rates(),
        common::carrier_upstream(up_port)
    );
    let server = Server::start(&config(&dir.path().join("s.db"), &extra));
    let id = post_ip_trunk(&Api::new(&server), body);
    (server, up_port, id)
}

/// Creates the trunk `pbx` authenticated by 127.0.0.1; its id.
fn post_ip_trunk(api: &Api, body: Value) -> Value {
    let mut b = json!({"name": "pbx", "host_request": "127.0.0.1"});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        b.extend(extra.clone());
    }
    let (st, t) = api.post("/v1/trunks", &b);
    assert_eq!(st, 201, "{t}");
    t["id"].clone()
}

/// SIPp's built-in UAC: one call to 12125551234 held `hold_ms` before its
/// own BYE, every message traced to `msgs`.
fn caller(server: &Server, hold_ms: u32, msgs: &Path) -> SippBg {
    call_from(
        server,
        "127.0.0.1",
        &["-sn", "uac"],
        "12125551234",
        hold_ms,
        msgs,
    )
}

/// One SIPp call (`scenario`: `-sn uac` or `-sf FILE`) from `ip` to
/// `number` through sipfront's UDP port, held `hold_ms` once answered,
/// every message traced to `msgs`.
fn call_from(
    server: &Server,
    ip: &str,
    scenario: &[&str],
    number: &str,
    hold_ms: u32,
    msgs: &Path,
) -> SippBg {
    let (hold, msgs) = (hold_ms.to_string(), msgs.display().to_string());
    let target = server.udp.to_string();
    let mut args = scenario.to_vec();
    args.extend([
        "-s",
        number,
        "-i",
        ip,
        "-m",
        "1",
        "-d",
        &hold,
        "-nostdin",
        "-timeout",
        "30s",
        "-trace_msg",
        "-message_file",
        &msgs,
        &target,
    ]);
    SippBg::start(&args)
}

/// Waits (up to 5 s) until `n` calls show as answered in `/v1/calls`.
fn wait_answered(api: &Api, n: usize) {
    let mut seen = Value::Null;
    for _ in 0..50 {
        let (st, v) = api.get("/v1/calls");
        assert_eq!(st, 200, "{v}");
        let answered = v["items"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|c| c["state"] == "answered").count());
        if answered == n {
            return;
        }
        seen = v;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{n} calls never showed as answered: {seen}");
}

/// One IP-authenticated call refused with `code`; the first line of the
/// refusal as received.
fn refused_call(server: &Server, dir: &TempDir, code: u16, tag: &str) -> Option<String> {
    let sf = code_scenario(dir, "did_uac_refused.xml", code);
    // No digest in this scenario: the credentials go unused.
    let out = uac(server, dir, &sf, ("unused", "unused"), tag);
    assert!(
        out.all_ok(1),
        "the call was not refused with {code}:\n{}\n{}",
        out.show(),
        server.log_text()
    );
    out.msgs
        .iter()
        .find(|m| !m.sent && m.status() == Some(code))
        .map(|m| m.first_line().to_owned())
}

/// The CDRs `/v1/cdr` lists: (sip_code, disposition) per call.
fn cdr_outcomes(api: &Api) -> Vec<(u64, String)> {
    let (st, v) = api.get("/v1/cdr");
    assert_eq!(st, 200, "{v}");
    let mut got: Vec<(u64, String)> = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            (
                c["sip_code"].as_u64().unwrap_or(0),
                c["disposition"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

/// Whether `msgs` (a SIPp trace) holds a received BYE.
fn got_bye(msgs: &Path) -> bool {
    read_msgs(msgs)
        .iter()
        .any(|m| !m.sent && m.method() == Some("BYE"))
}

/// The caller's call went on to its own BYE after `hold` from `started`:
/// SIPp counts it successful and received no BYE from us.
fn assert_finished_naturally(
    caller: &mut SippBg,
    msgs: &Path,
    started: std::time::Instant,
    hold: Duration,
) {
    let (_, text) = caller.wait(Duration::from_secs(15));
    assert_eq!(
        common::sipp_counter(&text, "Successful call"),
        Some(1),
        "{text}"
    );
    assert!(started.elapsed() >= hold, "the call was cut short:\n{text}");
    assert!(!got_bye(msgs), "nobody hung up on the caller");
}

/// A call held 20 s was ended by us just after `started`: the caller got
/// our BYE, and the upstream UAS counts `uas_calls` calls ended by BYE.
fn assert_hung_up_at_once(
    caller: &mut SippBg,
    msgs: &Path,
    uas: &mut SippBg,
    uas_calls: u64,
    started: std::time::Instant,
) {
    let (_, uas_text) = uas.wait(Duration::from_secs(10));
    let (_, text) = caller.wait(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the caller would have held 20 s:\n{text}"
    );
    assert!(got_bye(msgs), "the caller got no BYE:\n{text}");
    assert_eq!(
        common::sipp_counter(&uas_text, "Successful call"),
        Some(uas_calls),
        "upstream got no BYE:\n{uas_text}"
    );
}

/// Waits (up to 3 s) until `done` holds for `/v1/cdr`'s outcomes; them.
fn wait_cdrs(api: &Api, done: impl Fn(&[(u64, String)]) -> bool) -> Vec<(u64, String)> {
    let mut outcomes = Vec::new();
    for _ in 0..30 {
        outcomes = cdr_outcomes(api);
        if done(&outcomes) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    outcomes
}

#[test]
fn put_lowering_max_channels_refuses_the_next_call_while_the_call_in_progress_survives() {
    let dir = TempDir::new("api-channels");
    let (server, up_port, id) =
        ip_trunk_rig(&dir, json!({"channels_restrict": true, "max_channels": 2}));
    let api = Api::new(&server);
    let mut uas = builtin_uas(up_port, 1);
    let msgs = dir.path().join("long.msg");
    let started = std::time::Instant::now();
    let mut long = caller(&server, 4000, &msgs);
    wait_answered(&api, 1);

    let (st, t) = api.put(&format!("/v1/trunks/{id}"), &json!({"max_channels": 1}));
    assert_eq!((st, &t["max_channels"]), (200, &json!(1)), "{t}");
    let refusal = refused_call(&server, &dir, 503, "second");
    assert_eq!(
        refusal.as_deref(),
        Some("SIP/2.0 503 Channel Limit Reached (max_channels 1)"),
        "{}",
        server.log_text()
    );

    // The call in progress keeps going to its own BYE, on both sides.
    assert_finished_naturally(&mut long, &msgs, started, Duration::from_secs(4));
    let (_, uas_text) = uas.wait(Duration::from_secs(5));
    assert_eq!(
        common::sipp_counter(&uas_text, "Successful call"),
        Some(1),
        "{uas_text}"
    );
    let outcomes = wait_cdrs(&api, |o| o.len() == 2);
    assert_eq!(
        outcomes,
        [(200, "answered".to_owned()), (503, "failed".to_owned())],
        "{}",
        server.log_text()
    );
}

#[test]
fn trunk_delete_lets_calls_in_progress_finish_and_force_ends_them_on_both_legs() {
    let dir = TempDir::new("api-delete");
    let (server, up_port, id) = ip_trunk_rig(&dir, json!({}));
    let api = Api::new(&server);
    let mut uas = builtin_uas(up_port, 2);

    // Without force: the trunk is gone for new calls, its call goes on.
    let gentle_msgs = dir.path().join("gentle.msg");
    let started = std::time::Instant::now();
    let mut gentle = caller(&server, 3000, &gentle_msgs);
    wait_answered(&api, 1);
    let (st, v) = api.delete(&format!("/v1/trunks/{id}?force=maybe"));
    assert_eq!(
        (st, &v["details"]["force"]),
        (422, &json!("must be a boolean")),
        "{v}"
    );
    let (st, v) = api.delete(&format!("/v1/trunks/{id}"));
    assert_eq!(st, 204, "{v}");
    assert_eq!(api.get(&format!("/v1/trunks/{id}")).0, 404);
    // A new call from the deleted trunk's address is a stranger now.
    assert!(refused_call(&server, &dir, 407, "after-delete").is_some());
    assert_finished_naturally(&mut gentle, &gentle_msgs, started, Duration::from_secs(3));

    // With force: both legs get BYE at once.
    let id = post_ip_trunk(&api, json!({}));
    let forced_msgs = dir.path().join("forced.msg");
    let mut forced = caller(&server, 20_000, &forced_msgs);
    wait_answered(&api, 1);
    let started = std::time::Instant::now();
    let (st, v) = api.delete(&format!("/v1/trunks/{id}?force=true"));
    assert_eq!(st, 204, "{v}");
    // Both upstream calls ended with the BYE the UAS waits for.
    assert_hung_up_at_once(&mut forced, &forced_msgs, &mut uas, 2, started);
    assert!(
        server.wait_log(
            "force ended its 1 calls in progress",
            Duration::from_secs(2)
        ),
        "{}",
        server.log_text()
    );
    let outcomes = wait_cdrs(&api, |o| o.iter().filter(|o| o.0 == 200).count() == 2);
    let answered = outcomes
        .iter()
        .filter(|o| **o == (200, "answered".to_owned()))
        .count();
    assert_eq!(answered, 2, "{outcomes:?}\n{}", server.log_text());
}
