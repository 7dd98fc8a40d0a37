//! SIPp against the real binary over UDP and over TCP: OPTIONS must get 200,
//! and the answers owed before any policy (483, 420, 505, 501, 481) must
//! come back as SPEC §5 says. SIPp is the field's standard peer; `./test.sh` installs it, so
//! its absence is a failure, not a skip.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::{Server, LOOPBACK_CONFIG};

const CALLS: u32 = 20;

fn sipp_path() -> String {
    match Command::new("sipp").arg("-v").output() {
        Ok(_) => "sipp".to_owned(),
        Err(e) => panic!(
            "SIPp (`sipp`) is not installed ({e}). Install it with \
             `apt-get update && apt-get install -y sip-tester`, or run ./test.sh which does."
        ),
    }
}

/// Runs `tests/sipp/{scenario}` `CALLS` times; returns (exit code, stdout+stderr).
fn run_sipp(scenario: &str, target: SocketAddr, tcp: bool) -> (Option<i32>, String) {
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let mut cmd = Command::new(sipp_path());
    cmd.arg("-sf")
        .arg(&scenario)
        .args(["-m", &CALLS.to_string()])
        .args(["-r", "50"])
        .args(["-i", "127.0.0.1", "-p", "0"])
        .args(["-nostdin", "-timeout", "30s", "-timeout_error"])
        .current_dir(std::env::temp_dir());
    if tcp {
        cmd.args(["-t", "t1"]);
    }
    cmd.arg(target.to_string());
    let out = cmd.output().expect("run sipp");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// The cumulative column of a SIPp statistics line such as
/// `  Successful call        |        0                  |        20   `.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .rev()
        .find(|l| l.trim_start().starts_with(name))?
        .split('|')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

fn assert_all_ok(server: &Server, scenario: &str, target: SocketAddr, tcp: bool) {
    let (code, text) = run_sipp(scenario, target, tcp);
    let ok = counter(&text, "Successful call");
    let failed = counter(&text, "Failed call");
    assert!(
        code == Some(0) && ok == Some(u64::from(CALLS)) && failed == Some(0),
        "SIPp {scenario} over {} to {target}: exit {code:?}, successful {ok:?}, failed {failed:?}\n\
         --- sipp output ---\n{text}\n--- sipfront log ---\n{}",
        if tcp { "TCP" } else { "UDP" },
        server.log_text()
    );
}

#[test]
fn options_over_udp_gets_200() {
    let server = Server::start(LOOPBACK_CONFIG);
    assert_all_ok(&server, "options.xml", server.udp, false);
}

#[test]
fn options_over_tcp_gets_200() {
    let server = Server::start(LOOPBACK_CONFIG);
    assert_all_ok(&server, "options.xml", server.tcp, true);
}

#[test]
fn stateless_answers_over_udp() {
    let server = Server::start(LOOPBACK_CONFIG);
    assert_all_ok(&server, "stateless-errors.xml", server.udp, false);
}

#[test]
fn stateless_answers_over_tcp() {
    let server = Server::start(LOOPBACK_CONFIG);
    assert_all_ok(&server, "stateless-errors.xml", server.tcp, true);
}
