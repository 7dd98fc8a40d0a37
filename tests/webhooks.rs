//! SPEC §7 call-status webhooks against the real binary: receivers written
//! here (std `TcpListener` threads speaking just enough HTTP/1.1) record
//! what sipfront POSTs. An outbound trunk call and an inbound DID call each
//! report `ringing`, `answered`, `completed` in order to the right URL, a
//! busy or refused call reports `failed`, a receiver answering 500 once still
//! gets the event (retried), and a receiver that never answers neither
//! fails nor delays calls while `/metrics` accounts for every event.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::calls::{builtin_uas, call_ids, read_cdrs};
use common::{free_port, scenario, sipp_counter, sipp_run, Server, SippBg, TempDir};
use serde_json::Value;

const KEY: &str = "hooks-key";

/// How a test receiver answers.
#[derive(Clone, Copy)]
enum Mode {
    /// 200 to everything.
    Ok,
    /// 500 to the first POST, 200 after.
    FailFirst,
    /// Accepts connections, never reads, never answers.
    BlackHole,
}

/// A webhook receiver on 127.0.0.1: the JSON bodies it accepted, in order.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    /// POSTs seen (answered 500 or 200).
    posts: Arc<AtomicU32>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(AtomicU32::new(0));
        let (b, p) = (bodies.clone(), posts.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                match mode {
                    Mode::BlackHole => held.push(conn),
                    Mode::Ok | Mode::FailFirst => {
                        let (b, p) = (b.clone(), p.clone());
                        std::thread::spawn(move || serve(conn, mode, &b, &p));
                    }
                }
            }
        });
        Receiver {
            addr,
            bodies,
            posts,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// Waits (up to `timeout`) for `n` accepted bodies.
    fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let end = Instant::now() + timeout;
        while Instant::now() < end && self.bodies().len() < n {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.bodies()
    }
}

/// One connection: one request (we answer `Connection: close`).
fn serve(mut conn: TcpStream, mode: Mode, bodies: &Mutex<Vec<Value>>, posts: &AtomicU32) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65_536 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post "), "{head}");
    assert!(
        head.contains("content-type: application/json"),
        "JSON content type:\n{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let seen = posts.fetch_add(1, Ordering::SeqCst);
    let status = match mode {
        Mode::FailFirst if seen == 0 => "500 Internal Server Error",
        _ => {
            let body: Value =
                serde_json::from_slice(&buf[head_end..head_end + len]).expect("the body is JSON");
            bodies.lock().expect("bodies").push(body);
            "200 OK"
        }
    };
    let _ = conn.write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
}

/// sipfront with an API key, a store in `dir`, drain 1 s, and `extra`.
fn start(dir: &TempDir, extra: &str) -> Server {
    let cfg = format!(
        "{loopback}\n[server]\ndrain_s = 1\n\n[store]\npath = \"{db}\"\n\n\
         [[http.api_key]]\nname = \"admin\"\nkey = \"{KEY}\"\n\n\
         [rates]\nfile = \"{rates}\"\n\n{extra}\n",
        loopback = common::LOOPBACK_CONFIG,
        db = db(dir).display(),
        rates = common::shipped_rates(),
    );
    Server::start(&cfg)
}

fn db(dir: &TempDir) -> PathBuf {
    dir.path().join("s.db")
}

/// An upstream at `port` and the IP-authenticated trunk `pbx` (127.0.0.1).
fn trunk_and_upstream(port: u16) -> String {
    format!("{}\n{}", common::carrier_upstream(port), common::IP_TRUNK)
}

fn global(url: &str) -> String {
    format!("[webhooks]\ncall_status_url = \"{url}\"\n")
}

/// The `/metrics` value of `name`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = reqwest::blocking::Client::new()
        .get(format!("http://{}/metrics", server.http))
        .bearer_auth(KEY)
        .timeout(Duration::from_secs(5))
        .send()
        .and_then(|r| r.text())
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

fn states(bodies: &[Value]) -> Vec<&str> {
    bodies.iter().filter_map(|b| b["state"].as_str()).collect()
}

/// SIGTERM and the CDRs it flushed.
fn stop_and_read_cdrs(server: &mut Server, db: &Path) -> Vec<common::calls::Cdr> {
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    read_cdrs(db).expect("CDRs")
}

#[test]
fn outbound_call_reports_ringing_answered_completed_to_the_global_url() {
    let dir = TempDir::new("hooks-out");
    let hook = Receiver::start(Mode::Ok);
    let up = free_port();
    let extra = format!("{}{}", global(&hook.url("/calls")), trunk_and_upstream(up));
    let mut server = start(&dir, &extra);
    let mut upstream = builtin_uas(up, 1);
    let msgs = dir.path().join("uac.msg");
    let msgs_s = msgs.display().to_string();
    let target = server.udp.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-d",
        "1200",
        "-nostdin",
        "-timeout",
        "20s",
        "-trace_msg",
        "-message_file",
        &msgs_s,
        &target,
    ]);
    assert_eq!(sipp_counter(&text, "Successful call"), Some(1), "{text}");
    upstream.wait(Duration::from_secs(5));
    let got = hook.wait_for(3, Duration::from_secs(10));
    assert_eq!(
        states(&got),
        ["ringing", "answered", "completed"],
        "{got:#?}"
    );
    let sent = call_ids(&common::calls::read_msgs(&msgs), |m| {
        m.sent && m.method() == Some("INVITE")
    });
    let call_id = sent.iter().next().expect("the caller's Call-ID").clone();
    for b in &got {
        assert_eq!(b["call_id"], call_id.as_str(), "{b}");
        assert_eq!(b["direction"], "placed", "{b}");
        assert_eq!(b["to"], "12125551234", "{b}");
        assert_eq!(b["trunk"], "pbx", "{b}");
        assert!(
            b["timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000),
            "{b}"
        );
    }
    let codes: Vec<u64> = got.iter().filter_map(|b| b["sip_code"].as_u64()).collect();
    assert_eq!(codes, [180, 200, 200]);
    let (t0, t2) = (got[0]["timestamp"].as_u64(), got[2]["timestamp"].as_u64());
    assert!(t0 <= t2, "timestamps move forward: {got:#?}");
    let cdrs = stop_and_read_cdrs(&mut server, &db(&dir));
    let cdr = cdrs.iter().find(|c| c.call_id == call_id).expect("its CDR");
    let done = &got[2];
    assert_eq!(done["from"], cdr.from.as_str(), "{done} vs {cdr:?}");
    assert_eq!(done["duration"].as_i64(), Some(cdr.duration));
    assert!((1..=3).contains(&cdr.duration), "{cdr:?}");
    assert_eq!(got[0]["duration"], 0);
}

#[test]
fn did_call_reports_to_its_own_url_retrying_a_500() {
    let dir = TempDir::new("hooks-did");
    let global_hook = Receiver::start(Mode::Ok);
    let did_hook = Receiver::start(Mode::FailFirst);
    let (carrier, phone) = (free_port(), free_port());
    let extra = format!(
        "{global}\
         [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.2:{carrier};transport=udp\"\n\
         priority = 5\nping_interval_s = 0\ntrusted = true\n\n\
         [[did]]\nnumber = \"12565378257\"\ncall_status_url = \"{did_url}\"\n\
         destinations = [{{ transport = 1, destination = \"sip:phone@127.0.0.1:{phone}\" }}]\n",
        global = global(&global_hook.url("/global")),
        did_url = did_hook.url("/did"),
    );
    let server = start(&dir, &extra);
    let mut dest = builtin_uas(phone, 1);
    let (sf, port, target) = (
        scenario("did_uac.xml").display().to_string(),
        carrier.to_string(),
        server.udp.to_string(),
    );
    let (_, text) = sipp_run(&[
        "-sf",
        &sf,
        "-s",
        "12565378257",
        "-i",
        "127.0.0.2",
        "-p",
        &port,
        "-m",
        "1",
        "-d",
        "500",
        "-nostdin",
        "-timeout",
        "20s",
        &target,
    ]);
    assert_eq!(sipp_counter(&text, "Successful call"), Some(1), "{text}");
    dest.wait(Duration::from_secs(5));
    // The first POST got 500 and was retried after 1 s; order holds.
    let got = did_hook.wait_for(3, Duration::from_secs(10));
    assert_eq!(
        states(&got),
        ["ringing", "answered", "completed"],
        "{got:#?}"
    );
    for b in &got {
        assert_eq!(b["direction"], "received", "{b}");
        assert_eq!(b["to"], "12565378257", "{b}");
        assert_eq!(b["from"], "12125550000", "{b}");
        assert_eq!(b["trunk"], Value::Null, "{b}");
    }
    assert_eq!(
        did_hook.posts.load(Ordering::SeqCst),
        4,
        "3 events, 1 retry"
    );
    assert!(
        global_hook.bodies().is_empty(),
        "the DID's URL, not the global one"
    );
    assert_eq!(metric(&server, "sipfront_webhook_retries_total"), 1);
    assert_eq!(metric(&server, "sipfront_webhooks_delivered_total"), 3);
    assert_eq!(metric(&server, "sipfront_webhooks_failed_total"), 0);
    assert_eq!(metric(&server, "sipfront_webhooks_queued"), 0);
}

#[test]
fn busy_and_refused_calls_report_failed_with_their_status() {
    let dir = TempDir::new("hooks-failed");
    let hook = Receiver::start(Mode::Ok);
    let up = free_port();
    let extra = format!("{}{}", global(&hook.url("/calls")), trunk_and_upstream(up));
    let server = start(&dir, &extra);
    let (uas_sf, up_s) = (
        scenario("uas_486.xml").display().to_string(),
        up.to_string(),
    );
    let _upstream = SippBg::start(&[
        "-sf",
        &uas_sf,
        "-i",
        "127.0.0.1",
        "-p",
        &up_s,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
    ]);
    let (uac_sf, target) = (
        scenario("uac_busy.xml").display().to_string(),
        server.udp.to_string(),
    );
    let (_, text) = sipp_run(&[
        "-sf",
        &uac_sf,
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        &target,
    ]);
    assert_eq!(sipp_counter(&text, "Successful call"), Some(1), "{text}");
    // A number with no rate: refused (404) by the trunk's policy.
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "99999",
        "-i",
        "127.0.0.1",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "10s",
        &target,
    ]);
    assert_eq!(sipp_counter(&text, "Failed call"), Some(1), "{text}");
    let got = hook.wait_for(2, Duration::from_secs(10));
    let summary: Vec<(String, u64)> = got
        .iter()
        .map(|b| {
            let s = b["state"].as_str().unwrap_or_default().to_owned();
            (s, b["sip_code"].as_u64().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        summary,
        [("failed".to_owned(), 486), ("failed".to_owned(), 404)],
        "{got:#?}"
    );
    assert_eq!(got[1]["to"], "99999");
    assert_eq!(got[1]["trunk"], "pbx");
}

#[test]
fn a_black_hole_receiver_neither_fails_nor_delays_calls() {
    let dir = TempDir::new("hooks-hole");
    let hole = Receiver::start(Mode::BlackHole);
    let up = free_port();
    let extra = format!("{}{}", global(&hole.url("/calls")), trunk_and_upstream(up));
    let mut server = start(&dir, &extra);
    let mut upstream = builtin_uas(up, 100);
    let target = server.udp.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-r",
        "50",
        "-m",
        "100",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        &target,
    ]);
    assert_eq!(
        (
            sipp_counter(&text, "Successful call"),
            sipp_counter(&text, "Failed call")
        ),
        (Some(100), Some(0)),
        "{text}"
    );
    upstream.wait(Duration::from_secs(5));
    // Each call's three events are held, being tried, or given up: counted.
    let end = Instant::now() + Duration::from_secs(5);
    let accounted = loop {
        let n = metric(&server, "sipfront_webhooks_queued")
            + metric(&server, "sipfront_webhooks_failed_total")
            + metric(&server, "sipfront_webhooks_dropped_total");
        if n == 300 || Instant::now() > end {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(accounted, 300, "every event queued, failed or dropped");
    assert_eq!(metric(&server, "sipfront_webhooks_delivered_total"), 0);
    assert!(metric(&server, "sipfront_webhooks_queued") > 0);
    // Stopping waits a bounded grace for them, not their retries.
    let stop = Instant::now();
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(
        stop.elapsed() < Duration::from_secs(8),
        "{:?}",
        stop.elapsed()
    );
    assert!(
        server.log_text().contains("still undelivered"),
        "{}",
        server.log_text()
    );
}
