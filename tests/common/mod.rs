//! Shared helpers for the integration tests: start the real `sipfront`
//! binary on a temporary config with OS-chosen loopback ports, learn the
//! ports from its "ready" log line, stop it on drop; and the parser's
//! corpus helpers (`parsing`).
#![allow(dead_code)]

pub mod calls;
pub mod dnsmasq;
mod parsing;
pub mod phone;
pub mod postgres;
pub mod redis;
pub mod remote;
pub mod rtpengine;
pub mod tls;
#[allow(unused_imports)] // each test binary uses a different part
pub use parsing::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_sipfront");

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("sipfront-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running sipfront. Killed (by its own pid) on drop.
pub struct Server {
    child: Child,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// The first TLS listener, if the config has one.
    pub tls: Option<SocketAddr>,
    /// The HTTP API (`http=[…]` in the ready line).
    pub http: SocketAddr,
    /// The first `ws` listener, if the config has one (`ws=[…]`).
    pub ws: Option<SocketAddr>,
    /// The first `wss` listener, if the config has one (`wss=[…]`).
    pub wss: Option<SocketAddr>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// The config file it runs on (rewrite it, then send SIGHUP).
    pub config: PathBuf,
    _dir: TempDir,
}

/// Config listening on UDP and TCP 127.0.0.1 with ports chosen by the OS.
pub const LOOPBACK_CONFIG: &str = r#"
[[listen]]
transport = "udp"
address = "127.0.0.1:0"

[[listen]]
transport = "tcp"
address = "127.0.0.1:0"

[http]
address = "127.0.0.1:0"
"#;

/// `config` with overload control relaxed to 10 s / 20 s unless it sets
/// its own: the tests run a debug binary logging at debug level on a shared
/// machine, where messages queue past the shipped 200 ms without overload.
fn relaxed_overload(config: &str) -> String {
    const KEYS: &str = "overload_queue_ms = 10000\noverload_drop_ms = 20000\n";
    if config.contains("overload_") {
        config.to_owned()
    } else if let Some(at) = config.find("[server]\n") {
        let at = at + "[server]\n".len();
        format!("{}{KEYS}{}", &config[..at], &config[at..])
    } else {
        format!("{config}\n[server]\n{KEYS}")
    }
}

fn addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    let rest = line.get(start..)?;
    let end = rest.find(']')?;
    rest.get(..end)?.split(',').next()?.trim().parse().ok()
}

impl Server {
    /// Starts sipfront on `config` and waits (up to 20 s) for it to be
    /// ready: the binary cargo built, or `$SIPFRONT_BIN`.
    pub fn start(config: &str) -> Server {
        Server::start_with_env(config, &[])
    }

    /// [`Server::start`] with these environment variables set too.
    pub fn start_with_env(config: &str, env: &[(&str, &std::ffi::OsStr)]) -> Server {
        let dir = TempDir::new("srv");
        let config = relaxed_overload(config);
        let cfg = dir.write("sipfront.toml", &config);
        // SIPFRONT_BIN: another build of the same source (a measurement
        // against target/release/sipfront).
        let bin = std::env::var("SIPFRONT_BIN").unwrap_or_else(|_| BIN.to_owned());
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,sipfront=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sipfront");
        let stderr = child.stderr.take().expect("stderr piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" ready") {
                    let _ = tx.send(line.clone());
                }
                log2.lock().map(|mut l| l.push(line)).ok();
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sipfront did not become ready; log:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        // `udp=[…]` in text, `"udp":"[…]"` with `[log] format = "json"`.
        let find = |k: &str| {
            addr_after(&line, &format!("{k}=["))
                .or_else(|| addr_after(&line, &format!("\"{k}\":\"[")))
        };
        let udp = find("udp").expect("udp address in ready line");
        let tcp = find("tcp").expect("tcp address in ready line");
        let http = find("http").expect("http address in ready line");
        let tls = find("tls");
        let ws = find("ws");
        let wss = find("wss");
        Server {
            child,
            udp,
            tcp,
            tls,
            http,
            ws,
            wss,
            log,
            config: cfg,
            _dir: dir,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits until a log line contains `needle` (true) or `timeout` passes.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's process id (to read its `/proc` figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this server's process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Stops the process (SIGSTOP) and waits until every thread of it is
    /// stopped (`kill` returns before they are), so what is sent next
    /// queues in its sockets. [`Server::resume`] continues it.
    pub fn pause(&self) {
        self.signal("STOP");
        let tasks = PathBuf::from(format!("/proc/{}/task", self.child.id()));
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|d| {
                d.filter_map(Result::ok).all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                        // State is the field after the parenthesised name.
                        st.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            })
        };
        let end = Instant::now() + Duration::from_secs(10);
        while !stopped() {
            assert!(Instant::now() < end, "sipfront did not stop");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Continues a process [`Server::pause`] stopped.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Waits for the process to exit, returning its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal OPTIONS request with a Via naming `transport` and `local`.
pub fn options(transport: &str, local: SocketAddr, target: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:test@{local}>;tag=t{branch}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {branch}@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

// ---- SIPp ----------------------------------------------------------------

/// The `sipp` binary; its absence is a failure (./test.sh installs it).
pub fn sipp_bin() -> &'static str {
    if let Err(e) = Command::new("sipp").arg("-v").output() {
        panic!(
            "SIPp (`sipp`) is not installed ({e}). Install it with \
             `apt-get update && apt-get install -y sip-tester`, or run ./test.sh which does."
        );
    }
    "sipp"
}

/// A scenario file under `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// The cumulative column of a SIPp statistics line such as
/// `  Successful call        |        0                  |        20   `.
pub fn sipp_counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find(|l| l.trim_start().starts_with(name))?
        .split('|')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

/// A loopback port, free on UDP and TCP, for a peer that must be told its
/// port (SIPp `-p`, baresip). Chosen below the kernel's ephemeral range
/// (32768–60999 by default), so no socket bound to port 0 (sipfront's own
/// listeners, another test's SIPp) can take it between this check and the
/// peer's bind; each test process walks its own stretch of the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // LOW..32_000
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(LOW + (base + n) % SPAN) else {
            continue;
        };
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if udp.is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `GET http://{server.http}{path}` with API key `key`: the status and the
/// JSON body (`Null` when empty or not JSON).
pub fn api_get(server: &Server, key: &str, path: &str) -> (u16, serde_json::Value) {
    api_get_at(server.http, key, path)
}

/// [`api_get`] by the API's address (from a thread that does not hold the
/// [`Server`]).
pub fn api_get_at(http: SocketAddr, key: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, text) = api_text_at(http, key, path);
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// `GET` with API key `key`: the status and the body as text (`/metrics`).
pub fn api_text(server: &Server, key: &str, path: &str) -> (u16, String) {
    api_text_at(server.http, key, path)
}

fn api_text_at(http: SocketAddr, key: &str, path: &str) -> (u16, String) {
    let url = format!("http://{http}{path}");
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    match client.get(&url).bearer_auth(key).send() {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (status, resp.text().unwrap_or_default())
        }
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Trunk names `GET /v1/trunks` lists (asserting a `200`), by id.
pub fn trunk_names(server: &Server, key: &str) -> Vec<String> {
    let (st, body) = api_get(server, key, "/v1/trunks");
    assert_eq!(st, 200, "{body}");
    body["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `[[http.api_key]]` with key [`TEST_API_KEY`], for tests that read the API.
pub const TEST_API_KEY_CONFIG: &str = "\n[[http.api_key]]\nname = \"test\"\nkey = \"test-key\"\n";
/// Polls `f` every 50 ms until it holds (true) or `timeout` passes (its
/// last answer).
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// The key of [`TEST_API_KEY_CONFIG`].
pub const TEST_API_KEY: &str = "test-key";

/// Polls `/v1/registrations` until `done(items)` holds (its items then) or
/// `timeout` passes (`None`).
pub fn wait_registrations(
    server: &Server,
    timeout: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Option<Vec<serde_json::Value>> {
    let end = Instant::now() + timeout;
    loop {
        let (status, body) = api_get(server, TEST_API_KEY, "/v1/registrations");
        let items = body
            .get("items")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        if status == 200 && done(&items) {
            return Some(items);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A SIPp running in the background (a UAS playing an upstream); killed by
/// its own pid on drop.
pub struct SippBg {
    child: Child,
    pub out: PathBuf,
    _dir: TempDir,
}

impl SippBg {
    /// Starts `sipp ARGS` with stdout/stderr to a file.
    pub fn start(args: &[&str]) -> SippBg {
        let dir = TempDir::new("sipp");
        let out = dir.0.join("sipp.out");
        let file = std::fs::File::create(&out).expect("create sipp output");
        let err = file.try_clone().expect("clone file");
        let child = Command::new(sipp_bin())
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("start sipp");
        // Let it bind before the caller starts.
        std::thread::sleep(Duration::from_millis(300));
        SippBg {
            child,
            out,
            _dir: dir,
        }
    }

    /// The directory it runs in (message traces land here).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// Waits (up to `timeout`) for it to exit; its exit code and output.
    pub fn wait(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st.code(), self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (None, self.text())
    }

    /// Its output so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for SippBg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a SIPp UAC to completion: (exit code, stdout+stderr, pid).
pub fn sipp_run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(sipp_bin())
        .args(args)
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Places `calls` SIPp `uac` calls to 12125551234 through `server`'s UDP
/// port (`extra` SIPp arguments go before the target) and asserts every
/// one succeeded, with sipfront's log when one did not.
pub fn sipp_calls_ok(server: &Server, calls: u64, extra: &[&str]) {
    let (m, target) = (calls.to_string(), server.udp.to_string());
    let mut args = vec![
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        &m,
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
    ];
    args.extend_from_slice(extra);
    args.push(&target);
    let (code, text) = sipp_run(&args);
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(calls),
        "exit {code:?}\n{text}\n--- sipfront ---\n{}",
        server.log_text()
    );
}

/// The shipped rate table (`1` = USA/Canada at 0.01/min, …).
pub fn shipped_rates() -> String {
    format!("{}/config/rates.csv", env!("CARGO_MANIFEST_DIR"))
}

/// `[[upstream]]` `carrier` at 127.0.0.1:`port` over UDP, not pinged.
pub fn carrier_upstream(port: u16) -> String {
    format!(
        "[[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.1:{port};transport=udp\"\n\
         priority = 1\nping_interval_s = 0\n"
    )
}

/// `[[trunk]]` 1, login `pbx`, authenticated by its source 127.0.0.1.
pub const IP_TRUNK: &str = "[[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n";

/// A sipfront config on OS-chosen ports with one IP-authenticated trunk for
/// 127.0.0.1, the shipped rate table, and the given `[[upstream]]`s as
/// (uri, priority).
pub fn b2bua_config(upstreams: &[(String, u32)]) -> String {
    let mut cfg = LOOPBACK_CONFIG.to_owned();
    cfg.push_str(&format!("\n[rates]\nfile = \"{}\"\n", shipped_rates()));
    cfg.push_str(
        "\n[[trunk]]\nid = 1\nname = \"pbx\"\npassword = \"x\"\nhost_request = \"127.0.0.1\"\n",
    );
    for (i, (uri, prio)) in upstreams.iter().enumerate() {
        cfg.push_str(&format!(
            "\n[[upstream]]\nname = \"up{i}\"\nuri = \"{uri}\"\npriority = {prio}\nping_interval_s = 0\n"
        ));
    }
    cfg
}
