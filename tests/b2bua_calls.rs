//! Calls through the real binary on loopback (SPEC §5): SIPp as the trunk's
//! PBX (UAC on 127.0.0.1, an IP-authenticated trunk) and SIPp as the upstream
//! carrier (UAS on its own port), with scenarios under `tests/sipp/`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{b2bua_config, free_port, scenario, sipp_counter, sipp_run, Server, SippBg};

/// Runs a UAC (built-in `uac` or a scenario file) and asserts every call
/// succeeded.
fn uac_ok(
    server: &Server,
    target: SocketAddr,
    sf: Option<&str>,
    calls: u32,
    tcp: bool,
    extra: &[&str],
) -> String {
    let sf_path = sf.map(|s| scenario(s).display().to_string());
    let calls_s = calls.to_string();
    let target_s = target.to_string();
    let mut args: Vec<&str> = Vec::new();
    match &sf_path {
        Some(p) => args.extend(["-sf", p.as_str()]),
        None => args.extend(["-sn", "uac"]),
    }
    args.extend([
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        &calls_s,
        "-r",
        "200",
    ]);
    args.extend([
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-recv_timeout",
        "10000",
    ]);
    if tcp {
        args.extend(["-t", "t1"]);
    }
    args.extend(extra);
    args.push(&target_s);
    let (code, text) = sipp_run(&args);
    let ok = sipp_counter(&text, "Successful call");
    let failed = sipp_counter(&text, "Failed call");
    assert!(
        code == Some(0) && ok == Some(u64::from(calls)) && failed == Some(0),
        "SIPp UAC to {target}: exit {code:?}, successful {ok:?}, failed {failed:?}\n\
         --- sipp output ---\n{text}\n--- sipfront log ---\n{}",
        server.log_text()
    );
    text
}

/// A SIPp UAS on `port` (built-in `uas` or a scenario).
fn uas(port: u16, sf: Option<&str>, tcp: bool, extra: &[&str]) -> SippBg {
    let sf_path = sf.map(|s| scenario(s).display().to_string());
    let port_s = port.to_string();
    let mut args: Vec<&str> = Vec::new();
    match &sf_path {
        Some(p) => args.extend(["-sf", p.as_str()]),
        None => args.extend(["-sn", "uas"]),
    }
    args.extend([
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-nostdin",
        "-timeout",
        "40s",
    ]);
    if tcp {
        args.extend(["-t", "t1"]);
    }
    args.extend(extra);
    SippBg::start(&args)
}

fn basic(a_tcp: bool, b_tcp: bool) {
    let port = free_port();
    let transport = if b_tcp { "tcp" } else { "udp" };
    let server = Server::start(&b2bua_config(&[(
        format!("sip:127.0.0.1:{port};transport={transport}"),
        1,
    )]));
    let _uas = uas(port, None, b_tcp, &[]);
    let target = if a_tcp { server.tcp } else { server.udp };
    uac_ok(&server, target, None, 500, a_tcp, &[]);
}

#[test]
fn basic_calls_over_udp() {
    basic(false, false);
}

#[test]
fn basic_calls_over_tcp() {
    basic(true, true);
}

#[test]
fn basic_calls_a_over_tcp_b_over_udp() {
    basic(true, false);
}

#[test]
fn b_leg_carries_nothing_of_the_a_side() {
    let port = free_port();
    let uac_port = free_port();
    let server = Server::start(&b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]));
    let uas = uas(port, None, false, &["-trace_msg", "-message_file", "b.log"]);
    let uac_port_s = uac_port.to_string();
    let dir = common::TempDir::new("uac");
    let uac_log = dir.0.join("a.log").display().to_string();
    uac_ok(
        &server,
        server.udp,
        None,
        5,
        false,
        &["-p", &uac_port_s, "-trace_msg", "-message_file", &uac_log],
    );
    std::thread::sleep(Duration::from_millis(300));
    let b_side = std::fs::read_to_string(uas.dir().join("b.log")).expect("UAS message log");
    let a_side = std::fs::read_to_string(&uac_log).expect("UAC message log");
    assert!(
        b_side.contains("INVITE sip:12125551234@127.0.0.1"),
        "{b_side}"
    );
    // A's Call-IDs and tags as SIPp wrote them.
    let mut a_ids: Vec<String> = Vec::new();
    for line in a_side.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Call-ID:") {
            a_ids.push(v.trim().to_owned());
        }
        if l.starts_with("From:") && l.contains("SIPpTag00") {
            if let Some(tag) = l.split("tag=").nth(1) {
                a_ids.push(tag.trim().to_owned());
            }
        }
    }
    assert!(!a_ids.is_empty(), "{a_side}");
    for id in &a_ids {
        assert!(
            !b_side.contains(id.as_str()),
            "B-leg carries A's `{id}`:\n{b_side}"
        );
    }
    assert!(
        !b_side.contains(&format!(":{uac_port}")),
        "B-leg carries A's port {uac_port}:\n{b_side}"
    );
    // And the other way round: the UAS's Contact port never reaches A.
    assert!(
        !a_side.contains(&format!(":{port};transport")),
        "A-leg carries B's contact:\n{a_side}"
    );
}

#[test]
fn callee_hangs_up() {
    let port = free_port();
    let server = Server::start(&b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]));
    let mut uas = uas(port, Some("uas_hangup.xml"), false, &["-m", "20"]);
    uac_ok(
        &server,
        server.udp,
        Some("uac_callee_bye.xml"),
        20,
        false,
        &[],
    );
    uas_all_ok(&mut uas, 20);
}

#[test]
fn caller_cancels_after_180() {
    let port = free_port();
    let server = Server::start(&b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]));
    let mut uas = uas(port, Some("uas_cancelled.xml"), false, &["-m", "20"]);
    uac_ok(&server, server.udp, Some("uac_cancel.xml"), 20, false, &[]);
    uas_all_ok(&mut uas, 20);
}

/// The upstream's scenario (which requires e.g. the CANCEL) ran `calls` times.
fn uas_all_ok(uas: &mut SippBg, calls: u64) {
    let (code, text) = uas.wait(Duration::from_secs(20));
    let ok = sipp_counter(&text, "Successful call");
    let failed = sipp_counter(&text, "Failed call");
    assert!(
        code == Some(0) && ok == Some(calls) && failed == Some(0),
        "SIPp UAS: exit {code:?}, successful {ok:?}, failed {failed:?}\n{text}"
    );
}

#[test]
fn upstream_busy_reaches_the_caller() {
    let port = free_port();
    let server = Server::start(&b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]));
    let _uas = uas(port, Some("uas_486.xml"), false, &[]);
    uac_ok(&server, server.udp, Some("uac_busy.xml"), 20, false, &[]);
}

#[test]
fn first_upstream_503_second_answers() {
    let p1 = free_port();
    let p2 = free_port();
    let server = Server::start(&b2bua_config(&[
        (format!("sip:127.0.0.1:{p1}"), 1),
        (format!("sip:127.0.0.1:{p2}"), 2),
    ]));
    let _bad = uas(p1, Some("uas_503.xml"), false, &[]);
    let _good = uas(p2, None, false, &[]);
    uac_ok(&server, server.udp, None, 20, false, &[]);
}

#[test]
fn first_upstream_silent_second_answers() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let p1 = silent.local_addr().expect("addr").port();
    let p2 = free_port();
    let server = Server::start(&b2bua_config(&[
        (format!("sip:127.0.0.1:{p1}"), 1),
        (format!("sip:127.0.0.1:{p2}"), 2),
    ]));
    let _good = uas(p2, None, false, &[]);
    // Each call waits out the 5 s no-answer fail-over: few calls, all at once.
    uac_ok(&server, server.udp, None, 3, false, &[]);
    drop(silent);
}

fn hold(tcp: bool) {
    let port = free_port();
    let transport = if tcp { "tcp" } else { "udp" };
    let server = Server::start(&b2bua_config(&[(
        format!("sip:127.0.0.1:{port};transport={transport}"),
        1,
    )]));
    let mut uas = uas(port, Some("uas_hold.xml"), tcp, &["-m", "20"]);
    let target = if tcp { server.tcp } else { server.udp };
    uac_ok(&server, target, Some("uac_hold.xml"), 20, tcp, &[]);
    uas_all_ok(&mut uas, 20);
}

#[test]
fn hold_by_reinvite_from_each_side() {
    hold(false);
}

/// Requests toward A (the callee's re-INVITE) reuse A's TCP connection.
#[test]
fn hold_by_reinvite_from_each_side_over_tcp() {
    hold(true);
}

#[test]
fn bye_for_unknown_call_gets_481() {
    let server = Server::start(&b2bua_config(&[]));
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = c.local_addr().expect("addr");
    let bye = common::options("UDP", local, server.udp, "bye1")
        .replace("OPTIONS", "BYE")
        .replace("To: <sip:", "To: <sip:x@")
        .replace(
            &format!("{}>\r\n", server.udp),
            &format!("{}>;tag=nosuch\r\n", server.udp),
        );
    assert!(bye.contains(";tag=nosuch"), "{bye}");
    c.send_to(bye.as_bytes(), server.udp).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = c.recv_from(&mut buf).expect("a response");
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("SIP/2.0 481 "), "{r}");
}

/// An INVITE to a number with no rate gets `404`, and the log says which
/// call was refused and why (operators read logs, not packet traces).
#[test]
fn refused_invite_is_answered_and_logged_with_the_reason() {
    let server = Server::start(&b2bua_config(&[(
        "sip:127.0.0.1:9;transport=udp".into(),
        1,
    )]));
    let target = server.udp.to_string();
    let (_, text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "99999",
        "-m",
        "1",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-nostdin",
        "-timeout",
        "10s",
        &target,
    ]);
    assert!(text.contains("404 Not Found"), "SIPp saw no 404:\n{text}");
    assert!(
        server.wait_log(
            "INVITE refused: trunk 1 (pbx): no rate for `99999`",
            Duration::from_secs(5)
        ),
        "no refusal line in the log:\n{}",
        server.log_text()
    );
}

/// SIGTERM drains (SPEC §2 `drain_s`): 20 calls in progress all complete
/// normally, a new INVITE meanwhile gets `503`, the process exits 0 once
/// they have ended, and every call has its CDR.
#[test]
fn sigterm_drains_calls_in_progress_and_writes_every_cdr() {
    let port = free_port();
    let store = common::TempDir::new("drain");
    let db = store.path().join("cdr.db");
    let cfg = format!(
        "{}\n[store]\npath = \"{}\"\n",
        b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]),
        db.display()
    );
    let mut server = Server::start(&cfg);
    let _uas = uas(port, None, false, &[]);
    let target = server.udp.to_string();
    // 20 calls of 4 s each, all up within a second.
    let mut calls = SippBg::start(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        "20",
        "-l",
        "20",
        "-r",
        "40",
        "-d",
        "4000",
        "-nostdin",
        "-timeout",
        "30s",
        &target,
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    server.signal("TERM");
    assert!(
        server.wait_log("draining", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    let (_, late) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "10s",
        &target,
    ]);
    assert!(
        late.contains("503 Service Unavailable"),
        "new call during drain:\n{late}"
    );
    let (code, text) = calls.wait(Duration::from_secs(30));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(20),
        "calls in progress must complete: exit {code:?}\n{text}\n{}",
        server.log_text()
    );
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log_text()
    );
    let cdrs = common::calls::read_cdrs(&db).expect("CDRs readable");
    let answered = cdrs.iter().filter(|c| c.disposition == "answered").count();
    assert_eq!(answered, 20, "{cdrs:#?}");
}

/// Calls still up at the end of `drain_s` get BYE on both legs, and the
/// process still writes every CDR and exits 0.
#[test]
fn calls_outliving_drain_s_are_byed_and_recorded() {
    let port = free_port();
    let store = common::TempDir::new("drain1");
    let db = store.path().join("cdr.db");
    let cfg = format!(
        "[server]\ndrain_s = 1\n{}\n[store]\npath = \"{}\"\n",
        b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]),
        db.display()
    );
    let mut server = Server::start(&cfg);
    let _uas = uas(port, None, false, &[]);
    let target = server.udp.to_string();
    let mut calls = SippBg::start(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        "5",
        "-l",
        "5",
        "-r",
        "20",
        "-d",
        "20000",
        "-nostdin",
        "-timeout",
        "30s",
        &target,
    ]);
    std::thread::sleep(Duration::from_millis(1000));
    let t0 = std::time::Instant::now();
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        server.log_text()
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "stopped after {took:?}");
    let (_, text) = calls.wait(Duration::from_secs(30));
    let cdrs = common::calls::read_cdrs(&db).expect("CDRs readable");
    assert_eq!(cdrs.len(), 5, "{cdrs:#?}\n{text}");
    assert!(
        cdrs.iter()
            .all(|c| c.disposition == "answered" && c.duration <= 3),
        "{cdrs:#?}"
    );
}

/// SIGHUP with 20 calls in progress: they all complete on the terms they
/// started with, while the new config applies to the next call at once
/// (here a rate table without the dialled prefix: refused `404`). Trunks
/// are not changed through the file: once the store is seeded it owns them
/// (tests/control_api.rs changes `max_channels` over the API).
#[test]
fn sighup_keeps_calls_in_progress_and_applies_to_new_calls() {
    let port = free_port();
    let cfg = b2bua_config(&[(format!("sip:127.0.0.1:{port}"), 1)]);
    let server = Server::start(&cfg);
    let _uas = uas(port, None, false, &[]);
    let target = server.udp.to_string();
    let mut calls = SippBg::start(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-m",
        "20",
        "-l",
        "20",
        "-r",
        "40",
        "-d",
        "3000",
        "-nostdin",
        "-timeout",
        "30s",
        &target,
    ]);
    std::thread::sleep(Duration::from_millis(1200));
    let dir = common::TempDir::new("sighup-rates");
    let uk_only = dir.write("rates.csv", "prefix,per_minute,name\n44,0.05,UK\n");
    let limited = cfg.replace(&common::shipped_rates(), &uk_only.display().to_string());
    assert_ne!(limited, cfg);
    std::fs::write(&server.config, limited).expect("rewrite config");
    server.signal("HUP");
    assert!(
        server.wait_log("SIGHUP: config re-read", Duration::from_secs(5)),
        "{}",
        server.log_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    let (_, next) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        "0",
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "10s",
        &target,
    ]);
    assert!(
        next.contains("404"),
        "the next call sees the new rate table:\n{next}"
    );
    let (code, text) = calls.wait(Duration::from_secs(30));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(20),
        "calls in progress survive SIGHUP: exit {code:?}\n{text}\n{}",
        server.log_text()
    );
}
