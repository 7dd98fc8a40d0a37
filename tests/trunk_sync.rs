//! SPEC §7 trunk sync against the real binary: a small HTTP server in the
//! test plays the remote control plane (its list, `ETag`/`304`, errors
//! switched by the test). The pulled trunk takes a SIPp digest call; a
//! changed list is followed within `interval_s` (the new trunk works, the
//! removed one gets 403); garbage, `500`, an over-size body and an invalid
//! list each leave the last good set in force and show in `/healthz` and
//! `/metrics`; a `304` re-applies nothing; trunk writes over the API get
//! `409`. Also measures pulling and applying 1,000 trunks, and shows the
//! pulled set survives a restart while the remote is down.

mod common;

use std::time::{Duration, Instant};

use common::calls::{carrier_uas, refused_scenario, uac};
use common::remote::{list, RemoteServer, Reply};
use common::{free_port, scenario, Server, TempDir};
use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

const KEY: &str = "adm1n-key";
const APPID: &str = "sync-appid";

// ---- sipfront and its API -------------------------------------------------------

/// Loopback sipfront with an API key, a carrier at `up_port` and `[sync]`.
fn config(dir: &TempDir, up_port: u16, sync_url: &str) -> String {
    let rates = dir.write("rates.csv", "prefix,per_minute,name\n1,0.01,US\n");
    format!(
        "{loopback}\n[store]\npath = \"{db}\"\n\n[rates]\nfile = \"{rates}\"\n\n\
         [[http.api_key]]\nname = \"admin\"\nkey = \"{KEY}\"\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.1:{up_port};transport=udp\"\n\
         priority = 1\nping_interval_s = 0\n\n\
         [sync]\nurl = \"{sync_url}\"\nappid = \"{APPID}\"\ninterval_s = 1\n",
        loopback = common::LOOPBACK_CONFIG,
        db = dir.path().join("s.db").display(),
        rates = rates.display(),
    )
}

/// (status, body) of an API request with the admin key; JSON when it parses.
fn api(server: &Server, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let client = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut req = client
        .request(method, format!("http://{}{path}", server.http))
        .bearer_auth(KEY);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn healthz_sync(server: &Server) -> Value {
    let (st, h) = api(server, Method::GET, "/healthz", None);
    assert_eq!((st, &h["status"]), (200, &json!("ok")), "{h}");
    h["sync"].clone()
}

/// Polls `/healthz` until `last_result` contains `needle` (10 s at most).
fn wait_result(server: &Server, needle: &str) -> Value {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let sync = healthz_sync(server);
        if sync["last_result"]
            .as_str()
            .is_some_and(|r| r.contains(needle))
        {
            return sync;
        }
        assert!(
            Instant::now() < end,
            "no `{needle}` in /healthz: {sync}\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Trunk names `GET /v1/trunks` lists.
fn trunk_names(server: &Server) -> Vec<String> {
    common::trunk_names(server, KEY)
}

/// Polls until the API lists exactly `names`; how long that took.
fn wait_trunks(server: &Server, names: &[&str]) -> Duration {
    let t0 = Instant::now();
    while trunk_names(server) != names {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "trunks {:?}, want {names:?}\n{}",
            trunk_names(server),
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

/// The value of an unlabelled metric.
fn metric(server: &Server, name: &str) -> f64 {
    let (st, body) = api(server, Method::GET, "/metrics", None);
    assert_eq!(st, 200);
    let text = body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn applied_lines(server: &Server) -> usize {
    server.log_text().matches("trunk sync: applied").count()
}

// ---- the tests --------------------------------------------------------------------

#[test]
fn follows_the_remote_list_and_keeps_the_last_good_set_on_any_error() {
    let dir = TempDir::new("sync");
    let alpha = json!({"id": 1, "name": "alpha", "password": "pw-a", "max_channels": "2",
                       "created_at": "2026-01-01"});
    let beta = json!({"id": 2, "name": "beta", "password": "pw-b"});
    let remote = RemoteServer::start(list(&[alpha], "v1"));
    let up_port = free_port();
    let server = Server::start(&config(&dir, up_port, &remote.url()));
    let _uas = carrier_uas(up_port);
    let call_ok = scenario("auth_uac.xml");
    let refused_403 = refused_scenario(&dir, 403);

    // Start-up pull: the served trunk is listed (password masked) and takes a call.
    wait_trunks(&server, &["alpha"]);
    let (_, trunks) = api(&server, Method::GET, "/v1/trunks", None);
    assert_eq!(trunks["items"][0]["password"], "********", "{trunks}");
    let sync = wait_result(&server, "ok");
    assert_eq!(
        (&sync["etag"], &sync["trunks"]),
        (&json!("\"v1\""), &json!(1)),
        "{sync}"
    );
    let out = uac(&server, &dir, &call_ok, ("alpha", "pw-a"), "alpha");
    assert!(out.all_ok(1), "{}\n{}", out.show(), server.log_text());
    let auth = remote.state.lock().expect("state").authorization.clone();
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {APPID}"))),
        "{auth:?}"
    );
    assert!(
        !server.log_text().contains(APPID),
        "the appid reached the log"
    );

    // The remote swaps alpha for beta: followed within interval_s.
    let t0 = Instant::now();
    remote.set(list(std::slice::from_ref(&beta), "v2"));
    let applied_after = wait_trunks(&server, &["beta"]);
    let out = uac(&server, &dir, &call_ok, ("beta", "pw-b"), "beta");
    assert!(out.all_ok(1), "{}\n{}", out.show(), server.log_text());
    eprintln!(
        "remote change → new trunk in force after {applied_after:?}, its first call done after {:?}",
        t0.elapsed()
    );
    let out = uac(&server, &dir, &refused_403, ("alpha", "pw-a"), "alpha-gone");
    assert!(out.all_ok(1), "alpha must get 403\n{}", out.show());
    assert!(
        server.wait_log(
            "trunk sync: applied trunks: 1 (+1 added: 2; -1 removed: 1)",
            Duration::from_secs(1)
        ),
        "{}",
        server.log_text()
    );

    // Same ETag: 304s, nothing re-applied.
    let (requests, not_modified) = remote.counts();
    let applied = applied_lines(&server);
    let end = Instant::now() + Duration::from_secs(10);
    while remote.counts().1 < not_modified + 2 {
        assert!(Instant::now() < end, "no 304s: {:?}", remote.counts());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(remote.counts().0 >= requests + 2);
    let sync = wait_result(&server, "unchanged");
    assert_eq!(sync["etag"], "\"v2\"", "{sync}");
    assert_eq!(applied_lines(&server), applied, "a 304 re-applied the list");
    assert!(server.log_text().contains("answered 304 Not Modified"));
    assert_eq!(metric(&server, "sipfront_sync_up"), 1.0);
    let good_success = sync["last_success"].clone();

    // Garbage, 500, too large, an invalid list: each keeps beta in force.
    let huge = format!("[{}]", " ".repeat(9 << 20));
    let twin = json!({"id": 3, "name": "beta", "password": "x"});
    let steps = [
        (
            Reply::Raw {
                status: 200,
                body: "<html>oops".into(),
            },
            "not JSON",
        ),
        (
            Reply::Raw {
                status: 500,
                body: "{}".into(),
            },
            "HTTP 500 Internal Server Error",
        ),
        (
            Reply::Raw {
                status: 200,
                body: huge,
            },
            "over the 8388608-byte limit",
        ),
        (
            list(&[beta.clone(), twin], "v3"),
            "trunk[1] (id 3): name: duplicate trunk name `beta`",
        ),
    ];
    let mut failures = 0.0;
    for (i, (reply, why)) in steps.into_iter().enumerate() {
        remote.set(reply);
        let sync = wait_result(&server, why);
        assert_eq!(trunk_names(&server), ["beta"], "{why}");
        assert_eq!(sync["etag"], "\"v2\"", "{why}: {sync}");
        let (attempt, success) = (&sync["last_attempt"], &sync["last_success"]);
        assert!(
            success.as_str() < attempt.as_str() && success.as_str() >= good_success.as_str(),
            "{why}: {sync}"
        );
        assert_eq!(metric(&server, "sipfront_sync_up"), 0.0, "{why}");
        let now = metric(&server, "sipfront_sync_failures_total");
        assert!(now > failures, "{why}: failures {now}");
        failures = now;
        assert!(
            server.log_text().contains(&format!(
                "keeping the last good trunks (1): {}",
                sync["last_result"].as_str().unwrap_or("?")
            )),
            "{why}: one log line says why\n{}",
            server.log_text()
        );
        if i % 2 == 1 {
            let out = uac(
                &server,
                &dir,
                &call_ok,
                ("beta", "pw-b"),
                &format!("kept{i}"),
            );
            assert!(
                out.all_ok(1),
                "{why}\n{}\n{}",
                out.show(),
                server.log_text()
            );
        }
    }
    let stamp = metric(&server, "sipfront_sync_last_success_timestamp_seconds");
    assert!(stamp > 1.7e9, "{stamp}");

    // The remote owns the trunks: writes get 409, reads work.
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/trunks",
            Some(json!({"name": "local", "password": "p"})),
        ),
        (
            Method::PUT,
            "/v1/trunks/2",
            Some(json!({"max_channels": 1})),
        ),
        (Method::DELETE, "/v1/trunks/2", None),
    ] {
        let (st, body) = api(&server, method.clone(), path, body.as_ref());
        assert_eq!(st, 409, "{method} {path}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(
            msg.starts_with(&format!(
                "trunks are managed by [sync] url {}",
                remote.url()
            )),
            "{body}"
        );
    }
    assert_eq!(api(&server, Method::GET, "/v1/trunks/2", None).0, 200);
}

#[test]
fn a_thousand_trunks_pull_validate_and_apply() {
    let dir = TempDir::new("sync-1k");
    let trunks: Vec<Value> = (1..=1000)
        .map(|i| {
            json!({"id": i, "name": format!("{}", 20_000 + i), "password": format!("pw{i}"),
                   "max_call_cost": "0.5", "cost_limit": true, "max_channels": "4",
                   "channels_restrict": true, "allowed_ips": ["10.0.0.0/8"]})
        })
        .collect();
    let remote = RemoteServer::start(list(&trunks, "k1"));
    let server = Server::start(&config(&dir, free_port(), &remote.url()));
    let sync = wait_result(&server, "ok");
    assert_eq!(sync["trunks"], 1000, "{sync}");
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("trunk sync: applied trunks: 1000 (+1000 added"))
        .unwrap_or_else(|| panic!("{log}"));
    eprintln!(
        "1,000 trunks: {}",
        line.rsplit("applied ").next().unwrap_or(line)
    );
    // One changed trunk of 1,000, picked up at the next pull.
    let mut changed = trunks;
    changed[499]["max_channels"] = json!(9);
    remote.set(list(&changed, "k2"));
    assert!(
        server.wait_log(
            "applied trunks: 1000 (~1 changed: 500)",
            Duration::from_secs(5)
        ),
        "{}",
        server.log_text()
    );
    let (_, t) = api(&server, Method::GET, "/v1/trunks/500", None);
    assert_eq!(t["max_channels"], 9, "{t}");

    // The pulled set was stored: a restart with the remote failing starts on it.
    drop(server);
    remote.set(Reply::Raw {
        status: 500,
        body: String::new(),
    });
    let server = Server::start(&config(&dir, free_port(), &remote.url()));
    let sync = wait_result(&server, "HTTP 500");
    assert_eq!(
        (&sync["trunks"], &sync["last_success"]),
        (&json!(1000), &Value::Null),
        "{sync}"
    );
    let (_, t) = api(&server, Method::GET, "/v1/trunks/500", None);
    assert_eq!(t["max_channels"], 9, "{t}");
}
