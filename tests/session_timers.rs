//! RFC 4028 session timers, the dead-call reaper and RFC 3262 100rel
//! through the real binary on loopback, with SIPp on both sides (issue 13
//! items 1 and 2). Intervals are seconds here (`min_se_s` may go down to
//! 2 for tests); the long cases run on the fake clock in
//! `crates/sipfront-core/src/b2bua/tests/session.rs`.

mod common;

use std::time::Duration;

use common::{
    carrier_upstream, free_port, scenario, sipp_counter, sipp_run, Server, SippBg, LOOPBACK_CONFIG,
};

/// sipfront with `[server]` `server` keys, an IP trunk for 127.0.0.1 with
/// `trunk` keys, and the carrier at `port`.
fn config(server: &str, trunk: &str, port: u16) -> String {
    format!(
        "[server]\n{server}\n{LOOPBACK_CONFIG}\n[rates]\nfile = \"{}\"\n\n\
         [[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n{trunk}\n\n{}",
        common::shipped_rates(),
        carrier_upstream(port)
    )
}

/// A SIPp UAS scenario on `port` for `calls` calls.
fn uas(sf: &str, port: u16, calls: u32) -> SippBg {
    let sf = scenario(sf).display().to_string();
    let (port, calls) = (port.to_string(), calls.to_string());
    SippBg::start(&[
        "-sf",
        &sf,
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        &calls,
        "-nostdin",
        "-timeout",
        "60s",
    ])
}

/// Runs a SIPp UAC scenario against sipfront's UDP port, `calls` calls one
/// at a time, and asserts every one succeeded.
fn uac_ok(server: &Server, sf: &str, calls: u32) -> String {
    let sf = scenario(sf).display().to_string();
    let (port, calls_s) = (free_port().to_string(), calls.to_string());
    let target = server.udp.to_string();
    let (code, text) = sipp_run(&[
        "-sf",
        &sf,
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        &calls_s,
        "-l",
        "1",
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        &target,
    ]);
    let ok = sipp_counter(&text, "Successful call");
    let failed = sipp_counter(&text, "Failed call");
    assert!(
        code == Some(0) && ok == Some(u64::from(calls)) && failed == Some(0),
        "SIPp UAC {sf}: exit {code:?}, successful {ok:?}, failed {failed:?}\n{text}\n\
         --- sipfront log ---\n{}",
        server.log_text()
    );
    text
}

fn uas_ok(uas: &mut SippBg, calls: u64, server: &Server) {
    let (code, text) = uas.wait(Duration::from_secs(60));
    let ok = sipp_counter(&text, "Successful call");
    assert!(
        code == Some(0) && ok == Some(calls),
        "SIPp UAS: exit {code:?}, successful {ok:?}\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
}

#[test]
fn require_100rel_call_with_reliable_183_and_prack_completes() {
    let port = free_port();
    let server = Server::start(&config("", "", port));
    let mut b = uas("uas_100rel.xml", port, 1);
    uac_ok(&server, "uac_100rel.xml", 1);
    uas_ok(&mut b, 1, &server);
}

#[test]
fn silent_refresher_is_byed_on_both_legs_and_its_channel_is_free_at_once() {
    let port = free_port();
    let server = Server::start(&config(
        "session_expires_s = 4\nmin_se_s = 2",
        "max_channels = 1",
        port,
    ));
    // Two calls in a row on a one-channel trunk: the second is admitted
    // because the first one's channel was freed by the expiry BYE. The UAC
    // fails a call whose BYE does not come within the 4 s interval.
    let mut b = uas("policy_uas.xml", port, 2);
    uac_ok(&server, "uac_timer_silent.xml", 2);
    uas_ok(&mut b, 2, &server);
    assert!(
        server.wait_log("session expired", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
}

#[test]
fn call_without_timers_is_refreshed_and_ended_when_the_refresh_gets_481() {
    let port = free_port();
    let server = Server::start(&config("session_expires_s = 3\nmin_se_s = 2", "", port));
    let mut b = uas("uas_refresh_481.xml", port, 1);
    // The caller is probed by re-INVITE (it allows no UPDATE) and gets BYE.
    uac_ok(&server, "uac_reaped.xml", 1);
    uas_ok(&mut b, 1, &server);
    assert!(
        server.wait_log("session refresh failed", Duration::from_secs(10)),
        "{}",
        server.log_text()
    );
}

#[test]
fn session_expires_of_1_gets_422_with_min_se() {
    let port = free_port();
    let server = Server::start(&config("session_expires_s = 4\nmin_se_s = 2", "", port));
    uac_ok(&server, "uac_se_too_small.xml", 1);
}

#[test]
fn caller_requiring_100rel_gets_reliable_183_from_sipfront_when_the_upstream_has_none() {
    let port = free_port();
    let server = Server::start(&config("", "", port));
    // The upstream's 200 comes right after its 183: sipfront holds it until
    // the caller's PRACK of the reliable 183 it made (RFC 3262 §3).
    let mut b = uas("uas_183_200.xml", port, 1);
    uac_ok(&server, "uac_100rel.xml", 1);
    uas_ok(&mut b, 1, &server);
}

#[test]
fn upstream_reliable_183_is_pracked_by_sipfront_for_a_caller_without_100rel() {
    let port = free_port();
    let server = Server::start(&config("", "", port));
    // uas_100rel.xml answers only after a PRACK with RAck "1 <cseq> INVITE".
    let mut b = uas("uas_100rel.xml", port, 1);
    let (target, sport) = (server.udp.to_string(), free_port().to_string());
    let (code, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &sport,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "60s",
        "-timeout_error",
        &target,
    ]);
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(1),
        "{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    uas_ok(&mut b, 1, &server);
}
