//! SPEC §4 inbound DID calls, end to end against the real binary: a SIPp UAC
//! on 127.0.0.2 plays the carrier (an `[[upstream]]` with `trusted = true`;
//! trust is by source IP, so it must not share 127.0.0.1 with the
//! destinations), SIPp UASs on 127.0.0.1 (and 127.0.0.8:5060 for a trunk's
//! `host_request` address) play the destinations. Scenarios
//! `tests/sipp/did_*.xml`. CDRs are read from the SQLite store after a
//! SIGTERM (which flushes the CDR queue).
//!
//! Registered softphones (SPEC §5): a SIPp UAC scenario cannot take an
//! INVITE that opens a new dialog (SIPp drops messages whose Call-ID it does
//! not know), so a phone registers from a SIPp UAC bound to 127.0.0.1:X with
//! a Contact on an unreachable 10.0.0.0/8 address, exits, and a SIPp UAS is
//! then bound to the same 127.0.0.1:X: a call can only reach it through the
//! REGISTER's source address. Over TCP the test itself is the phone (one
//! connection, MD5 digest), since the binding lives and dies with the
//! connection. baresip is the real softphone.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::calls::{
    call_ids, check_scenario, code_scenario, read_cdrs, read_msgs, Cdr, Msg, SippOut,
};
use common::phone::{Pipe, TcpPhone, WsPhone, WssPhone};
use common::{free_port, scenario, sipp_counter, sipp_run, Server, SippBg, TempDir};

/// The carrier's address: a trusted upstream by IP.
const CARRIER_IP: &str = "127.0.0.2";
/// Who the carrier says is calling (From user of `did_uac*.xml`).
const CALLER: &str = "12125550000";
const DID: &str = "12565378257";

/// A SIPp UAS playing one destination, with its own message log.
struct Uas {
    name: String,
    bg: SippBg,
    log: PathBuf,
    err: PathBuf,
}

impl Uas {
    fn msgs(&self) -> Vec<Msg> {
        read_msgs(&self.log)
    }

    fn invites(&self) -> usize {
        call_ids(&self.msgs(), |m| !m.sent && m.method() == Some("INVITE")).len()
    }

    fn show(&self) -> String {
        format!(
            "--- UAS {} output ---\n{}\n--- UAS {} messages ---\n{}\n--- UAS {} errors ---\n{}",
            self.name,
            self.bg.text(),
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            self.name,
            std::fs::read_to_string(&self.err).unwrap_or_default(),
        )
    }

    /// Waits for it to exit (it runs `-m 1`): did its one call succeed?
    fn done_ok(&mut self, timeout: Duration) -> bool {
        let (code, text) = self.bg.wait(timeout);
        code == Some(0)
            && sipp_counter(&text, "Successful call") == Some(1)
            && sipp_counter(&text, "Failed call") == Some(0)
    }
}

/// sipfront with the trusted carrier, a CDR store in its own temp dir and
/// the given `[[trunk]]`/`[[did]]` TOML.
struct Rig {
    server: Server,
    dir: TempDir,
    db: PathBuf,
    carrier_port: u16,
    /// The config it runs on (a restart uses it again, same store).
    config: String,
}

/// The SIPp UASes standing in for phones do not expect keep-alive OPTIONS
/// at a phone's address: pings are off unless a test's body sets them.
fn without_keepalive(body: &str) -> String {
    if body.contains("keepalive_s") {
        body.to_owned()
    } else if body.contains("[registrar]\n") {
        body.replacen("[registrar]\n", "[registrar]\nkeepalive_s = 0\n", 1)
    } else {
        format!("[registrar]\nkeepalive_s = 0\n\n{body}")
    }
}

impl Rig {
    fn start(tag: &str, body: &str) -> Rig {
        Rig::start_with(tag, "", body)
    }

    /// [`Rig::start`] with more `[server]` lines.
    fn start_with(tag: &str, server_extra: &str, body: &str) -> Rig {
        let dir = TempDir::new(tag);
        let rates = dir.write("rates.csv", "prefix,per_minute,name\n1,0.01,US\n");
        let db = dir.path().join("cdr.db");
        let carrier_port = free_port();
        let cfg = format!(
            "{loopback}\n[server]\ndrain_s = 2\n{server_extra}\n[store]\npath = \"{db}\"\n\n\
             [rates]\nfile = \"{rates}\"\n\n\
             [[upstream]]\nname = \"carrier\"\nuri = \"sip:{CARRIER_IP}:{carrier_port};transport=udp\"\n\
             priority = 5\nping_interval_s = 0\ntrusted = true\n\n{body}\n",
            loopback = common::LOOPBACK_CONFIG,
            db = db.display(),
            rates = rates.display(),
            body = without_keepalive(body),
        );
        let server = Server::start(&cfg);
        Rig {
            server,
            dir,
            db,
            carrier_port,
            config: cfg,
        }
    }

    /// SIGTERM, wait for a clean exit, start again on the same config and
    /// store (new OS-chosen ports for SIP and HTTP).
    fn restart(&mut self) {
        self.server.signal("TERM");
        let code = self.server.wait_exit(Duration::from_secs(20));
        assert_eq!(
            code,
            Some(0),
            "sipfront did not exit 0 within 20 s of SIGTERM\n{}",
            self.show()
        );
        self.server = Server::start(&self.config);
    }

    /// A destination: SIPp UAS `sf` on `ip:port`, one call (`-m 1`).
    fn uas(&self, name: &str, sf: &Path, ip: &str, port: u16, extra: &[&str]) -> Uas {
        let log = self.dir.path().join(format!("uas-{name}.msg"));
        let err = self.dir.path().join(format!("uas-{name}.err"));
        let (sf_s, port_s, log_s, err_s) = (
            sf.display().to_string(),
            port.to_string(),
            log.display().to_string(),
            err.display().to_string(),
        );
        let mut args = vec![
            "-sf",
            &sf_s,
            "-i",
            ip,
            "-p",
            &port_s,
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "120s",
            "-recv_timeout",
            "100000",
            "-trace_msg",
            "-message_file",
            &log_s,
            "-trace_err",
            "-error_file",
            &err_s,
        ];
        args.extend(extra);
        Uas {
            name: name.to_owned(),
            bg: SippBg::start(&args),
            log,
            err,
        }
    }

    /// The carrier calls `number` from 127.0.0.2; `extra` must give `-m`.
    fn carrier(
        &self,
        sf: &Path,
        number: &str,
        tag: &str,
        timeout_s: u32,
        extra: &[&str],
    ) -> SippOut {
        self.carrier_from(CARRIER_IP, sf, number, tag, timeout_s, extra)
    }

    /// [`Rig::carrier`] from `ip` (another address is not the carrier).
    fn carrier_from(
        &self,
        ip: &str,
        sf: &Path,
        number: &str,
        tag: &str,
        timeout_s: u32,
        extra: &[&str],
    ) -> SippOut {
        let msg_file = self.dir.path().join(format!("{tag}.msg"));
        let err_file = self.dir.path().join(format!("{tag}.err"));
        let (sf, msg_s, err_s) = (
            sf.display().to_string(),
            msg_file.display().to_string(),
            err_file.display().to_string(),
        );
        let port = if ip == CARRIER_IP {
            self.carrier_port
        } else {
            free_port()
        }
        .to_string();
        let timeout = format!("{timeout_s}s");
        let target = self.server.udp.to_string();
        let mut args = vec![
            "-sf",
            &sf,
            "-s",
            number,
            "-i",
            ip,
            "-p",
            &port,
            "-nostdin",
            "-timeout",
            &timeout,
            "-timeout_error",
            "-recv_timeout",
            "10000",
            "-trace_msg",
            "-message_file",
            &msg_s,
            "-trace_err",
            "-error_file",
            &err_s,
        ];
        args.extend(extra);
        args.push(&target);
        let (code, mut text) = sipp_run(&args);
        text.push_str("\n--- SIPp error file ---\n");
        text.push_str(&std::fs::read_to_string(&err_file).unwrap_or_default());
        SippOut {
            code,
            text,
            msgs: read_msgs(&msg_file),
            msg_file,
        }
    }

    fn show(&self) -> String {
        format!("--- sipfront log ---\n{}", self.server.log_text())
    }

    /// SIGTERM (drains and flushes the CDR queue), then the CDR rows.
    fn stop_and_read_cdrs(&mut self) -> Vec<Cdr> {
        self.server.signal("TERM");
        let code = self.server.wait_exit(Duration::from_secs(20));
        assert_eq!(
            code,
            Some(0),
            "sipfront did not exit 0 within 20 s of SIGTERM\n{}",
            self.show()
        );
        if !self.db.exists() {
            return Vec::new();
        }
        match read_cdrs(&self.db) {
            Ok(rows) => {
                eprintln!("CDRs in {}: {rows:#?}", self.db.display());
                rows
            }
            Err(e) => panic!(
                "reading CDRs from {}: {e}\n{}",
                self.db.display(),
                self.show()
            ),
        }
    }
}

/// Everything for an assertion message.
fn diag(out: &SippOut, uass: &[&Uas], rig: &Rig) -> String {
    let mut s = out.show();
    for u in uass {
        s.push('\n');
        s.push_str(&u.show());
    }
    s.push('\n');
    s.push_str(&rig.show());
    s
}

/// Final responses to the carrier's INVITE, in order (retransmissions too).
fn invite_finals(out: &SippOut) -> Vec<u16> {
    out.msgs
        .iter()
        .filter(|m| !m.sent && m.cseq_method() == "INVITE")
        .filter_map(Msg::status)
        .filter(|&c| c >= 200)
        .collect()
}

fn did_toml(number: &str, channels: u32, dests: &[(u8, &str, u32)]) -> String {
    let d: Vec<String> = dests
        .iter()
        .map(|(t, dest, p)| {
            format!("{{ transport = {t}, destination = \"{dest}\", priority = {p} }}")
        })
        .collect();
    format!(
        "[[did]]\nnumber = \"{number}\"\nchannels = {channels}\ndestinations = [ {} ]\n",
        d.join(", ")
    )
}

fn assert_received_answered(rows: &[Cdr], sip_trunk: Option<&str>, show: &str) {
    assert_eq!(rows.len(), 1, "want one CDR row\n{rows:#?}\n{show}");
    let c = &rows[0];
    assert_eq!(c.kind, "received", "{rows:#?}\n{show}");
    assert_eq!(
        (c.disposition.as_str(), c.sip_code),
        ("answered", 200),
        "{rows:#?}\n{show}"
    );
    assert_eq!(c.to, DID, "{rows:#?}\n{show}");
    assert_eq!(c.from, CALLER, "{rows:#?}\n{show}");
    assert_eq!(c.trunk_id, None, "{rows:#?}\n{show}");
    if let Some(t) = sip_trunk {
        assert_eq!(c.sip_trunk, t, "{rows:#?}\n{show}");
    }
}

// ---- transport 5 to a trunk's host_request address ------------------------------

/// No registered contact: the trunk is rung at its `host_request` IP, port
/// 5060 (a SIPp UAS on 127.0.0.8:5060). `didinfo_enabled` decides the B-leg
/// To user: the DID, else the trunk login.
#[test]
fn did_to_trunk_host_request_with_and_without_didinfo() {
    for (didinfo, want_user) in [(true, DID), (false, "pbx8")] {
        let trunk = format!(
            "[[trunk]]\nid = 1\nname = \"pbx8\"\npassword = \"x\"\nhost_request = \"127.0.0.8\"\n\
             didinfo_enabled = {didinfo}\n\n"
        );
        let mut rig = Rig::start(
            &format!("hostreq-{didinfo}"),
            &(trunk + &did_toml(DID, 0, &[(5, "pbx8", 1)])),
        );
        let to_re = format!("sip:{want_user}@");
        let sf = check_scenario(&rig.dir, "uas_pbx8.xml", &[("To", &to_re)]);
        let mut uas = rig.uas("pbx8", &sf, "127.0.0.8", 5060, &[]);
        let out = rig.carrier(
            &scenario("did_uac.xml"),
            DID,
            "carrier",
            20,
            &["-m", "1", "-d", "500"],
        );
        let uas_ok = uas.done_ok(Duration::from_secs(10));
        let show = diag(&out, &[&uas], &rig);
        assert!(
            out.all_ok(1),
            "didinfo {didinfo}: carrier call failed\n{show}"
        );
        assert!(
            uas_ok,
            "didinfo {didinfo}: the trunk at 127.0.0.8:5060 did not get one INVITE with To user {want_user}\n{show}"
        );
        assert_eq!(invite_finals(&out).first(), Some(&200), "{show}");
        thread::sleep(Duration::from_millis(300));
        let rows = rig.stop_and_read_cdrs();
        assert_received_answered(&rows, Some("pbx8"), &show);
    }
}

// ---- refusals --------------------------------------------------------------------

#[test]
fn unknown_did_is_404_and_reaches_nobody() {
    let rig = Rig::start(
        "unknown",
        &did_toml(DID, 0, &[(1, "sip:1001@127.0.0.1:9", 1)]),
    );
    for (tag, number) in [("other", "12565370000"), ("plus", "+12565370000")] {
        let sf = code_scenario(&rig.dir, "did_uac_refused.xml", 404);
        let out = rig.carrier(&sf, number, tag, 20, &["-m", "1"]);
        assert!(
            out.all_ok(1),
            "{tag}: want 404\n{}\n{}",
            out.show(),
            rig.show()
        );
    }
    // Control: `+` is ignored, the known DID with `+` is not 404 (its only
    // destination, port 9, is dead: some other failure).
    let sf = code_scenario(&rig.dir, "did_uac_refused.xml", 404);
    let out = rig.carrier(&sf, &format!("+{DID}"), "known", 20, &["-m", "1"]);
    assert!(
        !invite_finals(&out).contains(&404),
        "+DID was refused as unknown\n{}\n{}",
        out.show(),
        rig.show()
    );
}

/// `channels = 1`: two concurrent calls, one is answered, the other gets 486;
/// the destination sees one INVITE.
#[test]
fn did_channels_limit_486() {
    let port = free_port();
    let dest = format!("sip:1001@127.0.0.1:{port}");
    let mut rig = Rig::start("channels", &did_toml(DID, 1, &[(1, &dest, 1)]));
    let mut uas = rig.uas("dest", &scenario("policy_uas.xml"), "127.0.0.1", port, &[]);
    let sf = code_scenario(&rig.dir, "did_uac_either.xml", 486);
    let out = rig.carrier(
        &sf,
        DID,
        "carrier",
        30,
        &["-m", "2", "-l", "2", "-r", "50", "-d", "2000"],
    );
    let uas_ok = uas.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&uas], &rig);
    assert!(out.all_ok(2), "{show}");
    let busy = call_ids(&out.msgs, |m| {
        !m.sent && m.status() == Some(486) && m.cseq_method() == "INVITE"
    });
    let answered = call_ids(&out.msgs, |m| {
        !m.sent && m.status() == Some(200) && m.cseq_method() == "INVITE"
    });
    assert_eq!(
        (answered.len(), busy.len()),
        (1, 1),
        "answered {answered:?}, 486 {busy:?}\n{show}"
    );
    assert!(
        uas_ok,
        "the destination did not complete exactly its one call\n{show}"
    );
    assert_eq!(uas.invites(), 1, "{show}");
    // Both calls are over: the channel is free again.
    let mut uas2 = rig.uas("dest2", &scenario("policy_uas.xml"), "127.0.0.1", port, &[]);
    let out2 = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "again",
        20,
        &["-m", "1", "-d", "200"],
    );
    let uas2_ok = uas2.done_ok(Duration::from_secs(10));
    let show2 = diag(&out2, &[&uas2], &rig);
    assert!(
        out2.all_ok(1) && uas2_ok,
        "the DID channel was not freed\n{show2}"
    );
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    let answered_rows: Vec<&Cdr> = rows
        .iter()
        .filter(|c| c.disposition == "answered")
        .collect();
    assert_eq!(answered_rows.len(), 2, "{rows:#?}\n{show}");
    assert!(
        rows.iter().all(|c| c.kind == "received" && c.to == DID),
        "{rows:#?}\n{show}"
    );
}

// ---- hunting -----------------------------------------------------------------------

/// Priority 1 rings (180 reaches the carrier), then answers 486; priority 2
/// answers. The carrier sees only the 200.
#[test]
fn hunting_busy_after_ringing_goes_to_the_next_destination() {
    let (p1, p2) = (free_port(), free_port());
    let mut rig = Rig::start(
        "hunt-busy",
        &did_toml(
            DID,
            0,
            &[
                // Listed out of order: priority decides, not position.
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
                (1, &format!("sip:1001@127.0.0.1:{p1}"), 1),
            ],
        ),
    );
    let mut busy = rig.uas(
        "busy",
        &scenario("did_uas_ring_busy.xml"),
        "127.0.0.1",
        p1,
        &[],
    );
    let mut ans = rig.uas("answer", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "1000"],
    );
    let busy_ok = busy.done_ok(Duration::from_secs(10));
    let ans_ok = ans.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&busy, &ans], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        busy_ok && ans_ok,
        "busy ok {busy_ok}, answer ok {ans_ok}\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(
        !finals.is_empty() && finals.iter().all(|&c| c == 200),
        "the carrier must see only 200 as final, got {finals:?}\n{show}"
    );
    assert!(
        out.msgs.iter().any(|m| !m.sent && m.status() == Some(180)),
        "the first destination's 180 did not reach the carrier\n{show}"
    );
    // The busy one was tried first.
    let t_busy = busy
        .msgs()
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    let t_ans = ans
        .msgs()
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    assert!(
        matches!((t_busy, t_ans), (Some(a), Some(b)) if a < b),
        "priority order: busy INVITE at {t_busy:?}, answer at {t_ans:?}\n{show}"
    );
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, None, &show);
}

/// Priority 1 rings and never answers: CANCELled at the ring timeout
/// (30 s), then priority 2 answers.
#[test]
fn ring_timeout_cancels_and_goes_to_the_next_destination() {
    let (p1, p2) = (free_port(), free_port());
    let mut rig = Rig::start(
        "hunt-timeout",
        &did_toml(
            DID,
            0,
            &[
                (1, &format!("sip:1001@127.0.0.1:{p1}"), 1),
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
            ],
        ),
    );
    let mut ring = rig.uas(
        "ring",
        &scenario("did_uas_ring_cancel.xml"),
        "127.0.0.1",
        p1,
        &[],
    );
    let mut ans = rig.uas("answer", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        60,
        &["-m", "1", "-d", "500", "-recv_timeout", "50000"],
    );
    let ring_ok = ring.done_ok(Duration::from_secs(10));
    let ans_ok = ans.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ring, &ans], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        ring_ok && ans_ok,
        "ringing one ok {ring_ok}, answer ok {ans_ok}\n{show}"
    );
    let rm = ring.msgs();
    let t_inv = rm
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    let t_cancel = rm
        .iter()
        .find(|m| !m.sent && m.method() == Some("CANCEL"))
        .map(|m| m.t);
    let rung = match (t_inv, t_cancel) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    eprintln!("ring timeout: INVITE→CANCEL {rung:.2} s");
    assert!(
        (28.5..=32.0).contains(&rung),
        "INVITE→CANCEL at the first destination {rung} s, want 30 ± 1.5\n{show}"
    );
    let t_ans = ans
        .msgs()
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    assert!(
        matches!((t_cancel, t_ans), (Some(c), Some(a)) if a >= c - 0.5),
        "the second destination was rung before the ring timeout ({t_ans:?} vs CANCEL {t_cancel:?})\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(
        !finals.is_empty() && finals.iter().all(|&c| c == 200),
        "the carrier must see only 200 as final, got {finals:?}\n{show}"
    );
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, None, &show);
}

/// A destination that never answers (a bound UDP socket that reads and
/// stays silent): after 5 s without any response the next one is tried.
#[test]
fn silent_destination_fails_over_after_5_s() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let p1 = silent.local_addr().expect("addr").port();
    let p2 = free_port();
    let rig = Rig::start(
        "hunt-silent",
        &did_toml(
            DID,
            0,
            &[
                (1, &format!("sip:1001@127.0.0.1:{p1}"), 1),
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
            ],
        ),
    );
    let mut ans = rig.uas("answer", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    // Record when the first INVITE reaches the silent destination.
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let end = std::time::Instant::now() + Duration::from_secs(25);
        let mut first: Option<std::time::SystemTime> = None;
        let mut got = Vec::new();
        while std::time::Instant::now() < end {
            if let Ok((n, _)) = silent.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if first.is_none() && text.starts_with("INVITE ") {
                    first = Some(std::time::SystemTime::now());
                }
                got.push(text);
            }
        }
        (first, got)
    });
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "300"],
    );
    let ans_ok = ans.done_ok(Duration::from_secs(10));
    let (first, silent_got) = reader.join().expect("reader");
    let mut show = diag(&out, &[&ans], &rig);
    show.push_str(&format!(
        "\n--- at the silent destination ---\n{}",
        silent_got.join("\n----\n")
    ));
    assert!(out.all_ok(1) && ans_ok, "answer ok {ans_ok}\n{show}");
    let t0 = first
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    let t1 = ans
        .msgs()
        .iter()
        .find(|m| !m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    let gap = match (t0, t1) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    eprintln!("silent destination: first INVITE → next destination {gap:.2} s");
    assert!(
        (4.5..=6.5).contains(&gap),
        "the next destination got its INVITE {gap} s after the silent one, want 5 s\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
}

/// Every destination fails: the carrier gets the last failure, mapped
/// (3xx/401/407 → 503), and one CDR row with that code.
#[test]
fn all_destinations_fail_the_caller_gets_the_last_failure() {
    for (second, want) in [(404u16, 404u16), (302, 503), (407, 503)] {
        let (p1, p2) = (free_port(), free_port());
        let mut rig = Rig::start(
            &format!("allfail-{second}"),
            &did_toml(
                DID,
                0,
                &[
                    (1, &format!("sip:1001@127.0.0.1:{p1}"), 1),
                    (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
                ],
            ),
        );
        let mut busy = rig.uas(
            "busy",
            &scenario("did_uas_ring_busy.xml"),
            "127.0.0.1",
            p1,
            &[],
        );
        let sf = code_scenario(&rig.dir, "did_uas_refuse.xml", second);
        let mut last = rig.uas("last", &sf, "127.0.0.1", p2, &[]);
        let caller_sf = code_scenario(&rig.dir, "did_uac_refused.xml", want);
        let out = rig.carrier(&caller_sf, DID, "carrier", 30, &["-m", "1"]);
        let busy_ok = busy.done_ok(Duration::from_secs(10));
        let last_ok = last.done_ok(Duration::from_secs(10));
        let show = diag(&out, &[&busy, &last], &rig);
        assert!(
            out.all_ok(1),
            "destinations 486 then {second}: the carrier wants {want}\n{show}"
        );
        assert!(
            busy_ok && last_ok,
            "busy ok {busy_ok}, last ok {last_ok}\n{show}"
        );
        let finals = invite_finals(&out);
        assert!(finals.iter().all(|&c| c == want), "{finals:?}\n{show}");
        thread::sleep(Duration::from_millis(300));
        let rows = rig.stop_and_read_cdrs();
        assert_eq!(rows.len(), 1, "{rows:#?}\n{show}");
        assert_eq!(
            (rows[0].kind.as_str(), rows[0].sip_code, rows[0].duration),
            ("received", i64::from(want), 0),
            "{rows:#?}\n{show}"
        );
        assert_ne!(rows[0].disposition, "answered", "{rows:#?}\n{show}");
    }
}

/// The only destination rings past the ring timeout (`ring_timeout_s = 6`
/// here; the 30 s default is checked above): CANCELled at 6 s and the
/// carrier gets 480.
#[test]
fn ring_timeout_on_the_last_destination_is_480() {
    let p1 = free_port();
    let mut rig = Rig::start_with(
        "timeout-480",
        "ring_timeout_s = 6\n",
        &did_toml(DID, 0, &[(1, &format!("sip:1001@127.0.0.1:{p1}"), 1)]),
    );
    let mut ring = rig.uas(
        "ring",
        &scenario("did_uas_ring_cancel.xml"),
        "127.0.0.1",
        p1,
        &[],
    );
    let sf = code_scenario(&rig.dir, "did_uac_refused.xml", 480);
    let out = rig.carrier(
        &sf,
        DID,
        "carrier",
        60,
        &["-m", "1", "-recv_timeout", "50000"],
    );
    let ring_ok = ring.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ring], &rig);
    assert!(out.all_ok(1), "want 480 after the ring timeout\n{show}");
    assert!(ring_ok, "the ringing destination was not CANCELled\n{show}");
    let t_inv = out
        .msgs
        .iter()
        .find(|m| m.sent && m.method() == Some("INVITE"))
        .map(|m| m.t);
    let t_480 = out
        .msgs
        .iter()
        .find(|m| !m.sent && m.status() == Some(480))
        .map(|m| m.t);
    let took = match (t_inv, t_480) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    assert!(
        (5.5..=7.5).contains(&took),
        "480 after {took} s, want ~6\n{show}"
    );
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), 1, "{rows:#?}\n{show}");
    assert_eq!(
        (
            rows[0].kind.as_str(),
            rows[0].disposition.as_str(),
            rows[0].sip_code
        ),
        ("received", "noanswer", 480),
        "{rows:#?}\n{show}"
    );
}

/// Transport 4: the DID forwards to a PSTN number through the upstreams
/// (a second, untrusted upstream on 127.0.0.1 with a better priority than
/// the carrier's 5), with that number in the Request-URI.
#[test]
fn did_to_pstn_number_goes_out_through_the_upstreams() {
    let up = free_port();
    let body = format!(
        "[[upstream]]\nname = \"out\"\nuri = \"sip:127.0.0.1:{up};transport=udp\"\npriority = 1\n\
         ping_interval_s = 0\n\n{}",
        did_toml(DID, 0, &[(4, "+12125559999", 1)])
    );
    let mut rig = Rig::start("pstn", &body);
    let sf = check_scenario(&rig.dir, "uas_pstn.xml", &[("", "INVITE sip:12125559999@")]);
    let mut uas = rig.uas("upstream", &sf, "127.0.0.1", up, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        20,
        &["-m", "1", "-d", "500"],
    );
    let uas_ok = uas.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&uas], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        uas_ok,
        "the upstream did not get INVITE sip:12125559999@…\n{show}"
    );
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, None, &show);
}

/// The carrier gives up while the first destination rings: that one is
/// CANCELled, the carrier gets 487, and hunting stops (the second
/// destination never rings).
#[test]
fn carrier_cancel_while_ringing_stops_the_hunt() {
    let (p1, p2) = (free_port(), free_port());
    let mut rig = Rig::start(
        "carrier-cancel",
        &did_toml(
            DID,
            0,
            &[
                (1, &format!("sip:1001@127.0.0.1:{p1}"), 1),
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
            ],
        ),
    );
    let mut ring = rig.uas(
        "ring",
        &scenario("did_uas_ring_cancel.xml"),
        "127.0.0.1",
        p1,
        &[],
    );
    let catcher = rig.uas("second", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    let out = rig.carrier(
        &scenario("did_uac_cancel.xml"),
        DID,
        "carrier",
        20,
        &["-m", "1"],
    );
    let ring_ok = ring.done_ok(Duration::from_secs(10));
    thread::sleep(Duration::from_millis(1500));
    let show = diag(&out, &[&ring, &catcher], &rig);
    assert!(
        out.all_ok(1),
        "the carrier's CANCEL must end in 200 + 487\n{show}"
    );
    assert!(
        ring_ok,
        "the ringing destination did not get the CANCEL\n{show}"
    );
    assert_eq!(
        catcher.invites(),
        0,
        "hunting went on after the carrier cancelled\n{show}"
    );
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), 1, "{rows:#?}\n{show}");
    assert_eq!(
        (rows[0].kind.as_str(), rows[0].sip_code, rows[0].duration),
        ("received", 487, 0),
        "{rows:#?}\n{show}"
    );
    assert_ne!(rows[0].disposition, "answered", "{rows:#?}\n{show}");
}

/// A single destination that is busy: the carrier gets 486 and the CDR
/// says busy.
#[test]
fn busy_only_destination_is_486_and_billed_busy() {
    let p1 = free_port();
    let mut rig = Rig::start(
        "busy",
        &did_toml(DID, 0, &[(1, &format!("sip:1001@127.0.0.1:{p1}"), 1)]),
    );
    let mut busy = rig.uas(
        "busy",
        &scenario("did_uas_ring_busy.xml"),
        "127.0.0.1",
        p1,
        &[],
    );
    let sf = code_scenario(&rig.dir, "did_uac_refused.xml", 486);
    let out = rig.carrier(&sf, DID, "carrier", 20, &["-m", "1"]);
    let busy_ok = busy.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&busy], &rig);
    assert!(out.all_ok(1) && busy_ok, "{show}");
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), 1, "{rows:#?}\n{show}");
    assert_eq!(
        (
            rows[0].kind.as_str(),
            rows[0].disposition.as_str(),
            rows[0].sip_code
        ),
        ("received", "busy", 486),
        "{rows:#?}\n{show}"
    );
}

/// The DID only in the To header (Request-URI without a user): still found.
#[test]
fn did_in_the_to_header_when_the_request_uri_has_no_user() {
    let p1 = free_port();
    let rig = Rig::start(
        "to-user",
        &did_toml(DID, 0, &[(1, &format!("sip:1001@127.0.0.1:{p1}"), 1)]),
    );
    let tpl = std::fs::read_to_string(scenario("did_uac.xml")).expect("scenario");
    let no_user = tpl.replace("INVITE sip:[service]@[remote_ip]", "INVITE sip:[remote_ip]");
    assert_ne!(no_user, tpl);
    let sf = rig.dir.write("did_uac_to_only.xml", &no_user);
    let mut uas = rig.uas("dest", &scenario("policy_uas.xml"), "127.0.0.1", p1, &[]);
    let out = rig.carrier(&sf, DID, "carrier", 20, &["-m", "1", "-d", "300"]);
    let uas_ok = uas.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&uas], &rig);
    assert!(
        out.msgs
            .iter()
            .any(|m| m.sent && m.first_line().starts_with("INVITE sip:127.0.0.1")),
        "the scenario did not send a user-less Request-URI\n{show}"
    );
    assert!(out.all_ok(1) && uas_ok, "{show}");
}

/// Trust is by source IP: the same INVITE for a DID from an address that is
/// no trusted upstream's is an outbound call attempt, challenged (407), and
/// reaches no destination.
#[test]
fn a_did_call_from_an_untrusted_address_is_challenged() {
    let p1 = free_port();
    let rig = Rig::start(
        "untrusted",
        &did_toml(DID, 0, &[(1, &format!("sip:1001@127.0.0.1:{p1}"), 1)]),
    );
    let dest = rig.uas("dest", &scenario("policy_uas.xml"), "127.0.0.1", p1, &[]);
    let sf = code_scenario(&rig.dir, "did_uac_refused.xml", 407);
    let out = rig.carrier_from("127.0.0.3", &sf, DID, "untrusted", 20, &["-m", "1"]);
    thread::sleep(Duration::from_millis(500));
    let show = diag(&out, &[&dest], &rig);
    assert!(out.all_ok(1), "want 407 for an untrusted source\n{show}");
    assert_eq!(
        dest.invites(),
        0,
        "an untrusted source reached the DID's destination\n{show}"
    );
}

/// The registered phone hangs up: its BYE reaches the carrier.
#[test]
fn registered_phone_hangs_up_and_the_carrier_gets_the_bye() {
    let body = phone_trunks(1..=1, |_| true) + &did_toml(DID, 0, &[(5, "phone001", 1)]);
    let mut rig = Rig::start("phone-bye", &body);
    let port = free_port();
    rig.register(&[1], port, 3600, "reg");
    let mut ph = rig.uas("phone", &scenario("uas_hangup.xml"), "127.0.0.1", port, &[]);
    let out = rig.carrier(
        &scenario("did_uac_wait_bye.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1"],
    );
    let ph_ok = ph.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ph], &rig);
    assert!(
        out.all_ok(1),
        "the carrier did not get the phone's BYE\n{show}"
    );
    assert!(ph_ok, "the phone's BYE was not answered 200\n{show}");
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, Some("phone001"), &show);
}

// ---- registered softphones (SPEC §4 transport 5, §5 registrar) -----------------------

/// Softphone `i` (1-based): login `phoneNNN`, password `pwNNN`, and the
/// private Contact `sip:NNN@10.0.0.i:5060` it registers.
fn phone(i: u32) -> (String, String, String, String) {
    let nnn = format!("{i:03}");
    (
        format!("phone{nnn}"),
        format!("pw{nnn}"),
        format!("10.0.0.{i}"),
        nnn,
    )
}

/// `[[trunk]]` entries for softphones `range`; `didinfo(i)` per phone.
fn phone_trunks(range: std::ops::RangeInclusive<u32>, didinfo: impl Fn(u32) -> bool) -> String {
    let mut s = String::new();
    for i in range {
        let (login, pw, _, _) = phone(i);
        s.push_str(&format!(
            "[[trunk]]\nid = {i}\nname = \"{login}\"\npassword = \"{pw}\"\ndidinfo_enabled = {}\n\n",
            didinfo(i)
        ));
    }
    s
}

/// The `check_scenario` regexp for a B-leg Request-URI naming softphone
/// `i`'s registered Contact.
fn contact_ruri_re(i: u32) -> String {
    let (_, _, host, nnn) = phone(i);
    format!("INVITE sip:{nnn}@{}:5060", host.replace('.', "\\."))
}

impl Rig {
    /// Softphones `phones` register (digest) from one SIPp UAC bound to
    /// 127.0.0.1:`port` with `Expires: expires`; all must get 200.
    fn register(&self, phones: &[u32], port: u16, expires: u32, tag: &str) -> SippOut {
        let with_hosts: Vec<(u32, String)> = phones.iter().map(|&i| (i, phone(i).2)).collect();
        self.register_at(&with_hosts, port, expires, tag)
    }

    /// [`Rig::register`] with the Contact host of each phone given.
    fn register_at(&self, phones: &[(u32, String)], port: u16, expires: u32, tag: &str) -> SippOut {
        let mut inf = String::from("SEQUENTIAL\n");
        for (i, host) in phones {
            let (login, pw, _, nnn) = phone(*i);
            inf.push_str(&format!(
                "{login};{host};[authentication username={login} password={pw}];{nnn}\n"
            ));
        }
        let inf_path = self.dir.write(&format!("{tag}.csv"), &inf);
        let msg_file = self.dir.path().join(format!("{tag}.msg"));
        let err_file = self.dir.path().join(format!("{tag}.err"));
        let (sf, inf_s, msg_s, err_s) = (
            scenario("did_reg.xml").display().to_string(),
            inf_path.display().to_string(),
            msg_file.display().to_string(),
            err_file.display().to_string(),
        );
        let (port_s, exp_s, m_s) = (
            port.to_string(),
            expires.to_string(),
            phones.len().to_string(),
        );
        let target = self.server.udp.to_string();
        let args = [
            "-sf",
            &sf,
            "-inf",
            &inf_s,
            "-key",
            "expires",
            &exp_s,
            "-i",
            "127.0.0.1",
            "-p",
            &port_s,
            "-m",
            &m_s,
            "-r",
            "200",
            "-l",
            "50",
            "-nd",
            "-nostdin",
            "-timeout",
            "30s",
            "-timeout_error",
            "-recv_timeout",
            "5000",
            "-trace_msg",
            "-message_file",
            &msg_s,
            "-trace_err",
            "-error_file",
            &err_s,
            &target,
        ];
        let (code, mut text) = sipp_run(&args);
        text.push_str("\n--- SIPp error file ---\n");
        text.push_str(&std::fs::read_to_string(&err_file).unwrap_or_default());
        let out = SippOut {
            code,
            text,
            msgs: read_msgs(&msg_file),
            msg_file,
        };
        assert!(
            out.all_ok(phones.len() as u64),
            "{tag}: registration of {} softphones failed\n{}\n{}",
            phones.len(),
            out.show(),
            self.show()
        );
        out
    }
}

/// The must-show: 100 softphones register from one socket (127.0.0.1:X),
/// each with a Contact on a private 10.0.0.0/8 address that is unreachable
/// from here. A DID routed (transport 5) to one of them rings the phone at
/// the REGISTER's source address (a SIPp UAS bound to X after the
/// registering UAC has exited), with its Contact URI as the Request-URI.
/// Two DIDs, two different phones: the Request-URI tells them apart;
/// `didinfo_enabled` decides the To user.
#[test]
fn hundred_softphones_register_and_did_calls_ring_them_at_their_source_address() {
    let did2 = "12565370083";
    let body = phone_trunks(1..=100, |i| i != 83)
        + &did_toml(DID, 0, &[(5, "phone042", 1)])
        + &did_toml(did2, 0, &[(5, "phone083", 1)]);
    let mut rig = Rig::start("hundred", &body);
    let port = free_port();
    let phones: Vec<u32> = (1..=100).collect();
    let reg = rig.register(&phones, port, 3600, "reg100");
    drop(reg);

    for (tag, number, i, to_user) in [
        ("p042", DID, 42, DID.to_owned()),
        ("p083", did2, 83, phone(83).0),
    ] {
        let to_re = format!("sip:{to_user}@");
        let sf = check_scenario(
            &rig.dir,
            &format!("uas_{tag}.xml"),
            &[("", &contact_ruri_re(i)), ("To", &to_re)],
        );
        let mut uas = rig.uas(tag, &sf, "127.0.0.1", port, &[]);
        let out = rig.carrier(
            &scenario("did_uac.xml"),
            number,
            tag,
            20,
            &["-m", "1", "-d", "500"],
        );
        let uas_ok = uas.done_ok(Duration::from_secs(10));
        let show = diag(&out, &[&uas], &rig);
        assert!(out.all_ok(1), "{tag}: the DID call failed\n{show}");
        assert!(
            uas_ok,
            "{tag}: the softphone at its source address 127.0.0.1:{port} did not get one INVITE \
             for its Contact (Request-URI ~ {}, To user {to_user})\n{show}",
            contact_ruri_re(i)
        );
    }
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    let show = rig.show();
    assert_eq!(rows.len(), 2, "{rows:#?}\n{show}");
    for (c, (to, trunk)) in rows.iter().zip([(DID, "phone042"), (did2, "phone083")]) {
        assert_eq!(
            (
                c.kind.as_str(),
                c.disposition.as_str(),
                c.sip_code,
                c.to.as_str(),
                c.sip_trunk.as_str()
            ),
            ("received", "answered", 200, to, trunk),
            "{rows:#?}\n{show}"
        );
        assert_eq!(c.trunk_id, None, "{rows:#?}\n{show}");
    }
}

/// `[server] workers = 4` (issue 17): REGISTERs and DID INVITEs go to core
/// shards by their Call-IDs, so a phone's registration and the call to it
/// mostly land on different shards. 40 softphones register (one SIPp UAC,
/// one Call-ID each), then 8 DID calls ring 8 of them at their source
/// address: a per-shard registrar would miss each call with odds 3 in 4.
/// The B-leg INVITEs' Call-IDs carry the shard mark (`sfNN-`): the calls
/// ran on more than one shard.
#[test]
fn with_four_workers_did_calls_ring_phones_registered_through_any_shard() {
    let picks = [3u32, 9, 14, 22, 27, 31, 36, 40];
    let did = |i: u32| format!("1256540{i:04}");
    let mut body = phone_trunks(1..=40, |_| true);
    for &i in &picks {
        body.push_str(&did_toml(&did(i), 0, &[(5, &phone(i).0, 1)]));
    }
    let mut rig = Rig::start_with("workers4", "workers = 4\n", &body);
    assert!(
        rig.server.log_text().contains("workers=4"),
        "{}",
        rig.show()
    );
    let port = free_port();
    let phones: Vec<u32> = (1..=40).collect();
    drop(rig.register(&phones, port, 3600, "reg40"));
    let mut shards = BTreeSet::new();
    for &i in &picks {
        let tag = format!("w{i}");
        let sf = check_scenario(
            &rig.dir,
            &format!("uas_{tag}.xml"),
            &[("", &contact_ruri_re(i))],
        );
        let mut uas = rig.uas(&tag, &sf, "127.0.0.1", port, &[]);
        let out = rig.carrier(
            &scenario("did_uac.xml"),
            &did(i),
            &tag,
            20,
            &["-m", "1", "-d", "200"],
        );
        let uas_ok = uas.done_ok(Duration::from_secs(10));
        let show = diag(&out, &[&uas], &rig);
        assert!(out.all_ok(1), "{tag}: the DID call failed\n{show}");
        assert!(
            uas_ok,
            "{tag}: phone {i} at 127.0.0.1:{port} did not get the INVITE for its Contact\n{show}"
        );
        for m in uas
            .msgs()
            .iter()
            .filter(|m| !m.sent && m.method() == Some("INVITE"))
        {
            let id = m.call_id();
            assert!(
                id.starts_with("sf") && id.get(4..5) == Some("-"),
                "{id}\n{show}"
            );
            shards.insert(id[2..4].to_owned());
        }
    }
    assert!(shards.len() > 1, "every call ran on one shard: {shards:?}");
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), picks.len(), "{rows:#?}");
    assert!(
        rows.iter().all(|c| c.disposition == "answered"),
        "{rows:#?}"
    );
}

/// Registrations survive a restart (SPEC §8.2): a softphone registers from
/// 127.0.0.1:X with a private Contact, sipfront stops (SIGTERM) and starts
/// again on the same store, and a DID call rings the phone at X (a SIPp UAS
/// bound there after the registering UAC exited) with its Contact as the
/// Request-URI, though the phone never registered with the new process.
#[test]
fn registered_phone_is_called_at_its_nat_address_after_a_restart() {
    let body = phone_trunks(1..=1, |_| true) + &did_toml(DID, 0, &[(5, "phone001", 1)]);
    let mut rig = Rig::start("restart", &body);
    let port = free_port();
    rig.register(&[1], port, 3600, "reg");
    rig.restart();
    assert!(
        rig.server.wait_log(
            "restored=1 expired=0 tcp_dropped=0",
            Duration::from_secs(10)
        ),
        "the binding was not restored\n{}",
        rig.show()
    );
    let sf = check_scenario(&rig.dir, "uas_phone.xml", &[("", &contact_ruri_re(1))]);
    let mut ph = rig.uas("phone", &sf, "127.0.0.1", port, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "after-restart",
        20,
        &["-m", "1", "-d", "200"],
    );
    let ph_ok = ph.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ph], &rig);
    assert!(
        out.all_ok(1),
        "the DID call after the restart failed\n{show}"
    );
    assert!(
        ph_ok,
        "the phone at its NAT address 127.0.0.1:{port} did not get the INVITE for its \
         Contact after the restart\n{show}"
    );
}

/// The DID rings softphone 1 (transport 5, priority 1), else a SIP URI
/// (priority 2). While registered the phone answers; once its binding is
/// gone (`expired`: 5 s passed; else: unregistered with Expires 0) the call
/// goes to the URI and nothing reaches the phone's old address.
fn binding_gone_moves_on(tag: &str, expired: bool) {
    let p2 = free_port();
    let body = "[registrar]\nmin_expires = 5\n\n".to_owned()
        + &phone_trunks(1..=1, |_| true)
        + &did_toml(
            DID,
            0,
            &[
                (5, "phone001", 1),
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
            ],
        );
    let mut rig = Rig::start(tag, &body);
    let port = free_port();
    let expires = if expired { 5 } else { 3600 };
    rig.register(&[1], port, expires, "reg");
    let registered_at = std::time::Instant::now();

    // Registered: the phone gets the call.
    let sf = check_scenario(&rig.dir, "uas_phone.xml", &[("", &contact_ruri_re(1))]);
    let mut ph = rig.uas("phone", &sf, "127.0.0.1", port, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "first",
        20,
        &["-m", "1", "-d", "200"],
    );
    let ph_ok = ph.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ph], &rig);
    assert!(
        out.all_ok(1) && ph_ok,
        "while registered the DID call must ring the phone (registered {:?} ago)\n{show}",
        registered_at.elapsed()
    );
    drop(ph);

    if expired {
        // The registrar's own expiry sweep says when it is gone.
        assert!(
            rig.server
                .wait_log("registration expired", Duration::from_secs(20)),
            "the 5 s binding did not expire\n{}",
            rig.show()
        );
    } else {
        rig.register(&[1], port, 0, "unreg");
    }
    // Gone: the next destination answers; the old address hears nothing.
    let mut catcher = rig.uas(
        "old-address",
        &scenario("policy_uas.xml"),
        "127.0.0.1",
        port,
        &[],
    );
    let mut next = rig.uas("next", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "second",
        30,
        &["-m", "1", "-d", "200"],
    );
    let next_ok = next.done_ok(Duration::from_secs(10));
    thread::sleep(Duration::from_millis(300));
    let show = diag(&out, &[&catcher, &next], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(next_ok, "the next destination did not answer\n{show}");
    assert_eq!(
        catcher.invites(),
        0,
        "a call went to the binding that is gone\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
    let _ = catcher.bg.wait(Duration::from_millis(10));
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), 2, "{rows:#?}\n{show}");
    for c in &rows {
        assert_eq!(
            (
                c.kind.as_str(),
                c.disposition.as_str(),
                c.sip_code,
                c.sip_trunk.as_str()
            ),
            ("received", "answered", 200, "phone001"),
            "{rows:#?}\n{show}"
        );
    }
}

/// One trunk registered from two phones (two sockets, two Contacts): a DID
/// call rings both at once; the first 2xx wins and the other, still
/// ringing, is CANCELled at once (not at the ring timeout).
#[test]
fn two_contacts_of_a_trunk_ring_in_parallel_first_answer_wins() {
    let body = phone_trunks(1..=1, |_| true) + &did_toml(DID, 0, &[(5, "phone001", 1)]);
    let mut rig = Rig::start("fork", &body);
    let (pa, pb) = (free_port(), free_port());
    rig.register_at(&[(1, "10.0.0.1".into())], pa, 3600, "reg-a");
    rig.register_at(&[(1, "10.0.1.1".into())], pb, 3600, "reg-b");
    let mut ringing = rig.uas(
        "ringing",
        &scenario("did_uas_ring_cancel.xml"),
        "127.0.0.1",
        pa,
        &[],
    );
    let sf = check_scenario(
        &rig.dir,
        "uas_b.xml",
        &[("", "INVITE sip:001@10\\.0\\.1\\.1:5060")],
    );
    let mut answering = rig.uas("answering", &sf, "127.0.0.1", pb, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "500"],
    );
    let ringing_ok = ringing.done_ok(Duration::from_secs(10));
    let answering_ok = answering.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&ringing, &answering], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        ringing_ok && answering_ok,
        "ringing one CANCELled ok {ringing_ok}, answering one ok {answering_ok}\n{show}"
    );
    let first_invite = |u: &Uas| {
        u.msgs()
            .iter()
            .find(|m| !m.sent && m.method() == Some("INVITE"))
            .map(|m| m.t)
    };
    let (ta, tb) = (first_invite(&ringing), first_invite(&answering));
    let t_cancel = ringing
        .msgs()
        .iter()
        .find(|m| !m.sent && m.method() == Some("CANCEL"))
        .map(|m| m.t);
    let spread = match (ta, tb) {
        (Some(a), Some(b)) => (a - b).abs(),
        _ => f64::NAN,
    };
    let to_cancel = match (ta, t_cancel) {
        (Some(a), Some(c)) => c - a,
        _ => f64::NAN,
    };
    eprintln!("fork: INVITEs {spread:.3} s apart, CANCEL {to_cancel:.3} s after");
    assert!(
        spread < 1.0,
        "the two contacts were not rung at once ({spread} s apart)\n{show}"
    );
    assert!(
        to_cancel < 3.0,
        "the losing branch was CANCELled {to_cancel} s after its INVITE\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, Some("phone001"), &show);
}

/// A fork of two contacts: one is busy at once, the other rings 1.5 s and
/// answers. A busy branch must not end the fork (RFC 3261 §16.7: the best
/// response is chosen once all branches are final): the carrier gets the
/// 200, and the next destination never rings.
#[test]
fn a_busy_branch_does_not_end_the_fork() {
    let p3 = free_port();
    let body = phone_trunks(1..=1, |_| true)
        + &did_toml(
            DID,
            0,
            &[
                (5, "phone001", 1),
                (1, &format!("sip:1003@127.0.0.1:{p3}"), 2),
            ],
        );
    let rig = Rig::start("fork-busy", &body);
    let (pa, pb) = (free_port(), free_port());
    rig.register_at(&[(1, "10.0.0.1".into())], pa, 3600, "reg-a");
    rig.register_at(&[(1, "10.0.1.1".into())], pb, 3600, "reg-b");
    let busy_sf = code_scenario(&rig.dir, "did_uas_refuse.xml", 486);
    let mut busy = rig.uas("busy", &busy_sf, "127.0.0.1", pa, &[]);
    let mut late = rig.uas(
        "late",
        &scenario("did_uas_ring_answer.xml"),
        "127.0.0.1",
        pb,
        &[],
    );
    let next = rig.uas("next", &scenario("policy_uas.xml"), "127.0.0.1", p3, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "500"],
    );
    let busy_ok = busy.done_ok(Duration::from_secs(10));
    let late_ok = late.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&busy, &late, &next], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        busy_ok && late_ok,
        "busy ok {busy_ok}, late answer ok {late_ok}\n{show}"
    );
    assert_eq!(
        next.invites(),
        0,
        "the fork was abandoned for the next destination\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
}

/// Every contact of the fork is busy: the next destination answers.
#[test]
fn all_branches_busy_moves_to_the_next_destination() {
    let p3 = free_port();
    let body = phone_trunks(1..=1, |_| true)
        + &did_toml(
            DID,
            0,
            &[
                (5, "phone001", 1),
                (1, &format!("sip:1003@127.0.0.1:{p3}"), 2),
            ],
        );
    let rig = Rig::start("fork-allbusy", &body);
    let (pa, pb) = (free_port(), free_port());
    rig.register_at(&[(1, "10.0.0.1".into())], pa, 3600, "reg-a");
    rig.register_at(&[(1, "10.0.1.1".into())], pb, 3600, "reg-b");
    let busy_sf = code_scenario(&rig.dir, "did_uas_refuse.xml", 486);
    let mut a = rig.uas("busy-a", &busy_sf, "127.0.0.1", pa, &[]);
    let mut b = rig.uas(
        "busy-b",
        &scenario("did_uas_ring_busy.xml"),
        "127.0.0.1",
        pb,
        &[],
    );
    let mut next = rig.uas("next", &scenario("policy_uas.xml"), "127.0.0.1", p3, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "500"],
    );
    let a_ok = a.done_ok(Duration::from_secs(10));
    let b_ok = b.done_ok(Duration::from_secs(10));
    let next_ok = next.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&a, &b, &next], &rig);
    assert!(out.all_ok(1), "{show}");
    assert!(
        a_ok && b_ok && next_ok,
        "busy a {a_ok}, busy b {b_ok}, next {next_ok}\n{show}"
    );
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
}

#[test]
fn expired_binding_moves_the_did_call_to_the_next_destination() {
    binding_gone_moves_on("expired", true);
}

#[test]
fn unregistered_binding_moves_the_did_call_to_the_next_destination() {
    binding_gone_moves_on("unregistered", false);
}

// ---- baresip ----------------------------------------------------------------------

fn baresip_bin() -> &'static str {
    if let Err(e) = std::process::Command::new("baresip").arg("-h").output() {
        panic!(
            "baresip is not installed ({e}). Install it with \
             `apt-get update && apt-get install -y baresip`, or run ./test.sh which does."
        );
    }
    "baresip"
}

/// A headless baresip (TESTING-NOTES), killed by its own pid on drop.
struct Baresip {
    child: std::process::Child,
    out: PathBuf,
}

impl Baresip {
    fn start(dir: &TempDir, login: &str, password: &str, server: std::net::SocketAddr) -> Baresip {
        let conf = dir.path().join("baresip");
        std::fs::create_dir_all(&conf).expect("baresip dir");
        let sip_port = free_port();
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method\t\tpoll\n\
                 sip_listen\t\t127.0.0.1:{sip_port}\n\
                 net_interface\t\t127.0.0.1\n\
                 audio_player\t\taubridge,nil\n\
                 audio_source\t\tausine,440\n\
                 audio_alert\t\taubridge,nil\n\
                 ausrc_srate\t\t48000\n\
                 ausrc_channels\t\t2\n\
                 module_path\t\t/usr/lib/baresip/modules\n\
                 module\t\t\tg711.so\n\
                 module\t\t\tausine.so\n\
                 module\t\t\taubridge.so\n\
                 module_tmp\t\taccount.so\n"
            ),
        )
        .expect("baresip config");
        std::fs::write(
            conf.join("accounts"),
            format!(
                "<sip:{login}@{}:{};transport=udp>;auth_pass={password};regint=60;answermode=auto;mwi=no\n",
                server.ip(),
                server.port()
            ),
        )
        .expect("baresip accounts");
        let out = conf.join("baresip.out");
        let f = std::fs::File::create(&out).expect("baresip output");
        let child = std::process::Command::new(baresip_bin())
            .arg("-f")
            .arg(&conf)
            .args(["-t", "60"])
            .current_dir(&conf)
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().expect("clone"))
            .stderr(f)
            .spawn()
            .expect("start baresip");
        Baresip { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for `200 OK … [1 binding]` (true) or a refusal/timeout.
    fn wait_registered(&self, timeout: Duration) -> bool {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            let t = self.text();
            if t.lines()
                .any(|l| l.contains("200 OK") && l.contains("[1 binding]"))
            {
                return true;
            }
            if t.contains("403 Forbidden") {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn show(&self) -> String {
        format!("--- baresip ---\n{}", self.text())
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real softphone: baresip registers as trunk login `phoneb`, the carrier
/// calls a DID routed to it, baresip auto-answers, the carrier hangs up
/// after 2 s.
#[test]
fn baresip_registered_softphone_answers_a_did_call() {
    let body =
        "[[trunk]]\nid = 1\nname = \"phoneb\"\npassword = \"bpw\"\ndidinfo_enabled = true\n\n"
            .to_owned()
            + &did_toml(DID, 0, &[(5, "phoneb", 1)]);
    let mut rig = Rig::start("baresip", &body);
    let phone = Baresip::start(&rig.dir, "phoneb", "bpw", rig.server.udp);
    assert!(
        phone.wait_registered(Duration::from_secs(20)),
        "baresip did not register\n{}\n{}",
        phone.show(),
        rig.show()
    );
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "carrier",
        30,
        &["-m", "1", "-d", "2000"],
    );
    thread::sleep(Duration::from_millis(500));
    let show = format!("{}\n{}\n{}", out.show(), phone.show(), rig.show());
    assert!(out.all_ok(1), "the DID call to baresip failed\n{show}");
    let text = phone.text();
    assert!(
        text.contains("Call established") && text.contains("terminated"),
        "baresip did not answer and end the call\n{show}"
    );
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, Some("phoneb"), &show);
    assert!(rows[0].duration >= 2, "{rows:#?}\n{show}");
}

// ---- a softphone registered over TCP -----------------------------------------------

/// Keep-alive over TCP (RFC 5626 §4.4.1): with `keepalive_s = 1` a phone
/// registered over TCP gets double-CRLF pings on its registered connection
/// (it need not answer them and keeps its binding); when the connection
/// closes, the binding goes.
#[test]
fn tcp_registered_phone_gets_crlf_pings_on_its_connection() {
    let body = "[registrar]\nkeepalive_s = 1\n\n".to_owned() + &phone_trunks(1..=1, |_| true);
    let rig = Rig::start("tcp-keepalive", &body);
    let (login, pw, _, _) = phone(1);
    let mut ph = TcpPhone::connect(rig.server.tcp);
    let code = ph.register(
        &login,
        &pw,
        "sip:001@10.0.0.9:5060;transport=tcp",
        rig.server.tcp,
    );
    assert_eq!(code, 200, "TCP REGISTER\n{}\n{}", ph.log, rig.show());
    // The framing helper returns a bare CRLFCRLF as an empty "message".
    let mut pings = 0;
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while pings < 2 && std::time::Instant::now() < end {
        if ph.recv(Duration::from_secs(1)).as_deref() == Some("\r\n\r\n") {
            pings += 1;
        }
    }
    assert_eq!(
        pings,
        2,
        "no CRLF keep-alive on the registered connection\n{}\n{}",
        ph.log,
        rig.show()
    );
    assert!(
        !rig.server.log_text().contains("registration dropped"),
        "a TCP phone that does not pong lost its binding\n{}",
        rig.show()
    );
    drop(ph);
    assert!(
        rig.server
            .wait_log("registration dropped", Duration::from_secs(10)),
        "the closed connection's binding was not dropped\n{}",
        rig.show()
    );
}

/// SPEC §4/§5: a phone registered over TCP is called over that very
/// connection (its Contact names an unreachable private address), and when
/// the connection closes its binding goes with it: the next destination.
#[test]
fn tcp_registered_phone_is_called_over_its_connection_and_not_after_it_closes() {
    let p2 = free_port();
    let body = phone_trunks(1..=1, |_| true)
        + &did_toml(
            DID,
            0,
            &[
                (5, "phone001", 1),
                (1, &format!("sip:1002@127.0.0.1:{p2}"), 2),
            ],
        );
    let mut rig = Rig::start("tcp-phone", &body);
    let (login, pw, _, _) = phone(1);
    let mut ph = TcpPhone::connect(rig.server.tcp);
    let code = ph.register(
        &login,
        &pw,
        "sip:001@10.0.0.9:5060;transport=tcp",
        rig.server.tcp,
    );
    assert_eq!(code, 200, "TCP REGISTER\n{}\n{}", ph.log, rig.show());

    let phone_thread = thread::spawn(move || {
        let r = ph.answer_one_call();
        (r, ph)
    });
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "first",
        30,
        &["-m", "1", "-d", "500"],
    );
    let (r, ph) = phone_thread.join().expect("phone thread");
    let show = format!(
        "{}\n--- TCP phone ---\n{}\n{}",
        out.show(),
        ph.log,
        rig.show()
    );
    assert!(out.all_ok(1), "{show}");
    let first = r.unwrap_or_else(|e| panic!("{e}\n{show}"));
    assert!(
        first.starts_with("INVITE sip:001@10.0.0.9:5060"),
        "Request-URI must be the registered Contact: {first}\n{show}"
    );

    // The connection closes: the binding is gone, the URI answers, and
    // nothing tries to reach the phone's old address (a listener now bound
    // there would see a new connection).
    let old_addr = ph.pipe.stream.local_addr().expect("local");
    drop(ph);
    assert!(
        rig.server
            .wait_log("registration dropped", Duration::from_secs(10)),
        "the closed connection's binding was not dropped\n{}",
        rig.show()
    );
    let catcher = std::net::TcpListener::bind(old_addr);
    if let Ok(l) = &catcher {
        l.set_nonblocking(true).expect("nonblocking");
    }
    let mut next = rig.uas("next", &scenario("policy_uas.xml"), "127.0.0.1", p2, &[]);
    let out = rig.carrier(
        &scenario("did_uac.xml"),
        DID,
        "second",
        30,
        &["-m", "1", "-d", "200"],
    );
    let next_ok = next.done_ok(Duration::from_secs(10));
    let show = diag(&out, &[&next], &rig);
    assert!(
        out.all_ok(1) && next_ok,
        "after the TCP connection closed\n{show}"
    );
    if let Ok(l) = &catcher {
        assert!(
            l.accept().is_err(),
            "sipfront opened a new connection to the closed phone's address {old_addr}\n{show}"
        );
    } else {
        panic!("could not listen on the phone's old address {old_addr}: {catcher:?}");
    }
    let finals = invite_finals(&out);
    assert!(finals.iter().all(|&c| c == 200), "{finals:?}\n{show}");
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    assert_eq!(rows.len(), 2, "{rows:#?}\n{show}");
    assert!(
        rows.iter()
            .all(|c| c.kind == "received" && c.disposition == "answered" && c.sip_code == 200),
        "{rows:#?}\n{show}"
    );
}

// ---- a WebSocket client (RFC 7118) -------------------------------------------------

/// `[[listen]]` on a WebSocket port chosen by the OS.
const WS_LISTEN: &str = "\n[[listen]]\ntransport = \"ws\"\naddress = \"127.0.0.1:0\"\n";

/// RFC 7118 / SPEC §8.3: a WebSocket client (tokio-tungstenite, the test's
/// own) registers over `ws` with digest from an `.invalid` Via and Contact
/// host, is called on its WebSocket by a DID call from the SIPp carrier,
/// answers, and its own BYE ends the call (the carrier gets it). The API
/// shows the binding's and the call's transport, `/metrics` the upgrade.
#[test]
fn ws_client_registers_is_called_on_its_websocket_and_hangs_up() {
    let rig = Rig::start("ws-phone", &stream_phone_config(WS_LISTEN));
    let ws = rig.server.ws.expect("a ws listener in the ready line");
    let ph = WsPhone::connect_ws(ws).unwrap_or_else(|e| panic!("{e}\n{}", rig.show()));
    stream_phone_is_called_and_hangs_up(rig, ph, ws, "ws");
}

/// The same over `wss`: WebSocket inside TLS, on a certificate the test
/// made, the client verifying it.
#[test]
fn wss_client_registers_is_called_on_its_websocket_and_hangs_up() {
    let dir = TempDir::new("wss-pki");
    let pki = common::tls::Pki::new(&dir, "wss", &["localhost"], 2030);
    let listen = pki.listen_toml().replace("\"tls\"", "\"wss\"");
    let rig = Rig::start("wss-phone", &stream_phone_config(&listen));
    let wss = rig.server.wss.expect("a wss listener in the ready line");
    let ph = WssPhone::connect_wss(wss, pki.client_config(), "localhost")
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.show()));
    stream_phone_is_called_and_hangs_up(rig, ph, wss, "wss");
}

/// SPEC §8.3 / RFC 3261 §26.2: a TLS softphone (rustls, the test's own)
/// registers with digest over its TLS connection, is called on that
/// connection by a DID call from the SIPp carrier (as over TCP: never a
/// new connection to its Contact), answers, and its BYE ends the call. `/v1/registrations`
/// shows `TLS`, `/v1/calls` `udp` → `tls`, our Via `SIP/2.0/TLS`.
#[test]
fn tls_client_registers_is_called_on_its_connection_and_hangs_up() {
    let dir = TempDir::new("tls-pki");
    let pki = common::tls::Pki::new(&dir, "tls", &["localhost"], 2030);
    let rig = Rig::start("tls-phone", &stream_phone_config(&pki.listen_toml()));
    let tls = rig.server.tls.expect("a tls listener in the ready line");
    let ph =
        common::phone::TlsPhone::tls(common::tls::connect(tls, pki.client_config(), "localhost"));
    stream_phone_is_called_and_hangs_up(rig, ph, tls, "tls");
}

/// Phone 001 with DID [`DID`] to it, a stream `listen` entry (ws, wss,
/// tls) and the API.
fn stream_phone_config(listen: &str) -> String {
    phone_trunks(1..=1, |_| true)
        + &did_toml(DID, 0, &[(5, "phone001", 1)])
        + listen
        + common::TEST_API_KEY_CONFIG
}

/// `ph`, connected to `server` over `scheme` (`ws`/`wss`/`tls`), registers, takes
/// the carrier's DID call, answers, and hangs up.
fn stream_phone_is_called_and_hangs_up<P>(
    mut rig: Rig,
    mut ph: common::phone::Phone<P>,
    server: std::net::SocketAddr,
    scheme: &str,
) where
    P: Pipe + Send + 'static,
{
    let ws = server;
    let (login, pw, _, nnn) = phone(1);
    let contact = format!("sip:{nnn}@{};transport={scheme}", ph.pipe.sent_by());
    let code = ph.register(&login, &pw, &contact, ws);
    let token = scheme.to_ascii_uppercase();
    assert_eq!(code, 200, "{token} REGISTER\n{}\n{}", ph.log, rig.show());
    let regs = common::wait_registrations(&rig.server, Duration::from_secs(5), |items| {
        items.iter().any(|r| r["transport"] == token.as_str())
    });
    assert!(
        regs.is_some(),
        "/v1/registrations does not show the {token} binding\n{}",
        rig.show()
    );

    let server = rig.server.http;
    let phone_thread = thread::spawn(move || {
        let r = (|| {
            let invite = ph.wait_invite(Duration::from_secs(15))?;
            ph.answer(&invite)?;
            // The call is up: the API shows both legs' transports.
            let calls = common::api_get_at(server, common::TEST_API_KEY, "/v1/calls");
            let code = ph.hang_up(&invite);
            if code != 200 {
                return Err(format!("BYE answered {code}"));
            }
            Ok((invite, calls))
        })();
        (r, ph)
    });
    let out = rig.carrier(
        &scenario("did_uac_wait_bye.xml"),
        DID,
        "ws",
        30,
        &["-m", "1"],
    );
    let (r, ph) = phone_thread.join().expect("phone thread");
    let show = format!("{}\n--- phone ---\n{}\n{}", out.show(), ph.log, rig.show());
    assert!(out.all_ok(1), "{show}");
    let (invite, (status, calls)) = r.unwrap_or_else(|e| panic!("{e}\n{show}"));
    let first = invite.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("INVITE {contact}")),
        "Request-URI must be the registered Contact: {first}\n{show}"
    );
    let via = common::phone::header_value(&invite, "Via").unwrap_or("");
    assert!(
        via.starts_with(&format!("SIP/2.0/{token} ")),
        "our Via on a {token} leg: {via}\n{show}"
    );
    let our_contact = common::phone::header_value(&invite, "Contact").unwrap_or("");
    assert!(
        our_contact.contains(&format!(";transport={scheme}")),
        "our Contact on a {token} leg: {our_contact}\n{show}"
    );
    let call = &calls["items"][0];
    assert_eq!(status, 200, "{calls}\n{show}");
    assert_eq!(
        (call["a_transport"].as_str(), call["b_transport"].as_str()),
        (Some("udp"), Some(scheme)),
        "{calls}\n{show}"
    );
    let (_, metrics) = common::api_text(&rig.server, common::TEST_API_KEY, "/metrics");
    let counted = if scheme.starts_with("ws") {
        "\nsipfront_ws_upgrades_accepted_total 1\n"
    } else {
        "\nsipfront_tls_handshake_failures_total{direction=\"inbound\"} 0\n"
    };
    assert!(metrics.contains(counted), "{metrics}");
    let rows = rig.stop_and_read_cdrs();
    assert_received_answered(&rows, Some("phone001"), &show);
}
