//! SIPp against the real binary over UDP and over TCP: OPTIONS must get 200,
//! and the answers owed before any policy (483, 420, 505, 501, 481) must
//! come back as SPEC §5 says. SIPp is the field's standard peer; `./test.sh` installs it, so
//! its absence is a failure, not a skip.

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{Server, LOOPBACK_CONFIG};

const CALLS: u32 = 20;

/// Runs `tests/sipp/{scenario}` `CALLS` times; returns (exit code, stdout+stderr).
fn run_sipp(scenario: &str, target: SocketAddr, tcp: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(common::sipp_bin());
    cmd.arg("-sf")
        .arg(common::scenario(scenario))
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

fn assert_all_ok(server: &Server, scenario: &str, target: SocketAddr, tcp: bool) {
    let (code, text) = run_sipp(scenario, target, tcp);
    let ok = common::sipp_counter(&text, "Successful call");
    let failed = common::sipp_counter(&text, "Failed call");
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
