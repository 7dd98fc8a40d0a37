//! Caller identity (RFC 3323/3325, Diversion, History-Info, Identity),
//! `number_format`, upstream redirects (RFC 3261 §8.1.3.4) and emergency
//! numbers, end to end against the real binary: SIPp as the PBX (an
//! IP-authenticated trunk on 127.0.0.1, or a registered digest trunk), as
//! the carrier's UAS checking the B-leg INVITE with `<ereg check_it>`, and
//! as a trusted carrier calling a DID from 127.0.0.2.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::calls::{check_scenario, read_cdrs, read_msgs, Cdr, SippOut};
use common::{free_port, scenario, sipp_counter, sipp_run, Server, SippBg, TempDir};

const CALLERID: &str = "12121234567";
/// No prefix for 9…: 911 and 99912345 have no rate.
const RATES: &str = "prefix,per_minute,name\n1,0.01,US\n1212,0.0125,US New York\n44,0.05,UK\n";

/// sipfront with an IP trunk `pbx` (127.0.0.1, caller ID [`CALLERID`]) and
/// one upstream at `up_port`.
struct Rig {
    server: Server,
    dir: TempDir,
    db: PathBuf,
    up_port: u16,
    uas_log: PathBuf,
}

impl Rig {
    fn start(tag: &str, upstream_extra: &str, trunk_extra: &str) -> Rig {
        let dir = TempDir::new(tag);
        let rates = dir.write("rates.csv", RATES);
        let db = dir.path().join("cdr.db");
        let up_port = free_port();
        let cfg = format!(
            "{loopback}\n[server]\ndrain_s = 2\n\n[store]\npath = \"{db}\"\n\n\
             [rates]\nfile = \"{rates}\"\n\n\
             [[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.1:{up_port};transport=udp\"\n\
             priority = 1\nping_interval_s = 0\n{upstream_extra}\n\n\
             [[trunk]]\nid = 1\nname = \"pbx\"\nhost_request = \"127.0.0.1\"\n\
             callerid = \"{CALLERID}\"\n{trunk_extra}\n",
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

    /// The carrier: SIPp UAS on `up_port` running `sf`.
    fn uas(&self, sf: &Path, extra: &[&str]) -> SippBg {
        let (sf, port) = (sf.display().to_string(), self.up_port.to_string());
        let log = self.uas_log.display().to_string();
        let mut args = vec![
            "-sf",
            &sf,
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-nostdin",
            "-timeout",
            "60s",
            "-recv_timeout",
            "50000",
            "-trace_msg",
            "-message_file",
            &log,
        ];
        args.extend(extra);
        SippBg::start(&args)
    }

    /// INVITEs the carrier received.
    fn uas_invites(&self) -> usize {
        read_msgs(&self.uas_log)
            .iter()
            .filter(|m| !m.sent && m.method() == Some("INVITE"))
            .count()
    }

    fn show(&self) -> String {
        format!(
            "--- UAS messages ---\n{}\n--- sipfront log ---\n{}",
            std::fs::read_to_string(&self.uas_log).unwrap_or_default(),
            self.server.log_text()
        )
    }

    /// SIGTERM (flushes the CDR queue), then the CDR rows.
    fn stop_and_read_cdrs(&mut self) -> Vec<Cdr> {
        self.server.signal("TERM");
        let code = self.server.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "sipfront did not exit 0\n{}", self.show());
        read_cdrs(&self.db).unwrap_or_else(|e| panic!("{e}\n{}", self.show()))
    }
}

/// A copy of `template` with `headers` added to its first INVITE, and
/// `__CODE__` (if any) set to `code`.
fn caller_scenario(dir: &TempDir, template: &str, headers: &[(&str, &str)], code: u16) -> PathBuf {
    let text = std::fs::read_to_string(scenario(template)).expect("template");
    let mut extra = String::from("      Max-Forwards: 70\n");
    for (name, value) in headers {
        extra.push_str(&format!("      {name}: {value}\n"));
    }
    let text = text
        .replacen("      Max-Forwards: 70\n", &extra, 1)
        .replace("__CODE__", &code.to_string());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&text, &mut h);
    let name = format!("caller_{:x}.xml", std::hash::Hasher::finish(&h));
    dir.write(&name, &text)
}

/// A copy of a `redirect_*uas.xml` template with `__TARGET__` = `target`.
fn redirect_scenario(dir: &TempDir, template: &str, target: &str) -> PathBuf {
    let text = std::fs::read_to_string(scenario(template)).expect("template");
    dir.write(template, &text.replace("__TARGET__", target))
}

/// SIPp UAC from 127.0.0.1 (the IP trunk) or `ip`, one call to `number`
/// through `target`.
fn call(dir: &TempDir, sf: &Path, ip: &str, target: &str, number: &str, tag: &str) -> SippOut {
    let msg_file = dir.path().join(format!("{tag}.msg"));
    let (sf, msg_s) = (sf.display().to_string(), msg_file.display().to_string());
    let port = free_port().to_string();
    let args = [
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
        "40s",
        "-timeout_error",
        "-recv_timeout",
        "30000",
        "-m",
        "1",
        "-d",
        "200",
        "-trace_msg",
        "-message_file",
        &msg_s,
        target,
    ];
    let (code, text) = sipp_run(&args);
    SippOut {
        code,
        text,
        msgs: read_msgs(&msg_file),
        msg_file,
    }
}

/// One answered call from the PBX with `headers`; the carrier's scenario
/// checks each (header or "" for the message, regexp) of `checks`.
fn checked_call(rig: &Rig, tag: &str, headers: &[(&str, &str)], checks: &[(&str, &str)]) {
    let sf = check_scenario(&rig.dir, &format!("uas_{tag}.xml"), checks);
    let mut uas = rig.uas(&sf, &["-m", "1"]);
    let caller = caller_scenario(&rig.dir, "did_uac.xml", headers, 200);
    let target = rig.server.udp.to_string();
    let out = call(&rig.dir, &caller, "127.0.0.1", &target, "12125551234", tag);
    let (code, text) = uas.wait(Duration::from_secs(20));
    assert!(
        out.all_ok(1) && code == Some(0) && sipp_counter(&text, "Successful call") == Some(1),
        "{tag}: UAS checks {checks:?}: exit {code:?}\n{text}\n{}\n{}",
        out.show(),
        rig.show()
    );
}

#[test]
fn privacy_id_reaches_the_carrier_as_an_anonymous_from_and_the_number_in_pai() {
    let rig = Rig::start("privacy", "", "passthrough = false\n");
    let checks = [
        (
            "From",
            "^ *.Anonymous. .sip:anonymous@anonymous[.]invalid.;tag=",
        ),
        ("P-Asserted-Identity", "sip:12121234567@"),
        ("Privacy", "^ *id"),
    ];
    checked_call(&rig, "privacy", &[("Privacy", "id")], &checks);
    assert!(
        !std::fs::read_to_string(&rig.uas_log)
            .unwrap_or_default()
            .contains("sip:12125550000@"),
        "the caller's own number leaked to the carrier\n{}",
        rig.show()
    );
}

#[test]
fn number_format_plus_puts_plus_in_request_uri_to_from_and_pai() {
    let rig = Rig::start("plus", "number_format = \"plus\"\n", "");
    let checks = [
        ("", "^INVITE sip:[+]12125551234@"),
        ("To", "sip:[+]12125551234@"),
        ("From", "sip:[+]12121234567@"),
        ("P-Asserted-Identity", "sip:[+]12121234567@"),
    ];
    checked_call(&rig, "plus", &[], &checks);
}

#[test]
fn a_trunks_diversion_and_history_info_reach_the_upstream() {
    let rig = Rig::start("diversion", "", "");
    let headers = [
        (
            "Diversion",
            "<sip:12125550100@pbx.example>;reason=unconditional;counter=1",
        ),
        ("History-Info", "<sip:12125550100@pbx.example>;index=1"),
    ];
    let checks = [
        (
            "Diversion",
            "^ *.sip:12125550100@pbx.example.;reason=unconditional;counter=1",
        ),
        ("History-Info", "^ *.sip:12125550100@pbx.example.;index=1"),
    ];
    checked_call(&rig, "diversion", &headers, &checks);
}

/// A trusted carrier (127.0.0.2) calls DID 12565378257, which rings the
/// registered trunk `pbx2`: the carrier's identity headers arrive unchanged.
#[test]
fn a_carriers_pai_privacy_diversion_and_identity_reach_the_trunk() {
    let dir = TempDir::new("inbound");
    let pbx_port = free_port();
    let cfg = format!(
        "{loopback}\n[[upstream]]\nname = \"carrier\"\nuri = \"sip:127.0.0.2:5060\"\n\
         trusted = true\nping_interval_s = 0\n\n\
         [[trunk]]\nid = 2\nname = \"pbx2\"\npassword = \"pw2\"\n\n\
         [[did]]\nnumber = \"12565378257\"\n\
         destinations = [{{ transport = 5, destination = \"pbx2\", priority = 1 }}]\n",
        loopback = common::LOOPBACK_CONFIG
    );
    let server = Server::start(&cfg);
    // The PBX registers from pbx_port, then answers there.
    let contact = format!("sip:pbx2@127.0.0.1:{pbx_port}");
    let (sf, port_s, target) = (
        scenario("reg_ok.xml").display().to_string(),
        pbx_port.to_string(),
        server.udp.to_string(),
    );
    let (code, text) = sipp_run(&[
        "-sf",
        &sf,
        "-s",
        "pbx2",
        "-au",
        "pbx2",
        "-ap",
        "pw2",
        "-key",
        "contact",
        &contact,
        "-key",
        "expires",
        "300",
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        &target,
    ]);
    assert_eq!(
        code,
        Some(0),
        "REGISTER failed:\n{text}\n{}",
        server.log_text()
    );
    let identity =
        "eyJhbGciOiJFUzI1NiJ9.e30.c2ln;info=<https://cert.example/c.pem>;alg=ES256;ppt=shaken";
    let headers = [
        (
            "P-Asserted-Identity",
            "<sip:+13055551212@carrier.example;user=phone>",
        ),
        ("Privacy", "id"),
        (
            "Diversion",
            "<sip:+12565378200@carrier.example>;reason=user-busy",
        ),
        ("Identity", identity),
    ];
    let checks = [
        ("P-Asserted-Identity", "^ *.sip:[+]13055551212@carrier.example;user=phone."),
        ("Privacy", "^ *id"),
        ("Diversion", "^ *.sip:[+]12565378200@carrier.example.;reason=user-busy"),
        // SIPp's header lookup would find P-Asserted-Identity first.
        ("", "Identity: eyJhbGciOiJFUzI1NiJ9[.]e30[.]c2ln;info=.https://cert.example/c.pem.;alg=ES256;ppt=shaken"),
    ];
    let uas_sf = check_scenario(&dir, "uas_pbx2.xml", &checks);
    let log = dir.path().join("pbx.msg").display().to_string();
    let mut uas = SippBg::start(&[
        "-sf",
        &uas_sf.display().to_string(),
        "-i",
        "127.0.0.1",
        "-p",
        &port_s,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "60s",
        "-trace_msg",
        "-message_file",
        &log,
    ]);
    let caller = caller_scenario(&dir, "did_uac.xml", &headers, 200);
    let out = call(
        &dir,
        &caller,
        "127.0.0.2",
        &target,
        "12565378257",
        "carrier",
    );
    let (code, text) = uas.wait(Duration::from_secs(20));
    assert!(
        out.all_ok(1) && code == Some(0) && sipp_counter(&text, "Successful call") == Some(1),
        "PBX checks: exit {code:?}\n{text}\n{}\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        out.show(),
        server.log_text()
    );
}

#[test]
fn a_302_to_another_number_completes_on_the_new_number_through_the_upstream() {
    let mut rig = Rig::start("redirect", "", "");
    let sf = redirect_scenario(&rig.dir, "redirect_uas.xml", "442071234567");
    let mut uas = rig.uas(&sf, &["-m", "1"]);
    let caller = caller_scenario(&rig.dir, "did_uac.xml", &[], 200);
    let target = rig.server.udp.to_string();
    let out = call(
        &rig.dir,
        &caller,
        "127.0.0.1",
        &target,
        "12125551234",
        "redirect",
    );
    let (code, text) = uas.wait(Duration::from_secs(20));
    assert!(
        out.all_ok(1) && code == Some(0),
        "redirected call: UAS exit {code:?}\n{text}\n{}\n{}",
        out.show(),
        rig.show()
    );
    let seen = std::fs::read_to_string(&out.msg_file).unwrap_or_default();
    assert!(
        !seen.contains("192.0.2.55") && !seen.contains(" 302 "),
        "{seen}"
    );
    let rows = rig.stop_and_read_cdrs();
    assert!(
        rows.iter().any(|c| c.to == "442071234567"
            && c.sip_code == 200
            && (c.per_minute - 0.05).abs() < 1e-9),
        "billed at the new number's rate: {rows:#?}"
    );
}

#[test]
fn a_redirect_loop_stops_at_five_hops_and_the_caller_gets_a_failure() {
    let mut rig = Rig::start("loop", "", "");
    let _uas = rig.uas(&scenario("redirect_loop_uas.xml"), &[]);
    let caller = caller_scenario(&rig.dir, "did_uac_refused.xml", &[], 503);
    let target = rig.server.udp.to_string();
    let out = call(
        &rig.dir,
        &caller,
        "127.0.0.1",
        &target,
        "12125551234",
        "loop",
    );
    assert!(out.all_ok(1), "caller: {}\n{}", out.show(), rig.show());
    assert!(
        rig.server
            .wait_log("5 redirects followed already", Duration::from_secs(10)),
        "{}",
        rig.show()
    );
    assert_eq!(
        rig.uas_invites(),
        6,
        "dialled + 5 redirects\n{}",
        rig.show()
    );
    let rows = rig.stop_and_read_cdrs();
    assert!(
        rows.len() == 1 && rows[0].sip_code == 503,
        "one ended call: {rows:#?}"
    );
}

#[test]
fn a_redirect_to_a_number_the_trunk_may_not_call_is_not_followed() {
    let rig = Rig::start("norate", "", "");
    let sf = redirect_scenario(&rig.dir, "redirect_once_uas.xml", "99912345");
    let mut uas = rig.uas(&sf, &["-m", "1"]);
    let caller = caller_scenario(&rig.dir, "did_uac_refused.xml", &[], 404);
    let target = rig.server.udp.to_string();
    let out = call(
        &rig.dir,
        &caller,
        "127.0.0.1",
        &target,
        "12125551234",
        "norate",
    );
    let (code, _) = uas.wait(Duration::from_secs(20));
    assert!(
        out.all_ok(1) && code == Some(0),
        "caller gets the policy's 404: {}\n{}",
        out.show(),
        rig.show()
    );
    assert!(rig.server.wait_log(
        "upstream redirect to `99912345` not followed: trunk policy: no rate",
        Duration::from_secs(10)
    ));
    assert_eq!(rig.uas_invites(), 1, "{}", rig.show());
}

#[test]
fn emergency_911_completes_from_a_trunk_with_no_channels_and_no_rate() {
    let mut rig = Rig::start(
        "emergency",
        "",
        "channels_restrict = true\nmax_channels = 0\ncall_restrict = true\ncall_limit = 1\n",
    );
    let sf = check_scenario(&rig.dir, "uas_911.xml", &[("", "^INVITE sip:911@")]);
    let mut uas = rig.uas(&sf, &["-m", "1"]);
    let caller = caller_scenario(&rig.dir, "did_uac.xml", &[], 200);
    let target = rig.server.udp.to_string();
    // Held past call_limit: no duration limit either.
    let msg_file = rig.dir.path().join("e911.msg");
    let args = [
        "-sf",
        &caller.display().to_string(),
        "-s",
        "911",
        "-i",
        "127.0.0.1",
        "-p",
        &free_port().to_string(),
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-recv_timeout",
        "30000",
        "-m",
        "1",
        "-d",
        "2500",
        "-trace_msg",
        "-message_file",
        &msg_file.display().to_string(),
        &target,
    ];
    let (code, text) = sipp_run(&args);
    let (uas_code, uas_text) = uas.wait(Duration::from_secs(20));
    assert!(
        code == Some(0) && sipp_counter(&text, "Successful call") == Some(1) && uas_code == Some(0),
        "911: {text}\n{uas_text}\n{}",
        rig.show()
    );
    assert!(rig.server.log_text().contains("emergency call to 911"));
    assert!(rig
        .server
        .log_text()
        .lines()
        .any(|l| l.contains("WARN") && l.contains("emergency call to 911")));
    // An ordinary number from the same trunk: refused as before.
    let refused = caller_scenario(&rig.dir, "did_uac_refused.xml", &[], 503);
    let out = call(
        &rig.dir,
        &refused,
        "127.0.0.1",
        &target,
        "12125551234",
        "ordinary",
    );
    assert!(out.all_ok(1), "{}\n{}", out.show(), rig.show());
    let rows = rig.stop_and_read_cdrs();
    let e = rows.iter().find(|c| c.to == "911").expect("911 CDR");
    assert_eq!((e.sip_code, e.destination.as_str()), (200, "Emergency"));
    assert!(e.duration >= 2, "not cut at call_limit: {e:?}");
    assert!(
        rows.iter().any(|c| c.to != "911" && c.sip_code == 503),
        "{rows:#?}"
    );
}
