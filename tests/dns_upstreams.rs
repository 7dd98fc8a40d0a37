//! Upstreams configured by host name (RFC 3263), resolved through a dnsmasq
//! started by the test (`[dns] nameservers`): SRV targets as fail-over hops
//! with health per target, a changed record followed after its TTL, a name
//! that does not resolve, and `GET /v1/upstreams` showing all of it.

mod common;

use std::time::{Duration, Instant};

use common::dnsmasq::Dnsmasq;
use common::{b2bua_config, free_port, scenario, sipp_counter, sipp_run, Server, SippBg};
use serde_json::Value;

const KEY: &str = "dns-test-key";

/// A config with one IP trunk, the shipped rates, `[dns]` on `dns`, an API
/// key, and one `[[upstream]]` `carrier` at `uri`.
fn config(dns: &Dnsmasq, uri: &str, extra: &str) -> String {
    let mut cfg = b2bua_config(&[]);
    cfg.push_str(&format!(
        "\n[[http.api_key]]\nname = \"admin\"\nkey = \"{KEY}\"\n\n\
         [dns]\nnameservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"{uri}\"\nping_interval_s = 0\n{extra}",
        dns.addr()
    ));
    cfg
}

fn upstreams(server: &Server) -> Value {
    let url = format!("http://{}/v1/upstreams?appid={KEY}", server.http);
    let resp = reqwest::blocking::get(url).expect("GET /v1/upstreams");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().expect("json")
}

/// Polls `/v1/upstreams` until `cond` holds on the `carrier` entry.
fn wait_upstream(server: &Server, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let v = upstreams(server);
        let carrier = &v["items"][0];
        if cond(carrier) {
            return carrier.clone();
        }
        assert!(
            Instant::now() < end,
            "/v1/upstreams never showed {what}: {v}\n--- log ---\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn target_addrs(carrier: &Value) -> Vec<String> {
    carrier["targets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["address"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// SIPp UAS on `ip:port` (built-in `uas`, or a scenario) that exits after
/// `calls` calls (its counters are printed when it exits).
fn uas(ip: &str, port: u16, sf: Option<&str>, calls: u32) -> SippBg {
    let sf_path = sf.map(|s| scenario(s).display().to_string());
    let port = port.to_string();
    let calls = calls.to_string();
    let mut args: Vec<&str> = Vec::new();
    match &sf_path {
        Some(p) => args.extend(["-sf", p.as_str()]),
        None => args.extend(["-sn", "uas"]),
    }
    args.extend([
        "-i", ip, "-p", &port, "-m", &calls, "-nostdin", "-timeout", "60s",
    ]);
    SippBg::start(&args)
}

/// `calls` calls from the PBX (SIPp `uac`, 127.0.0.1); (successful, failed, text).
fn place_calls(server: &Server, calls: u32) -> (Option<u64>, Option<u64>, String) {
    let target = server.udp.to_string();
    let calls = calls.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        &calls,
        "-l",
        "1",
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-recv_timeout",
        "15000",
        &target,
    ]);
    (
        sipp_counter(&text, "Successful call"),
        sipp_counter(&text, "Failed call"),
        text,
    )
}

/// Two SRV targets, the first (priority 10) answers every INVITE `503`:
/// every call completes on the second (priority 20), and
/// `/v1/upstreams` and `/metrics` show both targets with their SRV data.
#[test]
fn srv_first_target_503_calls_complete_on_the_second() {
    let (p1, p2) = (free_port(), free_port());
    let dns = Dnsmasq::start(
        &[
            format!("--srv-host=_sip._udp.carrier.test,a.carrier.test,{p1},10,1"),
            format!("--srv-host=_sip._udp.carrier.test,b.carrier.test,{p2},20,1"),
        ],
        "127.0.0.1 a.carrier.test\n127.0.0.1 b.carrier.test\n",
        30,
    );
    let mut bad = uas("127.0.0.1", p1, Some("uas_503.xml"), 5);
    let _good = uas("127.0.0.1", p2, None, 5);
    let server = Server::start(&config(&dns, "sip:carrier.test", ""));
    let carrier = wait_upstream(&server, "two SRV targets", |c| {
        c["targets"].as_array().is_some_and(|t| t.len() == 2)
    });
    assert_eq!(carrier["dns"], true);
    assert!(carrier["dns_error"].is_null(), "{carrier}");
    let t = &carrier["targets"];
    assert_eq!(t[0]["address"], format!("127.0.0.1:{p1}"));
    assert_eq!(
        (t[0]["priority"].as_u64(), t[1]["priority"].as_u64()),
        (Some(10), Some(20))
    );
    assert_eq!(t[0]["transport"], "udp");
    assert!(
        t[0]["dns_expires_in"].as_u64().is_some_and(|s| s <= 30),
        "{carrier}"
    );

    let (ok, failed, text) = place_calls(&server, 5);
    assert!(
        ok == Some(5) && failed == Some(0),
        "calls through the second SRV target: ok {ok:?} failed {failed:?}\n{text}\n--- log ---\n{}",
        server.log_text()
    );
    // The first target was really tried (and answered 503) every time:
    // a 503 is not a dead target, so it stays first.
    let (_, bad_text) = bad.wait(Duration::from_secs(20));
    assert_eq!(
        sipp_counter(&bad_text, "Successful call"),
        Some(5),
        "the priority-10 target should have refused each call:\n{bad_text}"
    );
    let metrics = reqwest::blocking::get(format!("http://{}/metrics?appid={KEY}", server.http))
        .expect("metrics")
        .text()
        .expect("text");
    let series = format!(
        "sipfront_upstream_target_up{{upstream=\"carrier\",target=\"127.0.0.1:{p2}\",transport=\"udp\"}} 1"
    );
    assert!(metrics.contains(&series), "{metrics}");
}

/// The first SRV target is dead (nothing answers at all): the call waits
/// out the no-answer fail-over and completes on the live sibling; the
/// upstream as a whole stays up (Kamailio issue 4911 is the opposite).
#[test]
fn dead_srv_target_is_marked_down_alone_and_skipped() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let p1 = silent.local_addr().expect("addr").port();
    let p2 = free_port();
    let dns = Dnsmasq::start(
        &[
            format!("--srv-host=_sip._udp.carrier.test,a.carrier.test,{p1},10,1"),
            format!("--srv-host=_sip._udp.carrier.test,b.carrier.test,{p2},20,1"),
        ],
        "127.0.0.1 a.carrier.test\n127.0.0.1 b.carrier.test\n",
        30,
    );
    let _good = uas("127.0.0.1", p2, None, 1);
    let server = Server::start(&config(&dns, "sip:carrier.test", ""));
    wait_upstream(&server, "two SRV targets", |c| {
        c["targets"].as_array().is_some_and(|t| t.len() == 2)
    });
    // One call: the dead target gets the INVITE, no answer within the 5 s
    // no-answer fail-over, the call completes on the second.
    let (ok, failed, text) = place_calls(&server, 1);
    assert!(
        ok == Some(1) && failed == Some(0),
        "ok {ok:?} failed {failed:?}\n{text}\n--- log ---\n{}",
        server.log_text()
    );
    let carrier = upstreams(&server)["items"][0].clone();
    assert_eq!(carrier["up"], true, "the upstream stays up: {carrier}");
    drop(silent);
}

/// `sip:NAME:PORT`: A records only; when the record changes, calls follow
/// it once its TTL has passed.
#[test]
fn changed_a_record_is_followed_after_its_ttl() {
    let port = free_port();
    let dns = Dnsmasq::start(&[], "127.0.0.1 sw.carrier.test\n", 1);
    let mut first = uas("127.0.0.1", port, None, 1);
    let second = uas("127.0.0.3", port, None, 1);
    let uri = format!("sip:sw.carrier.test:{port}");
    let server = Server::start(&config(&dns, &uri, ""));
    let at1 = format!("127.0.0.1:{port}");
    let at3 = format!("127.0.0.3:{port}");
    wait_upstream(&server, "the first address", |c| {
        target_addrs(c) == [at1.clone()]
    });
    let (ok, _, text) = place_calls(&server, 1);
    assert_eq!(ok, Some(1), "{text}\n{}", server.log_text());
    // The first address took that call, and is gone now (SIPp -m 1 exits):
    // a later call can only complete at the new address.
    let (code, text) = first.wait(Duration::from_secs(30));
    assert!(
        code.is_some() && sipp_counter(&text, "Successful call") == Some(1),
        "the first address should have taken the first call: {code:?}\n{text}"
    );

    dns.set_hosts("127.0.0.3 sw.carrier.test\n");
    wait_upstream(&server, "the changed address", |c| {
        target_addrs(c) == [at3.clone()]
    });
    let (ok, _, text) = place_calls(&server, 1);
    assert_eq!(ok, Some(1), "{text}\n{}", server.log_text());
    drop(second);
}

/// A name that does not resolve: sipfront starts anyway, logs it once,
/// `/v1/upstreams` shows the DNS error and no target, a call gets `503`
/// with a log line saying why, and nothing stays behind.
#[test]
fn a_name_that_does_not_resolve_gives_503_and_says_why() {
    let dns = Dnsmasq::start(&[], "", 1);
    let server = Server::start(&config(&dns, "sip:nowhere.test", ""));
    assert!(
        server.wait_log(
            "DNS: `nowhere.test` does not resolve",
            Duration::from_secs(20)
        ),
        "{}",
        server.log_text()
    );
    let carrier = wait_upstream(&server, "a DNS error", |c| !c["dns_error"].is_null());
    assert_eq!(carrier["up"], false);
    assert_eq!(carrier["targets"], serde_json::json!([]));
    let target = server.udp.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-nostdin",
        "-timeout",
        "15s",
        &target,
    ]);
    assert!(text.contains("503 Service Unavailable"), "no 503:\n{text}");
    assert!(
        server.wait_log(
            "no upstream has an address: `carrier` (nowhere.test)",
            Duration::from_secs(5)
        ),
        "{}",
        server.log_text()
    );
    // Logged once, however many retries happened meanwhile: wait until
    // dnsmasq has answered a retried lookup (the first NAPTR query and at
    // least one more; retries start 2 s after a failure).
    let end = Instant::now() + Duration::from_secs(20);
    while dns.log_text().matches("query[NAPTR] nowhere.test").count() < 2 {
        assert!(
            Instant::now() < end,
            "sipfront never retried the lookup:\n{}",
            dns.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = server.log_text();
    assert_eq!(log.matches("does not resolve").count(), 1, "{log}");
    let url = format!("http://{}/v1/calls?appid={KEY}", server.http);
    let calls: Value = reqwest::blocking::get(url)
        .expect("calls")
        .json()
        .expect("json");
    assert_eq!(calls["items"], serde_json::json!([]));
    let metrics = reqwest::blocking::get(format!("http://{}/metrics?appid={KEY}", server.http))
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("sipfront_upstream_dns_ok{upstream=\"carrier\"} 0"),
        "{metrics}"
    );
}

/// `sipfront check` accepts a host name and a `sips:` URI (dialled over
/// TLS); a bad failover code is still an error naming its key.
#[test]
fn check_accepts_a_host_name_and_sips() {
    let dir = common::TempDir::new("dnscheck");
    let ok = dir.write(
        "ok.toml",
        "[[upstream]]\nname = \"c\"\nuri = \"sip:carrier.example.net\"\n\
         failover_codes = [408, \"5xx\", 486]\ntrusted_cidrs = [\"192.0.2.0/24\"]\n\
         [dns]\nnameservers = [\"127.0.0.1:53\"]\n",
    );
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&ok)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.write(
        "bad.toml",
        "[[upstream]]\nname = \"c\"\nuri = \"sips:carrier.example.net\"\n\
         failover_codes = [200]\n",
    );
    let out = std::process::Command::new(common::BIN)
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("upstream[0].uri"), "{err}");
    assert!(err.contains("upstream[0].failover_codes[0]"), "{err}");
}

/// A DID destination `sip:1000@pbx.test:PORT` (transport 1) with an A
/// record in dnsmasq: a call from the trusted carrier reaches the SIPp UAS
/// at the resolved address, the Request-URI keeping the name (RFC 3263).
#[test]
fn did_destination_host_name_is_resolved_and_the_call_reaches_it() {
    let (pbx, carrier) = (free_port(), free_port());
    let dns = Dnsmasq::start(&[], "127.0.0.1 pbx.test\n", 30);
    let mut uas = uas("127.0.0.1", pbx, None, 1);
    let mut cfg = b2bua_config(&[]);
    cfg.push_str(&format!(
        "\n[dns]\nnameservers = [\"{}\"]\n\n\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.2:{carrier}\"\n\
         ping_interval_s = 0\ntrusted = true\n\n\
         [[did]]\nnumber = \"12565378257\"\n\
         destinations = [ {{ transport = 1, destination = \"sip:1000@pbx.test:{pbx}\" }} ]\n",
        dns.addr()
    ));
    let server = Server::start(&cfg);
    assert!(
        server.wait_log(
            "DID destination host `pbx.test` resolves",
            Duration::from_secs(20)
        ),
        "pbx.test never resolved\n--- log ---\n{}",
        server.log_text()
    );
    let target = server.udp.to_string();
    let port = carrier.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12565378257",
        "-i",
        "127.0.0.2",
        "-p",
        &port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-recv_timeout",
        "15000",
        &target,
    ]);
    assert_eq!(
        (
            sipp_counter(&text, "Successful call"),
            sipp_counter(&text, "Failed call")
        ),
        (Some(1), Some(0)),
        "the DID call should reach pbx.test\n{text}\n--- log ---\n{}",
        server.log_text()
    );
    let (_, uas_text) = uas.wait(Duration::from_secs(20));
    assert_eq!(
        sipp_counter(&uas_text, "Successful call"),
        Some(1),
        "{uas_text}"
    );
}
