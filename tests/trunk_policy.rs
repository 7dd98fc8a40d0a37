//! SPEC §3 trunk policy on outbound calls, end to end against the real binary:
//! SIPp as the trunk's PBX (UAC on 127.0.0.1, digest-authenticated as `pbx1`)
//! and SIPp as the upstream carrier (UAS), scenarios `tests/sipp/auth_*.xml`
//! and `tests/sipp/policy_*.xml`. CDRs are read from the SQLite store after a
//! SIGTERM (which flushes the CDR queue).
//!
//! SIPp 3.6.1 computes only MD5 digests and reads only the *first*
//! `Proxy-Authenticate` header (with SHA-256 first it gives up with
//! "createAuthHeader: authentication must use MD5 or AKAv1-MD5"), so these
//! tests also pin that sipfront's challenges let such UAs in.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::calls::{
    call_ids, charge_ok, check_scenario, parse_msgs, read_cdrs, read_msgs, refused_scenario, Cdr,
    Msg, SippOut,
};
use common::{free_port, scenario, sipp_counter, sipp_run, Server, SippBg, TempDir};

const LOGIN: &str = "pbx1";
const PASSWORD: &str = "s3cret";
const CALLERID: &str = "12121234567";

/// `prefix,per_minute,name`; longest prefix wins.
const RATES: &str = "prefix,per_minute,name\n\
                     1,0.01,US\n\
                     1212,0.0125,US New York\n\
                     44,0.05,UK\n\
                     4420,0.18,UK London\n\
                     449,0.30,UK premium\n";

/// sipfront with one digest trunk `pbx1`, the rate table [`RATES`], a CDR
/// store in its own temp dir and one upstream at `up_port`.
struct Rig {
    server: Server,
    dir: TempDir,
    db: PathBuf,
    up_port: u16,
    uas_log: PathBuf,
}

/// Where SIPp's digest failure would show (see the module doc).
fn sipp_auth_hint(text: &str) -> &'static str {
    if text.contains("createAuthHeader") {
        "\n*** SIPp could not compute the digest: SIPp 3.6.1 supports only MD5 and reads the \
         first Proxy-Authenticate header; did sipfront offer SHA-256 first? ***\n"
    } else {
        ""
    }
}

impl Rig {
    /// `trunk_extra`: more `key = value` lines for the `[[trunk]]`.
    fn start(tag: &str, trunk_extra: &str) -> Rig {
        Rig::start_with(tag, "", trunk_extra)
    }

    /// [`Rig::start`] with more `[server]` lines.
    fn start_with(tag: &str, server_extra: &str, trunk_extra: &str) -> Rig {
        let dir = TempDir::new(tag);
        let rates = dir.write("rates.csv", RATES);
        let db = dir.path().join("cdr.db");
        let up_port = free_port();
        let cfg = format!(
            "{loopback}\n[server]\ndrain_s = 2\n{server_extra}\n[store]\npath = \"{db}\"\n\n\
             [rates]\nfile = \"{rates}\"\n\n\
             [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.1:{up_port};transport=udp\"\n\
             priority = 1\nping_interval_s = 0\n\n\
             [[trunk]]\nid = 1\nname = \"{LOGIN}\"\npassword = \"{PASSWORD}\"\ncallerid = \"{CALLERID}\"\n\
             {trunk_extra}\n",
            loopback = common::LOOPBACK_CONFIG,
            db = db.display(),
            rates = rates.display(),
        );
        let server = Server::start(&cfg);
        let uas_log = dir.path().join("uas.msg");
        Rig {
            server,
            dir,
            db,
            up_port,
            uas_log,
        }
    }

    /// The upstream: SIPp UAS on `up_port` running `sf`, messages in `uas_log`.
    fn uas(&self, sf: &Path, extra: &[&str]) -> SippBg {
        let sf = sf.display().to_string();
        let port = self.up_port.to_string();
        let log = self.uas_log.display().to_string();
        let err = self.dir.path().join("uas.err").display().to_string();
        let mut args = vec![
            "-sf",
            &sf,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-nostdin",
            "-timeout",
            "150s",
            "-recv_timeout",
            "100000",
            "-trace_msg",
            "-message_file",
            &log,
            "-trace_err",
            "-error_file",
            &err,
        ];
        args.extend(extra);
        SippBg::start(&args)
    }

    /// The PBX: a SIPp UAC dialling `number` through `target` with
    /// `-au/-ap creds`; `extra` must give `-m` and may give more.
    #[allow(clippy::too_many_arguments)]
    fn uac_to(
        &self,
        target: SocketAddr,
        sf: &Path,
        number: &str,
        creds: (&str, &str),
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
        let port = free_port().to_string();
        let timeout = format!("{timeout_s}s");
        let target_s = target.to_string();
        let mut args = vec![
            "-sf",
            &sf,
            "-s",
            number,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-au",
            creds.0,
            "-ap",
            creds.1,
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
        args.push(&target_s);
        let (code, mut text) = sipp_run(&args);
        text.push_str("\n--- SIPp error file ---\n");
        text.push_str(&std::fs::read_to_string(&err_file).unwrap_or_default());
        text.push_str(sipp_auth_hint(&text));
        SippOut {
            code,
            text,
            msgs: read_msgs(&msg_file),
            msg_file,
        }
    }

    /// [`Rig::uac_to`] sipfront's UDP listener as `pbx1`.
    fn uac(&self, sf: &Path, number: &str, tag: &str, timeout_s: u32, extra: &[&str]) -> SippOut {
        self.uac_to(
            self.server.udp,
            sf,
            number,
            (LOGIN, PASSWORD),
            tag,
            timeout_s,
            extra,
        )
    }

    fn uas_msgs(&self) -> Vec<Msg> {
        read_msgs(&self.uas_log)
    }

    /// Call-IDs of the INVITEs that reached the upstream.
    fn uas_invites(&self) -> BTreeSet<String> {
        call_ids(&self.uas_msgs(), |m| {
            !m.sent && m.method() == Some("INVITE")
        })
    }

    /// The upstream's messages and sipfront's log, for assertion messages.
    fn show(&self) -> String {
        format!(
            "--- UAS messages ---\n{}\n--- UAS errors ---\n{}\n--- sipfront log ---\n{}",
            std::fs::read_to_string(&self.uas_log).unwrap_or_default(),
            std::fs::read_to_string(self.dir.path().join("uas.err")).unwrap_or_default(),
            self.server.log_text()
        )
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

// ---- digest --------------------------------------------------------------------

/// Checks the challenge sipfront sent: 407, two Proxy-Authenticate headers,
/// MD5 and SHA-256 (MD5 first, so that UAs reading only the first one,
/// SIPp among them, get in), both qop="auth", one nonce; and no 100 before it.
fn assert_challenge_shape(out: &SippOut, rig: &Rig) {
    let ch = out
        .msgs
        .iter()
        .find(|m| !m.sent && m.status() == Some(407))
        .unwrap_or_else(|| panic!("no 407 in the UAC log\n{}\n{}", out.show(), rig.show()));
    let pa: Vec<&str> = ch
        .text
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("proxy-authenticate:"))
        .collect();
    let diag = || format!("--- 407 ---\n{}\n{}\n{}", ch.text, out.show(), rig.show());
    assert_eq!(pa.len(), 2, "{}", diag());
    let nonce = |l: &str| {
        l.split("nonce=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_owned)
    };
    assert_eq!(nonce(pa[0]), nonce(pa[1]), "{}", diag());
    assert!(nonce(pa[0]).is_some_and(|n| !n.is_empty()), "{}", diag());
    for l in &pa {
        assert!(l.contains("qop=\"auth\""), "{}", diag());
    }
    // MD5 first: SIPp (and UAs like it) read only the first challenge.
    assert!(
        pa[0].contains("algorithm=MD5,") && pa[1].contains("algorithm=SHA-256,"),
        "want MD5 then SHA-256\n{}",
        diag()
    );
    // No 100 Trying before the challenge.
    let pos_407 = out
        .msgs
        .iter()
        .position(|m| !m.sent && m.status() == Some(407));
    let pos_100 = out.msgs.iter().position(|m| {
        !m.sent && m.status() == Some(100) && m.header("CSeq").is_some_and(|c| c.starts_with("1 "))
    });
    assert!(
        pos_100.is_none() || pos_100 > pos_407,
        "100 Trying before the challenge\n{}",
        out.show()
    );
}

#[test]
fn digest_right_password_call_completes() {
    let mut rig = Rig::start("rightpw", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let out = rig.uac(
        &scenario("auth_uac.xml"),
        "12125551234",
        "uac",
        20,
        &["-m", "1", "-d", "1500"],
    );
    assert!(out.all_ok(1), "{}\n{}", out.show(), rig.show());
    assert_challenge_shape(&out, &rig);
    assert_eq!(rig.uas_invites().len(), 1, "{}\n{}", out.show(), rig.show());
    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    let show = format!("{rows:#?}\n{}\n{}", out.show(), rig.show());
    // One row per call attempt: the 407 round trip adds none.
    assert_eq!(rows.len(), 1, "{show}");
    let c = &rows[0];
    assert_eq!(c.kind, "placed", "{show}");
    assert_eq!(c.disposition, "answered", "{show}");
    assert_eq!(c.sip_code, 200, "{show}");
    // Held 1.5 s from answer; billed seconds are rounded up.
    assert_eq!(c.duration, 2, "{show}");
    assert_eq!(c.per_minute, 0.0125, "{show}");
    assert_eq!(c.destination, "US New York", "{show}");
    assert!((c.charge - 0.0004).abs() < 1e-9, "{show}");
    assert!(charge_ok(c), "{show}");
    assert_eq!(c.sip_trunk, LOGIN, "{show}");
    assert_eq!(c.trunk_id, Some(1), "{show}");
    assert_eq!(c.to, "12125551234", "{show}");
    assert!(
        c.date.len() == 19 && c.date.as_bytes()[4] == b'-' && c.date.as_bytes()[10] == b' ',
        "{show}"
    );
}

#[test]
fn digest_right_password_over_tcp() {
    let rig = Rig::start("tcp", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let out = rig.uac_to(
        rig.server.tcp,
        &scenario("auth_uac.xml"),
        "12125551234",
        (LOGIN, PASSWORD),
        "uac",
        20,
        &["-m", "2", "-d", "300", "-t", "t1"],
    );
    assert!(out.all_ok(2), "{}\n{}", out.show(), rig.show());
    assert_eq!(rig.uas_invites().len(), 2, "{}\n{}", out.show(), rig.show());
}

#[test]
fn digest_wrong_password_or_unknown_user_is_403_and_no_call() {
    let mut rig = Rig::start("wrongpw", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let sf = refused_scenario(&rig.dir, 403);
    for (tag, creds) in [
        ("wrongpw", (LOGIN, "wrong")),
        ("nouser", ("nobody", PASSWORD)),
    ] {
        let out = rig.uac_to(
            rig.server.udp,
            &sf,
            "12125551234",
            creds,
            tag,
            20,
            &["-m", "1"],
        );
        assert!(out.all_ok(1), "{tag}: {}\n{}", out.show(), rig.show());
    }
    thread::sleep(Duration::from_millis(300));
    assert!(
        rig.uas_invites().is_empty(),
        "a call reached the upstream\n{}",
        rig.show()
    );
    // Wrong credentials are not call attempts of an identified trunk: no CDR.
    let rows = rig.stop_and_read_cdrs_allow_missing();
    assert!(rows.is_empty(), "{rows:#?}\n{}", rig.show());
}

impl Rig {
    /// Like [`Rig::stop_and_read_cdrs`], but a store that was never created
    /// counts as no rows.
    fn stop_and_read_cdrs_allow_missing(&mut self) -> Vec<Cdr> {
        if !self.db.exists() {
            self.server.signal("TERM");
            let _ = self.server.wait_exit(Duration::from_secs(20));
            if !self.db.exists() {
                return Vec::new();
            }
            return read_cdrs(&self.db).unwrap_or_else(|e| panic!("{e}\n{}", self.show()));
        }
        self.stop_and_read_cdrs()
    }
}

/// The Proxy-Authorization SIPp sent on a successful call, replayed from
/// another socket on the same IP in a new INVITE: challenged again.
#[test]
fn digest_replayed_credentials_get_407() {
    let rig = Rig::start("replay", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let out = rig.uac(
        &scenario("auth_uac.xml"),
        "12125551234",
        "uac",
        20,
        &["-m", "1", "-d", "200"],
    );
    assert!(out.all_ok(1), "{}\n{}", out.show(), rig.show());
    let invite = out
        .msgs
        .iter()
        .find(|m| {
            m.sent && m.method() == Some("INVITE") && m.header("Proxy-Authorization").is_some()
        })
        .unwrap_or_else(|| panic!("no INVITE with credentials in the UAC log\n{}", out.show()));
    let auth = invite
        .header("Proxy-Authorization")
        .expect("checked")
        .to_owned();
    let ruri = invite
        .first_line()
        .split(' ')
        .nth(1)
        .expect("request URI")
        .to_owned();
    assert_eq!(rig.uas_invites().len(), 1, "{}\n{}", out.show(), rig.show());

    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let invite = format!(
        "INVITE {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKreplay1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sipp@{local}>;tag=replay1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: replay-1@127.0.0.1\r\n\
         CSeq: 2 INVITE\r\n\
         Contact: <sip:sipp@{local}>\r\n\
         Proxy-Authorization: {auth}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), rig.server.udp)
        .expect("send");
    let mut buf = [0u8; 8192];
    let first = match sock.recv_from(&mut buf) {
        Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => panic!(
            "no answer to the replayed INVITE: {e}\n{invite}\n{}",
            rig.show()
        ),
    };
    assert!(
        first.starts_with("SIP/2.0 407 "),
        "replayed credentials: the first answer must be 407\n--- sent ---\n{invite}\n--- got ---\n{first}\n{}",
        rig.show()
    );
    assert!(
        first.to_ascii_lowercase().contains("proxy-authenticate:"),
        "{first}"
    );
    // ACK the 407 (same branch, the To tag of the response).
    let to = first
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .unwrap_or("To: <x>")
        .trim_end_matches('\r')
        .to_owned();
    let ack = format!(
        "ACK {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bKreplay1;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sipp@{local}>;tag=replay1\r\n\
         {to}\r\n\
         Call-ID: replay-1@127.0.0.1\r\n\
         CSeq: 2 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(ack.as_bytes(), rig.server.udp)
        .expect("send ack");
    thread::sleep(Duration::from_millis(700));
    assert_eq!(
        rig.uas_invites().len(),
        1,
        "the replayed INVITE reached the upstream\n{}",
        rig.show()
    );
}

// ---- policy ----------------------------------------------------------------------

/// A channel-limit run's INVITE outcomes: the 503s received, their Call-IDs,
/// and the Call-IDs answered 200.
fn channel_outcomes(out: &SippOut) -> (Vec<&Msg>, BTreeSet<&str>, BTreeSet<String>) {
    let refused: Vec<&Msg> = out
        .msgs
        .iter()
        .filter(|m| !m.sent && m.status() == Some(503) && m.cseq_method() == "INVITE")
        .collect();
    let refused_ids = refused.iter().map(|m| m.call_id()).collect();
    let answered = call_ids(&out.msgs, |m| {
        !m.sent && m.status() == Some(200) && m.cseq_method() == "INVITE"
    });
    (refused, refused_ids, answered)
}

/// Issue 17 "Must show": with `[server] workers = 4` the calls of one trunk
/// land on four core shards (by Call-ID), yet `max_channels = 7` holds
/// exactly: of 20 concurrent calls held 4 s, 7 are answered and 13 get
/// `503 Channel Limit Reached (max_channels 7)`. The upstream's INVITEs
/// carry the mark of the shard that placed them (`sfNN-`): the 7 ran on
/// more than one shard.
#[test]
fn channel_limit_holds_exactly_across_four_workers() {
    let rig = Rig::start_with(
        "workers",
        "workers = 4\n",
        "channels_restrict = true\nmax_channels = 7\n",
    );
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let out = rig.uac(
        &scenario("policy_uac_channels.xml"),
        "12125551234",
        "twenty",
        60,
        &["-m", "20", "-l", "20", "-r", "100", "-d", "4000"],
    );
    let diag = || format!("{}\n{}", out.show(), rig.show());
    assert!(rig.server.log_text().contains("workers=4"), "{}", diag());
    assert!(out.all_ok(20), "{}", diag());
    let (refused, refused_ids, answered) = channel_outcomes(&out);
    assert_eq!(answered.len(), 7, "answered: {answered:?}\n{}", diag());
    assert_eq!(refused_ids.len(), 13, "503s: {refused_ids:?}\n{}", diag());
    assert!(
        refused
            .iter()
            .all(|m| m.first_line() == "SIP/2.0 503 Channel Limit Reached (max_channels 7)"),
        "{}",
        diag()
    );
    let up = rig.uas_invites();
    assert_eq!(up.len(), 7, "INVITEs at the upstream: {up:?}\n{}", diag());
    let shards: BTreeSet<&str> = up.iter().filter_map(|id| id.get(2..4)).collect();
    assert!(
        up.iter().all(|id| id.starts_with("sf")) && shards.len() > 1,
        "the 7 calls did not run on several shards: {up:?}\n{}",
        diag()
    );
}

#[test]
fn channels_limit_503_then_free_again() {
    let mut rig = Rig::start("channels", "channels_restrict = true\nmax_channels = 2\n");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let sf = scenario("policy_uac_channels.xml");
    let out = rig.uac(
        &sf,
        "12125551234",
        "batch1",
        30,
        &["-m", "5", "-l", "5", "-r", "50", "-d", "2000"],
    );
    let diag = || format!("{}\n{}", out.show(), rig.show());
    assert!(out.all_ok(5), "{}", diag());
    let (refused, refused_ids, answered) = channel_outcomes(&out);
    assert_eq!(refused_ids.len(), 3, "503s: {refused_ids:?}\n{}", diag());
    assert_eq!(answered.len(), 2, "answered: {answered:?}\n{}", diag());
    for m in &refused {
        assert_eq!(
            m.first_line(),
            "SIP/2.0 503 Channel Limit Reached (max_channels 2)",
            "{}",
            diag()
        );
    }
    let up = rig.uas_invites();
    assert_eq!(up.len(), 2, "INVITEs at the upstream: {up:?}\n{}", diag());

    // Both hung up: two more calls connect.
    let out2 = rig.uac(
        &sf,
        "12125551234",
        "batch2",
        20,
        &["-m", "2", "-l", "2", "-r", "50", "-d", "500"],
    );
    let answered2 = call_ids(&out2.msgs, |m| {
        !m.sent && m.status() == Some(200) && m.cseq_method() == "INVITE"
    });
    assert!(
        out2.all_ok(2) && answered2.len() == 2,
        "{}\n{}",
        out2.show(),
        rig.show()
    );
    assert_eq!(rig.uas_invites().len(), 4, "{}", rig.show());

    thread::sleep(Duration::from_millis(300));
    let rows = rig.stop_and_read_cdrs();
    let show = format!("{rows:#?}\n{}", rig.show());
    assert_eq!(rows.len(), 7, "{show}");
    let ok: Vec<&Cdr> = rows
        .iter()
        .filter(|c| c.disposition == "answered")
        .collect();
    let failed: Vec<&Cdr> = rows.iter().filter(|c| c.disposition == "failed").collect();
    assert_eq!((ok.len(), failed.len()), (4, 3), "{show}");
    for c in &failed {
        assert_eq!((c.sip_code, c.duration, c.charge), (503, 0, 0.0), "{show}");
    }
    for c in &ok {
        assert_eq!(c.sip_code, 200, "{show}");
        assert!((1..=3).contains(&c.duration), "{show}");
        assert!(charge_ok(c) && c.charge > 0.0, "{show}");
    }
}

/// Time from the UAC's 200 to its BYE and from the UAS's ACK to its BYE.
fn answer_to_bye(uac: &[Msg], uas: &[Msg]) -> (Option<f64>, Option<f64>) {
    let span = |msgs: &[Msg], start: &dyn Fn(&Msg) -> bool| {
        let t0 = msgs.iter().find(|m| start(m))?.t;
        let t1 = msgs
            .iter()
            .find(|m| !m.sent && m.method() == Some("BYE"))?
            .t;
        Some(t1 - t0)
    };
    (
        span(uac, &|m| {
            !m.sent && m.status() == Some(200) && m.cseq_method() == "INVITE"
        }),
        span(uas, &|m| {
            m.sent && m.status() == Some(200) && m.cseq_method() == "INVITE"
        }),
    )
}

/// Neither side hangs up; sipfront sends BYE to both at `expect_s` ± 1 s.
///
/// The CDR bills that call at most `expect_s` seconds (sipfront itself ended
/// it at that second; the BYE leaving a few ms later must not bill one more
/// second) and, with `max_charge`, at most that much (SPEC §3 cost: "a call
/// may cost at most `max_call_cost`").
fn limited_call(
    tag: &str,
    trunk: &str,
    number: &str,
    expect_s: f64,
    per_minute: f64,
    max_charge: Option<f64>,
) {
    let mut rig = Rig::start(tag, trunk);
    let _uas = rig.uas(&scenario("policy_uas.xml"), &["-m", "1"]);
    let timeout = (expect_s as u32) + 30;
    let out = rig.uac(
        &scenario("policy_uac_wait_bye.xml"),
        number,
        "uac",
        timeout,
        &["-m", "1"],
    );
    thread::sleep(Duration::from_millis(300));
    let uas = rig.uas_msgs();
    assert!(out.all_ok(1), "{}\n{}", out.show(), rig.show());
    let (a, b) = answer_to_bye(&out.msgs, &uas);
    eprintln!("{tag}: answer→BYE at the caller {a:?} s, at the upstream {b:?} s");
    let within = |x: Option<f64>| x.is_some_and(|x| (x - expect_s).abs() <= 1.0);
    assert!(
        within(a) && within(b),
        "answer→BYE: caller {a:?} s, upstream {b:?} s, want {expect_s} ± 1\n{}\n{}",
        out.show(),
        rig.show()
    );
    // Both BYEs were answered 200 by the SIPp scenarios; the UAS scenario
    // required its BYE too.
    assert!(
        uas.iter()
            .any(|m| m.sent && m.status() == Some(200) && m.cseq_method() == "BYE"),
        "{}",
        rig.show()
    );
    let rows = rig.stop_and_read_cdrs();
    let show = format!("{rows:#?}\n{}", rig.show());
    assert_eq!(rows.len(), 1, "{show}");
    let c = &rows[0];
    assert_eq!(
        (c.disposition.as_str(), c.sip_code),
        ("answered", 200),
        "{show}"
    );
    assert!(
        (c.duration as f64) <= expect_s && (c.duration as f64) >= expect_s - 1.0,
        "a call ended by its {expect_s} s limit must be billed {} s or {expect_s} s, not {} s\n{show}",
        expect_s - 1.0,
        c.duration
    );
    if let Some(max) = max_charge {
        assert!(
            c.charge <= max + 1e-9,
            "charge {} is over max_call_cost {max}\n{show}",
            c.charge
        );
    }
    assert_eq!(c.per_minute, per_minute, "{show}");
    assert!(charge_ok(c), "{show}");
}

#[test]
fn call_limit_ends_the_call_with_bye_on_both_legs() {
    limited_call(
        "calllimit",
        "call_restrict = true\ncall_limit = 3\n",
        "12125551234",
        3.0,
        0.0125,
        None,
    );
}

/// 0.18 USD at 0.18 USD/min: one minute, then BYE on both legs.
#[test]
fn cost_limit_duration_ends_the_call_after_60_s() {
    limited_call(
        "costdur",
        "cost_limit = true\nmax_call_cost = 0.18\n",
        "442071234567",
        60.0,
        0.18,
        Some(0.18),
    );
}

/// One refused call: the code at the caller, nothing upstream, one failed CDR.
fn refused_call(rig: &mut Rig, number: &str, code: u16) {
    let sf = refused_scenario(&rig.dir, code);
    let out = rig.uac(&sf, number, &format!("uac{code}"), 20, &["-m", "1"]);
    assert!(out.all_ok(1), "{}\n{}", out.show(), rig.show());
    thread::sleep(Duration::from_millis(300));
    assert!(rig.uas_invites().is_empty(), "{}", rig.show());
}

fn assert_failed_rows(rows: &[Cdr], codes: &[i64], rig: &Rig) {
    let show = format!("{rows:#?}\n{}", rig.show());
    let got: Vec<i64> = rows.iter().map(|c| c.sip_code).collect();
    assert_eq!(got, codes, "{show}");
    for c in rows {
        assert_eq!(
            (c.disposition.as_str(), c.duration, c.charge),
            ("failed", 0, 0.0),
            "{show}"
        );
        assert_eq!(c.sip_trunk, LOGIN, "{show}");
    }
}

/// 0.18 USD at 0.30 USD/min is 36 s: under a minute, refused.
#[test]
fn cost_limit_refuses_a_destination_under_one_minute() {
    let mut rig = Rig::start("costrefuse", "cost_limit = true\nmax_call_cost = 0.18\n");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    refused_call(&mut rig, "4491234567", 403);
    let rows = rig.stop_and_read_cdrs();
    assert_failed_rows(&rows, &[403], &rig);
}

#[test]
fn ip_restrict_no_rate_and_bad_number_are_refused() {
    // Not digits → 484; no rate for 9… → 404.
    let mut rig = Rig::start("refusals", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    refused_call(&mut rig, "12ab34", 484);
    refused_call(&mut rig, "9991234567", 404);
    // The trunk may only be used from 127.0.0.2; the PBX calls from 127.0.0.1.
    let mut rig2 = Rig::start(
        "iprestrict",
        "ip_restrict = true\nallowed_ips = [\"127.0.0.2\"]\n",
    );
    let _uas2 = rig2.uas(&scenario("policy_uas.xml"), &[]);
    refused_call(&mut rig2, "12125551234", 403);

    let rows = rig.stop_and_read_cdrs();
    assert_failed_rows(&rows, &[484, 404], &rig);
    let rows = rig2.stop_and_read_cdrs();
    assert_failed_rows(&rows, &[403], &rig2);
}

/// One call from `uac_sf` dialling `number`; the upstream's scenario checks
/// each (header, regexp) of `checks` and fails the call on a mismatch.
fn checked_call(rig: &Rig, tag: &str, uac_sf: &Path, number: &str, checks: &[(&str, &str)]) {
    let sf = check_scenario(&rig.dir, &format!("uas_{tag}.xml"), checks);
    let mut uas = rig.uas(&sf, &["-m", "1"]);
    let out = rig.uac(uac_sf, number, tag, 20, &["-m", "1", "-d", "200"]);
    let (code, text) = uas.wait(Duration::from_secs(10));
    assert!(
        out.all_ok(1)
            && code == Some(0)
            && sipp_counter(&text, "Successful call") == Some(1)
            && sipp_counter(&text, "Failed call") == Some(0),
        "{tag}: UAS checks {checks:?}: exit {code:?}\n{text}\n{}\n{}",
        out.show(),
        rig.show()
    );
}

#[test]
fn callerid_replaces_from_and_sets_p_asserted_identity() {
    let rig = Rig::start("callerid", "passthrough = false\n");
    let checks = [
        ("From", "sip:12121234567@"),
        ("P-Asserted-Identity", "sip:12121234567@"),
    ];
    checked_call(
        &rig,
        "callerid",
        &scenario("auth_uac.xml"),
        "12125551234",
        &checks,
    );
}

#[test]
fn rewrite_strips_cond_and_prepends_prefix() {
    let rig = Rig::start(
        "rewrite",
        "rewrite_enabled = true\nrewrite_cond = \"00\"\nrewrite_prefix = \"\"\n",
    );
    let checks = [
        ("", "INVITE sip:442071234567@"),
        ("To", "sip:442071234567@"),
    ];
    checked_call(
        &rig,
        "rewrite",
        &scenario("auth_uac.xml"),
        "00442071234567",
        &checks,
    );
}

/// The check scenario really fails a call whose INVITE does not match
/// (SIPp's own `uac` sends From `sipp` and no P-Asserted-Identity).
#[test]
fn uas_check_scenario_fails_on_a_mismatch() {
    let dir = TempDir::new("control");
    let sf = check_scenario(
        &dir,
        "uas_callerid.xml",
        &[
            ("From", "sip:12121234567@"),
            ("P-Asserted-Identity", "sip:12121234567@"),
        ],
    );
    let port = free_port();
    let (port_s, sf_s) = (port.to_string(), sf.display().to_string());
    let mut uas = SippBg::start(&[
        "-sf",
        &sf_s,
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "15s",
    ]);
    let target = format!("127.0.0.1:{port}");
    let uac_port = free_port().to_string();
    let (_, uac_text) = sipp_run(&[
        "-sn",
        "uac",
        "-s",
        "12125551234",
        "-i",
        "127.0.0.1",
        "-p",
        &uac_port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "4s",
        "-recv_timeout",
        "2000",
        &target,
    ]);
    let (_, text) = uas.wait(Duration::from_secs(15));
    assert_eq!(
        (
            sipp_counter(&text, "Successful call"),
            sipp_counter(&text, "Failed call")
        ),
        (Some(0), Some(1)),
        "the UAS check did not fail the call\n{text}\n--- uac ---\n{uac_text}"
    );
}

#[test]
fn sipp_message_log_parses() {
    let m = parse_msgs(
        "----------------------------------------------- 2026-11-23 11:24:30.977656\n\
         UDP message sent (1 bytes):\n\nINVITE sip:1@h SIP/2.0\nCall-ID: a\nCSeq: 1 INVITE\n\n\
         ----------------------------------------------- 2026-11-23 11:24:31.977656\n\
         UDP message received [1] bytes :\n\nSIP/2.0 407 Nope\nCall-ID: a\nCSeq: 1 INVITE\n\n",
    );
    assert_eq!(m.len(), 2);
    assert!(m[0].sent && !m[1].sent);
    assert_eq!(m[0].method(), Some("INVITE"));
    assert_eq!(m[1].status(), Some(407));
    assert_eq!(m[1].cseq_method(), "INVITE");
    assert!((m[1].t - m[0].t - 1.0).abs() < 1e-6);
}

/// `passthrough = true`: the caller's own From user is kept when it is
/// digits, else the trunk's `callerid` is used.
#[test]
fn passthrough_keeps_a_digit_caller_else_uses_callerid() {
    let rig = Rig::start("passthrough", "passthrough = true\n");
    let tpl = std::fs::read_to_string(scenario("auth_uac.xml")).expect("scenario");
    let digits_uac = rig.dir.path().join("uac_digits.xml");
    let from_digits = tpl.replace("From: sipp <sip:sipp@", "From: <sip:12125550000@");
    assert_ne!(from_digits, tpl);
    std::fs::write(&digits_uac, from_digits).expect("write");
    for (tag, uac_sf, want) in [
        ("digits", digits_uac.clone(), "12125550000"),
        ("name", scenario("auth_uac.xml"), CALLERID),
    ] {
        let re = format!("sip:{want}@");
        checked_call(&rig, tag, &uac_sf, "12125551234", &[("From", &re)]);
    }
}

// ---- brute force ([security]) ----------------------------------------------------

/// 20 wrong passwords from one source: the first 10 get `403`, then the
/// source is banned and gets no answer, even with the right password; the
/// right password from another source still places its call. (The
/// attacker is on 127.0.0.3: the upstream's own 127.0.0.1 is never banned.)
#[test]
fn brute_force_bans_the_source_and_only_it() {
    let rig = Rig::start("brute", "");
    let _uas = rig.uas(&scenario("policy_uas.xml"), &[]);
    let sf = refused_scenario(&rig.dir, 403);
    let wrong = (LOGIN, "wrong");
    let fast = [
        "-m",
        "20",
        "-r",
        "50",
        "-recv_timeout",
        "1500",
        "-i",
        "127.0.0.3",
    ];
    let out = rig.uac_to(
        rig.server.udp,
        &sf,
        "12125551234",
        wrong,
        "brute",
        60,
        &fast,
    );
    assert!(
        out.ok() == Some(10) && out.failed() == Some(10),
        "10 answered 403, 10 unanswered\n{}\n{}",
        out.show(),
        rig.show()
    );
    assert!(
        rig.server.log_text().contains("source banned"),
        "{}",
        rig.show()
    );
    let auth = scenario("auth_uac.xml");
    let once = ["-m", "1", "-recv_timeout", "1500", "-i", "127.0.0.3"];
    let out = rig.uac(&auth, "12125551234", "banned", 20, &once);
    assert_eq!(
        out.ok(),
        Some(0),
        "the banned source got an answer\n{}",
        out.show()
    );
    let other = ["-m", "1", "-d", "200", "-i", "127.0.0.2"];
    let out = rig.uac(&auth, "12125551234", "other", 20, &other);
    assert!(
        out.all_ok(1),
        "another source is unaffected\n{}\n{}",
        out.show(),
        rig.show()
    );
}
