//! A real carrier: Kamailio (started here on loopback, stopped by PID) is
//! registrar for the trunk account and challenges every INVITE with 407.
//! sipfront registers, a PBX call goes out through the challenge, and a call
//! from the carrier to the registered contact reaches the DID's destination.
//! Bad carriers (SIPp UASs): a second challenge, an unknown algorithm, a
//! registration refused with 403.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::calls::{builtin_uas, refused_scenario, uac};
use common::*;

const DID: &str = "12565378257";

/// Kamailio in the foreground (`-DD -E`), killed by its PID on drop.
struct Kamailio {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Kamailio {
    /// Starts `tests/kamailio/carrier.cfg` on 127.0.0.1:`port`, relaying
    /// authenticated INVITEs to 127.0.0.1:`uas_port`.
    fn start(port: u16, uas_port: u16) -> Kamailio {
        let dir = TempDir::new("kam");
        let tpl = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio/carrier.cfg"),
        )
        .expect("carrier.cfg");
        let cfg = dir.write(
            "carrier.cfg",
            &tpl.replace("KPORT", &port.to_string())
                .replace("UASPORT", &uas_port.to_string()),
        );
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).expect("run dir");
        let log = dir.path().join("kam.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("clone");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "64", "-Y"])
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start kamailio (Debian package kamailio)");
        let k = Kamailio {
            child,
            log,
            _dir: dir,
        };
        assert!(
            k.wait_log("SO_RCVBUF is finally", Duration::from_secs(20)),
            "kamailio did not start:\n{}",
            k.text()
        );
        k
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the main process: it stops its children.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// sipfront with the digest trunk `pbx`/`pbxpw`, `upstream` (TOML) and the
/// DID ringing the SIP URI at 127.0.0.1:`did_port`.
fn config(upstream: &str, did_port: u16) -> String {
    format!(
        "{LOOPBACK_CONFIG}{TEST_API_KEY_CONFIG}\n[server]\ndrain_s = 5\n\
         [rates]\nfile = \"{}\"\n\
         [[trunk]]\nid = 1\nname = \"pbx\"\npassword = \"pbxpw\"\n\
         {upstream}\n\
         [[did]]\nnumber = \"{DID}\"\n\
         destinations = [ {{ transport = 1, destination = \"sip:did@127.0.0.1:{did_port}\" }} ]\n",
        shipped_rates()
    )
}

/// `GET /v1/upstreams` until `done(first upstream)` or `timeout`.
fn wait_upstream(
    server: &Server,
    timeout: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let end = Instant::now() + timeout;
    loop {
        let (status, body) = api_get(server, TEST_API_KEY, "/v1/upstreams");
        let first = body["items"][0].clone();
        if status == 200 && done(&first) || Instant::now() >= end {
            return first;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `GET /v1/calls` lists no call.
fn no_calls_left(server: &Server) -> bool {
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end {
        let (_, body) = api_get(server, TEST_API_KEY, "/v1/calls");
        if body["items"].as_array().is_some_and(Vec::is_empty) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn kamailio_carrier_registration_challenged_call_out_and_did_call_in() {
    let (kport, uas_port, did_port) = (free_port(), free_port(), free_port());
    let kam = Kamailio::start(kport, uas_port);
    let upstream = format!(
        "[[upstream]]\nname = \"kam\"\nuri = \"sip:127.0.0.1:{kport}\"\nping_interval_s = 0\n\
         username = \"acct\"\npassword = \"trunkpw\"\nregister = true\nregister_expires_s = 120\n"
    );
    let mut server = Server::start(&config(&upstream, did_port));
    let up = wait_upstream(&server, Duration::from_secs(20), |u| {
        u["registration"]["state"] == "registered"
    });
    assert_eq!(
        up["registration"]["state"],
        "registered",
        "{up}\nsipfront:\n{}\nkamailio:\n{}",
        server.log_text(),
        kam.text()
    );
    assert!(up["registration"]["expires"].as_u64().is_some(), "{up}");
    assert!(up["registration"]["last_error"].is_null(), "{up}");
    assert!(kam.wait_log("carrier: REGISTER sip:acct@", Duration::from_secs(5)));
    let (_, metrics) = {
        let r = reqwest::blocking::Client::new()
            .get(format!("http://{}/metrics", server.http))
            .bearer_auth(TEST_API_KEY)
            .send()
            .expect("metrics");
        (r.status(), r.text().unwrap_or_default())
    };
    assert!(
        metrics.contains("sipfront_upstream_registered{upstream=\"kam\"} 1"),
        "{metrics}"
    );

    // Out: PBX (digest toward sipfront) → sipfront → Kamailio's 407,
    // answered → the carrier's UAS.
    let mut carrier_uas = builtin_uas(uas_port, 1);
    let dir = TempDir::new("carrier-out");
    let out = uac(
        &server,
        &dir,
        &scenario("auth_uac.xml"),
        ("pbx", "pbxpw"),
        "out",
    );
    assert!(
        out.all_ok(1),
        "{}\nsipfront:\n{}\nkamailio:\n{}",
        out.show(),
        server.log_text(),
        kam.text()
    );
    assert!(kam.text().contains("carrier: challenging INVITE"));
    assert!(kam
        .text()
        .contains("carrier: authenticated INVITE for 12125551234"));
    let (code, text) = carrier_uas.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "carrier UAS:\n{text}");

    // In: the carrier's customer (127.0.0.2) → Kamailio lookup("location")
    // → the contact sipfront registered → the DID's destination.
    let mut did_uas = builtin_uas(did_port, 1);
    let target = format!("127.0.0.1:{kport}");
    let uac_port = free_port().to_string();
    let (code, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        DID,
        "-i",
        "127.0.0.2",
        "-p",
        &uac_port,
        "-m",
        "1",
        "-d",
        "200",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        &target,
    ]);
    assert_eq!(
        code,
        Some(0),
        "{text}\nsipfront:\n{}\nkamailio:\n{}",
        server.log_text(),
        kam.text()
    );
    let (code, text) = did_uas.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "DID destination:\n{text}");
    assert!(no_calls_left(&server), "calls left:\n{}", server.log_text());

    // Stop: the account is unregistered (the registrar's challenge answered).
    server.signal("TERM");
    assert!(
        kam.wait_log("expires 0", Duration::from_secs(10)),
        "no unregistration:\n{}\nsipfront:\n{}",
        kam.text(),
        server.log_text()
    );
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(server.log_text().contains("unregistered from upstream"));
}

/// A bad carrier played by SIPp: its template with `__ALG__` filled.
fn bad_carrier(dir: &TempDir, port: u16, alg: &str) -> SippBg {
    let tpl = std::fs::read_to_string(scenario("carrier_challenge.xml")).expect("template");
    let sf = dir.write(&format!("carrier_{alg}.xml"), &tpl.replace("__ALG__", alg));
    let (sf, port) = (sf.display().to_string(), port.to_string());
    SippBg::start(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
    ])
}

fn credentials_upstream(port: u16) -> String {
    format!(
        "[[upstream]]\nname = \"bad\"\nuri = \"sip:127.0.0.1:{port}\"\nping_interval_s = 0\n\
         username = \"acct\"\npassword = \"wrong\"\n"
    )
}

#[test]
fn carrier_challenging_twice_or_with_an_unknown_algorithm_gives_503_and_no_stuck_call() {
    for (alg, log) in [
        ("MD5", "upstream challenged our credentials again"),
        (
            "SHA-512-256",
            "challenge with unknown algorithm `SHA-512-256`",
        ),
    ] {
        let port = free_port();
        let dir = TempDir::new("bad-carrier");
        let mut carrier = bad_carrier(&dir, port, alg);
        let server = Server::start(&config(&credentials_upstream(port), free_port()));
        let sf = refused_scenario(&dir, 503);
        let out = uac(&server, &dir, &sf, ("pbx", "pbxpw"), alg);
        assert!(
            out.all_ok(1),
            "{alg}: the caller gets 503\n{}\n{}",
            out.show(),
            server.log_text()
        );
        assert!(
            server.wait_log(log, Duration::from_secs(5)),
            "{alg}: no log line `{log}`:\n{}",
            server.log_text()
        );
        let (_, text) = carrier.wait(Duration::from_secs(20));
        if alg == "MD5" {
            let ok = sipp_counter(&text, "Successful call");
            assert_eq!(ok, Some(1), "both rounds played:\n{text}");
            assert!(!text.contains("receive timeout"), "{text}");
        } else {
            // No INVITE with credentials came back: the scenario waited in vain.
            assert!(text.contains("receive timeout"), "{alg}:\n{text}");
        }
        assert!(no_calls_left(&server), "{alg}: call left behind");
        let (_, body) = api_get(&server, TEST_API_KEY, "/v1/upstreams");
        assert_eq!(body["items"][0]["registration"]["state"], "disabled");
    }
}

#[test]
fn registration_refused_with_403_is_failed_in_the_api_and_logged() {
    let port = free_port();
    let sf = scenario("carrier_reg_403.xml").display().to_string();
    let p = port.to_string();
    let mut carrier = SippBg::start(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &p,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
    ]);
    let upstream = format!(
        "[[upstream]]\nname = \"refuser\"\nuri = \"sip:127.0.0.1:{port}\"\nping_interval_s = 0\n\
         username = \"acct\"\npassword = \"pw\"\nregister = true\n"
    );
    let server = Server::start(&config(&upstream, free_port()));
    let up = wait_upstream(&server, Duration::from_secs(20), |u| {
        u["registration"]["last_error"] == "403 Forbidden"
    });
    assert_eq!(up["registration"]["state"], "failed", "{up}");
    assert_eq!(up["registration"]["last_error"], "403 Forbidden", "{up}");
    assert!(up["registration"]["expires"].is_null());
    assert!(server.wait_log(
        "registration at upstream failed: 403 Forbidden",
        Duration::from_secs(5)
    ));
    let (code, text) = carrier.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{text}");
}
