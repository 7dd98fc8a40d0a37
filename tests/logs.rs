//! `[log] format = "json"` against the real binary: every line sipfront
//! writes is one JSON object, and each call SIPp places through it ends in
//! a `call ended` line whose `call_id` and `trunk` are fields of their own,
//! the same Call-IDs the CDRs hold, and the per-trunk quality counters of
//! `/metrics` count them. A bad format is a config error naming
//! file, line and key.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    api_get, b2bua_config, calls::builtin_uas, free_port, Server, TempDir, BIN, TEST_API_KEY,
    TEST_API_KEY_CONFIG,
};
use serde_json::Value;

const CALLS: usize = 3;

/// Every log line, parsed; panics on a line that is not a JSON object.
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .log_text()
        .lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v.is_object() => v,
            _ => panic!("not a JSON object line: {l}"),
        })
        .collect()
}

fn ended(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("call ended"))
        })
        .collect()
}

#[test]
fn json_lines_parse_and_each_call_carries_its_call_id_and_trunk() {
    let carrier_port = free_port();
    let mut carrier = builtin_uas(carrier_port, CALLS as u32);
    let mut cfg = b2bua_config(&[(format!("sip:127.0.0.1:{carrier_port}"), 1)]);
    cfg.push_str(TEST_API_KEY_CONFIG);
    cfg.push_str("\n[log]\nformat = \"json\"\n");
    let server = Server::start(&cfg);
    common::sipp_calls_ok(&server, CALLS as u64, &[]);
    let (uas_code, uas_text) = carrier.wait(Duration::from_secs(10));
    assert_eq!(uas_code, Some(0), "{uas_text}");

    let end = Instant::now() + Duration::from_secs(10);
    while ended(&json_lines(&server)).len() < CALLS && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = json_lines(&server);
    // The usual keys of tracing-subscriber's JSON, fields flattened beside them.
    let ready = lines
        .iter()
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains(" ready")))
        .expect("ready line");
    for key in ["timestamp", "level", "target"] {
        assert!(ready[key].is_string(), "{key} in {ready}");
    }
    let ended = ended(&lines);
    assert_eq!(ended.len(), CALLS, "{}", server.log_text());
    let mut logged = BTreeSet::new();
    for v in &ended {
        assert_eq!(v["level"], "INFO", "{v}");
        assert_eq!(v["trunk"], "pbx", "{v}");
        assert_eq!(v["trunk_id"], 1, "{v}");
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["disposition"], "answered", "{v}");
        let id = v["call_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{v}");
        logged.insert(id.to_owned());
    }
    let (st, cdr) = api_get(&server, TEST_API_KEY, "/v1/cdr");
    assert_eq!(st, 200, "{cdr}");
    let stored: BTreeSet<String> = cdr["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["call_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(logged, stored, "the logged Call-IDs are the CDRs'");

    // The same calls in the per-trunk quality counters: three answered
    // (ASR 1), each with a post-dial delay (SIPp's uas rings, then answers).
    let (st, metrics) = common::api_text(&server, TEST_API_KEY, "/metrics");
    assert_eq!(st, 200, "{metrics}");
    for line in [
        format!("sipfront_trunk_final_responses_total{{trunk=\"pbx\",code=\"200\"}} {CALLS}"),
        format!("sipfront_trunk_post_dial_delay_seconds_count{{trunk=\"pbx\"}} {CALLS}"),
        format!(
            "sipfront_trunk_post_dial_delay_seconds_bucket{{trunk=\"pbx\",le=\"+Inf\"}} {CALLS}"
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    assert_eq!(
        metrics
            .lines()
            .filter(|l| l.starts_with("# TYPE sipfront_trunk_post_dial_delay_seconds histogram"))
            .count(),
        1,
        "{metrics}"
    );
}

#[test]
fn an_unknown_format_names_file_line_and_key() {
    let dir = TempDir::new("log-format");
    let cfg = dir.write(
        "bad.toml",
        "[server]\nrealm = \"x\"\n\n[log]\nformat = \"xml\"\n",
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run sipfront check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":5:") && err.contains("log.format") && err.contains("json"),
        "{err}"
    );
}
